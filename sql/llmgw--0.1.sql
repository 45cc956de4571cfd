/* llmgw--0.1.sql: providers, models, usage and the calling functions */

\echo Use "CREATE EXTENSION llmgw" to load this file. \quit

-- Roles are cluster-wide: create them once, keep them across re-installs.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llmgw_admin') THEN
        CREATE ROLE llmgw_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llmgw_finance') THEN
        CREATE ROLE llmgw_finance NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'llmgw_user') THEN
        CREATE ROLE llmgw_user NOLOGIN;
    END IF;
END
$roles$;

CREATE SCHEMA llmgw;
REVOKE ALL ON SCHEMA llmgw FROM PUBLIC;
GRANT USAGE ON SCHEMA llmgw TO llmgw_admin, llmgw_finance, llmgw_user;

------------------------------------------------------------------------------
-- Configuration
------------------------------------------------------------------------------

CREATE TABLE llmgw.providers (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    kind text NOT NULL
        CHECK (kind IN ('openai', 'openai_responses', 'openai_compatible', 'azure',
                        'anthropic', 'gemini')),
    base_url text NOT NULL CHECK (base_url ~ '^https?://[^/?#@]+([/?#][^@]*)?$'),
    api_version text,
    -- env:NAME, file:/path, or 'stored' (the secret is in provider_secrets)
    secret_ref text CHECK (secret_ref ~ '^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+|stored)$'),
    timeout_ms integer NOT NULL DEFAULT 60000 CHECK (timeout_ms > 0),
    connect_timeout_ms integer NOT NULL DEFAULT 10000 CHECK (connect_timeout_ms > 0),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- Readable by the extension owner only: no grant to any role, ever.
CREATE TABLE llmgw.provider_secrets (
    provider text PRIMARY KEY REFERENCES llmgw.providers (name) ON DELETE CASCADE,
    secret text NOT NULL
);

CREATE TABLE llmgw.models (
    alias text PRIMARY KEY CHECK (pg_catalog.length(alias) BETWEEN 1 AND 200),
    description text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TABLE llmgw.deployments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model text NOT NULL REFERENCES llmgw.models (alias) ON DELETE CASCADE,
    provider text NOT NULL REFERENCES llmgw.providers (name),
    upstream_model text NOT NULL CHECK (upstream_model <> ''),
    priority integer NOT NULL DEFAULT 0,
    weight integer NOT NULL DEFAULT 1 CHECK (weight > 0),
    UNIQUE (model, provider, upstream_model)
);

CREATE FUNCTION llmgw.config_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'llmgw_config_changed' LANGUAGE C;

CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.providers FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.provider_secrets FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.models FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.deployments FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();

------------------------------------------------------------------------------
-- Usage: one row per provider attempt, written by the workers
------------------------------------------------------------------------------

CREATE SEQUENCE llmgw.usage_id_seq;

CREATE TABLE llmgw.usage (
    id bigint NOT NULL DEFAULT pg_catalog.nextval('llmgw.usage_id_seq'),
    request_id uuid NOT NULL,
    attempt integer NOT NULL DEFAULT 1,
    started_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    role_name text,
    key_id bigint,
    team_id bigint,
    model text,
    provider text,
    upstream_model text,
    status text NOT NULL CHECK (status IN ('ok', 'error', 'cancelled', 'interrupted')),
    error_class text,
    http_status integer,
    latency_ms double precision,
    -- token buckets: NULL means the provider did not report it
    input_tokens bigint,
    output_tokens bigint,
    cached_input_tokens bigint,
    cache_write_tokens bigint,
    reasoning_tokens bigint,
    usage_source text CHECK (usage_source IN ('provider', 'estimated')),
    price_id bigint,
    cost numeric,
    currency text,
    cache_hit boolean NOT NULL DEFAULT false,
    fallback_from text,
    tags jsonb,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);

CREATE TABLE llmgw.usage_default PARTITION OF llmgw.usage DEFAULT;
CREATE INDEX usage_request_id_idx ON llmgw.usage (request_id);
CREATE INDEX usage_started_at_idx ON llmgw.usage (started_at);

-- Every role but admin and finance sees only the calls it made itself.
ALTER TABLE llmgw.usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY usage_staff ON llmgw.usage FOR SELECT
    TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY usage_own ON llmgw.usage FOR SELECT
    TO llmgw_user USING (role_name = CURRENT_USER);

SELECT pg_catalog.pg_extension_config_dump('llmgw.providers', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.provider_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.models', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.usage_default', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.usage_id_seq', '');

------------------------------------------------------------------------------
-- Administration
------------------------------------------------------------------------------

-- Store (or, with NULL, remove) a provider's secret in the owner-only table.
CREATE FUNCTION llmgw.set_provider_secret(provider text, secret text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM llmgw.providers p WHERE p.name = provider) THEN
        RAISE EXCEPTION 'provider "%" does not exist', provider
            USING ERRCODE = 'undefined_object';
    END IF;
    DELETE FROM llmgw.provider_secrets s WHERE s.provider = set_provider_secret.provider;
    IF secret IS NULL THEN
        UPDATE llmgw.providers p SET secret_ref = NULL
         WHERE p.name = provider AND p.secret_ref = 'stored';
    ELSE
        INSERT INTO llmgw.provider_secrets (provider, secret)
            VALUES (set_provider_secret.provider, secret);
        UPDATE llmgw.providers p SET secret_ref = 'stored' WHERE p.name = provider;
    END IF;
END
$fn$;

-- Register a provider.  secret: 'env:NAME', 'file:/path', a literal secret
-- (stored in the owner-only table), or NULL for servers without auth.
CREATE FUNCTION llmgw.create_provider(
    name text,
    kind text,
    base_url text,
    secret text DEFAULT NULL,
    api_version text DEFAULT NULL,
    timeout_ms integer DEFAULT 60000,
    connect_timeout_ms integer DEFAULT 10000)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    is_ref boolean := secret ~ '^(env|file):';
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.-]{1,63}$' THEN
        RAISE EXCEPTION 'invalid provider name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1 to 63 letters, digits, "_", "." or "-".';
    END IF;
    IF kind IS NULL OR kind NOT IN ('openai', 'openai_responses', 'openai_compatible', 'azure',
                                    'anthropic', 'gemini') THEN
        RAISE EXCEPTION 'unknown provider kind "%"', kind
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use openai, openai_responses, openai_compatible, azure, anthropic or gemini.';
    END IF;
    IF base_url IS NULL OR base_url !~ '^https?://[^/?#@]+([/?#][^@]*)?$' THEN
        RAISE EXCEPTION 'invalid base URL for provider "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an http:// or https:// URL without credentials, such as https://api.openai.com/v1.';
    END IF;
    IF is_ref AND secret !~ '^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$' THEN
        RAISE EXCEPTION 'invalid secret reference for provider "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use env:VARIABLE_NAME or file:/absolute/path.';
    END IF;
    INSERT INTO llmgw.providers (name, kind, base_url, api_version, secret_ref,
                                 timeout_ms, connect_timeout_ms)
    VALUES (name, kind, base_url, api_version,
            CASE WHEN is_ref THEN secret END, timeout_ms, connect_timeout_ms);
    IF secret IS NOT NULL AND NOT is_ref THEN
        PERFORM llmgw.set_provider_secret(name, secret);
    END IF;
END
$fn$;

CREATE FUNCTION llmgw.drop_provider(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM llmgw.providers p WHERE p.name = drop_provider.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'provider "%" does not exist', name
            USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;

-- Map a model alias to a provider's upstream model.  Calling it again for
-- the same alias adds another deployment (used by routing and fallback).
CREATE FUNCTION llmgw.create_model(
    alias text,
    provider text,
    upstream_model text,
    priority integer DEFAULT 0,
    weight integer DEFAULT 1)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM llmgw.providers p WHERE p.name = provider) THEN
        RAISE EXCEPTION 'provider "%" does not exist', provider
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with llmgw.create_provider().';
    END IF;
    INSERT INTO llmgw.models (alias) VALUES (alias) ON CONFLICT DO NOTHING;
    INSERT INTO llmgw.deployments (model, provider, upstream_model, priority, weight)
    VALUES (alias, provider, upstream_model, priority, weight);
END
$fn$;

CREATE FUNCTION llmgw.drop_model(alias text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM llmgw.models m WHERE m.alias = drop_model.alias;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model "%" does not exist', alias
            USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;

------------------------------------------------------------------------------
-- Calling models
------------------------------------------------------------------------------

CREATE FUNCTION @extschema@.llm_complete(
    prompt text,
    model text,
    system text DEFAULT NULL,
    max_tokens integer DEFAULT NULL,
    temperature double precision DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'llm_complete'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Many completions from one statement, run concurrently by the workers.
CREATE FUNCTION @extschema@.llm_complete_many(
    prompts text[],
    model text,
    system text DEFAULT NULL,
    max_tokens integer DEFAULT NULL,
    temperature double precision DEFAULT NULL,
    concurrency integer DEFAULT 64,
    on_error text DEFAULT 'raise')
RETURNS TABLE (ordinality integer, answer text, sqlstate text, error text)
AS 'MODULE_PATHNAME', 'llm_complete_many'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

-- An OpenAI Chat Completions-shaped request whose "model" is an llmgw alias;
-- answers in llmgw's normalised shape whatever the provider.
CREATE FUNCTION @extschema@.llm_chat(request jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'llm_chat'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

-- The embedding of one input.
CREATE FUNCTION @extschema@.llm_embed(input text, model text)
RETURNS real[]
AS 'MODULE_PATHNAME', 'llm_embed'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The embeddings of many inputs, in one provider request.
CREATE FUNCTION @extschema@.llm_embed_batch(inputs text[], model text)
RETURNS TABLE (ordinality integer, embedding real[])
AS 'MODULE_PATHNAME', 'llm_embed_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;

------------------------------------------------------------------------------
-- Visibility
------------------------------------------------------------------------------

-- The workers and the queue right now
CREATE FUNCTION llmgw.stats(
    OUT workers_running integer,
    OUT calls_queued integer,
    OUT calls_in_flight integer,
    OUT calls_since_start bigint,
    OUT queue_size integer)
AS 'MODULE_PATHNAME', 'llmgw_stats'
LANGUAGE C STRICT VOLATILE;

-- One row per logical call, its attempts folded in (the last one decides)
CREATE VIEW llmgw.requests WITH (security_invoker = true) AS
SELECT request_id,
       min(started_at) AS started_at,
       max(recorded_at) AS finished_at,
       min(role_name) AS role_name,
       min(model) AS model,
       count(*) AS attempts,
       (array_agg(provider ORDER BY attempt DESC))[1] AS provider,
       (array_agg(upstream_model ORDER BY attempt DESC))[1] AS upstream_model,
       (array_agg(status ORDER BY attempt DESC))[1] AS status,
       (array_agg(error_class ORDER BY attempt DESC))[1] AS error_class,
       sum(latency_ms) AS latency_ms,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(cost) AS cost
  FROM llmgw.usage
 GROUP BY request_id;

------------------------------------------------------------------------------
-- Batch enrichment
------------------------------------------------------------------------------

CREATE TABLE llmgw.jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text,
    owner name NOT NULL DEFAULT CURRENT_USER,
    source text NOT NULL,
    output_column text NOT NULL,
    model text NOT NULL,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'finished', 'failed')),
    rows_total bigint,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_failed bigint NOT NULL DEFAULT 0,
    rows_skipped bigint NOT NULL DEFAULT 0,
    last_error text,
    started_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at timestamptz
);
ALTER TABLE llmgw.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_staff ON llmgw.jobs TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY jobs_own ON llmgw.jobs TO llmgw_user USING (owner = CURRENT_USER);
SELECT pg_catalog.pg_extension_config_dump('llmgw.jobs', '');

-- Progress of every job: rate and estimated finish while it runs
CREATE VIEW llmgw.job_progress WITH (security_invoker = true) AS
SELECT id, name, owner, source, output_column, model, status,
       rows_total, rows_done, rows_failed, rows_skipped,
       round(rows_done / nullif(extract(epoch FROM updated_at - started_at), 0), 2)
           AS rows_per_second,
       CASE WHEN status = 'running' AND rows_done > 0 THEN
           updated_at + (updated_at - started_at)
               * ((rows_total - rows_done - rows_failed - rows_skipped)::float8 / rows_done)
       END AS estimated_finish,
       started_at, updated_at, finished_at, last_error
  FROM llmgw.jobs;

-- Fill output_column of source from a prompt expression over each row, in
-- chunks committed one by one.  Rows whose output is already set are skipped,
-- so a cancelled or crashed run resumes where it stopped.  Must be CALLed
-- outside an explicit transaction block (it commits).
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
    job_name text DEFAULT NULL)
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
    done bigint;
    failed bigint;
    skipped bigint;
    chunk_error text;
    pending text := format('%I IS NULL AND NOT (%I::text = ANY ($1))', output_column, key_column);
