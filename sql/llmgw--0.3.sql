/* llmgw--0.3.sql: providers, models, usage and the calling functions */

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
    -- longest silence allowed once connected: before the first byte and
    -- between stream chunks (whole seconds; NULL: only timeout_ms applies)
    idle_timeout_ms integer CHECK (idle_timeout_ms >= 1000),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- a superuser set secret_ref: it resolves even outside what
    -- llmgw.secret_env_prefix and llmgw.secret_directory allow (kept by the
    -- providers_guard trigger, never by hand)
    secret_ref_trusted boolean NOT NULL DEFAULT false
);

-- Readable by the extension owner only: no grant to any role, ever.
CREATE TABLE llmgw.provider_secrets (
    provider text PRIMARY KEY REFERENCES llmgw.providers (name) ON DELETE CASCADE,
    secret text NOT NULL
);

CREATE TABLE llmgw.models (
    alias text PRIMARY KEY CHECK (pg_catalog.length(alias) BETWEEN 1 AND 200),
    description text,
    rpm_limit integer CHECK (rpm_limit > 0),
    tpm_limit bigint CHECK (tpm_limit > 0),
    -- how calls spread over deployments of equal priority
    strategy text NOT NULL DEFAULT 'weighted'
        CHECK (strategy IN ('weighted', 'least_busy', 'lowest_latency')),
    -- exact-match response cache: how long answers are kept (NULL: not
    -- cached unless a session sets llmgw.cache = on), whether teams share
    -- them, and what a cache hit costs
    cache_ttl interval CHECK (cache_ttl > interval '0'),
    cache_shared boolean NOT NULL DEFAULT false,
    cache_hit_cost numeric NOT NULL DEFAULT 0 CHECK (cache_hit_cost >= 0),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

CREATE TABLE llmgw.deployments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model text NOT NULL REFERENCES llmgw.models (alias) ON DELETE CASCADE,
    provider text NOT NULL REFERENCES llmgw.providers (name),
    upstream_model text NOT NULL CHECK (upstream_model <> ''),
    priority integer NOT NULL DEFAULT 0,
    weight integer NOT NULL DEFAULT 1 CHECK (weight > 0),
    -- the llmgw.prices model this deployment is charged at; NULL: looked up
    -- as "<kind>/<upstream_model>", then "<upstream_model>"
    price_model text,
    rpm_limit integer CHECK (rpm_limit > 0),
    tpm_limit bigint CHECK (tpm_limit > 0),
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
    cache_write_1h_tokens bigint,   -- the part of cache_write_tokens kept for 1 hour
    reasoning_tokens bigint,
    usage_source text CHECK (usage_source IN ('provider', 'estimated')),
    price_id bigint,
    cost numeric,
    currency text,
    -- an answered call that could not be priced (no price row, or no token
    -- counts): its cost is NULL, never 0
    unpriced boolean NOT NULL DEFAULT false,
    cache_hit boolean NOT NULL DEFAULT false,
    fallback_from text,
    tags jsonb,
    job_id bigint,                  -- the llmgw.jobs row the call worked for
    async_id bigint                 -- the llmgw.async_calls row it answered
) PARTITION BY RANGE (started_at);

CREATE TABLE llmgw.usage_default PARTITION OF llmgw.usage DEFAULT;

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

-- llmgw.usage has no index of its own: each partition has its primary key
-- (id, started_at) and its indexes (llmgw.index_usage_partition).
SELECT llmgw.index_usage_partition('llmgw.usage_default');

SELECT pg_catalog.pg_extension_config_dump('llmgw.providers', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.provider_secrets', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.models', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.usage_default', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.usage_id_seq', '');

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
-- Teams, role bindings and virtual keys
------------------------------------------------------------------------------

CREATE TABLE llmgw.teams (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    allowed_models text[],          -- NULL: every model
    rpm_limit integer CHECK (rpm_limit > 0),
    tpm_limit bigint CHECK (tpm_limit > 0),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- A Postgres role (and, through membership, its members) acts as a team
-- when it calls without a virtual key.
CREATE TABLE llmgw.role_bindings (
    role_name name PRIMARY KEY,
    team_id bigint NOT NULL REFERENCES llmgw.teams (id) ON DELETE CASCADE
);

-- Readable by the extension owner only: the hashes never leave it.
CREATE TABLE llmgw.virtual_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text,
    prefix text NOT NULL,           -- the first 12 characters, shown to people
    hash bytea NOT NULL UNIQUE,     -- sha256 of the whole key
    team_id bigint REFERENCES llmgw.teams (id) ON DELETE CASCADE,
    allowed_models text[],          -- NULL: what the team may use
    rpm_limit integer CHECK (rpm_limit > 0),
    tpm_limit bigint CHECK (tpm_limit > 0),
    expires_at timestamptz,
    revoked_at timestamptz,
    rotated_from bigint REFERENCES llmgw.virtual_keys (id),
    lineage_id bigint NOT NULL,     -- the first key of a rotation chain
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by name NOT NULL DEFAULT CURRENT_USER
);

-- The teams the current role acts as: the bindings of the role and of the
-- roles it is a member of by explicit grants (a superuser is not bound to
-- every team).  For row-level security; it runs with the caller's identity,
-- so it must not be SECURITY DEFINER.
CREATE FUNCTION llmgw.my_teams() RETURNS SETOF bigint
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
CREATE VIEW llmgw.keys WITH (security_barrier = true) AS
SELECT k.id, k.name, k.prefix, t.name AS team, k.allowed_models, k.rpm_limit, k.tpm_limit,
       k.expires_at, k.revoked_at, k.rotated_from, k.lineage_id, k.created_at, k.created_by,
       CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked'
            WHEN k.expires_at <= pg_catalog.now() THEN 'expired'
            ELSE 'active' END AS state
  FROM llmgw.virtual_keys k LEFT JOIN llmgw.teams t ON t.id = k.team_id
 WHERE pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_admin', 'MEMBER')
    OR pg_catalog.pg_has_role(CURRENT_USER, 'llmgw_finance', 'MEMBER')
    OR k.team_id IN (SELECT llmgw.my_teams());

CREATE FUNCTION llmgw.create_team(
    name text,
    allowed_models text[] DEFAULT NULL,
    rpm_limit integer DEFAULT NULL,
    tpm_limit bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    id bigint;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9_.-]{1,63}$' THEN
        RAISE EXCEPTION 'invalid team name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1 to 63 letters, digits, "_", "." or "-".';
    END IF;
    INSERT INTO llmgw.teams (name, allowed_models, rpm_limit, tpm_limit)
    VALUES (name, allowed_models, rpm_limit, tpm_limit)
    RETURNING teams.id INTO id;
    RETURN id;
END
$fn$;

-- The team id of a team name, or an error naming it
CREATE FUNCTION llmgw.team_id(team text) RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    id bigint;
BEGIN
    SELECT t.id INTO id FROM llmgw.teams t WHERE t.name = team;
    IF id IS NULL THEN
        RAISE EXCEPTION 'team "%" does not exist', team
            USING ERRCODE = 'undefined_object', HINT = 'Create it with llmgw.create_team().';
    END IF;
    RETURN id;
END
$fn$;

