-- Failure drill: a deployment that keeps failing cools down.  After
-- llmgw.cooldown_failures (3) failures in a row the router leaves it out
-- for llmgw.cooldown_time; then one call probes it.
ALTER SYSTEM SET llmgw.cooldown_time = '1500ms';
SELECT pg_reload_conf();
SELECT pg_sleep(0.3);
SET llmgw.max_retries = 0;
SELECT llmgw.create_model('drill-cool', 'mock', 'drill-cool-a;status:500', priority => 1);
SELECT llmgw.create_model('drill-cool', 'mock', 'drill-cool-b', priority => 0);
SELECT llm_complete('1', 'drill-cool'), llm_complete('2', 'drill-cool'), llm_complete('3', 'drill-cool');
SELECT upstream_model, state, consecutive_failures, successes, failures, cooldowns
  FROM llmgw.deployment_health WHERE model = 'drill-cool' ORDER BY priority DESC;
-- cooling down: the next calls go straight to the backup
SELECT llm_complete('4', 'drill-cool'), llm_complete('5', 'drill-cool');
\! perl test/scripts/mock_count.pl 'drill-cool-a;status:500' 'drill-cool-b'
-- after the cooldown one call probes the primary; it fails again and cools down again
SELECT pg_sleep(1.6);
SELECT llm_complete('6', 'drill-cool');
\! perl test/scripts/mock_count.pl 'drill-cool-a;status:500' 'drill-cool-b'
SELECT upstream_model, state, failures, cooldowns
  FROM llmgw.deployment_health WHERE model = 'drill-cool' ORDER BY priority DESC;
SELECT attempt, upstream_model, status, error_class FROM usage_of('drill-cool');
ALTER SYSTEM RESET llmgw.cooldown_time;
SELECT pg_reload_conf();
