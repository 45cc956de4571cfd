-- Budgets, alerts and rate limits.  Every call of model "metered" costs
-- exactly 0.01 USD (a per-request price), so limits fall on whole calls.
SELECT llmgw.create_model('metered', 'mock', 'metered-model');
SELECT llmgw.create_model('metered-500', 'mock', 'metered-model;status:500',
                          price_model => 'metered-model');
SELECT llmgw.set_price('metered-model', input => 0, output => 0, per_request => 0.01) > 0 AS priced;
SELECT llmgw.create_team('ops') AS ops \gset
SELECT key_id AS k, api_key AS key FROM llmgw.create_key('ops', 'ops key') \gset
SELECT llmgw.create_budget('ops key, lifetime', 'key', :'k', 'total', 0.03) > 0 AS hard;
SELECT llmgw.create_budget('ops team, daily', 'team', 'ops', 'day', 0.015, 'soft') > 0 AS soft;

-- a hard budget of 3 calls: the 4th is refused before any provider is called
SET llmgw.api_key = :'key';
SELECT llm_complete('one', 'metered', max_tokens => 5);
-- a failed call costs nothing
SELECT try($$SELECT llm_complete('x', 'metered-500')$$) ~ '^LG500' AS failed_call;
SELECT llm_complete('two', 'metered', max_tokens => 5);
SELECT llm_complete('three', 'metered', max_tokens => 5);
SELECT try($$SELECT llm_complete('four', 'metered', max_tokens => 5)$$) AS exhausted;
-- a model without a price cannot be checked against a hard budget
SELECT try($$SELECT llm_complete('x', 'demo')$$) AS unpriced_refused;
RESET llmgw.api_key;
SELECT status, cost, currency, unpriced FROM llmgw.usage WHERE key_id = :k ORDER BY id;

-- the soft budget let the calls through and raised one alert; the hard one
-- raised its own when it was reached (forecasts, which depend on the time
-- of day, are test/sql/forecast.sql's)
SELECT budget_name, kind, limit_amount, spent, currency, team_id = :ops AS team
  FROM llmgw.alerts WHERE kind <> 'forecast_exhaustion' ORDER BY id;

-- finance reconciles: usage rows = rollups = ledger, to the last digit
SELECT name, scope, CASE scope WHEN 'key' THEN left(target, 4) || '…' ELSE target END AS target, period, enforcement, limit_amount, spent, reserved, remaining,
       ledger_spent, resets_at = llmgw.period_end(period) AS resets_at_period_end
  FROM llmgw.budget_status ORDER BY id;
SELECT (SELECT sum(cost) FROM llmgw.usage WHERE key_id = :k) AS usage_rows,
       (SELECT sum(cost) FROM llmgw.spend_daily WHERE team = 'ops') AS rollups,
       (SELECT spent FROM llmgw.budget_status WHERE name = 'ops key, lifetime') AS budget;

-- a budget per role, for calls without a key; the message says when it resets
CREATE ROLE regress_spender LOGIN IN ROLE llmgw_user;
GRANT EXECUTE ON FUNCTION try(text) TO regress_spender;
SELECT llmgw.create_budget('spender, monthly', 'role', 'regress_spender', 'month', 0.01) > 0 AS role_budget;
SET ROLE regress_spender;
SELECT llm_complete('once', 'metered', max_tokens => 5);
SELECT regexp_replace(try($$SELECT llm_complete('twice', 'metered', max_tokens => 5)$$),
                      'resets at .*', 'resets at <start of next month>') AS role_exhausted;
RESET ROLE;

-- raising a limit takes effect at once
UPDATE llmgw.budgets SET limit_amount = 0.04 WHERE name = 'ops key, lifetime';
SET llmgw.api_key = :'key';
SELECT llm_complete('four, after the raise', 'metered', max_tokens => 5);
RESET llmgw.api_key;

-- rate limits: 2 requests per minute on a key
SELECT api_key AS slow_key FROM llmgw.create_key('ops', 'rpm 2', rpm_limit => 2) \gset
SET llmgw.api_key = :'slow_key';
SELECT llm_complete('a', 'metered', max_tokens => 5);
SELECT llm_complete('b', 'metered', max_tokens => 5);
SELECT regexp_replace(regexp_replace(try($$SELECT llm_complete('c', 'metered', max_tokens => 5)$$),
       'lgw_[0-9a-f]+', 'lgw_…'), 'after [0-9.]+ seconds', 'after <n> seconds') AS rpm_limited;
-- tokens per minute: a call may take the bucket into debt, the next waits
SELECT api_key AS tpm_key FROM llmgw.create_key('ops', 'tpm 10', tpm_limit => 10) \gset
SET llmgw.api_key = :'tpm_key';
SELECT llm_complete('a longer prompt that uses more than ten tokens in all', 'metered',
                    max_tokens => 20) IS NOT NULL AS first_call;
SELECT regexp_replace(regexp_replace(try($$SELECT llm_complete('d', 'metered', max_tokens => 5)$$),
       'lgw_[0-9a-f]+', 'lgw_…'), 'after [0-9.]+ seconds', 'after <n> seconds') AS tpm_limited;
RESET llmgw.api_key;

-- a deployment's own limit sends the router to the next deployment
SELECT llmgw.create_model('spread', 'mock', 'dep-a', priority => 1, rpm_limit => 1,
                          price_model => 'metered-model');
SELECT llmgw.create_model('spread', 'mock', 'dep-b', price_model => 'metered-model');
SELECT llm_complete('first', 'spread');
SELECT llm_complete('second', 'spread');
SELECT upstream_model, status, cost FROM llmgw.usage WHERE model = 'spread' ORDER BY id;

REVOKE EXECUTE ON FUNCTION try(text) FROM regress_spender;
DROP ROLE regress_spender;
DELETE FROM llmgw.budgets;
