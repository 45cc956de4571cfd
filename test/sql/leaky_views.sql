-- Leaky functions against every view and table a non-admin role may read
-- (docs/security.md: llmgw.keys is a security_barrier view, the spend_*,
-- requests and job_progress views are security_invoker over tables with
-- row-level security; llmgw.request_log has it too, and logs both teams
-- here).  A llmgw_user of team leaky_a puts a cheap function that records
-- every row it is shown in its WHERE clause, while rows of team leaky_b
-- (and of a role without a team) exist: the function must see no more rows
-- than the query returns, and nothing of leaky_b.
SELECT llmgw.create_team('leaky_a') AS team_a \gset
SELECT llmgw.create_team('leaky_b') AS team_b \gset
CREATE ROLE regress_lv_a LOGIN IN ROLE llmgw_user;      -- the attacker, team leaky_a
CREATE ROLE regress_lv_b LOGIN IN ROLE llmgw_user;      -- team leaky_b
CREATE ROLE regress_lv_c LOGIN IN ROLE llmgw_user;      -- no team
CREATE ROLE regress_lv_fin LOGIN IN ROLE llmgw_finance;
SELECT llmgw.bind_role('regress_lv_a', 'leaky_a');
SELECT llmgw.bind_role('regress_lv_b', 'leaky_b');
SELECT api_key AS key_a FROM llmgw.create_key('leaky_a', 'key of leaky_a') \gset
SELECT api_key AS key_b, prefix AS prefix_b FROM llmgw.create_key('leaky_b', 'key of leaky_b') \gset
SELECT llmgw.create_budget('leaky_b budget', 'team', 'leaky_b', 'month', 100, 'soft') > 0 AS budget_made;
SELECT llmgw.log_requests('team', 'leaky_a'), llmgw.log_requests('team', 'leaky_b');

-- Rows of team leaky_b: calls under its key, calls of its bound role, a job
-- and an asynchronous call of that role; and a call of a role without a team
SELECT set_config('llmgw.api_key', :'key_b', false) IS NOT NULL AS key_b_presented;
SELECT llm_complete('a call of leaky_b, by key', 'demo') IS NOT NULL AS called;
RESET llmgw.api_key;
SET ROLE regress_lv_b;
SELECT llm_complete('a call of leaky_b, by binding', 'demo') IS NOT NULL AS called;
INSERT INTO llmgw.jobs (name, source, output_column, model)
VALUES ('job of regress_lv_b', 'x', 'y', 'demo');
SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "b async"}]}') AS async_b \gset
RESET ROLE;
SET ROLE regress_lv_c;
SELECT llm_complete('a call of regress_lv_c, no team', 'demo') IS NOT NULL AS called;
RESET ROLE;
-- and rows the attacker may see: its team's key and binding, its job, its call
SELECT set_config('llmgw.api_key', :'key_a', false) IS NOT NULL AS key_a_presented;
SELECT llm_complete('a call of leaky_a, by key', 'demo') IS NOT NULL AS called;
RESET llmgw.api_key;
SET ROLE regress_lv_a;
SELECT llm_complete('a call of leaky_a, by binding', 'demo') IS NOT NULL AS called;
INSERT INTO llmgw.jobs (name, source, output_column, model)
VALUES ('job of regress_lv_a', 'x', 'y', 'demo');
SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "a async"}]}') AS async_a \gset
RESET ROLE;
SELECT status FROM llmgw.wait(:async_b);
SELECT status FROM llmgw.wait(:async_a);

