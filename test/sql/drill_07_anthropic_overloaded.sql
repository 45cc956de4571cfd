-- Failure drill: Anthropic's 529 overloaded.  Retried, then LG503 when
-- nothing else can serve; with a fallback deployment the call succeeds.
SET llmgw.max_retries = 1;
SET llmgw.retry_base_delay = '10ms';
SELECT llmgw.create_model('drill-529', 'drill-anthropic', 'drill-529;status:529');
SELECT try($$SELECT llm_complete('x', 'drill-529')$$);
SELECT attempt, provider, status, error_class, http_status FROM usage_of('drill-529');
SELECT llmgw.create_model('drill-529-fb', 'drill-anthropic', 'drill-529-fb;status:529', priority => 1);
SELECT llmgw.create_model('drill-529-fb', 'mock', 'drill-529-backup', priority => 0);
SELECT llm_complete('overloaded', 'drill-529-fb');
SELECT attempt, provider, status, error_class, http_status, fallback_from FROM usage_of('drill-529-fb');
\! perl test/scripts/mock_count.pl 'drill-529;status:529' 'drill-529-fb;status:529' 'drill-529-backup'