-- Let a role (and its members) call as a team when no key is presented
CREATE FUNCTION llmgw.bind_role(role regrole, team text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO llmgw.role_bindings (role_name, team_id)
    VALUES (role::text, llmgw.team_id(team))
    ON CONFLICT (role_name) DO UPDATE SET team_id = excluded.team_id
$$;

CREATE FUNCTION llmgw.unbind_role(role regrole) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM llmgw.role_bindings WHERE role_name = role::text
$$;

-- A new random key and its hash; the key itself is never stored
CREATE FUNCTION llmgw.new_key_material(OUT api_key text, OUT prefix text, OUT hash bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k, substr(k, 1, 12), sha256(convert_to(k, 'UTF8'))
      FROM (SELECT 'lgw_' || substr(encode(sha256(uuid_send(gen_random_uuid())
                                                  || uuid_send(gen_random_uuid())), 'hex'),
                                   1, 40) AS k) s
$$;

-- Create a virtual key.  The key is returned once; only its hash is kept.
CREATE FUNCTION llmgw.create_key(
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
CREATE FUNCTION llmgw.revoke_key(key_id bigint) RETURNS void
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
CREATE FUNCTION llmgw.rotate_key(key_id bigint, grace interval DEFAULT '1 hour',
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
-- Prices: time-versioned, per 1M tokens (exact numeric)
------------------------------------------------------------------------------

CREATE TABLE llmgw.prices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- an upstream model name ("gpt-4o") or a provider-qualified one
    -- ("gemini/gemini-2.5-pro"), as in LiteLLM's price list
    model text NOT NULL CHECK (model <> ''),
    currency text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    input numeric NOT NULL DEFAULT 0 CHECK (input >= 0),
    cached_input numeric CHECK (cached_input >= 0),     -- NULL: at the input rate
    cache_write_5m numeric CHECK (cache_write_5m >= 0), -- NULL: at the input rate
    cache_write_1h numeric CHECK (cache_write_1h >= 0), -- NULL: at the 5 minute rate
    output numeric NOT NULL DEFAULT 0 CHECK (output >= 0),
    reasoning numeric CHECK (reasoning >= 0),           -- NULL: at the output rate
    per_request numeric CHECK (per_request >= 0),
    per_image numeric CHECK (per_image >= 0),
    -- above this many input tokens the whole call is charged the tier rates
    tier_threshold bigint CHECK (tier_threshold > 0),
    tier_input numeric, tier_cached_input numeric, tier_cache_write_5m numeric,
    tier_output numeric,
    -- the providers' Batch APIs (kept for reference and reports)
    batch_input numeric, batch_output numeric,
    max_output_tokens integer CHECK (max_output_tokens > 0),
    valid_from timestamptz NOT NULL DEFAULT pg_catalog.now(),
    valid_to timestamptz,           -- set only to end a price with no successor
    source text,                    -- 'seed' rows come with the extension
    CHECK (valid_to IS NULL OR valid_to > valid_from),
    tier_cache_write_1h numeric     -- 1-hour cache writes above the tier threshold
);
CREATE UNIQUE INDEX prices_model_from_idx ON llmgw.prices (model, valid_from);

-- History is never rewritten: a price row is never changed or deleted, and a
-- new price is a new row from its valid_from on.  The one change allowed is
-- to end the latest row of a model (valid_to, set once, not on a seed row),
-- when the model is no longer priced.
CREATE FUNCTION llmgw.prices_immutable() RETURNS trigger
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
CREATE TRIGGER prices_immutable BEFORE UPDATE OR DELETE ON llmgw.prices
    FOR EACH ROW EXECUTE FUNCTION llmgw.prices_immutable();

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
CREATE FUNCTION llmgw.cost(
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

-- The price in force now of every model (a row applies from its valid_from
-- until the next row of its model starts, or until its own valid_to)
CREATE VIEW llmgw.prices_now AS
SELECT p.*
  FROM (SELECT DISTINCT ON (model) * FROM llmgw.prices
         WHERE valid_from <= pg_catalog.now()
         ORDER BY model, valid_from DESC) p
 WHERE p.valid_to IS NULL OR p.valid_to > pg_catalog.now();

-- The price names a deployment is looked up under, most specific first
CREATE FUNCTION llmgw.price_names(provider text, kind text, upstream_model text,
                                  price_model text DEFAULT NULL)
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE WHEN price_model IS NOT NULL THEN ARRAY[price_model]
            ELSE ARRAY[provider || '/' || upstream_model,
                       CASE kind WHEN 'openai_responses' THEN 'openai'
                                 WHEN 'openai_compatible' THEN provider
                                 ELSE kind END || '/' || upstream_model,
                       upstream_model] END
$$;

-- The price row in force at a time for one of the names (the first name
-- that has one): of each name, the latest row started by then, unless it
-- was ended before then
CREATE FUNCTION llmgw.price_at(names text[], at timestamptz)
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

------------------------------------------------------------------------------
-- Budgets and alerts
------------------------------------------------------------------------------

CREATE TABLE llmgw.budgets (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE,
    scope text NOT NULL CHECK (scope IN ('key', 'team', 'role', 'model', 'global')),
    key_id bigint REFERENCES llmgw.virtual_keys (id) ON DELETE CASCADE,  -- a key lineage
    team_id bigint REFERENCES llmgw.teams (id) ON DELETE CASCADE,
    role_name name,
    model text,
    period text NOT NULL CHECK (period IN ('day', 'week', 'month', 'total')),
    limit_amount numeric NOT NULL CHECK (limit_amount >= 0),
    currency text NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    enforcement text NOT NULL DEFAULT 'hard' CHECK (enforcement IN ('hard', 'soft')),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CHECK ((key_id IS NOT NULL) = (scope = 'key')),
    CHECK ((team_id IS NOT NULL) = (scope = 'team')),
    CHECK ((role_name IS NOT NULL) = (scope = 'role')),
    CHECK ((model IS NOT NULL) = (scope = 'model'))
);

-- Budget periods are UTC calendar days, ISO weeks and months
CREATE FUNCTION llmgw.period_start(period text, at timestamptz DEFAULT pg_catalog.now())
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE period WHEN 'total' THEN '-infinity'::timestamptz
       ELSE date_trunc(period, at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END
$$;

CREATE FUNCTION llmgw.period_end(period text, at timestamptz DEFAULT pg_catalog.now())
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT CASE period WHEN 'total' THEN 'infinity'::timestamptz
       ELSE (date_trunc(period, at AT TIME ZONE 'UTC') + ('1 ' || period)::interval)
            AT TIME ZONE 'UTC' END
$$;

-- Create a budget.  scope 'key' takes a key id, 'team' a team name, 'role'
-- a role name, 'model' a model alias, 'global' nothing.
CREATE FUNCTION llmgw.create_budget(
    name text,
    scope text,
    target text,
    period text,
    limit_amount numeric,
    enforcement text DEFAULT 'hard',
    currency text DEFAULT 'USD')
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    id bigint;
    lineage bigint;
BEGIN
    IF scope IS NULL OR scope NOT IN ('key', 'team', 'role', 'model', 'global') THEN
        RAISE EXCEPTION 'unknown budget scope "%"', scope
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use key, team, role, model or global.';
    END IF;
    IF (scope = 'global') <> (target IS NULL) THEN
        RAISE EXCEPTION 'a % budget %', scope,
            CASE WHEN scope = 'global' THEN 'takes no target' ELSE 'needs a target' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope = 'key' THEN
        SELECT k.lineage_id INTO lineage FROM llmgw.keys k WHERE k.id = target::bigint;
        IF lineage IS NULL THEN
            RAISE EXCEPTION 'virtual key % does not exist', target USING ERRCODE = 'undefined_object';
        END IF;
    ELSIF scope = 'role' AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = target) THEN
        RAISE EXCEPTION 'role "%" does not exist', target USING ERRCODE = 'undefined_object';
    ELSIF scope = 'model' AND NOT EXISTS (SELECT 1 FROM llmgw.models m WHERE m.alias = target) THEN
        RAISE EXCEPTION 'model "%" does not exist', target USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO llmgw.budgets (name, scope, key_id, team_id, role_name, model, period,
                               limit_amount, currency, enforcement)
    VALUES (name, scope, lineage,
            CASE WHEN scope = 'team' THEN llmgw.team_id(target) END,
            CASE WHEN scope = 'role' THEN target END,
            CASE WHEN scope = 'model' THEN target END,
            period, limit_amount, currency, enforcement)
    RETURNING budgets.id INTO id;
    RETURN id;
END
$fn$;

-- A budget crossing its limit (soft: the call went ahead; hard: calls are
-- refused from now on).  Each alert is also sent as NOTIFY llmgw_alerts.
CREATE TABLE llmgw.alerts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    budget_id bigint REFERENCES llmgw.budgets (id) ON DELETE SET NULL,
    budget_name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('soft_limit_reached', 'hard_limit_reached')),
    period_start timestamptz,
    limit_amount numeric NOT NULL,
    spent numeric NOT NULL,
    currency text NOT NULL,
    team_id bigint
);

------------------------------------------------------------------------------
-- Usage: partitions by month, daily rollups, row-level security
------------------------------------------------------------------------------

-- Create the monthly partitions of llmgw.usage from this month to
-- months_ahead months ahead, with their keys and indexes (the workers call
-- it when a row first needs a partition).
CREATE FUNCTION llmgw.create_usage_partitions(months_ahead integer DEFAULT 3)
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
-- No monthly partition is made here: partitions made by an extension script
-- belong to the extension and pg_dump would leave their rows out.  The
-- workers make each month's partition when its first row is written.

-- Spend per UTC day and every dimension a budget or a report groups by;
-- maintained as usage rows are written, so views need not scan llmgw.usage.
CREATE TABLE llmgw.usage_daily (
    day date NOT NULL,
    shard integer NOT NULL DEFAULT 0,   -- the worker that wrote it: no lock waits between workers
    team_id bigint,
    key_id bigint,
    role_name text,
    model text,
    provider text,
    upstream_model text,
    currency text,
    calls bigint NOT NULL,
    errors bigint NOT NULL,
    unpriced bigint NOT NULL,
    cache_hits bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    reasoning_tokens bigint NOT NULL,
    cost numeric NOT NULL,
    month date NOT NULL GENERATED ALWAYS AS ((date_trunc('month', day::timestamp))::date) STORED,
    UNIQUE NULLS NOT DISTINCT (day, team_id, key_id, role_name, model, provider,
                               upstream_model, currency, shard)
);
CREATE INDEX usage_daily_month_idx ON llmgw.usage_daily (month);

CREATE FUNCTION llmgw.usage_rollup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- ordered, so that concurrent writers lock rollup rows in one order
    INSERT INTO llmgw.usage_daily AS d (day, shard, team_id, key_id, role_name, model, provider,
        upstream_model, currency, calls, errors, unpriced, cache_hits, input_tokens,
        output_tokens, cached_input_tokens, reasoning_tokens, cost)
    SELECT (n.started_at AT TIME ZONE 'UTC')::date,
           coalesce(nullif(current_setting('llmgw.rollup_shard', true), '')::integer, 0),
           n.team_id, n.key_id, n.role_name, n.model,
           n.provider, n.upstream_model, n.currency,
           count(*), count(*) FILTER (WHERE n.status <> 'ok'),
           count(*) FILTER (WHERE n.unpriced), count(*) FILTER (WHERE n.cache_hit),
           coalesce(sum(n.input_tokens), 0), coalesce(sum(n.output_tokens), 0),
           coalesce(sum(n.cached_input_tokens), 0), coalesce(sum(n.reasoning_tokens), 0),
           coalesce(sum(n.cost), 0)
      FROM new_rows n
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
     ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ON CONFLICT (day, team_id, key_id, role_name, model, provider, upstream_model, currency, shard)
    DO UPDATE SET calls = d.calls + excluded.calls, errors = d.errors + excluded.errors,
                  unpriced = d.unpriced + excluded.unpriced,
                  cache_hits = d.cache_hits + excluded.cache_hits,
                  input_tokens = d.input_tokens + excluded.input_tokens,
                  output_tokens = d.output_tokens + excluded.output_tokens,
                  cached_input_tokens = d.cached_input_tokens + excluded.cached_input_tokens,
                  reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens,
                  cost = d.cost + excluded.cost;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER usage_rollup AFTER INSERT ON llmgw.usage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION llmgw.usage_rollup();

-- Rollups written by anything but the workers' own rollup trigger (a
-- restore, a repair by hand): the workers load the budget ledger again
CREATE FUNCTION llmgw.ledger_changed() RETURNS trigger
    AS 'MODULE_PATHNAME', 'llmgw_ledger_changed' LANGUAGE C;
CREATE TRIGGER ledger_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.usage_daily FOR EACH STATEMENT
    WHEN (pg_catalog.pg_trigger_depth() < 1)
    EXECUTE FUNCTION llmgw.ledger_changed();

-- Exact-match response cache (owner only: answers may be confidential).
-- key = sha256 of the scope (team, key or role; 'shared' when the model
-- shares), the kind of call, the model alias and the normalised request.
CREATE TABLE llmgw.response_cache (
    key bytea PRIMARY KEY,
    model text NOT NULL,
    scope text NOT NULL,
    kind integer NOT NULL,
    answer text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    expires_at timestamptz NOT NULL,
    hits bigint NOT NULL DEFAULT 0
);
CREATE INDEX response_cache_expires_idx ON llmgw.response_cache (expires_at);

-- What the cache holds, without the answers
CREATE VIEW llmgw.cache_stats AS
SELECT model, scope, count(*) AS entries, sum(pg_catalog.octet_length(answer)) AS bytes,
       sum(hits) AS hits, min(created_at) AS oldest, max(expires_at) AS last_expiry
  FROM llmgw.response_cache GROUP BY model, scope;

-- Drop expired entries, then the oldest ones beyond max_bytes
CREATE FUNCTION llmgw.trim_cache(max_bytes bigint) RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
WITH expired AS (
    DELETE FROM llmgw.response_cache WHERE expires_at <= now() RETURNING 1),
sized AS (
    SELECT key, sum(octet_length(answer)) OVER (ORDER BY created_at DESC, key) AS upto
      FROM llmgw.response_cache),
over AS (
    DELETE FROM llmgw.response_cache c USING sized s
     WHERE c.key = s.key AND s.upto > max_bytes RETURNING 1)
SELECT (SELECT count(*) FROM expired) + (SELECT count(*) FROM over)
$$;

-- Forget the cached answers of a model, or all of them
CREATE FUNCTION llmgw.clear_cache(model text DEFAULT NULL) RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
WITH gone AS (DELETE FROM llmgw.response_cache c
               WHERE clear_cache.model IS NULL OR c.model = clear_cache.model RETURNING 1)
SELECT count(*) FROM gone
$$;

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

-- Usage rows are a ledger: written once by the workers, never changed
CREATE FUNCTION llmgw.usage_append_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'llmgw.usage rows cannot be changed or deleted'
        USING ERRCODE = 'prohibited_sql_statement_attempted',
              HINT = 'Drop or detach whole monthly partitions to remove old usage.';
END
$fn$;
CREATE TRIGGER usage_append_only BEFORE UPDATE OR DELETE ON llmgw.usage
    FOR EACH ROW EXECUTE FUNCTION llmgw.usage_append_only();

-- Admin and finance see every row; other roles see their team's rows, and
-- calls they made without a team.
ALTER TABLE llmgw.usage ENABLE ROW LEVEL SECURITY;
CREATE POLICY usage_staff ON llmgw.usage FOR SELECT
    TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY usage_team ON llmgw.usage FOR SELECT TO llmgw_user
    USING (team_id IN (SELECT llmgw.my_teams())
           OR (team_id IS NULL AND role_name = CURRENT_USER));
ALTER TABLE llmgw.usage_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY usage_daily_staff ON llmgw.usage_daily FOR SELECT
    TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY usage_daily_team ON llmgw.usage_daily FOR SELECT TO llmgw_user
    USING (team_id IN (SELECT llmgw.my_teams())
           OR (team_id IS NULL AND role_name = CURRENT_USER));

------------------------------------------------------------------------------
-- Finance views
------------------------------------------------------------------------------

-- One row per day and dimensions and worker (each worker keeps its own rollup
-- rows, so that workers never wait for each other): sum over the columns you
-- group by, as reports do anyway.
CREATE VIEW llmgw.spend_daily WITH (security_invoker = true) AS
SELECT d.day, t.name AS team, k.prefix AS key_prefix, d.role_name, d.model, d.provider,
       d.upstream_model, d.currency, d.calls, d.errors, d.unpriced, d.cache_hits,
       d.input_tokens, d.output_tokens, d.cached_input_tokens, d.reasoning_tokens, d.cost
  FROM llmgw.usage_daily d
  LEFT JOIN llmgw.teams t ON t.id = d.team_id
  LEFT JOIN llmgw.keys k ON k.id = d.key_id;

CREATE VIEW llmgw.spend_by_key WITH (security_invoker = true) AS
SELECT d.month, d.key_id, k.prefix AS key_prefix,
       k.name AS key_name, t.name AS team, d.currency,
       sum(d.calls) AS calls, sum(d.errors) AS errors, sum(d.unpriced) AS unpriced,
       sum(d.input_tokens) AS input_tokens, sum(d.output_tokens) AS output_tokens,
       sum(d.cost) AS cost
  FROM llmgw.usage_daily d
  LEFT JOIN llmgw.keys k ON k.id = d.key_id
  LEFT JOIN llmgw.teams t ON t.id = d.team_id
 GROUP BY 1, 2, 3, 4, 5, 6;

CREATE VIEW llmgw.spend_by_team WITH (security_invoker = true) AS
SELECT d.month, d.team_id, t.name AS team, d.currency,
       sum(d.calls) AS calls, sum(d.errors) AS errors, sum(d.unpriced) AS unpriced,
       sum(d.input_tokens) AS input_tokens, sum(d.output_tokens) AS output_tokens,
       sum(d.cost) AS cost
  FROM llmgw.usage_daily d
  LEFT JOIN llmgw.teams t ON t.id = d.team_id
 GROUP BY 1, 2, 3, 4;

CREATE VIEW llmgw.spend_by_model WITH (security_invoker = true) AS
SELECT d.month, d.model, d.provider, d.upstream_model,
       d.currency,
       sum(d.calls) AS calls, sum(d.errors) AS errors, sum(d.unpriced) AS unpriced,
       sum(d.input_tokens) AS input_tokens, sum(d.output_tokens) AS output_tokens,
       sum(d.cached_input_tokens) AS cached_input_tokens,
       sum(d.reasoning_tokens) AS reasoning_tokens, sum(d.cost) AS cost
  FROM llmgw.usage_daily d
 GROUP BY 1, 2, 3, 4, 5;

-- The enforcement state of each budget in shared memory (reservations of
-- calls in flight, and the spend the workers enforce)
CREATE FUNCTION llmgw.budget_ledger(OUT budget_id bigint, OUT reserved numeric,
                                    OUT ledger_spent numeric, OUT period_start timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_budget_ledger'
LANGUAGE C STRICT VOLATILE;

-- Spend of each budget in its current period, from the rollups
CREATE FUNCTION llmgw.budget_spent(b llmgw.budgets, at timestamptz DEFAULT pg_catalog.now())
RETURNS numeric
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT coalesce(sum(d.cost), 0)
  FROM llmgw.usage_daily d
 WHERE d.currency = b.currency
   AND d.day >= (llmgw.period_start(b.period, at) AT TIME ZONE 'UTC')::date
   AND CASE b.scope
         WHEN 'key' THEN d.key_id IN (SELECT k.id FROM llmgw.virtual_keys k
                                       WHERE k.lineage_id = b.key_id)
         WHEN 'team' THEN d.team_id = b.team_id
         WHEN 'role' THEN d.role_name = b.role_name
         WHEN 'model' THEN d.model = b.model
         ELSE true END
$$;

CREATE VIEW llmgw.budget_status WITH (security_invoker = true) AS
SELECT b.id, b.name, b.scope,
       CASE b.scope WHEN 'key' THEN (SELECT k.prefix FROM llmgw.keys k WHERE k.id = b.key_id)
                    WHEN 'team' THEN t.name
                    WHEN 'role' THEN b.role_name::text
                    WHEN 'model' THEN b.model END AS target,
       b.period, b.enforcement, b.currency, b.limit_amount,
       s.spent, trim_scale(coalesce(l.reserved, 0)) AS reserved,
       trim_scale(greatest(b.limit_amount - s.spent - coalesce(l.reserved, 0), 0)) AS remaining,
       llmgw.period_start(b.period) AS period_start,
       llmgw.period_end(b.period) AS resets_at,
       trim_scale(l.ledger_spent) AS ledger_spent
  FROM llmgw.budgets b
  LEFT JOIN llmgw.teams t ON t.id = b.team_id
  CROSS JOIN LATERAL (SELECT llmgw.budget_spent(b) AS spent) s
  LEFT JOIN llmgw.budget_ledger() l ON l.budget_id = b.id;

CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.teams FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.role_bindings FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.virtual_keys FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.prices FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.budgets FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();

SELECT pg_catalog.pg_extension_config_dump('llmgw.teams', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.role_bindings', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.virtual_keys', '');
-- the seed prices come with the extension: a restore makes them anew
SELECT pg_catalog.pg_extension_config_dump('llmgw.prices', 'WHERE source IS DISTINCT FROM ''seed''');
SELECT pg_catalog.pg_extension_config_dump('llmgw.budgets', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.usage_daily', '');

------------------------------------------------------------------------------
-- Administration
------------------------------------------------------------------------------

-- Store (or, with NULL, remove) a provider's secret in the owner-only table.
-- The statement is hidden from pg_stat_activity and masked in the server log.
CREATE FUNCTION llmgw.set_provider_secret(provider text, secret text)
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

-- Register a provider.  secret: 'env:NAME', 'file:/path', a literal secret
-- (stored in the owner-only table), or NULL for servers without auth.
CREATE FUNCTION llmgw.create_provider(
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
    weight integer DEFAULT 1,
    price_model text DEFAULT NULL,
    rpm_limit integer DEFAULT NULL,
    tpm_limit bigint DEFAULT NULL)
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
    INSERT INTO llmgw.deployments (model, provider, upstream_model, priority, weight,
                                   price_model, rpm_limit, tpm_limit)
    VALUES (alias, provider, upstream_model, priority, weight, price_model, rpm_limit, tpm_limit);
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
CREATE FUNCTION @extschema@.llm_embed_many(inputs text[], model text)
RETURNS TABLE (ordinality integer, embedding real[])
AS 'MODULE_PATHNAME', 'llm_embed_many'
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
    OUT queue_size integer,
    OUT workers_configured integer,
    OUT life_started_at timestamptz)
AS 'MODULE_PATHNAME', 'llmgw_stats'
LANGUAGE C STRICT VOLATILE;

-- Health of each deployment since the server started (shared memory)
CREATE FUNCTION llmgw.deployment_stats(
    OUT deployment_id bigint, OUT state text, OUT cooldown_until timestamptz,
    OUT consecutive_failures integer, OUT in_flight integer, OUT successes bigint,
    OUT failures bigint, OUT cooldowns bigint, OUT p50_ms float8, OUT p95_ms float8,
    OUT p99_ms float8, OUT recent_ms float8)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_deployment_stats'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW llmgw.deployment_health AS
SELECT d.model, d.provider, d.upstream_model, d.priority, d.weight,
       coalesce(s.state, 'healthy') AS state, s.cooldown_until, s.consecutive_failures,
       coalesce(s.in_flight, 0) AS in_flight, coalesce(s.successes, 0) AS successes,
       coalesce(s.failures, 0) AS failures, coalesce(s.cooldowns, 0) AS cooldowns,
       round(s.p50_ms::numeric, 1) AS p50_ms, round(s.p95_ms::numeric, 1) AS p95_ms,
       round(s.p99_ms::numeric, 1) AS p99_ms, round(s.recent_ms::numeric, 1) AS recent_ms,
       d.id AS deployment_id
  FROM llmgw.deployments d
  LEFT JOIN llmgw.deployment_stats() s ON s.deployment_id = d.id;

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
-- Asynchronous calls: queued durably, served by the workers with leases
------------------------------------------------------------------------------

CREATE TABLE llmgw.async_calls (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner name NOT NULL DEFAULT CURRENT_USER,
    model text NOT NULL,
    request jsonb NOT NULL,         -- llm_chat's request
    key_hash bytea,                 -- the caller's virtual key (owner only)
    tags jsonb,
    max_retries integer NOT NULL CHECK (max_retries BETWEEN 0 AND 10),
    timeout_ms integer NOT NULL CHECK (timeout_ms >= 0),
    status text NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'running', 'done', 'error')),
    answer jsonb,                   -- llm_chat's answer
    sqlstate text,
    error text,
    attempts integer NOT NULL DEFAULT 0,   -- times a worker took it
    submitted_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    started_at timestamptz,
    finished_at timestamptz,
    lease_until timestamptz,        -- a worker holds it until then
    server_started_at timestamptz,  -- of the server life that took it
    -- the other settings of the session that submitted it (NULL: the server's)
    retry_max_wait_ms integer CHECK (retry_max_wait_ms BETWEEN 0 AND 600000),
    retry_base_delay_ms integer CHECK (retry_base_delay_ms BETWEEN 0 AND 60000),
    deadline_ms integer CHECK (deadline_ms >= 0),
    cache text CHECK (cache IN ('default', 'on', 'off')),
    cache_ttl_s integer CHECK (cache_ttl_s > 0),
    max_response_bytes bigint CHECK (max_response_bytes BETWEEN 1024 AND 2147483647)
);
CREATE INDEX async_calls_pending_idx ON llmgw.async_calls (id) WHERE status IN ('queued', 'running');
ALTER TABLE llmgw.async_calls ENABLE ROW LEVEL SECURITY;
CREATE POLICY async_staff ON llmgw.async_calls TO llmgw_admin USING (true);
CREATE POLICY async_own ON llmgw.async_calls TO llmgw_user USING (owner = CURRENT_USER);
SELECT pg_catalog.pg_extension_config_dump('llmgw.async_calls', '');

-- A call queued by hand is queued as llmgw.submit() queues it: the
-- session's key (never a hash written in the row), llmgw.require_key, and
-- the session's tags unless given (a JSON object of at most 4096 bytes).
-- A superuser's rows (a restore) keep what they say.
CREATE FUNCTION llmgw.async_calls_guard() RETURNS trigger
AS 'MODULE_PATHNAME', 'llmgw_async_calls_guard'
LANGUAGE C;

CREATE TRIGGER async_calls_guard BEFORE INSERT ON llmgw.async_calls
    FOR EACH ROW EXECUTE FUNCTION llmgw.async_calls_guard();

-- Queue a call (llm_chat's request); returns its id at once.  The call is
-- made once the submitting transaction commits, with the caller's role,
-- virtual key and llmgw.tags.
CREATE FUNCTION llmgw.submit(request jsonb) RETURNS bigint
AS 'MODULE_PATHNAME', 'llmgw_submit'
LANGUAGE C STRICT VOLATILE;

-- The state and, once there, the answer of a submitted call
CREATE FUNCTION llmgw.result(id bigint,
    OUT status text, OUT answer jsonb, OUT sqlstate text, OUT error text,
    OUT submitted_at timestamptz, OUT finished_at timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT a.status, a.answer, a.sqlstate, a.error, a.submitted_at, a.finished_at
  FROM llmgw.async_calls a WHERE a.id = result.id
$$;

-- Wait up to timeout for a submitted call to finish; returns its result
-- (status 'queued' or 'running' when the time ran out).  Call it outside
-- the transaction that submitted the call.
CREATE FUNCTION llmgw.wait(id bigint, timeout interval DEFAULT '30 seconds',
    OUT status text, OUT answer jsonb, OUT sqlstate text, OUT error text,
    OUT submitted_at timestamptz, OUT finished_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    deadline timestamptz := clock_timestamp() + timeout;
    pause float8 := 0.005;
BEGIN
    LOOP
        SELECT r.* INTO status, answer, sqlstate, error, submitted_at, finished_at
          FROM llmgw.result(id) r;
        IF NOT FOUND OR status IS NULL THEN
            RAISE EXCEPTION 'asynchronous call % does not exist', id
                USING ERRCODE = 'undefined_object';
        END IF;
        EXIT WHEN status IN ('done', 'error') OR clock_timestamp() >= deadline;
        PERFORM pg_sleep(least(pause, extract(epoch FROM deadline - clock_timestamp())));
        pause := least(pause * 2, 0.2);
    END LOOP;
END
$fn$;

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
        CHECK (status IN ('running', 'finished', 'failed', 'stopped')),
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
-- A seed of list prices (LiteLLM's format, per token, USD) so that the demo
-- and a fresh install price the common models; llmgw.import_prices() with
-- LiteLLM's whole file brings the rest and newer prices.
------------------------------------------------------------------------------

SELECT llmgw.import_prices($seed$
{
 "gpt-4o": {
  "input_cost_per_token": 2.5e-06,
  "output_cost_per_token": 1e-05,
  "cache_read_input_token_cost": 1.25e-06,
  "input_cost_per_token_batches": 1.25e-06,
  "output_cost_per_token_batches": 5e-06,
  "max_output_tokens": 16384
 },
 "gpt-4o-mini": {
  "input_cost_per_token": 1.5e-07,
  "output_cost_per_token": 6e-07,
  "cache_read_input_token_cost": 7.5e-08,
  "input_cost_per_token_batches": 7.5e-08,
  "output_cost_per_token_batches": 3e-07,
  "max_output_tokens": 16384
 },
 "gpt-4.1-mini": {
  "input_cost_per_token": 4e-07,
  "output_cost_per_token": 1.6e-06,
  "cache_read_input_token_cost": 1e-07,
  "input_cost_per_token_batches": 2e-07,
  "output_cost_per_token_batches": 8e-07,
  "max_output_tokens": 32768
 },
 "claude-sonnet-4-5": {
  "input_cost_per_token": 3e-06,
  "output_cost_per_token": 1.5e-05,
  "cache_read_input_token_cost": 3e-07,
  "cache_creation_input_token_cost": 3.75e-06,
  "cache_creation_input_token_cost_above_1hr": 6e-06,
  "input_cost_per_token_above_200k_tokens": 6e-06,
  "output_cost_per_token_above_200k_tokens": 2.25e-05,
  "cache_read_input_token_cost_above_200k_tokens": 6e-07,
  "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
  "max_output_tokens": 64000
 },
 "claude-haiku-4-5": {
  "input_cost_per_token": 1e-06,
  "output_cost_per_token": 5e-06,
  "cache_read_input_token_cost": 1e-07,
  "cache_creation_input_token_cost": 1.25e-06,
  "cache_creation_input_token_cost_above_1hr": 2e-06,
  "max_output_tokens": 64000
 },
 "gemini/gemini-2.5-flash": {
  "input_cost_per_token": 3e-07,
  "output_cost_per_token": 2.5e-06,
  "cache_read_input_token_cost": 3e-08,
  "output_cost_per_reasoning_token": 2.5e-06,
  "max_output_tokens": 65535
 },
 "text-embedding-3-small": {
  "input_cost_per_token": 2e-08,
  "output_cost_per_token": 0.0,
  "input_cost_per_token_batches": 1e-08,
  "output_cost_per_token_batches": 0.0
 }
}
$seed$::jsonb, '2026-01-01 00:00:00+00', source => 'seed');

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
REVOKE ALL ON FUNCTION @extschema@.llm_embed_many(text[], text) FROM PUBLIC;

GRANT SELECT, INSERT, UPDATE, DELETE ON llmgw.providers, llmgw.models, llmgw.deployments
    TO llmgw_admin;
GRANT SELECT ON llmgw.models TO llmgw_user;
GRANT SELECT ON llmgw.usage, llmgw.usage_daily TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT ON llmgw.teams, llmgw.role_bindings, llmgw.keys TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT ON llmgw.prices, llmgw.prices_now, llmgw.budgets, llmgw.alerts TO llmgw_admin, llmgw_finance;
GRANT INSERT, UPDATE, DELETE ON llmgw.teams, llmgw.role_bindings, llmgw.budgets TO llmgw_admin;
GRANT INSERT, UPDATE ON llmgw.prices TO llmgw_admin;
GRANT SELECT ON llmgw.spend_daily, llmgw.spend_by_key, llmgw.spend_by_team, llmgw.spend_by_model
    TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT ON llmgw.budget_status TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON FUNCTION llmgw.my_teams(), llmgw.cost(llmgw.prices, bigint, bigint, bigint, bigint, bigint, bigint, integer),
    llmgw.price_names(text, text, text, text), llmgw.price_at(text[], timestamptz),
    llmgw.period_start(text, timestamptz), llmgw.period_end(text, timestamptz)
    TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT EXECUTE ON FUNCTION llmgw.budget_spent(llmgw.budgets, timestamptz), llmgw.budget_ledger()
    TO llmgw_admin, llmgw_finance;
GRANT SELECT, INSERT, UPDATE ON llmgw.jobs TO llmgw_admin, llmgw_user;
GRANT SELECT ON llmgw.jobs TO llmgw_finance;
GRANT SELECT ON llmgw.job_progress TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT ON llmgw.requests TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT EXECUTE ON FUNCTION llmgw.stats() TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON FUNCTION llmgw.deployment_stats() TO llmgw_admin, llmgw_finance;
GRANT SELECT ON llmgw.calls_in_flight TO llmgw_admin, llmgw_finance;
-- the view reads the journal through this function, with the reader's rights
GRANT EXECUTE ON FUNCTION llmgw.calls_in_flight_now() TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON FUNCTION llmgw.check_base_url(text), llmgw.hide_statement() TO llmgw_admin;
GRANT SELECT (id, owner, model, request, tags, max_retries, timeout_ms, status, answer, sqlstate,
              error, attempts, submitted_at, started_at, finished_at, lease_until)
    ON llmgw.async_calls TO llmgw_admin, llmgw_user;
GRANT INSERT (model, request, key_hash, tags, max_retries, timeout_ms)
    ON llmgw.async_calls TO llmgw_admin, llmgw_user;
GRANT SELECT (retry_max_wait_ms, retry_base_delay_ms, deadline_ms, cache, cache_ttl_s,
              max_response_bytes)
    ON llmgw.async_calls TO llmgw_admin, llmgw_user;
GRANT INSERT (retry_max_wait_ms, retry_base_delay_ms, deadline_ms, cache, cache_ttl_s,
              max_response_bytes)
    ON llmgw.async_calls TO llmgw_admin, llmgw_user;
GRANT EXECUTE ON FUNCTION llmgw.submit(jsonb), llmgw.result(bigint), llmgw.wait(bigint, interval)
    TO llmgw_admin, llmgw_user;
GRANT SELECT ON llmgw.cache_stats TO llmgw_admin;
GRANT EXECUTE ON FUNCTION llmgw.trim_cache(bigint), llmgw.clear_cache(text) TO llmgw_admin;
GRANT SELECT ON llmgw.deployment_health TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON PROCEDURE llmgw.enrich(regclass, text, text, text, text, text, integer, integer, integer, text)
    TO llmgw_admin, llmgw_user;
GRANT EXECUTE ON FUNCTION
    llmgw.create_provider(text, text, text, text, text, integer, integer, integer),
    llmgw.set_provider_secret(text, text),
    llmgw.drop_provider(text),
    llmgw.create_model(text, text, text, integer, integer, text, integer, bigint),
    llmgw.drop_model(text),
    llmgw.create_team(text, text[], integer, bigint),
    llmgw.team_id(text),
    llmgw.bind_role(regrole, text),
    llmgw.unbind_role(regrole),
    llmgw.create_key(text, text, text[], timestamptz, integer, bigint),
    llmgw.revoke_key(bigint),
    llmgw.rotate_key(bigint, interval),
    llmgw.set_price(text, numeric, numeric, numeric, numeric, numeric, numeric, numeric, numeric,
                    bigint, numeric, numeric, numeric, numeric, numeric, numeric, integer, text,
                    timestamptz, text, numeric),
    llmgw.import_prices(jsonb, timestamptz, text[], text),
    llmgw.create_budget(text, text, text, text, numeric, text, text),
    llmgw.create_usage_partitions(integer)
    TO llmgw_admin;
GRANT EXECUTE ON FUNCTION @extschema@.llm_complete(text, text, text, integer, double precision),
    @extschema@.llm_chat(jsonb),
    @extschema@.llm_complete_many(text[], text, text, integer, double precision, integer, text),
    @extschema@.llm_embed(text, text),
    @extschema@.llm_embed_many(text[], text)
    TO llmgw_user, llmgw_admin;

------------------------------------------------------------------------------
-- pg_dump keeps the position of every sequence, so that after a restore the
-- next id of each table follows the restored rows
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

-- ==== Request log (docs/request_log.md) ====
-- Opt-in per team, key or model: the bodies of each call (as the caller sent
-- the request, as llmgw answered it), redacted and capped by the workers
-- before they are stored, one row per call beside its last usage row.

-- Which calls are logged: a rule names a team, a key lineage or a model
-- alias; a call matching any rule is logged.  No rule, no body kept.
CREATE TABLE llmgw.request_log_rules (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope text NOT NULL CHECK (scope IN ('key', 'team', 'model')),
    key_id bigint REFERENCES llmgw.virtual_keys (id) ON DELETE CASCADE,  -- a key lineage
    team_id bigint REFERENCES llmgw.teams (id) ON DELETE CASCADE,
    model text,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    created_by name NOT NULL DEFAULT CURRENT_USER,
    CHECK ((key_id IS NOT NULL) = (scope = 'key')),
    CHECK ((team_id IS NOT NULL) = (scope = 'team')),
    CHECK ((model IS NOT NULL) = (scope = 'model')),
    UNIQUE NULLS NOT DISTINCT (scope, key_id, team_id, model)
);

-- Patterns replaced in both bodies before anything is stored, in the byte
-- order of their names.  A pattern that matches the empty string would
-- insert its replacement between every character: refused.
CREATE TABLE llmgw.redaction_rules (
    name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.-]{1,63}$'),
    pattern text NOT NULL
        CONSTRAINT redaction_rules_pattern_check
        CHECK (pattern <> '' AND NOT pg_catalog.regexp_like('', pattern)),
    replacement text NOT NULL DEFAULT '[redacted]',
    enabled boolean NOT NULL DEFAULT true,
    builtin boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);

INSERT INTO llmgw.redaction_rules (name, pattern, replacement, builtin) VALUES
    -- 13 to 19 digits, single spaces or dashes between them (no Luhn check:
    -- every such run goes, a card number or not)
    ('card', '(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])', '[card]', true),
    ('email', '[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}', '[email]', true),
    ('virtual_key', 'lgw_[A-Za-z0-9]{16,}', '[virtual key]', true);

-- Built-in rules are changed or disabled, never deleted or renamed; a rule
-- inserted under a built-in name replaces it (how pg_restore brings a
-- changed built-in rule back over the one CREATE EXTENSION made).
CREATE FUNCTION llmgw.redaction_rules_guard() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.builtin THEN
            RAISE EXCEPTION 'redaction rule "%" is built in and cannot be deleted', OLD.name
                USING ERRCODE = 'prohibited_sql_statement_attempted',
                      HINT = format('Disable it: UPDATE llmgw.redaction_rules SET enabled = false WHERE name = %L.',
                                    OLD.name);
        END IF;
        RETURN OLD;
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.builtin AND NEW.name IS DISTINCT FROM OLD.name THEN
            RAISE EXCEPTION 'redaction rule "%" is built in and cannot be renamed', OLD.name
                USING ERRCODE = 'prohibited_sql_statement_attempted';
        END IF;
        NEW.builtin := OLD.builtin;
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM llmgw.redaction_rules r WHERE r.name = NEW.name AND r.builtin) THEN
        UPDATE llmgw.redaction_rules r
           SET pattern = NEW.pattern, replacement = NEW.replacement, enabled = NEW.enabled,
               created_at = NEW.created_at
         WHERE r.name = NEW.name;
        RETURN NULL;
    END IF;
    NEW.builtin := false;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER redaction_rules_guard BEFORE INSERT OR UPDATE OR DELETE ON llmgw.redaction_rules
    FOR EACH ROW EXECUTE FUNCTION llmgw.redaction_rules_guard();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.request_log_rules FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();
CREATE TRIGGER config_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON llmgw.redaction_rules FOR EACH STATEMENT EXECUTE FUNCTION llmgw.config_changed();

SELECT pg_catalog.pg_extension_config_dump('llmgw.request_log_rules', '');
SELECT pg_catalog.pg_extension_config_dump('llmgw.redaction_rules', '');
SELECT pg_catalog.pg_extension_config_dump(pg_catalog.pg_get_serial_sequence('llmgw.request_log_rules', 'id')::regclass, '');

-- One row per logged call, joined to its last usage row by (request_id,
-- attempt, started_at); partitioned by the UTC day the attempt started.
-- The workers make each day's partition when a row first needs it, and
-- worker 0 drops the days beyond llmgw.request_log_retention.  Like
-- llmgw.usage, the table has no index of its own: each partition has its
-- primary key, so that pg_restore can attach dumped partitions.
CREATE TABLE llmgw.request_log (
    request_id uuid NOT NULL,
    attempt integer NOT NULL,
    started_at timestamptz NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    role_name text,
    key_id bigint,
    team_id bigint,
    model text,
    request_body text NOT NULL,
    request_bytes integer NOT NULL,
    request_truncated boolean NOT NULL DEFAULT false,
    response_body text,
    response_bytes integer,
    response_truncated boolean NOT NULL DEFAULT false,
    redacted boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (started_at);

-- The same row-level security as llmgw.usage; llmgw_admin may also erase
-- rows (a person's data) before the retention drops them.
ALTER TABLE llmgw.request_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY request_log_staff ON llmgw.request_log FOR SELECT
    TO llmgw_admin, llmgw_finance USING (true);
CREATE POLICY request_log_team ON llmgw.request_log FOR SELECT TO llmgw_user
    USING (team_id IN (SELECT llmgw.my_teams())
           OR (team_id IS NULL AND role_name = CURRENT_USER));
CREATE POLICY request_log_erase ON llmgw.request_log FOR DELETE
    TO llmgw_admin USING (true);

-- Log (or stop logging) the calls of a team, a key (and the keys rotated
-- from it) or a model
CREATE FUNCTION llmgw.log_requests(scope text, target text, enabled boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    lineage bigint;
    team bigint;
BEGIN
    IF scope IS NULL OR scope NOT IN ('key', 'team', 'model') THEN
        RAISE EXCEPTION 'unknown request log scope "%"', scope
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use key, team or model.';
    END IF;
    IF target IS NULL OR enabled IS NULL THEN
        RAISE EXCEPTION 'a request log rule needs a target and enabled'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF scope = 'key' THEN
        SELECT k.lineage_id INTO lineage FROM llmgw.keys k
         WHERE target ~ '^[0-9]{1,18}$' AND k.id = target::bigint;
        IF lineage IS NULL THEN
            RAISE EXCEPTION 'virtual key % does not exist', target USING ERRCODE = 'undefined_object';
        END IF;
    ELSIF scope = 'team' THEN
        team := llmgw.team_id(target);
    ELSIF enabled AND NOT EXISTS (SELECT 1 FROM llmgw.models m WHERE m.alias = target) THEN
        RAISE EXCEPTION 'model "%" does not exist', target USING ERRCODE = 'undefined_object';
    END IF;
    IF enabled THEN
        INSERT INTO llmgw.request_log_rules (scope, key_id, team_id, model)
        VALUES (scope, lineage, team, CASE WHEN scope = 'model' THEN target END)
        ON CONFLICT DO NOTHING;
    ELSE
        DELETE FROM llmgw.request_log_rules r
         WHERE r.scope = log_requests.scope AND r.key_id IS NOT DISTINCT FROM lineage
           AND r.team_id IS NOT DISTINCT FROM team
           AND r.model IS NOT DISTINCT FROM CASE WHEN log_requests.scope = 'model' THEN target END;
    END IF;
END
$fn$;

-- Create the daily partitions of llmgw.request_log from first_day (NULL:
-- today, UTC) for days days, with their primary keys (the workers call it
-- when a row first needs a partition)
CREATE FUNCTION llmgw.create_request_log_partitions(first_day date DEFAULT NULL,
                                                    days integer DEFAULT 2)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    d date;
    n integer := 0;
    part text;
BEGIN
    IF days IS NULL OR days NOT BETWEEN 1 AND 366 THEN
        RAISE EXCEPTION 'days must be between 1 and 366' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. days - 1 LOOP
        d := coalesce(first_day, (now() AT TIME ZONE 'UTC')::date) + i;
        part := 'request_log_' || to_char(d, 'YYYY_MM_DD');
        CONTINUE WHEN to_regclass('llmgw.' || part) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE llmgw.%I PARTITION OF llmgw.request_log'
                           ' FOR VALUES FROM (%L) TO (%L)',
                           part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            EXECUTE format('ALTER TABLE llmgw.%I ADD PRIMARY KEY (request_id, attempt, started_at)',
                           part);
            n := n + 1;
        EXCEPTION WHEN duplicate_table OR invalid_object_definition THEN
            -- made meanwhile by another session, or a partition made by
            -- hand covers the day: the rows have a place either way
            NULL;
        END;
    END LOOP;
    RETURN n;
END
$fn$;

-- Drop the partitions of llmgw.request_log whose days all lie before the
-- last retention_days UTC days (today included); NULL: the setting
-- llmgw.request_log_retention; 0 keeps everything.  Worker 0 runs it every
-- hour and when the setting changes.
CREATE FUNCTION llmgw.prune_request_log(retention_days integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    keep integer := coalesce(retention_days,
                             current_setting('llmgw.request_log_retention')::integer);
    cutoff timestamptz;
    upper_bound timestamptz;
    p record;
    n integer := 0;
BEGIN
    IF keep < 0 THEN
        RAISE EXCEPTION 'retention_days must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF keep = 0 THEN
        RETURN 0;
    END IF;
    cutoff := (date_trunc('day', now() AT TIME ZONE 'UTC') - make_interval(days => keep - 1))
              AT TIME ZONE 'UTC';
    FOR p IN SELECT c.oid::regclass AS part, pg_get_expr(c.relpartbound, c.oid) AS bound
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'llmgw.request_log'::regclass
              ORDER BY 1
    LOOP
        -- FOR VALUES FROM ('...') TO ('...'): the end, with its offset
        upper_bound := substring(p.bound FROM $re$TO \('([^']+)'\)$re$)::timestamptz;
        CONTINUE WHEN upper_bound IS NULL OR upper_bound > cutoff;
        EXECUTE format('DROP TABLE %s', p.part);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;

-- The request log's redaction rules applied to a text, as the workers
-- apply them to every body (to try a pattern)
CREATE FUNCTION llmgw.redact(body text) RETURNS text
AS 'MODULE_PATHNAME', 'llmgw_reqlog_redact_sql'
LANGUAGE C STABLE STRICT;

REVOKE ALL ON llmgw.request_log_rules, llmgw.redaction_rules, llmgw.request_log FROM PUBLIC;
REVOKE ALL ON FUNCTION llmgw.redaction_rules_guard(), llmgw.log_requests(text, text, boolean),
    llmgw.create_request_log_partitions(date, integer), llmgw.prune_request_log(integer),
    llmgw.redact(text) FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON llmgw.request_log_rules, llmgw.redaction_rules TO llmgw_admin;
GRANT SELECT ON llmgw.request_log_rules, llmgw.redaction_rules TO llmgw_finance;
GRANT SELECT ON llmgw.request_log TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT DELETE ON llmgw.request_log TO llmgw_admin;
GRANT EXECUTE ON FUNCTION llmgw.log_requests(text, text, boolean),
    llmgw.create_request_log_partitions(date, integer), llmgw.prune_request_log(integer),
    llmgw.redact(text) TO llmgw_admin;

COMMENT ON TABLE llmgw.request_log_rules IS 'Which calls the request log keeps: those of a team, a key lineage or a model (llmgw.log_requests()); none by default';
COMMENT ON COLUMN llmgw.request_log_rules.id IS 'Rule id';
COMMENT ON COLUMN llmgw.request_log_rules.scope IS 'key, team or model: what the rule names';
COMMENT ON COLUMN llmgw.request_log_rules.key_id IS 'scope key: the key lineage (the first key of a rotation chain; keys rotated from it are logged too)';
COMMENT ON COLUMN llmgw.request_log_rules.team_id IS 'scope team: the team';
COMMENT ON COLUMN llmgw.request_log_rules.model IS 'scope model: the model alias';
COMMENT ON COLUMN llmgw.request_log_rules.created_at IS 'When the rule was made';
COMMENT ON COLUMN llmgw.request_log_rules.created_by IS 'The role that made it';
COMMENT ON SEQUENCE llmgw.request_log_rules_id_seq IS 'Ids of llmgw.request_log_rules rows';
COMMENT ON TABLE llmgw.redaction_rules IS 'Patterns the workers replace in request and response bodies before the request log stores them, in the byte order of their names';
COMMENT ON COLUMN llmgw.redaction_rules.name IS 'Rule name; rules apply in the byte order of their names';
COMMENT ON COLUMN llmgw.redaction_rules.pattern IS 'A POSIX regular expression (PostgreSQL''s regexp_replace), every match replaced; one that matches the empty string is refused';
COMMENT ON COLUMN llmgw.redaction_rules.replacement IS 'What replaces each match (\1 and \& refer to the match, as in regexp_replace)';
COMMENT ON COLUMN llmgw.redaction_rules.enabled IS 'Applied; built-in rules are disabled rather than deleted';
COMMENT ON COLUMN llmgw.redaction_rules.builtin IS 'Made by CREATE EXTENSION (card, email, virtual_key): may be changed or disabled, not deleted or renamed';
COMMENT ON COLUMN llmgw.redaction_rules.created_at IS 'When the rule was made';
COMMENT ON TRIGGER redaction_rules_guard ON llmgw.redaction_rules IS 'Built-in rules stay; a rule inserted under a built-in name replaces it';
COMMENT ON TRIGGER config_changed ON llmgw.request_log_rules IS 'Workers reload their configuration';
COMMENT ON TRIGGER config_changed ON llmgw.redaction_rules IS 'Workers reload their configuration';
COMMENT ON TABLE llmgw.request_log IS 'Request and response bodies of the calls llmgw.request_log_rules selects, redacted and capped before they are stored; one row per call, joined to its last usage row; partitioned by day';
COMMENT ON COLUMN llmgw.request_log.request_id IS 'The call (usage.request_id)';
COMMENT ON COLUMN llmgw.request_log.attempt IS 'Its last attempt with a usage row (usage.attempt): the one whose answer the caller got';
COMMENT ON COLUMN llmgw.request_log.started_at IS 'When that attempt started (usage.started_at); the partition key';
COMMENT ON COLUMN llmgw.request_log.logged_at IS 'When the row was written (with the usage rows of its round)';
COMMENT ON COLUMN llmgw.request_log.role_name IS 'The role that made the call, as in its usage row';
COMMENT ON COLUMN llmgw.request_log.key_id IS 'The virtual key presented, as in its usage row (NULL: no key)';
COMMENT ON COLUMN llmgw.request_log.team_id IS 'The team of the call, as in its usage row (NULL: no team)';
COMMENT ON COLUMN llmgw.request_log.model IS 'The model alias called';
COMMENT ON COLUMN llmgw.request_log.request_body IS 'The OpenAI-shaped request body the caller sent, redacted, then cut to llmgw.request_log_max_body bytes';
COMMENT ON COLUMN llmgw.request_log.request_bytes IS 'Size of the request body as sent, in bytes';
COMMENT ON COLUMN llmgw.request_log.request_truncated IS 'request_body was cut at llmgw.request_log_max_body';
COMMENT ON COLUMN llmgw.request_log.response_body IS 'What llmgw answered: the text, llm_chat''s JSON or the embeddings, or {"error": ...}; redacted and cut like the request (NULL: no answer)';
COMMENT ON COLUMN llmgw.request_log.response_bytes IS 'Size of the answer before redaction and cutting, in bytes (NULL: no answer)';
COMMENT ON COLUMN llmgw.request_log.response_truncated IS 'response_body was cut at llmgw.request_log_max_body';
COMMENT ON COLUMN llmgw.request_log.redacted IS 'A redaction rule changed the request or the response';
COMMENT ON POLICY request_log_staff ON llmgw.request_log IS 'llmgw_admin and llmgw_finance see every logged call';
COMMENT ON POLICY request_log_team ON llmgw.request_log IS 'Other roles see their teams'' logged calls, and their own without a team (as in llmgw.usage)';
COMMENT ON POLICY request_log_erase ON llmgw.request_log IS 'llmgw_admin may delete logged calls before their partition is dropped';
COMMENT ON FUNCTION llmgw.redaction_rules_guard() IS 'Trigger: built-in redaction rules are not deleted or renamed; one inserted under a built-in name replaces it';
COMMENT ON FUNCTION llmgw.log_requests(text, text, boolean) IS 'Log the bodies of the calls of a team, a key (and its rotations) or a model, or stop (enabled => false)';
COMMENT ON FUNCTION llmgw.create_request_log_partitions(date, integer) IS 'Create daily partitions of llmgw.request_log (UTC days) with their primary keys';
COMMENT ON FUNCTION llmgw.prune_request_log(integer) IS 'Drop the daily partitions of llmgw.request_log older than the retention (llmgw.request_log_retention days by default)';
COMMENT ON FUNCTION llmgw.redact(text) IS 'A text with the enabled redaction rules applied, as the request log stores bodies';
