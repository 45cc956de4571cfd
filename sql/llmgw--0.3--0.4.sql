/* llmgw--0.3--0.4.sql: provider batches grown up (docs/batch.md), the last of "see it" (docs/metrics.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.4'" to load this file. \quit

-- A fresh install of 0.4 is llmgw--0.3.sql followed by this file (there is no
-- llmgw--0.4.sql): CREATE EXTENSION takes that path by itself, so the fresh
-- schema and the updated one are made by the same statements.
