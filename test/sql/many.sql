-- llm_complete_many: every prompt of a statement in flight at once, answers
-- in input order, failures as rows or as one error.
SELECT llmgw.create_model('slowish', 'mock', 'mock-model;delay:200');
SELECT count(*) AS before FROM llmgw.usage \gset

-- 40 calls of 200 ms each, all in flight together: the order is kept
SELECT count(*) AS answers, bool_and(answer = 'Hello! You said: prompt ' || ordinality) AS in_order
  FROM llm_complete_many(ARRAY(SELECT 'prompt ' || i FROM generate_series(1, 40) i), 'slowish');
SELECT (SELECT count(*) FROM llmgw.usage) - :before AS usage_rows;

-- NULL prompts give NULL answers without a call; parameters apply to each
SELECT * FROM llm_complete_many(ARRAY['one two three', NULL, 'four'], 'demo',
                                max_tokens => 3, concurrency => 2);

-- failures: 'continue' gives NULL and the error on that row
SELECT llmgw.create_model('flaky', 'mock', 'mock-model;status:500');
SELECT ordinality, answer, sqlstate, error
  FROM llm_complete_many(ARRAY['a', 'b'], 'flaky', on_error => 'continue');
-- 'raise' (the default) raises once every call is settled
SELECT try($$SELECT * FROM llm_complete_many(ARRAY['a', 'b'], 'flaky')$$);
SELECT try($$SELECT * FROM llm_complete_many(ARRAY['a'], 'no-such-model')$$);

-- bad arguments
SELECT try($$SELECT * FROM llm_complete_many(ARRAY['a'], 'demo', concurrency => 0)$$);
SELECT try($$SELECT * FROM llm_complete_many(ARRAY['a'], 'demo', on_error => 'ignore')$$);
SELECT try($$SELECT * FROM llm_complete_many(ARRAY['a'], 'demo', max_tokens => 0)$$);
SELECT count(*) AS no_rows FROM llm_complete_many(ARRAY[]::text[], 'demo');

-- a statement timeout cancels every call in flight, each recorded as cancelled
SELECT count(*) AS before FROM llmgw.usage \gset
SET statement_timeout = '300ms';
SELECT * FROM llm_complete_many(ARRAY['x', 'y', 'z'], 'slow');
RESET statement_timeout;
SELECT status, count(*) FROM llmgw.usage WHERE id > (SELECT max(id) - 3 FROM llmgw.usage)
 GROUP BY status;
