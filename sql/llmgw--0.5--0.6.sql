/* llmgw--0.5--0.6.sql: what changed after 0.5 (each section names its doc) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.6'" to load this file. \quit

-- A fresh install of 0.6 is llmgw--0.3.sql followed by llmgw--0.3--0.4.sql,
-- llmgw--0.4--0.5.sql and this file (there is no llmgw--0.4.sql, 0.5 or
-- 0.6 script): CREATE EXTENSION takes that path by itself, so the fresh
-- schema and the updated one are made by the same statements.

-- ==== Asynchronous calls held by a worker are not taken again (docs/failures.md) ====
-- A call a request slot holds is never taken again, however long its
-- provider takes (a synchronous retry of a batch is one): the lease only
-- bounds a call no worker holds any more.
COMMENT ON COLUMN llmgw.async_calls.lease_until IS 'Once this is past, worker 0 takes the call again if no worker of this server life holds it (llmgw.async_lease); a call a worker holds is never taken again (NULL: not taken)';
