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

-- ==== Spend as a picture (docs/spend_report.md) ====

-- Text made inert in HTML and SVG, in element content and in quoted
-- attribute values: team, key, model and budget names are user data
CREATE FUNCTION llmgw.html_escape(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
       pg_catalog.replace(t, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'),
       '''', '&#39;')
$$;

-- An amount as people read it: two decimals from 1 up (with thousands
-- separators), up to four below 1 and six below 0.01 (0.000255), never in
-- scientific notation
CREATE FUNCTION llmgw.format_amount(amount numeric) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT CASE WHEN pg_catalog.abs(amount) >= 1
            THEN pg_catalog.to_char(amount, 'FM999,999,999,999,999,990.00')
            WHEN pg_catalog.abs(amount) >= 0.01
            THEN pg_catalog.to_char(amount, 'FM0.0099')
            ELSE pg_catalog.to_char(amount, 'FM0.009999') END
$$;

-- The axis of a chart whose values go up to top: a round step (1, 2 or 5
-- times a power of ten) giving about four gridlines, and the axis maximum,
-- a whole number of steps (1 and 0.25 when there is nothing to draw)
CREATE FUNCTION llmgw.chart_scale(top double precision,
                                  OUT axis_max double precision, OUT tick double precision)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    raw float8;
    mag float8;
BEGIN
    IF top IS NULL OR NOT top > 0 OR top IN ('Infinity', 'NaN') THEN
        axis_max := 1;
        tick := 0.25;
        RETURN;
    END IF;
    raw := top / 4;
    mag := power(10::float8, floor(log(raw)));
    tick := mag * CASE WHEN raw <= mag THEN 1 WHEN raw <= 2 * mag THEN 2
                       WHEN raw <= 5 * mag THEN 5 ELSE 10 END;
    axis_max := tick * ceil(top / tick - 1e-9);
END
$fn$;

-- One self-contained HTML page of the spend between from_time and to_time
-- (the whole UTC days that period touches), for finance: spend per day
-- stacked by team (by model when a team is given), the top keys and models,
-- each budget's burn-down in its current period with a linear forecast to
-- its reset, error and fallback rates per day.  Inline CSS and SVG only: no
-- script, nothing fetched (a Content-Security-Policy says so).  It runs
-- with the caller's rights: row-level security gives an llmgw_user its
-- teams' spend only, and budgets only to who may read llmgw.budget_status.
-- Spend comes from the rollups (llmgw.usage_daily); only fallbacks and
-- error classes are read from llmgw.usage, the failed and fallen-back rows
-- of the period.
CREATE FUNCTION llmgw.spend_report(from_time timestamptz, to_time timestamptz,
                                   team text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- the colours of the series (the last one: all others together)
    palette constant text[] := ARRAY['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2',
                                     '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
    team_name text := spend_report.team;
    by_team boolean := spend_report.team IS NULL;
    tid bigint;
    first_day date;
    last_day date;
    n_days integer;
    lo timestamptz;
    hi timestamptz;
    cur text;                 -- the currency drawn
    other_currencies text;
    scope_label text;
    -- totals of the period
    t_calls bigint;
    t_errors bigint;
    t_unpriced bigint;
    t_hits bigint;
    t_cost numeric;
    t_fallbacks bigint;
    -- what the usage rows say that the rollups do not
    fb_days date[];
    fb_counts bigint[];
    class_rows text;
    -- the spend per day and series, read once
    series jsonb;
    -- chart geometry (SVG user units)
    cw constant float8 := 1120;
    ch constant float8 := 300;
    ml constant float8 := 72;
    mr constant float8 := 12;
    mt constant float8 := 12;
    mb constant float8 := 30;
    pw float8;
    ph float8;
    step float8;
    bw float8;
    every integer;
    sc record;
    top_value float8;
    eh constant float8 := 220;      -- height of the errors chart
    -- pieces of the page
    kpis text;
    daily_svg text;
    legend text;
    keys_html text;
    models_html text;
    errors_svg text;
    days_html text;
    per_day jsonb;
    -- a budget
    b record;
    budget_cards text := '';
    n_budgets integer := 0;
    periodic boolean;
    lim numeric;
    b_spent numeric;
    b_days jsonb;
    first_spend date;
    forecast numeric;
    elapsed numeric;              -- seconds of the period so far
    runs_out timestamptz;
    x0 timestamptz;
    x1 timestamptz;
    e0 numeric;
    e1 numeric;
    y_top numeric;
    y_low numeric;
    f_end timestamptz;
    f_val numeric;
    b_state text;
    pts text;
    nx numeric;
    ly numeric;
    zy numeric;
    bl constant numeric := 64;    -- the burn-down's plot: left, top, width, height
    bt constant numeric := 10;
    bpw constant numeric := 290;
    bph constant numeric := 130;
    css text;
    html text;
BEGIN
    IF from_time IS NULL OR to_time IS NULL THEN
        RAISE EXCEPTION 'a spend report needs from_time and to_time'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(from_time) OR NOT isfinite(to_time) OR to_time <= from_time THEN
        RAISE EXCEPTION 'a spend report needs a finite period that ends after it starts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('from_time is %s and to_time is %s.',
                                  CASE WHEN isfinite(from_time)
                                       THEN to_char(from_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                                       ELSE from_time::text END,
                                  CASE WHEN isfinite(to_time)
                                       THEN to_char(to_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                                       ELSE to_time::text END);
    END IF;
    first_day := (from_time AT TIME ZONE 'UTC')::date;
    last_day := ((to_time - interval '1 microsecond') AT TIME ZONE 'UTC')::date;
    n_days := last_day - first_day + 1;
    IF n_days > 366 THEN
        RAISE EXCEPTION 'a spend report covers at most 366 days'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('From %s to %s is %s UTC days.', to_char(first_day, 'YYYY-MM-DD'),
                                  to_char(last_day, 'YYYY-MM-DD'), n_days),
                  HINT = 'Make one report per month, or per year.';
    END IF;
    lo := first_day::timestamp AT TIME ZONE 'UTC';
    hi := (last_day + 1)::timestamp AT TIME ZONE 'UTC';

    IF team_name IS NOT NULL THEN
        SELECT t.id INTO tid FROM llmgw.teams t WHERE t.name = team_name;
        IF tid IS NULL THEN
            RAISE EXCEPTION 'team "%" does not exist',
                CASE WHEN length(team_name) > 63 THEN left(team_name, 63) || '...' ELSE team_name END
                USING ERRCODE = 'undefined_object';
        END IF;
        IF NOT (pg_has_role('llmgw_admin', 'MEMBER') OR pg_has_role('llmgw_finance', 'MEMBER')
                OR tid IN (SELECT llmgw.my_teams())) THEN
            RAISE EXCEPTION 'permission denied for the spend of team "%"', team_name
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Only llmgw_admin, llmgw_finance and the roles that act as the team read its spend.';
        END IF;
    END IF;
    scope_label := CASE WHEN by_team THEN 'all teams'
                        ELSE 'team ' || llmgw.html_escape(team_name) END;

    -- the currency with the most spend is drawn; the others are named
    SELECT d.currency INTO cur
      FROM llmgw.usage_daily d
     WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
       AND d.currency IS NOT NULL
     GROUP BY d.currency
     ORDER BY sum(d.cost) DESC, count(*) DESC, d.currency
     LIMIT 1;
    SELECT string_agg(format('%s %s', llmgw.format_amount(o.cost), llmgw.html_escape(o.currency)),
                      ', ' ORDER BY o.currency)
      INTO other_currencies
      FROM (SELECT d.currency, sum(d.cost) AS cost
              FROM llmgw.usage_daily d
             WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
               AND d.currency <> cur
             GROUP BY d.currency) o;

    SELECT coalesce(sum(d.calls), 0), coalesce(sum(d.errors), 0), coalesce(sum(d.unpriced), 0),
           coalesce(sum(d.cache_hits), 0),
           coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0)
      INTO t_calls, t_errors, t_unpriced, t_hits, t_cost
      FROM llmgw.usage_daily d
     WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid);

    -- fallbacks per day and errors per class: the only reading of llmgw.usage,
    -- its rows of the period (index on started_at) that failed or fell back
    WITH f AS (
        SELECT (u.started_at AT TIME ZONE 'UTC')::date AS d,
               u.fallback_from IS NOT NULL AS fell_back,
               CASE WHEN u.status <> 'ok' THEN coalesce(u.error_class, u.status) END AS cls,
               count(*) AS n
          FROM llmgw.usage u
         WHERE u.started_at >= lo AND u.started_at < hi
           AND (tid IS NULL OR u.team_id = tid)
           AND (u.fallback_from IS NOT NULL OR u.status <> 'ok')
         GROUP BY 1, 2, 3)
    SELECT (SELECT array_agg(x.d ORDER BY x.d)
              FROM (SELECT f.d, sum(f.n) AS n FROM f WHERE f.fell_back GROUP BY f.d) x),
           (SELECT array_agg(x.n ORDER BY x.d)
              FROM (SELECT f.d, sum(f.n)::bigint AS n FROM f WHERE f.fell_back GROUP BY f.d) x),
           (SELECT string_agg(format('<tr data-class="%s" data-count="%s"><td>%s</td>'
                                     '<td class="n">%s</td><td class="n">%s</td></tr>',
                                     llmgw.html_escape(x.cls), x.n, llmgw.html_escape(x.cls),
                                     to_char(x.n, 'FM999,999,999,999,990'),
                                     to_char(100.0 * x.n / x.all_n, 'FM990.0') || '%'),
                              '' ORDER BY x.n DESC, x.cls)
              FROM (SELECT f.cls, sum(f.n) AS n, sum(sum(f.n)) OVER () AS all_n
                      FROM f WHERE f.cls IS NOT NULL GROUP BY f.cls) x)
      INTO fb_days, fb_counts, class_rows;
    SELECT coalesce(sum(n), 0) INTO t_fallbacks FROM unnest(fb_counts) AS n;

    kpis := format(
        '<section class="kpis">'
        '<div class="kpi" id="kpi-spend" data-value="%s"><span>Spend</span><b>%s</b><span>%s</span></div>'
        '<div class="kpi" id="kpi-calls" data-value="%s"><span>Calls</span><b>%s</b><span>usage rows: attempts and cache hits</span></div>'
        '<div class="kpi" id="kpi-errors" data-value="%s"><span>Errors</span><b>%s</b><span>%s of calls</span></div>'
        '<div class="kpi" id="kpi-fallbacks" data-value="%s"><span>Fallbacks</span><b>%s</b><span>%s of calls</span></div>'
        '<div class="kpi" id="kpi-cache" data-value="%s"><span>Cache hits</span><b>%s</b><span>answered without a provider</span></div>'
        '<div class="kpi" id="kpi-unpriced" data-value="%s"><span>Unpriced</span><b>%s</b><span>calls without a price</span></div>'
        '</section>',
        t_cost, llmgw.format_amount(t_cost), coalesce(llmgw.html_escape(cur), 'no priced calls'),
        t_calls, to_char(t_calls, 'FM999,999,999,999,990'),
        t_errors, to_char(t_errors, 'FM999,999,999,999,990'),
        to_char(100.0 * t_errors / greatest(t_calls, 1), 'FM990.0') || '%',
        t_fallbacks, to_char(t_fallbacks, 'FM999,999,999,999,990'),
        to_char(100.0 * t_fallbacks / greatest(t_calls, 1), 'FM990.0') || '%',
        t_hits, to_char(t_hits, 'FM999,999,999,999,990'),
        t_unpriced, to_char(t_unpriced, 'FM999,999,999,999,990'));

    ----------------------------------------------------------------------
    -- Spend per day, stacked by team (or by model for one team)
    ----------------------------------------------------------------------
    pw := cw - ml - mr;
    ph := ch - mt - mb;
    step := pw / n_days;
    bw := greatest(step * 0.72, 1);
    every := ceil(n_days / 14.0);

    -- the series: the eight largest, then the rest together (all nine when
    -- there are nine)
    WITH base AS (
        SELECT d.day,
               CASE WHEN by_team THEN coalesce(t.name, '#' || d.team_id) ELSE d.model END AS s,
               sum(d.cost) AS cost
          FROM llmgw.usage_daily d
          LEFT JOIN llmgw.teams t ON t.id = d.team_id
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
           AND d.currency = cur
         GROUP BY 1, 2),
    ranked AS (
        SELECT r.s, r.total, r.r, count(*) OVER () AS n
          FROM (SELECT base.s, sum(base.cost) AS total,
                       row_number() OVER (ORDER BY sum(base.cost) DESC, base.s NULLS LAST) AS r
                  FROM base GROUP BY base.s) r),
    slots AS (
        SELECT ranked.s, CASE WHEN ranked.n > 9 THEN least(ranked.r, 9) ELSE ranked.r END AS slot,
               ranked.n > 9 AND ranked.r >= 9 AS is_other
          FROM ranked)
    SELECT jsonb_agg(jsonb_build_object(
               'day', base.day, 'slot', slots.slot, 'cost', base.cost,
               'label', CASE WHEN slots.is_other THEN 'other ' || CASE WHEN by_team THEN 'teams' ELSE 'models' END
                             WHEN base.s IS NULL THEN CASE WHEN by_team THEN '(no team)' ELSE '(no model)' END
                             ELSE base.s END,
               'colour', palette[CASE WHEN slots.is_other THEN 10 ELSE slots.slot END]))
      INTO series
      FROM base JOIN slots ON slots.s IS NOT DISTINCT FROM base.s;

    SELECT max(x.total) INTO top_value
      FROM (SELECT sum(v.cost) AS total
              FROM jsonb_to_recordset(series) AS v(day date, slot int, cost numeric)
             GROUP BY v.day) x;
    sc := llmgw.chart_scale(top_value);

    WITH v AS (
        SELECT v.day, v.slot, min(v.label) AS label, min(v.colour) AS colour, sum(v.cost) AS cost
          FROM jsonb_to_recordset(series) AS v(day date, slot int, cost numeric, label text, colour text)
         GROUP BY v.day, v.slot),
    stacked AS (
        SELECT v.*, coalesce(sum(v.cost) OVER (PARTITION BY v.day ORDER BY v.slot
                                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS below
          FROM v WHERE v.cost > 0)
    SELECT string_agg(format(
               '<rect x="%s" y="%s" width="%s" height="%s" fill="%s" data-day="%s" data-series="%s" data-cost="%s">'
               '<title>%s, %s: %s %s</title></rect>',
               round((ml + (s.day - first_day) * step + (step - bw) / 2)::numeric, 1),
               round((mt + ph * (1 - (s.below + s.cost)::float8 / sc.axis_max))::numeric, 1),
               round(bw::numeric, 1),
               round(greatest(ph * s.cost::float8 / sc.axis_max, 0.5)::numeric, 1),
               s.colour, to_char(s.day, 'YYYY-MM-DD'), llmgw.html_escape(s.label), s.cost,
               to_char(s.day, 'Mon DD'), llmgw.html_escape(s.label), llmgw.format_amount(s.cost),
               coalesce(llmgw.html_escape(cur), '')),
               '' ORDER BY s.day, s.slot)
      INTO daily_svg
      FROM stacked s;

    SELECT string_agg(format('<li data-series="%s" data-cost="%s"><span class="sw" style="background:%s"></span>%s <b>%s</b></li>',
                             llmgw.html_escape(l.label), l.total, l.colour, llmgw.html_escape(l.label),
                             llmgw.format_amount(l.total)),
                      '' ORDER BY l.slot)
      INTO legend
      FROM (SELECT v.slot, min(v.label) AS label, min(v.colour) AS colour, sum(v.cost) AS total
              FROM jsonb_to_recordset(series) AS v(slot int, cost numeric, label text, colour text)
             GROUP BY v.slot HAVING sum(v.cost) > 0) l;

    daily_svg := format('<svg class="chart" id="daily-chart" viewBox="0 0 %s %s" role="img" aria-label="Spend per day">',
                        cw, ch)
        -- gridlines and their amounts
        || (SELECT string_agg(format('<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/>'
                                     '<text x="%s" y="%s" text-anchor="end">%s</text>',
                                     ml, cw - mr, y, y, ml - 6, y + 4,
                                     llmgw.format_amount((k * sc.tick)::numeric)), '' ORDER BY k)
              FROM generate_series(0, round(sc.axis_max / sc.tick)::int) AS k,
                   LATERAL (SELECT round((mt + ph * (1 - k * sc.tick / sc.axis_max))::numeric, 1) AS y) g)
        -- days
        || (SELECT string_agg(format('<text x="%s" y="%s" text-anchor="middle">%s</text>',
                                     round((ml + (g.day - first_day) * step + step / 2)::numeric, 1),
                                     ch - mb + 18, to_char(g.day, 'Mon DD')), '' ORDER BY g.day)
              FROM (SELECT gs::date AS day
                      FROM generate_series(first_day::timestamp, last_day::timestamp, '1 day') gs) g
             WHERE (g.day - first_day) % every = 0)
        || coalesce(daily_svg,
                    format('<text x="%s" y="%s" text-anchor="middle" class="empty">No spend in this period</text>',
                           ml + pw / 2, mt + ph / 2))
        || format('<line class="axis" x1="%s" x2="%s" y1="%s" y2="%s"/>', ml, cw - mr, mt + ph, mt + ph)
        || '</svg>';

    ----------------------------------------------------------------------
    -- Top keys and top models
    ----------------------------------------------------------------------
    WITH k AS (
        SELECT d.key_id, d.team_id, sum(d.calls) AS n_calls, sum(d.errors) AS n_errors,
               coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0) AS spend,
               count(*) OVER () AS n_keys
          FROM llmgw.usage_daily d
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
         GROUP BY d.key_id, d.team_id
         ORDER BY spend DESC, n_calls DESC, d.key_id NULLS LAST, d.team_id NULLS LAST
         LIMIT 10),
    shown AS (
        SELECT k.*, row_number() OVER (ORDER BY k.spend DESC, k.n_calls DESC, k.key_id NULLS LAST,
                                       k.team_id NULLS LAST) AS pos,
               max(k.spend) OVER () AS top_spend,
               vk.prefix, vk.name AS key_name, t.name AS team_name
          FROM k
          LEFT JOIN llmgw.keys vk ON vk.id = k.key_id
          LEFT JOIN llmgw.teams t ON t.id = k.team_id)
    SELECT format('<table id="top-keys"><thead><tr><th>Key</th><th>Team</th><th class="n">Calls</th>'
                  '<th class="n">Errors</th><th class="n">Spend</th><th></th></tr></thead><tbody>%s</tbody></table>%s',
                  string_agg(format('<tr data-key="%s" data-calls="%s" data-cost="%s"><td>%s</td><td>%s</td>'
                                    '<td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td>%s</td></tr>',
                                    coalesce(s.prefix, ''), s.n_calls, s.spend,
                                    CASE WHEN s.key_id IS NULL THEN '<i>no key</i>'
                                         WHEN s.prefix IS NULL THEN format('<i>key %s</i>', s.key_id)
                                         ELSE format('<code>%s</code> %s', llmgw.html_escape(s.prefix),
                                                     coalesce(llmgw.html_escape(s.key_name), '')) END,
                                    coalesce(llmgw.html_escape(s.team_name), '<i>no team</i>'),
                                    to_char(s.n_calls, 'FM999,999,999,999,990'),
                                    to_char(s.n_errors, 'FM999,999,999,999,990'),
                                    llmgw.format_amount(s.spend),
                                    format('<svg class="bar" viewBox="0 0 160 12"><rect width="%s" height="12" rx="2" fill="#4e79a7"/></svg>',
                                           round((160 * s.spend / nullif(s.top_spend, 0))::numeric, 1))),
                             '' ORDER BY s.pos),
                  CASE WHEN max(s.n_keys) > 10
                       THEN format('<p class="note">The 10 largest of %s keys (and calls without a key, per team).</p>', max(s.n_keys))
                       ELSE '' END)
      INTO keys_html
      FROM shown s;

    WITH m AS (
        SELECT d.model, sum(d.calls) AS n_calls, sum(d.errors) AS n_errors,
               sum(d.input_tokens) AS n_in, sum(d.output_tokens) AS n_out,
               coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0) AS spend,
               count(*) OVER () AS n_models
          FROM llmgw.usage_daily d
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
         GROUP BY d.model
         ORDER BY spend DESC, n_calls DESC, d.model NULLS LAST
         LIMIT 10),
    shown AS (
        SELECT m.*, row_number() OVER (ORDER BY m.spend DESC, m.n_calls DESC, m.model NULLS LAST) AS pos,
               max(m.spend) OVER () AS top_spend
          FROM m)
    SELECT format('<table id="top-models"><thead><tr><th>Model</th><th class="n">Calls</th><th class="n">Errors</th>'
                  '<th class="n">Tokens in</th><th class="n">Tokens out</th><th class="n">Spend</th><th></th></tr></thead>'
                  '<tbody>%s</tbody></table>%s',
                  string_agg(format('<tr data-model="%s" data-calls="%s" data-cost="%s"><td>%s</td><td class="n">%s</td>'
                                    '<td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td>%s</td></tr>',
                                    coalesce(llmgw.html_escape(s.model), ''), s.n_calls, s.spend,
                                    coalesce(llmgw.html_escape(s.model), '<i>no model</i>'),
                                    to_char(s.n_calls, 'FM999,999,999,999,990'),
                                    to_char(s.n_errors, 'FM999,999,999,999,990'),
                                    to_char(s.n_in, 'FM999,999,999,999,990'),
                                    to_char(s.n_out, 'FM999,999,999,999,990'),
                                    llmgw.format_amount(s.spend),
                                    format('<svg class="bar" viewBox="0 0 120 12"><rect width="%s" height="12" rx="2" fill="#59a14f"/></svg>',
                                           round((120 * s.spend / nullif(s.top_spend, 0))::numeric, 1))),
                             '' ORDER BY s.pos),
                  CASE WHEN max(s.n_models) > 10
                       THEN format('<p class="note">The 10 largest of %s models.</p>', max(s.n_models))
                       ELSE '' END)
      INTO models_html
      FROM shown s;

    ----------------------------------------------------------------------
    -- Budgets: burn-down in the current period, forecast to its reset
    ----------------------------------------------------------------------
    IF NOT has_table_privilege('llmgw.budget_status', 'SELECT') THEN
        budget_cards := '<p class="note">Budgets are shown to llmgw_finance and llmgw_admin.</p>';
    ELSE
        FOR b IN
            SELECT s.id, s.name, s.scope, s.target, s.period, s.enforcement, s.currency,
                   s.limit_amount, s.spent, s.reserved, s.period_start, s.resets_at,
                   bd.key_id, bd.team_id, bd.role_name, bd.model, bd.created_at
              FROM llmgw.budget_status s
              JOIN llmgw.budgets bd ON bd.id = s.id
             WHERE tid IS NULL
                OR (bd.scope = 'team' AND bd.team_id = tid)
                OR (bd.scope = 'key' AND bd.key_id IN (SELECT k.lineage_id FROM llmgw.keys k
                                                         WHERE k.team = team_name))
             ORDER BY s.name, s.id
        LOOP
            n_budgets := n_budgets + 1;
            CONTINUE WHEN n_budgets > 50;
            periodic := b.period <> 'total';
            lim := b.limit_amount;
            b_spent := b.spent;
            forecast := NULL;
            runs_out := NULL;
            -- its spend per day, as llmgw.budget_spent counts it
            SELECT min(x.day), jsonb_agg(jsonb_build_object('day', x.day, 'cost', x.cost))
              INTO first_spend, b_days
              FROM (SELECT d.day, sum(d.cost) AS cost
                      FROM llmgw.usage_daily d
                     WHERE d.currency = b.currency
                       AND d.day >= (b.period_start AT TIME ZONE 'UTC')::date
                       AND CASE b.scope
                             WHEN 'key' THEN d.key_id IN (SELECT k.id FROM llmgw.keys k
                                                           WHERE k.lineage_id = b.key_id)
                             WHEN 'team' THEN d.team_id = b.team_id
                             WHEN 'role' THEN d.role_name = b.role_name
                             WHEN 'model' THEN d.model = b.model
                             ELSE true END
                     GROUP BY d.day) x;
            IF periodic THEN
                -- linear run-rate of the period so far, to the reset
                x0 := b.period_start;
                x1 := b.resets_at;
                elapsed := greatest(extract(epoch FROM now() - x0), 1);
                forecast := round(b_spent * extract(epoch FROM x1 - x0) / elapsed, 6);
                IF b_spent < lim AND forecast > lim THEN
                    runs_out := x0 + make_interval(secs => (elapsed * lim / b_spent)::float8);
                END IF;
            ELSE
                x0 := least(b.created_at, first_spend::timestamp AT TIME ZONE 'UTC');
                x1 := now();
            END IF;
            IF x1 < x0 + interval '1 hour' THEN
                x0 := x1 - interval '1 hour';
            END IF;
            e0 := extract(epoch FROM x0);
            e1 := extract(epoch FROM x1);
            -- remaining from the limit down to below 0 (at most as far again)
            y_top := greatest(lim, 0);
            y_low := greatest(least(0, lim - greatest(b_spent, coalesce(forecast, 0))),
                              -greatest(lim, b_spent));
            IF y_low < 0 THEN
                y_low := y_low - (y_top - y_low) * 0.05;
            END IF;
            IF y_top = y_low THEN
                y_top := 1;
            END IF;
            -- the forecast line ends at the reset, or where it leaves the chart
            f_end := x1;
            f_val := lim - coalesce(forecast, 0);
            IF periodic AND f_val < y_low AND b_spent > 0 THEN
                f_end := now() + make_interval(secs => ((lim - b_spent - y_low) * elapsed / b_spent)::float8);
                f_val := y_low;
            END IF;
            b_state := CASE WHEN b_spent >= lim AND (lim > 0 OR b_spent > 0) THEN 'over'
                            WHEN forecast > lim THEN 'warn' ELSE 'ok' END;

            SELECT string_agg(format('%s,%s %s,%s',
                       round(bl + (extract(epoch FROM greatest(c.ds, x0)) - e0) / (e1 - e0) * bpw, 1),
                       round(bt + (y_top - (lim - c.before)) / (y_top - y_low) * bph, 1),
                       round(bl + (extract(epoch FROM least(c.de, now())) - e0) / (e1 - e0) * bpw, 1),
                       round(bt + (y_top - (lim - c.after)) / (y_top - y_low) * bph, 1)),
                       ' ' ORDER BY c.day)
              INTO pts
              FROM (SELECT v.day, v.day::timestamp AT TIME ZONE 'UTC' AS ds,
                           (v.day + 1)::timestamp AT TIME ZONE 'UTC' AS de,
                           coalesce(sum(v.cost) OVER (ORDER BY v.day ROWS BETWEEN UNBOUNDED PRECEDING
                                                                     AND 1 PRECEDING), 0) AS before,
                           sum(v.cost) OVER (ORDER BY v.day) AS after
                      FROM jsonb_to_recordset(b_days) AS v(day date, cost numeric)) c;
            -- x and y of now, of the limit, of 0
            nx := round(bl + (extract(epoch FROM now()) - e0) / (e1 - e0) * bpw, 1);
            ly := round(bt + (y_top - lim) / (y_top - y_low) * bph, 1);
            zy := round(bt + y_top / (y_top - y_low) * bph, 1);

            budget_cards := budget_cards || format(
                '<div class="budget %s" data-budget="%s" data-spent="%s" data-limit="%s" data-forecast="%s">'
                '<h3>%s</h3><p class="tag">%s%s · %s · %s</p>'
                '<svg class="meter" viewBox="0 0 300 8"><rect width="300" height="8" rx="4" fill="#e4e7eb"/>'
                '<rect width="%s" height="8" rx="4" class="fill"/></svg>',
                b_state, llmgw.html_escape(b.name), b_spent, lim, coalesce(forecast::text, ''),
                llmgw.html_escape(b.name), b.scope,
                coalesce(' ' || llmgw.html_escape(b.target), ''), b.period, b.enforcement,
                round(300 * least(b_spent / nullif(lim, 0), 1), 1))
              || format('<svg class="burn" viewBox="0 0 %s %s" role="img" aria-label="Remaining of budget %s">',
                        bl + bpw + 12, bt + bph + 22, llmgw.html_escape(b.name))
              || CASE WHEN y_low < 0
                      THEN format('<rect class="overrun" x="%s" y="%s" width="%s" height="%s"/>',
                                  bl, zy, bpw, round(bt + bph - zy, 1))
                      ELSE '' END
              || format('<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/><text x="%s" y="%s" text-anchor="end">%s</text>',
                        bl, bl + bpw, ly, ly, bl - 6, ly + 4, llmgw.format_amount(lim))
              || format('<line class="zero" x1="%s" x2="%s" y1="%s" y2="%s"/><text x="%s" y="%s" text-anchor="end">0</text>',
                        bl, bl + bpw, zy, zy, bl - 6, zy + 4)
              || CASE WHEN periodic
                      THEN format('<line class="ideal" x1="%s" y1="%s" x2="%s" y2="%s"><title>an even pace to the reset</title></line>'
                                  '<line class="now" x1="%s" x2="%s" y1="%s" y2="%s"/>',
                                  bl, ly, bl + bpw, zy, nx, nx, bt, bt + bph)
                      ELSE '' END
              || format('<polyline class="remaining" points="%s"><title>remaining: %s %s</title></polyline>',
                        concat_ws(' ', bl || ',' || ly, pts, nx || ',' ||
                                  round(bt + (y_top - (lim - b_spent)) / (y_top - y_low) * bph, 1)),
                        llmgw.format_amount(lim - b_spent), llmgw.html_escape(b.currency))
              || CASE WHEN periodic
                      THEN format('<line class="forecast" x1="%s" y1="%s" x2="%s" y2="%s"><title>forecast at the reset: %s %s spent</title></line>',
                                  nx, round(bt + (y_top - (lim - b_spent)) / (y_top - y_low) * bph, 1),
                                  round(bl + (extract(epoch FROM f_end) - e0) / (e1 - e0) * bpw, 1),
                                  round(bt + (y_top - f_val) / (y_top - y_low) * bph, 1),
                                  llmgw.format_amount(forecast), llmgw.html_escape(b.currency))
                      ELSE '' END
              || CASE WHEN runs_out IS NOT NULL
                      THEN format('<circle class="runs-out" cx="%s" cy="%s" r="4"><title>runs out around %s</title></circle>',
                                  round(bl + (extract(epoch FROM runs_out) - e0) / (e1 - e0) * bpw, 1), zy,
                                  to_char(runs_out AT TIME ZONE 'UTC', 'Mon DD HH24:MI "UTC"'))
                      ELSE '' END
              || format('<text x="%s" y="%s">%s</text><text x="%s" y="%s" text-anchor="end">%s</text></svg>',
                        bl, bt + bph + 16, to_char(x0 AT TIME ZONE 'UTC', 'Mon DD'),
                        bl + bpw, bt + bph + 16,
                        CASE WHEN periodic THEN 'resets ' || to_char(x1 AT TIME ZONE 'UTC', 'Mon DD')
                             ELSE 'now' END)
              || format('<p>Spent <b class="spent">%s</b> of %s %s%s · reserved %s</p>',
                        llmgw.format_amount(b_spent), llmgw.format_amount(lim), llmgw.html_escape(b.currency),
                        CASE WHEN lim > 0 THEN ' (' || to_char(100 * b_spent / lim, 'FM999990.0') || '%)' ELSE '' END,
                        llmgw.format_amount(b.reserved))
              || CASE WHEN periodic
                      THEN format('<p>Forecast at the reset (%s): <b class="forecast-value">%s</b>%s%s</p>',
                                  to_char(x1 AT TIME ZONE 'UTC', 'Mon DD HH24:MI "UTC"'),
                                  llmgw.format_amount(forecast),
                                  CASE WHEN lim > 0 THEN ' (' || to_char(100 * forecast / lim, 'FM999990.0') || '%)' ELSE '' END,
                                  CASE WHEN runs_out IS NOT NULL
                                       THEN ' · runs out around ' || to_char(runs_out AT TIME ZONE 'UTC', 'Mon DD HH24:MI "UTC"')
                                       ELSE '' END
                                  -- a rate of a few hours says little about a month
                                  || CASE WHEN elapsed * 7 < extract(epoch FROM x1 - x0)
                                          THEN ' · early in the period: a rough forecast'
                                          ELSE '' END)
                      ELSE '<p>A total budget does not reset: no forecast.</p>' END
              || '</div>';
        END LOOP;
        IF n_budgets = 0 THEN
            budget_cards := '<p class="note">No budget applies.</p>';
        ELSE
            budget_cards := '<div class="budgets">' || budget_cards || '</div>'
                || CASE WHEN n_budgets > 50
                        THEN format('<p class="note">The first 50 of %s budgets, by name.</p>', n_budgets)
                        ELSE '' END;
        END IF;
    END IF;

    ----------------------------------------------------------------------
    -- Errors and fallbacks per day
    ----------------------------------------------------------------------
    WITH g AS (
        SELECT gs::date AS day
          FROM generate_series(first_day::timestamp, last_day::timestamp, '1 day') gs),
    r AS (
        SELECT d.day, sum(d.calls) AS n_calls, sum(d.errors) AS n_errors,
               coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0) AS spend
          FROM llmgw.usage_daily d
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
         GROUP BY d.day),
    f AS (
        SELECT * FROM unnest(fb_days, fb_counts) AS f(day, n))
    SELECT jsonb_agg(jsonb_build_object('day', g.day, 'calls', coalesce(r.n_calls, 0),
                                        'errors', coalesce(r.n_errors, 0), 'fallbacks', coalesce(f.n, 0),
                                        'cost', coalesce(r.spend, 0)) ORDER BY g.day)
      INTO per_day
      FROM g LEFT JOIN r ON r.day = g.day LEFT JOIN f ON f.day = g.day;

    SELECT max(greatest(v.errors, v.fallbacks) * 100.0 / nullif(v.calls, 0)) INTO top_value
      FROM jsonb_to_recordset(per_day) AS v(calls bigint, errors bigint, fallbacks bigint);
    sc := llmgw.chart_scale(least(top_value, 100));

    errors_svg := format('<svg class="chart" id="errors-chart" viewBox="0 0 %s %s" role="img" aria-label="Error and fallback rates per day">',
                         cw, eh)
        || (SELECT string_agg(format('<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/>'
                                     '<text x="%s" y="%s" text-anchor="end">%s%%</text>',
                                     ml, cw - mr, y, y, ml - 6, y + 4,
                                     trim_scale(round((k * sc.tick)::numeric, 2))), '' ORDER BY k)
              FROM generate_series(0, round(sc.axis_max / sc.tick)::int) AS k,
                   LATERAL (SELECT round((mt + (eh - mt - mb) * (1 - k * sc.tick / sc.axis_max))::numeric, 1) AS y) g)
        || (SELECT string_agg(format('<text x="%s" y="%s" text-anchor="middle">%s</text>',
                                     round((ml + (v.day - first_day) * step + step / 2)::numeric, 1),
                                     eh - mb + 18, to_char(v.day, 'Mon DD')), '' ORDER BY v.day)
              FROM jsonb_to_recordset(per_day) AS v(day date)
             WHERE (v.day - first_day) % every = 0)
        || coalesce((SELECT string_agg(
                   CASE WHEN v.errors > 0 THEN format(
                       '<rect class="error-bar" x="%s" y="%s" width="%s" height="%s" data-day="%s" data-errors="%s" data-calls="%s">'
                       '<title>%s: errors, %s of %s calls (%s%%)</title></rect>',
                       round((ml + (v.day - first_day) * step + step * 0.14)::numeric, 1),
                       round((mt + (eh - mt - mb) * (1 - least(v.errors * 100.0 / v.calls / sc.axis_max, 1)))::numeric, 1),
                       round(greatest(step * 0.36, 0.5)::numeric, 1),
                       round(greatest((eh - mt - mb) * least(v.errors * 100.0 / v.calls / sc.axis_max, 1), 0.5)::numeric, 1),
                       to_char(v.day, 'YYYY-MM-DD'), v.errors, v.calls, to_char(v.day, 'Mon DD'), v.errors, v.calls,
                       to_char(v.errors * 100.0 / v.calls, 'FM990.0')) ELSE '' END
                   || CASE WHEN v.fallbacks > 0 THEN format(
                       '<rect class="fallback-bar" x="%s" y="%s" width="%s" height="%s" data-day="%s" data-fallbacks="%s" data-calls="%s">'
                       '<title>%s: fallbacks, %s of %s calls (%s%%)</title></rect>',
                       round((ml + (v.day - first_day) * step + step * 0.5)::numeric, 1),
                       round((mt + (eh - mt - mb) * (1 - least(v.fallbacks * 100.0 / v.calls / sc.axis_max, 1)))::numeric, 1),
                       round(greatest(step * 0.36, 0.5)::numeric, 1),
                       round(greatest((eh - mt - mb) * least(v.fallbacks * 100.0 / v.calls / sc.axis_max, 1), 0.5)::numeric, 1),
                       to_char(v.day, 'YYYY-MM-DD'), v.fallbacks, v.calls, to_char(v.day, 'Mon DD'), v.fallbacks, v.calls,
                       to_char(v.fallbacks * 100.0 / v.calls, 'FM990.0')) ELSE '' END,
                   '' ORDER BY v.day)
              FROM jsonb_to_recordset(per_day) AS v(day date, calls bigint, errors bigint, fallbacks bigint)
             WHERE v.calls > 0 AND (v.errors > 0 OR v.fallbacks > 0)), '')
        || format('<line class="axis" x1="%s" x2="%s" y1="%s" y2="%s"/>', ml, cw - mr, eh - mb, eh - mb)
        || '</svg>';

    SELECT string_agg(format('<tr data-day="%s" data-calls="%s" data-errors="%s" data-fallbacks="%s" data-cost="%s">'
                             '<td>%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td>'
                             '<td class="n">%s</td><td class="n">%s</td></tr>',
                             to_char(v.day, 'YYYY-MM-DD'), v.calls, v.errors, v.fallbacks, v.cost,
                             to_char(v.day, 'YYYY-MM-DD'),
                             to_char(v.calls, 'FM999,999,999,999,990'),
                             to_char(v.errors, 'FM999,999,999,999,990'),
                             to_char(v.fallbacks, 'FM999,999,999,999,990'),
                             CASE WHEN v.calls > 0 THEN to_char(v.errors * 100.0 / v.calls, 'FM990.0') || '%' ELSE '' END,
                             llmgw.format_amount(v.cost)),
                      '' ORDER BY v.day)
      INTO days_html
      FROM jsonb_to_recordset(per_day) AS v(day date, calls bigint, errors bigint, fallbacks bigint, cost numeric);

    css := 'body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;'
        || 'color:#1f2933;background:#f5f7fa;margin:0;padding:24px}'
        || 'main{max-width:1160px;margin:0 auto}'
        || 'h1{font-size:24px;margin:0 0 2px}h2{font-size:16px;margin:0 0 10px}h3{font-size:14px;margin:0}'
        || '.sub{color:#52606d;margin:0 0 16px}'
        || 'section{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:16px;margin:0 0 16px}'
        || 'section.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;background:none;border:0;padding:0}'
        || '.kpi{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:10px 12px}'
        || '.kpi b{display:block;font-size:22px;font-variant-numeric:tabular-nums}.kpi span{color:#52606d;font-size:12px}'
        || '.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}.two>section{margin:0}'
        || '.wrap{margin-bottom:16px}'
        || 'table{border-collapse:collapse;width:100%}'
        || 'th,td{padding:4px 6px;text-align:left;border-bottom:1px solid #eef0f2;font-size:13px;vertical-align:middle}'
        || 'th{color:#52606d;font-weight:600}.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}'
        || 'svg.chart{width:100%;height:auto;display:block}'
        || 'svg.bar{width:100%;min-width:60px;height:12px;display:block}'
        || 'svg text{font-size:11px;fill:#52606d}.grid{stroke:#e4e7eb}.axis{stroke:#9aa5b1}'
        || '.legend{list-style:none;padding:0;margin:10px 0 0;display:flex;flex-wrap:wrap;gap:4px 18px}'
        || '.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}'
        || '.error-bar{fill:#e15759}.fallback-bar{fill:#f28e2b}'
        || '.budgets{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}'
        || '.budget{border:1px solid #e4e7eb;border-radius:6px;padding:10px 12px}'
        || '.budget p{margin:4px 0;font-size:13px}.budget .tag{color:#52606d;font-size:12px}'
        || 'svg.meter{width:100%;height:8px;display:block;margin:6px 0}svg.burn{width:100%;height:auto;display:block}'
        || '.ok .fill{fill:#59a14f}.warn .fill{fill:#edc948}.over .fill{fill:#e15759}'
        || '.warn .forecast-value{color:#b7791f}.over .spent{color:#c53030}'
        || '.remaining{fill:none;stroke:#4e79a7;stroke-width:2}'
        || '.forecast{stroke:#f28e2b;stroke-width:2;stroke-dasharray:5 4}'
        || '.ideal{stroke:#9aa5b1;stroke-dasharray:2 3}.now{stroke:#cbd2d9}'
        || '.zero{stroke:#c53030;stroke-width:1}.overrun{fill:#fdecec}.runs-out{fill:#c53030}'
        || '.note,.empty{color:#52606d;font-size:12px}text.empty{font-size:14px}'
        || 'code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}'
        || 'details summary{cursor:pointer;color:#52606d;margin-top:16px}.sub-h{margin-top:16px}'
        || 'footer{color:#7b8794;font-size:12px;margin:8px 0 24px}'
        || '@media (max-width:800px){section.kpis{grid-template-columns:repeat(2,1fr)}.two{grid-template-columns:1fr}}'
        || '@media print{body{background:#fff;padding:0}section{break-inside:avoid}}';

    html := '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        -- nothing to run, nothing to fetch: inline styles only
        || '<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''">'
        || '<meta name="viewport" content="width=device-width, initial-scale=1">'
        || format('<title>llmgw spend %s to %s, %s</title>', to_char(first_day, 'YYYY-MM-DD'),
                  to_char(last_day, 'YYYY-MM-DD'), scope_label)
        || '<style>' || css || '</style></head><body><main>'
        || format('<header><h1>LLM spend</h1><p class="sub" id="scope" data-from="%s" data-to="%s" data-team="%s" data-currency="%s">'
                  '%s to %s (UTC days) · %s · amounts in %s · generated %s</p></header>',
                  to_char(first_day, 'YYYY-MM-DD'), to_char(last_day, 'YYYY-MM-DD'),
                  coalesce(llmgw.html_escape(team_name), ''),
                  coalesce(llmgw.html_escape(cur), ''),
                  to_char(first_day, 'Mon DD, YYYY'), to_char(last_day, 'Mon DD, YYYY'), scope_label,
                  coalesce(llmgw.html_escape(cur), 'no currency: nothing was priced'),
                  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'))
        || kpis
        || CASE WHEN other_currencies IS NOT NULL
                THEN format('<p class="note" id="other-currencies">Also spent in other currencies, not drawn: %s.</p>',
                            other_currencies)
                ELSE '' END
        || format('<section id="daily"><h2>Spend per day, by %s</h2>', CASE WHEN by_team THEN 'team' ELSE 'model' END)
        || daily_svg
        || '<ul class="legend">' || coalesce(legend, '') || '</ul></section>'
        || '<div class="two wrap"><section id="keys"><h2>Top keys</h2>'
        || coalesce(keys_html, '<p class="empty">No calls in this period.</p>')
        || '</section><section id="models"><h2>Top models</h2>'
        || coalesce(models_html, '<p class="empty">No calls in this period.</p>')
        || '</section></div>'
        || '<section id="budgets"><h2>Budgets in their current period</h2>' || budget_cards
        || '<p class="note">Remaining amount from the period''s start to now (blue), at an even pace (dotted), '
           'and forecast to the reset at the period''s run-rate so far (dashed); below 0 the budget is spent.</p>'
        || '</section>'
        || '<section id="errors"><h2>Errors and fallbacks per day</h2>' || errors_svg
        || '<ul class="legend"><li><span class="sw" style="background:#e15759"></span>errors: usage rows not ok, in % of calls</li>'
           '<li><span class="sw" style="background:#f28e2b"></span>fallbacks: attempts on another deployment after a failure, in % of calls</li></ul>'
        || '<div class="two"><div><h3 class="sub-h">Errors by class</h3>'
        || CASE WHEN class_rows IS NULL THEN '<p class="empty">No errors in this period.</p>'
                ELSE '<table id="error-classes"><thead><tr><th>Class</th><th class="n">Rows</th><th class="n">Share</th></tr></thead><tbody>'
                     || class_rows || '</tbody></table>' END
        || '</div><div><details><summary>Every day in figures</summary>'
        || '<table id="days"><thead><tr><th>Day</th><th class="n">Calls</th><th class="n">Errors</th>'
           '<th class="n">Fallbacks</th><th class="n">Error rate</th><th class="n">Spend</th></tr></thead><tbody>'
        || coalesce(days_html, '') || '</tbody></table></details></div></div></section>'
        || '<footer>From llmgw.usage_daily (spend, calls, errors) and llmgw.usage (fallbacks, error classes); '
           'budgets from llmgw.budget_status. Calls are usage rows: provider attempts and cache hits. '
           'What a reader sees follows its row-level security.</footer>'
        || '</main></body></html>';
    RETURN html;
END
$fn$;

REVOKE ALL ON FUNCTION llmgw.html_escape(text), llmgw.format_amount(numeric),
    llmgw.chart_scale(double precision), llmgw.spend_report(timestamptz, timestamptz, text)
    FROM PUBLIC;
-- the page runs with its reader's rights, helpers included
GRANT EXECUTE ON FUNCTION llmgw.html_escape(text), llmgw.format_amount(numeric),
    llmgw.chart_scale(double precision), llmgw.spend_report(timestamptz, timestamptz, text)
    TO llmgw_admin, llmgw_finance, llmgw_user;

COMMENT ON FUNCTION llmgw.html_escape(text) IS 'Text made inert in HTML and SVG content and quoted attributes (& < > " and '' escaped)';
COMMENT ON FUNCTION llmgw.format_amount(numeric) IS 'An amount as the spend report shows it: two decimals from 1 up with thousands separators, up to six below 1';
COMMENT ON FUNCTION llmgw.chart_scale(double precision) IS 'The axis of a spend report chart: a round tick (1, 2 or 5 times a power of ten) and the axis maximum, a whole number of ticks';
COMMENT ON FUNCTION llmgw.spend_report(timestamptz, timestamptz, text) IS 'One self-contained HTML page (inline SVG, no script, nothing fetched) of the spend of a period: per day by team or model, top keys and models, budget burn-downs with a forecast, error and fallback rates';
