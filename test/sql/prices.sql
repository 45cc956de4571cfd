-- Prices: exact cost for every token bucket and tier, time-versioned
-- history, and the LiteLLM import.
SELECT llmgw.set_price('test-tiered', input => 3, output => 15, cached_input => 0.3,
                       cache_write_5m => 3.75, cache_write_1h => 6,
                       tier_threshold => 200000, tier_input => 6, tier_cached_input => 0.6,
                       tier_cache_write_5m => 7.5, tier_output => 22.5,
                       tier_cache_write_1h => 12) > 0 AS tiered;
SELECT llmgw.set_price('test-reasoning', input => 0.3, output => 2.5, reasoning => 3.5) > 0 AS reasoning;
SELECT llmgw.set_price('test-per-call', input => 0, output => 0, per_request => 0.01,
                       per_image => 0.002) > 0 AS per_call;
SELECT llmgw.set_price('test-embedding', input => 0.02, output => 0) > 0 AS embedding;

-- cost(model, input, output, cached, cache_write, cache_write_1h, reasoning, images)
CREATE FUNCTION c(m text, i bigint, o bigint, ca bigint DEFAULT NULL, cw bigint DEFAULT NULL,
                  cw1h bigint DEFAULT NULL, r bigint DEFAULT NULL, img int DEFAULT NULL)
RETURNS numeric LANGUAGE sql AS $$
    SELECT llmgw.cost(llmgw.price_at(ARRAY[m], now()), i, o, ca, cw, cw1h, r, img)
$$;

SELECT 'plain: 1000*3 + 500*15' AS case, c('test-tiered', 1000, 500) AS cost, 0.0105 AS expected
UNION ALL
SELECT 'cached: 200*3 + 800*0.3 + 100*15', c('test-tiered', 1000, 100, 800), 0.00234
UNION ALL
SELECT 'cache writes: 500*3 + 500*0.3 + 3000*3.75 + 1000*6 + 100*15',
       c('test-tiered', 5000, 100, 500, 4000, 1000), 0.0204
UNION ALL
SELECT 'reasoning at the output rate: 100*3 + 1000*15', c('test-tiered', 100, 1000, r => 800), 0.0153
UNION ALL
SELECT 'reasoning rate: 100*0.3 + 200*2.5 + 800*3.5', c('test-reasoning', 100, 1000, r => 800), 0.00333
UNION ALL
SELECT 'at the tier threshold: 200000*3 + 1000*15', c('test-tiered', 200000, 1000), 0.615
UNION ALL
SELECT 'above it, whole call at tier rates: 200000*6 + 50000*0.6 + 1000*22.5',
       c('test-tiered', 250000, 1000, 50000), 1.2525
UNION ALL
SELECT 'tier cache writes: 1000*6 + 199001*7.5 + 1*22.5',
       c('test-tiered', 200001, 1, cw => 199001), 1.49853
UNION ALL
SELECT 'tier 1-hour cache writes: 1000*6 + 99001*7.5 + 100000*12 + 1*22.5',
       c('test-tiered', 200001, 1, cw => 199001, cw1h => 100000), 1.948530
UNION ALL
SELECT 'per request and per image: 0.01 + 3*0.002', c('test-per-call', 10, 10, img => 3), 0.016
UNION ALL
SELECT 'embedding without output count: 1000*0.02', c('test-embedding', 1000, NULL), 0.00002
UNION ALL
SELECT 'no input count: not priced', c('test-tiered', NULL, 10), NULL
UNION ALL
SELECT 'no output count where output is priced', c('test-tiered', 10, NULL), NULL;

-- Exact to the last digit: a million calls sum without drift
SELECT sum(llmgw.cost(p, 7, 3)) AS million_calls,
       1000000 * (7 * 0.3 + 3 * 2.5) / 1000000 AS expected
  FROM llmgw.prices p, generate_series(1, 1000000)
 WHERE p.id = (llmgw.price_at('{test-reasoning}', now())).id;

-- Price history: a call before and after a price change
SELECT llmgw.create_model('priced', 'mock', 'priced-model');
SELECT llmgw.set_price('priced-model', input => 1, output => 2,
                       valid_from => now() - interval '1 hour') AS first_price \gset
SELECT llm_complete('before the change', 'priced');
SELECT llmgw.set_price('priced-model', input => 10, output => 20) AS second_price \gset
SELECT llm_complete('after the change', 'priced');
SELECT u.input_tokens, u.output_tokens, u.price_id = :first_price AS first,
       u.price_id = :second_price AS second, u.cost, u.currency, u.unpriced
  FROM llmgw.usage u WHERE u.model = 'priced' ORDER BY u.id;
-- the first row stays as it was; the second is in force from its valid_from on
SELECT p.model, p.input, p.output, p.valid_to, p.source,
       p.id IN (SELECT n.id FROM llmgw.prices_now n) AS in_force
  FROM llmgw.prices p WHERE p.model = 'priced-model' ORDER BY p.id;
-- history is never rewritten
SELECT regexp_replace(try($$UPDATE llmgw.prices SET input = 0 WHERE model = 'priced-model'$$),
                      'row \d+', 'row N') AS rewrite;
SELECT try($$DELETE FROM llmgw.prices WHERE model = 'priced-model'$$);
SELECT regexp_replace(try($$SELECT llmgw.set_price('priced-model', 1, 1,
                                                  valid_from => now() - interval '2 hours')$$),
                      'from .*, which is not before .*', 'from <t1>, which is not before <t2>')
       AS older_than_current;

-- A call whose model has no price is recorded with a NULL cost and flagged
SELECT llm_complete('no price', 'demo');
SELECT model, status, cost, price_id, unpriced FROM llmgw.usage ORDER BY id DESC LIMIT 1;

-- Usage rows are a ledger: written once, never changed
SELECT try($$UPDATE llmgw.usage SET cost = 0$$);
SELECT try($$DELETE FROM llmgw.usage$$);

SELECT try($$SELECT llmgw.import_prices('[1, 2]')$$);

-- A price may be ended (a model no longer priced), once, except a seed row;
-- prices in force at a time come from the latest row started by then
SELECT llmgw.set_price('retired-model', 1, 1, valid_from => now() - interval '1 day') AS retired \gset
UPDATE llmgw.prices SET valid_to = now() - interval '1 hour' WHERE id = :retired;
SELECT count(*) AS retired_now FROM llmgw.prices_now WHERE model = 'retired-model';
SELECT (llmgw.price_at('{retired-model}', now() - interval '2 hours')).id = :retired AS before_end,
       (llmgw.price_at('{retired-model}', now())).id IS NULL AS after_end;
SELECT regexp_replace(try($$UPDATE llmgw.prices SET valid_to = now() WHERE model = 'gpt-4o' AND source = 'seed'$$),
                      'row \d+', 'row N') AS seed_row;
