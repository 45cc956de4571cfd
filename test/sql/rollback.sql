-- The usage row is written by the worker in its own transaction: it
-- survives the caller's ROLLBACK, and an aborted caller still pays.
SELECT count(*) AS before FROM llmgw.usage \gset
BEGIN;
SELECT llm_complete('rolled back', 'demo');
ROLLBACK;
SELECT count(*) - :before AS rows_after_rollback FROM llmgw.usage;
SELECT status FROM last_usage();

-- the same when the caller's transaction fails after the call
BEGIN;
SELECT llm_complete('then fail', 'demo');
SELECT 1 / 0;
ROLLBACK;
SELECT count(*) - :before AS rows_after_error FROM llmgw.usage;
