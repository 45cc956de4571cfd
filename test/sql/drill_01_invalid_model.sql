-- Failure drill: a model alias that does not exist.  llmgw refuses before
-- calling anyone: 42704 with a hint, and no usage row (no provider was reached).
SELECT count(*) AS rows_before FROM llmgw.usage \gset
SELECT try($$SELECT llm_complete('x', 'no-such-model')$$);
SELECT count(*) - :rows_before AS new_usage_rows FROM llmgw.usage;
