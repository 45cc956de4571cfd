-- Prices from LiteLLM's price list of the corpus (../shared/corpus): runs only
-- when the corpus is there (test/scripts/test.sh leaves it out otherwise).
-- LiteLLM's price list (../shared/corpus), imported whole, then again
\set prices `cat "$LLMGW_CORPUS/model_prices_and_context_window.json"`
SELECT llmgw.import_prices(:'prices'::jsonb) > 2000 AS imported;
SELECT llmgw.import_prices(:'prices'::jsonb) AS imported_again;
SELECT model, input, cached_input, cache_write_5m, cache_write_1h, output, reasoning,
       tier_threshold, tier_input, tier_cached_input, tier_output, batch_input, batch_output,
       max_output_tokens
  FROM llmgw.prices_now
 WHERE model IN ('gpt-4o', 'claude-sonnet-4-5', 'claude-haiku-4-5',
                                      'gemini/gemini-2.5-pro', 'gemini/gemini-2.5-flash',
                                      'deepseek/deepseek-chat', 'text-embedding-3-small')
 ORDER BY model;
-- the recorded Anthropic cache-write call of the corpus, priced at claude-sonnet-4-5:
-- 8 input, 4167 written for 5 minutes, 0 read, 204 output (anthropic-messages-cache-write)
SELECT llmgw.cost(llmgw.price_at('{claude-sonnet-4-5}', now()), 4175, 204, 0, 4167, 0)
           AS cache_write_call,
       (8 * 3 + 4167 * 3.75 + 204 * 15) / 1000000.0 AS expected;
-- above 200k input tokens, 1-hour cache writes are priced at their own tier rate
-- (cache_creation_input_token_cost_above_1hr_above_200k_tokens)
SELECT tier_cache_write_1h FROM llmgw.prices_now WHERE model = 'claude-sonnet-4-5';
-- 300k input of which 100k written for 1 hour: all at the tier rates
SELECT llmgw.cost(llmgw.price_at('{claude-sonnet-4-5}', now()), 300000, 1000, 0, 100000, 100000)
           AS above_tier_1h,
       (200000 * 6 + 100000 * 12 + 1000 * 22.5) / 1000000.0 AS expected;
