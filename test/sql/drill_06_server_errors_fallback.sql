-- Failure drill: the provider answers 500, or 503.  Each is retried on the
-- same deployment (llmgw.max_retries), then the call falls back to a second
-- provider, whose wire format it is translated into.
SET llmgw.max_retries = 1;
SET llmgw.retry_base_delay = '10ms';
SELECT llmgw.create_model('drill-500', 'mock', 'drill-500;status:500', priority => 1);
SELECT llmgw.create_model('drill-500', 'drill-anthropic', 'drill-500-claude', priority => 0);
SELECT llm_complete('server error', 'drill-500');
SELECT attempt, provider, upstream_model, status, error_class, http_status, fallback_from
  FROM usage_of('drill-500');
SELECT llmgw.create_model('drill-503', 'mock', 'drill-503;status:503', priority => 1);
SELECT llmgw.create_model('drill-503', 'drill-anthropic', 'drill-503-claude', priority => 0);
SELECT llm_complete('unavailable', 'drill-503');
SELECT attempt, provider, upstream_model, status, error_class, http_status, fallback_from
  FROM usage_of('drill-503');
\! perl test/scripts/mock_count.pl 'drill-500;status:500' 'drill-500-claude' 'drill-503;status:503' 'drill-503-claude'
SELECT model, attempts, provider, status FROM llmgw.requests
 WHERE model IN ('drill-500', 'drill-503') ORDER BY model;
