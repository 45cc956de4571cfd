-- HTTP 413 (Anthropic request_too_large, OpenAI code request_too_large) is
-- LG009 request_too_large: not retried, not sent to a fallback deployment.
\getenv mock_url LLMGW_MOCK_URL
SELECT regexp_replace(:'mock_url', '/v1$', '') AS mock_root \gset
SELECT llmgw.create_provider('rtl-anthropic', 'anthropic', :'mock_root' || '/v1',
                             secret => 'env:LLMGW_TEST_KEY');
-- retries allowed: a 413 must not use them
SET llmgw.max_retries = 2;
SET llmgw.retry_base_delay = '10ms';

-- each alias has a second deployment of lower priority
SELECT llmgw.create_model('rtl-openai', 'mock', 'rtl-openai;status:413', priority => 1);
SELECT llmgw.create_model('rtl-openai', 'rtl-anthropic', 'rtl-openai-backup', priority => 0);
SELECT llmgw.create_model('rtl-anthropic', 'rtl-anthropic', 'rtl-anthropic;status:413', priority => 1);
SELECT llmgw.create_model('rtl-anthropic', 'mock', 'rtl-anthropic-backup', priority => 0);

SELECT try($$SELECT llm_complete('too large', 'rtl-openai')$$);
SELECT try($$SELECT llm_chat('{"model": "rtl-anthropic", "messages": [{"role": "user", "content": "too large"}]}')$$);
-- one attempt each, on the first deployment
SELECT * FROM usage_of('rtl-openai');
SELECT * FROM usage_of('rtl-anthropic');
-- streamed, the same
SELECT try($$SELECT llm_chat('{"model": "rtl-openai", "stream": true, "messages": [{"role": "user", "content": "too large"}]}')$$);
SELECT count(*) AS attempts FROM llmgw.usage WHERE model = 'rtl-openai';
-- what the mock saw: nothing reached the second deployments
\! perl test/scripts/mock_count.pl 'rtl-openai;status:413' 'rtl-openai-backup' 'rtl-anthropic;status:413' 'rtl-anthropic-backup'

RESET llmgw.max_retries;
RESET llmgw.retry_base_delay;
SELECT llmgw.drop_model('rtl-openai'), llmgw.drop_model('rtl-anthropic');
SELECT llmgw.drop_provider('rtl-anthropic');
