/* llmgw--0.4--0.5.sql: what changed after 0.4 (each section names its doc) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.5'" to load this file. \quit

-- A fresh install of 0.5 is llmgw--0.3.sql followed by llmgw--0.3--0.4.sql
-- and this file (there is no llmgw--0.4.sql or llmgw--0.5.sql): CREATE
-- EXTENSION takes that path by itself, so the fresh schema and the updated
-- one are made by the same statements.

-- ==== Batch items retried synchronously (docs/batch.md) ====
-- A batch job with retry => 'sync' sends its expired items, and its items
-- failed by a rate limit or a server error, through the synchronous path:
-- when their batch ends, each becomes an asynchronous call (a row of
-- llmgw.async_calls, made by the workers as llmgw.submit's calls are) of
-- the job's owner, with the key and team the batch was submitted as, in
-- the transaction that ends the batch.  The worker that makes the call
-- writes its answer into the job's row (llmgw.batch_sync_finish) in the
-- transaction that writes its usage rows.

ALTER TABLE llmgw.jobs DROP CONSTRAINT jobs_retry_check;
ALTER TABLE llmgw.jobs ADD CONSTRAINT jobs_retry_check CHECK (retry IN ('batch', 'sync', 'none'));
COMMENT ON COLUMN llmgw.jobs.retry IS 'Batch jobs: what becomes of expired items and items failed by a rate limit or a server error: batch (again in a later batch, at most 3 attempts), sync (called once through the synchronous path, as an asynchronous call of the job''s owner) or none';
COMMENT ON COLUMN llmgw.job_progress.retry IS 'Batch jobs: batch (expired and retryable items go again in a later batch, at most 3 attempts), sync (they are called synchronously, once) or none';

ALTER TABLE llmgw.batch_items ADD COLUMN sync_call bigint;
COMMENT ON COLUMN llmgw.batch_items.sync_call IS 'The asynchronous call (llmgw.async_calls.id, usage.async_id) that retries it synchronously (its job''s retry => ''sync''; NULL: none)';
CREATE INDEX batch_items_sync_call_idx ON llmgw.batch_items (sync_call) WHERE sync_call IS NOT NULL;
COMMENT ON INDEX llmgw.batch_items_sync_call_idx IS 'The batch item a synchronous retry answers';

ALTER TABLE llmgw.batches ADD COLUMN retry text
    CONSTRAINT batches_retry_check CHECK (retry IN ('batch', 'sync', 'none'));
COMMENT ON COLUMN llmgw.batches.retry IS 'A batch without a job (llmgw.submit_batch''s retry): what becomes of its expired and retryable items, as a job''s retry (NULL: none; a job''s batches follow their job)';

ALTER TABLE llmgw.async_calls ADD COLUMN job_id bigint, ADD COLUMN batch_id bigint;
COMMENT ON COLUMN llmgw.async_calls.job_id IS 'The batch job whose item it retries synchronously (its usage rows carry it; NULL: a call of llmgw.submit)';
COMMENT ON COLUMN llmgw.async_calls.batch_id IS 'The batch whose item it retries synchronously (batch_items.sync_call names the call; NULL: a call of llmgw.submit)';
GRANT SELECT (job_id, batch_id) ON llmgw.async_calls TO llmgw_admin, llmgw_user;

-- Internal: a batch job ends when none of its batches and none of its
-- synchronous retries is outstanding (the caller holds the job's row)
CREATE FUNCTION llmgw.job_try_finish(job bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF job IS NULL
       OR EXISTS (SELECT 1 FROM llmgw.batches b
                   WHERE b.job_id = job
                     AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled'))
       OR EXISTS (SELECT 1 FROM llmgw.async_calls a
                   WHERE a.status IN ('queued', 'running') AND a.job_id = job) THEN
        RETURN;
    END IF;
    UPDATE llmgw.jobs j
       SET status = CASE WHEN EXISTS (SELECT 1 FROM llmgw.batches b
                                       WHERE b.job_id = j.id AND b.cancel_requested)
                         THEN 'stopped' ELSE 'finished' END,
           finished_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE j.id = job AND j.status = 'running';
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.job_try_finish(bigint) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.job_try_finish(bigint) IS 'Internal (workers): end a running batch job once none of its batches and none of its synchronous retries is outstanding';

-- Internal (worker 0): a batch's results are all written: the items
-- without one end as the batch ended (their reservations given back), the
-- items its job retries go into a new batch (retry => 'batch') or become
-- asynchronous calls of the job's owner (retry => 'sync'), in this same
-- transaction, the batch takes its final state, and its job finishes when
-- nothing of it is outstanding
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
    how text;
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
    IF bt.job_id IS NOT NULL THEN
        UPDATE llmgw.jobs j
           SET rows_failed = j.rows_failed + CASE WHEN final IN ('completed', 'failed') THEN left_over ELSE 0 END,
               last_error = coalesce(batch_finish.error, j.last_error),
               updated_at = clock_timestamp()
         WHERE j.id = bt.job_id
        RETURNING * INTO jb;
    END IF;
    -- the retries as the job says (while it runs), or as the batch says
    -- (llmgw.submit_batch without a job); none once a cancel was asked
    how := CASE WHEN bt.cancel_requested THEN 'none'
                WHEN bt.job_id IS NULL THEN coalesce(bt.retry, 'none')
                WHEN jb.status = 'running' THEN jb.retry
                ELSE 'none' END;

    -- retry => 'batch': expired items, and items failed by a rate limit or
    -- a server error, at most 3 attempts each, go again in a new batch
    IF how = 'batch' THEN
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
                -- a batch without a job passes its retry on
                UPDATE llmgw.batches b SET retry = bt.retry WHERE b.id = q.batch_id;
                WITH m AS (
                    UPDATE llmgw.batch_items i SET retried_in = q.batch_id
                     WHERE i.batch_id = batch AND i.custom_id = ANY (again.ids[1:q.queued])
                    RETURNING i.state)
                UPDATE llmgw.jobs
                   SET rows_failed = rows_failed - (SELECT count(*) FROM m WHERE m.state = 'failed')
                 WHERE jobs.id = bt.job_id;
            EXCEPTION WHEN SQLSTATE 'LG010' THEN
                UPDATE llmgw.jobs SET last_error = 'LG010: ' || SQLERRM WHERE jobs.id = bt.job_id;
                UPDATE llmgw.batches b SET last_error = 'LG010: ' || SQLERRM
                 WHERE b.id = batch AND bt.job_id IS NULL;
            END;
        END IF;
    END IF;

    -- retry => 'sync': each item becomes an asynchronous call of the
    -- batch's owner (its key, its team), made by the workers through the
    -- normal path; its reservation was given back when it ended, the call
    -- reserves its own.  llmgw.batch_sync_finish writes its answer.
    IF how = 'sync' AND bt.endpoint = 'chat' THEN
        WITH i AS MATERIALIZED (
            SELECT i.custom_id, i.request, i.state, nextval('llmgw.async_calls_id_seq') AS call
              FROM llmgw.batch_items i
             WHERE i.batch_id = batch AND i.retried_in IS NULL AND i.sync_call IS NULL
               AND (i.state = 'expired' OR (i.state = 'failed' AND i.error_class IN ('rate_limit', 'server')))
             ORDER BY i.custom_id),
        a AS (
            INSERT INTO llmgw.async_calls (id, owner, model, request, key_hash, max_retries, timeout_ms,
                                           job_id, batch_id)
            OVERRIDING SYSTEM VALUE
            SELECT i.call, bt.owner, bt.model, i.request,
                   (SELECT k.hash FROM llmgw.virtual_keys k WHERE k.id = bt.key_id),
                   current_setting('llmgw.max_retries')::integer, 0, bt.job_id, batch
              FROM i ORDER BY i.call
            RETURNING id),
        m AS (
            UPDATE llmgw.batch_items bi SET sync_call = i.call
              FROM i
             WHERE bi.batch_id = batch AND bi.custom_id = i.custom_id
            RETURNING i.state)
        UPDATE llmgw.jobs
           SET rows_failed = rows_failed - (SELECT count(*) FROM m WHERE m.state = 'failed')
         WHERE jobs.id = bt.job_id;
    END IF;

    PERFORM llmgw.job_try_finish(bt.job_id);
END
$fn$;
COMMENT ON FUNCTION llmgw.batch_finish(bigint, text, text) IS 'Internal (worker 0): end a batch whose results are written, retry its job''s expired and retryable items (in a new batch, or as synchronous calls), and end its job with the last of its work';

-- Queue chat requests (llm_chat's, without their model) as one provider
-- batch of a model; returns the batch's id at once.  Worker 0 uploads it
-- once the transaction commits.  With job_id and row_keys (llmgw.enrich),
-- each answer goes into that job's row of that key.  The worst case of its
-- requests is reserved on the caller's hard budgets: when they do not all
-- fit, the batch holds the largest prefix that does (a NOTICE says how
-- many; batches.requests), and none: LG010.  retry (a batch without a
-- job): what becomes of its expired and retryable items, as a job's retry.
DROP FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[]);
CREATE FUNCTION llmgw.submit_batch(requests jsonb[], model text, job_id bigint DEFAULT NULL,
                                   row_keys text[] DEFAULT NULL, retry text DEFAULT NULL)
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
    IF retry IS NOT NULL AND retry NOT IN ('batch', 'sync', 'none') THEN
        RAISE EXCEPTION 'retry must be batch, sync or none' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retry IS NOT NULL AND job_id IS NOT NULL THEN
        RAISE EXCEPTION 'the batches of a job retry as their job says'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave retry NULL; CALL llmgw.enrich(..., retry => ...) sets the job''s.';
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
    IF retry IS NOT NULL THEN
        UPDATE llmgw.batches b SET retry = submit_batch.retry WHERE b.id = q.batch_id;
    END IF;
    RETURN q.batch_id;
END
$fn$;

-- Queue texts to embed as one provider batch (/v1/embeddings) of an
-- embedding model; the vectors land in batch_items.answer (the provider's
-- embeddings response).  Budgets as llmgw.submit_batch.
REVOKE ALL ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[], text) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.submit_batch(jsonb[], text, bigint, text[], text) IS 'Queue chat requests as one provider batch (Batch API, half price, within 24 hours); returns the batch id; retry (a batch without a job): batch, sync or none';

CREATE OR REPLACE FUNCTION llmgw.batch_split(batch bigint, moved text[]) RETURNS bigint
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
    -- team, budgets and retry (its items keep their reservations)
    INSERT INTO llmgw.batches (job_id, owner, model, requests, cancel_requested, endpoint, key_id,
                               team_id, charged_on, reserved_on, retry)
    VALUES (bt.job_id, bt.owner, bt.model, cardinality(moved), bt.cancel_requested, bt.endpoint,
            bt.key_id, bt.team_id, bt.charged_on, bt.reserved_on, bt.retry)
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
COMMENT ON FUNCTION llmgw.batch_split(bigint, text[]) IS 'Internal (worker 0): move items of a batch not sent yet to a new batch of the same job and retry (a provider''s limits)';

-- Internal (the worker that made the call, in the transaction of its usage
-- rows): the outcome of a synchronous retry of a batch item.  An answer
-- goes into the job's row, with the owner's rights and only if the row has
-- none yet (as llmgw.batch_ingest writes one), else into the item's answer
-- (a batch without a job); an error counts the row failed and is the job's
-- last_error.  It never raises: the usage rows of the call are written
-- whatever becomes of its answer.
CREATE FUNCTION llmgw.batch_sync_finish(call bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    a llmgw.async_calls;
    it llmgw.batch_items;
    bt llmgw.batches;
    j llmgw.jobs;
    answer text;
    n bigint := 0;
    failure text;
BEGIN
    SELECT * INTO a FROM llmgw.async_calls c WHERE c.id = call;
    IF NOT FOUND OR a.batch_id IS NULL OR a.status NOT IN ('done', 'error') THEN
        RETURN;
    END IF;
    SELECT * INTO it FROM llmgw.batch_items i WHERE i.sync_call = call AND i.batch_id = a.batch_id;
    SELECT * INTO bt FROM llmgw.batches b WHERE b.id = a.batch_id;
    IF it.custom_id IS NULL OR bt.id IS NULL THEN
        RETURN;
    END IF;
    IF bt.job_id IS NULL THEN
        UPDATE llmgw.batch_items i SET answer = a.answer
         WHERE i.batch_id = bt.id AND i.custom_id = it.custom_id AND a.status = 'done';
        RETURN;
    END IF;
    SELECT * INTO j FROM llmgw.jobs WHERE jobs.id = bt.job_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF a.status = 'error' THEN
        failure := coalesce(a.sqlstate, 'XX000') || ': ' || coalesce(a.error, 'the synchronous retry failed');
    ELSE
        answer := a.answer -> 'message' ->> 'content';
        IF answer IS NULL THEN
            failure := 'the synchronous retry of item ' || it.custom_id || ' answered no text';
        ELSE
            BEGIN
                -- as llmgw.batch_ingest writes: the owner's rights, the
                -- default search_path, only a row still without an answer
                PERFORM set_config('role', bt.owner, true);
                PERFORM set_config('search_path', '"$user", public', true);
                EXECUTE format('UPDATE %s t SET %I = $2 WHERE t.%I = $1::%s AND t.%I::text = $1 AND t.%I IS NULL',
                               j.source, j.output_column, j.key_column,
                               coalesce((SELECT format_type(at.atttypid, at.atttypmod) FROM pg_attribute at
                                          WHERE at.attrelid = j.source::regclass AND at.attname = j.key_column
                                            AND NOT at.attisdropped), 'text'),
                               j.key_column, j.output_column)
                    USING it.row_key, answer;
                GET DIAGNOSTICS n = ROW_COUNT;
                PERFORM set_config('role', 'none', true);
                PERFORM set_config('search_path', 'pg_catalog, pg_temp', true);
            EXCEPTION WHEN OTHERS THEN
                -- the subtransaction gives back the role and search_path too
                failure := SQLSTATE || ': ' || SQLERRM;
            END;
            IF failure IS NULL AND n = 0 THEN
                failure := 'the answer could not be written into ' || j.source;
            END IF;
        END IF;
    END IF;
    -- the job's row, then its end: whoever ends the job's last work ends it
    UPDATE llmgw.jobs
       SET rows_done = rows_done + CASE WHEN failure IS NULL THEN 1 ELSE 0 END,
           rows_failed = rows_failed + CASE WHEN failure IS NULL THEN 0 ELSE 1 END,
           last_error = coalesce(failure, last_error),
           updated_at = clock_timestamp()
     WHERE jobs.id = j.id;
    PERFORM llmgw.job_try_finish(j.id);
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.batch_sync_finish(bigint) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batch_sync_finish(bigint) IS 'Internal (workers): write the outcome of the synchronous retry of a batch item (its job''s row, or the item''s answer) with the call''s usage rows';

CREATE OR REPLACE PROCEDURE llmgw.enrich(
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
    IF retry IS NULL OR retry NOT IN ('batch', 'sync', 'none') THEN
        RAISE EXCEPTION 'retry must be batch, sync or none' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'batch sends expired and retryable items again in a later batch, sync calls them synchronously, none leaves them.';
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
        -- rows already in a batch not written yet, or in a synchronous
        -- retry not answered yet, are not sent again
        skip := ARRAY(SELECT i.row_key FROM llmgw.batch_items i
                        JOIN llmgw.batches b ON b.id = i.batch_id
                        JOIN llmgw.jobs j ON j.id = b.job_id
                       WHERE i.state = 'pending' AND j.source = qualified
                         AND j.output_column = enrich.output_column
                      UNION ALL
                      SELECT i.row_key FROM llmgw.async_calls a
                        JOIN llmgw.batch_items i ON i.sync_call = a.id
                        JOIN llmgw.jobs j ON j.id = a.job_id
                       WHERE a.status IN ('queued', 'running') AND j.source = qualified
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
COMMENT ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text) IS 'Fill a column from a prompt over each row, in committed, resumable chunks; only rows the caller may update; mode => ''batch'' goes through the provider''s Batch API (retry: what becomes of its expired and retryable items: batch, sync or none)';
