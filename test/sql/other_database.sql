-- llmgw serves one database (llmgw.database = 'postgres'): calls from any
-- other database are refused (55000) before anything reaches a provider.
SET client_min_messages = warning;
DROP DATABASE IF EXISTS regress_other;
RESET client_min_messages;
CREATE DATABASE regress_other;
\getenv mock_url LLMGW_MOCK_URL
\c regress_other
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('od-mock', 'openai_compatible', :'mock_url',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_model('od-demo', 'od-mock', 'od-model');
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT llm_complete('hello', 'od-demo');
\echo :LAST_ERROR_SQLSTATE
SELECT llm_chat('{"model": "od-demo", "messages": [{"role": "user", "content": "hello"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM llm_complete_many(ARRAY['a', 'b'], 'od-demo', on_error => 'continue');
\echo :LAST_ERROR_SQLSTATE
SELECT llm_embed('hello', 'od-demo');
\echo :LAST_ERROR_SQLSTATE
SELECT llmgw.submit('{"model": "od-demo", "messages": [{"role": "user", "content": "hello"}]}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS queued FROM llmgw.async_calls;
SELECT count(*) AS usage_rows FROM llmgw.usage;
\set SHOW_CONTEXT errors
\c postgres
\! perl test/scripts/mock_count.pl 'od-model'
-- and from the served database calls work as before
SELECT llm_complete('still here', 'demo');
DROP DATABASE regress_other;
