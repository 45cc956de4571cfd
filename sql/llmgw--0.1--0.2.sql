/* llmgw--0.1--0.2.sql: trust first (docs/operations.md, docs/security.md) */

\echo Use "ALTER EXTENSION llmgw UPDATE TO '0.2'" to load this file. \quit

------------------------------------------------------------------------------
-- Who is calling, and what they may reach (src/security.c)
------------------------------------------------------------------------------

-- The role really calling, seen from inside a SECURITY DEFINER function
-- (where CURRENT_USER is the function's owner): the SET ROLE role.
CREATE FUNCTION llmgw.caller() RETURNS name
AS 'MODULE_PATHNAME', 'llmgw_caller_name'
LANGUAGE C STABLE STRICT;

-- Is the calling role a superuser?
CREATE FUNCTION llmgw.caller_is_superuser() RETURNS boolean
AS 'MODULE_PATHNAME', 'llmgw_caller_is_superuser'
LANGUAGE C STABLE STRICT;

-- Is the calling role a member of a role by explicit grants?
CREATE FUNCTION llmgw.caller_has_role(role name) RETURNS boolean
AS 'MODULE_PATHNAME', 'llmgw_caller_has_role'
LANGUAGE C STABLE STRICT;

-- Does postgresql.conf (llmgw.secret_env_prefix, llmgw.secret_directory)
-- let any llmgw_admin use this secret reference?
CREATE FUNCTION llmgw.secret_ref_allowed(ref text) RETURNS boolean
AS 'MODULE_PATHNAME', 'llmgw_secret_ref_allowed_sql'
LANGUAGE C STABLE STRICT;

-- An error if llmgw would refuse to call this base URL (llmgw.allowed_hosts,
-- link-local and cloud metadata addresses)
CREATE FUNCTION llmgw.check_base_url(url text) RETURNS void
AS 'MODULE_PATHNAME', 'llmgw_check_base_url'
LANGUAGE C STABLE STRICT;

-- Hide the running statement, which passed a secret, from pg_stat_activity
CREATE FUNCTION llmgw.hide_statement() RETURNS void
AS 'MODULE_PATHNAME', 'llmgw_hide_statement'
LANGUAGE C VOLATILE;

------------------------------------------------------------------------------
-- Providers: secret references within what postgresql.conf allows, and a
-- secret never follows a provider to a new URL.  References set under 0.1
-- are not trusted: they resolve if postgresql.conf allows them, or once a
-- superuser sets secret_ref_trusted (docs/security.md).
------------------------------------------------------------------------------

ALTER TABLE llmgw.providers ADD COLUMN secret_ref_trusted boolean NOT NULL DEFAULT false;

-- Guard provider rows, whoever writes them: a secret reference (env:, file:)
-- outside what postgresql.conf allows (llmgw.secret_env_prefix,
-- llmgw.secret_directory) may be set by a superuser only, who vouches for it
-- with secret_ref_trusted (llmgw.create_provider() sets it for a superuser;
-- a restore keeps what was dumped); for anyone else the flag stays as it
-- was, or false for a new reference.  A new base URL or kind drops the
-- secret, unless the same statement sets another, so that a secret is never
-- sent to an endpoint it was not given for.
CREATE FUNCTION llmgw.providers_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ref_changed boolean := TG_OP = 'INSERT' OR NEW.secret_ref IS DISTINCT FROM OLD.secret_ref;
    is_ref boolean;
BEGIN
    -- a stored secret lives only while the reference says 'stored': a row
    -- left behind would follow the provider to whatever URL sets it again
    IF TG_OP = 'UPDATE' AND OLD.secret_ref = 'stored' AND NEW.secret_ref IS DISTINCT FROM 'stored' THEN
        DELETE FROM llmgw.provider_secrets s WHERE s.provider = OLD.name;
    END IF;
    IF TG_OP = 'UPDATE' AND NOT ref_changed AND OLD.secret_ref IS NOT NULL
       AND (NEW.base_url, NEW.kind) IS DISTINCT FROM (OLD.base_url, OLD.kind) THEN
        NEW.secret_ref := NULL;
        ref_changed := true;
        DELETE FROM llmgw.provider_secrets s WHERE s.provider = OLD.name;
        RAISE NOTICE 'the secret of provider "%" was removed because its base URL or kind changed',
            NEW.name
            USING HINT = 'Give it a secret again with llmgw.set_provider_secret() or secret_ref.';
    END IF;
    is_ref := coalesce(NEW.secret_ref ~ '^(env|file):', false);
    IF llmgw.caller_is_superuser() THEN
        NEW.secret_ref_trusted := is_ref AND NEW.secret_ref_trusted;
        RETURN NEW;
    END IF;
    IF NOT ref_changed THEN
        NEW.secret_ref_trusted := OLD.secret_ref_trusted;
        RETURN NEW;
    END IF;
    NEW.secret_ref_trusted := false;
    IF is_ref AND NOT llmgw.secret_ref_allowed(NEW.secret_ref) THEN
        RAISE EXCEPTION 'only a superuser may point provider "%" at %', NEW.name,
            CASE WHEN NEW.secret_ref LIKE 'env:%' THEN 'an environment variable outside llmgw.secret_env_prefix'
                 ELSE 'a file outside llmgw.secret_directory' END
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'A superuser can allow a variable-name prefix (llmgw.secret_env_prefix) or a directory (llmgw.secret_directory) in postgresql.conf.';
    END IF;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER providers_guard BEFORE INSERT OR UPDATE ON llmgw.providers
    FOR EACH ROW EXECUTE FUNCTION llmgw.providers_guard();

-- a stored secret whose provider no longer says 'stored' is not used: gone
DELETE FROM llmgw.provider_secrets s USING llmgw.providers p
 WHERE p.name = s.provider AND p.secret_ref IS DISTINCT FROM 'stored';

-- Store (or, with NULL, remove) a provider's secret in the owner-only table.
-- The statement is hidden from pg_stat_activity and masked in the server log.
CREATE OR REPLACE FUNCTION llmgw.set_provider_secret(provider text, secret text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM llmgw.hide_statement();
    IF NOT EXISTS (SELECT 1 FROM llmgw.providers p WHERE p.name = provider) THEN
        RAISE EXCEPTION 'provider "%" does not exist', provider
            USING ERRCODE = 'undefined_object';
    END IF;
    IF secret = '' OR secret ~ '[[:cntrl:]]' OR octet_length(secret) > 65536 THEN
        RAISE EXCEPTION 'the secret given for provider "%" is empty, longer than 64 kB or contains control characters',
            provider
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- 'OPENAI_API_KEY' is a variable's name, not a key: it would only show as a 401 later
    IF secret ~ '^[A-Z][A-Z0-9]*(_[A-Z0-9]+)+$' AND octet_length(secret) <= 64 THEN
        RAISE WARNING 'the secret stored for provider "%" looks like the name of an environment variable',
            provider
            USING HINT = 'To read the key from the server''s environment, give the secret as env:NAME (docs/security.md).';
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
CREATE OR REPLACE FUNCTION llmgw.create_provider(
    name text,
    kind text,
    base_url text,
    secret text DEFAULT NULL,
    api_version text DEFAULT NULL,
    timeout_ms integer DEFAULT 60000,
    connect_timeout_ms integer DEFAULT 10000,
    idle_timeout_ms integer DEFAULT NULL)
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
    IF secret IS NOT NULL AND NOT is_ref THEN
        PERFORM llmgw.hide_statement();
    END IF;
    PERFORM llmgw.check_base_url(base_url);
    IF is_ref AND secret !~ '^(env:[A-Za-z_][A-Za-z0-9_]*|file:/.+)$' THEN
        RAISE EXCEPTION 'invalid secret reference for provider "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use env:VARIABLE_NAME or file:/absolute/path.';
    END IF;
    -- a superuser vouches for the reference it gives (providers_guard)
    INSERT INTO llmgw.providers (name, kind, base_url, api_version, secret_ref,
                                 timeout_ms, connect_timeout_ms, idle_timeout_ms,
                                 secret_ref_trusted)
    VALUES (name, kind, base_url, api_version,
            CASE WHEN is_ref THEN secret END, timeout_ms, connect_timeout_ms, idle_timeout_ms,
            coalesce(is_ref, false) AND (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = CURRENT_USER));
    IF secret IS NOT NULL AND NOT is_ref THEN
        PERFORM llmgw.set_provider_secret(name, secret);
    END IF;
END
$fn$;

------------------------------------------------------------------------------
-- Usage: the job and asynchronous call of each row, in columns of their own
-- (no more job id in tags, which anyone could set)
------------------------------------------------------------------------------

ALTER TABLE llmgw.usage ADD COLUMN job_id bigint, ADD COLUMN async_id bigint;
ALTER TABLE llmgw.usage DISABLE TRIGGER usage_append_only;
UPDATE llmgw.usage SET job_id = (tags->>'job')::bigint
 WHERE tags ? 'job' AND tags->>'job' ~ '^[0-9]{1,18}$';
ALTER TABLE llmgw.usage ENABLE TRIGGER usage_append_only;

-- Monthly partitions made by the 0.1 script belong to the extension, so
-- pg_dump leaves their rows out: they become ordinary tables.
DO $parts$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT c.oid::regclass FROM pg_catalog.pg_inherits i
                  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
                  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass
                       AND d.objid = c.oid AND d.deptype = 'e'
                 WHERE i.inhparent = 'llmgw.usage'::regclass AND c.relname <> 'usage_default'
    LOOP
        EXECUTE pg_catalog.format('ALTER EXTENSION llmgw DROP TABLE %s', part);
    END LOOP;
END
$parts$;

-- The key and indexes of llmgw.usage move to its partitions: a partition
-- that pg_restore attaches to a parent with indexes gets them twice.
ALTER TABLE llmgw.usage DROP CONSTRAINT usage_pkey;
DROP INDEX llmgw.usage_request_id_idx, llmgw.usage_started_at_idx, llmgw.usage_job_idx;

-- The primary key and indexes of a partition of llmgw.usage.  They live on
-- each partition, not on llmgw.usage: a partition that pg_restore attaches
-- to a parent with indexes gets them twice, and the restore fails.
CREATE FUNCTION llmgw.index_usage_partition(part regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format('ALTER TABLE %s ADD PRIMARY KEY (id, started_at)', part);
    EXECUTE format('CREATE INDEX ON %s (request_id)', part);
    EXECUTE format('CREATE INDEX ON %s (started_at)', part);
    EXECUTE format('CREATE INDEX ON %s (job_id) WHERE job_id IS NOT NULL', part);
END
$fn$;

SELECT llmgw.index_usage_partition(i.inhrelid::regclass)
  FROM pg_catalog.pg_inherits i WHERE i.inhparent = 'llmgw.usage'::regclass;

-- Create the monthly partitions of llmgw.usage from this month to
-- months_ahead months ahead, with their keys and indexes (the workers call
-- it when a row first needs a partition).
CREATE OR REPLACE FUNCTION llmgw.create_usage_partitions(months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    m timestamptz;
    n integer := 0;
    part text;
BEGIN
    IF months_ahead IS NULL OR months_ahead NOT BETWEEN 0 AND 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. months_ahead LOOP
        m := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))
             AT TIME ZONE 'UTC';
        part := 'usage_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM');
        CONTINUE WHEN to_regclass('llmgw.' || part) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE llmgw.%I PARTITION OF llmgw.usage'
                           ' FOR VALUES FROM (%L) TO (%L)',
                           part, m,
                           (date_trunc('month', m AT TIME ZONE 'UTC') + interval '1 month')
                               AT TIME ZONE 'UTC');
            PERFORM llmgw.index_usage_partition(('llmgw.' || quote_ident(part))::regclass);
            n := n + 1;
        EXCEPTION WHEN check_violation THEN
            RAISE WARNING 'llmgw: could not create partition %: the default partition holds rows of that month', part;
        END;
    END LOOP;
    RETURN n;
END
$fn$;

-- Rollups written by anything but the workers' own rollup trigger (a
-- restore, a repair by hand): the workers load the budget ledger again
CREATE FUNCTION llmgw.ledger_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'llmgw_ledger_changed' LANGUAGE C;
CREATE TRIGGER ledger_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.usage_daily FOR EACH STATEMENT
    WHEN (pg_catalog.pg_trigger_depth() < 1)
    EXECUTE FUNCTION llmgw.ledger_changed();

-- asynchronous calls keep their retry settings within what the settings allow
UPDATE llmgw.async_calls SET max_retries = least(greatest(max_retries, 0), 10),
                             timeout_ms = greatest(timeout_ms, 0)
 WHERE max_retries NOT BETWEEN 0 AND 10 OR timeout_ms < 0;
