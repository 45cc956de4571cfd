-- Asynchronous calls: llmgw.submit queues a call durably and returns at
-- once; llmgw.wait and llmgw.result give its answer or its error.
SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "later"}]}') AS id \gset
SELECT status, answer->'message'->>'content' AS text, answer->'usage'->>'input_tokens' AS input,
       sqlstate, error, finished_at >= submitted_at AS finished
  FROM llmgw.wait(:id, '10 seconds');
SELECT status, answer->>'finish_reason' AS finish_reason FROM llmgw.result(:id);
SELECT status, model, attempts FROM llmgw.async_calls WHERE id = :id;

-- the call's usage row is written with its answer
SELECT count(*) AS usage_rows FROM llmgw.usage u
 WHERE u.request_id = (SELECT (answer->>'id')::uuid FROM llmgw.async_calls WHERE id = :id);

-- errors come back as a SQLSTATE and a message
SELECT llmgw.submit('{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}') AS bad \gset
SELECT status, answer, sqlstate, error FROM llmgw.wait(:bad, '10 seconds');

-- many at once, served concurrently by the workers
SELECT array_agg(llmgw.submit(jsonb_build_object('model', 'demo', 'messages',
         jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'n' || i)))))
       AS ids FROM generate_series(1, 20) i \gset
SELECT count(*) FILTER (WHERE w.status = 'done') AS done
  FROM unnest(:'ids'::bigint[]) id, LATERAL llmgw.wait(id, '10 seconds') w;

-- a submitted call runs as the session that submitted it would run it:
-- its deadline, retry waits, cache and limits go with it
SET llmgw.max_retries = 3;
SET llmgw.retry_base_delay = '2s';
SET llmgw.call_deadline = '500ms';
SET llmgw.cache = off;
SET llmgw.max_response_size = '64kB';
SELECT llmgw.create_model('async-deadline', 'mock', 'async-deadline;status:500');
SELECT llmgw.submit('{"model": "async-deadline", "messages": [{"role": "user", "content": "x"}]}') AS late \gset
RESET llmgw.max_retries;
RESET llmgw.retry_base_delay;
RESET llmgw.call_deadline;
RESET llmgw.cache;
RESET llmgw.max_response_size;
SELECT max_retries, timeout_ms, retry_max_wait_ms, retry_base_delay_ms, deadline_ms, cache,
       cache_ttl_s, max_response_bytes FROM llmgw.async_calls WHERE id = :late;
SELECT status, sqlstate FROM llmgw.wait(:late, '10 seconds');
-- the 2 s retry wait would outlast the 500 ms deadline: one attempt only
SELECT count(*) AS attempts FROM llmgw.usage WHERE async_id = :late;
-- a row inserted by hand runs with the server's settings
INSERT INTO llmgw.async_calls (model, request, max_retries, timeout_ms)
VALUES ('demo', '{"model": "demo", "messages": [{"role": "user", "content": "by hand"}]}', 0, 0)
RETURNING id AS by_hand \gset
SELECT status, answer->'message'->>'content' IS NOT NULL AS answered FROM llmgw.wait(:by_hand, '10 seconds');
SELECT split_part(try($$INSERT INTO llmgw.async_calls (model, request, max_retries, timeout_ms, cache)
                        VALUES ('demo', '{}', 0, 0, 'sometimes')$$), E'\n', 1) AS bad_cache;

-- bad requests are refused at once
SELECT try($$SELECT llmgw.submit('[1]')$$);
SELECT try($$SELECT llmgw.submit('{"messages": []}')$$);
SELECT try($$SELECT llmgw.submit('{"model": "demo"}')$$);
SELECT try($$SELECT * FROM llmgw.wait(-1, '1 second')$$);

-- a user sees only its own calls
CREATE ROLE regress_async LOGIN IN ROLE llmgw_user;
GRANT EXECUTE ON FUNCTION try(text) TO regress_async;
SET ROLE regress_async;
SELECT count(*) AS others_visible FROM llmgw.async_calls;
SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "mine"}]}') AS mine \gset
RESET ROLE;
SET ROLE regress_async;
SELECT status, answer->'message'->>'content' AS text FROM llmgw.wait(:mine, '10 seconds');
SELECT count(*) AS mine_visible FROM llmgw.async_calls;
SELECT try($$SELECT key_hash FROM llmgw.async_calls$$) AS key_hashes;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION try(text) FROM regress_async;
DROP ROLE regress_async;
