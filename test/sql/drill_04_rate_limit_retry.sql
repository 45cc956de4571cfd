-- Failure drill: the provider answers 429 with retry-after: 1, then
-- succeeds.  llmgw waits as asked and retries; the caller sees the answer;
-- both attempts are usage rows; the provider saw two requests.
SET llmgw.max_retries = 2;
SELECT llmgw.create_model('drill-429', 'mock', 'drill-429;status:429;fail_first:1');
SELECT clock_timestamp() AS t0 \gset
SELECT llm_complete('after a rate limit', 'drill-429');
SELECT clock_timestamp() - :'t0'::timestamptz >= interval '900 ms' AS waited_as_asked;
SELECT attempt, status, error_class, http_status FROM usage_of('drill-429');
\! perl test/scripts/mock_count.pl 'drill-429;status:429;fail_first:1'