-- What the leaky function must never see of leaky_b or regress_lv_c
CREATE TEMP TABLE lv_marker AS
SELECT unnest(ARRAY[:'prefix_b', 'leaky_b', 'regress_lv_b', 'regress_lv_c']) AS marker;
-- Every table and view readable by llmgw_user (tried as regress_lv_a) or,
-- if not, by llmgw_finance (tried as regress_lv_fin), per the matrix
\set doc `cat docs/security.md`
CREATE TEMP TABLE lv_target AS
SELECT split_part(obj, ' ', 2) AS rel,
       CASE WHEN usr ~ '[Ss]' THEN 'regress_lv_a' ELSE 'regress_lv_fin' END AS as_role
  FROM (SELECT btrim(c[2]) AS obj, btrim(c[4]) AS fin, btrim(c[5]) AS usr
          FROM regexp_split_to_table(substring(:'doc' FROM '<!-- matrix:begin -->(.*)<!-- matrix:end -->'),
                                     E'\n') l,
               LATERAL string_to_array(btrim(l), '|') c
         WHERE btrim(l) LIKE '|%') m
 WHERE split_part(obj, ' ', 1) IN ('table', 'view') AND (usr ~ '[Ss]' OR fin ~ '[Ss]');
-- the relations whose rows are filtered by team or owner (the others show
-- every row to whoever may read them)
CREATE TEMP TABLE lv_filtered AS
SELECT unnest(ARRAY['llmgw.keys', 'llmgw.usage', 'llmgw.usage_daily', 'llmgw.spend_daily',
                    'llmgw.spend_by_key', 'llmgw.spend_by_team', 'llmgw.spend_by_model',
                    'llmgw.requests', 'llmgw.job_progress', 'llmgw.jobs', 'llmgw.async_calls',
                    'llmgw.request_log']) AS rel;
CREATE TEMP TABLE lv_result (rel text, as_role text, leak text, shown bigint, returned bigint,
                             calls bigint, saw text, error text);
GRANT SELECT ON lv_marker, lv_target, lv_filtered TO PUBLIC;
GRANT INSERT, SELECT ON lv_result TO PUBLIC;

-- The probe: for each relation of the current role, the rows the query
-- shows, and what each leaky function saw
CREATE FUNCTION pg_temp.probe() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t record;
    fn text;
    arg text;
    args text[];
    cols text[];
    shown bigint;
    returned bigint;
BEGIN
    FOR t IN SELECT * FROM lv_target WHERE as_role = current_user ORDER BY rel LOOP
        SELECT array_agg('v.' || quote_ident(a.attname) ORDER BY a.attnum) INTO cols
          FROM pg_attribute a
         WHERE a.attrelid = t.rel::regclass AND a.attnum > 0 AND NOT a.attisdropped
           AND has_column_privilege(t.rel, a.attname, 'SELECT');
        -- the whole row (the columns the role may read)
        args := ARRAY[CASE WHEN has_table_privilege(t.rel, 'SELECT') THEN 'v::text'
                           ELSE 'ROW(' || array_to_string(cols, ', ') || ')::text' END];
        -- and each column alone, which the planner may push further down,
        -- where every column comes from the filtered relation (llmgw.keys
        -- and the tables with row-level security; a column of a view that
        -- joins llmgw.teams or llmgw.keys, which the role reads anyway, may
        -- be shown rows of those)
        IF t.rel IN ('llmgw.keys', 'llmgw.usage', 'llmgw.usage_daily', 'llmgw.jobs',
                     'llmgw.async_calls', 'llmgw.request_log') THEN
            args := args || ARRAY(SELECT c || '::text' FROM unnest(cols) c);
        END IF;
        BEGIN
            EXECUTE format('SELECT count(*) FROM %s v', t.rel) INTO shown;
        EXCEPTION WHEN OTHERS THEN
            -- the role may read it (the matrix says so) but cannot
            INSERT INTO lv_result VALUES (t.rel, t.as_role, NULL, NULL, NULL, NULL, NULL,
                                          SQLSTATE || ': ' || SQLERRM);
            CONTINUE;
        END;
        FOREACH arg IN ARRAY args LOOP
            FOREACH fn IN ARRAY ARRAY['pg_temp.leak_volatile', 'pg_temp.leak_immutable'] LOOP
                PERFORM set_config('leak.calls', '0', false);
                PERFORM set_config('leak.seen', '', false);
                EXECUTE format('SELECT count(*) FROM %s v WHERE %s(%s)', t.rel, fn, arg) INTO returned;
                INSERT INTO lv_result VALUES (t.rel, t.as_role, fn || '(' || arg || ')', shown,
                                              returned, current_setting('leak.calls')::bigint,
                                              current_setting('leak.seen'), NULL);
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

