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
-- ==== Batch ingest speed (docs/batch.md) ====
-- llmgw.batch_ingest parsed each result line again for every pending item
-- of the batch (a nested loop over the lines' jsonb cast: quadratic, 100
-- rows/s on a 10,000-row batch) and matched the job's rows by key::text,
-- which no index serves: now each line is parsed once, looked up by
-- batch_items' primary key, and its row found by the key in its own type.
CREATE OR REPLACE FUNCTION llmgw.batch_ingest(batch bigint, lines text[]) RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bt llmgw.batches;
    j llmgw.jobs;
    bp llmgw.prices;
    team bigint;
    kind text;
    keys text[];
    answers text[];
    written text[] := '{}';
    n integer;
    nfailed integer;
BEGIN
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT * INTO j FROM llmgw.jobs WHERE jobs.id = bt.job_id;
    bp := llmgw.batch_price((SELECT p FROM llmgw.prices p WHERE p.id = bt.price_id));
    SELECT rb.team_id INTO team FROM llmgw.role_bindings rb WHERE rb.role_name = bt.owner;
    SELECT pr.kind INTO kind FROM llmgw.providers pr WHERE pr.name = bt.provider;

    -- each line parsed once (materialized), each looked up by the primary
    -- key of batch_items: the lateral subquery, fenced by OFFSET 0, is not
    -- flattened into a join that parses the lines again per item, and the
    -- state is tested outside it, so that the partial index of pending
    -- items (a scan of them all per line) is never chosen
    WITH p AS MATERIALIZED (
        SELECT s::jsonb AS v FROM unnest(lines) s),
    l AS (
        SELECT p.v, p.v ->> 'custom_id' AS cid FROM p WHERE jsonb_typeof(p.v) = 'object'),
    r AS (
        SELECT i.custom_id, i.row_key, i.attempt, pg_catalog.gen_random_uuid() AS rid,
               (l.v -> 'response' ->> 'status_code')::integer AS http_status,
               l.v -> 'response' -> 'body' AS body, l.v -> 'error' AS err,
               CASE WHEN (l.v -> 'response' ->> 'status_code') = '200'
                         AND jsonb_typeof(l.v -> 'response' -> 'body' -> 'choices' -> 0 -> 'message' -> 'content') = 'string'
                        THEN 'done'
                    WHEN l.v -> 'error' ->> 'code' = 'batch_expired' THEN 'expired'
                    WHEN l.v -> 'error' ->> 'code' = 'batch_cancelled' THEN 'cancelled'
                    ELSE 'failed' END AS item_state
          FROM l CROSS JOIN LATERAL (
                SELECT i.custom_id, i.row_key, i.attempt, i.state FROM llmgw.batch_items i
                 WHERE i.batch_id = batch AND i.custom_id = l.cid
                OFFSET 0) i
         WHERE i.state = 'pending'),
    t AS (
        SELECT r.*,
               CASE WHEN r.item_state = 'done' THEN r.body -> 'choices' -> 0 -> 'message' ->> 'content' END AS answer,
               (r.body -> 'usage' ->> 'prompt_tokens')::bigint AS i_tok,
               (r.body -> 'usage' ->> 'completion_tokens')::bigint AS o_tok,
               (r.body -> 'usage' -> 'prompt_tokens_details' ->> 'cached_tokens')::bigint AS c_tok,
               (r.body -> 'usage' -> 'completion_tokens_details' ->> 'reasoning_tokens')::bigint AS r_tok,
               CASE r.item_state
                    WHEN 'done' THEN NULL
                    WHEN 'expired' THEN 'expired'
                    WHEN 'cancelled' THEN 'cancelled'
                    ELSE CASE WHEN r.body -> 'error' ->> 'code' = 'context_length_exceeded' THEN 'context_length'
                              WHEN r.body -> 'error' ->> 'code' = 'content_filter' THEN 'content_filter'
                              WHEN r.http_status = 429 THEN 'rate_limit'
                              WHEN r.http_status >= 500 THEN 'server'
                              WHEN r.http_status IN (401, 403) THEN 'auth'
                              WHEN r.http_status = 404 THEN 'model_not_found'
                              WHEN r.http_status IS NULL THEN 'malformed_response'
                              ELSE 'invalid_request' END END AS error_class,
               coalesce(r.body -> 'error' ->> 'message', r.err ->> 'message',
                        CASE WHEN r.item_state = 'failed' THEN 'the provider''s result could not be read' END) AS error
          FROM r),
    u AS (
        INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, team_id, model, provider,
                                 upstream_model, status, error_class, http_status, input_tokens,
                                 output_tokens, cached_input_tokens, reasoning_tokens, usage_source,
                                 price_id, cost, currency, unpriced, job_id, batch_id, tags)
        SELECT t.rid, t.attempt, coalesce(bt.submitted_at, bt.created_at), bt.owner, team, bt.model,
               bt.provider, bt.upstream_model,
               CASE t.item_state WHEN 'done' THEN 'ok' WHEN 'cancelled' THEN 'cancelled' ELSE 'error' END,
               t.error_class, t.http_status, t.i_tok, t.o_tok, t.c_tok, t.r_tok,
               CASE WHEN t.i_tok IS NOT NULL THEN 'provider' END,
               bp.id, c.cost, bp.currency,
               t.item_state = 'done' AND c.cost IS NULL, bt.job_id, bt.id,
               jsonb_build_object('batch', bt.provider_batch_id, 'custom_id', t.custom_id)
          FROM t CROSS JOIN LATERAL (SELECT llmgw.cost(bp, t.i_tok, t.o_tok, t.c_tok, NULL, NULL, t.r_tok) AS cost) c
        RETURNING 1),
    w AS (
        UPDATE llmgw.batch_items i
           SET state = t.item_state, request_id = t.rid, error = t.error,
               answer = CASE WHEN bt.job_id IS NULL THEN t.body END
          FROM t
         WHERE i.batch_id = batch AND i.custom_id = t.custom_id
        RETURNING i.row_key, t.answer, t.item_state)
    SELECT coalesce(array_agg(w.row_key) FILTER (WHERE w.item_state = 'done'), '{}'),
           coalesce(array_agg(w.answer) FILTER (WHERE w.item_state = 'done'), '{}'),
           count(*), count(*) FILTER (WHERE w.item_state = 'failed')
      INTO keys, answers, n, nfailed
      FROM w;

    IF j.id IS NOT NULL AND cardinality(keys) > 0 THEN
        -- the answers go in with the owner's rights (privileges, row-level
        -- security) and the default search_path (for the table's triggers),
        -- into rows still without one
        PERFORM set_config('role', bt.owner, true);
        PERFORM set_config('search_path', '"$user", public', true);
        -- the key compared in its own type (the table's index on it is
        -- used) and as text (the key as enrich wrote it)
        EXECUTE format('WITH w AS (UPDATE %s t SET %I = a.answer FROM unnest($1, $2) a(k, answer)
                                    WHERE t.%I = a.k::%s AND t.%I::text = a.k AND t.%I IS NULL
                                    RETURNING a.k)
                        SELECT coalesce(array_agg(k), ''{}'') FROM w',
                       j.source, j.output_column, j.key_column,
                       coalesce((SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
                                  WHERE a.attrelid = j.source::regclass AND a.attname = j.key_column
                                    AND NOT a.attisdropped), 'text'),
                       j.key_column, j.output_column)
            INTO written USING keys, answers;
        PERFORM set_config('role', 'none', true);
        PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
        IF cardinality(written) < cardinality(keys) THEN
            UPDATE llmgw.batch_items i
               SET state = 'failed', error = 'the answer could not be written into ' || j.source
             WHERE i.batch_id = batch AND i.state = 'done'
               AND i.row_key IN (SELECT unnest(keys) EXCEPT SELECT unnest(written));
            nfailed := nfailed + cardinality(keys) - cardinality(written);
        END IF;
    END IF;
    IF j.id IS NOT NULL THEN
        UPDATE llmgw.jobs
           SET rows_done = rows_done + cardinality(written), rows_failed = rows_failed + nfailed,
               updated_at = clock_timestamp()
         WHERE jobs.id = j.id;
    END IF;
    RETURN n;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_ingest(bigint, text[]) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_ingest(bigint, text[]) IS 'Internal (worker 0): write a chunk of a batch''s results, each item once with its usage row';

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
