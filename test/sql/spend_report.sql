-- llmgw.spend_report() (docs/spend_report.md): its helpers, bad periods and
-- teams, who may read what, names that try to be HTML, and a page made of
-- nothing but inline CSS and SVG.  The spend is in January 2001, where no
-- other test writes, and everything is rolled back at the end.  The page
-- rendered in a browser: test/t/018_spend_report.pl.

-- the test's dates are UTC days (pg_regress sets PST8PDT)
SET TimeZone = 'UTC';

-- The helpers
SELECT llmgw.html_escape($$<script>alert("x") & 'y'</script>$$) AS escaped;
SELECT a, llmgw.format_amount(a)
  FROM unnest('{0, 0.000255, 0.0000004, 0.5, 0.12345, 1, 12.345, 1234567.891, -2.5}'::numeric[]) a;
SELECT t, (llmgw.chart_scale(t)).*
  FROM unnest('{NULL, 0, -3, 0.000255, 1.2, 4, 13.7, 100, 12345, NaN, Infinity}'::float8[]) t;

-- Works in a read-only transaction, as on a standby: it writes nothing
BEGIN READ ONLY;
SELECT llmgw.spend_report(now() - interval '7 days', now()) LIKE '<!DOCTYPE html>%</html>' AS read_only_page;
COMMIT;

-- Periods it refuses
SELECT try($$SELECT llmgw.spend_report(NULL, now())$$);
SELECT try($$SELECT llmgw.spend_report(now(), NULL)$$);
SELECT try($$SELECT llmgw.spend_report('-infinity', '2001-01-02')$$);
SELECT try($$SELECT llmgw.spend_report('2001-01-02', '2001-01-02')$$);
SELECT try($$SELECT llmgw.spend_report('2001-01-03', '2001-01-02')$$);
SELECT try($$SELECT llmgw.spend_report('2001-01-01 00:00+00', '2002-01-02 00:00:01+00')$$);
-- 366 whole days is the most
SELECT length(llmgw.spend_report('2000-01-01 00:00+00', '2001-01-01 00:00+00')) > 0 AS leap_year_page;
-- a team that does not exist; a name of a megabyte is cut in the message
SELECT try($$SELECT llmgw.spend_report('2001-01-01', '2001-02-01', 'no-such-team')$$);
SELECT try(format('SELECT llmgw.spend_report(%L, %L, %L)', '2001-01-01', '2001-02-01', repeat('x', 1000000)));

BEGIN;
-- Two teams; a user of sr-alpha; finance; a role with no llmgw role
SELECT llmgw.create_team('sr-alpha') AS alpha \gset
SELECT llmgw.create_team('sr-beta') AS beta \gset
CREATE ROLE regress_sr_user IN ROLE llmgw_user;
CREATE ROLE regress_sr_finance IN ROLE llmgw_finance;
CREATE ROLE regress_sr_none;
SELECT llmgw.bind_role('regress_sr_user', 'sr-alpha');
-- names that try to be HTML: a model alias, a key's name, a budget's name
SELECT llmgw.create_model('<script>alert(1)</script>', 'mock', 'mock-model');
SELECT key_id AS alpha_key FROM llmgw.create_key('sr-alpha', '<img src=x onerror=alert(1)>') \gset
SELECT key_id AS beta_key, prefix AS beta_prefix FROM llmgw.create_key('sr-beta', 'beta key') \gset
SELECT llmgw.create_budget('sr "alpha" <b>budget</b>', 'team', 'sr-alpha', 'month', 10) > 0 AS budget_made;
SELECT llmgw.create_budget('sr beta budget', 'team', 'sr-beta', 'month', 10) > 0 AS budget_made;

-- Spend in January 2001, as the workers would write it
INSERT INTO llmgw.usage (request_id, started_at, role_name, key_id, team_id, model, provider,
                         upstream_model, status, error_class, input_tokens, output_tokens,
                         cost, currency, fallback_from)
VALUES
    (gen_random_uuid(), '2001-01-02 10:00+00', 'app', :alpha_key, :alpha, '<script>alert(1)</script>',
     'mock', 'mock-model', 'ok', NULL, 100, 10, 1.25, 'USD', NULL),
    (gen_random_uuid(), '2001-01-02 11:00+00', 'app', :alpha_key, :alpha, 'demo',
     'mock', 'mock-model', 'ok', NULL, 100, 10, 0.50, 'USD', NULL),
    (gen_random_uuid(), '2001-01-03 09:00+00', 'app', :alpha_key, :alpha, 'demo',
     'mock', 'mock-model', 'error', 'server', NULL, NULL, NULL, NULL, NULL),
    (gen_random_uuid(), '2001-01-03 09:00+00', 'app', :alpha_key, :alpha, 'demo',
     'mock', 'mock-model', 'ok', NULL, 100, 10, 0.25, 'USD', 'mock/other'),
    (gen_random_uuid(), '2001-01-03 23:59:59+00', 'app', NULL, :alpha, 'demo',
     'mock', 'mock-model', 'ok', NULL, 100, 10, 0.001, 'USD', NULL),
    (gen_random_uuid(), '2001-01-02 12:00+00', 'app', :beta_key, :beta, 'beta-only-model',
     'mock', 'mock-model', 'ok', NULL, 100, 10, 7, 'USD', NULL),
    (gen_random_uuid(), '2001-01-04 12:00+00', 'app', :beta_key, :beta, 'beta-only-model',
     'mock', 'mock-model', 'error', 'rate_limit', NULL, NULL, NULL, NULL, NULL),
    -- another currency is not drawn, but named
    (gen_random_uuid(), '2001-01-04 12:00+00', 'app', :beta_key, :beta, 'beta-only-model',
     'mock', 'mock-model', 'ok', NULL, 100, 10, 3, 'EUR', NULL),
    -- the day after the period
    (gen_random_uuid(), '2001-02-01 00:00+00', 'app', :alpha_key, :alpha, 'demo',
     'mock', 'mock-model', 'ok', NULL, 100, 10, 100, 'USD', NULL);

