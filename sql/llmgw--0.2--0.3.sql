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

-- ==== Provider batches (docs/batch.md) ====
-- Enrichment through the providers' Batch APIs: a batch and its items
-- are rows; worker 0 moves each batch through its states (upload, submit,
-- poll, ingest), each step idempotent, so that a crash at any point
-- resumes without a second submission, a second result or a second usage
-- row.

ALTER TABLE llmgw.jobs ADD COLUMN mode text NOT NULL DEFAULT 'sync'
    CONSTRAINT jobs_mode_check CHECK (mode IN ('sync', 'batch'));
ALTER TABLE llmgw.jobs ADD COLUMN key_column text;
COMMENT ON COLUMN llmgw.jobs.mode IS 'sync: answered by llmgw.enrich itself; batch: through the provider''s Batch API, written by the workers';
COMMENT ON COLUMN llmgw.jobs.key_column IS 'The key column of source (batch jobs: the workers write answers by it)';

ALTER TABLE llmgw.usage ADD COLUMN batch_id bigint;
COMMENT ON COLUMN llmgw.usage.batch_id IS 'The llmgw.batches row the call was part of (NULL: a synchronous call)';

CREATE TABLE llmgw.batches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint,
    owner name NOT NULL,
    model text NOT NULL,
    provider text,
    upstream_model text,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'submitting', 'validating', 'in_progress', 'finalizing',
                         'cancelling', 'ingesting', 'completed', 'failed', 'expired', 'cancelled')),
    provider_status text,
    marker uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid() UNIQUE,
    input_file_id text,
    provider_batch_id text,
    output_file_id text,
    error_file_id text,
    requests integer NOT NULL CHECK (requests > 0),
    provider_completed integer,
    provider_failed integer,
    price_id bigint,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    submitted_at timestamptz,
    checked_at timestamptz,
    finished_at timestamptz,
    last_error text
);
CREATE INDEX batches_open_idx ON llmgw.batches (id)
    WHERE state NOT IN ('completed', 'failed', 'expired', 'cancelled');
CREATE INDEX batches_job_idx ON llmgw.batches (job_id);
ALTER TABLE llmgw.batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY batches_staff ON llmgw.batches TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY batches_own ON llmgw.batches TO llmgw_user USING (owner = CURRENT_USER);

CREATE TABLE llmgw.batch_items (
    batch_id bigint NOT NULL REFERENCES llmgw.batches (id) ON DELETE CASCADE,
    custom_id text NOT NULL,
    row_key text,
    request jsonb NOT NULL,
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'done', 'failed', 'expired', 'cancelled')),
    attempt integer NOT NULL DEFAULT 1,
    request_id uuid,
    answer jsonb,
    error text,
    PRIMARY KEY (batch_id, custom_id)
);
CREATE INDEX batch_items_pending_idx ON llmgw.batch_items (row_key) WHERE state = 'pending';
ALTER TABLE llmgw.batch_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_items_staff ON llmgw.batch_items TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY batch_items_own ON llmgw.batch_items TO llmgw_user
    USING (EXISTS (SELECT 1 FROM llmgw.batches b
                    WHERE b.id = batch_items.batch_id AND b.owner = CURRENT_USER));

COMMENT ON POLICY batches_staff ON llmgw.batches IS 'Administrators and finance see every batch';
COMMENT ON POLICY batches_own ON llmgw.batches IS 'Users see the batches they submitted';
COMMENT ON POLICY batch_items_staff ON llmgw.batch_items IS 'Administrators and finance see every item';
COMMENT ON POLICY batch_items_own ON llmgw.batch_items IS 'Users see the items of the batches they submitted';
COMMENT ON SEQUENCE llmgw.batches_id_seq IS 'Numbers of llmgw.batches';
COMMENT ON TABLE llmgw.batches IS 'Provider batches (Batch APIs): their state, provider ids, counts and the price in force at submission';
COMMENT ON COLUMN llmgw.batches.id IS 'Batch number';
COMMENT ON COLUMN llmgw.batches.job_id IS 'The llmgw.jobs row it fills (NULL: submitted with llmgw.submit_batch alone)';
COMMENT ON COLUMN llmgw.batches.owner IS 'The role that submitted it; answers are written with its rights';
COMMENT ON COLUMN llmgw.batches.model IS 'Model alias';
COMMENT ON COLUMN llmgw.batches.provider IS 'Provider it was uploaded to (set at upload)';
COMMENT ON COLUMN llmgw.batches.upstream_model IS 'The provider''s model name (set at upload)';
COMMENT ON COLUMN llmgw.batches.state IS 'queued, submitting (file uploaded), validating, in_progress, finalizing, cancelling, ingesting (results being written), then completed, failed, expired or cancelled';
COMMENT ON COLUMN llmgw.batches.provider_status IS 'The status the provider last reported';
COMMENT ON COLUMN llmgw.batches.marker IS 'Client-side idempotency marker, sent as the batch''s metadata: after a crash during submission the batch is found by it, never submitted twice';
COMMENT ON COLUMN llmgw.batches.input_file_id IS 'The provider''s id of the uploaded JSONL file';
COMMENT ON COLUMN llmgw.batches.provider_batch_id IS 'The provider''s batch id';
COMMENT ON COLUMN llmgw.batches.output_file_id IS 'The provider''s id of the results file';
COMMENT ON COLUMN llmgw.batches.error_file_id IS 'The provider''s id of the errors file';
COMMENT ON COLUMN llmgw.batches.requests IS 'Number of requests (items)';
COMMENT ON COLUMN llmgw.batches.provider_completed IS 'request_counts.completed as the provider last reported it';
COMMENT ON COLUMN llmgw.batches.provider_failed IS 'request_counts.failed as the provider last reported it';
COMMENT ON COLUMN llmgw.batches.price_id IS 'The llmgw.prices row in force at submission; items are charged its batch rates';
COMMENT ON COLUMN llmgw.batches.cancel_requested IS 'llmgw.cancel_job asked to cancel it';
COMMENT ON COLUMN llmgw.batches.created_at IS 'When it was queued';
COMMENT ON COLUMN llmgw.batches.submitted_at IS 'When the provider accepted it';
COMMENT ON COLUMN llmgw.batches.checked_at IS 'When its status was last asked';
COMMENT ON COLUMN llmgw.batches.finished_at IS 'When its last result was written';
COMMENT ON COLUMN llmgw.batches.last_error IS 'The last error of a step (retried) or of the batch';
COMMENT ON TABLE llmgw.batch_items IS 'The requests of provider batches, each written once: its state changes in the transaction that writes its answer and usage row';
COMMENT ON COLUMN llmgw.batch_items.batch_id IS 'Its batch';
COMMENT ON COLUMN llmgw.batch_items.custom_id IS 'Its custom_id in the batch';
COMMENT ON COLUMN llmgw.batch_items.row_key IS 'The key of the row of the job''s table it answers (NULL: no job)';
COMMENT ON COLUMN llmgw.batch_items.request IS 'llm_chat''s request, without the model';
COMMENT ON COLUMN llmgw.batch_items.state IS 'pending, done (answered), failed, expired or cancelled';
COMMENT ON COLUMN llmgw.batch_items.attempt IS 'Attempt number of its usage row';
COMMENT ON COLUMN llmgw.batch_items.request_id IS 'llmgw.usage.request_id of its usage row';
COMMENT ON COLUMN llmgw.batch_items.answer IS 'The provider''s chat.completion (batches without a job only)';
COMMENT ON COLUMN llmgw.batch_items.error IS 'Why it has no answer';

