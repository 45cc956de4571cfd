/* llmgw--0.5--0.6.sql: what changed after 0.5 (each section names its doc) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.6'" to load this file. \quit

-- A fresh install of 0.6 is llmgw--0.3.sql followed by llmgw--0.3--0.4.sql,
-- llmgw--0.4--0.5.sql and this file (there is no llmgw--0.4.sql, 0.5 or
-- 0.6 script): CREATE EXTENSION takes that path by itself, so the fresh
-- schema and the updated one are made by the same statements.
