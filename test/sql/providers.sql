-- Each provider's wire format against the mock: the same SQL call works
-- whichever provider an alias routes to, with normalised usage.
\getenv mock_url LLMGW_MOCK_URL
SELECT regexp_replace(:'mock_url', '/v1$', '') AS mock_root \gset

SELECT llmgw.create_provider('anthropic', 'anthropic', :'mock_root' || '/v1',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_provider('gemini', 'gemini', :'mock_root' || '/v1beta',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_provider('azure', 'azure', :'mock_root',
                             secret => 'env:LLMGW_TEST_KEY', api_version => '2024-10-21');
SELECT llmgw.create_provider('azure-v1', 'azure', :'mock_root',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_model('claude', 'anthropic', 'claude-mock;cached:3;cache_write:2');
SELECT llmgw.create_model('gemini', 'gemini', 'gemini-mock;reasoning:4');
SELECT llmgw.create_model('azure', 'azure', 'gpt-deployment');
SELECT llmgw.create_model('azure-v1', 'azure-v1', 'gpt-mock');

-- llm_complete through every format (the mock checks each format's key header)
SELECT m, llm_complete('hello there', m, system => 'Be brief')
  FROM unnest(ARRAY['demo', 'claude', 'gemini', 'azure', 'azure-v1']) m;

-- normalised usage: Anthropic's cache reads and writes are added to the
-- input; Gemini's thinking is added to the output and kept as reasoning
SELECT model, provider, input_tokens, output_tokens, cached_input_tokens,
       cache_write_tokens, reasoning_tokens
  FROM (SELECT * FROM llmgw.usage ORDER BY id DESC LIMIT 5) u ORDER BY id;

-- llm_chat: one request shape in, one normalised answer out
SELECT m, llm_chat(jsonb_build_object('model', m, 'max_tokens', 4,
                   'messages', '[{"role": "user", "content": "one two three four"}]'::jsonb))
           - 'id' AS answer
  FROM unnest(ARRAY['demo', 'claude', 'gemini']) m;
SELECT llm_chat('{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}')->>'id' AS chat_id \gset
SELECT count(*) AS usage_rows_with_that_id FROM llmgw.usage WHERE request_id = :'chat_id';

-- tool calls: arguments come back as JSON whatever the provider
SELECT llmgw.create_model('demo-tools', 'mock', 'mock-model;tool_call');
SELECT llmgw.create_model('claude-tools', 'anthropic', 'claude-mock;tool_call');
SELECT llmgw.create_model('gemini-tools', 'gemini', 'gemini-mock;tool_call');
SELECT m, r->'message'->'tool_calls'->0->'name' AS tool,
       r->'message'->'tool_calls'->0->'arguments' AS arguments, r->>'finish_reason' AS finish
  FROM unnest(ARRAY['demo-tools', 'claude-tools', 'gemini-tools']) m,
       LATERAL llm_chat(jsonb_build_object('model', m,
           'messages', '[{"role": "user", "content": "Weather in Paris?"}]'::jsonb,
           'tools', '[{"type": "function", "function": {"name": "get_weather",
                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]'::jsonb)) r;

-- a tool result conversation is translated too
SELECT m, llm_chat(jsonb_build_object('model', m, 'messages', '[
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    {"role": "user", "content": "thanks"}]'::jsonb))->'message'->>'content' AS answer
  FROM unnest(ARRAY['demo', 'claude', 'gemini']) m;

-- JSON mode reaches the provider (the mock answers in text either way)
SELECT llm_chat('{"model": "gemini", "response_format": {"type": "json_object"},
                  "messages": [{"role": "user", "content": "json please"}]}')->'message'->>'content';

-- each provider's errors map to the same classes
SELECT llmgw.create_model('claude-401', 'anthropic', 'claude-mock;status:401');
SELECT llmgw.create_model('claude-429', 'anthropic', 'claude-mock;status:429');
SELECT llmgw.create_model('claude-529', 'anthropic', 'claude-mock;status:529');
SELECT llmgw.create_model('claude-context', 'anthropic', 'claude-mock;context');
SELECT llmgw.create_model('gemini-401', 'gemini', 'gemini-mock;status:401');
SELECT llmgw.create_model('gemini-429', 'gemini', 'gemini-mock;status:429');
SELECT llmgw.create_model('gemini-404', 'gemini', 'gemini-mock;status:404');
SELECT llmgw.create_model('gemini-context', 'gemini', 'gemini-mock;context');
SELECT m, try(format('SELECT llm_complete(%L, %L)', 'x', m))
  FROM unnest(ARRAY['claude-401', 'claude-429', 'claude-529', 'claude-context',
                    'gemini-401', 'gemini-429', 'gemini-404', 'gemini-context']) m;

-- bad llm_chat requests are refused before any call
SELECT try($$SELECT llm_chat('[]')$$);
SELECT try($$SELECT llm_chat('{"messages": [{"role": "user", "content": "x"}]}')$$);
SELECT try($$SELECT llm_chat('{"model": "demo", "messages": []}')$$);
SELECT try($$SELECT llm_chat('{"model": "nope", "messages": [{"role": "user", "content": "x"}]}')$$);

-- embeddings: one input, or many in one request; deterministic mock vectors
SELECT llmgw.create_model('embed', 'mock', 'text-embedding-mock;dim:4');
SELECT llm_embed('hello world', 'embed');
SELECT ordinality, embedding FROM llm_embed_many(ARRAY['hello world', 'goodbye'], 'embed');
SELECT llm_embed('hello world', 'embed') = embedding AS same_vector
  FROM llm_embed_many(ARRAY['hello world'], 'embed');
SELECT model, status, input_tokens, output_tokens FROM last_usage(3);
SELECT llm_embed(NULL, 'embed') IS NULL AS null_input;
SELECT try($$SELECT llm_embed_many(ARRAY['a', NULL], 'embed')$$);
SELECT try($$SELECT llm_embed('x', 'claude')$$);
-- the dimension asked of the model (the mock honours OpenAI's dimensions)
SELECT array_length(llm_embed('hello world', 'embed', 3), 1) AS asked_3,
       array_length(llm_embed('hello world', 'embed', NULL), 1) AS model_own;
SELECT ordinality, array_length(embedding, 1) AS dims
  FROM llm_embed_many(ARRAY['hello world', 'goodbye'], 'embed', dimensions => 2);
SELECT try($$SELECT llm_embed('x', 'embed', 0)$$);
SELECT try($$SELECT llm_embed_many(ARRAY['x'], 'embed', -5)$$);

-- a streamed chat answer is the same answer, with usage (always requested)
SELECT llm_chat('{"model": "demo", "stream": true, "messages": [{"role": "user", "content": "stream me"}]}')
       -> 'usage' ->> 'output_tokens' AS streamed_output_tokens,
       llm_chat('{"model": "demo", "stream": true, "messages": [{"role": "user", "content": "stream me"}]}')
       -> 'message' ->> 'content' AS streamed_text;

-- a secret that looks like a variable's name is stored, with a warning
SELECT llmgw.create_provider('looks-like-a-name', 'openai', 'https://api.openai.com/v1',
                             secret => 'OPENAI_API_KEY');
SELECT llmgw.set_provider_secret('looks-like-a-name', 'sk-proj-abc_DEF');
SELECT llmgw.drop_provider('looks-like-a-name');
