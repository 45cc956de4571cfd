-- Prometheus metrics (docs/metrics.md): llmgw.metrics() in the text
-- exposition format, its samples as rows, who may read them, and that they
-- agree with the usage rows of every test before this one without reading
-- llmgw.usage.  The exporter and the counters of shared memory are checked
-- against a known set of calls in test/t/019_metrics.pl.

-- calls of its own (the tests before it add theirs): a model whose alias
-- needs escaping in a label value, a cache hit, a fallback, error classes
SELECT llmgw.create_model(E'metrics "odd"\\alias', 'mock', 'metrics-model');
SELECT llm_complete('count me', E'metrics "odd"\\alias', max_tokens => 3);
SELECT llmgw.create_model('metrics-cached', 'mock', 'metrics-cached-model');
UPDATE llmgw.models SET cache_ttl = '1 hour' WHERE alias = 'metrics-cached';
SELECT llm_complete('again', 'metrics-cached') = llm_complete('again', 'metrics-cached') AS same;
SELECT llmgw.create_model('metrics-fb', 'mock', 'metrics-fb;status:503', priority => 1);
SELECT llmgw.create_model('metrics-fb', 'mock', 'metrics-fb-backup', priority => 0);
SELECT llm_complete('fall back', 'metrics-fb', max_tokens => 3);
SELECT llmgw.create_model('metrics-500', 'mock', 'metrics-500;status:500');
SELECT llmgw.create_model('metrics-quota', 'mock', 'metrics-quota;quota');
SELECT llmgw.create_model('metrics-context', 'mock', 'metrics-context;context');
SELECT llmgw.create_model('metrics-bad', 'mock', 'metrics-bad;status:400');
SELECT m AS model, left(try(format('SELECT llm_complete(%L, %L)', 'x', m)), 5) AS sqlstate
  FROM unnest('{metrics-500,metrics-quota,metrics-context,metrics-bad}'::text[]) m;

-- the text: every line a HELP, a TYPE or a sample of the family above it
CREATE TEMP TABLE exposition AS
SELECT n, line FROM regexp_split_to_table(llmgw.metrics(), E'\n') WITH ORDINALITY AS t(line, n);
SELECT count(*) FILTER (WHERE line LIKE '# TYPE %') AS families,
       count(*) FILTER (WHERE line LIKE '# HELP %') AS helps,
       (SELECT count(*) FROM llmgw.metric_families()) AS declared,
       (SELECT line FROM exposition ORDER BY n DESC LIMIT 1) = '' AS ends_with_newline
  FROM exposition;
WITH typed AS (
    SELECT n, line, (SELECT split_part(t.line, ' ', 3) FROM exposition t
                      WHERE t.n <= e.n AND t.line LIKE '# TYPE %' ORDER BY t.n DESC LIMIT 1) AS family
      FROM exposition e)
SELECT n, line AS malformed
  FROM typed
 WHERE line <> '' AND line NOT LIKE '# HELP %' AND line NOT LIKE '# TYPE %'
   AND NOT (line ~ '^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (-?[0-9.e+-]+|NaN|\+Inf|-Inf)$'
            AND (split_part(split_part(line, '{', 1), ' ', 1) = family
                 OR split_part(split_part(line, '{', 1), ' ', 1) IN
                    (family || '_bucket', family || '_sum', family || '_count')));
-- the label value is escaped: backslash, double quote
SELECT line FROM exposition
 WHERE line LIKE 'llmgw_calls_total{%metrics \\"odd\\"\\\\alias%';

-- counters of the usage rows equal the rows themselves (no partition of
-- llmgw.usage was dropped in this database), both ways
CREATE TEMP TABLE expected AS
SELECT 'llmgw_calls_total' AS metric,
       jsonb_build_object('model', coalesce(model, ''), 'provider', coalesce(provider, ''),
                          'upstream_model', coalesce(upstream_model, ''), 'status', status,
                          'error_class', coalesce(error_class, '')) AS labels,
       count(*)::float8 AS value
  FROM llmgw.usage GROUP BY model, provider, upstream_model, status, error_class
