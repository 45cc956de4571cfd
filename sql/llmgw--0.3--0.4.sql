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

COMMENT ON COLUMN llmgw.batches.state IS 'queued, submitting (file uploaded; Anthropic, Gemini: the create may have been sent), validating, in_progress, finalizing, cancelling, ingesting (results being written), then completed, failed, expired or cancelled';
COMMENT ON COLUMN llmgw.batches.provider_status IS 'The status the provider last reported, in OpenAI''s words (validating, in_progress, finalizing, cancelling, completed, expired, cancelled, failed)';
COMMENT ON COLUMN llmgw.batches.output_file_id IS 'The provider''s id of the results file (Anthropic, Gemini: the batch whose results are fetched)';
COMMENT ON COLUMN llmgw.batch_items.answer IS 'The provider''s chat.completion, normalised to OpenAI''s for other providers (batches without a job only)';

-- ==== Batch budgets, retries and embeddings (docs/batch.md) ====
-- A provider batch reserves the worst case of its items on the hard
-- budgets of its caller when it is queued (the largest prefix that fits),
-- and each item gives its reservation back and charges its cost in the
-- transaction that writes its usage row.  The reservations are rows
-- (batch_items.reserved of items still pending): they survive restarts,
-- and the workers load them into the ledger with the spend.  Expired items
-- (and items failed by a rate limit or a server error) of a job are sent
-- again in a later batch; embeddings go through batches too.

ALTER TABLE llmgw.batches
    ADD COLUMN endpoint text NOT NULL DEFAULT 'chat'
        CONSTRAINT batches_endpoint_check CHECK (endpoint IN ('chat', 'embeddings')),
    ADD COLUMN key_id bigint,
    ADD COLUMN team_id bigint,
    ADD COLUMN charged_on bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN reserved_on bigint[] NOT NULL DEFAULT '{}';
COMMENT ON COLUMN llmgw.batches.endpoint IS 'chat (/v1/chat/completions) or embeddings (/v1/embeddings)';
COMMENT ON COLUMN llmgw.batches.key_id IS 'The virtual key the submitter presented (NULL: none); its items'' usage rows carry it';
COMMENT ON COLUMN llmgw.batches.team_id IS 'The team it was submitted as (the key''s, else the role binding''s; NULL: none)';
COMMENT ON COLUMN llmgw.batches.charged_on IS 'The budgets its items count against (key, team, role, model, global; in the price''s currency), as for a synchronous call of the submitter';
COMMENT ON COLUMN llmgw.batches.reserved_on IS 'The hard budgets among them, on which its pending items reserve their worst case';

ALTER TABLE llmgw.batch_items
    ADD COLUMN reserved numeric NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    ADD COLUMN error_class text,
    ADD COLUMN retried_in bigint;
COMMENT ON COLUMN llmgw.batch_items.reserved IS 'Its worst-case cost at the batch rates, reserved on the batch''s hard budgets while it is pending (0: no hard budget)';
COMMENT ON COLUMN llmgw.batch_items.error_class IS 'The error class of its usage row (expired, rate_limit, server, invalid_request, ...; NULL: answered)';
COMMENT ON COLUMN llmgw.batch_items.retried_in IS 'The batch that sent it again (its job''s retry option), where it has the same custom_id and the next attempt';
CREATE INDEX batch_items_reserved_idx ON llmgw.batch_items (batch_id)
    WHERE state = 'pending' AND reserved > 0;

ALTER TABLE llmgw.jobs
    ADD COLUMN retry text NOT NULL DEFAULT 'batch'
        CONSTRAINT jobs_retry_check CHECK (retry IN ('batch', 'none')),
    ADD COLUMN rows_held bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN llmgw.jobs.retry IS 'Batch jobs: batch (expired items, and items failed by a rate limit or a server error, go again in a later batch, at most 3 attempts) or none';
COMMENT ON COLUMN llmgw.jobs.rows_held IS 'Batch jobs: rows left unsubmitted because a hard budget had no room for their worst case (they stay NULL; CALL llmgw.enrich again resumes them)';

-- The session's virtual key, hashed (NULL: none); llmgw.require_key holds
CREATE FUNCTION llmgw.session_key_hash() RETURNS bytea
AS 'MODULE_PATHNAME', 'llmgw_session_key_hash'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION llmgw.session_key_hash() FROM PUBLIC;
COMMENT ON FUNCTION llmgw.session_key_hash() IS 'Internal: sha256 of the session''s virtual key (NULL: none), for llmgw.submit_batch; the extension owner only';

-- Internal: reserve batch worst cases on the ledger (the largest prefix
-- that fits), and give them back and charge costs as items are written
CREATE FUNCTION llmgw.budget_batch_reserve(budget_ids bigint[], limits bigint[], spent bigint[],
                                           batch_reserved bigint[], costs bigint[],
                                           OUT queued integer, OUT limited_by bigint,
                                           OUT limited_spent numeric, OUT limited_reserved numeric)
AS 'MODULE_PATHNAME', 'llmgw_budget_batch_reserve'
LANGUAGE C STRICT VOLATILE;
CREATE FUNCTION llmgw.budget_batch_settle(charged_on bigint[], reserved_on bigint[], released bigint,
                                          charged bigint, started_at timestamptz)
