-- Failure drill: a provider that does not answer in time.  The transfer is
-- aborted at llmgw.request_timeout, recorded as a timeout, and the call
-- falls back to the next deployment.
SET llmgw.max_retries = 0;
\getenv mock_url LLMGW_MOCK_URL
SET llmgw.request_timeout = '300ms';
SELECT llmgw.create_model('drill-timeout', 'mock', 'drill-hang;delay:5000', priority => 1);
SELECT llmgw.create_model('drill-timeout', 'mock', 'drill-quick', priority => 0);
SELECT llm_complete('in time', 'drill-timeout');
SELECT attempt, upstream_model, status, error_class, http_status, fallback_from
  FROM usage_of('drill-timeout');
\! perl test/scripts/mock_count.pl 'drill-hang;delay:5000' 'drill-quick'

-- a provider that goes silent: idle_timeout_ms ends the attempt long before timeout_ms
RESET llmgw.request_timeout;
SELECT llmgw.create_provider('drill-silent', 'openai_compatible', :'mock_url',
                             secret => 'env:LLMGW_TEST_KEY', idle_timeout_ms => 1000);
SELECT llmgw.create_model('drill-idle', 'drill-silent', 'drill-silent;stall');
SELECT clock_timestamp() AS t0 \gset
SELECT try($$SELECT llm_complete('anyone there?', 'drill-idle')$$);
SELECT clock_timestamp() - :'t0'::timestamptz < interval '5 seconds' AS well_before_timeout_ms;
SELECT attempt, status, error_class FROM usage_of('drill-idle');

-- an overall deadline per call: no attempt or retry wait runs past llmgw.call_deadline
SET llmgw.max_retries = 3;
SET llmgw.retry_base_delay = '2s';
SET llmgw.call_deadline = '500ms';
SELECT llmgw.create_model('drill-deadline', 'mock', 'drill-deadline;status:500');
SELECT clock_timestamp() AS t1 \gset
SELECT try($$SELECT llm_complete('x', 'drill-deadline')$$);
SELECT clock_timestamp() - :'t1'::timestamptz < interval '1500 ms' AS within_the_deadline;
SELECT count(*) AS attempts FROM usage_of('drill-deadline');
RESET llmgw.call_deadline;
RESET llmgw.retry_base_delay;
