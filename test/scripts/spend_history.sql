-- A realistic month of spend for trying llmgw.spend_report() and making the
-- screenshot of docs/spend_report.md (test/scripts/spend_screenshot.sh):
-- five teams, their keys, six models, 30 days of usage rows with a weekly
-- rhythm, errors and fallbacks, and budgets.  Deterministic.  Run as a
-- superuser on a database with the extension and nothing else in it: it
-- writes usage rows directly, as the workers would.
\set ON_ERROR_STOP 1
SELECT llmgw.create_provider('openai', 'openai', 'https://api.openai.com/v1');
SELECT llmgw.create_provider('anthropic', 'anthropic', 'https://api.anthropic.com/v1');
SELECT llmgw.create_model('fast', 'openai', 'gpt-4o-mini');
SELECT llmgw.create_model('fast', 'anthropic', 'claude-haiku-4-5', priority => -1);
SELECT llmgw.create_model('smart', 'anthropic', 'claude-sonnet-4-5');
SELECT llmgw.create_model('smart', 'openai', 'gpt-4o', priority => -1);
SELECT llmgw.create_model('gpt-4o', 'openai', 'gpt-4o');
SELECT llmgw.create_model('mini', 'openai', 'gpt-4.1-mini');
SELECT llmgw.create_model('embed', 'openai', 'text-embedding-3-small');
SELECT llmgw.create_model('haiku', 'anthropic', 'claude-haiku-4-5');

SELECT llmgw.create_team(t) FROM unnest(ARRAY['support', 'search', 'marketing', 'data-science', 'legal']) t;
SELECT k.team, (llmgw.create_key(k.team, k.name)).prefix
  FROM (VALUES ('support', 'support bot'), ('support', 'ticket triage'), ('search', 'query rewrite'),
               ('search', 'indexer'), ('marketing', 'copy drafts'), ('data-science', 'notebooks'),
               ('data-science', 'nightly enrich'), ('legal', 'contract review')) k(team, name);

SELECT llmgw.create_budget('support monthly', 'team', 'support', 'month', 120);
SELECT llmgw.create_budget('search monthly', 'team', 'search', 'month', 40);
SELECT llmgw.create_budget('marketing weekly', 'team', 'marketing', 'week', 25, 'soft');
SELECT llmgw.create_budget('all teams daily', 'global', NULL, 'day', 10, 'soft');
SELECT llmgw.create_budget('smart model monthly', 'model', 'smart', 'month', 150);

-- what a call of each model costs, per 1M tokens, and its usual size
CREATE TEMP TABLE m (model text, provider text, upstream text, fallback text, pin numeric, pout numeric,
                     tin int, tout int);
INSERT INTO m VALUES
    ('fast', 'openai', 'gpt-4o-mini', 'anthropic/claude-haiku-4-5', 0.15, 0.6, 1800, 350),
    ('smart', 'anthropic', 'claude-sonnet-4-5', 'openai/gpt-4o', 3, 15, 2600, 700),
    ('gpt-4o', 'openai', 'gpt-4o', NULL, 2.5, 10, 1500, 400),
    ('mini', 'openai', 'gpt-4.1-mini', NULL, 0.4, 1.6, 1200, 300),
    ('embed', 'openai', 'text-embedding-3-small', NULL, 0.02, 0, 600, 0),
    ('haiku', 'anthropic', 'claude-haiku-4-5', NULL, 1, 5, 2000, 500);

-- calls per working day of each key and model
CREATE TEMP TABLE mix (team text, key_name text, model text, per_day int);
INSERT INTO mix VALUES
    ('support', 'support bot', 'fast', 900), ('support', 'support bot', 'smart', 90),
    ('support', 'ticket triage', 'haiku', 300), ('search', 'query rewrite', 'fast', 700),
    ('search', 'indexer', 'embed', 2500), ('search', 'query rewrite', 'gpt-4o', 60),
    ('marketing', 'copy drafts', 'smart', 40), ('marketing', 'copy drafts', 'gpt-4o', 30),
    ('data-science', 'notebooks', 'smart', 35), ('data-science', 'nightly enrich', 'mini', 800),
    ('legal', 'contract review', 'smart', 25);