-- A price row at its batch rates: input and output at batch_input and
-- batch_output, the other rates of each side scaled alike; the row as it
-- is when it has no batch rates
CREATE FUNCTION llmgw.batch_price(p llmgw.prices) RETURNS llmgw.prices
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fi numeric := CASE WHEN p.batch_input IS NOT NULL AND p.input > 0 THEN p.batch_input / p.input END;
    fo numeric := CASE WHEN p.batch_output IS NOT NULL AND p.output > 0 THEN p.batch_output / p.output END;
BEGIN
    IF p.id IS NULL THEN
        RETURN p;
    END IF;
    p.input := coalesce(p.batch_input, p.input);
    p.output := coalesce(p.batch_output, p.output);
    p.cached_input := trim_scale(p.cached_input * coalesce(fi, 1));
    p.cache_write_5m := trim_scale(p.cache_write_5m * coalesce(fi, 1));
    p.cache_write_1h := trim_scale(p.cache_write_1h * coalesce(fi, 1));
    p.tier_input := trim_scale(p.tier_input * coalesce(fi, 1));
    p.tier_cached_input := trim_scale(p.tier_cached_input * coalesce(fi, 1));
    p.tier_cache_write_5m := trim_scale(p.tier_cache_write_5m * coalesce(fi, 1));
    p.tier_cache_write_1h := trim_scale(p.tier_cache_write_1h * coalesce(fi, 1));
    p.reasoning := trim_scale(p.reasoning * coalesce(fo, 1));
    p.tier_output := trim_scale(p.tier_output * coalesce(fo, 1));
    RETURN p;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_price(llmgw.prices) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_price(llmgw.prices) IS 'A price row at its batch rates (batch_input, batch_output; the other rates scaled alike); unchanged without batch rates';

-- Queue chat requests (llm_chat's, without their model) as one provider
-- batch of a model; returns the batch's id at once.  Worker 0 uploads it
-- once the transaction commits.  With job_id and row_keys (llmgw.enrich),
-- each answer goes into that job's row of that key.
CREATE FUNCTION llmgw.submit_batch(requests jsonb[], model text, job_id bigint DEFAULT NULL,
                                   row_keys text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    me name := llmgw.caller();
    n integer := coalesce(cardinality(requests), 0);
    max_n integer := current_setting('llmgw.batch_max_requests')::integer;
    b bigint;
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'a batch needs at least one request' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n > max_n THEN
        RAISE EXCEPTION 'a batch holds at most % requests (llmgw.batch_max_requests), not %', max_n, n
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Submit the requests in several batches; llmgw.enrich(..., mode => ''batch'') splits a job by itself.';
    END IF;
    IF (job_id IS NULL) <> (row_keys IS NULL) OR cardinality(row_keys) <> n
       OR array_position(row_keys, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'job_id and row_keys go together, one key per request'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM llmgw.models m WHERE m.alias = submit_batch.model) THEN
        RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(requests) r
                WHERE r IS NULL OR jsonb_typeof(r) <> 'object'
                   OR jsonb_typeof(r -> 'messages') IS DISTINCT FROM 'array') THEN
        RAISE EXCEPTION 'every request must be a JSON object with a messages array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- OpenAI's limit of a batch input file
    IF (SELECT sum(octet_length(r::text) + 100) FROM unnest(requests) r) > 200 * 1024 * 1024 THEN
        RAISE EXCEPTION 'the requests of a batch may hold at most 200 MB'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF job_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM llmgw.jobs j
         WHERE j.id = submit_batch.job_id AND j.owner = me AND j.mode = 'batch'
           AND j.status = 'running') THEN
        RAISE EXCEPTION 'job % is not a running batch job of role %', job_id, me
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO llmgw.batches (job_id, owner, model, requests)
    VALUES (submit_batch.job_id, me, submit_batch.model, n)
    RETURNING id INTO b;
    INSERT INTO llmgw.batch_items (batch_id, custom_id, row_key, request)
    SELECT b, 'r' || u.o, row_keys[u.o], u.r - 'model' - 'stream' - 'stream_options'
      FROM unnest(requests) WITH ORDINALITY u(r, o);
    RETURN b;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[]) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[]) IS 'Queue chat requests as one provider batch (Batch API, half price, within 24 hours); returns the batch id';

