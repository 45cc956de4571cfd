-- OpenTelemetry span export (docs/tracing.md): off in this cluster, so no
-- span is built, queued or counted; the settings are for postgresql.conf
-- only, checked when set; llmgw.otel_stats() is for admin and finance.
-- (test/t/022_otel.pl exports to a collector.)
SELECT * FROM llmgw.otel_stats();
-- a call with export off leaves nothing to count
SELECT llm_complete('otel is off', 'demo') IS NOT NULL AS answered;
SELECT enabled, spans_queued + spans_exported + spans_dropped + spans_failed + exports
       + export_failures AS anything FROM llmgw.otel_stats();

SELECT name, setting, unit, context, boot_val
  FROM pg_settings WHERE name LIKE 'llmgw.otel%' ORDER BY name;

-- reload settings: not in a session, not even a superuser's
SELECT try($$SET llmgw.otel_endpoint = 'http://127.0.0.1:4318'$$);
SELECT try($$SET llmgw.otel_max_queue = 10$$);
SELECT try($$SELECT set_config('llmgw.otel_service_name', 'x', false)$$);

-- values refused when written (ALTER SYSTEM checks them as a reload would;
-- nothing is written to postgresql.auto.conf)
ALTER SYSTEM SET llmgw.otel_endpoint = 'ftp://user:pw@collector:4318';
ALTER SYSTEM SET llmgw.otel_endpoint = 'http://collector:4318/ x';
ALTER SYSTEM SET llmgw.otel_endpoint = E'http://collector:4318\r\nX-Injected: 1';
ALTER SYSTEM SET llmgw.otel_service_name = '';
ALTER SYSTEM SET llmgw.otel_service_name = E'llmgw\nsecond line';
ALTER SYSTEM SET llmgw.otel_max_queue = 0;
ALTER SYSTEM SET llmgw.otel_timeout = '50ms';
ALTER SYSTEM SET llmgw.otel_timeout = '2min';

-- who may read the counters and the endpoint
SELECT r AS role, has_function_privilege(r, 'llmgw.otel_stats()', 'EXECUTE') AS may_stats
  FROM unnest(ARRAY['llmgw_admin', 'llmgw_finance', 'llmgw_user']) r;
CREATE ROLE regress_otel_user IN ROLE llmgw_user;
CREATE ROLE regress_otel_finance IN ROLE llmgw_finance;
SET ROLE regress_otel_user;
SELECT try('SELECT * FROM llmgw.otel_stats()');
SELECT try('SHOW llmgw.otel_endpoint');
SHOW llmgw.otel_service_name;
RESET ROLE;
SET ROLE regress_otel_finance;
SELECT enabled FROM llmgw.otel_stats();
SELECT try('SHOW llmgw.otel_endpoint');
RESET ROLE;
DROP ROLE regress_otel_user;
DROP ROLE regress_otel_finance;
