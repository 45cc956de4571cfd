-- Retries and fallback: transient failures are retried on the same
-- deployment, then the next deployment by priority is tried; every attempt
-- is a usage row, and the mock's counter proves how many requests it saw.
SET llmgw.max_retries = 2;
SET llmgw.retry_base_delay = '10ms';
\getenv mock_url LLMGW_MOCK_URL

-- attempts(n): the newest n usage rows, oldest first
CREATE FUNCTION attempts(n int)
RETURNS TABLE (attempt int, provider text, upstream_model text, status text,
               error_class text, http_status int, fallback_from text)
LANGUAGE sql AS $$
    SELECT attempt, provider, upstream_model, status, error_class, http_status, fallback_from
      FROM (SELECT * FROM llmgw.usage ORDER BY id DESC LIMIT n) u ORDER BY id
$$;

-- a 500 on the first request only: one retry succeeds
SELECT llmgw.create_model('retry-once', 'mock', 'mock-model;status:500;fail_first:1');
SELECT llm_complete('again please', 'retry-once');
SELECT * FROM attempts(2);

-- always 503: three attempts on the deployment, then the error names them
SELECT llmgw.create_model('always-503', 'mock', 'mock-model;status:503');
SELECT try($$SELECT llm_complete('x', 'always-503')$$);
SELECT attempt, status, error_class FROM attempts(3);

-- fallback: the primary fails, the lower-priority deployment answers
SELECT llmgw.create_model('primary-down', 'mock', 'primary;status:500', priority => 10);
SELECT llmgw.create_model('primary-down', 'anthropic', 'backup-claude', priority => 0);
SELECT llm_complete('fall back', 'primary-down');
SELECT attempt, provider, upstream_model, status, error_class, fallback_from FROM attempts(4);

-- insufficient quota is not retried, but falls back
SELECT llmgw.create_model('no-quota', 'mock', 'mock-model;quota', priority => 1);
SELECT llmgw.create_model('no-quota', 'gemini', 'gemini-backup', priority => 0);
SELECT llm_complete('quota', 'no-quota');
SELECT attempt, provider, status, error_class, fallback_from FROM attempts(2);

-- a bad request is neither retried nor sent elsewhere
SELECT llmgw.create_model('bad-request', 'mock', 'mock-model;status:400', priority => 1);
SELECT llmgw.create_model('bad-request', 'gemini', 'gemini-backup', priority => 0);
SELECT try($$SELECT llm_complete('x', 'bad-request')$$);
SELECT attempt, provider, status, error_class FROM attempts(1);

-- every deployment failing: the error lists each attempt
SELECT llmgw.create_model('all-down', 'mock', 'a;status:500', priority => 1);
SELECT llmgw.create_model('all-down', 'down', 'b', priority => 0);
SET llmgw.max_retries = 0;
SELECT try($$SELECT llm_complete('x', 'all-down')$$);
SELECT attempt, provider, status, error_class, fallback_from FROM attempts(2);

-- a rate limit asking for longer than llmgw.retry_max_wait is not waited for
SET llmgw.max_retries = 2;
SET llmgw.retry_max_wait = '500ms';
SELECT try($$SELECT llm_complete('x', 'e429')$$);
SELECT attempt, status, error_class FROM attempts(1);

-- llmgw.requests folds the attempts of each call into one row
SELECT model, attempts, provider, status, error_class
  FROM llmgw.requests WHERE model IN ('retry-once', 'primary-down', 'all-down') ORDER BY model;

-- llmgw.stats: the workers and the queue, idle now
SELECT workers_running, calls_queued, calls_in_flight, calls_since_start > 0 AS busy_before,
       queue_size
  FROM llmgw.stats();
