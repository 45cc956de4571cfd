-- Failure drill: a hard budget is exhausted.  The call is refused before
-- any provider is called (LG010 names the budget, its spend, its limit and
-- when it resets), and an alert records that the limit was reached.
SELECT llmgw.create_model('drill-budget', 'mock', 'drill-budget-model', price_model => 'drill-price');
SELECT llmgw.set_price('drill-price', input => 0, output => 0, per_request => 0.5) > 0 AS priced;
SELECT llmgw.create_team('drill-budget-team') > 0 AS team;
SELECT llmgw.create_budget('drill hard', 'team', 'drill-budget-team', 'total', 1) > 0 AS budget;
SELECT api_key AS key FROM llmgw.create_key('drill-budget-team') \gset
SET llmgw.api_key = :'key';
SELECT llm_complete('one', 'drill-budget', max_tokens => 3);
SELECT llm_complete('two', 'drill-budget', max_tokens => 3);
SELECT try($$SELECT llm_complete('three', 'drill-budget', max_tokens => 3)$$);
RESET llmgw.api_key;
SELECT attempt, status, cost FROM usage_of('drill-budget');
SELECT budget_name, kind, limit_amount, spent FROM llmgw.alerts WHERE budget_name = 'drill hard';
\! perl test/scripts/mock_count.pl 'drill-budget-model'
DELETE FROM llmgw.budgets WHERE name = 'drill hard';