ALTER TABLE llmgw.async_calls
    ADD CONSTRAINT async_calls_max_retries_check CHECK (max_retries BETWEEN 0 AND 10),
    ADD CONSTRAINT async_calls_timeout_ms_check CHECK (timeout_ms >= 0);

-- and every other setting of the session that submitted them (NULL: the server's)
ALTER TABLE llmgw.async_calls
    ADD COLUMN retry_max_wait_ms integer CHECK (retry_max_wait_ms BETWEEN 0 AND 600000),
    ADD COLUMN retry_base_delay_ms integer CHECK (retry_base_delay_ms BETWEEN 0 AND 60000),
    ADD COLUMN deadline_ms integer CHECK (deadline_ms >= 0),
    ADD COLUMN cache text CHECK (cache IN ('default', 'on', 'off')),
    ADD COLUMN cache_ttl_s integer CHECK (cache_ttl_s > 0),
    ADD COLUMN max_response_bytes bigint CHECK (max_response_bytes BETWEEN 1024 AND 2147483647);
GRANT SELECT (retry_max_wait_ms, retry_base_delay_ms, deadline_ms, cache, cache_ttl_s,
              max_response_bytes)
    ON llmgw.async_calls TO llmgw_admin, llmgw_user;
GRANT INSERT (retry_max_wait_ms, retry_base_delay_ms, deadline_ms, cache, cache_ttl_s,
              max_response_bytes)
    ON llmgw.async_calls TO llmgw_admin, llmgw_user;

-- A call queued by hand is queued as llmgw.submit() queues it: the
-- session's key (never a hash written in the row), llmgw.require_key, and
-- the session's tags unless given (a JSON object of at most 4096 bytes).
-- A superuser's rows (a restore) keep what they say.
CREATE FUNCTION llmgw.async_calls_guard() RETURNS trigger
AS 'MODULE_PATHNAME', 'llmgw_async_calls_guard'
LANGUAGE C;

CREATE TRIGGER async_calls_guard BEFORE INSERT ON llmgw.async_calls
    FOR EACH ROW EXECUTE FUNCTION llmgw.async_calls_guard();
REVOKE ALL ON FUNCTION llmgw.async_calls_guard() FROM PUBLIC;

------------------------------------------------------------------------------
-- The journal of calls in flight is a file now (src/journal.c)
------------------------------------------------------------------------------

-- what the 0.1 journal still holds was in flight in a server life that is
-- gone (a 0.2 library never serves a 0.1 schema): interrupted calls
INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, key_id, team_id, model,
                         provider, upstream_model, status, error_class)
SELECT f.request_id, 1, f.started_at, f.role_name, f.key_id, f.team_id, f.model, f.provider,
       f.upstream_model, 'interrupted', 'interrupted'
  FROM llmgw.calls_in_flight f
 WHERE NOT EXISTS (SELECT 1 FROM llmgw.usage u WHERE u.request_id = f.request_id);
DROP FUNCTION llmgw.recover_interrupted();
DROP TABLE llmgw.calls_in_flight;