UNION ALL
SELECT 'llmgw_tokens_total',
       jsonb_build_object('model', coalesce(model, ''), 'provider', coalesce(provider, ''),
                          'upstream_model', coalesce(upstream_model, ''), 'bucket', b),
       coalesce(sum(CASE b WHEN 'input' THEN input_tokens WHEN 'output' THEN output_tokens
                           WHEN 'cached_input' THEN cached_input_tokens
                           WHEN 'cache_write' THEN cache_write_tokens
                           ELSE reasoning_tokens END), 0)::float8
  FROM llmgw.usage, unnest('{input,output,cached_input,cache_write,reasoning}'::text[]) b
 WHERE NOT cache_hit GROUP BY model, provider, upstream_model, b
UNION ALL
SELECT 'llmgw_cost_total',
       jsonb_build_object('team', coalesce(t.name, ''), 'model', coalesce(u.model, ''),
                          'currency', u.currency),
       coalesce(sum(u.cost), 0)::float8
  FROM llmgw.usage u LEFT JOIN llmgw.teams t ON t.id = u.team_id
 WHERE u.currency IS NOT NULL GROUP BY t.name, u.model, u.currency
UNION ALL
SELECT 'llmgw_unpriced_calls_total',
       jsonb_build_object('model', coalesce(model, ''), 'provider', coalesce(provider, ''),
                          'upstream_model', coalesce(upstream_model, '')),
       count(*) FILTER (WHERE unpriced)::float8
  FROM llmgw.usage GROUP BY model, provider, upstream_model
UNION ALL
SELECT 'llmgw_cache_hits_total', jsonb_build_object('model', coalesce(model, '')), count(*)::float8
  FROM llmgw.usage WHERE cache_hit GROUP BY model
UNION ALL
SELECT 'llmgw_fallbacks_total',
       jsonb_build_object('model', coalesce(model, ''), 'from', fallback_from,
                          'provider', coalesce(provider, ''),
                          'upstream_model', coalesce(upstream_model, '')),
       count(*)::float8
  FROM llmgw.usage WHERE fallback_from IS NOT NULL
 GROUP BY model, fallback_from, provider, upstream_model;
CREATE TEMP TABLE got AS
SELECT metric, labels, value FROM llmgw.metric_samples(
    '{llmgw_calls_total,llmgw_tokens_total,llmgw_cost_total,llmgw_unpriced_calls_total,llmgw_cache_hits_total,llmgw_fallbacks_total}');
SELECT (SELECT count(*) FROM expected) > 20 AS many_series,
       (SELECT count(DISTINCT metric) FROM got) AS families,
       (SELECT count(*) FROM got WHERE metric = 'llmgw_cache_hits_total') > 0 AS cache_hits,
       (SELECT count(*) FROM got WHERE metric = 'llmgw_fallbacks_total') > 0 AS fallbacks,
       (SELECT count(DISTINCT labels->>'error_class') FROM got
         WHERE metric = 'llmgw_calls_total') >= 5 AS error_classes;
(SELECT 'missing' AS what, * FROM expected EXCEPT SELECT 'missing', * FROM got)
UNION ALL
(SELECT 'unexpected', * FROM got EXCEPT SELECT 'unexpected', * FROM expected)
ORDER BY 1, 2, 3;

