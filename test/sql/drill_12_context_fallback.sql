-- Failure drill: the prompt exceeds the model's context window.  Not
-- retried; the call falls back to the next deployment, a larger model.
SET llmgw.max_retries = 2;
SELECT llmgw.create_model('drill-context', 'mock', 'drill-small;context', priority => 1);
SELECT llmgw.create_model('drill-context', 'mock', 'drill-large', priority => 0);
SELECT llm_complete('a long document', 'drill-context');
SELECT attempt, upstream_model, status, error_class, http_status, fallback_from
  FROM usage_of('drill-context');
\! perl test/scripts/mock_count.pl 'drill-small;context' 'drill-large'