-- Cancel a job: its provider batches are cancelled too (their results so
-- far are still written); rows left without an answer stay NULL
CREATE FUNCTION llmgw.cancel_job(id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    j llmgw.jobs;
BEGIN
    SELECT * INTO j FROM llmgw.jobs WHERE jobs.id = cancel_job.id FOR UPDATE;
    IF NOT FOUND OR (j.owner <> llmgw.caller() AND NOT llmgw.caller_has_role('llmgw_admin')
                     AND NOT llmgw.caller_is_superuser()) THEN
        RAISE EXCEPTION 'job % does not exist', id USING ERRCODE = 'undefined_object';
    END IF;
    IF j.mode <> 'batch' THEN
        RAISE EXCEPTION 'job % is synchronous', id
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'A synchronous job stops when its CALL is cancelled (pg_cancel_backend), and resumes when called again.';
    END IF;
    UPDATE llmgw.batches b SET cancel_requested = true
     WHERE b.job_id = cancel_job.id
       AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled');
    IF NOT FOUND AND j.status = 'running' THEN
        UPDATE llmgw.jobs SET status = 'stopped', finished_at = clock_timestamp(),
               updated_at = clock_timestamp(), last_error = 'cancelled'
         WHERE jobs.id = cancel_job.id;
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.cancel_job(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.cancel_job(bigint) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.cancel_job(bigint) IS 'Cancel a batch job and its provider batches (results already there are still written)';

-- Internal (worker 0): write the results of a chunk of a batch's output or
-- error file, each line a JSON object.  An item is written once: its
-- state, its usage row and its answer (into the job's row, with the
-- owner's rights, as llmgw.enrich would have written it) in this one
-- transaction.  Returns the number of items it wrote.
CREATE FUNCTION llmgw.batch_ingest(batch bigint, lines text[]) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bt llmgw.batches;
    j llmgw.jobs;
    bp llmgw.prices;
    team bigint;
    kind text;
    keys text[];
    answers text[];
    written text[] := '{}';
    n integer;
    nfailed integer;
BEGIN
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT * INTO j FROM llmgw.jobs WHERE jobs.id = bt.job_id;
    bp := llmgw.batch_price((SELECT p FROM llmgw.prices p WHERE p.id = bt.price_id));
    SELECT rb.team_id INTO team FROM llmgw.role_bindings rb WHERE rb.role_name = bt.owner;
    SELECT pr.kind INTO kind FROM llmgw.providers pr WHERE pr.name = bt.provider;

    WITH l AS (
        SELECT x.v FROM unnest(lines) s, LATERAL (SELECT s::jsonb AS v) x
         WHERE jsonb_typeof(x.v) = 'object'),
    r AS (
        SELECT i.custom_id, i.row_key, i.attempt, pg_catalog.gen_random_uuid() AS rid,
               (l.v -> 'response' ->> 'status_code')::integer AS http_status,
               l.v -> 'response' -> 'body' AS body, l.v -> 'error' AS err,
               CASE WHEN (l.v -> 'response' ->> 'status_code') = '200'
                         AND jsonb_typeof(l.v -> 'response' -> 'body' -> 'choices' -> 0 -> 'message' -> 'content') = 'string'
                        THEN 'done'
                    WHEN l.v -> 'error' ->> 'code' = 'batch_expired' THEN 'expired'
                    WHEN l.v -> 'error' ->> 'code' = 'batch_cancelled' THEN 'cancelled'
                    ELSE 'failed' END AS item_state
          FROM l JOIN llmgw.batch_items i
            ON i.batch_id = batch AND i.custom_id = l.v ->> 'custom_id' AND i.state = 'pending'),
    t AS (
        SELECT r.*,
               CASE WHEN r.item_state = 'done' THEN r.body -> 'choices' -> 0 -> 'message' ->> 'content' END AS answer,
               (r.body -> 'usage' ->> 'prompt_tokens')::bigint AS i_tok,
               (r.body -> 'usage' ->> 'completion_tokens')::bigint AS o_tok,
               (r.body -> 'usage' -> 'prompt_tokens_details' ->> 'cached_tokens')::bigint AS c_tok,
               (r.body -> 'usage' -> 'completion_tokens_details' ->> 'reasoning_tokens')::bigint AS r_tok,
               CASE r.item_state
                    WHEN 'done' THEN NULL
                    WHEN 'expired' THEN 'expired'
                    WHEN 'cancelled' THEN 'cancelled'
                    ELSE CASE WHEN r.body -> 'error' ->> 'code' = 'context_length_exceeded' THEN 'context_length'
                              WHEN r.body -> 'error' ->> 'code' = 'content_filter' THEN 'content_filter'
                              WHEN r.http_status = 429 THEN 'rate_limit'
                              WHEN r.http_status >= 500 THEN 'server'
                              WHEN r.http_status IN (401, 403) THEN 'auth'
                              WHEN r.http_status = 404 THEN 'model_not_found'
                              WHEN r.http_status IS NULL THEN 'malformed_response'
                              ELSE 'invalid_request' END END AS error_class,
               coalesce(r.body -> 'error' ->> 'message', r.err ->> 'message',
                        CASE WHEN r.item_state = 'failed' THEN 'the provider''s result could not be read' END) AS error
          FROM r),
    u AS (
        INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, team_id, model, provider,
                                 upstream_model, status, error_class, http_status, input_tokens,
                                 output_tokens, cached_input_tokens, reasoning_tokens, usage_source,
                                 price_id, cost, currency, unpriced, job_id, batch_id, tags)
        SELECT t.rid, t.attempt, coalesce(bt.submitted_at, bt.created_at), bt.owner, team, bt.model,
               bt.provider, bt.upstream_model,
               CASE t.item_state WHEN 'done' THEN 'ok' WHEN 'cancelled' THEN 'cancelled' ELSE 'error' END,
               t.error_class, t.http_status, t.i_tok, t.o_tok, t.c_tok, t.r_tok,
               CASE WHEN t.i_tok IS NOT NULL THEN 'provider' END,
               bp.id, c.cost, bp.currency,
               t.item_state = 'done' AND c.cost IS NULL, bt.job_id, bt.id,
               jsonb_build_object('batch', bt.provider_batch_id, 'custom_id', t.custom_id)
          FROM t CROSS JOIN LATERAL (SELECT llmgw.cost(bp, t.i_tok, t.o_tok, t.c_tok, NULL, NULL, t.r_tok) AS cost) c
        RETURNING 1),
    w AS (
        UPDATE llmgw.batch_items i
           SET state = t.item_state, request_id = t.rid, error = t.error,
               answer = CASE WHEN bt.job_id IS NULL THEN t.body END
          FROM t
         WHERE i.batch_id = batch AND i.custom_id = t.custom_id
        RETURNING i.row_key, t.answer, t.item_state)
    SELECT coalesce(array_agg(w.row_key) FILTER (WHERE w.item_state = 'done'), '{}'),
           coalesce(array_agg(w.answer) FILTER (WHERE w.item_state = 'done'), '{}'),
           count(*), count(*) FILTER (WHERE w.item_state = 'failed')
      INTO keys, answers, n, nfailed
      FROM w;

    IF j.id IS NOT NULL AND cardinality(keys) > 0 THEN
        -- the answers go in with the owner's rights (privileges, row-level
        -- security) and the default search_path (for the table's triggers),
        -- into rows still without one
        PERFORM set_config('role', bt.owner, true);
        PERFORM set_config('search_path', '"$user", public', true);
        EXECUTE format('WITH w AS (UPDATE %s t SET %I = a.answer FROM unnest($1, $2) a(k, answer)
                                    WHERE t.%I::text = a.k AND t.%I IS NULL RETURNING a.k)
                        SELECT coalesce(array_agg(k), ''{}'') FROM w',
                       j.source, j.output_column, j.key_column, j.output_column)
            INTO written USING keys, answers;
        PERFORM set_config('role', 'none', true);
        PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
        IF cardinality(written) < cardinality(keys) THEN
            UPDATE llmgw.batch_items i
               SET state = 'failed', error = 'the answer could not be written into ' || j.source
             WHERE i.batch_id = batch AND i.state = 'done'
               AND i.row_key IN (SELECT unnest(keys) EXCEPT SELECT unnest(written));
            nfailed := nfailed + cardinality(keys) - cardinality(written);
        END IF;
    END IF;
    IF j.id IS NOT NULL THEN
        UPDATE llmgw.jobs
           SET rows_done = rows_done + cardinality(written), rows_failed = rows_failed + nfailed,
               updated_at = clock_timestamp()
         WHERE jobs.id = j.id;
    END IF;
    RETURN n;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_ingest(bigint, text[]) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_ingest(bigint, text[]) IS 'Internal (worker 0): write a chunk of a batch''s results, each item once with its usage row';

-- Internal (worker 0): a batch's results are all written: the items
-- without one end as the batch ended, the batch takes its final state, and
-- its job finishes with its last batch
CREATE FUNCTION llmgw.batch_finish(batch bigint, final text, error text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bt llmgw.batches;
    left_over integer;
BEGIN
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND OR bt.state IN ('completed', 'failed', 'expired', 'cancelled') THEN
        RETURN;
    END IF;
    UPDATE llmgw.batch_items i
       SET state = CASE final WHEN 'expired' THEN 'expired' WHEN 'cancelled' THEN 'cancelled'
                              ELSE 'failed' END,
           error = coalesce(batch_finish.error, 'the provider returned no result for it')
     WHERE i.batch_id = batch AND i.state = 'pending';
    GET DIAGNOSTICS left_over = ROW_COUNT;
    UPDATE llmgw.batches b
       SET state = final, finished_at = clock_timestamp(),
           last_error = coalesce(batch_finish.error, b.last_error)
     WHERE b.id = batch;
    IF bt.job_id IS NOT NULL THEN
        UPDATE llmgw.jobs j
           SET rows_failed = j.rows_failed + CASE WHEN final IN ('completed', 'failed') THEN left_over ELSE 0 END,
               last_error = coalesce(batch_finish.error, j.last_error),
               updated_at = clock_timestamp()
         WHERE j.id = bt.job_id;
        IF NOT EXISTS (SELECT 1 FROM llmgw.batches b
                        WHERE b.job_id = bt.job_id
                          AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled')) THEN
            UPDATE llmgw.jobs j
               SET status = CASE WHEN EXISTS (SELECT 1 FROM llmgw.batches b
                                               WHERE b.job_id = j.id AND b.cancel_requested)
                                 THEN 'stopped' ELSE 'finished' END,
                   finished_at = clock_timestamp(), updated_at = clock_timestamp()
             WHERE j.id = bt.job_id AND j.status = 'running';
        END IF;
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_finish(bigint, text, text) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_finish(bigint, text, text) IS 'Internal (worker 0): end a batch whose results are written, and its job with its last batch';

CREATE OR REPLACE VIEW llmgw.job_progress WITH (security_invoker = true) AS
SELECT id, name, owner, source, output_column, model, status,
       rows_total, rows_done, rows_failed, rows_skipped,
       (SELECT sum(u.cost) FROM llmgw.usage u WHERE u.job_id = jobs.id) AS spend,
       round(rows_done / nullif(extract(epoch FROM updated_at - started_at), 0), 2)
           AS rows_per_second,
       CASE WHEN status = 'running' AND rows_done > 0 THEN
           updated_at + (updated_at - started_at)
               * ((rows_total - rows_done - rows_failed - rows_skipped)::float8 / rows_done)
       END AS estimated_finish,
       started_at, updated_at, finished_at, last_error,
       mode,
       (SELECT b.state FROM llmgw.batches b WHERE b.job_id = jobs.id
         ORDER BY array_position(ARRAY['queued', 'submitting', 'validating', 'in_progress',
                                       'finalizing', 'cancelling', 'ingesting', 'failed',
                                       'expired', 'cancelled', 'completed'], b.state)
         LIMIT 1) AS batch_state,
       (SELECT array_agg(b.provider_batch_id ORDER BY b.id) FROM llmgw.batches b
         WHERE b.job_id = jobs.id) AS provider_batch_ids
  FROM llmgw.jobs;
COMMENT ON COLUMN llmgw.job_progress.mode IS 'sync or batch';
COMMENT ON COLUMN llmgw.job_progress.batch_state IS 'Batch jobs: the state of its least advanced batch (queued ... ingesting, then failed, expired, cancelled, completed)';
COMMENT ON COLUMN llmgw.job_progress.provider_batch_ids IS 'Batch jobs: the provider''s ids of its batches';

-- What is still outstanding at the providers: batches not ended yet
CREATE VIEW llmgw.batches_outstanding WITH (security_invoker = true) AS
SELECT b.id, b.job_id, b.owner, b.model, b.provider, b.state, b.provider_batch_id, b.requests,
       (SELECT count(*) FROM llmgw.batch_items i
         WHERE i.batch_id = b.id AND i.state = 'pending') AS items_pending,
       b.created_at, b.submitted_at, b.checked_at, b.last_error
  FROM llmgw.batches b
 WHERE b.state NOT IN ('completed', 'failed', 'expired', 'cancelled');
COMMENT ON VIEW llmgw.batches_outstanding IS 'Provider batches not ended yet: what the workers still wait for or write';
COMMENT ON COLUMN llmgw.batches_outstanding.id IS 'Batch number';
COMMENT ON COLUMN llmgw.batches_outstanding.job_id IS 'The job it fills (NULL: none)';
COMMENT ON COLUMN llmgw.batches_outstanding.owner IS 'The role that submitted it';
COMMENT ON COLUMN llmgw.batches_outstanding.model IS 'Model alias';
COMMENT ON COLUMN llmgw.batches_outstanding.provider IS 'Provider it went to';
COMMENT ON COLUMN llmgw.batches_outstanding.state IS 'Its state (see llmgw.batches.state)';
COMMENT ON COLUMN llmgw.batches_outstanding.provider_batch_id IS 'The provider''s batch id';
COMMENT ON COLUMN llmgw.batches_outstanding.requests IS 'Number of requests';
COMMENT ON COLUMN llmgw.batches_outstanding.items_pending IS 'Items whose result is not written yet';
COMMENT ON COLUMN llmgw.batches_outstanding.created_at IS 'When it was queued';
COMMENT ON COLUMN llmgw.batches_outstanding.submitted_at IS 'When the provider accepted it';
COMMENT ON COLUMN llmgw.batches_outstanding.checked_at IS 'When its status was last asked';
COMMENT ON COLUMN llmgw.batches_outstanding.last_error IS 'The last error of a step';

GRANT SELECT ON llmgw.batches, llmgw.batch_items, llmgw.batches_outstanding
    TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT EXECUTE ON FUNCTION llmgw.batch_price(llmgw.prices) TO llmgw_admin, llmgw_finance, llmgw_user;

DROP PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text);
-- With mode => 'batch', the rows go to the provider's Batch API instead:
-- the procedure returns once they are queued as batches (of at most
-- llmgw.batch_max_requests rows); the workers write the answers as they
-- arrive, exactly as a synchronous run would have (docs/batch.md).
-- Fill output_column of source from a prompt expression over each row, in
-- chunks committed one by one.  Rows whose output is already set are skipped,
-- so a cancelled or crashed run resumes where it stopped.  Only rows the
-- caller may update are taken (row-level security, locks of concurrent
-- runs): no model is called for an answer that could not be written.  Must
-- be CALLed outside an explicit transaction block (it commits).
CREATE PROCEDURE llmgw.enrich(
    source regclass,
    key_column text,
    prompt text,
    output_column text,
    model text,
    system text DEFAULT NULL,
    max_tokens integer DEFAULT NULL,
    chunk_size integer DEFAULT 500,
    concurrency integer DEFAULT 64,
    job_name text DEFAULT NULL,
    mode text DEFAULT 'sync')
LANGUAGE plpgsql
-- no SET search_path: a procedure with SET cannot COMMIT.  It runs with the
-- caller's rights, and every name it uses is qualified or in pg_catalog.
AS $fn$
DECLARE
    job bigint;
    skip text[] := '{}';
    keys text[];
    prompts text[];
    r record;
    done_keys text[];
    answers text[];
    written_keys text[];
    done bigint;
    failed bigint;
    skipped bigint;
    chunk_error text;
    stop_reason text;
    limited bigint;
    still_pending bigint;
    backoff float8 := 0.5;
    pending text := format('%I IS NULL AND NOT (%I::text = ANY ($1))', output_column, key_column);
    qualified text;
    nbatches integer := 0;
BEGIN
    IF mode IS NULL OR mode NOT IN ('sync', 'batch') THEN
        RAISE EXCEPTION 'mode must be sync or batch' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chunk_size < 1 THEN
        RAISE EXCEPTION 'chunk_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- every answer paid for must be writable: check before any call
    IF NOT pg_catalog.has_column_privilege(source, output_column, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to update column % of %', output_column, source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'llmgw.enrich writes each answer into the output column, and calls no model for a row it could not write.';
    END IF;
    IF mode = 'batch' THEN
        -- the workers write the answers: the table's name must not depend
        -- on a search_path
        SELECT format('%I.%I', n.nspname, c.relname) INTO qualified
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = source;
        INSERT INTO llmgw.jobs (name, source, output_column, model, mode, key_column)
        VALUES (job_name, qualified, output_column, model, 'batch', key_column)
        RETURNING id INTO job;
        -- rows already in a batch not written yet are not sent again
        skip := ARRAY(SELECT i.row_key FROM llmgw.batch_items i
                        JOIN llmgw.batches b ON b.id = i.batch_id
                        JOIN llmgw.jobs j ON j.id = b.job_id
                       WHERE i.state = 'pending' AND j.source = qualified
                         AND j.output_column = enrich.output_column);
        FOR r IN EXECUTE format(
            'SELECT (n - 1) / $2 AS part, array_agg(k ORDER BY n) AS keys,
                    array_agg(pg_catalog.jsonb_build_object(''messages'', $3::jsonb
                        || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(''role'', ''user'', ''content'', p)))
                        || $4::jsonb ORDER BY n) AS requests
               FROM (SELECT pg_catalog.row_number() OVER (ORDER BY %I) AS n, %I::text AS k, (%s)::text AS p
                       FROM %s WHERE %s) c
              GROUP BY 1 ORDER BY 1',
            key_column, key_column, prompt, source, pending)
            USING skip, current_setting('llmgw.batch_max_requests')::integer,
                  CASE WHEN system IS NULL THEN '[]'::jsonb
                       ELSE pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('role', 'system', 'content', system)) END,
                  CASE WHEN max_tokens IS NULL THEN '{}'::jsonb
                       ELSE pg_catalog.jsonb_build_object('max_tokens', max_tokens) END
        LOOP
            PERFORM llmgw.submit_batch(r.requests, model, job, r.keys);
            nbatches := nbatches + 1;
            UPDATE llmgw.jobs j SET rows_total = coalesce(j.rows_total, 0) + cardinality(r.keys)
             WHERE j.id = job;
        END LOOP;
        IF nbatches = 0 THEN
            UPDATE llmgw.jobs SET rows_total = 0, status = 'finished', finished_at = clock_timestamp(),
                   updated_at = clock_timestamp()
             WHERE id = job;
        END IF;
        COMMIT;
        RAISE NOTICE 'llmgw.enrich job %: % rows queued in % provider batches', job,
            (SELECT j.rows_total FROM llmgw.jobs j WHERE j.id = job), nbatches;
        RETURN;
    END IF;
    INSERT INTO llmgw.jobs (name, source, output_column, model)
    VALUES (job_name, source::text, output_column, model)
    RETURNING id INTO job;
    EXECUTE format('SELECT count(*) FROM %s WHERE %s', source, pending)
        INTO r USING skip;
    UPDATE llmgw.jobs SET rows_total = r.count WHERE id = job;
    COMMIT;

    LOOP
        -- FOR UPDATE takes only rows the caller may update (row-level
        -- security) and not locked by a concurrent run
        EXECUTE format('SELECT array_agg(k ORDER BY k), array_agg(p ORDER BY k)
                          FROM (SELECT %I::text AS k, (%s)::text AS p FROM %s WHERE %s
                                 ORDER BY %I LIMIT %s FOR UPDATE SKIP LOCKED) c',
                       key_column, prompt, source, pending, key_column, chunk_size)
            INTO keys, prompts USING skip;
        EXIT WHEN keys IS NULL;

        done := 0; failed := 0; skipped := 0; limited := 0;
        done_keys := '{}'; answers := '{}';
        -- the job's calls carry its id (usage.job_id), so that its spend can be summed
        PERFORM set_config('llmgw.job', job::text, true);
        FOR r IN SELECT * FROM @extschema@.llm_complete_many(prompts, model, system, max_tokens,
                                                             NULL, concurrency, 'continue')
        LOOP
            IF r.answer IS NOT NULL THEN
                done_keys := done_keys || keys[r.ordinality];
                answers := answers || r.answer;
            ELSIF r.sqlstate = 'LG010' THEN
                -- a budget is exhausted: the row stays pending for a later run
                stop_reason := coalesce(stop_reason, r.error);
            ELSIF r.sqlstate = 'LG011' THEN
                -- rate limited by llmgw: the row stays pending, we slow down
                limited := limited + 1;
            ELSE
                skip := skip || keys[r.ordinality];
                IF r.error IS NULL THEN
                    skipped := skipped + 1;
                ELSE
                    failed := failed + 1;
                    chunk_error := r.sqlstate || ': ' || r.error;
                END IF;
            END IF;
        END LOOP;
        PERFORM set_config('llmgw.job', '', true);
        -- one UPDATE per chunk (a join, whatever the key's type)
        EXECUTE format('WITH w AS (UPDATE %s t SET %I = a.answer FROM unnest($1, $2) a(k, answer)
                                    WHERE t.%I::text = a.k RETURNING a.k)
                        SELECT coalesce(array_agg(k), ''{}'') FROM w',
                       source, output_column, key_column)
            INTO written_keys USING done_keys, answers;
        done := cardinality(written_keys);
        IF done < cardinality(done_keys) THEN
            -- answered but not written (the row went away meanwhile)
            failed := failed + cardinality(done_keys) - done;
            skip := skip || ARRAY(SELECT unnest(done_keys) EXCEPT SELECT unnest(written_keys));
            chunk_error := 'answers could not be written into ' || source::text;
        END IF;
        -- a chunk whose rows are all still pending would be taken again forever
        EXECUTE format('SELECT count(*) FROM %s WHERE %s AND %I::text = ANY ($2)',
                       source, pending, key_column)
            INTO still_pending USING skip, keys;
        IF still_pending = cardinality(keys) AND limited = 0 AND stop_reason IS NULL THEN
            ROLLBACK;
            UPDATE llmgw.jobs SET status = 'failed', finished_at = clock_timestamp(),
                   updated_at = clock_timestamp(),
                   last_error = format('no progress: none of %s rows of the chunk left the pending set', cardinality(keys))
             WHERE id = job;
            COMMIT;
            RAISE EXCEPTION 'llmgw.enrich job % makes no progress', job
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('After a chunk, its %s rows still have %s NULL: something (a trigger, a policy) undoes the answers.',
                                      cardinality(keys), output_column),
                      HINT = 'Check the triggers and row-level security policies of the table.';
        END IF;

        UPDATE llmgw.jobs j
           SET rows_done = j.rows_done + done, rows_failed = j.rows_failed + failed,
               rows_skipped = j.rows_skipped + skipped,
               last_error = coalesce(chunk_error, j.last_error),
               updated_at = clock_timestamp()
         WHERE j.id = job
        RETURNING j.rows_done, j.rows_failed INTO done, failed;
        COMMIT;
        RAISE NOTICE 'llmgw.enrich job %: % rows done, % failed', job, done, failed;
        IF stop_reason IS NOT NULL THEN
            UPDATE llmgw.jobs SET status = 'stopped', last_error = 'LG010: ' || stop_reason,
                   finished_at = clock_timestamp(), updated_at = clock_timestamp()
             WHERE id = job;
            COMMIT;
            RAISE WARNING 'llmgw.enrich job % stopped: %', job, stop_reason
                USING HINT = 'Rows not done yet stay NULL; CALL llmgw.enrich again once the budget allows.';
            RETURN;
        END IF;
        IF limited > 0 THEN
            RAISE NOTICE 'llmgw.enrich job %: % calls rate limited, waiting % s', job, limited, backoff;
            PERFORM pg_sleep(backoff);
            backoff := least(backoff * 2, 10);
        ELSE
            backoff := 0.5;
        END IF;
    END LOOP;

    UPDATE llmgw.jobs SET status = 'finished', finished_at = clock_timestamp(),
           updated_at = clock_timestamp()
     WHERE id = job;
    COMMIT;
END
$fn$;
REVOKE ALL ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text)
    TO llmgw_admin, llmgw_user;
