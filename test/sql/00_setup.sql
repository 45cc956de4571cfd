-- Install the extension and register the mock provider once for all tests.
-- The mock's URL and the provider key come from the test runner.
CREATE EXTENSION llmgw;
-- One attempt per call unless a test asks for retries (test/sql/retries.sql)
ALTER DATABASE postgres SET llmgw.max_retries = 0;
\getenv mock_url LLMGW_MOCK_URL
\getenv key_file LLMGW_KEY_FILE

-- The key reaches the worker through the server's environment.
SELECT llmgw.create_provider('mock', 'openai_compatible', :'mock_url',
                             secret => 'env:LLMGW_TEST_KEY', timeout_ms => 5000);
SELECT provider, secret_ref FROM (SELECT name AS provider, secret_ref FROM llmgw.providers) p;

SELECT llmgw.create_model('demo', 'mock', 'mock-model');

-- try(sql): run a statement, show its SQLSTATE, message, detail and hint
CREATE FUNCTION try(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    state text; msg text; detail text; hint text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
    RETURN state || ': ' || msg
        || CASE WHEN detail <> '' THEN E'\nDETAIL: ' || detail ELSE '' END
        || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
END
$$;

-- last_usage(n): the newest n usage rows, without the columns that vary
CREATE FUNCTION last_usage(n int DEFAULT 1)
RETURNS TABLE (model text, provider text, upstream_model text, status text,
               error_class text, http_status int, input_tokens bigint,
               output_tokens bigint, cached_input_tokens bigint,
               reasoning_tokens bigint, usage_source text)
LANGUAGE sql AS $$
    SELECT model, provider, upstream_model, status, error_class, http_status,
           input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,
           usage_source
      FROM (SELECT * FROM llmgw.usage ORDER BY id DESC LIMIT n) u
     ORDER BY id
$$;

-- usage_of(alias): the usage rows of a model alias, oldest first
CREATE FUNCTION usage_of(alias text)
RETURNS TABLE (attempt int, provider text, upstream_model text, status text,
               error_class text, http_status int, fallback_from text, cost numeric)
LANGUAGE sql AS $$
    SELECT attempt, provider, upstream_model, status, error_class, http_status,
           fallback_from, cost
      FROM llmgw.usage WHERE model = alias ORDER BY id
$$;

-- A second provider with Anthropic's wire format, for fallbacks across providers
SELECT regexp_replace(:'mock_url', '/v1$', '') || '/v1' AS anthropic_url \gset
SELECT llmgw.create_provider('drill-anthropic', 'anthropic', :'anthropic_url',
                             secret => 'env:LLMGW_TEST_KEY');