-- The attacker's leaky functions: cheapest first, so the planner would run
-- them before any filter it is free to reorder (one honest, one claiming
-- to be immutable, which lets the planner push it further down)
SET ROLE regress_lv_a;
CREATE FUNCTION pg_temp.leak_volatile(t text) RETURNS boolean
LANGUAGE plpgsql VOLATILE COST 0.0000001 AS $$
BEGIN
    PERFORM set_config('leak.calls', (current_setting('leak.calls')::bigint + 1)::text, false);
    PERFORM set_config('leak.seen', current_setting('leak.seen') || t || E'\n', false);
    RETURN true;
END
$$;
CREATE FUNCTION pg_temp.leak_immutable(t text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE COST 0.0000001 AS $$
BEGIN
    PERFORM set_config('leak.calls', (current_setting('leak.calls')::bigint + 1)::text, false);
    PERFORM set_config('leak.seen', current_setting('leak.seen') || t || E'\n', false);
    RETURN true;
END
$$;
SELECT pg_temp.probe();
RESET ROLE;
SET ROLE regress_lv_fin;
SELECT pg_temp.probe();
RESET ROLE;

-- One line per relation: it shows rows to the attacker (so the test is not
-- vacuous), the leaky functions saw no row the query did not return, and
-- nothing of leaky_b or regress_lv_c
SELECT r.rel, r.as_role,
       CASE WHEN r.as_role = 'regress_lv_a' THEN bool_and(r.shown > 0) END AS shows_rows,
       bool_and(r.calls <= r.shown AND r.returned = r.shown) AS leak_saw_only_shown_rows,
       CASE WHEN r.rel IN (SELECT rel FROM lv_filtered) AND r.as_role = 'regress_lv_a'
            THEN bool_or(EXISTS (SELECT 1 FROM lv_marker m WHERE strpos(r.saw, m.marker) > 0))
       END AS leak_saw_other_team
  FROM lv_result r
 GROUP BY r.rel, r.as_role
 ORDER BY r.rel;
-- What the matrix lets the role read but it cannot (none)
SELECT rel, as_role, error FROM lv_result WHERE error IS NOT NULL ORDER BY rel;
-- Whatever did leak, in full (nothing)
SELECT rel, leak, shown, returned, calls, saw
  FROM lv_result r
 WHERE error IS NULL
   AND (calls > shown OR returned <> shown
        OR (rel IN (SELECT rel FROM lv_filtered) AND as_role = 'regress_lv_a'
            AND EXISTS (SELECT 1 FROM lv_marker m WHERE strpos(r.saw, m.marker) > 0)))
 ORDER BY rel, leak;
-- The text check can fail: llmgw.teams shows every team, leaky_b included
SELECT bool_or(strpos(saw, 'leaky_b') > 0) AS teams_show_leaky_b
  FROM lv_result WHERE rel = 'llmgw.teams';

-- Clean up (usage rows are a ledger and stay; so do logged calls; the
-- request log rules go with their teams)
DROP FUNCTION pg_temp.leak_volatile(text), pg_temp.leak_immutable(text);
DELETE FROM llmgw.budgets WHERE name = 'leaky_b budget';
DELETE FROM llmgw.jobs WHERE owner IN ('regress_lv_a', 'regress_lv_b');
DELETE FROM llmgw.async_calls WHERE owner IN ('regress_lv_a', 'regress_lv_b');
DELETE FROM llmgw.teams WHERE name IN ('leaky_a', 'leaky_b');
DROP ROLE regress_lv_a, regress_lv_b, regress_lv_c, regress_lv_fin;
