/* llmgw--0.2--0.3.sql: see it (docs/observability.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.3'" to load this file. \quit

-- ==== Front door scopes (docs/http.md) ====
-- What a virtual key may read at the HTTP front door besides calling
-- models: /metrics (scope metrics) and /spend (scope finance).
ALTER TABLE llmgw.virtual_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{}'
    CONSTRAINT virtual_keys_scopes_check
    CHECK (scopes <@ ARRAY['metrics', 'finance']::text[] AND pg_catalog.array_position(scopes, NULL) IS NULL);
COMMENT ON COLUMN llmgw.virtual_keys.scopes IS 'What the key may read at the HTTP front door besides calling models: metrics (GET /metrics), finance (GET /spend)';

CREATE OR REPLACE VIEW llmgw.keys WITH (security_barrier = true) AS
SELECT k.id, k.name, k.prefix, t.name AS team, k.allowed_models, k.rpm_limit, k.tpm_limit,
       k.expires_at, k.revoked_at, k.rotated_from, k.lineage_id, k.created_at, k.created_by,
       CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
            WHEN k.expires_at <= pg_catalog.now() THEN 'expired'
            ELSE 'active' END AS state,
       k.scopes
  FROM llmgw.virtual_keys k LEFT JOIN llmgw.teams t ON t.id = k.team_id
 WHERE pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_admin', 'MEMBER')
    OR pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_finance', 'MEMBER')
    OR k.team_id IN (SELECT llmgw.my_teams());
COMMENT ON COLUMN llmgw.keys.scopes IS 'What the key may read at the HTTP front door besides calling models (metrics, finance)';

-- Set what a key may read at the front door (replaces its scopes)
CREATE FUNCTION llmgw.set_key_scopes(key_id bigint, scopes text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT llmgw.caller_has_role('llmgw_admin') AND NOT llmgw.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied to set the scopes of a virtual key'
            USING ERRCODE = 'insufficient_privilege', HINT = 'Keys are managed by llmgw_admin.';
    END IF;
    IF scopes IS NULL OR NOT scopes <@ ARRAY['metrics', 'finance']::text[]
       OR array_position(scopes, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'unknown key scope in %', scopes
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A key''s scopes are metrics (GET /metrics) and finance (GET /spend).';
    END IF;
    UPDATE llmgw.virtual_keys k
       SET scopes = ARRAY(SELECT DISTINCT s FROM unnest(set_key_scopes.scopes) s ORDER BY s)
     WHERE k.id = key_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'virtual key % does not exist', key_id USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.set_key_scopes(bigint, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.set_key_scopes(bigint, text[]) TO llmgw_admin;
COMMENT ON FUNCTION llmgw.set_key_scopes(bigint, text[]) IS 'Set what a virtual key may read at the HTTP front door besides calling models: metrics, finance';

-- ==== Prometheus metrics (docs/metrics.md) ====
--
-- llmgw.metrics() is the Prometheus text exposition format of everything
-- below; llmgw.metric_samples() the same samples as rows, which the queries
-- file of prometheus-postgres-exporter (docs/prometheus/llmgw-queries.yaml)
-- reads.  What the usage rows say is counted in llmgw.usage_totals, kept
-- as rows are written and never decreased, so the counters neither go back
-- when old partitions of llmgw.usage are dropped nor need a scan of them;
-- the rest comes from shared memory (since this server life began), the
-- deployments' health and llmgw.budget_status.

-- Every usage row ever written, summed by what the metrics group by; one
-- set of rows per worker (shard), like llmgw.usage_daily, but no day
CREATE TABLE llmgw.usage_totals (
    shard integer NOT NULL DEFAULT 0,
    team_id bigint,
    model text,
    provider text,
    upstream_model text,
    status text NOT NULL,
    error_class text,
    cache_hit boolean NOT NULL,
    fallback_from text,
    currency text,
    calls bigint NOT NULL,
    unpriced bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    reasoning_tokens bigint NOT NULL,
    cost numeric NOT NULL,
    UNIQUE NULLS NOT DISTINCT (team_id, model, provider, upstream_model, status, error_class,
                               cache_hit, fallback_from, currency, shard)
);
SELECT pg_catalog.pg_extension_config_dump('llmgw.usage_totals', '');

CREATE FUNCTION llmgw.usage_totals_rollup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- ordered, so that concurrent writers lock total rows in one order
    INSERT INTO llmgw.usage_totals AS t (shard, team_id, model, provider, upstream_model,
        status, error_class, cache_hit, fallback_from, currency, calls, unpriced, input_tokens,
        output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost)
    SELECT coalesce(nullif(current_setting('llmgw.rollup_shard', true), '')::integer, 0),
           n.team_id, n.model, n.provider, n.upstream_model, n.status, n.error_class,
           n.cache_hit, n.fallback_from, n.currency,
           count(*), count(*) FILTER (WHERE n.unpriced),
           coalesce(sum(n.input_tokens), 0), coalesce(sum(n.output_tokens), 0),
           coalesce(sum(n.cached_input_tokens), 0), coalesce(sum(n.cache_write_tokens), 0),
           coalesce(sum(n.reasoning_tokens), 0), coalesce(sum(n.cost), 0)
      FROM new_rows n
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
     ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ON CONFLICT (team_id, model, provider, upstream_model, status, error_class, cache_hit,
                 fallback_from, currency, shard)
    DO UPDATE SET calls = t.calls + excluded.calls, unpriced = t.unpriced + excluded.unpriced,
                  input_tokens = t.input_tokens + excluded.input_tokens,
                  output_tokens = t.output_tokens + excluded.output_tokens,
                  cached_input_tokens = t.cached_input_tokens + excluded.cached_input_tokens,
                  cache_write_tokens = t.cache_write_tokens + excluded.cache_write_tokens,
                  reasoning_tokens = t.reasoning_tokens + excluded.reasoning_tokens,
                  cost = t.cost + excluded.cost;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER usage_totals AFTER INSERT ON llmgw.usage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION llmgw.usage_totals_rollup();

-- The usage rows already there (an update from 0.2; none in a new install).
-- The trigger's lock keeps new rows out until this commits, and they are
-- counted by the trigger then.
INSERT INTO llmgw.usage_totals (shard, team_id, model, provider, upstream_model, status,
    error_class, cache_hit, fallback_from, currency, calls, unpriced, input_tokens,
    output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost)
SELECT 0, u.team_id, u.model, u.provider, u.upstream_model, u.status, u.error_class,
       u.cache_hit, u.fallback_from, u.currency, count(*), count(*) FILTER (WHERE u.unpriced),
       coalesce(sum(u.input_tokens), 0), coalesce(sum(u.output_tokens), 0),
       coalesce(sum(u.cached_input_tokens), 0), coalesce(sum(u.cache_write_tokens), 0),
       coalesce(sum(u.reasoning_tokens), 0), coalesce(sum(u.cost), 0)
  FROM llmgw.usage u
 GROUP BY 2, 3, 4, 5, 6, 7, 8, 9, 10;

-- The metrics kept in shared memory since this server life began: the
-- queue, the workers, the fair share and the refused calls
CREATE FUNCTION llmgw.gateway_counters(OUT metric text, OUT labels text[],
                                       OUT value double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_gateway_counters'
LANGUAGE C STRICT VOLATILE;

-- The latency histogram of each deployment since the server started, in
-- Prometheus's terms
CREATE FUNCTION llmgw.deployment_latency(OUT deployment_id bigint,
                                         OUT le double precision[], OUT buckets bigint[],
                                         OUT sum_seconds double precision, OUT count bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_deployment_latency'
LANGUAGE C STRICT VOLATILE;

-- The metric families: name, Prometheus type and help, in the order
-- llmgw.metrics() shows them
CREATE FUNCTION llmgw.metric_families(OUT family text, OUT type text, OUT help text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT * FROM (VALUES
  ('llmgw_calls_total', 'counter',
   'Usage rows by model, deployment (provider, upstream_model), status and error class: provider attempts, and answers from the cache (no deployment)'),
  ('llmgw_tokens_total', 'counter',
   'Tokens of the usage rows by model, deployment and bucket (input, output, cached_input, cache_write, reasoning); counts a provider did not report add nothing'),
  ('llmgw_cost_total', 'counter',
   'Cost of the usage rows by team, model and currency, in units of the currency'),
  ('llmgw_unpriced_calls_total', 'counter',
   'Usage rows that could not be priced (cost NULL), by model and deployment'),
  ('llmgw_cache_hits_total', 'counter',
   'Calls answered from the response cache, by model'),
  ('llmgw_fallbacks_total', 'counter',
   'Attempts on a fallback deployment, by model, the deployment fallen back from and the one tried'),
  ('llmgw_latency_seconds', 'histogram',
   'Latency of the successful provider attempts of each deployment since the server started'),
  ('llmgw_deployment_in_flight', 'gauge',
   'Attempts in flight on each deployment'),
  ('llmgw_deployment_cooling_down', 'gauge',
   '1 while a deployment is out of routing after failures (cooling down, or waiting for its probe), else 0'),
  ('llmgw_queue_depth', 'gauge',
   'Calls waiting in the queue for a worker'),
  ('llmgw_calls_in_flight', 'gauge',
   'Calls a worker holds: in a transfer, waiting for a retry, the cache or their team''s share'),
  ('llmgw_queue_size', 'gauge',
   'Request slots (llmgw.queue_size)'),
  ('llmgw_requests_total', 'counter',
   'Calls submitted since the server started: from SQL, the front door and asynchronous calls'),
  ('llmgw_workers_running', 'gauge',
   'llmgw workers running'),
  ('llmgw_workers_configured', 'gauge',
   'llmgw workers configured (llmgw.workers)'),
  ('llmgw_worker_restarts_total', 'counter',
   'Times each worker was started again since the server started (after an exit or an error)'),
  ('llmgw_life_start_time_seconds', 'gauge',
   'When this server life began (a start or a crash restart), in seconds since the Unix epoch; the counters of shared memory start from zero then'),
  ('llmgw_fair_share_waiting', 'gauge',
   'Callers sleeping now because their role or key holds its whole share of the request slots'),
  ('llmgw_fair_share_waits_total', 'counter',
   'Sleeps of callers waiting for room in their share (each ends when a slot is given back, or after a second)'),
  ('llmgw_fair_share_wait_seconds_total', 'counter',
   'Seconds callers slept waiting for room in their share'),
  ('llmgw_refusals_total', 'counter',
   'Calls refused before any provider was called (they leave no usage row), by reason and scope'),
  ('llmgw_budget_limit', 'gauge',
   'Limit of each budget per period, in units of its currency'),
  ('llmgw_budget_spent', 'gauge',
   'Spend of each budget in its current period, as the workers enforce it (llmgw.budget_status.ledger_spent)'),
  ('llmgw_budget_reserved', 'gauge',
   'Worst-case cost of the calls in flight reserved on each budget'),
  ('llmgw_budget_remaining', 'gauge',
   'What each budget has left this period after its spend (as the workers enforce it) and reservations')
) AS f(family, type, help)
$$;

-- Every sample of the metric families asked for (all when NULL), in the
-- order llmgw.metrics() shows them.  SECURITY DEFINER: it reads the usage
-- totals, deployments and budgets of every team; only llmgw_admin and
-- llmgw_finance may call it.
CREATE FUNCTION llmgw.metric_samples(families text[] DEFAULT NULL)
RETURNS TABLE (family text, metric text, labels jsonb, value double precision)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $fn$
#variable_conflict use_column
DECLARE
    wanted text[] := metric_samples.families;
    unknown text;
BEGIN
    SELECT w INTO unknown FROM unnest(wanted) w
     WHERE w IS NULL OR w NOT IN (SELECT f.family FROM llmgw.metric_families() f) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown metric family "%"', coalesce(unknown, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'llmgw.metric_families() lists the families.';
    END IF;

    -- from the usage totals
    IF wanted IS NULL OR 'llmgw_calls_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_calls_total', 'llmgw_calls_total',
               jsonb_build_object('model', coalesce(t.model, ''),
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, ''),
                                  'status', t.status, 'error_class', coalesce(t.error_class, '')),
               sum(t.calls)::double precision
          FROM llmgw.usage_totals t
         GROUP BY t.model, t.provider, t.upstream_model, t.status, t.error_class
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_tokens_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_tokens_total', 'llmgw_tokens_total',
               jsonb_build_object('model', coalesce(t.model, ''),
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, ''),
                                  'bucket', b.bucket),
               sum(b.tokens)::double precision
          FROM llmgw.usage_totals t
         CROSS JOIN LATERAL (VALUES ('input', t.input_tokens), ('output', t.output_tokens),
                                    ('cached_input', t.cached_input_tokens),
                                    ('cache_write', t.cache_write_tokens),
                                    ('reasoning', t.reasoning_tokens)) b(bucket, tokens)
         WHERE NOT t.cache_hit
         GROUP BY t.model, t.provider, t.upstream_model, b.bucket
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_cost_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_cost_total', 'llmgw_cost_total',
               jsonb_build_object('team', coalesce(tm.name, '#' || t.team_id, ''),
                                  'model', coalesce(t.model, ''), 'currency', t.currency),
               sum(t.cost)::double precision
          FROM llmgw.usage_totals t
          LEFT JOIN llmgw.teams tm ON tm.id = t.team_id
         WHERE t.currency IS NOT NULL
         GROUP BY coalesce(tm.name, '#' || t.team_id, ''), t.model, t.currency
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_unpriced_calls_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_unpriced_calls_total', 'llmgw_unpriced_calls_total',
               jsonb_build_object('model', coalesce(t.model, ''),
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, '')),
               sum(t.unpriced)::double precision
          FROM llmgw.usage_totals t
         GROUP BY t.model, t.provider, t.upstream_model
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_cache_hits_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_cache_hits_total', 'llmgw_cache_hits_total',
               jsonb_build_object('model', coalesce(t.model, '')),
               (sum(t.calls) FILTER (WHERE t.cache_hit))::double precision
          FROM llmgw.usage_totals t
         GROUP BY t.model
        HAVING bool_or(t.cache_hit)
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_fallbacks_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_fallbacks_total', 'llmgw_fallbacks_total',
               jsonb_build_object('model', coalesce(t.model, ''), 'from', t.fallback_from,
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, '')),
               sum(t.calls)::double precision
          FROM llmgw.usage_totals t
         WHERE t.fallback_from IS NOT NULL
         GROUP BY t.model, t.fallback_from, t.provider, t.upstream_model
         ORDER BY 3;
    END IF;

    -- from the deployments' health in shared memory
    IF wanted IS NULL OR 'llmgw_latency_seconds' = ANY (wanted) THEN
        RETURN QUERY
        WITH h AS (
            SELECT jsonb_build_object('model', d.model, 'provider', d.provider,
                                      'upstream_model', d.upstream_model) AS labels,
                   l.le, l.buckets, l.sum_seconds, l.count
              FROM llmgw.deployment_latency() l
              JOIN llmgw.deployments d ON d.id = l.deployment_id)
        SELECT 'llmgw_latency_seconds', s.metric, s.labels, s.value
          FROM (SELECT h.labels AS key, 1 AS part, b.i AS i, 'llmgw_latency_seconds_bucket' AS metric,
                       h.labels || jsonb_build_object('le', b.le::text) AS labels,
                       h.buckets[b.i]::double precision AS value
                  FROM h CROSS JOIN LATERAL unnest(h.le) WITH ORDINALITY b(le, i)
                UNION ALL
                SELECT h.labels, 2, 0, 'llmgw_latency_seconds_bucket',
                       h.labels || '{"le": "+Inf"}', h.count::double precision FROM h
                UNION ALL
                SELECT h.labels, 3, 0, 'llmgw_latency_seconds_sum', h.labels, h.sum_seconds FROM h
                UNION ALL
                SELECT h.labels, 4, 0, 'llmgw_latency_seconds_count', h.labels,
                       h.count::double precision FROM h) s
         ORDER BY s.key, s.part, s.i;
    END IF;
    IF wanted IS NULL OR 'llmgw_deployment_in_flight' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_deployment_in_flight', 'llmgw_deployment_in_flight',
               jsonb_build_object('model', h.model, 'provider', h.provider,
                                  'upstream_model', h.upstream_model),
               h.in_flight::double precision
          FROM llmgw.deployment_health h
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_deployment_cooling_down' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_deployment_cooling_down', 'llmgw_deployment_cooling_down',
               jsonb_build_object('model', h.model, 'provider', h.provider,
                                  'upstream_model', h.upstream_model),
               CASE WHEN h.state = 'healthy' THEN 0 ELSE 1 END::double precision
          FROM llmgw.deployment_health h
         ORDER BY 3;
    END IF;

    -- from the queue, the workers, the fair share and the refusals
    RETURN QUERY
    SELECT c.metric, c.metric,
           coalesce((SELECT jsonb_object_agg(c.labels[2 * i - 1], c.labels[2 * i])
                       FROM generate_series(1, cardinality(c.labels) / 2) i), '{}'),
           c.value
      FROM llmgw.gateway_counters() WITH ORDINALITY c(metric, labels, value, n)
     WHERE wanted IS NULL OR c.metric = ANY (wanted)
     ORDER BY c.n;

    -- from the budgets: the spend of the ledger the workers enforce, not
    -- the rollups' (a scan of them per budget); none while the workers have
    -- not loaded the ledger
    IF wanted IS NULL OR wanted && '{llmgw_budget_limit,llmgw_budget_spent,llmgw_budget_reserved,llmgw_budget_remaining}' THEN
        RETURN QUERY
        WITH b AS (
            SELECT s.id, s.limit_amount, s.reserved, s.ledger_spent AS spent,
                   greatest(s.limit_amount - s.ledger_spent - s.reserved, 0) AS remaining,
                   jsonb_build_object('budget', s.name, 'scope', s.scope,
                                      'target', coalesce(s.target, ''), 'period', s.period,
                                      'enforcement', s.enforcement,
                                      'currency', s.currency) AS labels
              FROM llmgw.budget_status s)
        SELECT v.metric, v.metric, b.labels, v.value::double precision
          FROM b CROSS JOIN LATERAL (VALUES (1, 'llmgw_budget_limit', b.limit_amount),
                                            (2, 'llmgw_budget_spent', b.spent),
                                            (3, 'llmgw_budget_reserved', b.reserved),
                                            (4, 'llmgw_budget_remaining', b.remaining)) v(n, metric, value)
         WHERE (wanted IS NULL OR v.metric = ANY (wanted)) AND v.value IS NOT NULL
         ORDER BY v.n, b.id;
    END IF;
END
$fn$;

-- The Prometheus text exposition format (version 0.0.4) of every family
CREATE FUNCTION llmgw.metrics() RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
WITH s AS (
    SELECT s.family, s.metric, s.value, s.n,
           (SELECT '{' || string_agg(l.key || '="' ||
                                     replace(replace(replace(l.value, E'\\', E'\\\\'), '"', E'\\"'),
                                             E'\n', E'\\n') || '"', ','
                                     ORDER BY coalesce(array_position(
                                         '{reason,budget,scope,target,period,enforcement,team,model,provider,upstream_model,status,error_class,bucket,from,currency,worker,le}'::text[],
                                         l.key), 100), l.key) || '}'
              FROM jsonb_each_text(s.labels) l(key, value)) AS labels
      FROM llmgw.metric_samples() WITH ORDINALITY s(family, metric, labels, value, n))
SELECT string_agg(f.block, '' ORDER BY f.n)
  FROM (SELECT f.n,
               '# HELP ' || f.family || ' ' || replace(replace(f.help, E'\\', E'\\\\'), E'\n', E'\\n')
               || E'\n# TYPE ' || f.family || ' ' || f.type || E'\n'
               || coalesce(string_agg(s.metric || coalesce(s.labels, '') || ' ' ||
                                      CASE WHEN s.value IS NULL OR s.value = 'NaN' THEN 'NaN'
                                           WHEN s.value = 'Infinity' THEN '+Inf'
                                           WHEN s.value = '-Infinity' THEN '-Inf'
                                           ELSE s.value::text END || E'\n', '' ORDER BY s.n), '')
               AS block
          FROM llmgw.metric_families() WITH ORDINALITY f(family, type, help, n)
          LEFT JOIN s ON s.family = f.family
         GROUP BY f.n, f.family, f.type, f.help) f
$$;

REVOKE ALL ON llmgw.usage_totals FROM PUBLIC;
REVOKE ALL ON FUNCTION llmgw.usage_totals_rollup(), llmgw.gateway_counters(),
    llmgw.deployment_latency(), llmgw.metric_families(), llmgw.metric_samples(text[]),
    llmgw.metrics() FROM PUBLIC;
GRANT SELECT ON llmgw.usage_totals TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON FUNCTION llmgw.gateway_counters(), llmgw.deployment_latency(),
    llmgw.metric_families(), llmgw.metric_samples(text[]), llmgw.metrics()
    TO llmgw_admin, llmgw_finance;

COMMENT ON TABLE llmgw.usage_totals IS 'Every usage row ever written, summed by team, model, deployment, status, error class, cache hit, fallback and currency (per worker): the counters of llmgw.metrics(), which dropping partitions of llmgw.usage does not lower';
COMMENT ON COLUMN llmgw.usage_totals.shard IS 'The worker that wrote the row (from 1; 0: anything else), so that workers never wait for each other';
COMMENT ON COLUMN llmgw.usage_totals.team_id IS 'Team of the calls (NULL: no team)';
COMMENT ON COLUMN llmgw.usage_totals.model IS 'Model alias called';
COMMENT ON COLUMN llmgw.usage_totals.provider IS 'Provider of the deployment tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.usage_totals.upstream_model IS 'The provider''s model tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.usage_totals.status IS 'ok, error, cancelled or interrupted';
COMMENT ON COLUMN llmgw.usage_totals.error_class IS 'Error class of the rows (NULL: none)';
COMMENT ON COLUMN llmgw.usage_totals.cache_hit IS 'Rows answered from the response cache';
COMMENT ON COLUMN llmgw.usage_totals.fallback_from IS 'The deployment the call fell back from (NULL: none)';
COMMENT ON COLUMN llmgw.usage_totals.currency IS 'Currency of cost (NULL: rows without a price)';
COMMENT ON COLUMN llmgw.usage_totals.calls IS 'Usage rows: provider attempts and cache hits';
COMMENT ON COLUMN llmgw.usage_totals.unpriced IS 'Usage rows marked unpriced (cost NULL, not counted in cost)';
COMMENT ON COLUMN llmgw.usage_totals.input_tokens IS 'Sum of input_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.output_tokens IS 'Sum of output_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.cached_input_tokens IS 'Sum of cached_input_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.cache_write_tokens IS 'Sum of cache_write_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.reasoning_tokens IS 'Sum of reasoning_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.cost IS 'Sum of cost in currency units, rows without a cost adding 0';
COMMENT ON TRIGGER usage_totals ON llmgw.usage IS 'Adds each statement''s new usage rows to llmgw.usage_totals';
COMMENT ON FUNCTION llmgw.usage_totals_rollup() IS 'Trigger: add a statement''s new usage rows to llmgw.usage_totals';
COMMENT ON FUNCTION llmgw.gateway_counters() IS 'The metrics kept in shared memory since this server life began: queue, workers, fair share, refused calls (labels as name, value pairs)';
COMMENT ON FUNCTION llmgw.deployment_latency() IS 'The latency histogram of each deployment since the server started: bucket upper bounds in seconds, cumulative counts, sum and count';
COMMENT ON FUNCTION llmgw.metric_families() IS 'The families of llmgw.metrics(): name, Prometheus type and help';
COMMENT ON FUNCTION llmgw.metric_samples(text[]) IS 'Every sample of the metric families asked for (all when NULL), as rows: what the prometheus-postgres-exporter queries file reads';
COMMENT ON FUNCTION llmgw.metrics() IS 'All llmgw metrics in the Prometheus text exposition format';
