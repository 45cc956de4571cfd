-- llmgw.enrich into columns that take embeddings (real[], double precision[],
-- domains over them; pgvector's vector and halfvec: test/t/030): each
-- row's prompt embedded, a chunk per provider request (one usage row per
-- request, output tokens 0), written by the column type's input function.
-- A row that cannot be written (a dimension its column refuses) fails
-- alone; a request refused for one input goes again row by row; system
-- and max_tokens are refused, and a retry of an embeddings batch that is not
-- batch, sync or none (test/t/033 runs retry => 'sync'); a role without UPDATE calls
-- nothing; row-level security hides rows from the job; dimensions asked of the
-- model, and refused below 1 or for a column of text.
SELECT llmgw.set_price('ee-price', 1000, 0) > 0 AS priced;
SELECT llmgw.create_model('ee-emb', 'mock', 'ee-model', price_model => 'ee-price');
SELECT llmgw.create_model('ee-fail', 'mock', 'ee-fail-model', price_model => 'ee-price');
SELECT llmgw.create_model('ee-rls', 'mock', 'ee-rls-model', price_model => 'ee-price');
CREATE ROLE regress_ee_alice IN ROLE llmgw_user;
CREATE ROLE regress_ee_bob IN ROLE llmgw_user;
-- the NOTICEs of enrich name job ids, which depend on the tests before
SET client_min_messages = warning;

-- (a) real[]: 7 rows in chunks of 3, one with a NULL prompt (skipped, not
-- sent): 3 provider requests, 3 usage rows carrying the job
CREATE DOMAIN ee_positive AS real[] CHECK (VALUE[1] > 0);
CREATE DOMAIN ee_three AS real[] CHECK (cardinality(VALUE) = 3);
CREATE TABLE ee_docs (id int PRIMARY KEY, body text, e real[], d double precision[],
                      pos ee_positive, three ee_three, summary text);
INSERT INTO ee_docs (id, body)
SELECT i, CASE WHEN i = 4 THEN NULL ELSE 'doc number ' || i END FROM generate_series(1, 7) i;
CALL llmgw.enrich('ee_docs', 'id', 'body', 'e', 'ee-emb', chunk_size => 3, job_name => 'ee real');
\! perl test/scripts/mock_count.pl 'ee-model'
SELECT count(*) FILTER (WHERE cardinality(e) = 8) AS filled, count(*) FILTER (WHERE e IS NULL) AS empty
  FROM ee_docs;
SELECT status, rows_total, rows_done, rows_failed, rows_skipped, last_error
  FROM llmgw.job_progress WHERE name = 'ee real';
SELECT u.status, u.input_tokens, u.output_tokens, u.cost = u.input_tokens * 1000 / 1e6 AS priced,
       u.job_id = j.id AS carries_job
  FROM llmgw.usage u, llmgw.jobs j WHERE u.model = 'ee-emb' AND j.name = 'ee real' ORDER BY u.id;
SELECT spend = (SELECT sum(cost) FROM llmgw.usage WHERE model = 'ee-emb') AS spend_summed
  FROM llmgw.job_progress WHERE name = 'ee real';
-- the vectors are llm_embed's (two more requests: 5 in all)
SELECT bool_and(e = llm_embed(body, 'ee-emb')) AS same_as_llm_embed FROM ee_docs WHERE id IN (1, 7);

-- (b) double precision[]: one request for the 6 rows (6 in all), the same
-- vectors (read from the text of the float4 values, so equal as real[])
CALL llmgw.enrich('ee_docs', 'id', 'body', 'd', 'ee-emb', job_name => 'ee double');
\! perl test/scripts/mock_count.pl 'ee-model'
SELECT count(*) FILTER (WHERE d::real[] = e) AS same, count(*) FILTER (WHERE d IS NULL) AS empty
  FROM ee_docs;

