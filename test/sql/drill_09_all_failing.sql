-- Failure drill: every deployment fails.  The error is the last one's, and
-- its detail names every attempt; each attempt that reached a provider is a
-- usage row.
SET llmgw.max_retries = 0;
SELECT llmgw.create_provider('drill-down', 'openai_compatible', 'http://127.0.0.1:1/v1');
SELECT llmgw.create_model('drill-all', 'mock', 'drill-all-a;status:500', priority => 3);
SELECT llmgw.create_model('drill-all', 'drill-anthropic', 'drill-all-b;status:529', priority => 2);
SELECT llmgw.create_model('drill-all', 'drill-down', 'drill-all-c', priority => 1);
SELECT try($$SELECT llm_complete('x', 'drill-all')$$);
SELECT attempt, provider, status, error_class, http_status, fallback_from FROM usage_of('drill-all');
\! perl test/scripts/mock_count.pl 'drill-all-a;status:500' 'drill-all-b;status:529'
