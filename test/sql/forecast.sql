-- Budget forecasts (docs/money.md#forecasts): the run-rate of a budget and
-- when it runs out at that rate, on a constructed spend history, and the
-- forecast alert the workers raise once per budget and period.
SET TimeZone = 'UTC';
SET DateStyle = ISO;

-- The arithmetic, at fixed times: llmgw.budget_projection(period, limit,
-- spent, since, at).  March 2026 has 31 days.
SELECT 'month, 60 of 100 in 10 days' AS "case", *
  FROM llmgw.budget_projection('month', 100, 60, '2026-03-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'month, 10 of 100: lasts the month', *
  FROM llmgw.budget_projection('month', 100, 10, '2026-03-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'month, 120 of 100: ran out on the 9th', *
  FROM llmgw.budget_projection('month', 100, 120, '2026-03-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'month, nothing spent', *
  FROM llmgw.budget_projection('month', 100, 0, '2026-03-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
-- an hour into the month: the rate is measured over 31 hours, not one
SELECT 'month, 0.2 in the first hour', *
  FROM llmgw.budget_projection('month', 100, 0.2, '2026-03-01 00:00+00', '2026-03-01 01:00+00')
UNION ALL
-- half an hour into a day: over an hour
SELECT 'day, 1 of 10 in half an hour', *
  FROM llmgw.budget_projection('day', 10, 1, '2026-03-11 00:00+00', '2026-03-11 00:30+00')
UNION ALL
SELECT 'week, 12 of 100 from Monday', *
  FROM llmgw.budget_projection('week', 100, 12, '2026-03-09 00:00+00', '2026-03-11 00:00+00')
UNION ALL
-- a total budget never resets: it runs out whenever the rate takes it there
SELECT 'total, 69 of 100 in 69 days', *
  FROM llmgw.budget_projection('total', 100, 69, '2026-01-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'total, more than a century away', *
  FROM llmgw.budget_projection('total', 100, 0.000001, '2026-01-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
-- huge and odd inputs: no overflow, no error
SELECT 'month, a limit of 1e30', *
  FROM llmgw.budget_projection('month', 1e30, 0.0000000001, '2026-03-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'total, a limit of 1e30', *
  FROM llmgw.budget_projection('total', 1e30, 1e29, '2026-01-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'month, a negative spend (a credit)', *
  FROM llmgw.budget_projection('month', 100, -5, '2026-03-01 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'month, since after at', *
  FROM llmgw.budget_projection('month', 100, 60, '2026-03-20 00:00+00', '2026-03-11 00:00+00')
UNION ALL
SELECT 'NULL spend', *
  FROM llmgw.budget_projection('month', 100, NULL, '2026-03-01 00:00+00', '2026-03-11 00:00+00');

-- A spend history in March 2026, written as the workers write usage rows
-- (the rollup trigger counts them): 6 a day from the 1st to the 10th, 9 on
-- 20 February, 50 on the 15th (after the time asked about), and 1000 in
-- another currency.  In XTS, ISO's code for tests, so that no budget in
-- USD of another test ever counts it.
SELECT llmgw.create_model('fc-march', 'mock', 'fc-march-model');
INSERT INTO llmgw.usage (request_id, started_at, role_name, model, provider, upstream_model,
                         status, cost, currency)
SELECT gen_random_uuid(), t, 'regress_fc_history', 'fc-march', 'mock', 'fc-march-model', 'ok',
       cost, currency
  FROM (SELECT d + interval '1 hour' AS t, 6 AS cost, 'XTS' AS currency
          FROM generate_series('2026-03-01 00:00+00'::timestamptz, '2026-03-10 00:00+00', '1 day') d
        UNION ALL SELECT '2026-02-20 10:00+00', 9, 'XTS'
        UNION ALL SELECT '2026-03-15 10:00+00', 50, 'XTS'
        UNION ALL SELECT '2026-03-05 10:00+00', 1000, 'XXX') h;
SELECT day, sum(cost) AS cost, currency FROM llmgw.usage_daily WHERE model = 'fc-march'
 GROUP BY day, currency ORDER BY day, currency;

SELECT llmgw.create_budget('fc march month', 'model', 'fc-march', 'month', 100, 'soft', 'XTS') AS b_month \gset
SELECT llmgw.create_budget('fc march week', 'model', 'fc-march', 'week', 100, 'soft', 'XTS') AS b_week \gset
SELECT llmgw.create_budget('fc march day', 'model', 'fc-march', 'day', 10, 'soft', 'XTS') AS b_day \gset
SELECT llmgw.create_budget('fc march total', 'model', 'fc-march', 'total', 100, 'soft', 'XTS') AS b_total \gset
SELECT llmgw.create_budget('fc march xxx', 'model', 'fc-march', 'month', 2000, 'soft', 'XXX') AS b_xxx \gset

-- llmgw.budget_forecast(budget, at): the budget's spend from the rollups up
-- to at's day, its rate and its forecast.  At midnight of the 11th: 60 in
-- ten days of the month, 6 a day, runs out on the 17th at 16:00
SELECT b.name, f.*
  FROM llmgw.budgets b,
       LATERAL llmgw.budget_forecast(b, CASE b.period WHEN 'day' THEN '2026-03-10 12:00+00'::timestamptz
                                                      ELSE '2026-03-11 00:00+00' END) f
 WHERE b.model = 'fc-march' ORDER BY b.id;
-- the same as the arithmetic of the figures (the month: 60 spent since the 1st)
SELECT f.run_rate = p.run_rate AND f.exhausts_at = p.exhausts_at
       AND f.projected_spent = p.projected_spent AS same_as_projection
  FROM llmgw.budgets b,
       LATERAL llmgw.budget_forecast(b, '2026-03-11 00:00+00') f,
       LATERAL llmgw.budget_projection('month', 100, 60, '2026-03-01 00:00+00', '2026-03-11 00:00+00') p
 WHERE b.id = :b_month;
-- exact figures: 6 a day; 40 left at 6 a day is 6 days and 16 hours
SELECT run_rate = 6 AS six_a_day,
       exhausts_at = '2026-03-11 00:00+00'::timestamptz + interval '6 days 16 hours' AS on_the_17th,
       projected_spent = 60 + 6 * 21 AS at_the_reset
  FROM llmgw.budgets b, LATERAL llmgw.budget_forecast(b, '2026-03-11 00:00+00')
 WHERE b.id = :b_month;
-- the total budget: 69 since 20 February (19 days), 31 left
SELECT run_rate = round(69 / 19.0, 10) AS rate_69_in_19_days,
       exhausts_at = '2026-03-11 00:00+00'::timestamptz
                     + make_interval(secs => round(31 * 19 * 86400 / 69.0, 6)::float8) AS when_31_more
  FROM llmgw.budgets b, LATERAL llmgw.budget_forecast(b, '2026-03-11 00:00+00')
 WHERE b.id = :b_total;

-- budget_status has the forecast now: nothing of March counts in this
-- period, so the month, week and day budgets forecast nothing
SELECT name, spent, run_rate, exhausts_at, projected_spent
  FROM llmgw.budget_status WHERE name LIKE 'fc march %' AND period <> 'total' ORDER BY id;
-- the total budget counts the whole history: 119 of 100, run out already
SELECT name, spent, run_rate > 0 AS has_rate, exhausts_at < now() AS ran_out_in_the_past,
       projected_spent
  FROM llmgw.budget_status WHERE name = 'fc march total';
DELETE FROM llmgw.budgets WHERE model = 'fc-march';

-- Live: a month budget 0.003 short of its limit, with its spend at the
-- start of this month, and one with nothing spent.  Each call of fc-live
-- costs exactly 0.001.
SELECT llmgw.create_usage_partitions(0) >= 0 AS this_months_partition;
SELECT llmgw.create_model('fc-live', 'mock', 'fc-live-model', price_model => 'fc-live-price');
SELECT llmgw.create_model('fc-calm', 'mock', 'fc-calm-model', price_model => 'fc-live-price');
SELECT llmgw.set_price('fc-live-price', input => 0, output => 0, per_request => 0.001,
                       currency => 'XTS') > 0 AS priced;
INSERT INTO llmgw.usage (request_id, started_at, role_name, model, provider, upstream_model,
                         status, cost, currency)
VALUES (gen_random_uuid(), llmgw.period_start('month'), 'regress_fc_history', 'fc-live', 'mock',
        'fc-live-model', 'ok', 99.997, 'XTS');
SELECT llmgw.create_budget('fc live', 'model', 'fc-live', 'month', 100, 'soft', 'XTS') AS b_live \gset
SELECT llmgw.create_budget('fc calm', 'model', 'fc-calm', 'month', 100, 'soft', 'XTS') AS b_calm \gset

-- Its run-rate is its spend over the time elapsed in the month (at least
-- 31 hours, a 24th of it), and it runs out before the month ends
SELECT spent, run_rate = trim_scale(round(spent * 86400 / greatest(
           extract(epoch FROM now() - period_start),
           extract(epoch FROM resets_at - period_start) / 24), 10)) AS rate_over_the_month,
       exhausts_at > now() AND exhausts_at < resets_at AS runs_out_before_reset,
       projected_spent > limit_amount AS projected_over
  FROM llmgw.budget_status WHERE id = :b_live;

-- Three calls: the first makes the workers forecast that it runs out (one
-- alert), the second adds nothing, the third reaches the limit (its own alert)
SELECT llm_complete('one', 'fc-live', max_tokens => 3);
SELECT llm_complete('two', 'fc-live', max_tokens => 3);
SELECT llm_complete('three', 'fc-live', max_tokens => 3);
-- the calm budget: 0.001 spent is no reason to worry, at any time of the month
SELECT llm_complete('calm', 'fc-calm', max_tokens => 3);
SELECT budget_name, kind, spent, limit_amount,
       period_start = llmgw.period_start('month') AS this_period,
       run_rate > 0 AS has_rate,
       exhausts_at > created_at - interval '1 second' AND exhausts_at < llmgw.period_end('month')
           AS runs_out_before_reset
  FROM llmgw.alerts WHERE budget_id IN (:b_live, :b_calm) ORDER BY id;
SELECT spent, ledger_spent, exhausts_at <= now() AS ran_out
  FROM llmgw.budget_status WHERE id = :b_live;

-- Who may read forecasts: admin and finance, not a plain caller
CREATE ROLE regress_fc_user IN ROLE llmgw_user;
CREATE ROLE regress_fc_fin IN ROLE llmgw_finance;
SET ROLE regress_fc_fin;
SELECT name, run_rate IS NOT NULL AS has_rate FROM llmgw.budget_status WHERE name LIKE 'fc %' ORDER BY id;
SELECT count(*) AS forecast_alerts FROM llmgw.alerts WHERE kind = 'forecast_exhaustion' AND budget_name LIKE 'fc %';
RESET ROLE;
SET ROLE regress_fc_user;
SELECT try('SELECT * FROM llmgw.budget_status');
SELECT try($$SELECT * FROM llmgw.budget_projection('month', 1, 1, now(), now())$$);
SELECT try($$SELECT * FROM llmgw.alerts$$);
RESET ROLE;
DROP ROLE regress_fc_user, regress_fc_fin;
DELETE FROM llmgw.budgets WHERE id IN (:b_live, :b_calm);
