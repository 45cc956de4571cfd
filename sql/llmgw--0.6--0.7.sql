/* llmgw--0.6--0.7.sql: what changed after 0.6 (each section names its doc) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.7'" to load this file. \quit

-- A fresh install of 0.7 is llmgw--0.3.sql followed by the updates from
-- 0.3 to 0.7 (there is no llmgw--0.7.sql): CREATE EXTENSION takes that
-- path by itself, so the fresh schema and the updated one are made by the
-- same statements.

-- ==== The price rule in one place (docs/money.md) ====
-- llmgw.cost is computed by the library (src/cost.c), operation for
-- operation as the SQL body it replaces (the same numeric functions in the
-- same order, the same NULLs): the workers price the usage rows they write
-- with the same code, without a statement per row.
CREATE OR REPLACE FUNCTION llmgw.cost(
    p llmgw.prices,
    input_tokens bigint,
    output_tokens bigint,
    cached_input_tokens bigint DEFAULT NULL,
    cache_write_tokens bigint DEFAULT NULL,
    cache_write_1h_tokens bigint DEFAULT NULL,
    reasoning_tokens bigint DEFAULT NULL,
    images integer DEFAULT NULL)
RETURNS numeric
AS 'MODULE_PATHNAME', 'llmgw_cost_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION llmgw.cost(llmgw.prices, bigint, bigint, bigint, bigint, bigint, bigint, integer) IS 'The exact cost of token counts at a price row (input includes cached input and cache writes, output includes reasoning; above the tier threshold the whole call at the tier rates; NULL when a count the rule needs is missing)';
