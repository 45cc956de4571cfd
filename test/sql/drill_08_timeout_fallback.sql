-- Failure drill: a provider that does not answer in time.  The transfer is
-- aborted at llmgw.request_timeout, recorded as a timeout, and the call
-- falls back to the next deployment.
SET llmgw.max_retries = 0;
SET llmgw.request_timeout = '300ms';
SELECT llmgw.create_model('drill-timeout', 'mock', 'drill-hang;delay:5000', priority => 1);
SELECT llmgw.create_model('drill-timeout', 'mock', 'drill-quick', priority => 0);
SELECT llm_complete('in time', 'drill-timeout');
SELECT attempt, upstream_model, status, error_class, http_status, fallback_from
  FROM usage_of('drill-timeout');
\! perl test/scripts/mock_count.pl 'drill-hang;delay:5000' 'drill-quick'
