-- llmgw.cost is computed by the library (src/cost.c): it must equal the SQL
-- body it replaced (0.6's, kept here as ref_cost) digit for digit, scale
-- included, NULL where that was NULL, for price rows with and without
-- tiers and optional rates, and counts missing, zero, small and large.
CREATE FUNCTION ref_cost(p llmgw.prices, input_tokens bigint, output_tokens bigint,
                         cached_input_tokens bigint DEFAULT NULL,
                         cache_write_tokens bigint DEFAULT NULL,
                         cache_write_1h_tokens bigint DEFAULT NULL,
                         reasoning_tokens bigint DEFAULT NULL, images integer DEFAULT NULL)
RETURNS numeric LANGUAGE sql IMMUTABLE AS $$
SELECT CASE WHEN p.id IS NULL THEN NULL ELSE trim_scale(
    ((input_tokens - coalesce(cached_input_tokens, 0) - coalesce(cache_write_tokens, 0))
        * CASE WHEN input_tokens > p.tier_threshold THEN coalesce(p.tier_input, p.input)
               ELSE p.input END
     + coalesce(cached_input_tokens, 0)
        * CASE WHEN input_tokens > p.tier_threshold
               THEN coalesce(p.tier_cached_input, p.cached_input, p.tier_input, p.input)
               ELSE coalesce(p.cached_input, p.input) END
     + (coalesce(cache_write_tokens, 0) - coalesce(cache_write_1h_tokens, 0))
        * CASE WHEN input_tokens > p.tier_threshold
               THEN coalesce(p.tier_cache_write_5m, p.cache_write_5m, p.tier_input, p.input)
               ELSE coalesce(p.cache_write_5m, p.input) END
     + coalesce(cache_write_1h_tokens, 0)
        * CASE WHEN input_tokens > p.tier_threshold
               THEN coalesce(p.tier_cache_write_1h, p.cache_write_1h, p.tier_cache_write_5m,
                             p.cache_write_5m, p.tier_input, p.input)
               ELSE coalesce(p.cache_write_1h, p.cache_write_5m, p.input) END
     + (coalesce(output_tokens, CASE WHEN p.output = 0 AND p.reasoning IS NULL THEN 0 END)
        - coalesce(reasoning_tokens, 0))
        * CASE WHEN input_tokens > p.tier_threshold THEN coalesce(p.tier_output, p.output)
               ELSE p.output END
     + coalesce(reasoning_tokens, 0) * coalesce(p.reasoning,
        CASE WHEN input_tokens > p.tier_threshold THEN coalesce(p.tier_output, p.output)
             ELSE p.output END)
    ) / 1000000
    + coalesce(p.per_request, 0) + coalesce(images, 0) * coalesce(p.per_image, 0))
END
$$;

-- Rates: NULL (where the column allows it), 0, and values of many scales
CREATE TEMP TABLE rates(r numeric);
INSERT INTO rates VALUES (NULL), (0), (0.0000), (0.075), (0.3), (1.25), (2.5), (3), (15.00),
    (0.000001), (123456.789012345678), (0.1234567890123456789012345);
-- Price rows (ids set: a NULL id is no price at all)
SELECT setseed(0.7);
CREATE TEMP TABLE test_prices AS
SELECT jsonb_populate_record(NULL::llmgw.prices, jsonb_build_object(
           'id', CASE WHEN g % 97 = 0 THEN NULL ELSE g END, 'model', 'rule-' || g, 'currency', 'USD',
           'input', (SELECT r FROM rates WHERE r IS NOT NULL ORDER BY random() + g * 0 LIMIT 1),
           'output', (SELECT r FROM rates WHERE r IS NOT NULL ORDER BY random() + g * 0 LIMIT 1),
           'cached_input', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'cache_write_5m', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'cache_write_1h', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'reasoning', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'per_request', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'per_image', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'tier_threshold', CASE WHEN g % 3 = 0 THEN NULL ELSE (ARRAY[1, 1000, 200000])[1 + g % 3] END,
           'tier_input', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'tier_cached_input', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'tier_cache_write_5m', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'tier_cache_write_1h', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1),
           'tier_output', (SELECT r FROM rates ORDER BY random() + g * 0 LIMIT 1))) AS p
  FROM generate_series(1, 400) g;
-- Counts: NULL, 0, small, at and past a threshold, large
CREATE TEMP TABLE counts(n bigint);
INSERT INTO counts VALUES (NULL), (0), (1), (7), (999), (1000), (1001), (200000), (200001),
    (123456789), (9000000000000);
CREATE TEMP TABLE cases AS
SELECT p, (SELECT n FROM counts ORDER BY random() + g * 0 LIMIT 1) AS i,
       (SELECT n FROM counts ORDER BY random() + g * 0 LIMIT 1) AS o,
       (SELECT n FROM counts WHERE n IS NULL OR n < 1000 ORDER BY random() + g * 0 LIMIT 1) AS ca,
       (SELECT n FROM counts WHERE n IS NULL OR n < 1000 ORDER BY random() + g * 0 LIMIT 1) AS cw,
       (SELECT n FROM counts WHERE n IS NULL OR n < 10 ORDER BY random() + g * 0 LIMIT 1) AS cw1h,
       (SELECT n FROM counts WHERE n IS NULL OR n < 1000 ORDER BY random() + g * 0 LIMIT 1) AS r,
       (ARRAY[NULL, 0, 1, 3])[1 + g % 4]::integer AS img
  FROM test_prices, generate_series(1, 50) g;

SELECT count(*) AS cases,
       count(*) FILTER (WHERE llmgw.cost(p, i, o, ca, cw, cw1h, r, img) IS NULL) > 0 AS some_null,
       count(*) FILTER (WHERE (p).tier_threshold < i) > 0 AS some_tiered,
       count(*) FILTER (WHERE llmgw.cost(p, i, o, ca, cw, cw1h, r, img)::text
                              IS DISTINCT FROM ref_cost(p, i, o, ca, cw, cw1h, r, img)::text) AS differ
  FROM cases;
-- a few of them, as text (the scale shows)
SELECT i, o, ca, cw, cw1h, r, img, llmgw.cost(p, i, o, ca, cw, cw1h, r, img)::text AS cost,
       ref_cost(p, i, o, ca, cw, cw1h, r, img)::text AS ref
  FROM cases WHERE (p).id IN (5, 6) ORDER BY (p).id, i, o, ca, cw, cw1h, r, img LIMIT 6;
-- the defaults, and a NULL row
SELECT llmgw.cost(p, 1000, 10) = ref_cost(p, 1000, 10) AS defaults,
       llmgw.cost(NULL, 1, 1) IS NULL AS null_price
  FROM test_prices WHERE (p).id = 1;
-- a count past bigint, as SQL says it
SELECT llmgw.cost(p, -9223372036854775807, 1, 2) FROM test_prices WHERE (p).id = 1;
DROP FUNCTION ref_cost;
