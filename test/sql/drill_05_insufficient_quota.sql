-- Failure drill: 429 insufficient_quota.  Same status as a rate limit, but
-- waiting does not help: never retried, and the call falls back to the next
-- deployment (here another provider, Anthropic's wire format).
SET llmgw.max_retries = 2;
SELECT llmgw.create_model('drill-quota', 'mock', 'drill-quota;quota', priority => 1);
SELECT llmgw.create_model('drill-quota', 'drill-anthropic', 'drill-quota-claude', priority => 0);
SELECT llm_complete('out of credit', 'drill-quota');
SELECT attempt, provider, upstream_model, status, error_class, http_status, fallback_from
  FROM usage_of('drill-quota');
\! perl test/scripts/mock_count.pl 'drill-quota;quota' 'drill-quota-claude'
-- without a fallback the caller gets LG402
SELECT llmgw.create_model('drill-quota-alone', 'mock', 'drill-quota-alone;quota');
SELECT try($$SELECT llm_complete('x', 'drill-quota-alone')$$);
