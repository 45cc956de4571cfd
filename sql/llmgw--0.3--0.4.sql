/* llmgw--0.3--0.4.sql: provider batches grown up (docs/batch.md), the last of "see it" (docs/metrics.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.4'" to load this file. \quit

-- A fresh install of 0.4 is llmgw--0.3.sql followed by this file (there is no
-- llmgw--0.4.sql): CREATE EXTENSION takes that path by itself, so the fresh
-- schema and the updated one are made by the same statements.

-- ==== Span export in the metrics (docs/metrics.md, docs/tracing.md) ====
-- The spans exported, dropped and failed (llmgw.otel_stats()) become
-- metric families of their own, among the counters of shared memory.
-- The metric families: name, Prometheus type and help, in the order
-- llmgw.metrics() shows them
CREATE OR REPLACE FUNCTION llmgw.metric_families(OUT family text, OUT type text, OUT help text)
RETURNS SETOF record
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT * FROM (VALUES
  ('llmgw_calls_total', 'counter',
   'Usage rows by model, deployment (provider, upstream_model), status and error class: provider attempts, and answers from the cache (no deployment)'),
  ('llmgw_tokens_total', 'counter',
   'Tokens of the usage rows by model, deployment and bucket (input, output, cached_input, cache_write, reasoning); counts a provider did not report add nothing'),
  ('llmgw_cost_total', 'counter',
   'Cost of the usage rows by team, model and currency, in units of the currency'),
  ('llmgw_unpriced_calls_total', 'counter',
   'Usage rows that could not be priced (cost NULL), by model and deployment'),
  ('llmgw_cache_hits_total', 'counter',
   'Calls answered from the response cache, by model'),
  ('llmgw_fallbacks_total', 'counter',
   'Attempts on a fallback deployment, by model, the deployment fallen back from and the one tried'),
  ('llmgw_latency_seconds', 'histogram',
   'Latency of the successful provider attempts of each deployment since the server started'),
  ('llmgw_deployment_in_flight', 'gauge',
   'Attempts in flight on each deployment'),
  ('llmgw_deployment_cooling_down', 'gauge',
   '1 while a deployment is out of routing after failures (cooling down, or waiting for its probe), else 0'),
  ('llmgw_queue_depth', 'gauge',
   'Calls waiting in the queue for a worker'),
  ('llmgw_calls_in_flight', 'gauge',
   'Calls a worker holds: in a transfer, waiting for a retry, the cache or their team''s share'),
  ('llmgw_queue_size', 'gauge',
   'Request slots (llmgw.queue_size)'),
  ('llmgw_requests_total', 'counter',
   'Calls submitted since the server started: from SQL, the front door and asynchronous calls'),
  ('llmgw_workers_running', 'gauge',
   'llmgw workers running'),
  ('llmgw_workers_configured', 'gauge',
   'llmgw workers configured (llmgw.workers)'),
  ('llmgw_worker_restarts_total', 'counter',
   'Times each worker was started again since the server started (after an exit or an error)'),
  ('llmgw_life_start_time_seconds', 'gauge',
   'When this server life began (a start or a crash restart), in seconds since the Unix epoch; the counters of shared memory start from zero then'),
  ('llmgw_fair_share_waiting', 'gauge',
   'Callers sleeping now because their role or key holds its whole share of the request slots'),
  ('llmgw_fair_share_waits_total', 'counter',
   'Sleeps of callers waiting for room in their share (each ends when a slot is given back, or after a second)'),
  ('llmgw_fair_share_wait_seconds_total', 'counter',
   'Seconds callers slept waiting for room in their share'),
  ('llmgw_refusals_total', 'counter',
   'Calls refused before any provider was called (they leave no usage row), by reason and scope'),
  ('llmgw_otel_spans_exported_total', 'counter',
   'OpenTelemetry spans the collector accepted (llmgw.otel_endpoint)'),
  ('llmgw_otel_spans_dropped_total', 'counter',
   'OpenTelemetry spans dropped before export: a worker''s queue was full (llmgw.otel_max_queue) or the export was turned off'),
  ('llmgw_otel_spans_failed_total', 'counter',
   'OpenTelemetry spans lost in exports that failed or that the collector rejected'),
  ('llmgw_budget_limit', 'gauge',
   'Limit of each budget per period, in units of its currency'),
  ('llmgw_budget_spent', 'gauge',
   'Spend of each budget in its current period, as the workers enforce it (llmgw.budget_status.ledger_spent)'),
  ('llmgw_budget_reserved', 'gauge',
   'Worst-case cost of the calls in flight reserved on each budget'),
  ('llmgw_budget_remaining', 'gauge',
   'What each budget has left this period after its spend (as the workers enforce it) and reservations')
) AS f(family, type, help)
$$;

COMMENT ON FUNCTION llmgw.gateway_counters() IS 'The metrics kept in shared memory since this server life began: queue, workers, fair share, refused calls, span export (labels as name, value pairs)';
-- ==== Batches at Anthropic, Gemini and Azure (docs/batch.md) ====
-- Each provider's Batch API has its own limits (OpenAI and Azure 50,000
-- requests and 200 MB, Anthropic 100,000 requests or 256 MB, Gemini's
-- inline requests 20 MB).  Worker 0 learns which provider a batch goes to
-- when it builds it: a batch beyond that provider's limits is split then,
-- before anything is sent, by moving its last items to a new batch of the
-- same job.

-- Internal (worker 0): move the items named (still pending, of a batch
-- not sent yet) to a new batch of the same job, owner and model; returns
-- the new batch's id (NULL when the batch was already sent)
CREATE FUNCTION llmgw.batch_split(batch bigint, moved text[]) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bt llmgw.batches;
    nb bigint;
    n integer;
BEGIN
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND OR bt.state <> 'queued' OR cardinality(moved) IS NULL
       OR cardinality(moved) >= bt.requests THEN
        RETURN NULL;
    END IF;
    INSERT INTO llmgw.batches (job_id, owner, model, requests, cancel_requested)
    VALUES (bt.job_id, bt.owner, bt.model, cardinality(moved), bt.cancel_requested)
    RETURNING id INTO nb;
    UPDATE llmgw.batch_items i SET batch_id = nb
     WHERE i.batch_id = batch AND i.custom_id = ANY (moved) AND i.state = 'pending';
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n = 0 THEN
        DELETE FROM llmgw.batches b WHERE b.id = nb;
        RETURN NULL;
    END IF;
    UPDATE llmgw.batches b SET requests = b.requests - n WHERE b.id = batch;
    UPDATE llmgw.batches b SET requests = n WHERE b.id = nb;
    RETURN nb;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_split(bigint, text[]) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_split(bigint, text[]) IS 'Internal (worker 0): move items of a batch not sent yet to a new batch of the same job (a provider''s limits)';
COMMENT ON COLUMN llmgw.batches.state IS 'queued, submitting (file uploaded; Anthropic, Gemini: the create may have been sent), validating, in_progress, finalizing, cancelling, ingesting (results being written), then completed, failed, expired or cancelled';
COMMENT ON COLUMN llmgw.batches.provider_status IS 'The status the provider last reported, in OpenAI''s words (validating, in_progress, finalizing, cancelling, completed, expired, cancelled, failed)';
COMMENT ON COLUMN llmgw.batches.output_file_id IS 'The provider''s id of the results file (Anthropic, Gemini: the batch whose results are fetched)';
COMMENT ON COLUMN llmgw.batch_items.answer IS 'The provider''s chat.completion, normalised to OpenAI''s for other providers (batches without a job only)';
