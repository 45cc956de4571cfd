/* llmgw--0.2--0.3.sql: see it (docs/observability.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.3'" to load this file. \quit

-- ==== Forecasts and who is waiting (docs/money.md, docs/operations.md) ====

-- A budget's run-rate and when it runs out at that rate.  The rate is the
-- spend since `since` (the start of the period; for a total budget, its
-- first day of spend) per day, measured over at least a 24th of the period
-- (one day for a total budget), so that the first call of a period does not
-- forecast its end.  exhausts_at is NULL when the budget does not run out
-- before its period resets (for a total budget: within a century), or has
-- spent nothing; in the past when it has run out already.  The workers
-- raise a forecast alert with the same arithmetic.
CREATE FUNCTION llmgw.budget_projection(period text, limit_amount numeric, spent numeric,
                                        since timestamptz, at timestamptz,
                                        OUT run_rate numeric, OUT exhausts_at timestamptz,
                                        OUT projected_spent numeric)
RETURNS record
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
SELECT CASE WHEN spent > 0 THEN pg_catalog.trim_scale(pg_catalog.round(spent * 86400 / w.span, 10))
            ELSE 0 END,
       CASE WHEN spent > 0
             AND (limit_amount - spent) * w.span / spent < coalesce(w.left_s, 3155760000)
            THEN at + pg_catalog.make_interval(
                          secs => ((limit_amount - spent) * w.span / spent)::float8) END,
       CASE WHEN w.left_s IS NULL THEN NULL
            WHEN spent > 0
            THEN pg_catalog.trim_scale(pg_catalog.round(
                     spent + spent * greatest(w.left_s, 0) / w.span, 10))
            ELSE spent END
  FROM (SELECT greatest(EXTRACT(epoch FROM at - since),
                                   CASE WHEN period = 'total' THEN 86400
                                        ELSE EXTRACT(epoch FROM llmgw.period_end(period, at)
                                                              - llmgw.period_start(period, at)) / 24
                                   END) AS span,
               CASE WHEN period <> 'total'
                    THEN EXTRACT(epoch FROM llmgw.period_end(period, at) - at)
               END AS left_s) w
$$;

-- A budget's spend, run-rate and forecast at a time, from the rollups
CREATE FUNCTION llmgw.budget_forecast(b llmgw.budgets, at timestamptz DEFAULT pg_catalog.now(),
                                      OUT spent numeric, OUT since timestamptz,
                                      OUT run_rate numeric, OUT exhausts_at timestamptz,
                                      OUT projected_spent numeric)
RETURNS record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT s.spent, s.since, p.run_rate, p.exhausts_at, p.projected_spent
  FROM (SELECT coalesce(sum(d.cost), 0) AS spent,
               CASE WHEN b.period = 'total'
                    THEN coalesce(min(d.day) FILTER (WHERE d.cost <> 0)::timestamp AT TIME ZONE 'UTC', at)
                    ELSE llmgw.period_start(b.period, at) END AS since
          FROM llmgw.usage_daily d
         WHERE d.currency = b.currency
           AND d.day >= (llmgw.period_start(b.period, at) AT TIME ZONE 'UTC')::date
           AND d.day <= (at AT TIME ZONE 'UTC')::date
           AND CASE b.scope
                 WHEN 'key' THEN d.key_id IN (SELECT k.id FROM llmgw.virtual_keys k
                                               WHERE k.lineage_id = b.key_id)
                 WHEN 'team' THEN d.team_id = b.team_id
                 WHEN 'role' THEN d.role_name = b.role_name
                 WHEN 'model' THEN d.model = b.model
                 ELSE true END) s
  CROSS JOIN LATERAL llmgw.budget_projection(b.period, b.limit_amount, s.spent, s.since, at) p
$$;

-- budget_status gains the forecast (columns appended: the view keeps its
-- grants and comments)
CREATE OR REPLACE VIEW llmgw.budget_status WITH (security_invoker = true) AS
SELECT b.id, b.name, b.scope,
       CASE b.scope WHEN 'key' THEN (SELECT k.prefix FROM llmgw.keys k WHERE k.id = b.key_id)
                    WHEN 'team' THEN t.name
                    WHEN 'role' THEN b.role_name::text
                    WHEN 'model' THEN b.model END AS target,
       b.period, b.enforcement, b.currency, b.limit_amount,
       s.spent, trim_scale(coalesce(l.reserved, 0)) AS reserved,
       trim_scale(greatest(b.limit_amount - s.spent - coalesce(l.reserved, 0), 0)) AS remaining,
       llmgw.period_start(b.period) AS period_start,
       llmgw.period_end(b.period) AS resets_at,
       trim_scale(l.ledger_spent) AS ledger_spent,
       f.run_rate, f.exhausts_at, f.projected_spent
  FROM llmgw.budgets b
  LEFT JOIN llmgw.teams t ON t.id = b.team_id
  CROSS JOIN LATERAL (SELECT llmgw.budget_spent(b) AS spent) s
  LEFT JOIN llmgw.budget_ledger() l ON l.budget_id = b.id
  CROSS JOIN LATERAL llmgw.budget_forecast(b) f;

-- A third kind of alert: the budget will run out before it resets, at its
-- run-rate (once per budget and period, by the workers)
ALTER TABLE llmgw.alerts
    DROP CONSTRAINT alerts_kind_check,
    ADD CONSTRAINT alerts_kind_check
        CHECK (kind IN ('soft_limit_reached', 'hard_limit_reached', 'forecast_exhaustion')),
    ADD COLUMN run_rate numeric,
    ADD COLUMN exhausts_at timestamptz;

REVOKE ALL ON FUNCTION llmgw.budget_projection(text, numeric, numeric, timestamptz, timestamptz),
    llmgw.budget_forecast(llmgw.budgets, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.budget_projection(text, numeric, numeric, timestamptz, timestamptz),
    llmgw.budget_forecast(llmgw.budgets, timestamptz) TO llmgw_admin, llmgw_finance;

COMMENT ON FUNCTION llmgw.budget_projection(text, numeric, numeric, timestamptz, timestamptz) IS 'Run-rate per day of a spend since a time, when it reaches a limit, and the spend at the end of the period at that rate';
COMMENT ON FUNCTION llmgw.budget_forecast(llmgw.budgets, timestamptz) IS 'A budget''s spend, run-rate and forecast time of exhaustion at a time, from the rollups';
COMMENT ON VIEW llmgw.budget_status IS 'Each budget now: limit, spent this period, reserved by calls in flight, remaining, when it resets, its run-rate and when it runs out at that rate';
COMMENT ON TABLE llmgw.alerts IS 'A budget reaching its limit, or forecast to run out before it resets; each row is also sent as NOTIFY llmgw_alerts';
COMMENT ON COLUMN llmgw.budget_status.run_rate IS 'Spend per day over the current period so far (a total budget: since its first day of spend), measured over at least a 24th of the period, in currency units';
COMMENT ON COLUMN llmgw.budget_status.exhausts_at IS 'When the budget runs out at the run-rate (in the past: it has); NULL when it does not before it resets, or nothing was spent';
COMMENT ON COLUMN llmgw.budget_status.projected_spent IS 'Spend at the reset if the run-rate holds, in currency units (NULL: total)';
COMMENT ON COLUMN llmgw.alerts.budget_id IS 'The budget (NULL once the budget is dropped)';
COMMENT ON COLUMN llmgw.alerts.kind IS 'soft_limit_reached (the call went ahead), hard_limit_reached (calls are refused from now on) or forecast_exhaustion (it will run out before it resets at its run-rate)';
COMMENT ON COLUMN llmgw.alerts.period_start IS 'Start of the budget period of the alert (NULL: a total budget)';
COMMENT ON COLUMN llmgw.alerts.spent IS 'Spend of the period when the alert was raised, the charge that raised it included, in currency units';
COMMENT ON COLUMN llmgw.alerts.run_rate IS 'forecast_exhaustion: spend per day at which it runs out, in currency units (NULL: other kinds)';
COMMENT ON COLUMN llmgw.alerts.exhausts_at IS 'forecast_exhaustion: when it runs out at that rate, before its period resets (NULL: other kinds)';

-- Each call holding a request slot now (queued, running, being cancelled),
-- with the pid of the backend waiting for it.  The function filters: a role
-- that is not a member of llmgw_admin or llmgw_finance gets its own calls.
CREATE FUNCTION llmgw.call_slots(
    OUT request_id uuid, OUT state text, OUT caller text, OUT pid integer,
    OUT worker_pid integer, OUT role_name text, OUT model text,
    OUT submitted_at timestamptz, OUT age interval, OUT attempt integer,
    OUT attempt_started_at timestamptz, OUT deployment_id bigint, OUT provider text,
    OUT upstream_model text, OUT key_id bigint, OUT team_id bigint, OUT job_id bigint,
    OUT async_id bigint, OUT slot integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_call_slots'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW llmgw.calls_now WITH (security_invoker = true) AS
SELECT c.request_id, c.state, c.caller, c.pid, c.worker_pid, c.role_name, c.team_id,
       t.name AS team, c.model, c.deployment_id, c.provider, c.upstream_model, c.attempt,
       c.submitted_at, c.attempt_started_at, c.age, c.key_id, k.prefix AS key_prefix,
       c.job_id, c.async_id, c.slot
  FROM llmgw.call_slots() c
  LEFT JOIN llmgw.teams t ON t.id = c.team_id
  LEFT JOIN llmgw.keys k ON k.id = c.key_id;

REVOKE ALL ON FUNCTION llmgw.call_slots() FROM PUBLIC;
-- the view reads the slots through this function, with the reader's rights
GRANT EXECUTE ON FUNCTION llmgw.call_slots() TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT ON llmgw.calls_now TO llmgw_admin, llmgw_finance, llmgw_user;

COMMENT ON FUNCTION llmgw.call_slots() IS 'Every call holding a request slot (see the view llmgw.calls_now); a role that is not admin or finance gets its own';
COMMENT ON VIEW llmgw.calls_now IS 'Each call queued or running now, with the pid of its caller (join pg_stat_activity); admin and finance see all, others their own';
COMMENT ON COLUMN llmgw.calls_now.request_id IS 'The call (usage.request_id of its rows to come)';
COMMENT ON COLUMN llmgw.calls_now.state IS 'queued (no worker has taken it), running (a worker has it), or cancelling (its caller asked to abort it)';
COMMENT ON COLUMN llmgw.calls_now.caller IS 'sql (a session waits for it), async (llmgw.submit) or http (the front door)';
COMMENT ON COLUMN llmgw.calls_now.pid IS 'The backend waiting for it (pg_stat_activity.pid); NULL for async and http calls, whose caller is a worker';
COMMENT ON COLUMN llmgw.calls_now.worker_pid IS 'The llmgw worker running it (pg_stat_activity.pid; NULL: queued)';
COMMENT ON COLUMN llmgw.calls_now.role_name IS 'The role that made the call (NULL: a call of the front door)';
COMMENT ON COLUMN llmgw.calls_now.team_id IS 'The team of the call, once an attempt is sent (NULL: no team, or not sent yet)';
COMMENT ON COLUMN llmgw.calls_now.team IS 'The name of that team';
COMMENT ON COLUMN llmgw.calls_now.model IS 'The model alias called (cut to 63 bytes until an attempt is sent)';
COMMENT ON COLUMN llmgw.calls_now.deployment_id IS 'The deployment of the attempt sent (llmgw.deployments.id; NULL: none sent yet)';
COMMENT ON COLUMN llmgw.calls_now.provider IS 'The provider of that deployment';
COMMENT ON COLUMN llmgw.calls_now.upstream_model IS 'The provider''s model of that deployment';
COMMENT ON COLUMN llmgw.calls_now.attempt IS 'Number of the attempt sent last, from 1 (NULL: none sent yet)';
COMMENT ON COLUMN llmgw.calls_now.submitted_at IS 'When the call took its request slot (an asynchronous call: when a worker took it from llmgw.async_calls)';
COMMENT ON COLUMN llmgw.calls_now.attempt_started_at IS 'When the attempt sent last started';
COMMENT ON COLUMN llmgw.calls_now.age IS 'Time since submitted_at';
COMMENT ON COLUMN llmgw.calls_now.key_id IS 'The virtual key presented, once an attempt is sent (NULL: no key, or not sent yet)';
COMMENT ON COLUMN llmgw.calls_now.key_prefix IS 'The visible prefix of that key';
COMMENT ON COLUMN llmgw.calls_now.job_id IS 'The llmgw.jobs row the call works for (NULL: none)';
COMMENT ON COLUMN llmgw.calls_now.async_id IS 'The llmgw.async_calls row the call answers (NULL: none)';
COMMENT ON COLUMN llmgw.calls_now.slot IS 'The request slot it holds (calls_in_flight_now().slot)';