-- The pages: as the superuser (the owner, as the front door calls it), of every
-- team and of one; as finance; as the user of sr-alpha
CREATE TEMP TABLE pages (who text, team text, html text);
INSERT INTO pages SELECT 'superuser', NULL, llmgw.spend_report('2001-01-01', '2001-02-01');
INSERT INTO pages SELECT 'superuser', 'sr-alpha', llmgw.spend_report('2001-01-01', '2001-02-01', 'sr-alpha');
GRANT SELECT, INSERT ON pages TO regress_sr_user, regress_sr_finance;
SET ROLE regress_sr_finance;
INSERT INTO pages SELECT 'finance', NULL, llmgw.spend_report('2001-01-01', '2001-02-01');
RESET ROLE;
SET ROLE regress_sr_user;
INSERT INTO pages SELECT 'user', NULL, llmgw.spend_report('2001-01-01', '2001-02-01');
INSERT INTO pages SELECT 'user', 'sr-alpha', llmgw.spend_report('2001-01-01', '2001-02-01', 'sr-alpha');
-- a user may not ask for another team's spend
SELECT try($$SELECT llmgw.spend_report('2001-01-01', '2001-02-01', 'sr-beta')$$);
RESET ROLE;
SET ROLE regress_sr_none;
SELECT try($$SELECT llmgw.spend_report('2001-01-01', '2001-02-01')$$);
RESET ROLE;

