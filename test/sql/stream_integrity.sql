-- Stream integrity: a 2xx stream that ends without its terminal event, or
-- that carries an event that is not JSON, is an error (LG008 broken_stream)
-- whatever HTTP said, and its usage row keeps and prices the tokens reported
-- so far.  An error event inside a 200 stream takes the provider's class.
-- broken_stream is retried and falls back like a connection failure.
\getenv mock_url LLMGW_MOCK_URL
SELECT regexp_replace(:'mock_url', '/v1$', '') AS mock_root \gset
SELECT llmgw.create_provider('si-anthropic', 'anthropic', :'mock_root' || '/v1',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_provider('si-gemini', 'gemini', :'mock_root' || '/v1beta',
                             secret => 'env:LLMGW_TEST_KEY');
-- 1 per million input tokens, 2 per million output tokens
SELECT llmgw.set_price('si-price', input => 1, output => 2) > 0 AS priced;

-- si_stream(alias): a streamed llm_chat, its outcome as try() shows it
CREATE FUNCTION si_stream(alias text) RETURNS text LANGUAGE sql AS $$
    SELECT try(format('SELECT llm_chat(%L)', jsonb_build_object('model', alias, 'stream', true,
               'messages', '[{"role": "user", "content": "one two three"}]'::jsonb)))
$$;
-- si_usage(alias): the usage rows of an alias, with their tokens and price
CREATE FUNCTION si_usage(alias text)
RETURNS TABLE (attempt int, provider text, status text, error_class text, http_status int,
               input_tokens bigint, output_tokens bigint, usage_source text, cost numeric,
               unpriced boolean, fallback_from text)
LANGUAGE sql AS $$
    SELECT attempt, provider, status, error_class, http_status, input_tokens, output_tokens,
           usage_source, cost, unpriced, fallback_from
      FROM llmgw.usage WHERE model = alias ORDER BY id
$$;

-- One deployment per wire format and stream fault
DO $$
BEGIN
    PERFORM llmgw.create_model('si-' || f || '-' || d, p, 'si-' || f || ';' || d,
                               price_model => 'si-price')
       FROM (VALUES ('openai', 'mock'), ('anthropic', 'si-anthropic'), ('gemini', 'si-gemini')) v(f, p),
            unnest(ARRAY['truncate', 'garbage', 'stream_error']) d;
END
$$;

-- no terminal event ([DONE], message_stop, a chunk with finishReason): LG008
SELECT m, si_stream(m) FROM unnest(ARRAY['si-openai-truncate', 'si-anthropic-truncate',
                                         'si-gemini-truncate']) m;
-- an event that is not JSON: LG008
SELECT m, si_stream(m) FROM unnest(ARRAY['si-openai-garbage', 'si-anthropic-garbage',
                                         'si-gemini-garbage']) m;
-- the tokens reported before the stream broke are kept and priced
-- (6 input at 1, 6 output at 2 per million: 0.000018)
SELECT m, u.* FROM unnest(ARRAY['si-openai-truncate', 'si-anthropic-truncate', 'si-gemini-truncate',
                                'si-openai-garbage', 'si-anthropic-garbage', 'si-gemini-garbage']) m,
       si_usage(m) u;

-- an error event in a 200 stream: the provider's class (OpenAI server_error
-- LG500, Anthropic overloaded_error LG503, Gemini INTERNAL LG500), priced
SELECT m, si_stream(m) FROM unnest(ARRAY['si-openai-stream_error', 'si-anthropic-stream_error',
                                         'si-gemini-stream_error']) m;
SELECT m, u.* FROM unnest(ARRAY['si-openai-stream_error', 'si-anthropic-stream_error',
                                'si-gemini-stream_error']) m,
       si_usage(m) u;

-- broken_stream is retried on the same deployment ...
SET llmgw.max_retries = 1;
SET llmgw.retry_base_delay = '10ms';
SELECT llmgw.create_model('si-retry', 'mock', 'si-retry;truncate;fail_first:1', price_model => 'si-price');
SELECT si_stream('si-retry');
SELECT * FROM si_usage('si-retry');
-- ... and falls back to the next deployment
SET llmgw.max_retries = 0;
SELECT llmgw.create_model('si-fallback', 'mock', 'si-fallback;garbage', priority => 1,
                          price_model => 'si-price');
SELECT llmgw.create_model('si-fallback', 'si-anthropic', 'si-fallback-claude', priority => 0,
                          price_model => 'si-price');
SELECT llm_chat('{"model": "si-fallback", "stream": true,
                  "messages": [{"role": "user", "content": "one two three"}]}')
       -> 'message' ->> 'content' AS answer;
SELECT * FROM si_usage('si-fallback');
\! perl test/scripts/mock_count.pl 'si-retry;truncate;fail_first:1' 'si-fallback;garbage' 'si-fallback-claude'
RESET llmgw.max_retries;
RESET llmgw.retry_base_delay;

DO $$
BEGIN
    PERFORM llmgw.drop_model(alias) FROM llmgw.models WHERE alias LIKE 'si-%';
END
$$;
SELECT llmgw.drop_provider('si-anthropic'), llmgw.drop_provider('si-gemini');
DROP FUNCTION si_stream(text), si_usage(text);
