-- llmgw.enrich calls no model for an answer it could not write: without
-- UPDATE on the output column it stops before any call (and before making
-- a job); under row-level security it enriches only the rows the caller may
-- update; concurrent runs skip each other's rows.  Its calls carry the job
-- (usage.job_id), and job_progress.spend sums them.
SELECT llmgw.set_price('er-price', 0, 0, per_request => 0.01) > 0 AS priced;
SELECT llmgw.create_model('er-a', 'mock', 'er-a-model', price_model => 'er-price');
SELECT llmgw.create_model('er-b', 'mock', 'er-b-model', price_model => 'er-price');
SELECT llmgw.create_model('er-c', 'mock', 'er-c-model;delay:200', price_model => 'er-price');
CREATE ROLE regress_er_alice IN ROLE llmgw_user;
CREATE ROLE regress_er_bob IN ROLE llmgw_user;

-- (a) no UPDATE on the output column: 42501 before any provider call
CREATE TABLE er_docs (id int PRIMARY KEY, body text, summary text);
INSERT INTO er_docs SELECT i, 'doc ' || i FROM generate_series(1, 5) i;
GRANT SELECT, UPDATE (body) ON er_docs TO regress_er_alice;
SET ROLE regress_er_alice;
\set VERBOSITY terse
CALL llmgw.enrich('er_docs', 'id', 'body', 'summary', 'er-a', job_name => 'er docs');
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
RESET ROLE;
SELECT count(*) AS jobs FROM llmgw.jobs WHERE source = 'er_docs';
SELECT count(*) FILTER (WHERE summary IS NOT NULL) AS written FROM er_docs;
\! perl test/scripts/mock_count.pl 'er-a-model'

-- (b) every row readable, only one's own rows updatable
CREATE TABLE er_notes (id int PRIMARY KEY, owner name NOT NULL, body text, summary text);
INSERT INTO er_notes
SELECT i, CASE WHEN i % 3 = 0 THEN 'regress_er_alice' ELSE 'regress_er_bob' END, 'note ' || i
  FROM generate_series(1, 12) i;
ALTER TABLE er_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY er_read ON er_notes FOR SELECT USING (true);
CREATE POLICY er_write ON er_notes FOR UPDATE USING (owner = current_user);
GRANT SELECT, UPDATE ON er_notes TO regress_er_alice, regress_er_bob;
SET ROLE regress_er_alice;
SELECT count(*) AS alice_sees FROM er_notes;
SET client_min_messages = warning;
CALL llmgw.enrich('er_notes', 'id', 'body', 'summary', 'er-b', chunk_size => 2,
                  job_name => 'er alice');
RESET client_min_messages;
RESET ROLE;
-- alice's 4 rows are filled, bob's 8 stay NULL; one call per row filled
SELECT owner, count(*) FILTER (WHERE summary = 'Hello! You said: ' || body) AS filled,
       count(*) FILTER (WHERE summary IS NULL) AS empty
  FROM er_notes GROUP BY owner ORDER BY owner;
\! perl test/scripts/mock_count.pl 'er-b-model'
SELECT status, rows_done, rows_failed, spend FROM llmgw.job_progress WHERE name = 'er alice';
SELECT count(*) AS calls, bool_and(u.job_id = j.id) AS carry_the_job,
       bool_and(u.role_name = 'regress_er_alice') AS as_alice
  FROM llmgw.usage u, llmgw.jobs j WHERE u.model = 'er-b' AND j.name = 'er alice';
-- then bob's run fills the rest
SET ROLE regress_er_bob;
SET client_min_messages = warning;
CALL llmgw.enrich('er_notes', 'id', 'body', 'summary', 'er-b', chunk_size => 5,
                  job_name => 'er bob');
RESET client_min_messages;
RESET ROLE;
SELECT count(*) FILTER (WHERE summary = 'Hello! You said: ' || body) AS filled FROM er_notes;
\! perl test/scripts/mock_count.pl 'er-b-model'
SELECT name, status, rows_done, spend FROM llmgw.job_progress
 WHERE name IN ('er alice', 'er bob') ORDER BY name;

-- (c) two runs at once on the same table: no row is called twice.  The
-- second run starts while the first one's first chunk is in flight.
CREATE EXTENSION dblink;
CREATE TABLE er_pages (id int PRIMARY KEY, body text, summary text);
INSERT INTO er_pages SELECT i, 'page ' || i FROM generate_series(1, 20) i;
SELECT dblink_connect('er_other',
       format('host=%s dbname=%s user=%s options=''-c client_min_messages=warning''',
              split_part(current_setting('unix_socket_directories'), ',', 1),
              current_database(), current_user)) AS connected;
SELECT dblink_send_query('er_other',
       $$CALL llmgw.enrich('er_pages', 'id', 'body', 'summary', 'er-c', chunk_size => 3,
                           concurrency => 3, job_name => 'er pages 1')$$) AS sent;
DO $$
BEGIN
    FOR i IN 1 .. 1000 LOOP
        EXIT WHEN EXISTS (SELECT 1 FROM llmgw.calls_in_flight WHERE model = 'er-c');
        PERFORM pg_sleep(0.01);
    END LOOP;
END
$$;
SET client_min_messages = warning;
CALL llmgw.enrich('er_pages', 'id', 'body', 'summary', 'er-c', chunk_size => 3,
                  concurrency => 3, job_name => 'er pages 2');
RESET client_min_messages;
SELECT * FROM dblink_get_result('er_other') AS r(status text);
SELECT dblink_disconnect('er_other');
SELECT count(*) FILTER (WHERE summary = 'Hello! You said: ' || body) AS filled FROM er_pages;
-- 20 calls for 20 rows, shared by the two runs
\! perl test/scripts/mock_count.pl 'er-c-model;delay:200'
SELECT count(*) AS calls, count(DISTINCT job_id) AS jobs FROM llmgw.usage WHERE model = 'er-c';
SELECT sum(rows_done) AS rows_done, bool_and(rows_done > 0) AS both_worked,
       bool_and(status = 'finished') AS finished
  FROM llmgw.jobs WHERE name IN ('er pages 1', 'er pages 2');

DROP EXTENSION dblink;
DROP TABLE er_docs, er_notes, er_pages;
SELECT llmgw.drop_model('er-a'), llmgw.drop_model('er-b'), llmgw.drop_model('er-c');
DROP ROLE regress_er_alice, regress_er_bob;
