/* llmgw--0.5--0.6.sql: what changed after 0.5 (each section names its doc) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.6'" to load this file. \quit

-- A fresh install of 0.6 is llmgw--0.3.sql followed by llmgw--0.3--0.4.sql,
-- llmgw--0.4--0.5.sql and this file (there is no llmgw--0.4.sql, 0.5 or
-- 0.6 script): CREATE EXTENSION takes that path by itself, so the fresh
-- schema and the updated one are made by the same statements.

-- ==== Embeddings into vector columns (docs/functions.md, docs/batch.md) ====
-- llmgw.enrich fills a column of embeddings when the column's type takes
-- one (real[], double precision[], pgvector's vector and halfvec, or a
-- domain over them): it embeds each row's prompt, synchronously (a chunk's
-- prompts in one provider request) or through the providers' Batch APIs
-- (/v1/embeddings lines).  An answer reaches a row only through
-- llmgw.write_answers (chat answers too): by the column type's own input
-- function, into rows still NULL, a failing row failing alone.

-- Internal: how answers are written into a column: the table's qualified
-- name, the key's type, the SQL expression of a row's value from a.answer
-- (text), and the dimension a vector(n) or halfvec(n) column holds.  An
-- embedding column (embedding: true) reads the embedding's text form, a
-- JSON array of numbers ('[x, y, ...]'), by its type's input function: as
-- is for vector and halfvec, in braces for the arrays; any other column
-- takes the answer's text by assignment.  The names come qualified
-- (search_path pg_catalog), so that the expression means the same whatever
-- path it runs under.
CREATE FUNCTION llmgw.answer_target(source regclass, key_column text, output_column text,
                                    OUT relation text, OUT key_type text, OUT value_sql text,
                                    OUT embedding boolean, OUT dimensions integer)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    col_type oid;
    col_typmod integer;
    base oid;
BEGIN
    relation := source::text;
    SELECT max(format_type(a.atttypid, a.atttypmod)) FILTER (WHERE a.attname = key_column),
           max(a.atttypid) FILTER (WHERE a.attname = output_column),
           max(a.atttypmod) FILTER (WHERE a.attname = output_column)
      INTO key_type, col_type, col_typmod
      FROM pg_attribute a
     WHERE a.attrelid = source AND a.attname IN (key_column, output_column) AND a.attnum > 0
       AND NOT a.attisdropped;
    IF key_type IS NULL OR col_type IS NULL THEN
        RAISE EXCEPTION 'column "%" of relation % does not exist',
            CASE WHEN key_type IS NULL THEN key_column ELSE output_column END, relation
            USING ERRCODE = 'undefined_column';
    END IF;
    -- a domain takes what its base type takes (its constraints checked)
    base := col_type;
    WHILE (SELECT t.typtype FROM pg_type t WHERE t.oid = base) = 'd' LOOP
        base := (SELECT t.typbasetype FROM pg_type t WHERE t.oid = base);
    END LOOP;
    IF base IN ('real[]'::regtype, 'double precision[]'::regtype) THEN
        value_sql := format('pg_catalog.translate(a.answer, ''[]'', ''{}'')::%s',
                            format_type(col_type, col_typmod));
    ELSIF EXISTS (SELECT 1 FROM pg_type t
                    JOIN pg_depend d ON d.classid = 'pg_type'::regclass AND d.objid = t.oid
                                    AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
                    JOIN pg_extension e ON e.oid = d.refobjid
                   WHERE t.oid = base AND t.typname IN ('vector', 'halfvec') AND e.extname = 'vector') THEN
        value_sql := format('a.answer::%s', format_type(col_type, col_typmod));
        -- vector(n), halfvec(n): the typmod is n
        dimensions := CASE WHEN col_type = base AND col_typmod > 0 THEN col_typmod END;
    ELSE
        value_sql := 'a.answer';
    END IF;
    embedding := value_sql <> 'a.answer';
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.answer_target(regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.answer_target(regclass, text, text) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.answer_target(regclass, text, text) IS 'Internal (llmgw.enrich, llmgw.write_answers): how answers are written into a column: the table, the key''s type, the value''s SQL expression, whether the column takes embeddings (real[], double precision[], vector, halfvec, domains over them), and the dimension of a vector(n) or halfvec(n)';

-- Internal: write answers (text) into the rows of their keys whose output
-- column is still NULL: embeddings by the column type's input function
-- (llmgw.answer_target), with the rights of the role in force, or of
-- as_role (the owner of a batch job, under the default search_path for
-- the table's triggers).  The keys go in one UPDATE; when it fails, one
-- row at a time, so that only the rows at fault fail (a vector of the
-- wrong dimension, a constraint, a trigger).  Never raises: a key is
-- written, or failed with its error.
CREATE FUNCTION llmgw.write_answers(source text, key_column text, output_column text,
                                    keys text[], answers text[], as_role name DEFAULT NULL,
                                    OUT written text[], OUT failed text[], OUT errors text[])
LANGUAGE plpgsql VOLATILE
-- no SET search_path: the table's triggers run under the caller's path (a
-- batch job's under the default one); every name here is qualified
AS $fn$
DECLARE
    tg record;
    stmt text;
    one text[];
    problem text;
    prev_role text := pg_catalog.current_setting('role');
    prev_path text := pg_catalog.current_setting('search_path');
    prev_seqscan text := pg_catalog.current_setting('enable_seqscan');
BEGIN
    written := '{}';
    failed := '{}';
    errors := '{}';
    IF coalesce(pg_catalog.cardinality(keys), 0) = 0 THEN
        RETURN;
    END IF;
    BEGIN
        SELECT * INTO tg FROM llmgw.answer_target(source::regclass, key_column, output_column);
        -- the key compared in its own type and as text (the key as enrich
        -- read it); the rows found by the keys as an array of the key's
        -- type, and, where an index leads with the key, through it: the
        -- planner, which sees a column NULL everywhere until the job fills
        -- it, would rather read the whole table for every chunk
        stmt := pg_catalog.format(
            'WITH w AS (UPDATE %s t SET %I = %s FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) a(k, answer)
                         WHERE t.%I = ANY ($1::%s[]) AND t.%I = a.k::%s
                           AND t.%I::pg_catalog.text OPERATOR(pg_catalog.=) a.k
                           AND t.%I IS NULL
                         RETURNING a.k)
             SELECT pg_catalog.array_agg(w.k) FROM w',
            tg.relation, output_column, tg.value_sql, key_column, tg.key_type, key_column,
            tg.key_type, key_column, output_column);
        IF EXISTS (SELECT FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
                       ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                    WHERE i.indrelid = source::regclass AND a.attname = key_column
                      AND i.indpred IS NULL AND i.indexprs IS NULL) THEN
            PERFORM pg_catalog.set_config('enable_seqscan', 'off', true);
        END IF;
        IF as_role IS NOT NULL THEN
            PERFORM pg_catalog.set_config('role', as_role, true);
            PERFORM pg_catalog.set_config('search_path', '"$user", public', true);
        END IF;
    EXCEPTION WHEN OTHERS THEN
        problem := SQLSTATE || ': ' || SQLERRM;
    END;
    IF problem IS NULL THEN
        BEGIN
            EXECUTE stmt INTO written USING keys, answers;
        EXCEPTION WHEN OTHERS THEN
            problem := SQLSTATE || ': ' || SQLERRM;
        END;
        IF problem IS NOT NULL AND pg_catalog.cardinality(keys) > 1 THEN
            problem := NULL;
            FOR i IN 1 .. pg_catalog.cardinality(keys) LOOP
                BEGIN
                    EXECUTE stmt INTO one USING ARRAY[keys[i]], ARRAY[answers[i]];
                    written := written OPERATOR(pg_catalog.||) one;
                EXCEPTION WHEN OTHERS THEN
                    failed := failed OPERATOR(pg_catalog.||) keys[i];
                    errors := errors OPERATOR(pg_catalog.||) (SQLSTATE || ': ' || SQLERRM);
                END;
            END LOOP;
        END IF;
        IF as_role IS NOT NULL THEN
            PERFORM pg_catalog.set_config('role', prev_role, true);
            PERFORM pg_catalog.set_config('search_path', prev_path, true);
        END IF;
        PERFORM pg_catalog.set_config('enable_seqscan', prev_seqscan, true);
    END IF;
    written := coalesce(written, '{}');
    -- the others: all failed alike, or not written (gone, hidden by
    -- row-level security, answered meanwhile)
    SELECT failed OPERATOR(pg_catalog.||) coalesce(pg_catalog.array_agg(k.k), '{}'),
           errors OPERATOR(pg_catalog.||) coalesce(pg_catalog.array_agg(coalesce(problem,
                      'the answer could not be written into ' || source)), '{}')
      INTO failed, errors
      FROM (SELECT pg_catalog.unnest(keys) EXCEPT SELECT pg_catalog.unnest(written)
            EXCEPT SELECT pg_catalog.unnest(failed)) k(k);
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.write_answers(text, text, text, text[], text[], name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.write_answers(text, text, text, text[], text[], name) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.write_answers(text, text, text, text[], text[], name) IS 'Internal (llmgw.enrich, the batch ingest): write answers into the rows of their keys still NULL (embeddings by the column type''s input function), with the rights of the role in force or of as_role; a row that cannot be written fails alone; never raises';

-- Internal (llmgw.enrich): the embeddings of a chunk's prompts, answered
-- as llm_complete_many(..., on_error => 'continue') answers: one row per
-- prompt, its embedding's text form ('[x,y,...]') or its error.  The
-- prompts go in one provider request (one call, one usage row); when the
-- provider refuses it for what it holds (LG400, LG413, LG009, LG451), each
-- goes alone, so that only the prompts at fault fail.  A NULL prompt is
-- not sent (no answer, no error: skipped).
-- Internal: a dimension to ask of an embedding model, as llm_embed checks
-- it (NULL: the model's own)
CREATE FUNCTION llmgw.check_dimensions(dimensions integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF dimensions < 1 THEN
        RAISE EXCEPTION 'dimensions must be at least 1, not %', dimensions
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL for the model''s own dimension.';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.check_dimensions(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.check_dimensions(integer) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.check_dimensions(integer) IS 'Internal: a dimension to ask of an embedding model is at least 1 (22023, as llm_embed says); NULL, the model''s own, passes';

CREATE FUNCTION llmgw.enrich_embed(prompts text[], model text, dimensions integer DEFAULT NULL)
RETURNS TABLE (ordinality integer, answer text, sqlstate text, error text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    sent text[] := ARRAY(SELECT p FROM unnest(prompts) WITH ORDINALITY u(p, o)
                          WHERE p IS NOT NULL ORDER BY o);
    vectors text[];
    chunk_state text;
    chunk_error text;
    alone boolean := false;
    row_state text;
    row_error text;
    j integer := 0;
BEGIN
    IF cardinality(sent) > 0 THEN
        BEGIN
            vectors := ARRAY(SELECT '[' || array_to_string(e.embedding, ',') || ']'
                               FROM @extschema@.llm_embed_many(sent, model, dimensions) e ORDER BY e.ordinality);
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS chunk_state = RETURNED_SQLSTATE, chunk_error = MESSAGE_TEXT;
            alone := chunk_state IN ('LG400', 'LG413', 'LG009', 'LG451') AND cardinality(sent) > 1;
        END;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(prompts), 0) LOOP
        ordinality := i;
        answer := NULL;
        sqlstate := NULL;
        error := NULL;
        IF prompts[i] IS NOT NULL THEN
            j := j + 1;
            IF vectors IS NOT NULL THEN
                answer := vectors[j];
            ELSIF alone THEN
                row_state := NULL;
                BEGIN
                    answer := '[' || array_to_string(@extschema@.llm_embed(prompts[i], model, dimensions), ',') || ']';
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS row_state = RETURNED_SQLSTATE, row_error = MESSAGE_TEXT;
                END;
                IF row_state IS NOT NULL THEN
                    sqlstate := row_state;
                    error := row_error;
                    -- a budget or a rate limit refuses the rest alike: no more calls
                    IF row_state IN ('LG010', 'LG011') THEN
                        alone := false;
                        chunk_state := row_state;
                        chunk_error := row_error;
                    END IF;
                END IF;
            ELSE
                sqlstate := chunk_state;
                error := chunk_error;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.enrich_embed(text[], text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.enrich_embed(text[], text, integer) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.enrich_embed(text[], text, integer) IS 'Internal (llmgw.enrich): the embeddings of a chunk''s prompts in one provider request (of the dimension asked, NULL: the model''s own), each prompt alone when the provider refuses the request for what it holds; one row per prompt, its embedding''s text form or its error';

-- llmgw.submit_embedding_batch takes job_id and row_keys (what enrich
-- passes for an embeddings job), checked as llmgw.submit_batch checks them
-- (llmgw.check_batch_job): all three are defined once, with the retries of
-- embeddings batches, below.

-- An output column that takes embeddings (llmgw.answer_target) makes an
-- embeddings job: each row's prompt is embedded, synchronously a chunk per
-- provider request (llmgw.enrich_embed), or as /v1/embeddings lines of
-- provider batches; system and max_tokens do not apply.  Answers of
-- either kind are written by llmgw.write_answers, a row that cannot be
-- written failing alone.
DROP PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text);
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
REVOKE ALL ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text, integer) FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text, integer)
    TO llmgw_admin, llmgw_user;
COMMENT ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text, text, text, integer) IS 'Fill a column from a prompt over each row, in committed, resumable chunks; only rows the caller may update; an embedding column (real[], double precision[], vector, halfvec) gets each prompt''s embedding (of dimensions values, NULL: the model''s own); mode => ''batch'' goes through the provider''s Batch API (retry: what becomes of its expired and retryable items: batch, sync or none)';

-- The batch ingest writes an embeddings job's rows too: an item's answer is
-- its embedding's text form, and every answer goes in through
-- llmgw.write_answers (a row that cannot be written fails alone, and is the
-- job's last_error, where one such row made the whole chunk fail again at
-- every try).  Only the answer's CASE and the write changed.
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
    wa record;
    write_error text;
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
               -- the answer a job's row gets: the message's text, or the
               -- embedding's text form (a JSON array, '[x, y, ...]'), which
               -- llmgw.write_answers reads by the column type's input function
               CASE WHEN r.item_state <> 'done' THEN NULL
                    WHEN bt.endpoint = 'embeddings' THEN (r.body -> 'data' -> 0 -> 'embedding')::text
                    ELSE r.body -> 'choices' -> 0 -> 'message' ->> 'content' END AS answer,
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
        -- into rows still without one; a row that cannot be written (a
        -- vector of another dimension, a constraint) fails alone
        SELECT * INTO wa FROM llmgw.write_answers(j.source, j.key_column, j.output_column,
                                                  keys, answers, bt.owner);
        written := wa.written;
        IF cardinality(wa.failed) > 0 THEN
            UPDATE llmgw.batch_items i SET state = 'failed', error = f.error
              FROM unnest(wa.failed, wa.errors) f(k, error)
             WHERE i.batch_id = batch AND i.state = 'done' AND i.row_key = f.k;
            nfailed := nfailed + cardinality(wa.failed);
            write_error := wa.errors[cardinality(wa.errors)];
        END IF;
    END IF;
    IF j.id IS NOT NULL THEN
        UPDATE llmgw.jobs
           SET rows_done = rows_done + cardinality(written), rows_failed = rows_failed + nfailed,
               last_error = coalesce(write_error, last_error), updated_at = clock_timestamp()
         WHERE jobs.id = j.id;
    END IF;
    RETURN n;
END
$fn$;

-- llmgw.batch_sync_finish writes a synchronous retry's answer through
-- llmgw.write_answers too (defined once, with the embeddings retries, below)

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


-- llm_embed and llm_embed_many take the dimension to ask of the model
-- (OpenAI's dimensions, Gemini's outputDimensionality); NULL, the default,
-- leaves the model's own.
DROP FUNCTION @extschema@.llm_embed(text, text);
CREATE FUNCTION @extschema@.llm_embed(input text, model text, dimensions integer DEFAULT NULL)
RETURNS real[]
AS 'MODULE_PATHNAME', 'llm_embed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
DROP FUNCTION @extschema@.llm_embed_many(text[], text);
CREATE FUNCTION @extschema@.llm_embed_many(inputs text[], model text, dimensions integer DEFAULT NULL)
RETURNS TABLE (ordinality integer, embedding real[])
AS 'MODULE_PATHNAME', 'llm_embed_many'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
REVOKE ALL ON FUNCTION @extschema@.llm_embed(text, text, integer),
    @extschema@.llm_embed_many(text[], text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.llm_embed(text, text, integer),
    @extschema@.llm_embed_many(text[], text, integer) TO llmgw_user, llmgw_admin;
COMMENT ON FUNCTION @extschema@.llm_embed(text, text, integer) IS 'The embedding of one input; dimensions (NULL: the model''s own) is asked of models that can shorten their vectors';
COMMENT ON FUNCTION @extschema@.llm_embed_many(text[], text, integer) IS 'The embeddings of many inputs in one provider request, one row per input in input order; dimensions (NULL: the model''s own) is asked of models that can shorten their vectors';

-- ==== The rollup of a statement of one usage row (docs/metrics.md) ====
-- At one call at a time each settle round writes one usage row, and the
-- grouped, sorted statement of the rollups cost more than the row itself
-- (its aggregates, sorts and CTE set up on every execution: about 600,000
-- instructions).  A statement of one row adds it to its two rollup rows as
-- it is (about 350,000); more rows are grouped as before.  Both paths lock
-- the totals' row before the day's.
CREATE OR REPLACE FUNCTION llmgw.usage_rollup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    rollup_shard integer := coalesce(nullif(current_setting('llmgw.rollup_shard', true), '')::integer, 0);
BEGIN
    IF (SELECT count(*) FROM new_rows) = 1 THEN
        INSERT INTO llmgw.usage_totals AS t (shard, team_id, model, provider, upstream_model,
            status, error_class, cache_hit, fallback_from, currency, calls, unpriced, input_tokens,
            output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost)
        SELECT rollup_shard, n.team_id, n.model, n.provider, n.upstream_model, n.status, n.error_class,
               n.cache_hit, n.fallback_from, n.currency, 1, n.unpriced::integer,
               coalesce(n.input_tokens, 0), coalesce(n.output_tokens, 0),
               coalesce(n.cached_input_tokens, 0), coalesce(n.cache_write_tokens, 0),
               coalesce(n.reasoning_tokens, 0), coalesce(n.cost, 0)
          FROM new_rows n
        ON CONFLICT (team_id, model, provider, upstream_model, status, error_class, cache_hit,
                     fallback_from, currency, shard)
        DO UPDATE SET calls = t.calls + excluded.calls, unpriced = t.unpriced + excluded.unpriced,
                      input_tokens = t.input_tokens + excluded.input_tokens,
                      output_tokens = t.output_tokens + excluded.output_tokens,
                      cached_input_tokens = t.cached_input_tokens + excluded.cached_input_tokens,
                      cache_write_tokens = t.cache_write_tokens + excluded.cache_write_tokens,
                      reasoning_tokens = t.reasoning_tokens + excluded.reasoning_tokens,
                      cost = t.cost + excluded.cost;
        INSERT INTO llmgw.usage_daily AS d (day, shard, team_id, key_id, role_name, model,
            provider, upstream_model, currency, calls, errors, unpriced, cache_hits, input_tokens,
            output_tokens, cached_input_tokens, reasoning_tokens, cost, batch)
        SELECT (n.started_at AT TIME ZONE 'UTC')::date, rollup_shard, n.team_id, n.key_id, n.role_name,
               n.model, n.provider, n.upstream_model, n.currency, 1, (n.status <> 'ok')::integer,
               n.unpriced::integer, n.cache_hit::integer,
               coalesce(n.input_tokens, 0), coalesce(n.output_tokens, 0),
               coalesce(n.cached_input_tokens, 0), coalesce(n.reasoning_tokens, 0),
               coalesce(n.cost, 0), n.batch_id IS NOT NULL
          FROM new_rows n
        ON CONFLICT (day, team_id, key_id, role_name, model, provider, upstream_model, currency,
                     shard, batch)
        DO UPDATE SET calls = d.calls + excluded.calls, errors = d.errors + excluded.errors,
                      unpriced = d.unpriced + excluded.unpriced,
                      cache_hits = d.cache_hits + excluded.cache_hits,
                      input_tokens = d.input_tokens + excluded.input_tokens,
                      output_tokens = d.output_tokens + excluded.output_tokens,
                      cached_input_tokens = d.cached_input_tokens + excluded.cached_input_tokens,
                      reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens,
                      cost = d.cost + excluded.cost;
        RETURN NULL;
    END IF;
    -- ordered, so that concurrent writers lock rollup rows in one order:
    -- the totals, then (the statement of the WITH runs after) the days
    WITH daily AS (
        INSERT INTO llmgw.usage_daily AS d (day, shard, team_id, key_id, role_name, model,
            provider, upstream_model, currency, calls, errors, unpriced, cache_hits, input_tokens,
            output_tokens, cached_input_tokens, reasoning_tokens, cost, batch)
        SELECT (n.started_at AT TIME ZONE 'UTC')::date, rollup_shard,
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
    SELECT rollup_shard, n.team_id, n.model, n.provider, n.upstream_model, n.status, n.error_class,
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
COMMENT ON FUNCTION llmgw.usage_rollup() IS 'Trigger: add a statement''s new usage rows to the daily rollups and to the totals of llmgw.metrics() (a statement of one row as it is, more rows grouped)';

-- ==== Synchronous retries of embeddings batches (docs/batch.md) ====
-- An asynchronous call has an endpoint: chat (llm_chat's request and
-- answer) or embeddings (a batch item's /v1/embeddings request,
-- {"input": text}, made by the workers as llm_embed makes one, at the
-- synchronous rates; its answer the OpenAI embeddings list a batch's
-- embeddings item answers).  So an embeddings batch retries its expired
-- and retryable items synchronously too: an enrich job into a column of
-- embeddings with retry => 'sync', and llmgw.submit_embedding_batch with
-- retry => 'sync' (it takes retry as llmgw.submit_batch does).

ALTER TABLE llmgw.async_calls ADD COLUMN endpoint text NOT NULL DEFAULT 'chat'
    CONSTRAINT async_calls_endpoint_check CHECK (endpoint IN ('chat', 'embeddings'));
COMMENT ON COLUMN llmgw.async_calls.endpoint IS 'What the call is: chat (llm_chat''s request and answer) or embeddings (the synchronous retry of an embeddings batch item: {"input": text}, answered with an OpenAI embeddings list)';
COMMENT ON COLUMN llmgw.async_calls.request IS 'llm_chat''s request, as submitted (endpoint embeddings: the batch item''s {"input": text})';
COMMENT ON COLUMN llmgw.async_calls.answer IS 'llm_chat''s answer, once done (endpoint embeddings: the OpenAI embeddings list; NULL otherwise)';
GRANT SELECT (endpoint) ON llmgw.async_calls TO llmgw_admin, llmgw_user;

-- The job and retry arguments of a batch submission, checked once for
-- llmgw.submit_batch and llmgw.submit_embedding_batch
CREATE FUNCTION llmgw.check_batch_job(job_id bigint, row_keys text[], n integer, retry text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF retry IS NOT NULL AND retry NOT IN ('batch', 'sync', 'none') THEN
        RAISE EXCEPTION 'retry must be batch, sync or none' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retry IS NOT NULL AND job_id IS NOT NULL THEN
        RAISE EXCEPTION 'the batches of a job retry as their job says'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Leave retry NULL; CALL llmgw.enrich(..., retry => ...) sets the job''s.';
    END IF;
    IF (job_id IS NULL) <> (row_keys IS NULL) OR cardinality(row_keys) <> n
       OR array_position(row_keys, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'job_id and row_keys go together, one key per request'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF job_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM llmgw.jobs j
         WHERE j.id = check_batch_job.job_id AND j.owner = llmgw.caller() AND j.mode = 'batch'
           AND j.status = 'running') THEN
        RAISE EXCEPTION 'job % is not a running batch job of role %', job_id, llmgw.caller()
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.check_batch_job(bigint, text[], integer, text) FROM PUBLIC;
COMMENT ON FUNCTION llmgw.check_batch_job(bigint, text[], integer, text) IS 'Internal: the job and retry arguments of a batch submission (retry batch, sync or none, not with a job; job_id and row_keys together, a running batch job of the caller)';

CREATE OR REPLACE FUNCTION llmgw.submit_batch(requests jsonb[], model text, job_id bigint DEFAULT NULL,
                                              row_keys text[] DEFAULT NULL, retry text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    who record;
    q record;
BEGIN
    PERFORM llmgw.check_batch_requests('chat', requests, model);
    PERFORM llmgw.check_batch_job(job_id, row_keys, coalesce(cardinality(requests), 0), retry);
    SELECT * INTO who FROM llmgw.batch_caller(model);
    SELECT * INTO q FROM llmgw.queue_batch('chat', requests, model, job_id, row_keys, llmgw.caller(),
                                           who.key_id, who.team_id);
    UPDATE llmgw.batches b SET retry = submit_batch.retry WHERE b.id = q.batch_id AND submit_batch.retry IS NOT NULL;
    RETURN q.batch_id;
END
$fn$;

-- Queue texts to embed as one provider batch (/v1/embeddings) of an
-- embedding model; the vectors land in batch_items.answer (the provider's
-- embeddings response), or, with job_id and row_keys (llmgw.enrich), in
-- that job's rows.  Budgets as llmgw.submit_batch; retry (a batch without
-- a job) as llmgw.submit_batch's.
DROP FUNCTION llmgw.submit_embedding_batch(text[], text);
CREATE FUNCTION llmgw.submit_embedding_batch(inputs text[], model text, job_id bigint DEFAULT NULL,
                                             row_keys text[] DEFAULT NULL, retry text DEFAULT NULL,
                                             dimensions integer DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- each line asks the dimension (OpenAI's dimensions; the Gemini
    -- builders make it outputDimensionality)
    requests jsonb[] := ARRAY(SELECT jsonb_build_object('input', t)
                                     || jsonb_strip_nulls(jsonb_build_object('dimensions', dimensions))
                                FROM unnest(inputs) WITH ORDINALITY u(t, o) ORDER BY o);
    who record;
    q record;
BEGIN
    IF array_position(inputs, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'every input must be a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM llmgw.check_dimensions(dimensions);
    PERFORM llmgw.check_batch_requests('embeddings', requests, model);
    PERFORM llmgw.check_batch_job(job_id, row_keys, coalesce(cardinality(inputs), 0), retry);
    SELECT * INTO who FROM llmgw.batch_caller(model);
    SELECT * INTO q FROM llmgw.queue_batch('embeddings', requests, model, job_id, row_keys,
                                           llmgw.caller(), who.key_id, who.team_id);
    UPDATE llmgw.batches b SET retry = submit_embedding_batch.retry
     WHERE b.id = q.batch_id AND submit_embedding_batch.retry IS NOT NULL;
    RETURN q.batch_id;
END
$fn$;
REVOKE ALL ON FUNCTION llmgw.submit_embedding_batch(text[], text, bigint, text[], text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.submit_embedding_batch(text[], text, bigint, text[], text, integer) TO llmgw_admin, llmgw_user;
COMMENT ON FUNCTION llmgw.submit_embedding_batch(text[], text, bigint, text[], text, integer) IS 'Queue texts to embed as one provider batch (Batch API, /v1/embeddings); returns the batch id; the vectors land in batch_items.answer, or with job_id and row_keys (llmgw.enrich) in the job''s rows; retry (a batch without a job): batch, sync or none; dimensions (NULL: the model''s own) asked of each line';

-- Internal (worker 0): a batch's results are all written: the items
-- without one end as the batch ended (their reservations given back), the
-- items its job retries go into a new batch (retry => 'batch') or become
-- asynchronous calls of the job's owner (retry => 'sync': chat calls, or
-- embeddings calls for an embeddings batch), in this same transaction, the
-- batch takes its final state, and its job finishes when nothing of it is
-- outstanding
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
    -- (a batch without a job); none once a cancel was asked
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
    -- batch's owner (its key, its team) at the batch's endpoint, made by
    -- the workers through the normal path; its reservation was given back
    -- when it ended, the call reserves its own.  llmgw.batch_sync_finish
    -- writes its answer.
    IF how = 'sync' THEN
        WITH i AS MATERIALIZED (
            SELECT i.custom_id, i.request, i.state, nextval('llmgw.async_calls_id_seq') AS call
              FROM llmgw.batch_items i
             WHERE i.batch_id = batch AND i.retried_in IS NULL AND i.sync_call IS NULL
               AND (i.state = 'expired' OR (i.state = 'failed' AND i.error_class IN ('rate_limit', 'server')))
             ORDER BY i.custom_id),
        a AS (
            INSERT INTO llmgw.async_calls (id, owner, model, request, key_hash, max_retries, timeout_ms,
                                           job_id, batch_id, endpoint)
            OVERRIDING SYSTEM VALUE
            SELECT i.call, bt.owner, bt.model, i.request,
                   (SELECT k.hash FROM llmgw.virtual_keys k WHERE k.id = bt.key_id),
                   current_setting('llmgw.max_retries')::integer, 0, bt.job_id, batch, bt.endpoint
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

-- The synchronous retry of a batch item writes its answer as the batch
-- ingest does, through llmgw.write_answers: a chat answer's text, or an
-- embeddings answer's vector in its text form ('[x, y, ...]', as the
-- ingest gives it); a batch without a job keeps the answer in the item (an
-- embeddings call's, an OpenAI embeddings list, as the ingest keeps one)
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
        answer := CASE WHEN a.endpoint <> 'embeddings' THEN a.answer -> 'message' ->> 'content'
                       WHEN jsonb_typeof(a.answer -> 'data' -> 0 -> 'embedding') = 'array'
                       THEN (a.answer -> 'data' -> 0 -> 'embedding')::text END;
        IF answer IS NULL THEN
            failure := 'the synchronous retry of item ' || it.custom_id || ' answered no '
                       || CASE a.endpoint WHEN 'embeddings' THEN 'embedding' ELSE 'text' END;
        ELSE
            -- as llmgw.batch_ingest writes: the owner's rights, only a row
            -- still without an answer
            failure := (llmgw.write_answers(j.source, j.key_column, j.output_column,
                                            ARRAY[it.row_key], ARRAY[answer], bt.owner)).errors[1];
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
COMMENT ON FUNCTION llmgw.batch_sync_finish(bigint) IS 'Internal (workers): write the outcome of the synchronous retry of a batch item (its job''s row: a chat answer''s text or an embedding; or the item''s answer) with the call''s usage rows; a retry cancelled with its job counts neither done nor failed';

-- Worker 0's batch ingest has helpers (llmgw.batch_ingest_helpers), each
-- with rollup rows of its own
COMMENT ON COLUMN llmgw.usage_daily.shard IS 'The process that wrote the row, so that writers never wait for each other: worker N as N + 1, batch ingest helper k (from 1) as 65 - k, 0 anything else';
COMMENT ON COLUMN llmgw.usage_totals.shard IS 'The process that wrote the row, so that writers never wait for each other: worker N as N + 1, batch ingest helper k (from 1) as 65 - k, 0 anything else';

-- Worker 0 looks at llmgw.batches once a second; a batch queued (and a job
-- cancelled, llmgw.cancel_job_calls) wakes it as soon as its transaction
-- commits, so a submission starts at once
CREATE FUNCTION llmgw.batches_queued() RETURNS trigger
AS 'MODULE_PATHNAME', 'llmgw_batches_queued'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION llmgw.batches_queued() FROM PUBLIC;
COMMENT ON FUNCTION llmgw.batches_queued() IS 'Internal (the trigger batches_queued of llmgw.batches): once the transaction commits, worker 0 looks at the batches queued at once';
CREATE TRIGGER batches_queued AFTER INSERT ON llmgw.batches
    FOR EACH STATEMENT EXECUTE FUNCTION llmgw.batches_queued();
COMMENT ON TRIGGER batches_queued ON llmgw.batches IS 'Wakes worker 0 when the inserting transaction commits: the batches are picked up at once';
