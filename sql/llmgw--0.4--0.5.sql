/* llmgw--0.4--0.5.sql: what changed after 0.4 (each section names its doc) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.5'" to load this file. \quit

-- A fresh install of 0.5 is llmgw--0.3.sql followed by llmgw--0.3--0.4.sql
-- and this file (there is no llmgw--0.4.sql or llmgw--0.5.sql): CREATE
-- EXTENSION takes that path by itself, so the fresh schema and the updated
-- one are made by the same statements.
