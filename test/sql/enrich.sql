-- llmgw.enrich fills a column in committed chunks, skips rows already done,
-- records its progress, and can be scheduled with pg_cron.
CREATE TABLE tickets (id int PRIMARY KEY, body text, summary text);
INSERT INTO tickets (id, body)
SELECT i, CASE WHEN i = 7 THEN NULL ELSE 'ticket ' || i END FROM generate_series(1, 25) i;

SELECT count(*) AS before FROM llmgw.usage \gset
CALL llmgw.enrich('tickets', 'id', $$'Summarise: ' || body$$, 'summary', 'demo',
                  chunk_size => 10, job_name => 'tickets');
SELECT count(*) FILTER (WHERE summary = 'Hello! You said: Summarise: ticket ' || id) AS filled,
       count(*) FILTER (WHERE summary IS NULL) AS empty
  FROM tickets;
SELECT (SELECT count(*) FROM llmgw.usage) - :before AS calls;
SELECT name, status, rows_total, rows_done, rows_failed, rows_skipped,
       rows_per_second IS NOT NULL AS has_rate
  FROM llmgw.job_progress WHERE name = 'tickets';

-- a second run calls nobody for the rows already done
SELECT count(*) AS before FROM llmgw.usage \gset
CALL llmgw.enrich('tickets', 'id', $$'Summarise: ' || body$$, 'summary', 'demo');
SELECT (SELECT count(*) FROM llmgw.usage) - :before AS calls_on_rerun;

-- a run cut short resumes: rows of committed chunks are not called again
UPDATE tickets SET summary = NULL WHERE id > 20;
CALL llmgw.enrich('tickets', 'id', $$'Summarise: ' || body$$, 'summary', 'demo', chunk_size => 2);
SELECT count(*) FILTER (WHERE summary IS NOT NULL) AS filled FROM tickets;
SELECT rows_total, rows_done FROM llmgw.jobs ORDER BY id DESC LIMIT 1;

-- failures are counted, not fatal; the rows stay empty for a later run
CREATE TABLE notes (id int PRIMARY KEY, body text, answer text);
INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 3) i;
SELECT llmgw.create_model('enrich-broken', 'mock', 'mock-model;status:500');
CALL llmgw.enrich('notes', 'id', 'body', 'answer', 'enrich-broken', job_name => 'notes');
SELECT status, rows_done, rows_failed, last_error FROM llmgw.jobs WHERE name = 'notes';

-- bad arguments
\set VERBOSITY terse
CALL llmgw.enrich('notes', 'id', 'body', 'answer', 'demo', chunk_size => 0);
CALL llmgw.enrich('notes', 'id', 'body', 'no_such_column', 'demo');
\set VERBOSITY default

-- pg_cron: the recipe registers the job under the calling role; the command
-- it runs is the CALL above (tests do not wait for a cron minute)
CREATE EXTENSION IF NOT EXISTS pg_cron;
SELECT cron.schedule('enrich-tickets', '*/10 * * * *',
       $$CALL llmgw.enrich('tickets', 'id', $p$'Summarise: ' || body$p$, 'summary', 'demo')$$) > 0
       AS scheduled;
SELECT jobname, schedule, username = current_user AS runs_as_me, command
  FROM cron.job WHERE jobname = 'enrich-tickets';
SELECT cron.unschedule('enrich-tickets');
DROP TABLE tickets, notes;

-- a chunk starts after the last key of the one before: every row is read a
-- few times in all (count, chunk, write, check, the last pass), not once
-- per chunk before it.  Keys whose text order is not their order (9 < 10).
CREATE TABLE many_rows (id int PRIMARY KEY, body text, answer text);
INSERT INTO many_rows SELECT i, 'row ' || i FROM generate_series(1, 2000) i;
ANALYZE many_rows;
SET client_min_messages = warning;
CALL llmgw.enrich('many_rows', 'id', 'body', 'answer', 'demo', chunk_size => 40);
RESET client_min_messages;
SELECT pg_stat_force_next_flush();
SELECT count(*) FILTER (WHERE answer IS NOT NULL) AS filled FROM many_rows;
SELECT pg_stat_clear_snapshot();
SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) <= 8 * 2000 AS rows_read_bounded
  FROM pg_stat_user_tables WHERE relid = 'many_rows'::regclass;
DROP TABLE many_rows;