-- The calls of this server life whose requests were sent and that are not
-- settled yet, as the journal of calls in flight (pg_llmgw/journal) has
-- them.  After a crash or an immediate shutdown, worker 0 records the calls
-- of the dead life as "interrupted" usage rows.
CREATE FUNCTION llmgw.calls_in_flight_now(
    OUT request_id uuid, OUT attempt integer, OUT started_at timestamptz,
    OUT role_name text, OUT model text, OUT provider text, OUT upstream_model text,
    OUT key_id bigint, OUT team_id bigint, OUT job_id bigint, OUT async_id bigint,
    OUT slot integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_calls_in_flight'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW llmgw.calls_in_flight AS
SELECT request_id, attempt, started_at, role_name, model, provider, upstream_model,
       key_id, team_id, job_id, async_id
  FROM llmgw.calls_in_flight_now();

------------------------------------------------------------------------------
-- Prices: never changed once written, the 1-hour cache write tier, seed
-- rows left out of dumps (a restore makes them anew)
------------------------------------------------------------------------------

ALTER TABLE llmgw.prices ADD COLUMN tier_cache_write_1h numeric;
DROP INDEX llmgw.prices_current_idx;
DROP INDEX llmgw.prices_model_idx;
CREATE UNIQUE INDEX prices_model_from_idx ON llmgw.prices (model, valid_from);

-- History is never rewritten: a price row is never changed or deleted, and a
-- new price is a new row from its valid_from on.  The one change allowed is
-- to end the latest row of a model (valid_to, set once, not on a seed row),
-- when the model is no longer priced.
CREATE OR REPLACE FUNCTION llmgw.prices_immutable() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'price rows are never deleted'
            USING ERRCODE = 'prohibited_sql_statement_attempted',
                  HINT = 'Set a new price with llmgw.set_price(); it applies from its valid_from on.';
    END IF;
    IF OLD.valid_to IS NOT NULL OR OLD.source IS NOT DISTINCT FROM 'seed'
       OR (to_jsonb(NEW) - 'valid_to') IS DISTINCT FROM (to_jsonb(OLD) - 'valid_to')
       OR EXISTS (SELECT 1 FROM llmgw.prices p
                   WHERE p.model = OLD.model AND p.valid_from > OLD.valid_from) THEN
        RAISE EXCEPTION 'price row % is history and cannot be changed', OLD.id
            USING ERRCODE = 'prohibited_sql_statement_attempted',
                  HINT = 'Set a new price with llmgw.set_price(); it applies from its valid_from on.  Only the latest price of a model may be ended.';
    END IF;
    RETURN NEW;
END
$fn$;

DROP FUNCTION llmgw.set_price(text, numeric, numeric, numeric, numeric, numeric, numeric, numeric,
    numeric, bigint, numeric, numeric, numeric, numeric, numeric, numeric, integer, text,
    timestamptz, text);
-- Set the price of a model from valid_from on (the row before stays as it
-- was: a price is in force until the next one of its model starts).  Rates
-- are per 1M tokens; per_request and per_image per call and image.
CREATE FUNCTION llmgw.set_price(
    model text,
    input numeric,
    output numeric,
    cached_input numeric DEFAULT NULL,
    cache_write_5m numeric DEFAULT NULL,
    cache_write_1h numeric DEFAULT NULL,
    reasoning numeric DEFAULT NULL,
    per_request numeric DEFAULT NULL,
    per_image numeric DEFAULT NULL,
    tier_threshold bigint DEFAULT NULL,
    tier_input numeric DEFAULT NULL,
    tier_cached_input numeric DEFAULT NULL,
    tier_cache_write_5m numeric DEFAULT NULL,
    tier_output numeric DEFAULT NULL,
    batch_input numeric DEFAULT NULL,
    batch_output numeric DEFAULT NULL,
    max_output_tokens integer DEFAULT NULL,
    currency text DEFAULT 'USD',
    valid_from timestamptz DEFAULT pg_catalog.now(),
    source text DEFAULT 'manual',
    tier_cache_write_1h numeric DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    latest timestamptz;
    id bigint;
BEGIN
    SELECT max(p.valid_from) INTO latest FROM llmgw.prices p WHERE p.model = set_price.model;
    IF latest >= set_price.valid_from THEN
        RAISE EXCEPTION 'the latest price of "%" is valid from %, which is not before %',
            model, latest, set_price.valid_from
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Prices are history: a new price starts after the latest one.';
    END IF;
    INSERT INTO llmgw.prices (model, currency, input, cached_input, cache_write_5m,
        cache_write_1h, output, reasoning, per_request, per_image, tier_threshold,
        tier_input, tier_cached_input, tier_cache_write_5m, tier_output, batch_input,
        batch_output, max_output_tokens, valid_from, source, tier_cache_write_1h)
    VALUES (model, currency, trim_scale(coalesce(input, 0)), trim_scale(cached_input),
        trim_scale(cache_write_5m), trim_scale(cache_write_1h), trim_scale(coalesce(output, 0)),
        trim_scale(reasoning), trim_scale(per_request), trim_scale(per_image), tier_threshold,
        trim_scale(tier_input), trim_scale(tier_cached_input), trim_scale(tier_cache_write_5m),
        trim_scale(tier_output), trim_scale(batch_input), trim_scale(batch_output),
        max_output_tokens, valid_from, source, trim_scale(tier_cache_write_1h))
    RETURNING prices.id INTO id;
    RETURN id;
END
$fn$;

DROP FUNCTION llmgw.import_prices(jsonb, timestamptz, text[]);
-- Import LiteLLM's model_prices_and_context_window.json (per-token USD).
-- Models whose rates are unchanged keep their row; changed ones get a new
-- row from valid_from on.  Returns the number of models priced anew.
CREATE FUNCTION llmgw.import_prices(prices jsonb, valid_from timestamptz DEFAULT pg_catalog.now(),
                                    only_models text[] DEFAULT NULL,
                                    source text DEFAULT 'litellm')
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    e record;
    v jsonb;
    cur llmgw.prices;
    n integer := 0;
    tier text;
    r record;
BEGIN
    IF jsonb_typeof(prices) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'import_prices expects a JSON object keyed by model'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR e IN SELECT key, value FROM jsonb_each(prices)
              WHERE key <> 'sample_spec' AND jsonb_typeof(value) = 'object'
                AND (only_models IS NULL OR key = ANY (only_models))
                AND (value ? 'input_cost_per_token' OR value ? 'output_cost_per_token'
                     OR value ? 'input_cost_per_request')
              ORDER BY key
    LOOP
        v := e.value;
        -- the tier LiteLLM lists, if any (one per model in practice)
        tier := (SELECT substring(k FROM '_above_([0-9]+)k_tokens$') FROM jsonb_object_keys(v) k
                  WHERE k ~ '^input_cost_per_token_above_[0-9]+k_tokens$' LIMIT 1);
        SELECT (v->>'input_cost_per_token')::numeric * 1000000 AS input,
               (v->>'output_cost_per_token')::numeric * 1000000 AS output,
               (v->>'cache_read_input_token_cost')::numeric * 1000000 AS cached_input,
               (v->>'cache_creation_input_token_cost')::numeric * 1000000 AS cache_write_5m,
               (v->>'cache_creation_input_token_cost_above_1hr')::numeric * 1000000 AS cache_write_1h,
               (v->>'output_cost_per_reasoning_token')::numeric * 1000000 AS reasoning,
               (v->>'input_cost_per_request')::numeric AS per_request,
               (v->>'input_cost_per_image')::numeric AS per_image,
               tier::bigint * 1000 AS tier_threshold,
               (v->>('input_cost_per_token_above_' || tier || 'k_tokens'))::numeric * 1000000 AS tier_input,
               (v->>('cache_read_input_token_cost_above_' || tier || 'k_tokens'))::numeric * 1000000 AS tier_cached_input,
               (v->>('cache_creation_input_token_cost_above_' || tier || 'k_tokens'))::numeric * 1000000 AS tier_cache_write_5m,
               (v->>('cache_creation_input_token_cost_above_1hr_above_' || tier || 'k_tokens'))::numeric * 1000000 AS tier_cache_write_1h,
               (v->>('output_cost_per_token_above_' || tier || 'k_tokens'))::numeric * 1000000 AS tier_output,
               (v->>'input_cost_per_token_batches')::numeric * 1000000 AS batch_input,
               (v->>'output_cost_per_token_batches')::numeric * 1000000 AS batch_output,
               CASE WHEN jsonb_typeof(coalesce(v->'max_output_tokens', v->'max_tokens')) = 'number'
                    THEN nullif(least(greatest((coalesce(v->>'max_output_tokens',
                                                         v->>'max_tokens'))::numeric, 0),
                                      2147483647)::integer, 0) END AS max_output_tokens
          INTO r;
        -- the latest row of the model, if it is still in force
        SELECT * INTO cur FROM llmgw.prices p WHERE p.model = e.key
         ORDER BY p.valid_from DESC LIMIT 1;
        IF cur.id IS NOT NULL AND cur.valid_to IS NULL
           AND (cur.input, cur.output, cur.cached_input, cur.cache_write_5m, cur.cache_write_1h,
                cur.reasoning, cur.per_request, cur.per_image, cur.tier_threshold, cur.tier_input,
                cur.tier_cached_input, cur.tier_cache_write_5m, cur.tier_cache_write_1h,
                cur.tier_output, cur.batch_input, cur.batch_output, cur.max_output_tokens)
               IS NOT DISTINCT FROM
               (coalesce(r.input, 0), coalesce(r.output, 0), r.cached_input, r.cache_write_5m,
                r.cache_write_1h, r.reasoning, r.per_request, r.per_image, r.tier_threshold,
                r.tier_input, r.tier_cached_input, r.tier_cache_write_5m, r.tier_cache_write_1h,
                r.tier_output, r.batch_input, r.batch_output, r.max_output_tokens) THEN
            CONTINUE;
        END IF;
        PERFORM llmgw.set_price(e.key, r.input, r.output, r.cached_input, r.cache_write_5m,
            r.cache_write_1h, r.reasoning, r.per_request, r.per_image, r.tier_threshold,
            r.tier_input, r.tier_cached_input, r.tier_cache_write_5m, r.tier_output,
            r.batch_input, r.batch_output, r.max_output_tokens, 'USD', valid_from,
            import_prices.source, r.tier_cache_write_1h);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;

-- The exact cost of a call at price p, from the normalised token buckets
-- (input includes cached input and cache writes; output includes
-- reasoning).  Above the tier threshold the whole call is charged the tier
-- rates.  NULL when the counts needed are missing.
CREATE OR REPLACE FUNCTION llmgw.cost(
    p llmgw.prices,
    input_tokens bigint,
    output_tokens bigint,
    cached_input_tokens bigint DEFAULT NULL,
    cache_write_tokens bigint DEFAULT NULL,
    cache_write_1h_tokens bigint DEFAULT NULL,
    reasoning_tokens bigint DEFAULT NULL,
    images integer DEFAULT NULL)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN p.id IS NULL THEN NULL ELSE trim_scale(
    ((input_tokens - coalesce(cached_input_tokens, 0) - coalesce(cache_write_tokens, 0))
        * CASE WHEN input_tokens > p.tier_threshold THEN coalesce(p.tier_input, p.input)
               ELSE p.input END
     + coalesce(cached_input_tokens, 0)
        * CASE WHEN input_tokens > p.tier_threshold
               THEN coalesce(p.tier_cached_input, p.cached_input, p.tier_input, p.input)
               ELSE coalesce(p.cached_input, p.input) END
     + (coalesce(cache_write_tokens, 0) - coalesce(cache_write_1h_tokens, 0))
        * CASE WHEN input_tokens > p.tier_threshold
               THEN coalesce(p.tier_cache_write_5m, p.cache_write_5m, p.tier_input, p.input)
               ELSE coalesce(p.cache_write_5m, p.input) END
     + coalesce(cache_write_1h_tokens, 0)
        * CASE WHEN input_tokens > p.tier_threshold
               THEN coalesce(p.tier_cache_write_1h, p.cache_write_1h, p.tier_cache_write_5m,
                             p.cache_write_5m, p.tier_input, p.input)
               ELSE coalesce(p.cache_write_1h, p.cache_write_5m, p.input) END
     + (coalesce(output_tokens, CASE WHEN p.output = 0 AND p.reasoning IS NULL THEN 0 END)
        - coalesce(reasoning_tokens, 0))
        * CASE WHEN input_tokens > p.tier_threshold THEN coalesce(p.tier_output, p.output)
               ELSE p.output END
     + coalesce(reasoning_tokens, 0) * coalesce(p.reasoning,
        CASE WHEN input_tokens > p.tier_threshold THEN coalesce(p.tier_output, p.output)
             ELSE p.output END)
    ) / 1000000
    + coalesce(p.per_request, 0) + coalesce(images, 0) * coalesce(p.per_image, 0))
END
$$;

-- The price row in force at a time for one of the names (the first name
-- that has one): of each name, the latest row started by then, unless it
-- was ended before then
CREATE OR REPLACE FUNCTION llmgw.price_at(names text[], at timestamptz)
RETURNS llmgw.prices
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT c.p FROM (
    SELECT (SELECT p FROM llmgw.prices p
             WHERE p.model = n.name AND p.valid_from <= at
             ORDER BY p.valid_from DESC LIMIT 1) AS p, n.ord
      FROM unnest(names) WITH ORDINALITY AS n(name, ord)) c
 WHERE (c.p).id IS NOT NULL AND ((c.p).valid_to IS NULL OR (c.p).valid_to > at)
 ORDER BY c.ord
 LIMIT 1
$$;

-- The price in force now of every model (a row applies from its valid_from
-- until the next row of its model starts, or until its own valid_to)
CREATE VIEW llmgw.prices_now AS
SELECT p.*
  FROM (SELECT DISTINCT ON (model) * FROM llmgw.prices
         WHERE valid_from <= pg_catalog.now()
         ORDER BY model, valid_from DESC) p
 WHERE p.valid_to IS NULL OR p.valid_to > pg_catalog.now();

-- the seed of 0.1: its first seven rows, imported at 2026-01-01
ALTER TABLE llmgw.prices DISABLE TRIGGER prices_immutable;
UPDATE llmgw.prices SET source = 'seed'
 WHERE id <= 7 AND source = 'litellm' AND valid_from = '2026-01-01 00:00:00+00';
ALTER TABLE llmgw.prices ENABLE TRIGGER prices_immutable;
SELECT pg_catalog.pg_extension_config_dump('llmgw.prices', 'WHERE source IS DISTINCT FROM ''seed''');

------------------------------------------------------------------------------
-- Teams and keys: explicit role membership only, the real caller, views as
-- security barriers
------------------------------------------------------------------------------

-- The teams the current role acts as: the bindings of the role and of the
-- roles it is a member of by explicit grants (a superuser is not bound to
-- every team).  For row-level security; it runs with the caller's identity,
-- so it must not be SECURITY DEFINER.
CREATE OR REPLACE FUNCTION llmgw.my_teams() RETURNS SETOF bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE roles(oid) AS (
        SELECT r.oid FROM pg_roles r WHERE r.rolname = CURRENT_USER
        UNION
        SELECT m.roleid FROM pg_auth_members m JOIN roles ON m.member = roles.oid)
    SELECT b.team_id FROM llmgw.role_bindings b
      JOIN pg_roles br ON br.rolname = b.role_name
     WHERE br.oid IN (SELECT oid FROM roles)
$$;

-- The keys without their hashes: admin and finance see all, other roles the
-- keys of their teams.  A security barrier: no function of the caller's
-- sees a row before the filter has run.
CREATE OR REPLACE VIEW llmgw.keys AS
SELECT k.id, k.name, k.prefix, t.name AS team, k.allowed_models, k.rpm_limit, k.tpm_limit,
       k.expires_at, k.revoked_at, k.rotated_from, k.lineage_id, k.created_at, k.created_by,
       CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
            WHEN k.expires_at <= pg_catalog.now() THEN 'expired'
            ELSE 'active' END AS state
  FROM llmgw.virtual_keys k LEFT JOIN llmgw.teams t ON t.id = k.team_id
 WHERE pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_admin', 'MEMBER')
    OR pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_finance', 'MEMBER')
    OR k.team_id IN (SELECT llmgw.my_teams());
ALTER VIEW llmgw.keys SET (security_barrier = true);

-- Create a virtual key.  The key is returned once; only its hash is kept.
CREATE OR REPLACE FUNCTION llmgw.create_key(
    team text,
    name text DEFAULT NULL,
    allowed_models text[] DEFAULT NULL,
    expires_at timestamptz DEFAULT NULL,
    rpm_limit integer DEFAULT NULL,
    tpm_limit bigint DEFAULT NULL,
    OUT key_id bigint, OUT api_key text, OUT prefix text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    m record;
BEGIN
    IF NOT llmgw.caller_has_role('llmgw_admin') AND NOT llmgw.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied to create a virtual key'
            USING ERRCODE = 'insufficient_privilege', HINT = 'Keys are managed by llmgw_admin.';
    END IF;
    SELECT * INTO m FROM llmgw.new_key_material();
    INSERT INTO llmgw.virtual_keys (name, prefix, hash, team_id, allowed_models,
                                    rpm_limit, tpm_limit, expires_at, lineage_id, created_by)
    VALUES (create_key.name, m.prefix, m.hash,
            CASE WHEN team IS NOT NULL THEN llmgw.team_id(team) END,
            allowed_models, rpm_limit, tpm_limit, expires_at, 0, llmgw.caller())
    RETURNING id INTO key_id;
    UPDATE llmgw.virtual_keys k SET lineage_id = k.id WHERE k.id = key_id;
    api_key := m.api_key;
    prefix := m.prefix;
END
$fn$;

-- Revoke a key at once
CREATE OR REPLACE FUNCTION llmgw.revoke_key(key_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT llmgw.caller_has_role('llmgw_admin') AND NOT llmgw.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied to revoke a virtual key'
            USING ERRCODE = 'insufficient_privilege', HINT = 'Keys are managed by llmgw_admin.';
    END IF;
    UPDATE llmgw.virtual_keys k SET revoked_at = coalesce(k.revoked_at, now())
     WHERE k.id = key_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'virtual key % does not exist', key_id USING ERRCODE = 'undefined_object';
    END IF;
END
$fn$;

-- Replace a key by a new one with the same settings; the old key keeps
-- working for the grace period.  Budgets on the key follow the new one.
CREATE OR REPLACE FUNCTION llmgw.rotate_key(key_id bigint, grace interval DEFAULT '1 hour',
                                 OUT new_key_id bigint, OUT api_key text, OUT prefix text)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    old llmgw.virtual_keys;
    m record;
BEGIN
    IF NOT llmgw.caller_has_role('llmgw_admin') AND NOT llmgw.caller_is_superuser() THEN
        RAISE EXCEPTION 'permission denied to rotate a virtual key'
            USING ERRCODE = 'insufficient_privilege', HINT = 'Keys are managed by llmgw_admin.';
    END IF;
    SELECT * INTO old FROM llmgw.virtual_keys k WHERE k.id = key_id FOR UPDATE;
    IF old.id IS NULL OR old.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'virtual key % does not exist or is revoked', key_id
            USING ERRCODE = 'undefined_object';
    END IF;
    IF grace < interval '0' THEN
        RAISE EXCEPTION 'grace must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO m FROM llmgw.new_key_material();
    INSERT INTO llmgw.virtual_keys (name, prefix, hash, team_id, allowed_models, rpm_limit,
                                    tpm_limit, expires_at, rotated_from, lineage_id, created_by)
    VALUES (old.name, m.prefix, m.hash, old.team_id, old.allowed_models, old.rpm_limit,
            old.tpm_limit, old.expires_at, old.id, old.lineage_id, llmgw.caller())
    RETURNING id INTO new_key_id;
    UPDATE llmgw.virtual_keys k
       SET expires_at = least(coalesce(k.expires_at, 'infinity'), now() + grace)
     WHERE k.id = key_id;
    api_key := m.api_key;
    prefix := m.prefix;
END
$fn$;

------------------------------------------------------------------------------
-- Visibility and enrichment
------------------------------------------------------------------------------

DROP FUNCTION llmgw.stats();
-- The workers and the queue right now
CREATE FUNCTION llmgw.stats(
    OUT workers_running integer,
    OUT calls_queued integer,
    OUT calls_in_flight integer,
    OUT calls_since_start bigint,
    OUT queue_size integer,
    OUT workers_configured integer,
    OUT life_started_at timestamptz)
AS 'MODULE_PATHNAME', 'llmgw_stats'
LANGUAGE C STRICT VOLATILE;

-- Progress of every job: rate and estimated finish while it runs
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
       started_at, updated_at, finished_at, last_error
  FROM llmgw.jobs;

-- Fill output_column of source from a prompt expression over each row, in
-- chunks committed one by one.  Rows whose output is already set are skipped,
-- so a cancelled or crashed run resumes where it stopped.  Only rows the
-- caller may update are taken (row-level security, locks of concurrent
-- runs): no model is called for an answer that could not be written.  Must
-- be CALLed outside an explicit transaction block (it commits).
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
BEGIN
    IF chunk_size < 1 THEN
        RAISE EXCEPTION 'chunk_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- every answer paid for must be writable: check before any call
    IF NOT pg_catalog.has_column_privilege(source, output_column, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to update column % of %', output_column, source
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'llmgw.enrich writes each answer into the output column, and calls no model for a row it could not write.';
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

------------------------------------------------------------------------------
-- One name for the embeddings of many inputs: llm_embed_many, beside
-- llm_complete_many ("batch" is for the providers' Batch APIs)
------------------------------------------------------------------------------

DROP FUNCTION @extschema@.llm_embed_many(text[], text);
DROP FUNCTION @extschema@.llm_embed_batch(text[], text);
CREATE FUNCTION @extschema@.llm_embed_many(inputs text[], model text)
RETURNS TABLE (ordinality integer, embedding real[])
AS 'MODULE_PATHNAME', 'llm_embed_many'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 100;
REVOKE ALL ON FUNCTION @extschema@.llm_embed_many(text[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.llm_embed_many(text[], text) TO llmgw_user, llmgw_admin;

------------------------------------------------------------------------------
-- pg_dump keeps the position of every sequence
------------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.deployments', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.teams', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.virtual_keys', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.prices', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.budgets', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.alerts', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.jobs', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.async_calls', 'id')::regclass, '');

------------------------------------------------------------------------------
-- Privileges of the new and re-created objects
------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION llmgw.caller(), llmgw.caller_is_superuser(), llmgw.caller_has_role(name),
    llmgw.index_usage_partition(regclass), llmgw.ledger_changed(),
    llmgw.secret_ref_allowed(text), llmgw.check_base_url(text), llmgw.hide_statement(),
    llmgw.providers_guard(), llmgw.calls_in_flight_now(), llmgw.stats(),
    llmgw.set_price(text, numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric,
                    bigint, numeric, numeric, numeric, numeric, numeric, numeric, integer, text,
                    timestamptz, text, numeric),
    llmgw.import_prices(jsonb, timestamptz, text[], text)
    FROM PUBLIC;
REVOKE ALL ON llmgw.calls_in_flight, llmgw.prices_now FROM PUBLIC;
GRANT SELECT ON llmgw.prices_now TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON FUNCTION llmgw.stats() TO llmgw_admin, llmgw_finance;
GRANT SELECT ON llmgw.calls_in_flight TO llmgw_admin, llmgw_finance;
-- the view reads the journal through this function, with the reader's rights
GRANT EXECUTE ON FUNCTION llmgw.calls_in_flight_now() TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON FUNCTION llmgw.check_base_url(text), llmgw.hide_statement() TO llmgw_admin;
GRANT EXECUTE ON FUNCTION
    llmgw.set_price(text, numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric,
                    bigint, numeric, numeric, numeric, numeric, numeric, numeric, integer, text,
                    timestamptz, text, numeric),
    llmgw.import_prices(jsonb, timestamptz, text[], text)
    TO llmgw_admin;

------------------------------------------------------------------------------
-- What every object is for (\dd llmgw.*, \d+)
------------------------------------------------------------------------------

COMMENT ON SCHEMA llmgw IS 'llmgw: an LLM gateway inside PostgreSQL (providers, models, keys, budgets, usage)';

-- configuration
COMMENT ON TABLE llmgw.providers IS 'Model providers: wire format (kind), base URL, timeouts and where the secret is (secret_ref); see llmgw.create_provider()';
COMMENT ON COLUMN llmgw.providers.secret_ref IS 'env:NAME, file:/path or stored (llmgw.provider_secrets); references outside llmgw.secret_env_prefix / llmgw.secret_directory only by a superuser';
COMMENT ON COLUMN llmgw.providers.secret_ref_trusted IS 'A superuser set secret_ref, so it resolves whatever postgresql.conf allows (kept by the providers_guard trigger)';
COMMENT ON TABLE llmgw.provider_secrets IS 'Stored provider secrets; readable by the extension owner only (llmgw.set_provider_secret() writes it)';
COMMENT ON TABLE llmgw.models IS 'Public model aliases, with their rate limits, routing strategy and response cache settings';
COMMENT ON TABLE llmgw.deployments IS 'The upstream models an alias routes to: provider, priority (fallback order), weight (load balancing), price model and limits';
COMMENT ON TABLE llmgw.teams IS 'Teams: the models they may use and their rate limits; keys and role bindings belong to a team';
COMMENT ON TABLE llmgw.role_bindings IS 'A PostgreSQL role (and the roles that are explicitly its members) calls as a team when it presents no virtual key';
COMMENT ON TABLE llmgw.virtual_keys IS 'Virtual keys: sha256 hash and visible prefix only; readable by the extension owner only (see the view llmgw.keys)';
COMMENT ON TABLE llmgw.prices IS 'Prices per 1M tokens, time-versioned: a row applies from valid_from until the next row of its model starts; rows are never changed';
COMMENT ON COLUMN llmgw.prices.valid_to IS 'Set (once) only to end a price that has no successor; NULL otherwise';
COMMENT ON COLUMN llmgw.prices.source IS 'Where the row came from: manual, litellm, or seed (rows created by the extension, left out of dumps)';
COMMENT ON COLUMN llmgw.prices.tier_cache_write_1h IS '1-hour cache writes above tier_threshold input tokens, per 1M tokens';
COMMENT ON TABLE llmgw.budgets IS 'Budgets per key, team, role, model or globally, per day, week, month or in total; hard ones refuse calls, soft ones alert';
COMMENT ON TABLE llmgw.alerts IS 'A budget crossing its limit; each row is also sent as NOTIFY llmgw_alerts';

-- usage
COMMENT ON TABLE llmgw.usage IS 'One row per provider attempt or cache hit, written by the workers before the caller is woken; partitioned by month, append-only';
COMMENT ON COLUMN llmgw.usage.status IS 'ok, error, cancelled, or interrupted (the worker or the server died while the call was in flight)';
COMMENT ON COLUMN llmgw.usage.error_class IS 'Why it failed: a class of docs/errors.md (timeout, rate_limit, broken_stream, ...)';
COMMENT ON COLUMN llmgw.usage.usage_source IS 'provider: the provider reported the tokens; estimated: llmgw estimated them (interrupted calls); NULL: none known';
COMMENT ON COLUMN llmgw.usage.cost IS 'Exact cost of the row''s tokens at the price in force when the attempt started; NULL when it could not be priced';
COMMENT ON COLUMN llmgw.usage.unpriced IS 'The row has tokens (or an answer) but no price applied: its cost is NULL, never 0';
COMMENT ON COLUMN llmgw.usage.job_id IS 'The llmgw.jobs row the call worked for (llmgw.enrich)';
COMMENT ON COLUMN llmgw.usage.async_id IS 'The llmgw.async_calls row the call answered (llmgw.submit)';
COMMENT ON COLUMN llmgw.async_calls.max_retries IS 'llmgw.max_retries of the session that submitted the call';
COMMENT ON COLUMN llmgw.async_calls.timeout_ms IS 'llmgw.request_timeout of the submitting session, in ms (0: the provider''s timeout)';
COMMENT ON COLUMN llmgw.async_calls.retry_max_wait_ms IS 'llmgw.retry_max_wait of the submitting session, in ms (NULL: the server''s)';
COMMENT ON COLUMN llmgw.async_calls.retry_base_delay_ms IS 'llmgw.retry_base_delay of the submitting session, in ms (NULL: the server''s)';
COMMENT ON COLUMN llmgw.async_calls.deadline_ms IS 'llmgw.call_deadline of the submitting session, in ms, counted from each time a worker takes the call (NULL: the server''s)';
COMMENT ON COLUMN llmgw.async_calls.cache IS 'llmgw.cache of the submitting session: default, on or off (NULL: the server''s)';
COMMENT ON COLUMN llmgw.async_calls.cache_ttl_s IS 'llmgw.cache_ttl of the submitting session, in seconds (NULL: the server''s)';
COMMENT ON COLUMN llmgw.async_calls.max_response_bytes IS 'llmgw.max_response_size of the submitting session, in bytes (NULL: the server''s)';
COMMENT ON TABLE llmgw.usage_default IS 'Usage rows of months without a partition of their own (the workers create monthly partitions as rows need them)';
COMMENT ON TABLE llmgw.usage_daily IS 'Daily rollups of llmgw.usage by team, key, role, model, deployment and currency, one set per worker (shard)';
COMMENT ON TABLE llmgw.response_cache IS 'Exact-match response cache, per team (or shared); readable by the extension owner only';
COMMENT ON TABLE llmgw.async_calls IS 'Asynchronous calls of llmgw.submit(), served by the workers with leases; the answer is written with the usage rows';
COMMENT ON TABLE llmgw.jobs IS 'Runs of llmgw.enrich(): what they fill, their progress and how they ended';

COMMENT ON SEQUENCE llmgw.usage_id_seq IS 'Ids of llmgw.usage rows';
COMMENT ON SEQUENCE llmgw.alerts_id_seq IS 'Ids of llmgw.alerts rows';
COMMENT ON SEQUENCE llmgw.async_calls_id_seq IS 'Ids of llmgw.async_calls rows';
COMMENT ON SEQUENCE llmgw.budgets_id_seq IS 'Ids of llmgw.budgets rows';
COMMENT ON SEQUENCE llmgw.deployments_id_seq IS 'Ids of llmgw.deployments rows';
COMMENT ON SEQUENCE llmgw.jobs_id_seq IS 'Ids of llmgw.jobs rows';
COMMENT ON SEQUENCE llmgw.prices_id_seq IS 'Ids of llmgw.prices rows';
COMMENT ON SEQUENCE llmgw.teams_id_seq IS 'Ids of llmgw.teams rows';
COMMENT ON SEQUENCE llmgw.virtual_keys_id_seq IS 'Ids of llmgw.virtual_keys rows';

-- views
COMMENT ON VIEW llmgw.keys IS 'Virtual keys without their hashes: admin and finance see all, other roles their teams'' keys (a security barrier)';
COMMENT ON VIEW llmgw.prices_now IS 'The price in force now of each model';
COMMENT ON VIEW llmgw.spend_daily IS 'Spend per day, team, key, role, model and deployment, from the rollups (row-level security of llmgw.usage_daily)';
COMMENT ON VIEW llmgw.spend_by_key IS 'Spend per month and virtual key';
COMMENT ON VIEW llmgw.spend_by_team IS 'Spend per month and team';
COMMENT ON VIEW llmgw.spend_by_model IS 'Spend per month, model alias and deployment';
COMMENT ON VIEW llmgw.budget_status IS 'Each budget now: limit, spent this period, reserved by calls in flight, remaining, when it resets';
COMMENT ON VIEW llmgw.cache_stats IS 'What the response cache holds, per model and scope, without the answers';
COMMENT ON VIEW llmgw.calls_in_flight IS 'Calls whose requests were sent and that are not settled yet (the journal pg_llmgw/journal)';
COMMENT ON VIEW llmgw.deployment_health IS 'Each deployment: cooldown state, successes, failures and latency percentiles since the server started';
COMMENT ON VIEW llmgw.requests IS 'One row per call, its attempts folded in (row-level security of llmgw.usage)';
COMMENT ON VIEW llmgw.job_progress IS 'Each enrich job: rows done, failed and skipped, spend, rate and estimated finish';

-- calling models
COMMENT ON FUNCTION @extschema@.llm_complete(text, text, text, integer, double precision) IS 'One chat completion of prompt by model (an llmgw alias); NULL prompt gives NULL';
COMMENT ON FUNCTION @extschema@.llm_complete_many(text[], text, text, integer, double precision, integer, text) IS 'Many completions from one statement, run concurrently by the workers';
COMMENT ON FUNCTION @extschema@.llm_chat(jsonb) IS 'An OpenAI Chat Completions-shaped request to any provider; answers in llmgw''s normalised shape';
COMMENT ON FUNCTION @extschema@.llm_embed(text, text) IS 'The embedding of one input';
COMMENT ON FUNCTION @extschema@.llm_embed_many(text[], text) IS 'The embeddings of many inputs in one provider request, one row per input in input order';
COMMENT ON FUNCTION llmgw.submit(jsonb) IS 'Queue an llm_chat request durably; the workers make the call once the transaction commits; returns its id';
COMMENT ON FUNCTION llmgw.result(bigint) IS 'The state and, once there, the answer of a submitted call';
COMMENT ON FUNCTION llmgw.wait(bigint, interval) IS 'Wait up to timeout for a submitted call to finish; returns its result';
COMMENT ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text) IS 'Fill a column from a prompt over each row, in committed, resumable chunks; only rows the caller may update';

-- administration
COMMENT ON FUNCTION llmgw.create_provider(text, text, text, text, text, integer, integer, integer) IS 'Register a provider: kind, base URL, and its secret (env:, file:, or a literal stored owner-only)';
COMMENT ON FUNCTION llmgw.set_provider_secret(text, text) IS 'Store (or with NULL remove) a provider''s secret in the owner-only table; the statement is hidden from pg_stat_activity and logs';
COMMENT ON FUNCTION llmgw.drop_provider(text) IS 'Remove a provider that no model uses';
COMMENT ON FUNCTION llmgw.create_model(text, text, text, integer, integer, text, integer, bigint) IS 'Map an alias to a provider''s upstream model; again for the same alias adds a deployment';
COMMENT ON FUNCTION llmgw.drop_model(text) IS 'Remove a model alias and its deployments';
COMMENT ON FUNCTION llmgw.create_team(text, text[], integer, bigint) IS 'Create a team, with the models it may use and its rate limits';
COMMENT ON FUNCTION llmgw.team_id(text) IS 'The id of a team, or an error naming it';
COMMENT ON FUNCTION llmgw.bind_role(regrole, text) IS 'Let a role (and its explicit members) call as a team when it presents no key';
COMMENT ON FUNCTION llmgw.unbind_role(regrole) IS 'Remove a role''s team binding';
COMMENT ON FUNCTION llmgw.new_key_material() IS 'A new random virtual key, its prefix and its hash (internal)';
COMMENT ON FUNCTION llmgw.create_key(text, text, text[], timestamptz, integer, bigint) IS 'Create a virtual key; the key is returned once, only its hash is kept';
COMMENT ON FUNCTION llmgw.revoke_key(bigint) IS 'Revoke a virtual key at once';
COMMENT ON FUNCTION llmgw.rotate_key(bigint, interval) IS 'Replace a key by a new one; the old one works for the grace period';
COMMENT ON FUNCTION llmgw.set_price(text, numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric, bigint, numeric, numeric, numeric, numeric, numeric, numeric, integer, text, timestamptz, text, numeric) IS 'Price a model from valid_from on (per 1M tokens); earlier rows stay as they were';
COMMENT ON FUNCTION llmgw.import_prices(jsonb, timestamptz, text[], text) IS 'Import LiteLLM''s model_prices_and_context_window.json; changed models get a new row';
COMMENT ON FUNCTION llmgw.cost(llmgw.prices, bigint, bigint, bigint, bigint, bigint, bigint, integer) IS 'The exact cost of token counts at a price row';
COMMENT ON FUNCTION llmgw.price_names(text, text, text, text) IS 'The price names a deployment is looked up under, most specific first';
COMMENT ON FUNCTION llmgw.price_at(text[], timestamptz) IS 'The price row in force at a time for the first of the names that has one';
COMMENT ON FUNCTION llmgw.create_budget(text, text, text, text, numeric, text, text) IS 'Create a budget for a key, team, role, model or everything, per day, week, month or in total';
COMMENT ON FUNCTION llmgw.period_start(text, timestamptz) IS 'Start of the budget period (UTC day, ISO week, month) containing a time';
COMMENT ON FUNCTION llmgw.period_end(text, timestamptz) IS 'End of the budget period containing a time';
COMMENT ON FUNCTION llmgw.budget_spent(llmgw.budgets, timestamptz) IS 'Spend of a budget in its current period, from the rollups';
COMMENT ON FUNCTION llmgw.budget_ledger() IS 'The budget ledger in shared memory: reserved and spent per budget';
COMMENT ON FUNCTION llmgw.create_usage_partitions(integer) IS 'Create the monthly partitions of llmgw.usage from this month to months_ahead ahead, with their keys and indexes';
COMMENT ON FUNCTION llmgw.index_usage_partition(regclass) IS 'Give a partition of llmgw.usage its primary key and indexes (llmgw.usage has none of its own)';
COMMENT ON FUNCTION llmgw.trim_cache(bigint) IS 'Drop expired cached answers, then the oldest beyond max_bytes';
COMMENT ON FUNCTION llmgw.clear_cache(text) IS 'Forget the cached answers of a model, or all of them';
COMMENT ON FUNCTION llmgw.stats() IS 'The workers and the queue now: workers running and configured, calls queued and in flight, the server life';
COMMENT ON FUNCTION llmgw.deployment_stats() IS 'Health of each deployment in shared memory (see the view llmgw.deployment_health)';
COMMENT ON FUNCTION llmgw.calls_in_flight_now() IS 'The journal of calls in flight of this server life (see the view llmgw.calls_in_flight)';
COMMENT ON FUNCTION llmgw.my_teams() IS 'The teams the current role acts as, by explicit role bindings (row-level security)';
COMMENT ON FUNCTION llmgw.caller() IS 'The role really calling, also inside a SECURITY DEFINER function';
COMMENT ON FUNCTION llmgw.caller_is_superuser() IS 'Is the calling role a superuser?';
COMMENT ON FUNCTION llmgw.caller_has_role(name) IS 'Is the calling role a member of a role by explicit grants?';
COMMENT ON FUNCTION llmgw.secret_ref_allowed(text) IS 'Does postgresql.conf let any llmgw_admin use this secret reference?';
COMMENT ON FUNCTION llmgw.check_base_url(text) IS 'An error if llmgw would refuse to call a base URL (llmgw.allowed_hosts, link-local and metadata addresses)';
COMMENT ON FUNCTION llmgw.hide_statement() IS 'Hide the running statement, which passed a secret, from pg_stat_activity';

-- triggers and their functions
COMMENT ON FUNCTION llmgw.config_changed() IS 'Trigger: tell the workers to reload their configuration once the transaction commits';
COMMENT ON FUNCTION llmgw.prices_immutable() IS 'Trigger: price rows are never changed or deleted (only an end, once)';
COMMENT ON FUNCTION llmgw.providers_guard() IS 'Trigger: secret references within what postgresql.conf allows; a new base URL or kind drops the secret';
COMMENT ON FUNCTION llmgw.async_calls_guard() IS 'Trigger: a call queued by hand carries the session''s key and tags, and obeys llmgw.require_key, as llmgw.submit() does';
COMMENT ON FUNCTION llmgw.usage_rollup() IS 'Trigger: add a statement''s new usage rows to the daily rollups';
COMMENT ON FUNCTION llmgw.usage_append_only() IS 'Trigger: usage rows are never changed or deleted';
COMMENT ON FUNCTION llmgw.ledger_changed() IS 'Trigger: rollups written by anything but the workers: the workers load the budget ledger again';
COMMENT ON TRIGGER ledger_changed ON llmgw.usage_daily IS 'Budget ledger reload after a restore or a repair';
COMMENT ON TRIGGER config_changed ON llmgw.providers IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.provider_secrets IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.models IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.deployments IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.teams IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.role_bindings IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.virtual_keys IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.prices IS 'The workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.budgets IS 'The workers reload their configuration';
COMMENT ON TRIGGER prices_immutable ON llmgw.prices IS 'Price rows are history';
COMMENT ON TRIGGER providers_guard ON llmgw.providers IS 'Secret references and endpoint changes';
COMMENT ON TRIGGER async_calls_guard ON llmgw.async_calls IS 'Calls queued by hand are queued as llmgw.submit() queues them';
COMMENT ON TRIGGER usage_rollup ON llmgw.usage IS 'Daily rollups';
COMMENT ON TRIGGER usage_append_only ON llmgw.usage IS 'Usage rows are a ledger';

-- row-level security
COMMENT ON POLICY usage_staff ON llmgw.usage IS 'llmgw_admin and llmgw_finance see every usage row';
COMMENT ON POLICY usage_team ON llmgw.usage IS 'Other roles see their teams'' rows, and their own rows without a team';
COMMENT ON POLICY usage_daily_staff ON llmgw.usage_daily IS 'llmgw_admin and llmgw_finance see every rollup row';
COMMENT ON POLICY usage_daily_team ON llmgw.usage_daily IS 'Other roles see their teams'' rollups, and their own without a team';
COMMENT ON POLICY async_staff ON llmgw.async_calls IS 'llmgw_admin sees every asynchronous call';
COMMENT ON POLICY async_own ON llmgw.async_calls IS 'Other roles see their own asynchronous calls';
COMMENT ON POLICY jobs_staff ON llmgw.jobs IS 'llmgw_admin and llmgw_finance see every job';
COMMENT ON POLICY jobs_own ON llmgw.jobs IS 'Other roles see their own jobs';


------------------------------------------------------------------------------
-- Columns
------------------------------------------------------------------------------

COMMENT ON COLUMN llmgw.providers.name IS 'The provider''s name, which deployments refer to (1 to 63 letters, digits, _, . or -)';
COMMENT ON COLUMN llmgw.providers.kind IS 'Wire format: openai, openai_responses, openai_compatible, azure, anthropic or gemini (docs/providers.md)';
COMMENT ON COLUMN llmgw.providers.base_url IS 'API root the requests go to, version path included (http or https, no credentials; llmgw.check_base_url)';
COMMENT ON COLUMN llmgw.providers.api_version IS 'azure: api-version of deployment URLs (NULL: the v1 surface); anthropic: anthropic-version (NULL: 2023-06-01)';
COMMENT ON COLUMN llmgw.providers.timeout_ms IS 'Longest time an attempt may take, in ms (a session''s llmgw.request_timeout overrides it)';
COMMENT ON COLUMN llmgw.providers.connect_timeout_ms IS 'Longest time to connect, in ms (at most the attempt''s timeout)';
COMMENT ON COLUMN llmgw.providers.idle_timeout_ms IS 'Longest silence before the first byte and between stream chunks, in ms (NULL: only the timeout applies)';
COMMENT ON COLUMN llmgw.providers.created_at IS 'When the provider was registered';

COMMENT ON COLUMN llmgw.provider_secrets.provider IS 'The llmgw.providers row the secret is for (its secret_ref is stored)';
COMMENT ON COLUMN llmgw.provider_secrets.secret IS 'The provider''s secret (API key or token), in clear text (owner only; llmgw.set_provider_secret writes it)';

COMMENT ON COLUMN llmgw.models.alias IS 'The public model name callers pass as model (1 to 200 characters)';
COMMENT ON COLUMN llmgw.models.description IS 'Free text about the alias, for people';
COMMENT ON COLUMN llmgw.models.rpm_limit IS 'Requests per minute over all calls of the alias (NULL: no limit)';
COMMENT ON COLUMN llmgw.models.tpm_limit IS 'Tokens per minute over all calls of the alias, estimated then corrected (NULL: no limit)';
COMMENT ON COLUMN llmgw.models.strategy IS 'How calls spread over deployments of equal priority: weighted, least_busy or lowest_latency';
COMMENT ON COLUMN llmgw.models.cache_ttl IS 'How long cached answers are kept (NULL: not cached unless a session sets llmgw.cache = on)';
COMMENT ON COLUMN llmgw.models.cache_shared IS 'Cached answers are shared by every caller (scope shared), not kept per team, key or role';
COMMENT ON COLUMN llmgw.models.cache_hit_cost IS 'What a cache hit costs, in USD (the cost of its usage row)';
COMMENT ON COLUMN llmgw.models.created_at IS 'When the alias was created';

COMMENT ON COLUMN llmgw.deployments.id IS 'Deployment id (deployment_id in llmgw.deployment_health)';
COMMENT ON COLUMN llmgw.deployments.model IS 'The llmgw.models alias the deployment serves';
COMMENT ON COLUMN llmgw.deployments.provider IS 'The llmgw.providers row it calls';
COMMENT ON COLUMN llmgw.deployments.upstream_model IS 'The provider''s own model name, sent in its requests (azure with api_version: the deployment name)';
COMMENT ON COLUMN llmgw.deployments.priority IS 'Fallback order: deployments of higher priority are tried first';
COMMENT ON COLUMN llmgw.deployments.weight IS 'Share of the calls among deployments of equal priority, with the weighted strategy';
COMMENT ON COLUMN llmgw.deployments.price_model IS 'The llmgw.prices model it is charged at (NULL: provider/upstream_model, kind/upstream_model, then upstream_model; llmgw.price_names)';
COMMENT ON COLUMN llmgw.deployments.rpm_limit IS 'Requests per minute to this deployment (NULL: no limit); the router skips it when saturated';
COMMENT ON COLUMN llmgw.deployments.tpm_limit IS 'Tokens per minute to this deployment (NULL: no limit); the router skips it when saturated';

COMMENT ON COLUMN llmgw.usage.id IS 'Row id (llmgw.usage_id_seq); with started_at, the primary key of each partition';
COMMENT ON COLUMN llmgw.usage.request_id IS 'The call, shared by all its attempts (the id of llm_chat''s answer)';
COMMENT ON COLUMN llmgw.usage.attempt IS 'Number of the attempt within its call, from 1 (retries and fallbacks count up)';
COMMENT ON COLUMN llmgw.usage.started_at IS 'When the attempt started (a cache hit: when its row was made); the partition key';
COMMENT ON COLUMN llmgw.usage.recorded_at IS 'When the row was written (start of the writing transaction)';
COMMENT ON COLUMN llmgw.usage.role_name IS 'The role that made the call (its current_user)';
COMMENT ON COLUMN llmgw.usage.key_id IS 'The virtual key presented (llmgw.virtual_keys.id; NULL: no key)';
COMMENT ON COLUMN llmgw.usage.team_id IS 'The team of the key, else of the role''s binding (NULL: no team)';
COMMENT ON COLUMN llmgw.usage.model IS 'The model alias called';
COMMENT ON COLUMN llmgw.usage.provider IS 'The provider of the deployment tried (NULL for a cache hit)';
COMMENT ON COLUMN llmgw.usage.upstream_model IS 'The provider''s model tried (NULL for a cache hit)';
COMMENT ON COLUMN llmgw.usage.http_status IS 'HTTP status of the provider''s response (NULL: none was received)';
COMMENT ON COLUMN llmgw.usage.latency_ms IS 'Time from the attempt''s start to its end, in ms (NULL when no end is known)';
COMMENT ON COLUMN llmgw.usage.input_tokens IS 'All input tokens, cached ones and cache writes included (NULL: not known, never 0 in its place)';
COMMENT ON COLUMN llmgw.usage.output_tokens IS 'All output tokens, reasoning included (NULL: not known, never 0 in its place)';
COMMENT ON COLUMN llmgw.usage.cached_input_tokens IS 'Input tokens read from the provider''s prompt cache (NULL: not reported)';
COMMENT ON COLUMN llmgw.usage.cache_write_tokens IS 'Input tokens written to the provider''s prompt cache, for 5 minutes or 1 hour (NULL: not reported)';
COMMENT ON COLUMN llmgw.usage.cache_write_1h_tokens IS 'The part of cache_write_tokens kept for 1 hour (NULL: not reported)';
COMMENT ON COLUMN llmgw.usage.reasoning_tokens IS 'The part of output_tokens spent on reasoning (NULL: not reported)';
COMMENT ON COLUMN llmgw.usage.price_id IS 'The llmgw.prices row the cost was computed at (NULL: no price applied)';
COMMENT ON COLUMN llmgw.usage.currency IS 'Currency of cost: the price''s, USD for a cache hit (NULL: no price applied)';
COMMENT ON COLUMN llmgw.usage.cache_hit IS 'Answered from llmgw''s response cache without calling a provider; costs the model''s cache_hit_cost';
COMMENT ON COLUMN llmgw.usage.fallback_from IS 'provider/upstream_model of the deployment the call fell back from (NULL: its first deployment)';
COMMENT ON COLUMN llmgw.usage.tags IS 'llmgw.tags of the calling session, a JSON object (NULL: none)';

COMMENT ON COLUMN llmgw.teams.id IS 'Team id (team_id of keys, role bindings, budgets and usage rows)';
COMMENT ON COLUMN llmgw.teams.name IS 'The team''s name (1 to 63 letters, digits, _, . or -)';
COMMENT ON COLUMN llmgw.teams.allowed_models IS 'Model aliases the team may call (NULL: every model)';
COMMENT ON COLUMN llmgw.teams.rpm_limit IS 'Requests per minute over all the team''s calls (NULL: no limit)';
COMMENT ON COLUMN llmgw.teams.tpm_limit IS 'Tokens per minute over all the team''s calls (NULL: no limit)';
COMMENT ON COLUMN llmgw.teams.created_at IS 'When the team was created';

COMMENT ON COLUMN llmgw.role_bindings.role_name IS 'A PostgreSQL role: it and its explicit members call as the team when they present no key';
COMMENT ON COLUMN llmgw.role_bindings.team_id IS 'The llmgw.teams row the role calls as';

COMMENT ON COLUMN llmgw.virtual_keys.id IS 'Key id (key_id of usage rows)';
COMMENT ON COLUMN llmgw.virtual_keys.name IS 'A label for people (NULL: none)';
COMMENT ON COLUMN llmgw.virtual_keys.prefix IS 'The first 12 characters of the key, shown to people; the key itself is not stored';
COMMENT ON COLUMN llmgw.virtual_keys.hash IS 'sha256 of the whole key, which a call''s llmgw.api_key is checked against';
COMMENT ON COLUMN llmgw.virtual_keys.team_id IS 'The team the key calls as (NULL: no team)';
COMMENT ON COLUMN llmgw.virtual_keys.allowed_models IS 'Model aliases the key may call, within the team''s (NULL: what the team may call)';
COMMENT ON COLUMN llmgw.virtual_keys.rpm_limit IS 'Requests per minute through the key and its rotations (NULL: no limit)';
COMMENT ON COLUMN llmgw.virtual_keys.tpm_limit IS 'Tokens per minute through the key and its rotations (NULL: no limit)';
COMMENT ON COLUMN llmgw.virtual_keys.expires_at IS 'From then on the key is refused (NULL: never; llmgw.rotate_key sets it to end the grace period)';
COMMENT ON COLUMN llmgw.virtual_keys.revoked_at IS 'When llmgw.revoke_key revoked the key (NULL: not revoked)';
COMMENT ON COLUMN llmgw.virtual_keys.rotated_from IS 'The key this one replaced (llmgw.rotate_key; NULL: not a rotation)';
COMMENT ON COLUMN llmgw.virtual_keys.lineage_id IS 'Id of the first key of its rotation chain; budgets and rate limits on a key count the whole chain';
COMMENT ON COLUMN llmgw.virtual_keys.created_at IS 'When the key was created';
COMMENT ON COLUMN llmgw.virtual_keys.created_by IS 'The role that really called create_key or rotate_key (the SET ROLE role, not the functions'' owner)';

COMMENT ON COLUMN llmgw.keys.id IS 'Key id (llmgw.virtual_keys.id)';
COMMENT ON COLUMN llmgw.keys.name IS 'The key''s label (NULL: none)';
COMMENT ON COLUMN llmgw.keys.prefix IS 'The first 12 characters of the key; the key itself is not stored';
COMMENT ON COLUMN llmgw.keys.team IS 'Name of the team the key calls as (NULL: no team)';
COMMENT ON COLUMN llmgw.keys.allowed_models IS 'Model aliases the key may call, within the team''s (NULL: what the team may call)';
COMMENT ON COLUMN llmgw.keys.rpm_limit IS 'Requests per minute through the key and its rotations (NULL: no limit)';
COMMENT ON COLUMN llmgw.keys.tpm_limit IS 'Tokens per minute through the key and its rotations (NULL: no limit)';
COMMENT ON COLUMN llmgw.keys.expires_at IS 'From then on the key is refused (NULL: never)';
COMMENT ON COLUMN llmgw.keys.revoked_at IS 'When the key was revoked (NULL: not revoked)';
COMMENT ON COLUMN llmgw.keys.rotated_from IS 'The key this one replaced (NULL: not a rotation)';
COMMENT ON COLUMN llmgw.keys.lineage_id IS 'Id of the first key of its rotation chain; budgets and rate limits on a key count the whole chain';
COMMENT ON COLUMN llmgw.keys.created_at IS 'When the key was created';
COMMENT ON COLUMN llmgw.keys.created_by IS 'The role that really called create_key or rotate_key';
COMMENT ON COLUMN llmgw.keys.state IS 'revoked, expired or active (from revoked_at, and expires_at against now)';

COMMENT ON COLUMN llmgw.prices.id IS 'Price row id (price_id of usage rows)';
COMMENT ON COLUMN llmgw.prices.model IS 'An upstream model name or a provider-qualified one (provider/model), as in LiteLLM''s price list';
COMMENT ON COLUMN llmgw.prices.currency IS 'Three-letter currency code of every rate of the row';
COMMENT ON COLUMN llmgw.prices.input IS 'Input tokens neither read from nor written to a cache, per 1M tokens';
COMMENT ON COLUMN llmgw.prices.cached_input IS 'Input tokens read from a cache, per 1M tokens (NULL: the input rate)';
COMMENT ON COLUMN llmgw.prices.cache_write_5m IS 'Tokens written to a cache for 5 minutes, per 1M tokens (NULL: the input rate)';
COMMENT ON COLUMN llmgw.prices.cache_write_1h IS 'Tokens written to a cache for 1 hour, per 1M tokens (NULL: the 5-minute rate)';
COMMENT ON COLUMN llmgw.prices.output IS 'Output tokens that are not reasoning, per 1M tokens';
COMMENT ON COLUMN llmgw.prices.reasoning IS 'Reasoning tokens, per 1M tokens (NULL: the output rate)';
COMMENT ON COLUMN llmgw.prices.per_request IS 'Charged once per priced usage row (an attempt with tokens), in currency units (NULL: nothing)';
COMMENT ON COLUMN llmgw.prices.per_image IS 'Per image, in currency units, when llmgw.cost() is given an image count (NULL: nothing); usage rows count no images';
COMMENT ON COLUMN llmgw.prices.tier_threshold IS 'Above this many input tokens the whole call is charged the tier_* rates (NULL: no tier)';
COMMENT ON COLUMN llmgw.prices.tier_input IS 'The input rate above tier_threshold, per 1M tokens (NULL: the input rate)';
COMMENT ON COLUMN llmgw.prices.tier_cached_input IS 'The cached input rate above tier_threshold, per 1M tokens (NULL: cached_input, then tier_input)';
COMMENT ON COLUMN llmgw.prices.tier_cache_write_5m IS 'The 5-minute cache write rate above tier_threshold, per 1M tokens (NULL: cache_write_5m, then tier_input)';
COMMENT ON COLUMN llmgw.prices.tier_output IS 'The output rate above tier_threshold, per 1M tokens (NULL: the output rate)';
COMMENT ON COLUMN llmgw.prices.batch_input IS 'Input rate of the provider''s Batch API, per 1M tokens; for reports, llmgw makes no Batch API calls';
COMMENT ON COLUMN llmgw.prices.batch_output IS 'Output rate of the provider''s Batch API, per 1M tokens; for reports, llmgw makes no Batch API calls';
COMMENT ON COLUMN llmgw.prices.max_output_tokens IS 'Not a price: the model''s output limit, bounding a call''s worst case when it sets no max_tokens (NULL: unknown)';
COMMENT ON COLUMN llmgw.prices.valid_from IS 'When the row comes into force; it applies until the next row of its model starts';

COMMENT ON COLUMN llmgw.prices_now.id IS 'Id of the llmgw.prices row in force now';
COMMENT ON COLUMN llmgw.prices_now.model IS 'The priced model name (llmgw.prices.model)';
COMMENT ON COLUMN llmgw.prices_now.currency IS 'Three-letter currency code of every rate of the row';
COMMENT ON COLUMN llmgw.prices_now.input IS 'Input tokens neither read from nor written to a cache, per 1M tokens';
COMMENT ON COLUMN llmgw.prices_now.cached_input IS 'Input tokens read from a cache, per 1M tokens (NULL: the input rate)';
COMMENT ON COLUMN llmgw.prices_now.cache_write_5m IS 'Tokens written to a cache for 5 minutes, per 1M tokens (NULL: the input rate)';
COMMENT ON COLUMN llmgw.prices_now.cache_write_1h IS 'Tokens written to a cache for 1 hour, per 1M tokens (NULL: the 5-minute rate)';
COMMENT ON COLUMN llmgw.prices_now.output IS 'Output tokens that are not reasoning, per 1M tokens';
COMMENT ON COLUMN llmgw.prices_now.reasoning IS 'Reasoning tokens, per 1M tokens (NULL: the output rate)';
COMMENT ON COLUMN llmgw.prices_now.per_request IS 'Charged once per priced usage row (an attempt with tokens), in currency units (NULL: nothing)';
COMMENT ON COLUMN llmgw.prices_now.per_image IS 'Per image, in currency units (llmgw.prices.per_image)';
COMMENT ON COLUMN llmgw.prices_now.tier_threshold IS 'Above this many input tokens the whole call is charged the tier_* rates (NULL: no tier)';
COMMENT ON COLUMN llmgw.prices_now.tier_input IS 'The input rate above tier_threshold, per 1M tokens (NULL: the input rate)';
COMMENT ON COLUMN llmgw.prices_now.tier_cached_input IS 'The cached input rate above tier_threshold, per 1M tokens (NULL: cached_input, then tier_input)';
COMMENT ON COLUMN llmgw.prices_now.tier_cache_write_5m IS 'The 5-minute cache write rate above tier_threshold, per 1M tokens (NULL: cache_write_5m, then tier_input)';
COMMENT ON COLUMN llmgw.prices_now.tier_output IS 'The output rate above tier_threshold, per 1M tokens (NULL: the output rate)';
COMMENT ON COLUMN llmgw.prices_now.batch_input IS 'Input rate of the provider''s Batch API, per 1M tokens (for reports)';
COMMENT ON COLUMN llmgw.prices_now.batch_output IS 'Output rate of the provider''s Batch API, per 1M tokens (for reports)';
COMMENT ON COLUMN llmgw.prices_now.max_output_tokens IS 'Not a price: the model''s output limit (NULL: unknown)';
COMMENT ON COLUMN llmgw.prices_now.valid_from IS 'When the row came into force';
COMMENT ON COLUMN llmgw.prices_now.valid_to IS 'When the row ends, having no successor (NULL: until the next row of its model starts)';
COMMENT ON COLUMN llmgw.prices_now.source IS 'Where the row came from (llmgw.prices.source: manual, litellm, seed, ...)';
COMMENT ON COLUMN llmgw.prices_now.tier_cache_write_1h IS '1-hour cache writes above tier_threshold input tokens, per 1M tokens';

COMMENT ON COLUMN llmgw.budgets.id IS 'Budget id';
COMMENT ON COLUMN llmgw.budgets.name IS 'Unique name, shown in alerts and in the errors of refused calls';
COMMENT ON COLUMN llmgw.budgets.scope IS 'What it counts: key, team, role, model or global (every call)';
COMMENT ON COLUMN llmgw.budgets.key_id IS 'Scope key: the first key of the rotation chain it counts (lineage_id); NULL otherwise';
COMMENT ON COLUMN llmgw.budgets.team_id IS 'Scope team: the team whose calls it counts; NULL otherwise';
COMMENT ON COLUMN llmgw.budgets.role_name IS 'Scope role: the role whose own calls it counts; NULL otherwise';
COMMENT ON COLUMN llmgw.budgets.model IS 'Scope model: the model alias whose calls it counts; NULL otherwise';
COMMENT ON COLUMN llmgw.budgets.period IS 'day, week (ISO, from Monday), month, in UTC, or total (never resets)';
COMMENT ON COLUMN llmgw.budgets.limit_amount IS 'The limit per period, in currency units';
COMMENT ON COLUMN llmgw.budgets.currency IS 'Three-letter currency code; the budget counts only costs in this currency';
COMMENT ON COLUMN llmgw.budgets.enforcement IS 'hard: calls that could pass the limit are refused (LG010); soft: an alert only';
COMMENT ON COLUMN llmgw.budgets.created_at IS 'When the budget was created';

COMMENT ON COLUMN llmgw.alerts.id IS 'Alert id (alert_id of the NOTIFY)';
COMMENT ON COLUMN llmgw.alerts.created_at IS 'When the alert was raised';
COMMENT ON COLUMN llmgw.alerts.budget_id IS 'The budget that reached its limit (NULL once the budget is dropped)';
COMMENT ON COLUMN llmgw.alerts.budget_name IS 'The budget''s name, kept when the budget is dropped';
COMMENT ON COLUMN llmgw.alerts.kind IS 'soft_limit_reached (the call went ahead) or hard_limit_reached (calls are refused from now on)';
COMMENT ON COLUMN llmgw.alerts.period_start IS 'Start of the budget period that reached its limit (NULL: a total budget)';
COMMENT ON COLUMN llmgw.alerts.limit_amount IS 'The budget''s limit when the alert was raised, in currency units';
COMMENT ON COLUMN llmgw.alerts.spent IS 'Spend of the period, the charge that reached the limit included, in currency units';
COMMENT ON COLUMN llmgw.alerts.currency IS 'Three-letter currency code of limit_amount and spent';
COMMENT ON COLUMN llmgw.alerts.team_id IS 'The team of a team budget (NULL: another scope)';

COMMENT ON COLUMN llmgw.usage_daily.day IS 'UTC day the calls started';
COMMENT ON COLUMN llmgw.usage_daily.shard IS 'The worker that wrote the row (from 1; 0: anything else), so that workers never wait for each other';
COMMENT ON COLUMN llmgw.usage_daily.team_id IS 'Team of the calls (NULL: no team)';
COMMENT ON COLUMN llmgw.usage_daily.key_id IS 'Virtual key of the calls (NULL: no key)';
COMMENT ON COLUMN llmgw.usage_daily.role_name IS 'The role that made the calls';
COMMENT ON COLUMN llmgw.usage_daily.model IS 'Model alias called';
COMMENT ON COLUMN llmgw.usage_daily.provider IS 'Provider of the deployment tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.usage_daily.upstream_model IS 'The provider''s model tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.usage_daily.currency IS 'Currency of cost (NULL: rows without a price)';
COMMENT ON COLUMN llmgw.usage_daily.calls IS 'Usage rows: provider attempts and cache hits';
COMMENT ON COLUMN llmgw.usage_daily.errors IS 'Usage rows whose status is not ok';
COMMENT ON COLUMN llmgw.usage_daily.unpriced IS 'Usage rows marked unpriced (cost NULL, not counted in cost)';
COMMENT ON COLUMN llmgw.usage_daily.cache_hits IS 'Usage rows answered from the response cache';
COMMENT ON COLUMN llmgw.usage_daily.input_tokens IS 'Sum of input_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_daily.output_tokens IS 'Sum of output_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_daily.cached_input_tokens IS 'Sum of cached_input_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_daily.reasoning_tokens IS 'Sum of reasoning_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_daily.cost IS 'Sum of cost in currency units, rows without a cost adding 0';
COMMENT ON COLUMN llmgw.usage_daily.month IS 'First day of the month of day (generated)';

COMMENT ON COLUMN llmgw.response_cache.key IS 'sha256 of the scope, the kind of call, the model alias and the normalised request';
COMMENT ON COLUMN llmgw.response_cache.model IS 'Model alias of the cached call';
COMMENT ON COLUMN llmgw.response_cache.scope IS 'Who may get the answer: team:ID, key:ID (a rotation chain), role:NAME, or shared';
COMMENT ON COLUMN llmgw.response_cache.kind IS 'Kind of call: 1 text (llm_complete, llm_complete_many), 2 llm_chat''s JSON, 3 embeddings';
COMMENT ON COLUMN llmgw.response_cache.answer IS 'The cached answer, as the kind of call returns it';
COMMENT ON COLUMN llmgw.response_cache.created_at IS 'When the answer was stored';
COMMENT ON COLUMN llmgw.response_cache.expires_at IS 'When the answer stops being served (stored plus the cache TTL)';
COMMENT ON COLUMN llmgw.response_cache.hits IS 'Calls answered from this entry';

COMMENT ON COLUMN llmgw.cache_stats.model IS 'Model alias of the cached calls';
COMMENT ON COLUMN llmgw.cache_stats.scope IS 'Who may get the answers: team:ID, key:ID, role:NAME, or shared';
COMMENT ON COLUMN llmgw.cache_stats.entries IS 'Cached answers held, expired ones included until trimmed';
COMMENT ON COLUMN llmgw.cache_stats.bytes IS 'Size of the answers, in bytes';
COMMENT ON COLUMN llmgw.cache_stats.hits IS 'Calls answered from these entries';
COMMENT ON COLUMN llmgw.cache_stats.oldest IS 'When the oldest answer was stored';
COMMENT ON COLUMN llmgw.cache_stats.last_expiry IS 'When the last answer expires';

COMMENT ON COLUMN llmgw.calls_in_flight.request_id IS 'The call (usage.request_id of its rows to come)';
COMMENT ON COLUMN llmgw.calls_in_flight.attempt IS 'Number of the attempt in flight, from 1';
COMMENT ON COLUMN llmgw.calls_in_flight.started_at IS 'When the attempt started';
COMMENT ON COLUMN llmgw.calls_in_flight.role_name IS 'The role that made the call';
COMMENT ON COLUMN llmgw.calls_in_flight.model IS 'The model alias called';
COMMENT ON COLUMN llmgw.calls_in_flight.provider IS 'The provider of the deployment being called';
COMMENT ON COLUMN llmgw.calls_in_flight.upstream_model IS 'The provider''s model being called';
COMMENT ON COLUMN llmgw.calls_in_flight.key_id IS 'The virtual key presented (NULL: no key)';
COMMENT ON COLUMN llmgw.calls_in_flight.team_id IS 'The team of the call (NULL: no team)';
COMMENT ON COLUMN llmgw.calls_in_flight.job_id IS 'The llmgw.jobs row the call works for (NULL: none)';
COMMENT ON COLUMN llmgw.calls_in_flight.async_id IS 'The llmgw.async_calls row the call answers (NULL: none)';

COMMENT ON COLUMN llmgw.spend_daily.day IS 'UTC day the calls started';
COMMENT ON COLUMN llmgw.spend_daily.team IS 'Team name (NULL: calls without a team)';
COMMENT ON COLUMN llmgw.spend_daily.key_prefix IS 'Prefix of the virtual key, from llmgw.keys (NULL: no key, or one the reader may not see)';
COMMENT ON COLUMN llmgw.spend_daily.role_name IS 'The role that made the calls';
COMMENT ON COLUMN llmgw.spend_daily.model IS 'Model alias called';
COMMENT ON COLUMN llmgw.spend_daily.provider IS 'Provider of the deployment tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.spend_daily.upstream_model IS 'The provider''s model tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.spend_daily.currency IS 'Currency of cost (NULL: rows without a price)';
COMMENT ON COLUMN llmgw.spend_daily.calls IS 'Usage rows: provider attempts and cache hits';
COMMENT ON COLUMN llmgw.spend_daily.errors IS 'Usage rows whose status is not ok';
COMMENT ON COLUMN llmgw.spend_daily.unpriced IS 'Usage rows marked unpriced (cost NULL, not counted in cost)';
COMMENT ON COLUMN llmgw.spend_daily.cache_hits IS 'Usage rows answered from the response cache';
COMMENT ON COLUMN llmgw.spend_daily.input_tokens IS 'Sum of input tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_daily.output_tokens IS 'Sum of output tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_daily.cached_input_tokens IS 'Sum of cached input tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_daily.reasoning_tokens IS 'Sum of reasoning tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_daily.cost IS 'Sum of costs in currency units, rows without a cost adding 0';

COMMENT ON COLUMN llmgw.spend_by_key.month IS 'First day of the UTC month';
COMMENT ON COLUMN llmgw.spend_by_key.key_id IS 'The virtual key (NULL: calls without a key)';
COMMENT ON COLUMN llmgw.spend_by_key.key_prefix IS 'Prefix of the key, from llmgw.keys (NULL: no key, or one the reader may not see)';
COMMENT ON COLUMN llmgw.spend_by_key.key_name IS 'Label of the key (NULL: none, or a key the reader may not see)';
COMMENT ON COLUMN llmgw.spend_by_key.team IS 'Name of the team of the calls (NULL: no team)';
COMMENT ON COLUMN llmgw.spend_by_key.currency IS 'Currency of cost (NULL: rows without a price)';
COMMENT ON COLUMN llmgw.spend_by_key.calls IS 'Usage rows of the month: provider attempts and cache hits';
COMMENT ON COLUMN llmgw.spend_by_key.errors IS 'Usage rows whose status is not ok';
COMMENT ON COLUMN llmgw.spend_by_key.unpriced IS 'Usage rows marked unpriced (cost NULL, not counted in cost)';
COMMENT ON COLUMN llmgw.spend_by_key.input_tokens IS 'Sum of input tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_key.output_tokens IS 'Sum of output tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_key.cost IS 'Sum of costs in currency units, rows without a cost adding 0';

COMMENT ON COLUMN llmgw.spend_by_team.month IS 'First day of the UTC month';
COMMENT ON COLUMN llmgw.spend_by_team.team_id IS 'The team (NULL: calls without a team)';
COMMENT ON COLUMN llmgw.spend_by_team.team IS 'Name of the team (NULL: no team)';
COMMENT ON COLUMN llmgw.spend_by_team.currency IS 'Currency of cost (NULL: rows without a price)';
COMMENT ON COLUMN llmgw.spend_by_team.calls IS 'Usage rows of the month: provider attempts and cache hits';
COMMENT ON COLUMN llmgw.spend_by_team.errors IS 'Usage rows whose status is not ok';
COMMENT ON COLUMN llmgw.spend_by_team.unpriced IS 'Usage rows marked unpriced (cost NULL, not counted in cost)';
COMMENT ON COLUMN llmgw.spend_by_team.input_tokens IS 'Sum of input tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_team.output_tokens IS 'Sum of output tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_team.cost IS 'Sum of costs in currency units, rows without a cost adding 0';

COMMENT ON COLUMN llmgw.spend_by_model.month IS 'First day of the UTC month';
COMMENT ON COLUMN llmgw.spend_by_model.model IS 'Model alias called';
COMMENT ON COLUMN llmgw.spend_by_model.provider IS 'Provider of the deployment tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.spend_by_model.upstream_model IS 'The provider''s model tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.spend_by_model.currency IS 'Currency of cost (NULL: rows without a price)';
COMMENT ON COLUMN llmgw.spend_by_model.calls IS 'Usage rows of the month: provider attempts and cache hits';
COMMENT ON COLUMN llmgw.spend_by_model.errors IS 'Usage rows whose status is not ok';
COMMENT ON COLUMN llmgw.spend_by_model.unpriced IS 'Usage rows marked unpriced (cost NULL, not counted in cost)';
COMMENT ON COLUMN llmgw.spend_by_model.input_tokens IS 'Sum of input tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_model.output_tokens IS 'Sum of output tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_model.cached_input_tokens IS 'Sum of cached input tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_model.reasoning_tokens IS 'Sum of reasoning tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.spend_by_model.cost IS 'Sum of costs in currency units, rows without a cost adding 0';

COMMENT ON COLUMN llmgw.budget_status.id IS 'Budget id (llmgw.budgets.id)';
COMMENT ON COLUMN llmgw.budget_status.name IS 'The budget''s name';
COMMENT ON COLUMN llmgw.budget_status.scope IS 'key, team, role, model or global';
COMMENT ON COLUMN llmgw.budget_status.target IS 'What it counts: the prefix of the first key of the chain, the team''s name, the role or the model alias (NULL: global)';
COMMENT ON COLUMN llmgw.budget_status.period IS 'day, week, month or total';
COMMENT ON COLUMN llmgw.budget_status.enforcement IS 'hard (refuses calls) or soft (alerts only)';
COMMENT ON COLUMN llmgw.budget_status.currency IS 'Three-letter currency code of the amounts';
COMMENT ON COLUMN llmgw.budget_status.limit_amount IS 'The limit per period, in currency units';
COMMENT ON COLUMN llmgw.budget_status.spent IS 'Spend of the current period, from the rollups (llmgw.budget_spent), in currency units';
COMMENT ON COLUMN llmgw.budget_status.reserved IS 'Worst cases reserved by the calls in flight, from the ledger in shared memory (0: none)';
COMMENT ON COLUMN llmgw.budget_status.remaining IS 'limit_amount minus spent and reserved, at least 0';
COMMENT ON COLUMN llmgw.budget_status.period_start IS 'Start of the current period (-infinity: total)';
COMMENT ON COLUMN llmgw.budget_status.resets_at IS 'End of the current period (infinity: total)';
COMMENT ON COLUMN llmgw.budget_status.ledger_spent IS 'Spend the workers enforce, from the ledger in shared memory (NULL: the ledger does not hold the budget)';

COMMENT ON COLUMN llmgw.deployment_health.model IS 'The model alias the deployment serves';
COMMENT ON COLUMN llmgw.deployment_health.provider IS 'The provider it calls';
COMMENT ON COLUMN llmgw.deployment_health.upstream_model IS 'The provider''s model it calls';
COMMENT ON COLUMN llmgw.deployment_health.priority IS 'Fallback order: higher priorities are tried first';
COMMENT ON COLUMN llmgw.deployment_health.weight IS 'Share of the calls among deployments of equal priority';
COMMENT ON COLUMN llmgw.deployment_health.state IS 'healthy, cooling_down, probe_due (cooldown over, no probe yet) or probing';
COMMENT ON COLUMN llmgw.deployment_health.cooldown_until IS 'End of its current or last cooldown, until a success clears it (NULL: none)';
COMMENT ON COLUMN llmgw.deployment_health.consecutive_failures IS 'Failures of its own in a row since its last success (NULL: not called since the server started)';
COMMENT ON COLUMN llmgw.deployment_health.in_flight IS 'Attempts running on it now';
COMMENT ON COLUMN llmgw.deployment_health.successes IS 'Successful attempts since the server started';
COMMENT ON COLUMN llmgw.deployment_health.failures IS 'Failures of its own (server error, overload, rate limit, timeout, connection, auth, quota) since the server started';
COMMENT ON COLUMN llmgw.deployment_health.cooldowns IS 'Times it was put in cooldown since the server started';
COMMENT ON COLUMN llmgw.deployment_health.p50_ms IS 'Median latency of its successful attempts, in ms, to within 25% (NULL: none yet)';
COMMENT ON COLUMN llmgw.deployment_health.p95_ms IS '95th percentile latency of its successful attempts, in ms, to within 25% (NULL: none yet)';
COMMENT ON COLUMN llmgw.deployment_health.p99_ms IS '99th percentile latency of its successful attempts, in ms, to within 25% (NULL: none yet)';
COMMENT ON COLUMN llmgw.deployment_health.recent_ms IS 'Moving average of the latency of its recent successful attempts, in ms (NULL: none yet)';
COMMENT ON COLUMN llmgw.deployment_health.deployment_id IS 'The llmgw.deployments row';

COMMENT ON COLUMN llmgw.requests.request_id IS 'The call (usage.request_id)';
COMMENT ON COLUMN llmgw.requests.started_at IS 'When its first attempt started';
COMMENT ON COLUMN llmgw.requests.finished_at IS 'When its last usage row was written (latest recorded_at)';
COMMENT ON COLUMN llmgw.requests.role_name IS 'The role that made the call';
COMMENT ON COLUMN llmgw.requests.model IS 'The model alias called';
COMMENT ON COLUMN llmgw.requests.attempts IS 'Usage rows of the call: its recorded attempts, or 1 for a cache hit';
COMMENT ON COLUMN llmgw.requests.provider IS 'Provider of the last attempt (NULL: a cache hit)';
COMMENT ON COLUMN llmgw.requests.upstream_model IS 'The provider''s model of the last attempt (NULL: a cache hit)';
COMMENT ON COLUMN llmgw.requests.status IS 'Status of the last attempt: ok, error, cancelled or interrupted';
COMMENT ON COLUMN llmgw.requests.error_class IS 'Error class of the last attempt (NULL: no error)';
COMMENT ON COLUMN llmgw.requests.latency_ms IS 'Sum of the attempts'' latencies, in ms (waits between attempts left out)';
COMMENT ON COLUMN llmgw.requests.input_tokens IS 'Sum of the attempts'' input tokens (NULL: no attempt reported them)';
COMMENT ON COLUMN llmgw.requests.output_tokens IS 'Sum of the attempts'' output tokens (NULL: no attempt reported them)';
COMMENT ON COLUMN llmgw.requests.cost IS 'Sum of the attempts'' costs, in their price''s currency (NULL: no attempt was priced)';

COMMENT ON COLUMN llmgw.async_calls.id IS 'Id llmgw.submit returns, for llmgw.result and llmgw.wait (usage.async_id)';
COMMENT ON COLUMN llmgw.async_calls.owner IS 'The role that submitted the call; the call is made as this role';
COMMENT ON COLUMN llmgw.async_calls.model IS 'The model alias of the request';
COMMENT ON COLUMN llmgw.async_calls.request IS 'llm_chat''s request, as submitted';
COMMENT ON COLUMN llmgw.async_calls.key_hash IS 'sha256 of the submitter''s virtual key (NULL: no key); readable by the extension owner only';
COMMENT ON COLUMN llmgw.async_calls.tags IS 'llmgw.tags of the submitting session (NULL: none)';
COMMENT ON COLUMN llmgw.async_calls.status IS 'queued, running (a worker holds it), done or error';
COMMENT ON COLUMN llmgw.async_calls.answer IS 'llm_chat''s answer, once done (NULL otherwise)';
COMMENT ON COLUMN llmgw.async_calls.sqlstate IS 'SQLSTATE of the error, when status is error';
COMMENT ON COLUMN llmgw.async_calls.error IS 'Message of the error, its detail in parentheses, when status is error';
COMMENT ON COLUMN llmgw.async_calls.attempts IS 'Times a worker took the call (more than once when a worker or the server died, or a lease ran out)';
COMMENT ON COLUMN llmgw.async_calls.submitted_at IS 'When llmgw.submit queued it';
COMMENT ON COLUMN llmgw.async_calls.started_at IS 'When a worker first took it (NULL: not yet)';
COMMENT ON COLUMN llmgw.async_calls.finished_at IS 'When its answer or error was written (NULL: not yet)';
COMMENT ON COLUMN llmgw.async_calls.lease_until IS 'A worker holds the call until then (llmgw.async_lease), then another may take it (NULL: not held)';
COMMENT ON COLUMN llmgw.async_calls.server_started_at IS 'Start of the server life whose worker took it: a call of a dead life is taken again at once';

COMMENT ON COLUMN llmgw.jobs.id IS 'Job id (usage.job_id of its calls)';
COMMENT ON COLUMN llmgw.jobs.name IS 'job_name given to llmgw.enrich (NULL: none)';
COMMENT ON COLUMN llmgw.jobs.owner IS 'The role that ran llmgw.enrich';
COMMENT ON COLUMN llmgw.jobs.source IS 'The table it fills';
COMMENT ON COLUMN llmgw.jobs.output_column IS 'The column of source it fills with the answers';
COMMENT ON COLUMN llmgw.jobs.model IS 'The model alias called';
COMMENT ON COLUMN llmgw.jobs.status IS 'running, finished, failed (no progress) or stopped (a budget ran out); a cancelled or killed run stays running';
COMMENT ON COLUMN llmgw.jobs.rows_total IS 'Rows whose output was NULL when the run started';
COMMENT ON COLUMN llmgw.jobs.rows_done IS 'Answers written';
COMMENT ON COLUMN llmgw.jobs.rows_failed IS 'Rows whose call failed or whose answer could not be written; left NULL';
COMMENT ON COLUMN llmgw.jobs.rows_skipped IS 'Rows that got neither an answer nor an error (a NULL prompt, or an answer without text); left NULL';
COMMENT ON COLUMN llmgw.jobs.last_error IS 'The latest failure: SQLSTATE and message of a row, or why the job stopped or failed';
COMMENT ON COLUMN llmgw.jobs.started_at IS 'When the run started';
COMMENT ON COLUMN llmgw.jobs.updated_at IS 'When the run last recorded progress (after each chunk)';
COMMENT ON COLUMN llmgw.jobs.finished_at IS 'When the run ended (NULL: running, or cancelled or killed)';

COMMENT ON COLUMN llmgw.job_progress.id IS 'Job id (llmgw.jobs.id)';
COMMENT ON COLUMN llmgw.job_progress.name IS 'job_name given to llmgw.enrich (NULL: none)';
COMMENT ON COLUMN llmgw.job_progress.owner IS 'The role that ran llmgw.enrich';
COMMENT ON COLUMN llmgw.job_progress.source IS 'The table it fills';
COMMENT ON COLUMN llmgw.job_progress.output_column IS 'The column of source it fills with the answers';
COMMENT ON COLUMN llmgw.job_progress.model IS 'The model alias called';
COMMENT ON COLUMN llmgw.job_progress.status IS 'running, finished, failed or stopped';
COMMENT ON COLUMN llmgw.job_progress.rows_total IS 'Rows whose output was NULL when the run started';
COMMENT ON COLUMN llmgw.job_progress.rows_done IS 'Answers written';
COMMENT ON COLUMN llmgw.job_progress.rows_failed IS 'Rows whose call failed or whose answer could not be written';
COMMENT ON COLUMN llmgw.job_progress.rows_skipped IS 'Rows that got neither an answer nor an error';
COMMENT ON COLUMN llmgw.job_progress.spend IS 'Sum of the costs of its usage rows (usage.job_id), in the prices'' currency (NULL: none priced)';
COMMENT ON COLUMN llmgw.job_progress.rows_per_second IS 'rows_done over the seconds from started_at to updated_at (NULL: no time elapsed yet)';
COMMENT ON COLUMN llmgw.job_progress.estimated_finish IS 'When a running job should end, at its rate so far (NULL: not running, or no row done yet)';
COMMENT ON COLUMN llmgw.job_progress.started_at IS 'When the run started';
COMMENT ON COLUMN llmgw.job_progress.updated_at IS 'When the run last recorded progress';
COMMENT ON COLUMN llmgw.job_progress.finished_at IS 'When the run ended (NULL: running, or cancelled or killed)';
COMMENT ON COLUMN llmgw.job_progress.last_error IS 'The latest failure: SQLSTATE and message of a row, or why the job stopped or failed';
