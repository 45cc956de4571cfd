-- Response cache: a hit is admitted like any call, recorded as a usage row
-- at the model's cache_hit_cost, and never crosses teams unless shared.
SELECT llmgw.create_model('cache-demo', 'mock', 'cache-demo-model', price_model => 'cached-price');
SELECT llmgw.set_price('cached-price', input => 0, output => 0, per_request => 0.01) > 0 AS priced;
UPDATE llmgw.models SET cache_ttl = '1 hour', cache_hit_cost = 0.001 WHERE alias = 'cache-demo';
SELECT llmgw.create_team('cache-a') > 0 AS a, llmgw.create_team('cache-b') > 0 AS b;
SELECT api_key AS key_a FROM llmgw.create_key('cache-a') \gset
SELECT api_key AS key_b FROM llmgw.create_key('cache-b') \gset
SELECT llmgw.create_budget('cache-a budget', 'team', 'cache-a', 'total', 0.031) > 0 AS budget;

SET llmgw.api_key = :'key_a';
SELECT llm_complete('what is the capital of France?', 'cache-demo', max_tokens => 8);
SELECT llm_complete('what is the capital of France?', 'cache-demo', max_tokens => 8);
-- llm_chat requests are keyed on their canonical form: key order does not matter
SELECT llm_chat('{"model": "cache-demo", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}')
       ->'message'->>'content' AS first;
SELECT llm_chat('{"messages": [{"content": "hi", "role": "user"}], "max_tokens": 8, "model": "cache-demo"}')
       ->'message'->>'content' AS second;
RESET llmgw.api_key;
\! perl test/scripts/mock_count.pl 'cache-demo-model'

-- hits are budgeted: 0.01 + 0.001 + 0.01 + 0.001 spent, and admission reserves a
-- provider call's worst case (0.01), which no longer fits in 0.031
SET llmgw.api_key = :'key_a';
SELECT try($$SELECT llm_complete('what is the capital of France?', 'cache-demo', max_tokens => 8)$$) ~ '^LG010'
       AS hit_refused_by_budget;
RESET llmgw.api_key;

-- another team asks the same: its own miss, never team a's answer
SET llmgw.api_key = :'key_b';
SELECT llm_complete('what is the capital of France?', 'cache-demo', max_tokens => 8);
RESET llmgw.api_key;
\! perl test/scripts/mock_count.pl 'cache-demo-model'

SELECT t.name AS team, u.cache_hit, u.provider, u.input_tokens, u.output_tokens, u.cost, u.price_id IS NULL AS no_price
  FROM llmgw.usage u JOIN llmgw.teams t ON t.id = u.team_id
 WHERE u.model = 'cache-demo' ORDER BY u.id;
SELECT spent, ledger_spent FROM llmgw.budget_status WHERE name = 'cache-a budget';
SELECT team, sum(calls) AS calls, sum(cache_hits) AS hits, sum(cost) AS cost
  FROM llmgw.spend_daily WHERE model = 'cache-demo' GROUP BY team ORDER BY team;
SELECT model, entries, hits FROM llmgw.cache_stats WHERE model = 'cache-demo' ORDER BY scope;

-- llmgw.cache = off skips the cache; shared models serve every team
SET llmgw.api_key = :'key_b';
SET llmgw.cache = off;
SELECT llm_complete('what is the capital of France?', 'cache-demo', max_tokens => 8) IS NOT NULL AS answered;
RESET llmgw.cache;
UPDATE llmgw.models SET cache_shared = true WHERE alias = 'cache-demo';
SELECT llm_complete('shared question', 'cache-demo', max_tokens => 8) IS NOT NULL AS answered;
SET llmgw.api_key = :'key_a';
UPDATE llmgw.budgets SET limit_amount = 1 WHERE name = 'cache-a budget';
SELECT llm_complete('shared question', 'cache-demo', max_tokens => 8) IS NOT NULL AS answered;
RESET llmgw.api_key;
SELECT count(*) FILTER (WHERE cache_hit) AS hits, count(*) FILTER (WHERE NOT cache_hit) AS misses
  FROM llmgw.usage WHERE model = 'cache-demo';
\! perl test/scripts/mock_count.pl 'cache-demo-model'

-- a model without cache_ttl caches only for sessions that ask
SET llmgw.cache = on;
SELECT llm_complete('session cache', 'demo'), llm_complete('session cache', 'demo');
RESET llmgw.cache;
SELECT count(*) FILTER (WHERE cache_hit) AS demo_hits FROM llmgw.usage WHERE model = 'demo';

SELECT llmgw.clear_cache('cache-demo') > 0 AS cleared;
SELECT count(*) AS left_for_cached FROM llmgw.cache_stats WHERE model = 'cache-demo';
DELETE FROM llmgw.budgets WHERE name = 'cache-a budget';