-- the budgets are those of llmgw.budget_status, with the spend of the
-- ledger (equal to the rollups' spend, to 1e-10 per call)
SELECT llmgw.create_budget('metrics budget', 'model', 'metrics-fb', 'month', 10, 'soft') > 0 AS budget;
SELECT llm_complete('budgeted', 'metrics-fb', max_tokens => 3) IS NOT NULL AS called;
SELECT count(*) = 0 AS budgets_agree
  FROM (SELECT b.name, v.metric, v.value
          FROM llmgw.budget_status b
         CROSS JOIN LATERAL (VALUES ('llmgw_budget_limit', b.limit_amount::float8),
                                    ('llmgw_budget_spent', b.ledger_spent::float8),
                                    ('llmgw_budget_reserved', b.reserved::float8),
                                    ('llmgw_budget_remaining',
                                     greatest(b.limit_amount - b.ledger_spent - b.reserved, 0)::float8)) v(metric, value)
        EXCEPT
        SELECT labels->>'budget', metric, value
          FROM llmgw.metric_samples('{llmgw_budget_limit,llmgw_budget_spent,llmgw_budget_reserved,llmgw_budget_remaining}')) d;
SELECT count(*) AS ledger_not_rollups FROM llmgw.budget_status WHERE abs(ledger_spent - spent) > 1e-6;
DELETE FROM llmgw.budgets WHERE name = 'metrics budget';

-- nothing of llmgw.usage is read: the counters come from llmgw.usage_totals
-- (the scans of the statements above are flushed first: PostgreSQL 15's
-- pg_stat_get_xact_numscans() also counts those not flushed yet)
SELECT pg_stat_force_next_flush();
BEGIN;
SELECT length(llmgw.metrics()) > 1000 AS has_text;
SELECT sum(pg_stat_get_xact_numscans(i.inhrelid)) AS usage_partition_scans,
       pg_stat_get_xact_numscans('llmgw.usage_totals'::regclass) > 0 AS totals_read
  FROM pg_inherits i WHERE i.inhparent = 'llmgw.usage'::regclass;
COMMIT;

-- the shared-memory families are there, with their labels
SELECT metric, labels
  FROM llmgw.metric_samples('{llmgw_refusals_total,llmgw_workers_configured,llmgw_queue_size}')
 ORDER BY 1, 2::text;
SELECT count(*) FILTER (WHERE value >= 1) > 0 AS latency_observed
  FROM llmgw.metric_samples('{llmgw_latency_seconds}') WHERE metric = 'llmgw_latency_seconds_count';
-- a histogram's buckets never decrease, and +Inf is its count
SELECT count(*) AS broken_histograms
  FROM (SELECT labels - 'le' AS series,
               array_agg(value ORDER BY CASE WHEN labels->>'le' = '+Inf' THEN 'Infinity'::float8
                                             ELSE (labels->>'le')::float8 END) AS counts
          FROM llmgw.metric_samples('{llmgw_latency_seconds}')
         WHERE metric = 'llmgw_latency_seconds_bucket' GROUP BY 1) h
  JOIN llmgw.metric_samples('{llmgw_latency_seconds}') c
    ON c.metric = 'llmgw_latency_seconds_count' AND c.labels = h.series
 WHERE h.counts[cardinality(h.counts)] <> c.value
    OR EXISTS (SELECT 1 FROM generate_subscripts(h.counts, 1) i
                WHERE i > 1 AND h.counts[i] < h.counts[i - 1]);

-- bad input
SELECT try($$SELECT * FROM llmgw.metric_samples('{llmgw_calls_total,no_such_family}')$$);
SELECT try($$SELECT * FROM llmgw.metric_samples(ARRAY[NULL]::text[])$$);
SELECT try($$SELECT * FROM llmgw.metric_samples(array_fill('x'::text, ARRAY[100000]))$$);
SELECT count(*) AS none FROM llmgw.metric_samples('{}');

-- who may read them: llmgw_admin and llmgw_finance, not llmgw_user (it
-- would show every team's spend), nor any other role
CREATE ROLE regress_metrics_finance IN ROLE llmgw_finance;
CREATE ROLE regress_metrics_admin IN ROLE llmgw_admin;
CREATE ROLE regress_metrics_user IN ROLE llmgw_user;
CREATE ROLE regress_metrics_none;
SET ROLE regress_metrics_finance;
SELECT llmgw.metrics() LIKE '# HELP llmgw_calls_total %' AS finance_reads;
SELECT count(*) > 0 AS finance_totals FROM llmgw.usage_totals;
SET ROLE regress_metrics_admin;
SELECT llmgw.metrics() LIKE '# HELP llmgw_calls_total %' AS admin_reads;
SET ROLE regress_metrics_user;
SELECT try($$SELECT llmgw.metrics()$$);
SELECT try($$SELECT * FROM llmgw.metric_samples()$$);
SELECT try($$SELECT * FROM llmgw.usage_totals$$);
SELECT try($$SELECT * FROM llmgw.gateway_counters()$$);
SET ROLE regress_metrics_none;
SELECT try($$SELECT llmgw.metrics()$$);
RESET ROLE;
-- nobody writes the totals but the trigger
SET ROLE regress_metrics_admin;
SELECT try($$DELETE FROM llmgw.usage_totals$$);
SELECT try($$UPDATE llmgw.usage_totals SET calls = 0$$);
RESET ROLE;
DROP ROLE regress_metrics_finance, regress_metrics_admin, regress_metrics_user,
          regress_metrics_none;