-- (c) a domain that refuses some vectors: in the same chunk, the others are
-- written; each refused row fails alone, with its error in the job
CALL llmgw.enrich('ee_docs', 'id', 'body', 'pos', 'ee-emb', job_name => 'ee positive');
SELECT count(*) FILTER (WHERE pos IS NOT NULL) = count(*) FILTER (WHERE e[1] > 0) AS written_as_allowed,
       count(*) FILTER (WHERE pos IS NULL AND e[1] <= 0) AS refused
  FROM ee_docs;
SELECT status, rows_done, rows_failed, rows_skipped, last_error
  FROM llmgw.job_progress WHERE name = 'ee positive';

-- (d) the wrong dimension for every row: each fails (paid for: one request,
-- 8 in all, after (c)'s), the job ends, nothing is written
CALL llmgw.enrich('ee_docs', 'id', 'body', 'three', 'ee-emb', job_name => 'ee three');
\! perl test/scripts/mock_count.pl 'ee-model'
SELECT count(*) FILTER (WHERE three IS NOT NULL) AS written FROM ee_docs;
SELECT status, rows_done, rows_failed, last_error FROM llmgw.job_progress WHERE name = 'ee three';

-- (e) a request refused for one of its inputs ([[fail]]: 400) goes again
-- row by row: 1 + 4 requests, the three good rows written, the bad one failed
CREATE TABLE ee_mixed (id int PRIMARY KEY, body text, e real[]);
INSERT INTO ee_mixed VALUES (1, 'one', NULL), (2, 'two', NULL), (3, 'three [[fail]]', NULL), (4, 'four', NULL);
CALL llmgw.enrich('ee_mixed', 'id', 'body', 'e', 'ee-fail', job_name => 'ee mixed');
\! perl test/scripts/mock_count.pl 'ee-fail-model'
SELECT string_agg(id || ':' || (e IS NOT NULL), ',' ORDER BY id) AS written FROM ee_mixed;
SELECT status, rows_done, rows_failed, last_error FROM llmgw.job_progress WHERE name = 'ee mixed';
SELECT status, error_class, input_tokens, output_tokens FROM llmgw.usage WHERE model = 'ee-fail' ORDER BY id;

-- (f) what does not apply to embeddings, and a bad retry: 22023, before any job or call
SELECT count(*) AS jobs_before FROM llmgw.jobs \gset
SELECT try($$CALL llmgw.enrich('ee_mixed', 'id', 'body', 'e', 'ee-emb', system => 'Be brief')$$);
SELECT try($$CALL llmgw.enrich('ee_mixed', 'id', 'body', 'e', 'ee-emb', max_tokens => 10)$$);
SELECT try($$SELECT llmgw.submit_embedding_batch(ARRAY['x'], 'ee-emb', retry => 'soon')$$);
-- a dimension below 1, and one for a column of text
SELECT try($$CALL llmgw.enrich('ee_mixed', 'id', 'body', 'e', 'ee-emb', dimensions => 0)$$);
SELECT try($$CALL llmgw.enrich('ee_mixed', 'id', 'body', 'e', 'ee-emb', mode => 'batch', dimensions => -3)$$);
SELECT try($$CALL llmgw.enrich('ee_docs', 'id', 'body', 'summary', 'demo', dimensions => 4)$$);
SELECT try($$SELECT llmgw.submit_embedding_batch(ARRAY['x'], 'ee-emb', dimensions => 0)$$);
-- and an answer that cannot go into its column: 42804, before anything is paid for
ALTER TABLE ee_mixed ADD COLUMN j jsonb;
SELECT try($$CALL llmgw.enrich('ee_mixed', 'id', 'body', 'j', 'demo')$$);
SELECT try($$CALL llmgw.enrich('ee_mixed', 'id', 'body', 'j', 'demo', mode => 'batch')$$);
ALTER TABLE ee_mixed DROP COLUMN j;
SELECT count(*) - :jobs_before AS new_jobs FROM llmgw.jobs;

-- (g) no UPDATE on the output column: 42501 before any job or call
GRANT SELECT, UPDATE (body) ON ee_mixed TO regress_ee_alice;
UPDATE ee_mixed SET e = NULL;
SET ROLE regress_ee_alice;
\set VERBOSITY terse
CALL llmgw.enrich('ee_mixed', 'id', 'body', 'e', 'ee-emb', job_name => 'ee no update');
CALL llmgw.enrich('ee_mixed', 'id', 'body', 'e', 'ee-emb', mode => 'batch', job_name => 'ee no update');
\set VERBOSITY default
RESET ROLE;
SELECT count(*) - :jobs_before AS new_jobs FROM llmgw.jobs;
-- still 8
\! perl test/scripts/mock_count.pl 'ee-model'

-- (h) row-level security: alice sees and updates only her rows; bob's are
-- neither read nor embedded (one request for her 4 rows)
CREATE TABLE ee_notes (id int PRIMARY KEY, owner name NOT NULL, body text, e real[]);
INSERT INTO ee_notes
SELECT i, CASE WHEN i % 3 = 0 THEN 'regress_ee_alice' ELSE 'regress_ee_bob' END, 'note ' || i
  FROM generate_series(1, 12) i;
ALTER TABLE ee_notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY ee_own ON ee_notes USING (owner = current_user);
GRANT SELECT, UPDATE ON ee_notes TO regress_ee_alice, regress_ee_bob;
SET ROLE regress_ee_alice;
CALL llmgw.enrich('ee_notes', 'id', 'body', 'e', 'ee-rls', job_name => 'ee alice');
RESET ROLE;
SELECT owner, count(*) FILTER (WHERE e IS NOT NULL) AS filled, count(*) FILTER (WHERE e IS NULL) AS empty
  FROM ee_notes GROUP BY owner ORDER BY owner;
\! perl test/scripts/mock_count.pl 'ee-rls-model'
SELECT rows_total, rows_done, rows_failed FROM llmgw.job_progress WHERE name = 'ee alice';
SELECT count(*) AS calls, bool_and(role_name = 'regress_ee_alice') AS as_alice
  FROM llmgw.usage WHERE model = 'ee-rls';

-- (i) a text column still takes chat answers, through the same writer
UPDATE ee_docs SET summary = NULL;
CALL llmgw.enrich('ee_docs', 'id', 'body', 'summary', 'demo', chunk_size => 4, job_name => 'ee chat');
SELECT count(*) FILTER (WHERE summary = 'Hello! You said: ' || body) AS answered FROM ee_docs;

-- (j) dimensions: the chunk's request asks for 4 values (OpenAI's
-- dimensions), each row gets llm_embed's vector of 4
UPDATE ee_docs SET d = NULL;
\! perl test/scripts/mock_count.pl 'ee-model'
CALL llmgw.enrich('ee_docs', 'id', 'body', 'd', 'ee-emb', chunk_size => 10, job_name => 'ee dims',
                  dimensions => 4);
\! perl test/scripts/mock_count.pl 'ee-model'
SELECT count(*) FILTER (WHERE cardinality(d) = 4) AS four, count(*) FILTER (WHERE d IS NULL) AS empty,
       bool_and(d::real[] = llm_embed(body, 'ee-emb', 4)) FILTER (WHERE d IS NOT NULL) AS same_as_llm_embed
  FROM ee_docs;
SELECT status, rows_done, rows_failed, rows_skipped FROM llmgw.job_progress WHERE name = 'ee dims';

DROP TABLE ee_docs, ee_mixed, ee_notes;
DROP DOMAIN ee_positive, ee_three;
SELECT llmgw.drop_model('ee-emb'), llmgw.drop_model('ee-fail'), llmgw.drop_model('ee-rls');
DROP ROLE regress_ee_alice, regress_ee_bob;
RESET client_min_messages;
