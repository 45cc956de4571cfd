-- Last of the suite (by name): after every other test has made its calls
-- (answers, errors, fallbacks, cache hits, batches, rows inserted by hand),
-- the rollups hold exactly what llmgw.usage holds, whichever path wrote
-- the rows (a worker's round straight into the table, the INSERT and its
-- trigger, a batch's chunk): each day's row and each total, sum for sum.
SELECT count(*) > 0 AS has_usage FROM llmgw.usage;

WITH rows AS (
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day, team_id, key_id, role_name, model,
           provider, upstream_model, currency, batch_id IS NOT NULL AS batch,
           count(*) AS calls, count(*) FILTER (WHERE status <> 'ok') AS errors,
           count(*) FILTER (WHERE unpriced) AS unpriced, count(*) FILTER (WHERE cache_hit) AS cache_hits,
           coalesce(sum(input_tokens), 0) AS i, coalesce(sum(output_tokens), 0) AS o,
           coalesce(sum(cached_input_tokens), 0) AS c, coalesce(sum(reasoning_tokens), 0) AS r,
           coalesce(sum(cost), 0) AS cost
      FROM llmgw.usage GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9),
rolled AS (
    SELECT day, team_id, key_id, role_name, model, provider, upstream_model, currency, batch,
           sum(calls) AS calls, sum(errors) AS errors, sum(unpriced) AS unpriced,
           sum(cache_hits) AS cache_hits, sum(input_tokens) AS i, sum(output_tokens) AS o,
           sum(cached_input_tokens) AS c, sum(reasoning_tokens) AS r, sum(cost) AS cost
      FROM llmgw.usage_daily GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9)
SELECT count(*) AS daily_rows_that_differ
  FROM rows FULL JOIN rolled
    ON (rows.day, rows.batch) = (rolled.day, rolled.batch)
   AND rows.team_id IS NOT DISTINCT FROM rolled.team_id
   AND rows.key_id IS NOT DISTINCT FROM rolled.key_id
   AND rows.role_name IS NOT DISTINCT FROM rolled.role_name
   AND rows.model IS NOT DISTINCT FROM rolled.model
   AND rows.provider IS NOT DISTINCT FROM rolled.provider
   AND rows.upstream_model IS NOT DISTINCT FROM rolled.upstream_model
   AND rows.currency IS NOT DISTINCT FROM rolled.currency
 WHERE (rows.calls, rows.errors, rows.unpriced, rows.cache_hits, rows.i, rows.o, rows.c, rows.r, rows.cost)
       IS DISTINCT FROM
       (rolled.calls, rolled.errors, rolled.unpriced, rolled.cache_hits, rolled.i, rolled.o, rolled.c,
        rolled.r, rolled.cost);

WITH rows AS (
    SELECT team_id, model, provider, upstream_model, status, error_class, cache_hit, fallback_from,
           currency, count(*) AS calls, count(*) FILTER (WHERE unpriced) AS unpriced,
           coalesce(sum(input_tokens), 0) AS i, coalesce(sum(output_tokens), 0) AS o,
           coalesce(sum(cached_input_tokens), 0) AS c, coalesce(sum(cache_write_tokens), 0) AS cw,
           coalesce(sum(reasoning_tokens), 0) AS r, coalesce(sum(cost), 0) AS cost
      FROM llmgw.usage GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9),
rolled AS (
    SELECT team_id, model, provider, upstream_model, status, error_class, cache_hit, fallback_from,
           currency, sum(calls) AS calls, sum(unpriced) AS unpriced, sum(input_tokens) AS i,
           sum(output_tokens) AS o, sum(cached_input_tokens) AS c, sum(cache_write_tokens) AS cw,
           sum(reasoning_tokens) AS r, sum(cost) AS cost
      FROM llmgw.usage_totals GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9)
SELECT count(*) AS total_rows_that_differ
  FROM rows FULL JOIN rolled
    ON (rows.status, rows.cache_hit) = (rolled.status, rolled.cache_hit)
   AND rows.team_id IS NOT DISTINCT FROM rolled.team_id
   AND rows.model IS NOT DISTINCT FROM rolled.model
   AND rows.provider IS NOT DISTINCT FROM rolled.provider
   AND rows.upstream_model IS NOT DISTINCT FROM rolled.upstream_model
   AND rows.error_class IS NOT DISTINCT FROM rolled.error_class
   AND rows.fallback_from IS NOT DISTINCT FROM rolled.fallback_from
   AND rows.currency IS NOT DISTINCT FROM rolled.currency
 WHERE (rows.calls, rows.unpriced, rows.i, rows.o, rows.c, rows.cw, rows.r, rows.cost)
       IS DISTINCT FROM
       (rolled.calls, rolled.unpriced, rolled.i, rolled.o, rolled.c, rolled.cw, rolled.r, rolled.cost);

-- a day's row keeps its month, however often its sums were added in place
SELECT count(*) AS daily_rows_with_another_month
  FROM llmgw.usage_daily WHERE month IS DISTINCT FROM date_trunc('month', day)::date;