SELECT setseed(0.16);
INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, key_id, team_id, model, provider,
                         upstream_model, status, error_class, http_status, latency_ms, input_tokens,
                         output_tokens, usage_source, cost, currency, fallback_from)
SELECT gen_random_uuid(), 1, c.at, 'app', k.id, t.id, m.model,
       CASE WHEN c.fb THEN split_part(m.fallback, '/', 1) ELSE m.provider END,
       CASE WHEN c.fb THEN split_part(m.fallback, '/', 2) ELSE m.upstream END,
       CASE WHEN c.err IS NULL THEN 'ok' ELSE 'error' END, c.err,
       CASE c.err WHEN 'rate_limit' THEN 429 WHEN 'server' THEN 500 WHEN 'timeout' THEN NULL
                  WHEN 'overloaded' THEN 529 ELSE 200 END,
       200 + random() * 1800,
       CASE WHEN c.err IS NULL THEN c.tin END, CASE WHEN c.err IS NULL THEN c.tout END,
       CASE WHEN c.err IS NULL THEN 'provider' END,
       CASE WHEN c.err IS NULL THEN round((c.tin * m.pin + c.tout * m.pout) / 1000000, 9) END,
       CASE WHEN c.err IS NULL THEN 'USD' END,
       CASE WHEN c.fb THEN m.provider || '/' || m.upstream END
  FROM mix x
  JOIN m ON m.model = x.model
  JOIN llmgw.teams t ON t.name = x.team
  JOIN llmgw.keys k ON k.name = x.key_name
  CROSS JOIN generate_series(29, 0, -1) AS ago
  CROSS JOIN LATERAL (
      SELECT date_trunc('day', now() - make_interval(days => ago)) AS day,
             -- fewer calls at weekends, a slow rise over the month, and noise
             CASE WHEN extract(isodow FROM now() - make_interval(days => ago)) >= 6 THEN 0.3 ELSE 1 END
               * (0.75 + (29 - ago) / 60.0) * (0.85 + random() * 0.3)
               -- marketing's campaign in the last ten days
               * CASE WHEN x.team = 'marketing' AND ago < 10 THEN 3.5 ELSE 1 END AS factor) d
  CROSS JOIN LATERAL generate_series(1, greatest(1, (x.per_day * d.factor / 10)::int)) AS n
  CROSS JOIN LATERAL (
      SELECT least(d.day + make_interval(secs => random() * 86399), now() - interval '1 second') AS at,
             (m.tin * (0.5 + random()))::int * 10 AS tin, (m.tout * (0.5 + random()))::int * 10 AS tout,
             CASE WHEN random() < CASE WHEN ago IN (12, 13) AND m.provider = 'anthropic' THEN 0.09 ELSE 0.012 END
                  THEN (ARRAY['rate_limit', 'server', 'timeout', 'overloaded'])[1 + (random() * 3)::int] END AS err,
             m.fallback IS NOT NULL
               AND random() < CASE WHEN ago IN (12, 13) THEN 0.06 ELSE 0.008 END AS fb
       WHERE n > 0) c;   -- a reference to n: drawn for every call, not once a day

-- answers from the response cache: no provider, no cost
INSERT INTO llmgw.usage (request_id, started_at, role_name, key_id, team_id, model, status,
                         latency_ms, cache_hit)
SELECT gen_random_uuid(), u.started_at + interval '1 hour', u.role_name, u.key_id, u.team_id,
       u.model, 'ok', 1, true
  FROM llmgw.usage u
 WHERE u.model = 'fast' AND u.status = 'ok' AND u.started_at < now() - interval '1 hour'
   AND random() < 0.15;
