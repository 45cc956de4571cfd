-- Failure drill: a soft budget is reached.  Calls go on; llmgw records an
-- alert (and sends NOTIFY llmgw_alerts, see test/t/004_policy_race.pl) once
-- per period.
SELECT llmgw.create_model('drill-soft', 'mock', 'drill-soft-model', price_model => 'drill-soft-price');
SELECT llmgw.set_price('drill-soft-price', input => 0, output => 0, per_request => 0.4) > 0 AS priced;
SELECT llmgw.create_budget('drill soft', 'model', 'drill-soft', 'month', 1, 'soft') > 0 AS budget;
SELECT llm_complete('one', 'drill-soft', max_tokens => 3);
SELECT llm_complete('two', 'drill-soft', max_tokens => 3);
SELECT llm_complete('three', 'drill-soft', max_tokens => 3);
SELECT llm_complete('four', 'drill-soft', max_tokens => 3);
-- (a forecast alert, which depends on the day of the month, may come first)
SELECT budget_name, kind, limit_amount, spent FROM llmgw.alerts
 WHERE budget_name = 'drill soft' AND kind <> 'forecast_exhaustion';
SELECT spent, remaining FROM llmgw.budget_status WHERE name = 'drill soft';
DELETE FROM llmgw.budgets WHERE name = 'drill soft';