COMMENT ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text) IS 'Fill a column from a prompt over each row, in committed, resumable chunks; only rows the caller may update; mode => ''batch'' goes through the provider''s Batch API';

-- ==== Request log (docs/request_log.md) ====
-- Opt-in per team, key or model: the bodies of each call (as the caller sent
-- the request, as llmgw answered it), redacted and capped by the workers
-- before they are stored, one row per call beside its last usage row.

-- Which calls are logged: a rule names a team, a key lineage or a model
-- alias; a call matching any rule is logged.  No rule, no body kept.
CREATE TABLE llmgw.request_log_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope text NOT NULL CHECK (scope IN ('key', 'team', 'model')),
    key_id bigint REFERENCES llmgw.virtual_keys (id) ON DELETE CASCADE,  -- a key lineage
    team_id bigint REFERENCES llmgw.teams (id) ON DELETE CASCADE,
    model text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by name NOT NULL DEFAULT CURRENT_USER,
    CHECK ((key_id IS NOT NULL) = (scope = 'key')),
    CHECK ((team_id IS NOT NULL) = (scope = 'team')),
    CHECK ((model IS NOT NULL) = (scope = 'model')),
    UNIQUE NULLS NOT DISTINCT (scope, key_id, team_id, model)
);

-- Patterns replaced in both bodies before anything is stored, in the byte
-- order of their names.  A pattern that matches the empty string would
-- insert its replacement between every character: refused.
CREATE TABLE llmgw.redaction_rules (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    pattern text NOT NULL
        CONSTRAINT redaction_rules_pattern_check
        CHECK (pattern <> '' AND NOT pg_catalog.regexp_like('', pattern)),
    replacement text NOT NULL DEFAULT '[redacted]',
    enabled boolean NOT NULL DEFAULT true,
    builtin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

INSERT INTO llmgw.redaction_rules (name, pattern, replacement, builtin) VALUES
    -- 13 to 19 digits, single spaces or dashes between them (no Luhn check:
    -- every such run goes, a card number or not)
    ('card', '(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])', '[card]', true),
    ('email', '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}', '[email]', true),
    ('virtual_key', 'lgw_[A-Za-z0-9]{16,}', '[virtual key]', true);

-- Built-in rules are changed or disabled, never deleted or renamed; a rule
-- inserted under a built-in name replaces it (how pg_restore brings a
-- changed built-in rule back over the one CREATE EXTENSION made).
CREATE FUNCTION llmgw.redaction_rules_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.builtin THEN
            RAISE EXCEPTION 'redaction rule "%" is built in and cannot be deleted', OLD.name
                USING ERRCODE = 'prohibited_sql_statement_attempted',
                      HINT = format('Disable it: UPDATE llmgw.redaction_rules SET enabled = false WHERE name = %L.',
                                    OLD.name);
        END IF;
        RETURN OLD;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.builtin AND NEW.name IS DISTINCT FROM OLD.name THEN
            RAISE EXCEPTION 'redaction rule "%" is built in and cannot be renamed', OLD.name
                USING ERRCODE = 'prohibited_sql_statement_attempted';
        END IF;
        NEW.builtin := OLD.builtin;
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM llmgw.redaction_rules r WHERE r.name = NEW.name AND r.builtin) THEN
        UPDATE llmgw.redaction_rules r
           SET pattern = NEW.pattern, replacement = NEW.replacement, enabled = NEW.enabled,
               created_at = NEW.created_at
         WHERE r.name = NEW.name;
        RETURN NULL;
    END IF;
    NEW.builtin := false;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER redaction_rules_guard BEFORE INSERT OR UPDATE OR DELETE ON llmgw.redaction_rules
    FOR EACH ROW EXECUTE FUNCTION llmgw.redaction_rules_guard();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.request_log_rules FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.redaction_rules FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();