RETURNS void
AS 'MODULE_PATHNAME', 'llmgw_budget_batch_settle'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION llmgw.budget_batch_reserve(bigint[], bigint[], bigint[], bigint[], bigint[]),
    llmgw.budget_batch_settle(bigint[], bigint[], bigint, bigint, timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.budget_batch_reserve(bigint[], bigint[], bigint[], bigint[], bigint[]) IS 'Internal: reserve on the ledger the worst cases (1e-10 units) of the longest prefix of a batch''s items that fits under every hard budget given';
COMMENT ON FUNCTION llmgw.budget_batch_settle(bigint[], bigint[], bigint, bigint, timestamptz) IS 'Internal: give back batch reservations and charge batch costs (1e-10 units) on the ledger';

-- What the pending items of batches reserve on a budget now
CREATE FUNCTION llmgw.budget_batch_reserved(b llmgw.budgets) RETURNS numeric
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(sum(i.reserved), 0)
  FROM llmgw.batches bt
  JOIN llmgw.batch_items i ON i.batch_id = bt.id AND i.state = 'pending' AND i.reserved > 0
 WHERE bt.state NOT IN ('completed', 'failed', 'expired', 'cancelled')
   AND b.id = ANY (bt.reserved_on)
$$;
REVOKE ALL ON FUNCTION llmgw.budget_batch_reserved(llmgw.budgets) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.budget_batch_reserved(llmgw.budgets) TO llmgw_admin, llmgw_finance;
COMMENT ON FUNCTION llmgw.budget_batch_reserved(llmgw.budgets) IS 'What the items of provider batches not answered yet reserve on a budget (their worst cases at the batch rates)';

-- The worst case of one request, as admission bounds a synchronous call:
-- every byte of the request an input token at the highest input rate, the
-- output bound at the highest output rate, and the per-request price.
-- NULL when the output is priced and has no bound.
CREATE FUNCTION llmgw.worst_case_cost(p llmgw.prices, request_bytes bigint, output_bound bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE
    WHEN p.id IS NULL THEN NULL
    WHEN output_bound IS NULL AND coalesce(greatest(p.output, p.tier_output, p.reasoning), 0) > 0 THEN NULL
    ELSE trim_scale(ceil((request_bytes * coalesce(greatest(p.input, p.tier_input, p.cached_input,
                                                   p.tier_cached_input, p.cache_write_5m,
                                                   p.cache_write_1h, p.tier_cache_write_5m,
                                                   p.tier_cache_write_1h), 0)
                          + coalesce(output_bound, 0) * coalesce(greatest(p.output, p.tier_output,
                                                                          p.reasoning), 0)) * 10000
                         + coalesce(p.per_request, 0) * 10000000000) / 10000000000)
    END
$$;
REVOKE ALL ON FUNCTION llmgw.worst_case_cost(llmgw.prices, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.worst_case_cost(llmgw.prices, bigint, bigint) TO llmgw_admin, llmgw_finance, llmgw_user;
COMMENT ON FUNCTION llmgw.worst_case_cost(llmgw.prices, bigint, bigint) IS 'Worst-case cost of a request as admission reserves it: request bytes at the highest input rate, the output bound at the highest output rate, the per-request price (NULL: priced output without a bound)';

-- Internal: queue requests as one provider batch for owner (as key_id and
-- team_id), reserving their worst case on the hard budgets that apply: the
-- largest prefix that fits is queued, the rest is left (a NOTICE says so);
-- nothing fits: LG010.  Returns the batch and how many requests it holds.
CREATE FUNCTION llmgw.queue_batch(endpoint text, requests jsonb[], model text, job_id bigint,
                                  row_keys text[], owner name, key_id bigint, team_id bigint,
                                  custom_ids text[] DEFAULT NULL, attempts integer[] DEFAULT NULL,
                                  OUT batch_id bigint, OUT queued integer)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n integer := cardinality(requests);
    lineage bigint;
    cur text;
    charged bigint[];
    hard bigint[];
    costs numeric[];
    unbounded integer;
    unpriced text;
    r record;
    b llmgw.budgets;
    prices llmgw.prices[];
    deployments text[];
BEGIN
    SELECT k.lineage_id INTO lineage FROM llmgw.virtual_keys k WHERE k.id = queue_batch.key_id;
    -- the prices in force of the model's deployments, at the batch rates
    SELECT array_agg(llmgw.batch_price(llmgw.price_at(llmgw.price_names(pv.name, pv.kind,
                         d.upstream_model, d.price_model), now())) ORDER BY d.id),
           array_agg(d.provider || '/' || d.upstream_model ORDER BY d.id)
      INTO prices, deployments
      FROM llmgw.deployments d JOIN llmgw.providers pv ON pv.name = d.provider
     WHERE d.model = queue_batch.model;
    SELECT x.currency INTO cur FROM unnest(prices) x WHERE x.id IS NOT NULL ORDER BY x.id LIMIT 1;
    SELECT coalesce(array_agg(bg.id ORDER BY bg.id), '{}'),
           coalesce(array_agg(bg.id ORDER BY bg.id) FILTER (WHERE bg.enforcement = 'hard'), '{}')
      INTO charged, hard
      FROM llmgw.budgets bg
     WHERE bg.currency = coalesce(cur, 'USD')
       AND CASE bg.scope WHEN 'key' THEN bg.key_id = lineage
                         WHEN 'team' THEN bg.team_id = queue_batch.team_id
                         WHEN 'role' THEN bg.role_name = queue_batch.owner
                         WHEN 'model' THEN bg.model = queue_batch.model
                         ELSE true END;
    costs := array_fill(0::numeric, ARRAY[n]);
    IF cardinality(hard) > 0 THEN
        SELECT bg.* INTO b FROM llmgw.budgets bg WHERE bg.id = hard[1];
        -- a hard budget cannot bound a call without a price, nor one without an output bound
        SELECT deployments[o] INTO unpriced FROM generate_subscripts(prices, 1) o
         WHERE (prices[o]).id IS NULL LIMIT 1;
        IF unpriced IS NOT NULL OR prices IS NULL THEN
            RAISE EXCEPTION 'cannot enforce budget "%": deployment % of model "%" has no price',
                b.name, coalesce(unpriced, '(none)'), model
                USING ERRCODE = 'LG010',
                      HINT = 'Set its price with llmgw.set_price() or llmgw.import_prices().';
        END IF;
        SELECT array_agg(w.cost ORDER BY w.o), min(w.o) FILTER (WHERE w.cost IS NULL)
          INTO costs, unbounded
          FROM (SELECT u.o,
                       CASE WHEN bool_or(c.c IS NULL) THEN NULL ELSE max(c.c) END AS cost
                  FROM unnest(requests) WITH ORDINALITY u(r, o)
                 CROSS JOIN unnest(prices) x
                 CROSS JOIN LATERAL (SELECT llmgw.worst_case_cost(x, octet_length(u.r::text),
                        CASE WHEN endpoint = 'embeddings' THEN 0
                             ELSE coalesce(nullif(greatest(CASE WHEN jsonb_typeof(u.r -> 'max_tokens') = 'number' THEN (u.r ->> 'max_tokens')::numeric END,
                                                           CASE WHEN jsonb_typeof(u.r -> 'max_completion_tokens') = 'number' THEN (u.r ->> 'max_completion_tokens')::numeric END,
                                                           CASE WHEN jsonb_typeof(u.r -> 'max_output_tokens') = 'number' THEN (u.r ->> 'max_output_tokens')::numeric END), 0)::bigint,
                                           x.max_output_tokens::bigint) END) AS c) c
                 GROUP BY u.o) w;
        IF unbounded IS NOT NULL THEN
            RAISE EXCEPTION 'cannot enforce budget "%": request % of the batch has no output bound', b.name, unbounded
                USING ERRCODE = 'LG010',
                      HINT = 'Give max_tokens (llmgw.enrich: max_tokens =>), or set max_output_tokens in the model''s price.';
        END IF;
        -- before the ledger: a load of the ledger waits for this transaction
        LOCK TABLE llmgw.batch_items IN ROW EXCLUSIVE MODE;
        SELECT * INTO r FROM llmgw.budget_batch_reserve(hard,
            ARRAY(SELECT floor(least(bg.limit_amount, 900000000) * 10000000000)::int8
                    FROM unnest(hard) WITH ORDINALITY h(id, o) JOIN llmgw.budgets bg ON bg.id = h.id ORDER BY h.o),
            ARRAY(SELECT ceil(least(llmgw.budget_spent(bg), 900000000) * 10000000000)::int8
                    FROM unnest(hard) WITH ORDINALITY h(id, o) JOIN llmgw.budgets bg ON bg.id = h.id ORDER BY h.o),
            ARRAY(SELECT ceil(least(llmgw.budget_batch_reserved(bg), 900000000) * 10000000000)::int8
                    FROM unnest(hard) WITH ORDINALITY h(id, o) JOIN llmgw.budgets bg ON bg.id = h.id ORDER BY h.o),
            -- beyond any limit the ledger holds (900 million) is as good as infinite
            ARRAY(SELECT (least(c, 900000000) * 10000000000)::int8 FROM unnest(costs) c));
        queued := r.queued;
        IF queued < n THEN
            SELECT bg.* INTO b FROM llmgw.budgets bg WHERE bg.id = r.limited_by;
            IF queued = 0 THEN
                RAISE EXCEPTION 'budget "%" is exhausted', b.name
                    USING ERRCODE = 'LG010',
                          DETAIL = format('Spent %s of %s %s this %s, %s reserved by calls in flight and batches; the first request of the batch may cost up to %s.',
                                          round(r.limited_spent, 6), round(b.limit_amount, 6), b.currency,
                                          CASE b.period WHEN 'total' THEN 'budget''s lifetime' ELSE b.period END,
                                          round(r.limited_reserved, 6), round(costs[1], 6)),
                          HINT = CASE WHEN b.period = 'total' THEN 'The budget never resets; an llmgw_admin can raise its limit.'
                                      ELSE format('It resets at %s.', llmgw.period_end(b.period)) END;
            END IF;
            RAISE NOTICE 'only % of % requests fit under budget "%": the batch holds the first %', queued, n, b.name, queued
                USING DETAIL = format('Their worst case at the batch rates is reserved; the rest would pass the budget''s limit of %s %s.',
                                      b.limit_amount, b.currency);
        END IF;
    ELSE
        queued := n;
    END IF;

    INSERT INTO llmgw.batches (job_id, owner, model, requests, endpoint, key_id, team_id,
                               charged_on, reserved_on)
    VALUES (queue_batch.job_id, queue_batch.owner, queue_batch.model, queued, queue_batch.endpoint,
            queue_batch.key_id, queue_batch.team_id, charged, hard)
    RETURNING id INTO batch_id;
    INSERT INTO llmgw.batch_items (batch_id, custom_id, row_key, request, reserved, attempt)
    -- the arrays side by side (a subscript of a text array walks it from its
    -- start: one per row made this quadratic in the batch's size)
    SELECT queue_batch.batch_id, coalesce(u.custom_id, 'r' || u.o), u.row_key,
           u.r - 'model' - 'stream' - 'stream_options', u.cost, coalesce(u.attempt, 1)
      FROM unnest(requests, custom_ids, row_keys, costs, attempts)
           WITH ORDINALITY u(r, custom_id, row_key, cost, attempt, o)
     WHERE u.o <= queued;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.queue_batch(text, jsonb[], text, bigint, text[], name, bigint, bigint, text[], integer[]) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.queue_batch(text, jsonb[], text, bigint, text[], name, bigint, bigint, text[], integer[]) IS 'Internal: queue requests as one provider batch, reserving their worst case on the hard budgets (the largest prefix that fits)';

-- Internal: who a batch is submitted as, as admission identifies a call:
-- the session's virtual key (valid, allowed the model) and its team, else
-- the caller's role binding (its own, then the nearest role it is a member
-- of by explicit grants); the team must be allowed the model
CREATE FUNCTION llmgw.batch_caller(model text, OUT key_id bigint, OUT team_id bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    kh bytea := llmgw.session_key_hash();
    k llmgw.virtual_keys;
    t llmgw.teams;
BEGIN
    IF kh IS NOT NULL THEN
        SELECT * INTO k FROM llmgw.virtual_keys v WHERE v.hash = kh;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'invalid virtual key' USING ERRCODE = 'invalid_authorization_specification',
                DETAIL = 'The key in llmgw.api_key is not a key of this gateway.';
        ELSIF k.revoked_at IS NOT NULL THEN
            RAISE EXCEPTION 'virtual key % was revoked', k.prefix USING ERRCODE = 'invalid_authorization_specification';
        ELSIF k.expires_at <= now() THEN
            RAISE EXCEPTION 'virtual key % expired at %', k.prefix, k.expires_at
                USING ERRCODE = 'invalid_authorization_specification';
        ELSIF k.allowed_models IS NOT NULL AND NOT (model = ANY (k.allowed_models)) THEN
            RAISE EXCEPTION 'virtual key % may not use model "%"', k.prefix, model
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        key_id := k.id;
        team_id := k.team_id;
    ELSE
        WITH RECURSIVE m(roleid, depth) AS (
            SELECT r.oid, 0 FROM pg_roles r WHERE r.rolname = llmgw.caller()
            UNION
            SELECT a.roleid, m.depth + 1 FROM m JOIN pg_auth_members a ON a.member = m.roleid
             WHERE m.depth < 64)
        SELECT b.team_id INTO team_id
          FROM m JOIN pg_roles br ON br.oid = m.roleid
          JOIN llmgw.role_bindings b ON b.role_name = br.rolname
         ORDER BY m.depth, b.role_name LIMIT 1;
    END IF;
    SELECT * INTO t FROM llmgw.teams WHERE teams.id = batch_caller.team_id;
    IF FOUND AND t.allowed_models IS NOT NULL AND NOT (model = ANY (t.allowed_models)) THEN
        RAISE EXCEPTION 'team "%" may not use model "%"', t.name, model
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_caller(text) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_caller(text) IS 'Internal: the key and team a batch is submitted as (the session''s key, else the caller''s role binding), checked as admission checks a call';

-- Internal: the checks of the requests of a batch
CREATE FUNCTION llmgw.check_batch_requests(endpoint text, requests jsonb[], model text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n integer := coalesce(cardinality(requests), 0);
    max_n integer := current_setting('llmgw.batch_max_requests')::integer;
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'a batch needs at least one request' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n > max_n THEN
        RAISE EXCEPTION 'a batch holds at most % requests (llmgw.batch_max_requests), not %', max_n, n
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Submit the requests in several batches; llmgw.enrich(..., mode => ''batch'') splits a job by itself.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM llmgw.models m WHERE m.alias = check_batch_requests.model) THEN
        RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
    END IF;
    IF endpoint = 'chat' AND EXISTS (SELECT 1 FROM unnest(requests) r
                WHERE r IS NULL OR jsonb_typeof(r) <> 'object'
                   OR jsonb_typeof(r -> 'messages') IS DISTINCT FROM 'array') THEN
        RAISE EXCEPTION 'every request must be a JSON object with a messages array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF endpoint = 'embeddings' AND EXISTS (SELECT 1 FROM unnest(requests) r
                WHERE r IS NULL OR jsonb_typeof(r) <> 'object'
                   OR jsonb_typeof(r -> 'input') IS DISTINCT FROM 'string') THEN
        RAISE EXCEPTION 'every input must be a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- OpenAI's limit of a batch input file
    IF (SELECT sum(octet_length(r::text) + 100) FROM unnest(requests) r) > 200 * 1024 * 1024 THEN
        RAISE EXCEPTION 'the requests of a batch may hold at most 200 MB'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.check_batch_requests(text, jsonb[], text) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.check_batch_requests(text, jsonb[], text) IS 'Internal: the checks of the requests of a provider batch (count, model, shape, size)';

-- Queue chat requests (llm_chat's, without their model) as one provider
-- batch of a model; returns the batch's id at once.  Worker 0 uploads it
-- once the transaction commits.  With job_id and row_keys (llmgw.enrich),
-- each answer goes into that job's row of that key.  The worst case of its
-- requests is reserved on the caller's hard budgets: when they do not all
-- fit, the batch holds the largest prefix that does (a NOTICE says how
-- many; batches.requests), and none: LG010.
CREATE OR REPLACE FUNCTION llmgw.submit_batch(requests jsonb[], model text, job_id bigint DEFAULT NULL,
                                              row_keys text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    me name := llmgw.caller();
    n integer := coalesce(cardinality(requests), 0);
    who record;
    q record;
BEGIN
    PERFORM llmgw.check_batch_requests('chat', requests, model);
    IF (job_id IS NULL) <> (row_keys IS NULL) OR cardinality(row_keys) <> n
       OR array_position(row_keys, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'job_id and row_keys go together, one key per request'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF job_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM llmgw.jobs j
         WHERE j.id = submit_batch.job_id AND j.owner = me AND j.mode = 'batch'
           AND j.status = 'running') THEN
        RAISE EXCEPTION 'job % is not a running batch job of role %', job_id, me
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO who FROM llmgw.batch_caller(model);
    SELECT * INTO q FROM llmgw.queue_batch('chat', requests, model, job_id, row_keys, me,
                                           who.key_id, who.team_id);
    RETURN q.batch_id;
END
$fn$;

-- Queue texts to embed as one provider batch (/v1/embeddings) of an
-- embedding model; the vectors land in batch_items.answer (the provider's
-- embeddings response).  Budgets as llmgw.submit_batch.
CREATE FUNCTION llmgw.submit_embedding_batch(inputs text[], model text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    requests jsonb[] := ARRAY(SELECT jsonb_build_object('input', t) FROM unnest(inputs) t);
    who record;
    q record;
BEGIN
    IF array_position(inputs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'every input must be a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM llmgw.check_batch_requests('embeddings', requests, model);
    SELECT * INTO who FROM llmgw.batch_caller(model);
    SELECT * INTO q FROM llmgw.queue_batch('embeddings', requests, model, NULL, NULL, llmgw.caller(),
                                           who.key_id, who.team_id);
    RETURN q.batch_id;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.submit_embedding_batch(text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.submit_embedding_batch(text[], text) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.submit_embedding_batch(text[], text) IS 'Queue texts to embed as one provider batch (Batch API, /v1/embeddings); returns the batch id; the vectors land in batch_items.answer';

CREATE OR REPLACE VIEW llmgw.budget_status WITH (security_invoker = true) AS
SELECT b.id, b.name, b.scope,
       CASE b.scope WHEN 'key' THEN (SELECT k.prefix FROM llmgw.keys k WHERE k.id = b.key_id)
                    WHEN 'team' THEN t.name
                    WHEN 'role' THEN b.role_name::text
                    WHEN 'model' THEN b.model END AS target,
       b.period, b.enforcement, b.currency, b.limit_amount,
       s.spent, trim_scale(coalesce(l.reserved, 0) + r.batch_reserved) AS reserved,
       trim_scale(greatest(b.limit_amount - s.spent - coalesce(l.reserved, 0) - r.batch_reserved, 0)) AS remaining,
       llmgw.period_start(b.period) AS period_start,
       llmgw.period_end(b.period) AS resets_at,
       trim_scale(l.ledger_spent) AS ledger_spent,
       f.run_rate, f.exhausts_at, f.projected_spent,
       trim_scale(r.batch_reserved) AS batch_reserved
  FROM llmgw.budgets b
  LEFT JOIN llmgw.teams t ON t.id = b.team_id
  CROSS JOIN LATERAL (SELECT llmgw.budget_spent(b) AS spent) s
  CROSS JOIN LATERAL (SELECT llmgw.budget_batch_reserved(b) AS batch_reserved) r
  LEFT JOIN llmgw.budget_ledger() l ON l.budget_id = b.id
  CROSS JOIN LATERAL llmgw.budget_forecast(b) f;
COMMENT ON COLUMN llmgw.budget_status.reserved IS 'Worst cases reserved by the calls in flight (the ledger in shared memory) and by the items of provider batches not answered yet (batch_reserved) (0: none)';
COMMENT ON COLUMN llmgw.budget_status.remaining IS 'limit_amount minus spent and reserved, at least 0';
COMMENT ON COLUMN llmgw.budget_status.batch_reserved IS 'The part of reserved held by items of provider batches not answered yet (from llmgw.batch_items; survives restarts)';

CREATE OR REPLACE VIEW llmgw.job_progress WITH (security_invoker = true) AS
SELECT id, name, owner, source, output_column, model, status,
       rows_total, rows_done, rows_failed, rows_skipped,
       (SELECT sum(u.cost) FROM llmgw.usage u WHERE u.job_id = jobs.id) AS spend,
       round(rows_done / nullif(extract(epoch FROM updated_at - started_at), 0), 2)
           AS rows_per_second,
       CASE WHEN status = 'running' AND rows_done > 0 THEN
           updated_at + (updated_at - started_at)
               * ((rows_total - rows_done - rows_failed - rows_skipped)::float8 / rows_done)
       END AS estimated_finish,
       started_at, updated_at, finished_at, last_error,
       mode,
       (SELECT b.state FROM llmgw.batches b WHERE b.job_id = jobs.id
         ORDER BY array_position(ARRAY['queued', 'submitting', 'validating', 'in_progress',
                                       'finalizing', 'cancelling', 'ingesting', 'failed',
                                       'expired', 'cancelled', 'completed'], b.state)
         LIMIT 1) AS batch_state,
       (SELECT array_agg(b.provider_batch_id ORDER BY b.id) FROM llmgw.batches b
         WHERE b.job_id = jobs.id) AS provider_batch_ids,
       rows_held,
       (SELECT sum(i.reserved) FROM llmgw.batches b
          JOIN llmgw.batch_items i ON i.batch_id = b.id AND i.state = 'pending'
         WHERE b.job_id = jobs.id) AS reserved,
       retry
  FROM llmgw.jobs;
COMMENT ON COLUMN llmgw.job_progress.rows_held IS 'Batch jobs: rows left unsubmitted because a hard budget had no room for their worst case (CALL llmgw.enrich again resumes them)';
COMMENT ON COLUMN llmgw.job_progress.reserved IS 'Batch jobs: the worst case its items not answered yet reserve on its hard budgets';
COMMENT ON COLUMN llmgw.job_progress.retry IS 'Batch jobs: batch (expired and retryable items go again, at most 3 attempts) or none';

-- Each result line parsed once and its item looked up by batch_items'
-- primary key, the job's row by its key in its own type (0.3 parsed every
-- line again per pending item: quadratic); each item's reservation given
-- back and its cost charged with its usage row
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
    released numeric;
    charged numeric;
BEGIN
    -- usage before batch_items, as a load of the budget ledger locks them
    LOCK TABLE llmgw.usage IN ROW EXCLUSIVE MODE;
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    SELECT * INTO j FROM llmgw.jobs WHERE jobs.id = bt.job_id;
    bp := llmgw.batch_price((SELECT p FROM llmgw.prices p WHERE p.id = bt.price_id));
    -- batches queued before 0.4 have no team: the owner's binding
    team := coalesce(bt.team_id, (SELECT rb.team_id FROM llmgw.role_bindings rb WHERE rb.role_name = bt.owner));
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
        SELECT i.custom_id, i.row_key, i.attempt, i.reserved, pg_catalog.gen_random_uuid() AS rid,
               (l.v -> 'response' ->> 'status_code')::integer AS http_status,
               l.v -> 'response' -> 'body' AS body, l.v -> 'error' AS err,
               CASE WHEN (l.v -> 'response' ->> 'status_code') = '200'
                         AND CASE WHEN bt.endpoint = 'embeddings'
                                  THEN jsonb_typeof(l.v -> 'response' -> 'body' -> 'data' -> 0 -> 'embedding') = 'array'
                                  ELSE jsonb_typeof(l.v -> 'response' -> 'body' -> 'choices' -> 0 -> 'message' -> 'content') = 'string' END
                        THEN 'done'
                    WHEN l.v -> 'error' ->> 'code' = 'batch_expired' THEN 'expired'
                    WHEN l.v -> 'error' ->> 'code' = 'batch_cancelled' THEN 'cancelled'
                    ELSE 'failed' END AS item_state
          FROM l CROSS JOIN LATERAL (
                SELECT i.custom_id, i.row_key, i.attempt, i.reserved, i.state FROM llmgw.batch_items i
                 WHERE i.batch_id = batch AND i.custom_id = l.cid
                OFFSET 0) i
         WHERE i.state = 'pending'),
    t AS (
        SELECT r.*,
               CASE WHEN r.item_state = 'done' AND bt.endpoint = 'chat'
                    THEN r.body -> 'choices' -> 0 -> 'message' ->> 'content' END AS answer,
               (r.body -> 'usage' ->> 'prompt_tokens')::bigint AS i_tok,
               -- embeddings bill no output
               CASE WHEN bt.endpoint = 'embeddings' AND r.body -> 'usage' ? 'prompt_tokens' THEN 0
                    ELSE (r.body -> 'usage' ->> 'completion_tokens')::bigint END AS o_tok,
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
        INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, key_id, team_id, model, provider,
                                 upstream_model, status, error_class, http_status, input_tokens,
                                 output_tokens, cached_input_tokens, reasoning_tokens, usage_source,
                                 price_id, cost, currency, unpriced, job_id, batch_id, tags)
        SELECT t.rid, t.attempt, coalesce(bt.submitted_at, bt.created_at), bt.owner, bt.key_id, team, bt.model,
               bt.provider, bt.upstream_model,
               CASE t.item_state WHEN 'done' THEN 'ok' WHEN 'cancelled' THEN 'cancelled' ELSE 'error' END,
               t.error_class, t.http_status, t.i_tok, t.o_tok, t.c_tok, t.r_tok,
               CASE WHEN t.i_tok IS NOT NULL THEN 'provider' END,
               bp.id, c.cost, bp.currency,
               t.item_state = 'done' AND c.cost IS NULL, bt.job_id, bt.id,
               jsonb_build_object('batch', bt.provider_batch_id, 'custom_id', t.custom_id)
          FROM t CROSS JOIN LATERAL (SELECT llmgw.cost(bp, t.i_tok, t.o_tok, t.c_tok, NULL, NULL, t.r_tok) AS cost) c
        RETURNING cost),
    w AS (
        UPDATE llmgw.batch_items i
           SET state = t.item_state, request_id = t.rid, error = t.error, error_class = t.error_class,
               answer = CASE WHEN bt.job_id IS NULL THEN t.body END
          FROM t
         WHERE i.batch_id = batch AND i.custom_id = t.custom_id
        RETURNING i.row_key, t.answer, t.item_state, t.reserved)
    SELECT coalesce(array_agg(w.row_key) FILTER (WHERE w.item_state = 'done'), '{}'),
           coalesce(array_agg(w.answer) FILTER (WHERE w.item_state = 'done'), '{}'),
           count(*), count(*) FILTER (WHERE w.item_state = 'failed'),
           coalesce(sum(w.reserved), 0), (SELECT coalesce(sum(u.cost), 0) FROM u)
      INTO keys, answers, n, nfailed, released, charged
      FROM w;
    -- the ledger: the items' reservations back, their costs charged, with
    -- their usage rows
    IF released > 0 OR charged > 0 THEN
        PERFORM llmgw.budget_batch_settle(bt.charged_on, bt.reserved_on,
                                          ceil(least(released, 900000000) * 10000000000)::int8,
                                          ceil(least(charged, 900000000) * 10000000000)::int8,
                                          coalesce(bt.submitted_at, bt.created_at));
    END IF;

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

-- Internal (worker 0): a batch split for its provider's limits: the new
-- batch carries the first's endpoint, key, team and budgets
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
    -- the new batch is the caller's as the first is: its endpoint, key,
    -- team and budgets (its items keep their reservations)
    INSERT INTO llmgw.batches (job_id, owner, model, requests, cancel_requested, endpoint, key_id,
                               team_id, charged_on, reserved_on)
    VALUES (bt.job_id, bt.owner, bt.model, cardinality(moved), bt.cancel_requested, bt.endpoint,
            bt.key_id, bt.team_id, bt.charged_on, bt.reserved_on)
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

-- Internal (worker 0): a batch's results are all written: the items
-- without one end as the batch ended (their reservations given back), the
-- items its job retries go into a new batch, the batch takes its final
-- state, and its job finishes with its last batch
CREATE OR REPLACE FUNCTION llmgw.batch_finish(batch bigint, final text, error text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bt llmgw.batches;
    jb llmgw.jobs;
    left_over integer;
    released numeric;
    again record;
    q record;
BEGIN
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND OR bt.state IN ('completed', 'failed', 'expired', 'cancelled') THEN
        RETURN;
    END IF;
    WITH e AS (
        UPDATE llmgw.batch_items i
           SET state = CASE final WHEN 'expired' THEN 'expired' WHEN 'cancelled' THEN 'cancelled'
                                  ELSE 'failed' END,
               error_class = CASE final WHEN 'expired' THEN 'expired' WHEN 'cancelled' THEN 'cancelled' END,
               error = coalesce(batch_finish.error, 'the provider returned no result for it')
         WHERE i.batch_id = batch AND i.state = 'pending'
        RETURNING i.reserved)
    SELECT count(*), coalesce(sum(e.reserved), 0) INTO left_over, released FROM e;
    IF released > 0 THEN
        PERFORM llmgw.budget_batch_settle(bt.charged_on, bt.reserved_on,
                                          ceil(least(released, 900000000) * 10000000000)::int8, 0,
                                          coalesce(bt.submitted_at, bt.created_at));
    END IF;
    UPDATE llmgw.batches b
       SET state = final, finished_at = clock_timestamp(),
           last_error = coalesce(batch_finish.error, b.last_error)
     WHERE b.id = batch;
    IF bt.job_id IS NULL THEN
        RETURN;
    END IF;
    UPDATE llmgw.jobs j
       SET rows_failed = j.rows_failed + CASE WHEN final IN ('completed', 'failed') THEN left_over ELSE 0 END,
           last_error = coalesce(batch_finish.error, j.last_error),
           updated_at = clock_timestamp()
     WHERE j.id = bt.job_id
    RETURNING * INTO jb;

    -- the job's retries: expired items, and items failed by a rate limit or
    -- a server error, at most 3 attempts each, go again in a new batch
    IF jb.retry = 'batch' AND jb.status = 'running' AND NOT bt.cancel_requested THEN
        SELECT array_agg(i.request ORDER BY i.custom_id) AS requests,
               array_agg(i.row_key ORDER BY i.custom_id) AS keys,
               array_agg(i.custom_id ORDER BY i.custom_id) AS ids,
               array_agg(i.attempt + 1 ORDER BY i.custom_id) AS attempts
          INTO again
          FROM llmgw.batch_items i
         WHERE i.batch_id = batch AND i.retried_in IS NULL AND i.attempt < 3
           AND (i.state = 'expired' OR (i.state = 'failed' AND i.error_class IN ('rate_limit', 'server')));
        IF again.requests IS NOT NULL THEN
            BEGIN
                SELECT * INTO q FROM llmgw.queue_batch(bt.endpoint, again.requests, bt.model, bt.job_id,
                                                       again.keys, bt.owner, bt.key_id, bt.team_id,
                                                       again.ids, again.attempts);
                WITH m AS (
                    UPDATE llmgw.batch_items i SET retried_in = q.batch_id
                     WHERE i.batch_id = batch AND i.custom_id = ANY (again.ids[1:q.queued])
                    RETURNING i.state)
                UPDATE llmgw.jobs
                   SET rows_failed = rows_failed - (SELECT count(*) FROM m WHERE m.state = 'failed')
                 WHERE jobs.id = bt.job_id;
            EXCEPTION WHEN SQLSTATE 'LG010' THEN
                UPDATE llmgw.jobs SET last_error = 'LG010: ' || SQLERRM WHERE jobs.id = bt.job_id;
            END;
        END IF;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM llmgw.batches b
                    WHERE b.job_id = bt.job_id
                      AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled')) THEN
        UPDATE llmgw.jobs j
           SET status = CASE WHEN EXISTS (SELECT 1 FROM llmgw.batches b
                                           WHERE b.job_id = j.id AND b.cancel_requested)
                             THEN 'stopped' ELSE 'finished' END,
               finished_at = clock_timestamp(), updated_at = clock_timestamp()
         WHERE j.id = bt.job_id AND j.status = 'running';
    END IF;
END
$fn$;

DROP PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text);
CREATE PROCEDURE llmgw.enrich(
    source regclass,
    key_column text,
    prompt text,
    output_column text,
    model text,
    system text DEFAULT NULL,
    max_tokens integer DEFAULT NULL,
    chunk_size integer DEFAULT 500,
    concurrency integer DEFAULT 64,
    job_name text DEFAULT NULL,
    mode text DEFAULT 'sync',
    retry text DEFAULT 'batch')
LANGUAGE plpgsql
-- no SET search_path: a procedure with SET cannot COMMIT.  It runs with the
-- caller's rights, and every name it uses is qualified or in pg_catalog.
AS $fn$
DECLARE
    job bigint;
    skip text[] := '{}';
    keys text[];
    prompts text[];
    r record;
    done_keys text[];
    answers text[];
    written_keys text[];
    done bigint;
    failed bigint;
    skipped bigint;
    chunk_error text;
    stop_reason text;
    limited bigint;
    still_pending bigint;
    backoff float8 := 0.5;
    pending text := format('%I IS NULL AND NOT (%I::text = ANY ($1))', output_column, key_column);
    qualified text;
    nbatches integer := 0;
    b bigint;
    queued integer;
    held bigint := 0;
    held_by text;
BEGIN
    IF mode IS NULL OR mode NOT IN ('sync', 'batch') THEN
        RAISE EXCEPTION 'mode must be sync or batch' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retry IS NULL OR retry NOT IN ('batch', 'none') THEN
        RAISE EXCEPTION 'retry must be batch or none' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF chunk_size < 1 THEN
        RAISE EXCEPTION 'chunk_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- every answer paid for must be writable: check before any call
    IF NOT pg_catalog.has_column_privilege(source, output_column, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to update column % of %', output_column, source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'llmgw.enrich writes each answer into the output column, and calls no model for a row it could not write.';
    END IF;
    IF mode = 'batch' THEN
        -- the workers write the answers: the table's name must not depend
        -- on a search_path
        SELECT format('%I.%I', n.nspname, c.relname) INTO qualified
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = source;
        INSERT INTO llmgw.jobs (name, source, output_column, model, mode, key_column, retry)
        VALUES (job_name, qualified, output_column, model, 'batch', key_column, retry)
        RETURNING id INTO job;
        -- rows already in a batch not written yet are not sent again
        skip := ARRAY(SELECT i.row_key FROM llmgw.batch_items i
                        JOIN llmgw.batches b ON b.id = i.batch_id
                        JOIN llmgw.jobs j ON j.id = b.job_id
                       WHERE i.state = 'pending' AND j.source = qualified
                         AND j.output_column = enrich.output_column);
        FOR r IN EXECUTE format(
            'SELECT (n - 1) / $2 AS part, array_agg(k ORDER BY n) AS keys,
                    array_agg(pg_catalog.jsonb_build_object(''messages'', $3::jsonb
                        || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(''role'', ''user'', ''content'', p)))
                        || $4::jsonb ORDER BY n) AS requests
               FROM (SELECT pg_catalog.row_number() OVER (ORDER BY %I) AS n, %I::text AS k, (%s)::text AS p
                       FROM %s WHERE %s) c
              GROUP BY 1 ORDER BY 1',
            key_column, key_column, prompt, source, pending)
            USING skip, current_setting('llmgw.batch_max_requests')::integer,
                  CASE WHEN system IS NULL THEN '[]'::jsonb
                       ELSE pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('role', 'system', 'content', system)) END,
                  CASE WHEN max_tokens IS NULL THEN '{}'::jsonb
                       ELSE pg_catalog.jsonb_build_object('max_tokens', max_tokens) END
        LOOP
            -- a hard budget too small for the whole job: the largest prefix
            -- of its rows that fits is queued, the rest stays NULL
            IF held > 0 THEN
                held := held + cardinality(r.keys);
                CONTINUE;
            END IF;
            IF nbatches = 0 THEN
                -- nothing fits at all: the error (LG010), and no job
                b := llmgw.submit_batch(r.requests, model, job, r.keys);
            ELSE
                BEGIN
                    b := llmgw.submit_batch(r.requests, model, job, r.keys);
                EXCEPTION WHEN SQLSTATE 'LG010' THEN
                    b := NULL;
                    held_by := SQLERRM;
                END;
            END IF;
            queued := coalesce((SELECT bt.requests FROM llmgw.batches bt WHERE bt.id = b), 0);
            IF queued > 0 THEN
                nbatches := nbatches + 1;
            END IF;
            held := cardinality(r.keys) - queued;
            UPDATE llmgw.jobs j SET rows_total = coalesce(j.rows_total, 0) + queued
             WHERE j.id = job;
        END LOOP;
        IF held > 0 THEN
            UPDATE llmgw.jobs j
               SET rows_held = held,
                   last_error = format('LG010: %s rows held back: a hard budget has no room for their worst case%s',
                                       held, ': ' || held_by)
             WHERE j.id = job;
        END IF;
        IF nbatches = 0 THEN
            UPDATE llmgw.jobs SET rows_total = 0, status = 'finished', finished_at = clock_timestamp(),
                   updated_at = clock_timestamp()
             WHERE id = job;
        END IF;
        COMMIT;
        RAISE NOTICE 'llmgw.enrich job %: % rows queued in % provider batches', job,
            (SELECT j.rows_total FROM llmgw.jobs j WHERE j.id = job), nbatches;
        IF held > 0 THEN
            RAISE NOTICE 'llmgw.enrich job %: % rows held back: a hard budget has no room for their worst case', job, held
                USING DETAIL = 'Their output stays NULL; llmgw.job_progress.rows_held counts them.',
                      HINT = 'CALL llmgw.enrich again once the budget allows: it sends the rows still NULL.';
        END IF;
        RETURN;
    END IF;
    INSERT INTO llmgw.jobs (name, source, output_column, model)
    VALUES (job_name, source::text, output_column, model)
    RETURNING id INTO job;
    EXECUTE format('SELECT count(*) FROM %s WHERE %s', source, pending)
        INTO r USING skip;
    UPDATE llmgw.jobs SET rows_total = r.count WHERE id = job;
    COMMIT;

    LOOP
        -- FOR UPDATE takes only rows the caller may update (row-level
        -- security) and not locked by a concurrent run
        EXECUTE format('SELECT array_agg(k ORDER BY k), array_agg(p ORDER BY k)
                          FROM (SELECT %I::text AS k, (%s)::text AS p FROM %s WHERE %s
                                 ORDER BY %I LIMIT %s FOR UPDATE SKIP LOCKED) c',
                       key_column, prompt, source, pending, key_column, chunk_size)
            INTO keys, prompts USING skip;
        EXIT WHEN keys IS NULL;

        done := 0; failed := 0; skipped := 0; limited := 0;
        done_keys := '{}'; answers := '{}';
        -- the job's calls carry its id (usage.job_id), so that its spend can be summed
        PERFORM set_config('llmgw.job', job::text, true);
        FOR r IN SELECT * FROM @extschema@.llm_complete_many(prompts, model, system, max_tokens,
                                                             NULL, concurrency, 'continue')
        LOOP
            IF r.answer IS NOT NULL THEN
                done_keys := done_keys || keys[r.ordinality];
                answers := answers || r.answer;
            ELSIF r.sqlstate = 'LG010' THEN
                -- a budget is exhausted: the row stays pending for a later run
                stop_reason := coalesce(stop_reason, r.error);
            ELSIF r.sqlstate = 'LG011' THEN
                -- rate limited by llmgw: the row stays pending, we slow down
                limited := limited + 1;
            ELSE
                skip := skip || keys[r.ordinality];
                IF r.error IS NULL THEN
                    skipped := skipped + 1;
                ELSE
                    failed := failed + 1;
                    chunk_error := r.sqlstate || ': ' || r.error;
                END IF;
            END IF;
        END LOOP;
        PERFORM set_config('llmgw.job', '', true);
        -- one UPDATE per chunk (a join, whatever the key's type)
        EXECUTE format('WITH w AS (UPDATE %s t SET %I = a.answer FROM unnest($1, $2) a(k, answer)
                                    WHERE t.%I::text = a.k RETURNING a.k)
                        SELECT coalesce(array_agg(k), ''{}'') FROM w',
                       source, output_column, key_column)
            INTO written_keys USING done_keys, answers;
        done := cardinality(written_keys);
        IF done < cardinality(done_keys) THEN
            -- answered but not written (the row went away meanwhile)
            failed := failed + cardinality(done_keys) - done;
            skip := skip || ARRAY(SELECT unnest(done_keys) EXCEPT SELECT unnest(written_keys));
            chunk_error := 'answers could not be written into ' || source::text;
        END IF;
        -- a chunk whose rows are all still pending would be taken again forever
        EXECUTE format('SELECT count(*) FROM %s WHERE %s AND %I::text = ANY ($2)',
                       source, pending, key_column)
            INTO still_pending USING skip, keys;
        IF still_pending = cardinality(keys) AND limited = 0 AND stop_reason IS NULL THEN
            ROLLBACK;
            UPDATE llmgw.jobs SET status = 'failed', finished_at = clock_timestamp(),
                   updated_at = clock_timestamp(),
                   last_error = format('no progress: none of %s rows of the chunk left the pending set', cardinality(keys))
             WHERE id = job;
            COMMIT;
            RAISE EXCEPTION 'llmgw.enrich job % makes no progress', job
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = format('After a chunk, its %s rows still have %s NULL: something (a trigger, a policy) undoes the answers.',
                                      cardinality(keys), output_column),
                      HINT = 'Check the triggers and row-level security policies of the table.';
        END IF;

        UPDATE llmgw.jobs j
           SET rows_done = j.rows_done + done, rows_failed = j.rows_failed + failed,
               rows_skipped = j.rows_skipped + skipped,
               last_error = coalesce(chunk_error, j.last_error),
               updated_at = clock_timestamp()
         WHERE j.id = job
        RETURNING j.rows_done, j.rows_failed INTO done, failed;
        COMMIT;
        RAISE NOTICE 'llmgw.enrich job %: % rows done, % failed', job, done, failed;
        IF stop_reason IS NOT NULL THEN
            UPDATE llmgw.jobs SET status = 'stopped', last_error = 'LG010: ' || stop_reason,
                   finished_at = clock_timestamp(), updated_at = clock_timestamp()
             WHERE id = job;
            COMMIT;
            RAISE WARNING 'llmgw.enrich job % stopped: %', job, stop_reason
                USING HINT = 'Rows not done yet stay NULL; CALL llmgw.enrich again once the budget allows.';
            RETURN;
        END IF;
        IF limited > 0 THEN
            RAISE NOTICE 'llmgw.enrich job %: % calls rate limited, waiting % s', job, limited, backoff;
            PERFORM pg_sleep(backoff);
            backoff := least(backoff * 2, 10);
        ELSE
            backoff := 0.5;
        END IF;
    END LOOP;

    UPDATE llmgw.jobs SET status = 'finished', finished_at = clock_timestamp(),
           updated_at = clock_timestamp()
     WHERE id = job;
    COMMIT;
END
$fn$;
REVOKE ALL ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text)
    TO llmgw_admin, llmgw_user;
COMMENT ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text) IS 'Fill a column from a prompt over each row, in committed, resumable chunks; only rows the caller may update; mode => ''batch'' goes through the provider''s Batch API (retry: what becomes of its expired items)';

-- Batch and synchronous spend apart: the rollups keep them in rows of their
-- own (usage rows written before 0.4 count as synchronous)
ALTER TABLE llmgw.usage_daily ADD COLUMN batch boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN llmgw.usage_daily.batch IS 'Calls of provider batches (usage.batch_id set; rows written before 0.4 count as synchronous)';
DO $$
DECLARE
    c name;
BEGIN
    SELECT conname INTO c FROM pg_catalog.pg_constraint
     WHERE conrelid = 'llmgw.usage_daily'::regclass AND contype = 'u';
    EXECUTE format('ALTER TABLE llmgw.usage_daily DROP CONSTRAINT %I', c);
END
$$;
ALTER TABLE llmgw.usage_daily ADD CONSTRAINT usage_daily_dimensions_key
    UNIQUE NULLS NOT DISTINCT (day, team_id, key_id, role_name, model, provider,
                               upstream_model, currency, shard, batch);
COMMENT ON CONSTRAINT usage_daily_dimensions_key ON llmgw.usage_daily IS 'One rollup row per day, dimensions, worker and kind of call (the rollup trigger adds to it)';

CREATE OR REPLACE VIEW llmgw.spend_daily WITH (security_invoker = true) AS
SELECT d.day, t.name AS team, k.prefix AS key_prefix, d.role_name, d.model, d.provider,
       d.upstream_model, d.currency, d.calls, d.errors, d.unpriced, d.cache_hits,
       d.input_tokens, d.output_tokens, d.cached_input_tokens, d.reasoning_tokens, d.cost,
       d.batch
  FROM llmgw.usage_daily d
  LEFT JOIN llmgw.teams t ON t.id = d.team_id
  LEFT JOIN llmgw.keys k ON k.id = d.key_id;
COMMENT ON COLUMN llmgw.spend_daily.batch IS 'Calls of provider batches (at the batch rates); false: synchronous calls';

CREATE OR REPLACE VIEW llmgw.spend_by_key WITH (security_invoker = true) AS
SELECT d.month, d.key_id, k.prefix AS key_prefix,
       k.name AS key_name, t.name AS team, d.currency,
       sum(d.calls) AS calls, sum(d.errors) AS errors, sum(d.unpriced) AS unpriced,
       sum(d.input_tokens) AS input_tokens, sum(d.output_tokens) AS output_tokens,
       sum(d.cost) AS cost,
       sum(d.calls) FILTER (WHERE d.batch) AS batch_calls,
       sum(d.cost) FILTER (WHERE d.batch) AS batch_cost
  FROM llmgw.usage_daily d
  LEFT JOIN llmgw.keys k ON k.id = d.key_id
  LEFT JOIN llmgw.teams t ON t.id = d.team_id
 GROUP BY 1, 2, 3, 4, 5, 6;

CREATE OR REPLACE VIEW llmgw.spend_by_team WITH (security_invoker = true) AS
SELECT d.month, d.team_id, t.name AS team, d.currency,
       sum(d.calls) AS calls, sum(d.errors) AS errors, sum(d.unpriced) AS unpriced,
       sum(d.input_tokens) AS input_tokens, sum(d.output_tokens) AS output_tokens,
       sum(d.cost) AS cost,
       sum(d.calls) FILTER (WHERE d.batch) AS batch_calls,
       sum(d.cost) FILTER (WHERE d.batch) AS batch_cost
  FROM llmgw.usage_daily d
  LEFT JOIN llmgw.teams t ON t.id = d.team_id
 GROUP BY 1, 2, 3, 4;

CREATE OR REPLACE VIEW llmgw.spend_by_model WITH (security_invoker = true) AS
SELECT d.month, d.model, d.provider, d.upstream_model,
       d.currency,
       sum(d.calls) AS calls, sum(d.errors) AS errors, sum(d.unpriced) AS unpriced,
       sum(d.input_tokens) AS input_tokens, sum(d.output_tokens) AS output_tokens,
       sum(d.cached_input_tokens) AS cached_input_tokens,
       sum(d.reasoning_tokens) AS reasoning_tokens, sum(d.cost) AS cost,
       sum(d.calls) FILTER (WHERE d.batch) AS batch_calls,
       sum(d.cost) FILTER (WHERE d.batch) AS batch_cost
  FROM llmgw.usage_daily d
 GROUP BY 1, 2, 3, 4, 5;
COMMENT ON COLUMN llmgw.spend_by_key.batch_calls IS 'Of calls, those of provider batches (NULL: none)';
COMMENT ON COLUMN llmgw.spend_by_key.batch_cost IS 'Of cost, that of provider batches (NULL: none)';
COMMENT ON COLUMN llmgw.spend_by_team.batch_calls IS 'Of calls, those of provider batches (NULL: none)';
COMMENT ON COLUMN llmgw.spend_by_team.batch_cost IS 'Of cost, that of provider batches (NULL: none)';
COMMENT ON COLUMN llmgw.spend_by_model.batch_calls IS 'Of calls, those of provider batches (NULL: none)';
COMMENT ON COLUMN llmgw.spend_by_model.batch_cost IS 'Of cost, that of provider batches (NULL: none)';

-- ==== One rollup trigger (docs/money.md, docs/metrics.md) ====
-- The daily rollups and the totals of llmgw.metrics() are kept by one
-- statement of one trigger: the second trigger cost every round of the
-- workers a second function call, statement and plan start.
CREATE OR REPLACE FUNCTION llmgw.usage_rollup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- ordered, so that concurrent writers lock rollup rows in one order:
    -- the totals, then (the statement of the WITH runs after) the days
    WITH daily AS (
        INSERT INTO llmgw.usage_daily AS d (day, shard, team_id, key_id, role_name, model,
            provider, upstream_model, currency, calls, errors, unpriced, cache_hits, input_tokens,
            output_tokens, cached_input_tokens, reasoning_tokens, cost, batch)
        SELECT (n.started_at AT TIME ZONE 'UTC')::date,
               coalesce(nullif(current_setting('llmgw.rollup_shard', true), '')::integer, 0),
               n.team_id, n.key_id, n.role_name, n.model,
               n.provider, n.upstream_model, n.currency,
               count(*), count(*) FILTER (WHERE n.status <> 'ok'),
               count(*) FILTER (WHERE n.unpriced), count(*) FILTER (WHERE n.cache_hit),
               coalesce(sum(n.input_tokens), 0), coalesce(sum(n.output_tokens), 0),
               coalesce(sum(n.cached_input_tokens), 0), coalesce(sum(n.reasoning_tokens), 0),
               coalesce(sum(n.cost), 0), n.batch_id IS NOT NULL
          FROM new_rows n
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 19
         ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 19
        ON CONFLICT (day, team_id, key_id, role_name, model, provider, upstream_model, currency,
                     shard, batch)
        DO UPDATE SET calls = d.calls + excluded.calls, errors = d.errors + excluded.errors,
                      unpriced = d.unpriced + excluded.unpriced,
                      cache_hits = d.cache_hits + excluded.cache_hits,
                      input_tokens = d.input_tokens + excluded.input_tokens,
                      output_tokens = d.output_tokens + excluded.output_tokens,
                      cached_input_tokens = d.cached_input_tokens + excluded.cached_input_tokens,
                      reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens,
                      cost = d.cost + excluded.cost)
    INSERT INTO llmgw.usage_totals AS t (shard, team_id, model, provider, upstream_model,
        status, error_class, cache_hit, fallback_from, currency, calls, unpriced, input_tokens,
        output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost)
    SELECT coalesce(nullif(current_setting('llmgw.rollup_shard', true), '')::integer, 0),
           n.team_id, n.model, n.provider, n.upstream_model, n.status, n.error_class,
           n.cache_hit, n.fallback_from, n.currency,
           count(*), count(*) FILTER (WHERE n.unpriced),
           coalesce(sum(n.input_tokens), 0), coalesce(sum(n.output_tokens), 0),
           coalesce(sum(n.cached_input_tokens), 0), coalesce(sum(n.cache_write_tokens), 0),
           coalesce(sum(n.reasoning_tokens), 0), coalesce(sum(n.cost), 0)
      FROM new_rows n
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
     ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ON CONFLICT (team_id, model, provider, upstream_model, status, error_class, cache_hit,
                 fallback_from, currency, shard)
    DO UPDATE SET calls = t.calls + excluded.calls, unpriced = t.unpriced + excluded.unpriced,
                  input_tokens = t.input_tokens + excluded.input_tokens,
                  output_tokens = t.output_tokens + excluded.output_tokens,
                  cached_input_tokens = t.cached_input_tokens + excluded.cached_input_tokens,
                  cache_write_tokens = t.cache_write_tokens + excluded.cache_write_tokens,
                  reasoning_tokens = t.reasoning_tokens + excluded.reasoning_tokens,
                  cost = t.cost + excluded.cost;
    RETURN NULL;
END
$fn$;
DROP TRIGGER usage_totals ON llmgw.usage;
DROP FUNCTION llmgw.usage_totals_rollup();
COMMENT ON FUNCTION llmgw.usage_rollup() IS 'Trigger: add a statement''s new usage rows to the daily rollups and to the totals of llmgw.metrics(), in one statement';
COMMENT ON TRIGGER usage_rollup ON llmgw.usage IS 'Daily rollups, and the totals of llmgw.metrics()';
