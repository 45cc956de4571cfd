/* llmgw--0.7--0.8.sql: what changed after 0.7 (each section names its doc) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.8'" to load this file. \quit

-- A fresh install of 0.8 is llmgw--0.3.sql followed by the updates from
-- 0.3 to 0.8 (there is no llmgw--0.8.sql): CREATE EXTENSION takes that
-- path by itself, so the fresh schema and the updated one are made by the
-- same statements.

-- ==== Batch items updated in place (docs/batch.md, "Worker 0") ====
-- An item's result changes its state, request id and error, and no
-- column of an index: the update stays on the item's page (a heap-only
-- tuple, no new index entry) when the page has room for it, which a fill
-- factor of 45 leaves.  Two partial indexes named state in their
-- predicates, so that no update of an item could be heap-only; pending
-- items belong to batches not ended yet (llmgw.batch_finish ends every
-- item still pending), so what looked for them goes through those batches
-- (batches_open_idx) and the items' primary key instead.
DROP INDEX llmgw.batch_items_pending_idx;
DROP INDEX llmgw.batch_items_reserved_idx;
ALTER TABLE llmgw.batch_items SET (fillfactor = 45);

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
         WHERE b.job_id = jobs.id
           AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled')) AS reserved,
       retry
  FROM llmgw.jobs;

-- llmgw.enrich: the rows already in a batch not written yet are found
-- through the batches not ended yet
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
    retry text DEFAULT 'batch',
    dimensions integer DEFAULT NULL)
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
    w record;
    done_keys text[];
    answers text[];
    done bigint;
    failed bigint;
    skipped bigint;
    chunk_error text;
    stop_reason text;
    limited bigint;
    still_pending bigint;
    backoff float8 := 0.5;
    pending text := format('%I IS NULL AND NOT (%I::text = ANY ($1))', output_column, key_column);
    after text;
    wrapped boolean := false;
    qualified text;
    nbatches integer := 0;
    b bigint;
    queued integer;
    held bigint := 0;
    held_by text;
    tg record;
    embeddings boolean;
    unsent bigint := 0;
    misfit text;
    column_type text;
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
    -- the column's type says what goes into it: an embedding, or text; and
    -- what the answers become must fit it before anything is paid for (a
    -- text answer for a jsonb column: 42804), which planning the write
    -- tells (EXPLAIN: no trigger fires)
    SELECT * INTO tg FROM llmgw.answer_target(source, key_column, output_column);
    embeddings := tg.embedding;
    column_type := (SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = source AND a.attname = output_column);
    EXECUTE format('EXPLAIN UPDATE %s t SET %I = %s FROM (SELECT NULL::text AS answer) a WHERE false',
                   tg.relation, output_column, tg.value_sql);
    IF embeddings AND (system IS NOT NULL OR max_tokens IS NOT NULL) THEN
        RAISE EXCEPTION 'system and max_tokens do not apply to embeddings'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Column %s of %s is of type %s: llmgw.enrich embeds each row''s prompt with model "%s".',
                                  output_column, source, column_type, model),
                  HINT = 'Leave system and max_tokens out.';
    END IF;
    PERFORM llmgw.check_dimensions(dimensions);
    IF dimensions IS NOT NULL AND NOT embeddings THEN
        RAISE EXCEPTION 'dimensions applies to embeddings only'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Column %s of %s is of type %s: llmgw.enrich writes each row''s answer as text.',
                                  output_column, source, column_type),
                  HINT = 'An embedding column is real[], double precision[], vector or halfvec.';
    END IF;
    -- a vector(n) column holds n values: another dimension would fail every row
    IF dimensions <> tg.dimensions THEN
        RAISE EXCEPTION 'dimensions % does not fit column % of %, of type %', dimensions,
                        output_column, source, column_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Pass dimensions => %s, or leave it out.', tg.dimensions);
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
                         AND b.state NOT IN ('completed', 'failed', 'expired', 'cancelled')
                         AND j.output_column = enrich.output_column
                      UNION ALL
                      SELECT i.row_key FROM llmgw.async_calls a
                        JOIN llmgw.batch_items i ON i.sync_call = a.id
                        JOIN llmgw.jobs j ON j.id = a.job_id
                       WHERE a.status IN ('queued', 'running') AND j.source = qualified
                         AND j.output_column = enrich.output_column);
        IF embeddings THEN
            -- a NULL prompt has nothing to embed: skipped, not sent
            EXECUTE format('SELECT count(*) FROM %s WHERE %s AND (%s) IS NULL', source, pending, prompt)
                INTO unsent USING skip;
        END IF;
        FOR r IN EXECUTE format(
            'SELECT (n - 1) / $2 AS part, array_agg(k ORDER BY n) AS keys, array_agg(p ORDER BY n) AS prompts
               FROM (SELECT pg_catalog.row_number() OVER (ORDER BY %I) AS n, %I::text AS k, (%s)::text AS p
                       FROM %s WHERE %s AND ($3 OR (%s) IS NOT NULL)) c
              GROUP BY 1 ORDER BY 1',
            key_column, key_column, prompt, source, pending, prompt)
            USING skip, current_setting('llmgw.batch_max_requests')::integer, NOT embeddings
        LOOP
            -- a hard budget too small for the whole job: the largest prefix
            -- of its rows that fits is queued, the rest stays NULL
            IF held > 0 THEN
                held := held + cardinality(r.keys);
                CONTINUE;
            END IF;
            BEGIN
                IF embeddings THEN
                    b := llmgw.submit_embedding_batch(r.prompts, model, job, r.keys, NULL, dimensions);
                ELSE
                    b := llmgw.submit_batch(
                        ARRAY(SELECT pg_catalog.jsonb_build_object('messages',
                                         CASE WHEN system IS NULL THEN '[]'::jsonb
                                              ELSE pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('role', 'system', 'content', system)) END
                                         || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('role', 'user', 'content', p)))
                                     || CASE WHEN max_tokens IS NULL THEN '{}'::jsonb
                                             ELSE pg_catalog.jsonb_build_object('max_tokens', max_tokens) END
                                FROM unnest(r.prompts) WITH ORDINALITY u(p, o) ORDER BY o),
                        model, job, r.keys);
                END IF;
            EXCEPTION WHEN SQLSTATE 'LG010' THEN
                -- nothing fits at all: the error (LG010), and no job
                IF nbatches = 0 THEN
                    RAISE;
                END IF;
                b := NULL;
                held_by := SQLERRM;
            END;
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
        UPDATE llmgw.jobs j SET rows_skipped = unsent WHERE j.id = job AND unsent > 0;
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
        -- security) and not locked by a concurrent run.  A chunk starts
        -- after the last key of the one before (the key's index finds it),
        -- not at the table's first row: that would read every row already
        -- written again at every chunk.
        EXECUTE format('SELECT array_agg(k ORDER BY nk), array_agg(p ORDER BY nk)
                          FROM (SELECT %I AS nk, %I::text AS k, (%s)::text AS p FROM %s WHERE %s%s
                                 ORDER BY %I LIMIT %s FOR UPDATE SKIP LOCKED) c',
                       key_column, key_column, prompt, source, pending,
                       CASE WHEN after IS NOT NULL THEN format(' AND %I > $2::%s', key_column, tg.key_type) END,
                       key_column, chunk_size)
            INTO keys, prompts USING skip, after;
        IF keys IS NULL AND after IS NOT NULL AND NOT wrapped THEN
            -- once more from the first row: rows a concurrent run held
            -- and gave back, or added behind the last chunk
            after := NULL;
            wrapped := true;
            CONTINUE;
        END IF;
        EXIT WHEN keys IS NULL;

        done := 0; failed := 0; skipped := 0; limited := 0;
        done_keys := '{}'; answers := '{}';
        -- the job's calls carry its id (usage.job_id), so that its spend can be summed
        PERFORM set_config('llmgw.job', job::text, true);
        -- a chat call per row, or the chunk's embeddings in one request
        FOR r IN EXECUTE CASE WHEN embeddings THEN 'SELECT * FROM llmgw.enrich_embed($1, $2, $6)'
                              ELSE 'SELECT * FROM @extschema@.llm_complete_many($1, $2, $3, $4, NULL, $5, ''continue'')' END
            USING prompts, model, system, max_tokens, concurrency, dimensions
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
        -- one UPDATE per chunk; a row that cannot be written (a vector of
        -- another dimension, a constraint) fails alone and is not sent again
        SELECT * INTO w FROM llmgw.write_answers(source::text, key_column, output_column, done_keys, answers);
        done := cardinality(w.written);
        IF cardinality(w.failed) > 0 THEN
            failed := failed + cardinality(w.failed);
            skip := skip || w.failed;
            chunk_error := w.errors[cardinality(w.errors)];
        END IF;
        -- embeddings of another dimension than a vector(n) column's: every
        -- row would fail alike, so the job stops rather than pay for them
        IF tg.dimensions IS NOT NULL AND cardinality(answers) > 0
           AND cardinality(string_to_array(btrim(answers[1], '[]'), ',')) <> tg.dimensions THEN
            misfit := format('model "%s" gives embeddings of %s dimensions, column %s of %s holds %s',
                             model, cardinality(string_to_array(btrim(answers[1], '[]'), ',')),
                             output_column, source, column_type);
        END IF;
        -- a chunk whose rows are all still pending would be taken again forever
        EXECUTE format('SELECT count(*) FROM %s WHERE %s AND %I = ANY ($2::%s[])',
                       source, pending, key_column, tg.key_type)
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
        IF misfit IS NOT NULL THEN
            UPDATE llmgw.jobs SET status = 'stopped', finished_at = clock_timestamp(),
                   updated_at = clock_timestamp()
             WHERE id = job;
            COMMIT;
            RAISE WARNING 'llmgw.enrich job % stopped: %', job, misfit
                USING HINT = 'Give the column the model''s dimension, or use a model of the column''s; then CALL llmgw.enrich again: the rows are still NULL.';
            RETURN;
        END IF;
        IF stop_reason IS NOT NULL THEN
            UPDATE llmgw.jobs SET status = 'stopped', last_error = 'LG010: ' || stop_reason,
                   finished_at = clock_timestamp(), updated_at = clock_timestamp()
             WHERE id = job;
            COMMIT;
            RAISE WARNING 'llmgw.enrich job % stopped: %', job, stop_reason
                USING HINT = 'Rows not done yet stay NULL; CALL llmgw.enrich again once the budget allows.';
            RETURN;
        END IF;
        -- rows rate limited are taken again: the next chunk starts where this one did
        IF limited = 0 THEN
            after := keys[cardinality(keys)];
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