SELECT pg_catalog.pg_extension_config_dump('llmgw.request_log_rules', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.redaction_rules', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.request_log_rules', 'id')::regclass, '');

-- One row per logged call, joined to its last usage row by (request_id,
-- attempt, started_at); partitioned by the UTC day the attempt started.
-- The workers make each day's partition when a row first needs it, and
-- worker 0 drops the days beyond llmgw.request_log_retention.  Like
-- llmgw.usage, the table has no index of its own: each partition has its
-- primary key, so that pg_restore can attach dumped partitions.
CREATE TABLE llmgw.request_log (
    request_id uuid NOT NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    role_name text,
    key_id bigint,
    team_id bigint,
    model text,
    request_body text NOT NULL,
    request_bytes integer NOT NULL,
    request_truncated boolean NOT NULL DEFAULT false,
    response_body text,
    response_bytes integer,
    response_truncated boolean NOT NULL DEFAULT false,
    redacted boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (started_at);

-- The same row-level security as llmgw.usage; llmgw_admin may also erase
-- rows (a person's data) before the retention drops them.
ALTER TABLE llmgw.request_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY request_log_staff ON llmgw.request_log FOR SELECT
    TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY request_log_team ON llmgw.request_log FOR SELECT TO llmgw_user
    USING (team_id IN (SELECT llmgw.my_teams())
           OR (team_id IS NULL AND role_name = CURRENT_USER));
CREATE POLICY request_log_erase ON llmgw.request_log FOR DELETE
    TO llmgw_admin USING (true);

-- Log (or stop logging) the calls of a team, a key (and the keys rotated
-- from it) or a model
CREATE FUNCTION llmgw.log_requests(scope text, target text, enabled boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    lineage bigint;
    team bigint;
BEGIN
    IF scope IS NULL OR scope NOT IN ('key', 'team', 'model') THEN
        RAISE EXCEPTION 'unknown request log scope "%"', scope
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use key, team or model.';
    END IF;
    IF target IS NULL OR enabled IS NULL THEN
        RAISE EXCEPTION 'a request log rule needs a target and enabled'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope = 'key' THEN
        SELECT k.lineage_id INTO lineage FROM llmgw.keys k
         WHERE target ~ '^[0-9]{1,18}$' AND k.id = target::bigint;
        IF lineage IS NULL THEN
            RAISE EXCEPTION 'virtual key % does not exist', target USING ERRCODE = 'undefined_object';
        END IF;
    ELSIF scope = 'team' THEN
        team := llmgw.team_id(target);
    ELSIF enabled AND NOT EXISTS (SELECT 1 FROM llmgw.models m WHERE m.alias = target) THEN
        RAISE EXCEPTION 'model "%" does not exist', target USING ERRCODE = 'undefined_object';
    END IF;
    IF enabled THEN
        INSERT INTO llmgw.request_log_rules (scope, key_id, team_id, model)
        VALUES (scope, lineage, team, CASE WHEN scope = 'model' THEN target END)
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM llmgw.request_log_rules r
         WHERE r.scope = log_requests.scope AND r.key_id IS NOT DISTINCT FROM lineage
           AND r.team_id IS NOT DISTINCT FROM team
           AND r.model IS NOT DISTINCT FROM CASE WHEN log_requests.scope = 'model' THEN target END;
    END IF;
END
$fn$;

-- Create the daily partitions of llmgw.request_log from first_day (NULL:
-- today, UTC) for days days, with their primary keys (the workers call it
-- when a row first needs a partition)
CREATE FUNCTION llmgw.create_request_log_partitions(first_day date DEFAULT NULL,
                                                    days integer DEFAULT 2)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    d date;
    n integer := 0;
    part text;
BEGIN
    IF days IS NULL OR days NOT BETWEEN 1 AND 366 THEN
        RAISE EXCEPTION 'days must be between 1 and 366' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. days - 1 LOOP
        d := coalesce(first_day, (now() AT TIME ZONE 'UTC')::date) + i;
        part := 'request_log_' || to_char(d, 'YYYY_MM_DD');
        CONTINUE WHEN to_regclass('llmgw.' || part) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE llmgw.%I PARTITION OF llmgw.request_log'
                           ' FOR VALUES FROM (%L) TO (%L)',
                           part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('ALTER TABLE llmgw.%I ADD PRIMARY KEY (request_id, attempt, started_at)',
                           part);
            n := n + 1;
        EXCEPTION WHEN duplicate_table OR invalid_object_definition THEN
            -- made meanwhile by another session, or a partition made by
            -- hand covers the day: the rows have a place either way
            NULL;
        END;
    END LOOP;
    RETURN n;
END
$fn$;

-- Drop the partitions of llmgw.request_log whose days all lie before the
-- last retention_days UTC days (today included); NULL: the setting
-- llmgw.request_log_retention; 0 keeps everything.  Worker 0 runs it every
-- hour and when the setting changes.
CREATE FUNCTION llmgw.prune_request_log(retention_days integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    keep integer := coalesce(retention_days,
                             current_setting('llmgw.request_log_retention')::integer);
    cutoff timestamptz;
    upper_bound timestamptz;
    p record;
    n integer := 0;
BEGIN
    IF keep < 0 THEN
        RAISE EXCEPTION 'retention_days must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF keep = 0 THEN
        RETURN 0;
    END IF;
    cutoff := (date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => keep - 1))
              AT TIME ZONE 'UTC';
    FOR p IN SELECT c.oid::regclass AS part, pg_get_expr(c.relpartbound, c.oid) AS bound
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'llmgw.request_log'::regclass
              ORDER BY 1
    LOOP
        -- FOR VALUES FROM ('...') TO ('...'): the end, with its offset
        upper_bound := substring(p.bound FROM $re$TO \('([^']+)'\)$re$)::timestamptz;
        CONTINUE WHEN upper_bound IS NULL OR upper_bound > cutoff;
        EXECUTE format('DROP TABLE %s', p.part);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;

-- The request log's redaction rules applied to a text, as the workers
-- apply them to every body (to try a pattern)
CREATE FUNCTION llmgw.redact(body text) RETURNS text
AS 'MODULE_PATHNAME', 'llmgw_reqlog_redact_sql'
LANGUAGE C STABLE STRICT;

REVOKE ALL ON llmgw.request_log_rules, llmgw.redaction_rules, llmgw.request_log FROM PUBLIC;
REVOKE ALL ON FUNCTION llmgw.redaction_rules_guard(), llmgw.log_requests(text, text, boolean),
    llmgw.create_request_log_partitions(date, integer), llmgw.prune_request_log(integer),
    llmgw.redact(text) FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON llmgw.request_log_rules, llmgw.redaction_rules TO llmgw_admin;
GRANT SELECT ON llmgw.request_log_rules, llmgw.redaction_rules TO llmgw_finance;
GRANT SELECT ON llmgw.request_log TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT DELETE ON llmgw.request_log TO llmgw_admin;
GRANT EXECUTE ON FUNCTION llmgw.log_requests(text, text, boolean),
    llmgw.create_request_log_partitions(date, integer), llmgw.prune_request_log(integer),
    llmgw.redact(text) TO llmgw_admin;

COMMENT ON TABLE llmgw.request_log_rules IS 'Which calls the request log keeps: those of a team, a key lineage or a model (llmgw.log_requests()); none by default';
COMMENT ON COLUMN llmgw.request_log_rules.id IS 'Rule id';
COMMENT ON COLUMN llmgw.request_log_rules.scope IS 'key, team or model: what the rule names';
COMMENT ON COLUMN llmgw.request_log_rules.key_id IS 'scope key: the key lineage (the first key of a rotation chain; keys rotated from it are logged too)';
COMMENT ON COLUMN llmgw.request_log_rules.team_id IS 'scope team: the team';
COMMENT ON COLUMN llmgw.request_log_rules.model IS 'scope model: the model alias';
COMMENT ON COLUMN llmgw.request_log_rules.created_at IS 'When the rule was made';
COMMENT ON COLUMN llmgw.request_log_rules.created_by IS 'The role that made it';
COMMENT ON SEQUENCE llmgw.request_log_rules_id_seq IS 'Ids of llmgw.request_log_rules rows';
COMMENT ON TABLE llmgw.redaction_rules IS 'Patterns the workers replace in request and response bodies before the request log stores them, in the byte order of their names';
COMMENT ON COLUMN llmgw.redaction_rules.name IS 'Rule name; rules apply in the byte order of their names';
COMMENT ON COLUMN llmgw.redaction_rules.pattern IS 'A POSIX regular expression (PostgreSQL''s regexp_replace), every match replaced; one that matches the empty string is refused';
COMMENT ON COLUMN llmgw.redaction_rules.replacement IS 'What replaces each match (\1 and \& refer to the match, as in regexp_replace)';
COMMENT ON COLUMN llmgw.redaction_rules.enabled IS 'Applied; built-in rules are disabled rather than deleted';
COMMENT ON COLUMN llmgw.redaction_rules.builtin IS 'Made by CREATE EXTENSION (card, email, virtual_key): may be changed or disabled, not deleted or renamed';
COMMENT ON COLUMN llmgw.redaction_rules.created_at IS 'When the rule was made';
COMMENT ON TRIGGER redaction_rules_guard ON llmgw.redaction_rules IS 'Built-in rules stay; a rule inserted under a built-in name replaces it';
COMMENT ON TRIGGER config_changed ON llmgw.request_log_rules IS 'Workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.redaction_rules IS 'Workers reload their configuration';
COMMENT ON TABLE llmgw.request_log IS 'Request and response bodies of the calls llmgw.request_log_rules selects, redacted and capped before they are stored; one row per call, joined to its last usage row; partitioned by day';
COMMENT ON COLUMN llmgw.request_log.request_id IS 'The call (usage.request_id)';
COMMENT ON COLUMN llmgw.request_log.attempt IS 'Its last attempt with a usage row (usage.attempt): the one whose answer the caller got';
COMMENT ON COLUMN llmgw.request_log.started_at IS 'When that attempt started (usage.started_at); the partition key';
COMMENT ON COLUMN llmgw.request_log.logged_at IS 'When the row was written (with the usage rows of its round)';
COMMENT ON COLUMN llmgw.request_log.role_name IS 'The role that made the call, as in its usage row';
COMMENT ON COLUMN llmgw.request_log.key_id IS 'The virtual key presented, as in its usage row (NULL: no key)';
COMMENT ON COLUMN llmgw.request_log.team_id IS 'The team of the call, as in its usage row (NULL: no team)';
COMMENT ON COLUMN llmgw.request_log.model IS 'The model alias called';
COMMENT ON COLUMN llmgw.request_log.request_body IS 'The OpenAI-shaped request body the caller sent, redacted, then cut to llmgw.request_log_max_body bytes';
COMMENT ON COLUMN llmgw.request_log.request_bytes IS 'Size of the request body as sent, in bytes';
COMMENT ON COLUMN llmgw.request_log.request_truncated IS 'request_body was cut at llmgw.request_log_max_body';
COMMENT ON COLUMN llmgw.request_log.response_body IS 'What llmgw answered: the text, llm_chat''s JSON or the embeddings, or {"error": ...}; redacted and cut like the request (NULL: no answer)';
COMMENT ON COLUMN llmgw.request_log.response_bytes IS 'Size of the answer before redaction and cutting, in bytes (NULL: no answer)';
COMMENT ON COLUMN llmgw.request_log.response_truncated IS 'response_body was cut at llmgw.request_log_max_body';
COMMENT ON COLUMN llmgw.request_log.redacted IS 'A redaction rule changed the request or the response';
COMMENT ON POLICY request_log_staff ON llmgw.request_log IS 'llmgw_admin and llmgw_finance see every logged call';
COMMENT ON POLICY request_log_team ON llmgw.request_log IS 'Other roles see their teams'' logged calls, and their own without a team (as in llmgw.usage)';
COMMENT ON POLICY request_log_erase ON llmgw.request_log IS 'llmgw_admin may delete logged calls before their partition is dropped';
COMMENT ON FUNCTION llmgw.redaction_rules_guard() IS 'Trigger: built-in redaction rules are not deleted or renamed; one inserted under a built-in name replaces it';
COMMENT ON FUNCTION llmgw.log_requests(text, text, boolean) IS 'Log the bodies of the calls of a team, a key (and its rotations) or a model, or stop (enabled => false)';
COMMENT ON FUNCTION llmgw.create_request_log_partitions(date, integer) IS 'Create daily partitions of llmgw.request_log (UTC days) with their primary keys';
COMMENT ON FUNCTION llmgw.prune_request_log(integer) IS 'Drop the daily partitions of llmgw.request_log older than the retention (llmgw.request_log_retention days by default)';
COMMENT ON FUNCTION llmgw.redact(text) IS 'A text with the enabled redaction rules applied, as the request log stores bodies';

-- ==== OpenTelemetry spans (docs/tracing.md) ====

-- What the span export did since the server life began (shared memory)
CREATE FUNCTION llmgw.otel_stats(
    OUT enabled boolean,
    OUT spans_queued bigint,
    OUT spans_exporting bigint,
    OUT spans_exported bigint,
    OUT spans_dropped bigint,
    OUT spans_failed bigint,
    OUT exports bigint,
    OUT export_failures bigint)
AS 'MODULE_PATHNAME', 'llmgw_otel_stats'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION llmgw.otel_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.otel_stats() TO llmgw_admin, llmgw_finance;

COMMENT ON FUNCTION llmgw.otel_stats() IS 'OpenTelemetry span export since the server life began: whether a worker exports (llmgw.otel_endpoint), spans waiting in the workers and in exports in flight, exported, dropped (queue full or export turned off), failed (in exports that failed or that the collector rejected), exports and failed exports';
