-- Enrichment under policy: a job stops cleanly on an exhausted budget and
-- resumes where it stopped; a cancelled run resumes without calling the
-- provider twice for a row it finished; the spend is the job's and the team's.
SELECT llmgw.create_model('batch-metered', 'mock', 'batch-model', price_model => 'batch-model');
SELECT llmgw.set_price('batch-model', input => 0, output => 0, per_request => 0.01) > 0 AS priced;
SELECT llmgw.create_team('batch') AS batch \gset
CREATE ROLE regress_batch LOGIN IN ROLE llmgw_user;
SELECT llmgw.bind_role('regress_batch', 'batch');
SELECT llmgw.create_budget('batch team', 'team', 'batch', 'total', 0.05) > 0 AS budget;

CREATE TABLE articles (id int PRIMARY KEY, body text, summary text);
INSERT INTO articles (id, body) SELECT i, 'article ' || i FROM generate_series(1, 10) i;
GRANT SELECT, UPDATE ON articles TO regress_batch;

-- the budget allows 5 calls: the job does 5 rows and stops with a warning
SET ROLE regress_batch;
\set VERBOSITY terse
CALL llmgw.enrich('articles', 'id', 'body', 'summary', 'batch-metered', job_name => 'articles');
\set VERBOSITY default
RESET ROLE;
SELECT count(*) FILTER (WHERE summary IS NOT NULL) AS done,
       count(*) FILTER (WHERE summary IS NULL) AS pending FROM articles;
SELECT name, owner, status, rows_done, rows_failed, spend, last_error
  FROM llmgw.job_progress WHERE name = 'articles';

-- more budget, and the same CALL finishes the job; no row is called twice
UPDATE llmgw.budgets SET limit_amount = 1 WHERE name = 'batch team';
SET ROLE regress_batch;
CALL llmgw.enrich('articles', 'id', 'body', 'summary', 'batch-metered', job_name => 'articles 2');
RESET ROLE;
SELECT count(*) FILTER (WHERE summary = 'Hello! You said: article ' || id) AS done FROM articles;
SELECT count(*) AS calls, sum(cost) AS spend, bool_and(team_id = :batch) AS charged_to_team,
       bool_and(role_name = 'regress_batch') AS as_role
  FROM llmgw.usage WHERE model = 'batch-metered';
SELECT name, status, rows_done, spend FROM llmgw.job_progress
 WHERE name IN ('articles', 'articles 2') ORDER BY id;

-- a run cancelled half way (statement_timeout) resumes without calling the
-- provider again for the rows it committed
SELECT llmgw.create_model('batch-slow', 'mock', 'batch-model;delay:1000', price_model => 'batch-model');
CREATE TABLE pages (id int PRIMARY KEY, body text, summary text);
INSERT INTO pages (id, body) SELECT i, 'page ' || i FROM generate_series(1, 10) i;
SET client_min_messages = warning;   -- how far it got varies
-- half way through the third chunk's calls, far from a commit
SET statement_timeout = '2500ms';
\set VERBOSITY terse
CALL llmgw.enrich('pages', 'id', 'body', 'summary', 'batch-slow', chunk_size => 2, concurrency => 2);
\set VERBOSITY default
RESET statement_timeout;
SELECT count(*) FILTER (WHERE summary IS NOT NULL) BETWEEN 1 AND 9 AS partly_done FROM pages;
CALL llmgw.enrich('pages', 'id', 'body', 'summary', 'batch-slow', chunk_size => 2, concurrency => 2);
RESET client_min_messages;
SELECT count(*) FILTER (WHERE summary = 'Hello! You said: ' || body) AS done FROM pages;
SELECT count(*) FILTER (WHERE status = 'ok') AS answered_calls,
       count(*) FILTER (WHERE status = 'cancelled') > 0 AS some_cancelled
  FROM llmgw.usage WHERE model = 'batch-slow';

-- pg_cron: the scheduled command runs as the role that scheduled it, so
-- its spend is that role's team's
CREATE EXTENSION IF NOT EXISTS pg_cron;
GRANT USAGE ON SCHEMA cron TO regress_batch;
SET ROLE regress_batch;
SELECT cron.schedule('nightly-articles', '0 2 * * *',
       $$CALL llmgw.enrich('articles', 'id', 'body', 'summary', 'batch-metered')$$) > 0 AS scheduled;
RESET ROLE;
SELECT jobname, username FROM cron.job WHERE jobname = 'nightly-articles';
SET ROLE regress_batch;
SELECT cron.unschedule('nightly-articles');
RESET ROLE;

DROP TABLE articles, pages;
REVOKE USAGE ON SCHEMA cron FROM regress_batch;
SELECT llmgw.unbind_role('regress_batch');
DROP ROLE regress_batch;
DELETE FROM llmgw.budgets;