BEGIN
    IF chunk_size < 1 THEN
        RAISE EXCEPTION 'chunk_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO llmgw.jobs (name, source, output_column, model)
    VALUES (job_name, source::text, output_column, model)
    RETURNING id INTO job;
    EXECUTE format('SELECT count(*) FROM %s WHERE %s', source, pending)
        INTO r USING skip;
    UPDATE llmgw.jobs SET rows_total = r.count WHERE id = job;
    COMMIT;

    LOOP
        EXECUTE format('SELECT array_agg(k ORDER BY k), array_agg(p ORDER BY k)
                          FROM (SELECT %I::text AS k, (%s)::text AS p FROM %s WHERE %s
                                 ORDER BY %I LIMIT %s) c',
                       key_column, prompt, source, pending, key_column, chunk_size)
            INTO keys, prompts USING skip;
        EXIT WHEN keys IS NULL;

        done := 0; failed := 0; skipped := 0;
        done_keys := '{}'; answers := '{}';
        FOR r IN SELECT * FROM @extschema@.llm_complete_many(prompts, model, system, max_tokens,
                                                             NULL, concurrency, 'continue')
        LOOP
            IF r.answer IS NOT NULL THEN
                done_keys := done_keys || keys[r.ordinality];
                answers := answers || r.answer;
                done := done + 1;
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
        -- one UPDATE per chunk (a join, whatever the key's type)
        EXECUTE format('UPDATE %s t SET %I = a.answer FROM unnest($1, $2) a(k, answer)
                         WHERE t.%I::text = a.k', source, output_column, key_column)
            USING done_keys, answers;

        UPDATE llmgw.jobs j
           SET rows_done = j.rows_done + done, rows_failed = j.rows_failed + failed,
               rows_skipped = j.rows_skipped + skipped,
               last_error = coalesce(chunk_error, j.last_error),
               updated_at = clock_timestamp()
         WHERE j.id = job
        RETURNING j.rows_done, j.rows_failed INTO done, failed;
        COMMIT;
        RAISE NOTICE 'llmgw.enrich job %: % rows done, % failed', job, done, failed;
    END LOOP;

    UPDATE llmgw.jobs SET status = 'finished', finished_at = clock_timestamp(),
           updated_at = clock_timestamp()
     WHERE id = job;
    COMMIT;
END
$fn$;

------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA llmgw FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA llmgw FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA llmgw FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA llmgw FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.llm_complete(text, text, text, integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.llm_chat(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.llm_complete_many(text[], text, text, integer, double precision, integer, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.llm_embed(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION @extschema@.llm_embed_batch(text[], text) FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE, DELETE ON llmgw.providers, llmgw.models, llmgw.deployments
    TO llmgw_admin;
GRANT SELECT ON llmgw.models TO llmgw_user;
GRANT SELECT ON llmgw.usage TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT, INSERT, UPDATE ON llmgw.jobs TO llmgw_admin, llmgw_user;
GRANT SELECT ON llmgw.jobs TO llmgw_finance;
GRANT SELECT ON llmgw.job_progress TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT ON llmgw.requests TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT EXECUTE ON FUNCTION llmgw.stats() TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text)
    TO llmgw_admin, llmgw_user;
GRANT EXECUTE ON FUNCTION
    llmgw.create_provider(text, text, text, text, text, integer, integer),
    llmgw.set_provider_secret(text, text),
    llmgw.drop_provider(text),
    llmgw.create_model(text, text, text, integer, integer),
    llmgw.drop_model(text)
    TO llmgw_admin;
GRANT EXECUTE ON FUNCTION @extschema@.llm_complete(text, text, text, integer, double precision),
    @extschema@.llm_chat(jsonb),
    @extschema@.llm_complete_many(text[], text, text, integer, double precision, integer, text),
    @extschema@.llm_embed(text, text),
    @extschema@.llm_embed_batch(text[], text)
    TO llmgw_user, llmgw_admin;
