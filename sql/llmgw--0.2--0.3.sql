/* llmgw--0.2--0.3.sql: see it (docs/observability.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.3'" to load this file. \quit

-- ==== Front door scopes (docs/http.md) ====
-- What a virtual key may read at the HTTP front door besides calling
-- models: /metrics (scope metrics) and /spend (scope finance).
ALTER TABLE llmgw.virtual_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{}'
    CONSTRAINT virtual_keys_scopes_check
    CHECK (scopes <@ ARRAY['metrics', 'finance']::text[] AND pg_catalog.array_position(scopes, NULL) IS NULL);
COMMENT ON COLUMN llmgw.virtual_keys.scopes IS 'What the key may read at the HTTP front door besides calling models: metrics (GET /metrics), finance (GET /spend)';

CREATE OR REPLACE VIEW llmgw.keys WITH (security_barrier = true) AS
SELECT k.id, k.name, k.prefix, t.name AS team, k.allowed_models, k.rpm_limit, k.tpm_limit,
       k.expires_at, k.revoked_at, k.rotated_from, k.lineage_id, k.created_at, k.created_by,
       CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
            WHEN k.expires_at <= pg_catalog.now() THEN 'expired'
            ELSE 'active' END AS state,
       k.scopes
  FROM llmgw.virtual_keys k LEFT JOIN llmgw.teams t ON t.id = k.team_id
 WHERE pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_admin', 'MEMBER')
    OR pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_finance', 'MEMBER')
    OR k.team_id IN (SELECT llmgw.my_teams());
COMMENT ON COLUMN llmgw.keys.scopes IS 'What the key may read at the HTTP front door besides calling models (metrics, finance)';

-- Set what a key may read at the front door (replaces its scopes)
CREATE FUNCTION llmgw.set_key_scopes(key_id bigint, scopes text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT llmgw.caller_has_role('llmgw_admin') AND NOT llmgw.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied to set the scopes of a virtual key'
            USING ERRCODE = 'insufficient_privilege', HINT = 'Keys are managed by llmgw_admin.';
    END IF;
    IF scopes IS NULL OR NOT scopes <@ ARRAY['metrics', 'finance']::text[]
       OR array_position(scopes, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'unknown key scope in %', scopes
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A key''s scopes are metrics (GET /metrics) and finance (GET /spend).';
    END IF;
    UPDATE llmgw.virtual_keys k
       SET scopes = ARRAY(SELECT DISTINCT s FROM unnest(set_key_scopes.scopes) s ORDER BY s)
     WHERE k.id = key_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'virtual key % does not exist', key_id USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.set_key_scopes(bigint, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.set_key_scopes(bigint, text[]) TO llmgw_admin;
COMMENT ON FUNCTION llmgw.set_key_scopes(bigint, text[]) IS 'Set what a virtual key may read at the HTTP front door besides calling models: metrics, finance';

-- ==== Provider batches (docs/batch.md) ====
-- Enrichment through the providers' Batch APIs: a batch and its items
-- are rows; worker 0 moves each batch through its states (upload, submit,
-- poll, ingest), each step idempotent, so that a crash at any point
-- resumes without a second submission, a second result or a second usage
-- row.

ALTER TABLE llmgw.jobs ADD COLUMN mode text NOT NULL DEFAULT 'sync'
    CONSTRAINT jobs_mode_check CHECK (mode IN ('sync', 'batch'));
ALTER TABLE llmgw.jobs ADD COLUMN key_column text;
COMMENT ON COLUMN llmgw.jobs.mode IS 'sync: answered by llmgw.enrich itself; batch: through the provider''s Batch API, written by the workers';
COMMENT ON COLUMN llmgw.jobs.key_column IS 'The key column of source (batch jobs: the workers write answers by it)';

ALTER TABLE llmgw.usage ADD COLUMN batch_id bigint;
COMMENT ON COLUMN llmgw.usage.batch_id IS 'The llmgw.batches row the call was part of (NULL: a synchronous call)';

CREATE TABLE llmgw.batches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint,
    owner name NOT NULL,
    model text NOT NULL,
    provider text,
    upstream_model text,
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'submitting', 'validating', 'in_progress', 'finalizing',
                         'cancelling', 'ingesting', 'completed', 'failed', 'expired', 'cancelled')),
    provider_status text,
    marker uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid() UNIQUE,
    input_file_id text,
    provider_batch_id text,
    output_file_id text,
    error_file_id text,
    requests integer NOT NULL CHECK (requests > 0),
    provider_completed integer,
    provider_failed integer,
    price_id bigint,
    cancel_requested boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    submitted_at timestamptz,
    checked_at timestamptz,
    finished_at timestamptz,
    last_error text
);
CREATE INDEX batches_open_idx ON llmgw.batches (id)
    WHERE state NOT IN ('completed', 'failed', 'expired', 'cancelled');
CREATE INDEX batches_job_idx ON llmgw.batches (job_id);
ALTER TABLE llmgw.batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY batches_staff ON llmgw.batches TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY batches_own ON llmgw.batches TO llmgw_user USING (owner = CURRENT_USER);

CREATE TABLE llmgw.batch_items (
    batch_id bigint NOT NULL REFERENCES llmgw.batches (id) ON DELETE CASCADE,
    custom_id text NOT NULL,
    row_key text,
    request jsonb NOT NULL,
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'done', 'failed', 'expired', 'cancelled')),
    attempt integer NOT NULL DEFAULT 1,
    request_id uuid,
    answer jsonb,
    error text,
    PRIMARY KEY (batch_id, custom_id)
);
CREATE INDEX batch_items_pending_idx ON llmgw.batch_items (row_key) WHERE state = 'pending';
ALTER TABLE llmgw.batch_items ENABLE ROW LEVEL SECURITY;
CREATE POLICY batch_items_staff ON llmgw.batch_items TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY batch_items_own ON llmgw.batch_items TO llmgw_user
    USING (EXISTS (SELECT 1 FROM llmgw.batches b
                    WHERE b.id = batch_items.batch_id AND b.owner = CURRENT_USER));

COMMENT ON POLICY batches_staff ON llmgw.batches IS 'Administrators and finance see every batch';
COMMENT ON POLICY batches_own ON llmgw.batches IS 'Users see the batches they submitted';
COMMENT ON POLICY batch_items_staff ON llmgw.batch_items IS 'Administrators and finance see every item';
COMMENT ON POLICY batch_items_own ON llmgw.batch_items IS 'Users see the items of the batches they submitted';
COMMENT ON SEQUENCE llmgw.batches_id_seq IS 'Numbers of llmgw.batches';
COMMENT ON TABLE llmgw.batches IS 'Provider batches (Batch APIs): their state, provider ids, counts and the price in force at submission';
COMMENT ON COLUMN llmgw.batches.id IS 'Batch number';
COMMENT ON COLUMN llmgw.batches.job_id IS 'The llmgw.jobs row it fills (NULL: submitted with llmgw.submit_batch alone)';
COMMENT ON COLUMN llmgw.batches.owner IS 'The role that submitted it; answers are written with its rights';
COMMENT ON COLUMN llmgw.batches.model IS 'Model alias';
COMMENT ON COLUMN llmgw.batches.provider IS 'Provider it was uploaded to (set at upload)';
COMMENT ON COLUMN llmgw.batches.upstream_model IS 'The provider''s model name (set at upload)';
COMMENT ON COLUMN llmgw.batches.state IS 'queued, submitting (file uploaded), validating, in_progress, finalizing, cancelling, ingesting (results being written), then completed, failed, expired or cancelled';
COMMENT ON COLUMN llmgw.batches.provider_status IS 'The status the provider last reported';
COMMENT ON COLUMN llmgw.batches.marker IS 'Client-side idempotency marker, sent as the batch''s metadata: after a crash during submission the batch is found by it, never submitted twice';
COMMENT ON COLUMN llmgw.batches.input_file_id IS 'The provider''s id of the uploaded JSONL file';
COMMENT ON COLUMN llmgw.batches.provider_batch_id IS 'The provider''s batch id';
COMMENT ON COLUMN llmgw.batches.output_file_id IS 'The provider''s id of the results file';
COMMENT ON COLUMN llmgw.batches.error_file_id IS 'The provider''s id of the errors file';
COMMENT ON COLUMN llmgw.batches.requests IS 'Number of requests (items)';
COMMENT ON COLUMN llmgw.batches.provider_completed IS 'request_counts.completed as the provider last reported it';
COMMENT ON COLUMN llmgw.batches.provider_failed IS 'request_counts.failed as the provider last reported it';
COMMENT ON COLUMN llmgw.batches.price_id IS 'The llmgw.prices row in force at submission; items are charged its batch rates';
COMMENT ON COLUMN llmgw.batches.cancel_requested IS 'llmgw.cancel_job asked to cancel it';
COMMENT ON COLUMN llmgw.batches.created_at IS 'When it was queued';
COMMENT ON COLUMN llmgw.batches.submitted_at IS 'When the provider accepted it';
COMMENT ON COLUMN llmgw.batches.checked_at IS 'When its status was last asked';
COMMENT ON COLUMN llmgw.batches.finished_at IS 'When its last result was written';
COMMENT ON COLUMN llmgw.batches.last_error IS 'The last error of a step (retried) or of the batch';
COMMENT ON TABLE llmgw.batch_items IS 'The requests of provider batches, each written once: its state changes in the transaction that writes its answer and usage row';
COMMENT ON COLUMN llmgw.batch_items.batch_id IS 'Its batch';
COMMENT ON COLUMN llmgw.batch_items.custom_id IS 'Its custom_id in the batch';
COMMENT ON COLUMN llmgw.batch_items.row_key IS 'The key of the row of the job''s table it answers (NULL: no job)';
COMMENT ON COLUMN llmgw.batch_items.request IS 'llm_chat''s request, without the model';
COMMENT ON COLUMN llmgw.batch_items.state IS 'pending, done (answered), failed, expired or cancelled';
COMMENT ON COLUMN llmgw.batch_items.attempt IS 'Attempt number of its usage row';
COMMENT ON COLUMN llmgw.batch_items.request_id IS 'llmgw.usage.request_id of its usage row';
COMMENT ON COLUMN llmgw.batch_items.answer IS 'The provider''s chat.completion (batches without a job only)';
COMMENT ON COLUMN llmgw.batch_items.error IS 'Why it has no answer';

-- A price row at its batch rates: input and output at batch_input and
-- batch_output, the other rates of each side scaled alike; the row as it
-- is when it has no batch rates
CREATE FUNCTION llmgw.batch_price(p llmgw.prices) RETURNS llmgw.prices
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    fi numeric := CASE WHEN p.batch_input IS NOT NULL AND p.input > 0 THEN p.batch_input / p.input END;
    fo numeric := CASE WHEN p.batch_output IS NOT NULL AND p.output > 0 THEN p.batch_output / p.output END;
BEGIN
    IF p.id IS NULL THEN
        RETURN p;
    END IF;
    p.input := coalesce(p.batch_input, p.input);
    p.output := coalesce(p.batch_output, p.output);
    p.cached_input := trim_scale(p.cached_input * coalesce(fi, 1));
    p.cache_write_5m := trim_scale(p.cache_write_5m * coalesce(fi, 1));
    p.cache_write_1h := trim_scale(p.cache_write_1h * coalesce(fi, 1));
    p.tier_input := trim_scale(p.tier_input * coalesce(fi, 1));
    p.tier_cached_input := trim_scale(p.tier_cached_input * coalesce(fi, 1));
    p.tier_cache_write_5m := trim_scale(p.tier_cache_write_5m * coalesce(fi, 1));
    p.tier_cache_write_1h := trim_scale(p.tier_cache_write_1h * coalesce(fi, 1));
    p.reasoning := trim_scale(p.reasoning * coalesce(fo, 1));
    p.tier_output := trim_scale(p.tier_output * coalesce(fo, 1));
    RETURN p;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_price(llmgw.prices) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_price(llmgw.prices) IS 'A price row at its batch rates (batch_input, batch_output; the other rates scaled alike); unchanged without batch rates';

-- Queue chat requests (llm_chat's, without their model) as one provider
-- batch of a model; returns the batch's id at once.  Worker 0 uploads it
-- once the transaction commits.  With job_id and row_keys (llmgw.enrich),
-- each answer goes into that job's row of that key.
CREATE FUNCTION llmgw.submit_batch(requests jsonb[], model text, job_id bigint DEFAULT NULL,
                                   row_keys text[] DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    me name := llmgw.caller();
    n integer := coalesce(cardinality(requests), 0);
    max_n integer := current_setting('llmgw.batch_max_requests')::integer;
    b bigint;
BEGIN
    IF n = 0 THEN
        RAISE EXCEPTION 'a batch needs at least one request' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n > max_n THEN
        RAISE EXCEPTION 'a batch holds at most % requests (llmgw.batch_max_requests), not %', max_n, n
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Submit the requests in several batches; llmgw.enrich(..., mode => ''batch'') splits a job by itself.';
    END IF;
    IF (job_id IS NULL) <> (row_keys IS NULL) OR cardinality(row_keys) <> n
       OR array_position(row_keys, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'job_id and row_keys go together, one key per request'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM llmgw.models m WHERE m.alias = submit_batch.model) THEN
        RAISE EXCEPTION 'model "%" does not exist', model USING ERRCODE = 'undefined_object';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(requests) r
                WHERE r IS NULL OR jsonb_typeof(r) <> 'object'
                   OR jsonb_typeof(r -> 'messages') IS DISTINCT FROM 'array') THEN
        RAISE EXCEPTION 'every request must be a JSON object with a messages array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- OpenAI's limit of a batch input file
    IF (SELECT sum(octet_length(r::text) + 100) FROM unnest(requests) r) > 200 * 1024 * 1024 THEN
        RAISE EXCEPTION 'the requests of a batch may hold at most 200 MB'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF job_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM llmgw.jobs j
         WHERE j.id = submit_batch.job_id AND j.owner = me AND j.mode = 'batch'
           AND j.status = 'running') THEN
        RAISE EXCEPTION 'job % is not a running batch job of role %', job_id, me
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO llmgw.batches (job_id, owner, model, requests)
    VALUES (submit_batch.job_id, me, submit_batch.model, n)
    RETURNING id INTO b;
    INSERT INTO llmgw.batch_items (batch_id, custom_id, row_key, request)
    SELECT b, 'r' || u.o, row_keys[u.o], u.r - 'model' - 'stream' - 'stream_options'
      FROM unnest(requests) WITH ORDINALITY u(r, o);
    RETURN b;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[]) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[]) IS 'Queue chat requests as one provider batch (Batch API, half price, within 24 hours); returns the batch id';

-- Cancel a job: its provider batches are cancelled too (their results so
-- far are still written); rows left without an answer stay NULL
CREATE FUNCTION llmgw.cancel_job(id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    j llmgw.jobs;
BEGIN
    SELECT * INTO j FROM llmgw.jobs WHERE jobs.id = cancel_job.id FOR UPDATE;
    IF NOT FOUND OR (j.owner <> llmgw.caller() AND NOT llmgw.caller_has_role('llmgw_admin')
                     AND NOT llmgw.caller_is_superuser()) THEN
        RAISE EXCEPTION 'job % does not exist', id USING ERRCODE = 'undefined_object';
    END IF;
    IF j.mode <> 'batch' THEN
        RAISE EXCEPTION 'job % is synchronous', id
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'A synchronous job stops when its CALL is cancelled (pg_cancel_backend), and resumes when called again.';
    END IF;
    UPDATE llmgw.batches b SET cancel_requested = true
     WHERE b.job_id = cancel_job.id
       AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled');
    IF NOT FOUND AND j.status = 'running' THEN
        UPDATE llmgw.jobs SET status = 'stopped', finished_at = clock_timestamp(),
               updated_at = clock_timestamp(), last_error = 'cancelled'
         WHERE jobs.id = cancel_job.id;
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.cancel_job(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.cancel_job(bigint) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.cancel_job(bigint) IS 'Cancel a batch job and its provider batches (results already there are still written)';

-- Internal (worker 0): write the results of a chunk of a batch's output or
-- error file, each line a JSON object.  An item is written once: its
-- state, its usage row and its answer (into the job's row, with the
-- owner's rights, as llmgw.enrich would have written it) in this one
-- transaction.  Returns the number of items it wrote.
CREATE FUNCTION llmgw.batch_ingest(batch bigint, lines text[]) RETURNS integer
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

    WITH l AS (
        SELECT x.v FROM unnest(lines) s, LATERAL (SELECT s::jsonb AS v) x
         WHERE jsonb_typeof(x.v) = 'object'),
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
          FROM l JOIN llmgw.batch_items i
            ON i.batch_id = batch AND i.custom_id = l.v ->> 'custom_id' AND i.state = 'pending'),
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
        EXECUTE format('WITH w AS (UPDATE %s t SET %I = a.answer FROM unnest($1, $2) a(k, answer)
                                    WHERE t.%I::text = a.k AND t.%I IS NULL RETURNING a.k)
                        SELECT coalesce(array_agg(k), ''{}'') FROM w',
                       j.source, j.output_column, j.key_column, j.output_column)
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

-- Internal (worker 0): a batch's results are all written: the items
-- without one end as the batch ended, the batch takes its final state, and
-- its job finishes with its last batch
CREATE FUNCTION llmgw.batch_finish(batch bigint, final text, error text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    bt llmgw.batches;
    left_over integer;
BEGIN
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = batch FOR UPDATE;
    IF NOT FOUND OR bt.state IN ('completed', 'failed', 'expired', 'cancelled') THEN
        RETURN;
    END IF;
    UPDATE llmgw.batch_items i
       SET state = CASE final WHEN 'expired' THEN 'expired' WHEN 'cancelled' THEN 'cancelled'
                              ELSE 'failed' END,
           error = coalesce(batch_finish.error, 'the provider returned no result for it')
     WHERE i.batch_id = batch AND i.state = 'pending';
    GET DIAGNOSTICS left_over = ROW_COUNT;
    UPDATE llmgw.batches b
       SET state = final, finished_at = clock_timestamp(),
           last_error = coalesce(batch_finish.error, b.last_error)
     WHERE b.id = batch;
    IF bt.job_id IS NOT NULL THEN
        UPDATE llmgw.jobs j
           SET rows_failed = j.rows_failed + CASE WHEN final IN ('completed', 'failed') THEN left_over ELSE 0 END,
               last_error = coalesce(batch_finish.error, j.last_error),
               updated_at = clock_timestamp()
         WHERE j.id = bt.job_id;
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
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_finish(bigint, text, text) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_finish(bigint, text, text) IS 'Internal (worker 0): end a batch whose results are written, and its job with its last batch';

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
         WHERE b.job_id = jobs.id) AS provider_batch_ids
  FROM llmgw.jobs;
COMMENT ON COLUMN llmgw.job_progress.mode IS 'sync or batch';
COMMENT ON COLUMN llmgw.job_progress.batch_state IS 'Batch jobs: the state of its least advanced batch (queued ... ingesting, then failed, expired, cancelled, completed)';
COMMENT ON COLUMN llmgw.job_progress.provider_batch_ids IS 'Batch jobs: the provider''s ids of its batches';

-- What is still outstanding at the providers: batches not ended yet
CREATE VIEW llmgw.batches_outstanding WITH (security_invoker = true) AS
SELECT b.id, b.job_id, b.owner, b.model, b.provider, b.state, b.provider_batch_id, b.requests,
       (SELECT count(*) FROM llmgw.batch_items i
         WHERE i.batch_id = b.id AND i.state = 'pending') AS items_pending,
       b.created_at, b.submitted_at, b.checked_at, b.last_error
  FROM llmgw.batches b
 WHERE b.state NOT IN ('completed', 'failed', 'expired', 'cancelled');
COMMENT ON VIEW llmgw.batches_outstanding IS 'Provider batches not ended yet: what the workers still wait for or write';
COMMENT ON COLUMN llmgw.batches_outstanding.id IS 'Batch number';
COMMENT ON COLUMN llmgw.batches_outstanding.job_id IS 'The job it fills (NULL: none)';
COMMENT ON COLUMN llmgw.batches_outstanding.owner IS 'The role that submitted it';
COMMENT ON COLUMN llmgw.batches_outstanding.model IS 'Model alias';
COMMENT ON COLUMN llmgw.batches_outstanding.provider IS 'Provider it went to';
COMMENT ON COLUMN llmgw.batches_outstanding.state IS 'Its state (see llmgw.batches.state)';
COMMENT ON COLUMN llmgw.batches_outstanding.provider_batch_id IS 'The provider''s batch id';
COMMENT ON COLUMN llmgw.batches_outstanding.requests IS 'Number of requests';
COMMENT ON COLUMN llmgw.batches_outstanding.items_pending IS 'Items whose result is not written yet';
COMMENT ON COLUMN llmgw.batches_outstanding.created_at IS 'When it was queued';
COMMENT ON COLUMN llmgw.batches_outstanding.submitted_at IS 'When the provider accepted it';
COMMENT ON COLUMN llmgw.batches_outstanding.checked_at IS 'When its status was last asked';
COMMENT ON COLUMN llmgw.batches_outstanding.last_error IS 'The last error of a step';

GRANT SELECT ON llmgw.batches, llmgw.batch_items, llmgw.batches_outstanding
    TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT EXECUTE ON FUNCTION llmgw.batch_price(llmgw.prices) TO llmgw_admin, llmgw_finance, llmgw_user;

DROP PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text);
-- With mode => 'batch', the rows go to the provider's Batch API instead:
-- the procedure returns once they are queued as batches (of at most
-- llmgw.batch_max_requests rows); the workers write the answers as they
-- arrive, exactly as a synchronous run would have (docs/batch.md).
-- Fill output_column of source from a prompt expression over each row, in
-- chunks committed one by one.  Rows whose output is already set are skipped,
-- so a cancelled or crashed run resumes where it stopped.  Only rows the
-- caller may update are taken (row-level security, locks of concurrent
-- runs): no model is called for an answer that could not be written.  Must
-- be CALLed outside an explicit transaction block (it commits).
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
    mode text DEFAULT 'sync')
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
BEGIN
    IF mode IS NULL OR mode NOT IN ('sync', 'batch') THEN
        RAISE EXCEPTION 'mode must be sync or batch' USING ERRCODE = 'invalid_parameter_value';
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
        INSERT INTO llmgw.jobs (name, source, output_column, model, mode, key_column)
        VALUES (job_name, qualified, output_column, model, 'batch', key_column)
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
            PERFORM llmgw.submit_batch(r.requests, model, job, r.keys);
            nbatches := nbatches + 1;
            UPDATE llmgw.jobs j SET rows_total = coalesce(j.rows_total, 0) + cardinality(r.keys)
             WHERE j.id = job;
        END LOOP;
        IF nbatches = 0 THEN
            UPDATE llmgw.jobs SET rows_total = 0, status = 'finished', finished_at = clock_timestamp(),
                   updated_at = clock_timestamp()
             WHERE id = job;
        END IF;
        COMMIT;
        RAISE NOTICE 'llmgw.enrich job %: % rows queued in % provider batches', job,
            (SELECT j.rows_total FROM llmgw.jobs j WHERE j.id = job), nbatches;
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
REVOKE ALL ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text)
    TO llmgw_admin, llmgw_user;
COMMENT ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text) IS 'Fill a column from a prompt over each row, in committed, resumable chunks; only rows the caller may update; mode => ''batch'' goes through the provider''s Batch API';
