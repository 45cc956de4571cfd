-- Failure drill: the provider rejects llmgw's secret (HTTP 401).  Not
-- retried (another try cannot fix a key); LG401 names the provider, and the
-- secret never appears.  One attempt, one usage row, although
-- llmgw.max_retries allows two more.
SET llmgw.max_retries = 2;
\getenv mock_url LLMGW_MOCK_URL
SELECT llmgw.create_provider('drill-badsecret', 'openai_compatible', :'mock_url',
                             secret => 'sk-drill-wrong-secret');
SELECT llmgw.create_model('drill-401', 'drill-badsecret', 'drill-401-model');
SELECT try($$SELECT llm_complete('x', 'drill-401')$$);
SELECT attempt, provider, status, error_class, http_status FROM usage_of('drill-401');