-- The page is the same whatever the session's DateStyle, TimeZone and float
-- output (now() is the transaction's: two pages of it are equal)
SET LOCAL DateStyle = 'SQL, DMY';
SET LOCAL TimeZone = 'Asia/Kathmandu';
SET LOCAL extra_float_digits = -5;
SELECT llmgw.spend_report('2001-01-01 00:00+00', '2001-02-01 00:00+00') = p.html AS same_page
  FROM pages p WHERE p.who = 'superuser' AND p.team IS NULL;
SET LOCAL DateStyle = 'ISO, MDY';
SET LOCAL TimeZone = 'UTC';
SET LOCAL extra_float_digits = 1;

-- Nothing on any page runs or fetches: no script, no event handler, no
-- address, no element that loads; names come out as text
SELECT p.who, p.team,
       p.html LIKE '<!DOCTYPE html>%</html>' AS whole,
       p.html LIKE '%<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''">%' AS csp,
       p.html !~ '://' AS no_address,
       p.html !~* 'url\(|@import|javascript:' AS no_css_fetch,
       (SELECT count(*) FROM regexp_matches(p.html, '<[^>]*>', 'g') m
         WHERE m[1] ~* '^</?(script|img|image|iframe|frame|object|embed|link|base|form|input|button|audio|video|source|track|use|foreignobject|animate|set|a)[\s/>]'
            OR m[1] ~* '\s(on[a-z]+|src|href|xlink:href|srcset|action|formaction|background|poster|ping)\s*=') AS bad_tags,
       p.html LIKE '%&lt;script&gt;alert(1)&lt;/script&gt;%' AS model_is_text,
       p.html LIKE '%&lt;img src=x onerror=alert(1)&gt;%' AS key_name_is_text
  FROM pages p ORDER BY 1, 2 NULLS FIRST;

-- The elements a page is made of (sr-alpha's page: its budget has no spend yet)
SELECT string_agg(DISTINCT lower(m[1]), ' ') AS elements
  FROM pages p, regexp_matches(p.html, '<([a-zA-Z!][a-zA-Z0-9]*)', 'g') m
 WHERE p.who = 'superuser' AND p.team = 'sr-alpha';

-- Who sees what: a team's page and a user's page show nothing of sr-beta;
-- budgets only to finance and admin; with a team, only that team's budgets
SELECT p.who, p.team,
       p.html LIKE '%sr-alpha%' AS alpha,
       p.html LIKE '%sr-beta%' AS beta,
       p.html LIKE '%beta-only-model%' AS beta_model,
       p.html LIKE '%' || :'beta_prefix' || '%' AS beta_key,
       p.html LIKE '%sr &quot;alpha&quot; &lt;b&gt;budget&lt;/b&gt;%' AS alpha_budget,
       p.html LIKE '%sr beta budget%' AS beta_budget,
       p.html LIKE '%Budgets are shown to llmgw_finance and llmgw_admin.%' AS budgets_withheld,
       p.html LIKE '%Also spent in other currencies, not drawn: 3.00 EUR.%' AS eur_named
  FROM pages p ORDER BY 1, 2 NULLS FIRST;

-- The figures of sr-alpha's page against the rows: spend, calls, errors,
-- fallbacks (the day after the period left out)
SELECT substring(p.html FROM 'id="kpi-spend" data-value="([^"]*)"') AS spend,
       substring(p.html FROM 'id="kpi-calls" data-value="([^"]*)"') AS calls,
       substring(p.html FROM 'id="kpi-errors" data-value="([^"]*)"') AS errors,
       substring(p.html FROM 'id="kpi-fallbacks" data-value="([^"]*)"') AS fallbacks,
       (SELECT sum(cost) FROM llmgw.usage WHERE team_id = :alpha AND started_at < '2001-02-01') AS spend_in_rows
  FROM pages p WHERE p.who = 'superuser' AND p.team = 'sr-alpha';
-- per day and model (data-cost of the bars), per key, per day in figures
SELECT m[1] AS day, m[2] AS series, m[3] AS cost
  FROM pages p, regexp_matches(p.html, '<rect [^>]*data-day="([^"]*)" data-series="([^"]*)" data-cost="([^"]*)"', 'g') m
 WHERE p.who = 'superuser' AND p.team = 'sr-alpha' ORDER BY 1, 2;
SELECT m[1] = (SELECT prefix FROM llmgw.keys WHERE id = :alpha_key) AS alpha_key, m[2] AS calls, m[3] AS cost
  FROM pages p, regexp_matches(p.html, '<tr data-key="([^"]*)" data-calls="([^"]*)" data-cost="([^"]*)"', 'g') m
 WHERE p.who = 'superuser' AND p.team = 'sr-alpha' ORDER BY 3 DESC;
SELECT m[1] AS day, m[2] AS calls, m[3] AS errors, m[4] AS fallbacks, m[5] AS cost
  FROM pages p, regexp_matches(p.html, '<tr data-day="([^"]*)" data-calls="([^"]*)" data-errors="([^"]*)" data-fallbacks="([^"]*)" data-cost="([^"]*)"', 'g') m
 WHERE p.who = 'superuser' AND p.team = 'sr-alpha' AND m[2] <> '0' ORDER BY 1;
SELECT m[1] AS class, m[2] AS count
  FROM pages p, regexp_matches(p.html, '<tr data-class="([^"]*)" data-count="([^"]*)"', 'g') m
 WHERE p.who = 'superuser' AND p.team IS NULL ORDER BY 1;

-- Many teams, keys and budgets: the eight largest teams and the others
-- together in the chart, the ten largest keys, the first 50 budgets
SELECT count(llmgw.create_team('sr-many-' || i)) AS teams FROM generate_series(1, 12) i;
SELECT count(llmgw.create_key('sr-many-' || i, 'many ' || i)) AS keys FROM generate_series(1, 12) i;
SELECT count(llmgw.create_budget('sr many ' || i, 'global', NULL, 'day', 100)) AS budgets
  FROM generate_series(1, 50) i;
INSERT INTO llmgw.usage (request_id, started_at, key_id, team_id, model, status, cost, currency)
SELECT gen_random_uuid(), '2001-01-05 12:00+00', k.id, t.id, 'demo', 'ok', i, 'USD'
  FROM generate_series(1, 12) i
  JOIN llmgw.teams t ON t.name = 'sr-many-' || i
  JOIN llmgw.keys k ON k.team = t.name;
WITH p AS (SELECT llmgw.spend_report('2001-01-01', '2001-02-01') AS html)
SELECT (SELECT string_agg(m[1], ', ' ORDER BY o)
          FROM regexp_matches(p.html, '<li data-series="([^"]*)"', 'g') WITH ORDINALITY AS x(m, o)) AS legend,
       (SELECT count(*) FROM regexp_matches(p.html, '<tr data-key=', 'g')) AS key_rows,
       substring(p.html FROM 'The 10 largest of [0-9]+ keys') AS keys_note,
       (SELECT count(*) FROM regexp_matches(p.html, '<div class="budget ', 'g')) AS budget_cards,
       p.html ~ 'The first 50 of [0-9]+ budgets, by name.' AS budgets_note
  FROM p;

-- The user's page without a team is its team's page
SELECT (SELECT substring(html FROM 'id="kpi-spend" data-value="([^"]*)"') FROM pages WHERE who = 'user' AND team IS NULL)
     = (SELECT substring(html FROM 'id="kpi-spend" data-value="([^"]*)"') FROM pages WHERE who = 'superuser' AND team = 'sr-alpha')
       AS user_sees_its_team;
ROLLBACK;
