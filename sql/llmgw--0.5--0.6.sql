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

-- ==== llmgw.cancel_job reaches a job's synchronous retries (docs/batch.md) ====
-- A batch job's synchronous retries (retry => 'sync') are asynchronous
-- calls.  llmgw.cancel_job ends those still queued (never sent: no
-- provider request, no usage row, nothing reserved) and, once it commits,
-- worker 0 has the workers abort those in flight as a cancelled statement
-- aborts its calls (their usage rows say cancelled); a call of a cancelled
-- job taken later (after a restart) ends without being sent.  A cancelled
-- retry leaves its row NULL and counts neither done nor failed.  The job
-- ends stopped once nothing of it is outstanding.

ALTER TABLE llmgw.jobs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN llmgw.jobs.cancel_requested IS 'llmgw.cancel_job asked to cancel it (its batches and its synchronous retries): it ends stopped';
-- the jobs cancelled before: their batches say so
UPDATE llmgw.jobs j SET cancel_requested = true
 WHERE EXISTS (SELECT 1 FROM llmgw.batches b WHERE b.job_id = j.id AND b.cancel_requested);
COMMENT ON COLUMN llmgw.async_calls.status IS 'queued, running (a worker holds it), done or error (sqlstate 57014: cancelled with its job by llmgw.cancel_job)';

-- Internal (llmgw.cancel_job): once the transaction commits, worker 0 asks
-- the workers to abort the calls in flight of the jobs cancelled
CREATE FUNCTION llmgw.cancel_job_calls() RETURNS void
AS 'MODULE_PATHNAME', 'llmgw_cancel_job_calls'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION llmgw.cancel_job_calls() FROM PUBLIC;
COMMENT ON FUNCTION llmgw.cancel_job_calls() IS 'Internal (llmgw.cancel_job): once the transaction commits, worker 0 has the workers abort the calls in flight of the cancelled jobs';

-- Internal: a batch job ends when none of its batches and none of its
-- synchronous retries is outstanding (the caller holds the job's row):
-- stopped if it was cancelled, else finished
CREATE OR REPLACE FUNCTION llmgw.job_try_finish(job bigint) RETURNS void
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
       SET status = CASE WHEN j.cancel_requested THEN 'stopped' ELSE 'finished' END,
           finished_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE j.id = job AND j.status = 'running';
END
$fn$;

-- Cancel a batch job: its provider batches are cancelled (their results so
-- far are still written), its synchronous retries not sent yet end unsent
-- and those in flight are aborted once this commits; rows left without an
-- answer stay NULL.  It ends stopped once nothing of it is outstanding.
CREATE OR REPLACE FUNCTION llmgw.cancel_job(id bigint) RETURNS void
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
    IF j.status <> 'running' THEN
        RETURN;
    END IF;
    UPDATE llmgw.jobs SET cancel_requested = true, updated_at = clock_timestamp()
     WHERE jobs.id = cancel_job.id;
    UPDATE llmgw.batches b SET cancel_requested = true
     WHERE b.job_id = cancel_job.id
       AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled');
    -- its synchronous retries no worker took yet are never sent; a worker
    -- that holds one (it takes them under a row lock) aborts it once this
    -- commits, and writes its end as the worker of any cancelled call does
    UPDATE llmgw.async_calls a
       SET status = 'error', sqlstate = '57014', error = 'cancelled with its job by llmgw.cancel_job before it was sent',
           finished_at = clock_timestamp(), lease_until = NULL
     WHERE a.job_id = cancel_job.id AND a.status = 'queued';
    PERFORM llmgw.cancel_job_calls();
    PERFORM llmgw.job_try_finish(cancel_job.id);
END
$fn$;
COMMENT ON FUNCTION llmgw.cancel_job(bigint) IS 'Cancel a batch job: its provider batches (results already there are still written) and its synchronous retries (those not sent are never sent, those in flight are aborted); it ends stopped';

-- Internal (the worker that made the call, in the transaction of its usage
-- rows): the outcome of a synchronous retry of a batch item.  An answer
-- goes into the job's row, with the owner's rights and only if the row has
-- none yet (as llmgw.batch_ingest writes one), else into the item's answer
-- (a batch without a job); an error counts the row failed and is the job's
-- last_error; a retry cancelled with its job (57014) counts neither.  It
-- never raises: the usage rows of the call are written whatever becomes of
-- its answer.
CREATE OR REPLACE FUNCTION llmgw.batch_sync_finish(call bigint) RETURNS void
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
    IF a.status = 'error' AND a.sqlstate = '57014' THEN
        -- cancelled with its job: the row stays NULL, neither done nor failed
        UPDATE llmgw.jobs SET updated_at = clock_timestamp() WHERE jobs.id = j.id;
        PERFORM llmgw.job_try_finish(j.id);
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
COMMENT ON FUNCTION llmgw.batch_sync_finish(bigint) IS 'Internal (workers): write the outcome of the synchronous retry of a batch item (its job''s row, or the item''s answer) with the call''s usage rows; a retry cancelled with its job counts neither done nor failed';
