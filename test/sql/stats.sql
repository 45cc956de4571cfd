-- llmgw.stats() shows the configured workers and the server life;
-- llmgw.calls_in_flight is a view for admin and finance.
SELECT workers_configured, life_started_at IS NOT NULL AS has_life,
       life_started_at > pg_postmaster_start_time() - interval '1 minute' AS this_life,
       life_started_at <= now() AS started
  FROM llmgw.stats();
SELECT c.relkind FROM pg_class c WHERE c.oid = 'llmgw.calls_in_flight'::regclass;
SELECT r AS role, has_table_privilege(r, 'llmgw.calls_in_flight', 'SELECT') AS may_read,
       has_function_privilege(r, 'llmgw.stats()', 'EXECUTE') AS may_stats
  FROM unnest(ARRAY['llmgw_admin', 'llmgw_finance', 'llmgw_user']) r;
-- nothing in flight now
SELECT count(*) AS in_flight FROM llmgw.calls_in_flight;
-- and they really read it (the view calls the journal's reader with their rights)
CREATE ROLE regress_stats_finance IN ROLE llmgw_finance;
SET ROLE regress_stats_finance;
SELECT count(*) AS finance_reads FROM llmgw.calls_in_flight;
RESET ROLE;
DROP ROLE regress_stats_finance;
-- a plain caller may do neither
CREATE ROLE regress_stats IN ROLE llmgw_user;
SET ROLE regress_stats;
SELECT try('SELECT * FROM llmgw.calls_in_flight');
SELECT try('SELECT * FROM llmgw.stats()');
RESET ROLE;
DROP ROLE regress_stats;
