/* llmgw--0.2--0.3.sql: see it (docs/observability.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.3'" to load this file. \quit
