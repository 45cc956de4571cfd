-- llm_complete: answers, parameters and the usage row of each call
SELECT llm_complete('Say hello', model => 'demo');
SELECT * FROM last_usage();

-- a usage row carries the caller's role, a request id and a latency
SELECT role_name = current_user AS own_role, request_id IS NOT NULL AS has_id,
       latency_ms >= 0 AS has_latency, started_at <= recorded_at AS ordered
  FROM llmgw.usage ORDER BY id DESC LIMIT 1;

-- system prompt and parameters reach the provider
SELECT llm_complete('one two three', 'demo', system => 'Be brief', temperature => 0.2);
SELECT input_tokens FROM last_usage();

-- max_tokens truncates the answer (the mock keeps that many words)
SELECT llm_complete('one two three four five', 'demo', max_tokens => 3);
SELECT output_tokens FROM last_usage();

-- a NULL prompt is a NULL answer, and no call
SELECT count(*) AS before FROM llmgw.usage \gset
SELECT llm_complete(NULL, 'demo') IS NULL AS null_answer;
SELECT count(*) = :before AS no_call FROM llmgw.usage;

-- bad arguments are refused before any call
SELECT try($$SELECT llm_complete('x', NULL)$$);
SELECT try($$SELECT llm_complete('x', 'demo', max_tokens => 0)$$);
SELECT try($$SELECT llm_complete('x', 'demo', temperature => 3)$$);

-- token buckets: reported ones are stored, unreported ones are NULL, not 0
SELECT llmgw.create_model('cached', 'mock', 'mock-model;cached:4;reasoning:2');
SELECT llm_complete('a b c d e f', 'cached');
SELECT * FROM last_usage();
SELECT llmgw.create_model('nousage', 'mock', 'mock-model;nousage');
SELECT llm_complete('no usage here', 'nousage');
SELECT * FROM last_usage();

-- many calls in one statement each get their own row and request id
SELECT count(*) AS before FROM llmgw.usage \gset
SELECT llm_complete('row ' || i, 'demo') FROM generate_series(1, 5) i;
SELECT (SELECT count(*) FROM llmgw.usage) - :before AS new_rows,
       count(DISTINCT request_id) AS distinct_ids
  FROM (SELECT * FROM llmgw.usage ORDER BY id DESC LIMIT 5) u;
