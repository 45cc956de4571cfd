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

-- ==== Spend as a picture (docs/spend_report.md) ====

-- Text made inert in HTML and SVG, in element content and in quoted
-- attribute values: team, key, model and budget names are user data
CREATE FUNCTION llmgw.html_escape(t text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(pg_catalog.replace(
       pg_catalog.replace(t, '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'),
       '''', '&#39;')
$$;

-- An amount as people read it: two decimals from 1 up (with thousands
-- separators), up to four below 1 and six below 0.01 (0.000255), never in
-- scientific notation
CREATE FUNCTION llmgw.format_amount(amount numeric) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$
SELECT CASE WHEN pg_catalog.abs(amount) >= 1
            THEN pg_catalog.to_char(amount, 'FM999,999,999,999,999,990.00')
            WHEN pg_catalog.abs(amount) >= 0.01
            THEN pg_catalog.to_char(amount, 'FM0.0099')
            ELSE pg_catalog.to_char(amount, 'FM0.009999') END
$$;

-- The axis of a chart whose values go up to top: a round step (1, 2 or 5
-- times a power of ten) giving about four gridlines, and the axis maximum,
-- a whole number of steps (1 and 0.25 when there is nothing to draw)
CREATE FUNCTION llmgw.chart_scale(top double precision,
                                  OUT axis_max double precision, OUT tick double precision)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    raw float8;
    mag float8;
BEGIN
    IF top IS NULL OR NOT top > 0 OR top IN ('Infinity', 'NaN') THEN
        axis_max := 1;
        tick := 0.25;
        RETURN;
    END IF;
    raw := top / 4;
    mag := power(10::float8, floor(log(raw)));
    tick := mag * CASE WHEN raw <= mag THEN 1 WHEN raw <= 2 * mag THEN 2
                       WHEN raw <= 5 * mag THEN 5 ELSE 10 END;
    axis_max := tick * ceil(top / tick - 1e-9);
END
$fn$;

-- One self-contained HTML page of the spend between from_time and to_time
-- (the whole UTC days that period touches), for finance: spend per day
-- stacked by team (by model when a team is given), the top keys and models,
-- each budget's burn-down in its current period with a linear forecast to
-- its reset, error and fallback rates per day.  Inline CSS and SVG only: no
-- script, nothing fetched (a Content-Security-Policy says so).  It runs
-- with the caller's rights: row-level security gives an llmgw_user its
-- teams' spend only, and budgets only to who may read llmgw.budget_status.
-- Spend comes from the rollups (llmgw.usage_daily); only fallbacks and
-- error classes are read from llmgw.usage, the failed and fallen-back rows
-- of the period.
CREATE FUNCTION llmgw.spend_report(from_time timestamptz, to_time timestamptz,
                                   team text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    -- the colours of the series (the last one: all others together)
    palette constant text[] := ARRAY['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2',
                                     '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac'];
    team_name text := spend_report.team;
    by_team boolean := spend_report.team IS NULL;
    tid bigint;
    first_day date;
    last_day date;
    n_days integer;
    lo timestamptz;
    hi timestamptz;
    cur text;                 -- the currency drawn
    other_currencies text;
    scope_label text;
    -- totals of the period
    t_calls bigint;
    t_errors bigint;
    t_unpriced bigint;
    t_hits bigint;
    t_cost numeric;
    t_fallbacks bigint;
    -- what the usage rows say that the rollups do not
    fb_days date[];
    fb_counts bigint[];
    class_rows text;
    -- the spend per day and series, read once
    series jsonb;
    -- chart geometry (SVG user units)
    cw constant float8 := 1120;
    ch constant float8 := 300;
    ml constant float8 := 72;
    mr constant float8 := 12;
    mt constant float8 := 12;
    mb constant float8 := 30;
    pw float8;
    ph float8;
    step float8;
    bw float8;
    every integer;
    sc record;
    top_value float8;
    eh constant float8 := 220;      -- height of the errors chart
    -- pieces of the page
    kpis text;
    daily_svg text;
    legend text;
    keys_html text;
    models_html text;
    errors_svg text;
    days_html text;
    per_day jsonb;
    -- a budget
    b record;
    budget_cards text := '';
    n_budgets integer := 0;
    periodic boolean;
    lim numeric;
    b_spent numeric;
    b_days jsonb;
    first_spend date;
    forecast numeric;
    elapsed numeric;              -- seconds of the period so far
    runs_out timestamptz;
    x0 timestamptz;
    x1 timestamptz;
    e0 numeric;
    e1 numeric;
    y_top numeric;
    y_low numeric;
    f_end timestamptz;
    f_val numeric;
    b_state text;
    pts text;
    nx numeric;
    ly numeric;
    zy numeric;
    bl constant numeric := 64;    -- the burn-down's plot: left, top, width, height
    bt constant numeric := 10;
    bpw constant numeric := 290;
    bph constant numeric := 130;
    css text;
    html text;
BEGIN
    IF from_time IS NULL OR to_time IS NULL THEN
        RAISE EXCEPTION 'a spend report needs from_time and to_time'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT isfinite(from_time) OR NOT isfinite(to_time) OR to_time <= from_time THEN
        RAISE EXCEPTION 'a spend report needs a finite period that ends after it starts'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('from_time is %s and to_time is %s.',
                                  CASE WHEN isfinite(from_time)
                                       THEN to_char(from_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                                       ELSE from_time::text END,
                                  CASE WHEN isfinite(to_time)
                                       THEN to_char(to_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
                                       ELSE to_time::text END);
    END IF;
    first_day := (from_time AT TIME ZONE 'UTC')::date;
    last_day := ((to_time - interval '1 microsecond') AT TIME ZONE 'UTC')::date;
    n_days := last_day - first_day + 1;
    IF n_days > 366 THEN
        RAISE EXCEPTION 'a spend report covers at most 366 days'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('From %s to %s is %s UTC days.', to_char(first_day, 'YYYY-MM-DD'),
                                  to_char(last_day, 'YYYY-MM-DD'), n_days),
                  HINT = 'Make one report per month, or per year.';
    END IF;
    lo := first_day::timestamp AT TIME ZONE 'UTC';
    hi := (last_day + 1)::timestamp AT TIME ZONE 'UTC';

    IF team_name IS NOT NULL THEN
        SELECT t.id INTO tid FROM llmgw.teams t WHERE t.name = team_name;
        IF tid IS NULL THEN
            RAISE EXCEPTION 'team "%" does not exist',
                CASE WHEN length(team_name) > 63 THEN left(team_name, 63) || '...' ELSE team_name END
                USING ERRCODE = 'undefined_object';
        END IF;
        IF NOT (pg_has_role('llmgw_admin', 'MEMBER') OR pg_has_role('llmgw_finance', 'MEMBER')
                OR tid IN (SELECT llmgw.my_teams())) THEN
            RAISE EXCEPTION 'permission denied for the spend of team "%"', team_name
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Only llmgw_admin, llmgw_finance and the roles that act as the team read its spend.';
        END IF;
    END IF;
    scope_label := CASE WHEN by_team THEN 'all teams'
                        ELSE 'team ' || llmgw.html_escape(team_name) END;

    -- the currency with the most spend is drawn; the others are named
    SELECT d.currency INTO cur
      FROM llmgw.usage_daily d
     WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
       AND d.currency IS NOT NULL
     GROUP BY d.currency
     ORDER BY sum(d.cost) DESC, count(*) DESC, d.currency
     LIMIT 1;
    SELECT string_agg(format('%s %s', llmgw.format_amount(o.cost), llmgw.html_escape(o.currency)),
                      ', ' ORDER BY o.currency)
      INTO other_currencies
      FROM (SELECT d.currency, sum(d.cost) AS cost
              FROM llmgw.usage_daily d
             WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
               AND d.currency <> cur
             GROUP BY d.currency) o;

    SELECT coalesce(sum(d.calls), 0), coalesce(sum(d.errors), 0), coalesce(sum(d.unpriced), 0),
           coalesce(sum(d.cache_hits), 0),
           coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0)
      INTO t_calls, t_errors, t_unpriced, t_hits, t_cost
      FROM llmgw.usage_daily d
     WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid);

    -- fallbacks per day and errors per class: the only reading of llmgw.usage,
    -- its rows of the period (index on started_at) that failed or fell back
    WITH f AS (
        SELECT (u.started_at AT TIME ZONE 'UTC')::date AS d,
               u.fallback_from IS NOT NULL AS fell_back,
               CASE WHEN u.status <> 'ok' THEN coalesce(u.error_class, u.status) END AS cls,
               count(*) AS n
          FROM llmgw.usage u
         WHERE u.started_at >= lo AND u.started_at < hi
           AND (tid IS NULL OR u.team_id = tid)
           AND (u.fallback_from IS NOT NULL OR u.status <> 'ok')
         GROUP BY 1, 2, 3)
    SELECT (SELECT array_agg(x.d ORDER BY x.d)
              FROM (SELECT f.d, sum(f.n) AS n FROM f WHERE f.fell_back GROUP BY f.d) x),
           (SELECT array_agg(x.n ORDER BY x.d)
              FROM (SELECT f.d, sum(f.n)::bigint AS n FROM f WHERE f.fell_back GROUP BY f.d) x),
           (SELECT string_agg(format('<tr data-class="%s" data-count="%s"><td>%s</td>'
                                     '<td class="n">%s</td><td class="n">%s</td></tr>',
                                     llmgw.html_escape(x.cls), x.n, llmgw.html_escape(x.cls),
                                     to_char(x.n, 'FM999,999,999,999,990'),
                                     to_char(100.0 * x.n / x.all_n, 'FM990.0') || '%'),
                              '' ORDER BY x.n DESC, x.cls)
              FROM (SELECT f.cls, sum(f.n) AS n, sum(sum(f.n)) OVER () AS all_n
                      FROM f WHERE f.cls IS NOT NULL GROUP BY f.cls) x)
      INTO fb_days, fb_counts, class_rows;
    SELECT coalesce(sum(n), 0) INTO t_fallbacks FROM unnest(fb_counts) AS n;

    kpis := format(
        '<section class="kpis">'
        '<div class="kpi" id="kpi-spend" data-value="%s"><span>Spend</span><b>%s</b><span>%s</span></div>'
        '<div class="kpi" id="kpi-calls" data-value="%s"><span>Calls</span><b>%s</b><span>usage rows: attempts and cache hits</span></div>'
        '<div class="kpi" id="kpi-errors" data-value="%s"><span>Errors</span><b>%s</b><span>%s of calls</span></div>'
        '<div class="kpi" id="kpi-fallbacks" data-value="%s"><span>Fallbacks</span><b>%s</b><span>%s of calls</span></div>'
        '<div class="kpi" id="kpi-cache" data-value="%s"><span>Cache hits</span><b>%s</b><span>answered without a provider</span></div>'
        '<div class="kpi" id="kpi-unpriced" data-value="%s"><span>Unpriced</span><b>%s</b><span>calls without a price</span></div>'
        '</section>',
        t_cost, llmgw.format_amount(t_cost), coalesce(llmgw.html_escape(cur), 'no priced calls'),
        t_calls, to_char(t_calls, 'FM999,999,999,999,990'),
        t_errors, to_char(t_errors, 'FM999,999,999,999,990'),
        to_char(100.0 * t_errors / greatest(t_calls, 1), 'FM990.0') || '%',
        t_fallbacks, to_char(t_fallbacks, 'FM999,999,999,999,990'),
        to_char(100.0 * t_fallbacks / greatest(t_calls, 1), 'FM990.0') || '%',
        t_hits, to_char(t_hits, 'FM999,999,999,999,990'),
        t_unpriced, to_char(t_unpriced, 'FM999,999,999,999,990'));

    ----------------------------------------------------------------------
    -- Spend per day, stacked by team (or by model for one team)
    ----------------------------------------------------------------------
    pw := cw - ml - mr;
    ph := ch - mt - mb;
    step := pw / n_days;
    bw := greatest(step * 0.72, 1);
    every := ceil(n_days / 14.0);

    -- the series: the eight largest, then the rest together (all nine when
    -- there are nine)
    WITH base AS (
        SELECT d.day,
               CASE WHEN by_team THEN coalesce(t.name, '#' || d.team_id) ELSE d.model END AS s,
               sum(d.cost) AS cost
          FROM llmgw.usage_daily d
          LEFT JOIN llmgw.teams t ON t.id = d.team_id
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
           AND d.currency = cur
         GROUP BY 1, 2),
    ranked AS (
        SELECT r.s, r.total, r.r, count(*) OVER () AS n
          FROM (SELECT base.s, sum(base.cost) AS total,
                       row_number() OVER (ORDER BY sum(base.cost) DESC, base.s NULLS LAST) AS r
                  FROM base GROUP BY base.s) r),
    slots AS (
        SELECT ranked.s, CASE WHEN ranked.n > 9 THEN least(ranked.r, 9) ELSE ranked.r END AS slot,
               ranked.n > 9 AND ranked.r >= 9 AS is_other
          FROM ranked)
    SELECT jsonb_agg(jsonb_build_object(
               'day', base.day, 'slot', slots.slot, 'cost', base.cost,
               'label', CASE WHEN slots.is_other THEN 'other ' || CASE WHEN by_team THEN 'teams' ELSE 'models' END
                             WHEN base.s IS NULL THEN CASE WHEN by_team THEN '(no team)' ELSE '(no model)' END
                             ELSE base.s END,
               'colour', palette[CASE WHEN slots.is_other THEN 10 ELSE slots.slot END]))
      INTO series
      FROM base JOIN slots ON slots.s IS NOT DISTINCT FROM base.s;

    SELECT max(x.total) INTO top_value
      FROM (SELECT sum(v.cost) AS total
              FROM jsonb_to_recordset(series) AS v(day date, slot int, cost numeric)
             GROUP BY v.day) x;
    sc := llmgw.chart_scale(top_value);

    WITH v AS (
        SELECT v.day, v.slot, min(v.label) AS label, min(v.colour) AS colour, sum(v.cost) AS cost
          FROM jsonb_to_recordset(series) AS v(day date, slot int, cost numeric, label text, colour text)
         GROUP BY v.day, v.slot),
    stacked AS (
        SELECT v.*, coalesce(sum(v.cost) OVER (PARTITION BY v.day ORDER BY v.slot
                                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS below
          FROM v WHERE v.cost > 0)
    SELECT string_agg(format(
               '<rect x="%s" y="%s" width="%s" height="%s" fill="%s" data-day="%s" data-series="%s" data-cost="%s">'
               '<title>%s, %s: %s %s</title></rect>',
               round((ml + (s.day - first_day) * step + (step - bw) / 2)::numeric, 1),
               round((mt + ph * (1 - (s.below + s.cost)::float8 / sc.axis_max))::numeric, 1),
               round(bw::numeric, 1),
               round(greatest(ph * s.cost::float8 / sc.axis_max, 0.5)::numeric, 1),
               s.colour, to_char(s.day, 'YYYY-MM-DD'), llmgw.html_escape(s.label), s.cost,
               to_char(s.day, 'Mon DD'), llmgw.html_escape(s.label), llmgw.format_amount(s.cost),
               coalesce(llmgw.html_escape(cur), '')),
               '' ORDER BY s.day, s.slot)
      INTO daily_svg
      FROM stacked s;

    SELECT string_agg(format('<li data-series="%s" data-cost="%s"><span class="sw" style="background:%s"></span>%s <b>%s</b></li>',
                             llmgw.html_escape(l.label), l.total, l.colour, llmgw.html_escape(l.label),
                             llmgw.format_amount(l.total)),
                      '' ORDER BY l.slot)
      INTO legend
      FROM (SELECT v.slot, min(v.label) AS label, min(v.colour) AS colour, sum(v.cost) AS total
              FROM jsonb_to_recordset(series) AS v(slot int, cost numeric, label text, colour text)
             GROUP BY v.slot HAVING sum(v.cost) > 0) l;

    daily_svg := format('<svg class="chart" id="daily-chart" viewBox="0 0 %s %s" role="img" aria-label="Spend per day">',
                        cw, ch)
        -- gridlines and their amounts
        || (SELECT string_agg(format('<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/>'
                                     '<text x="%s" y="%s" text-anchor="end">%s</text>',
                                     ml, cw - mr, y, y, ml - 6, y + 4,
                                     llmgw.format_amount((k * sc.tick)::numeric)), '' ORDER BY k)
              FROM generate_series(0, round(sc.axis_max / sc.tick)::int) AS k,
                   LATERAL (SELECT round((mt + ph * (1 - k * sc.tick / sc.axis_max))::numeric, 1) AS y) g)
        -- days
        || (SELECT string_agg(format('<text x="%s" y="%s" text-anchor="middle">%s</text>',
                                     round((ml + (g.day - first_day) * step + step / 2)::numeric, 1),
                                     ch - mb + 18, to_char(g.day, 'Mon DD')), '' ORDER BY g.day)
              FROM (SELECT gs::date AS day
                      FROM generate_series(first_day::timestamp, last_day::timestamp, '1 day') gs) g
             WHERE (g.day - first_day) % every = 0)
        || coalesce(daily_svg,
                    format('<text x="%s" y="%s" text-anchor="middle" class="empty">No spend in this period</text>',
                           ml + pw / 2, mt + ph / 2))
        || format('<line class="axis" x1="%s" x2="%s" y1="%s" y2="%s"/>', ml, cw - mr, mt + ph, mt + ph)
        || '</svg>';

    ----------------------------------------------------------------------
    -- Top keys and top models
    ----------------------------------------------------------------------
    WITH k AS (
        SELECT d.key_id, d.team_id, sum(d.calls) AS n_calls, sum(d.errors) AS n_errors,
               coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0) AS spend,
               count(*) OVER () AS n_keys
          FROM llmgw.usage_daily d
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
         GROUP BY d.key_id, d.team_id
         ORDER BY spend DESC, n_calls DESC, d.key_id NULLS LAST, d.team_id NULLS LAST
         LIMIT 10),
    shown AS (
        SELECT k.*, row_number() OVER (ORDER BY k.spend DESC, k.n_calls DESC, k.key_id NULLS LAST,
                                       k.team_id NULLS LAST) AS pos,
               max(k.spend) OVER () AS top_spend,
               vk.prefix, vk.name AS key_name, t.name AS team_name
          FROM k
          LEFT JOIN llmgw.keys vk ON vk.id = k.key_id
          LEFT JOIN llmgw.teams t ON t.id = k.team_id)
    SELECT format('<table id="top-keys"><thead><tr><th>Key</th><th>Team</th><th class="n">Calls</th>'
                  '<th class="n">Errors</th><th class="n">Spend</th><th></th></tr></thead><tbody>%s</tbody></table>%s',
                  string_agg(format('<tr data-key="%s" data-calls="%s" data-cost="%s"><td>%s</td><td>%s</td>'
                                    '<td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td>%s</td></tr>',
                                    coalesce(s.prefix, ''), s.n_calls, s.spend,
                                    CASE WHEN s.key_id IS NULL THEN '<i>no key</i>'
                                         WHEN s.prefix IS NULL THEN format('<i>key %s</i>', s.key_id)
                                         ELSE format('<code>%s</code> %s', llmgw.html_escape(s.prefix),
                                                     coalesce(llmgw.html_escape(s.key_name), '')) END,
                                    coalesce(llmgw.html_escape(s.team_name), '<i>no team</i>'),
                                    to_char(s.n_calls, 'FM999,999,999,999,990'),
                                    to_char(s.n_errors, 'FM999,999,999,999,990'),
                                    llmgw.format_amount(s.spend),
                                    format('<svg class="bar" viewBox="0 0 160 12"><rect width="%s" height="12" rx="2" fill="#4e79a7"/></svg>',
                                           round((160 * s.spend / nullif(s.top_spend, 0))::numeric, 1))),
                             '' ORDER BY s.pos),
                  CASE WHEN max(s.n_keys) > 10
                       THEN format('<p class="note">The 10 largest of %s keys (and calls without a key, per team).</p>', max(s.n_keys))
                       ELSE '' END)
      INTO keys_html
      FROM shown s;

    WITH m AS (
        SELECT d.model, sum(d.calls) AS n_calls, sum(d.errors) AS n_errors,
               sum(d.input_tokens) AS n_in, sum(d.output_tokens) AS n_out,
               coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0) AS spend,
               count(*) OVER () AS n_models
          FROM llmgw.usage_daily d
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
         GROUP BY d.model
         ORDER BY spend DESC, n_calls DESC, d.model NULLS LAST
         LIMIT 10),
    shown AS (
        SELECT m.*, row_number() OVER (ORDER BY m.spend DESC, m.n_calls DESC, m.model NULLS LAST) AS pos,
               max(m.spend) OVER () AS top_spend
          FROM m)
    SELECT format('<table id="top-models"><thead><tr><th>Model</th><th class="n">Calls</th><th class="n">Errors</th>'
                  '<th class="n">Tokens in</th><th class="n">Tokens out</th><th class="n">Spend</th><th></th></tr></thead>'
                  '<tbody>%s</tbody></table>%s',
                  string_agg(format('<tr data-model="%s" data-calls="%s" data-cost="%s"><td>%s</td><td class="n">%s</td>'
                                    '<td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td><td>%s</td></tr>',
                                    coalesce(llmgw.html_escape(s.model), ''), s.n_calls, s.spend,
                                    coalesce(llmgw.html_escape(s.model), '<i>no model</i>'),
                                    to_char(s.n_calls, 'FM999,999,999,999,990'),
                                    to_char(s.n_errors, 'FM999,999,999,999,990'),
                                    to_char(s.n_in, 'FM999,999,999,999,990'),
                                    to_char(s.n_out, 'FM999,999,999,999,990'),
                                    llmgw.format_amount(s.spend),
                                    format('<svg class="bar" viewBox="0 0 120 12"><rect width="%s" height="12" rx="2" fill="#59a14f"/></svg>',
                                           round((120 * s.spend / nullif(s.top_spend, 0))::numeric, 1))),
                             '' ORDER BY s.pos),
                  CASE WHEN max(s.n_models) > 10
                       THEN format('<p class="note">The 10 largest of %s models.</p>', max(s.n_models))
                       ELSE '' END)
      INTO models_html
      FROM shown s;

    ----------------------------------------------------------------------
    -- Budgets: burn-down in the current period, forecast to its reset
    ----------------------------------------------------------------------
    IF NOT has_table_privilege('llmgw.budget_status', 'SELECT') THEN
        budget_cards := '<p class="note">Budgets are shown to llmgw_finance and llmgw_admin.</p>';
    ELSE
        FOR b IN
            SELECT s.id, s.name, s.scope, s.target, s.period, s.enforcement, s.currency,
                   s.limit_amount, s.spent, s.reserved, s.period_start, s.resets_at,
                   bd.key_id, bd.team_id, bd.role_name, bd.model, bd.created_at
              FROM llmgw.budget_status s
              JOIN llmgw.budgets bd ON bd.id = s.id
             WHERE tid IS NULL
                OR (bd.scope = 'team' AND bd.team_id = tid)
                OR (bd.scope = 'key' AND bd.key_id IN (SELECT k.lineage_id FROM llmgw.keys k
                                                         WHERE k.team = team_name))
             ORDER BY s.name, s.id
        LOOP
            n_budgets := n_budgets + 1;
            CONTINUE WHEN n_budgets > 50;
            periodic := b.period <> 'total';
            lim := b.limit_amount;
            b_spent := b.spent;
            forecast := NULL;
            runs_out := NULL;
            -- its spend per day, as llmgw.budget_spent counts it
            SELECT min(x.day), jsonb_agg(jsonb_build_object('day', x.day, 'cost', x.cost))
              INTO first_spend, b_days
              FROM (SELECT d.day, sum(d.cost) AS cost
                      FROM llmgw.usage_daily d
                     WHERE d.currency = b.currency
                       AND d.day >= (b.period_start AT TIME ZONE 'UTC')::date
                       AND CASE b.scope
                             WHEN 'key' THEN d.key_id IN (SELECT k.id FROM llmgw.keys k
                                                           WHERE k.lineage_id = b.key_id)
                             WHEN 'team' THEN d.team_id = b.team_id
                             WHEN 'role' THEN d.role_name = b.role_name
                             WHEN 'model' THEN d.model = b.model
                             ELSE true END
                     GROUP BY d.day) x;
            IF periodic THEN
                -- linear run-rate of the period so far, to the reset
                x0 := b.period_start;
                x1 := b.resets_at;
                elapsed := greatest(extract(epoch FROM now() - x0), 1);
                forecast := round(b_spent * extract(epoch FROM x1 - x0) / elapsed, 6);
                IF b_spent < lim AND forecast > lim THEN
                    runs_out := x0 + make_interval(secs => (elapsed * lim / b_spent)::float8);
                END IF;
            ELSE
                x0 := least(b.created_at, first_spend::timestamp AT TIME ZONE 'UTC');
                x1 := now();
            END IF;
            IF x1 < x0 + interval '1 hour' THEN
                x0 := x1 - interval '1 hour';
            END IF;
            e0 := extract(epoch FROM x0);
            e1 := extract(epoch FROM x1);
            -- remaining from the limit down to below 0 (at most as far again)
            y_top := greatest(lim, 0);
            y_low := greatest(least(0, lim - greatest(b_spent, coalesce(forecast, 0))),
                              -greatest(lim, b_spent));
            IF y_low < 0 THEN
                y_low := y_low - (y_top - y_low) * 0.05;
            END IF;
            IF y_top = y_low THEN
                y_top := 1;
            END IF;
            -- the forecast line ends at the reset, or where it leaves the chart
            f_end := x1;
            f_val := lim - coalesce(forecast, 0);
            IF periodic AND f_val < y_low AND b_spent > 0 THEN
                f_end := now() + make_interval(secs => ((lim - b_spent - y_low) * elapsed / b_spent)::float8);
                f_val := y_low;
            END IF;
            b_state := CASE WHEN b_spent >= lim AND (lim > 0 OR b_spent > 0) THEN 'over'
                            WHEN forecast > lim THEN 'warn' ELSE 'ok' END;

            SELECT string_agg(format('%s,%s %s,%s',
                       round(bl + (extract(epoch FROM greatest(c.ds, x0)) - e0) / (e1 - e0) * bpw, 1),
                       round(bt + (y_top - (lim - c.before)) / (y_top - y_low) * bph, 1),
                       round(bl + (extract(epoch FROM least(c.de, now())) - e0) / (e1 - e0) * bpw, 1),
                       round(bt + (y_top - (lim - c.after)) / (y_top - y_low) * bph, 1)),
                       ' ' ORDER BY c.day)
              INTO pts
              FROM (SELECT v.day, v.day::timestamp AT TIME ZONE 'UTC' AS ds,
                           (v.day + 1)::timestamp AT TIME ZONE 'UTC' AS de,
                           coalesce(sum(v.cost) OVER (ORDER BY v.day ROWS BETWEEN UNBOUNDED PRECEDING
                                                                     AND 1 PRECEDING), 0) AS before,
                           sum(v.cost) OVER (ORDER BY v.day) AS after
                      FROM jsonb_to_recordset(b_days) AS v(day date, cost numeric)) c;
            -- x and y of now, of the limit, of 0
            nx := round(bl + (extract(epoch FROM now()) - e0) / (e1 - e0) * bpw, 1);
            ly := round(bt + (y_top - lim) / (y_top - y_low) * bph, 1);
            zy := round(bt + y_top / (y_top - y_low) * bph, 1);

            budget_cards := budget_cards || format(
                '<div class="budget %s" data-budget="%s" data-spent="%s" data-limit="%s" data-forecast="%s">'
                '<h3>%s</h3><p class="tag">%s%s · %s · %s</p>'
                '<svg class="meter" viewBox="0 0 300 8"><rect width="300" height="8" rx="4" fill="#e4e7eb"/>'
                '<rect width="%s" height="8" rx="4" class="fill"/></svg>',
                b_state, llmgw.html_escape(b.name), b_spent, lim, coalesce(forecast::text, ''),
                llmgw.html_escape(b.name), b.scope,
                coalesce(' ' || llmgw.html_escape(b.target), ''), b.period, b.enforcement,
                round(300 * least(b_spent / nullif(lim, 0), 1), 1))
              || format('<svg class="burn" viewBox="0 0 %s %s" role="img" aria-label="Remaining of budget %s">',
                        bl + bpw + 12, bt + bph + 22, llmgw.html_escape(b.name))
              || CASE WHEN y_low < 0
                      THEN format('<rect class="overrun" x="%s" y="%s" width="%s" height="%s"/>',
                                  bl, zy, bpw, round(bt + bph - zy, 1))
                      ELSE '' END
              || format('<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/><text x="%s" y="%s" text-anchor="end">%s</text>',
                        bl, bl + bpw, ly, ly, bl - 6, ly + 4, llmgw.format_amount(lim))
              || format('<line class="zero" x1="%s" x2="%s" y1="%s" y2="%s"/><text x="%s" y="%s" text-anchor="end">0</text>',
                        bl, bl + bpw, zy, zy, bl - 6, zy + 4)
              || CASE WHEN periodic
                      THEN format('<line class="ideal" x1="%s" y1="%s" x2="%s" y2="%s"><title>an even pace to the reset</title></line>'
                                  '<line class="now" x1="%s" x2="%s" y1="%s" y2="%s"/>',
                                  bl, ly, bl + bpw, zy, nx, nx, bt, bt + bph)
                      ELSE '' END
              || format('<polyline class="remaining" points="%s"><title>remaining: %s %s</title></polyline>',
                        concat_ws(' ', bl || ',' || ly, pts, nx || ',' ||
                                  round(bt + (y_top - (lim - b_spent)) / (y_top - y_low) * bph, 1)),
                        llmgw.format_amount(lim - b_spent), llmgw.html_escape(b.currency))
              || CASE WHEN periodic
                      THEN format('<line class="forecast" x1="%s" y1="%s" x2="%s" y2="%s"><title>forecast at the reset: %s %s spent</title></line>',
                                  nx, round(bt + (y_top - (lim - b_spent)) / (y_top - y_low) * bph, 1),
                                  round(bl + (extract(epoch FROM f_end) - e0) / (e1 - e0) * bpw, 1),
                                  round(bt + (y_top - f_val) / (y_top - y_low) * bph, 1),
                                  llmgw.format_amount(forecast), llmgw.html_escape(b.currency))
                      ELSE '' END
              || CASE WHEN runs_out IS NOT NULL
                      THEN format('<circle class="runs-out" cx="%s" cy="%s" r="4"><title>runs out around %s</title></circle>',
                                  round(bl + (extract(epoch FROM runs_out) - e0) / (e1 - e0) * bpw, 1), zy,
                                  to_char(runs_out AT TIME ZONE 'UTC', 'Mon DD HH24:MI "UTC"'))
                      ELSE '' END
              || format('<text x="%s" y="%s">%s</text><text x="%s" y="%s" text-anchor="end">%s</text></svg>',
                        bl, bt + bph + 16, to_char(x0 AT TIME ZONE 'UTC', 'Mon DD'),
                        bl + bpw, bt + bph + 16,
                        CASE WHEN periodic THEN 'resets ' || to_char(x1 AT TIME ZONE 'UTC', 'Mon DD')
                             ELSE 'now' END)
              || format('<p>Spent <b class="spent">%s</b> of %s %s%s · reserved %s</p>',
                        llmgw.format_amount(b_spent), llmgw.format_amount(lim), llmgw.html_escape(b.currency),
                        CASE WHEN lim > 0 THEN ' (' || to_char(100 * b_spent / lim, 'FM999990.0') || '%)' ELSE '' END,
                        llmgw.format_amount(b.reserved))
              || CASE WHEN periodic
                      THEN format('<p>Forecast at the reset (%s): <b class="forecast-value">%s</b>%s%s</p>',
                                  to_char(x1 AT TIME ZONE 'UTC', 'Mon DD HH24:MI "UTC"'),
                                  llmgw.format_amount(forecast),
                                  CASE WHEN lim > 0 THEN ' (' || to_char(100 * forecast / lim, 'FM999990.0') || '%)' ELSE '' END,
                                  CASE WHEN runs_out IS NOT NULL
                                       THEN ' · runs out around ' || to_char(runs_out AT TIME ZONE 'UTC', 'Mon DD HH24:MI "UTC"')
                                       ELSE '' END
                                  -- a rate of a few hours says little about a month
                                  || CASE WHEN elapsed * 7 < extract(epoch FROM x1 - x0)
                                          THEN ' · early in the period: a rough forecast'
                                          ELSE '' END)
                      ELSE '<p>A total budget does not reset: no forecast.</p>' END
              || '</div>';
        END LOOP;
        IF n_budgets = 0 THEN
            budget_cards := '<p class="note">No budget applies.</p>';
        ELSE
            budget_cards := '<div class="budgets">' || budget_cards || '</div>'
                || CASE WHEN n_budgets > 50
                        THEN format('<p class="note">The first 50 of %s budgets, by name.</p>', n_budgets)
                        ELSE '' END;
        END IF;
    END IF;

    ----------------------------------------------------------------------
    -- Errors and fallbacks per day
    ----------------------------------------------------------------------
    WITH g AS (
        SELECT gs::date AS day
          FROM generate_series(first_day::timestamp, last_day::timestamp, '1 day') gs),
    r AS (
        SELECT d.day, sum(d.calls) AS n_calls, sum(d.errors) AS n_errors,
               coalesce(sum(d.cost) FILTER (WHERE d.currency = cur), 0) AS spend
          FROM llmgw.usage_daily d
         WHERE d.day BETWEEN first_day AND last_day AND (tid IS NULL OR d.team_id = tid)
         GROUP BY d.day),
    f AS (
        SELECT * FROM unnest(fb_days, fb_counts) AS f(day, n))
    SELECT jsonb_agg(jsonb_build_object('day', g.day, 'calls', coalesce(r.n_calls, 0),
                                        'errors', coalesce(r.n_errors, 0), 'fallbacks', coalesce(f.n, 0),
                                        'cost', coalesce(r.spend, 0)) ORDER BY g.day)
      INTO per_day
      FROM g LEFT JOIN r ON r.day = g.day LEFT JOIN f ON f.day = g.day;

    SELECT max(greatest(v.errors, v.fallbacks) * 100.0 / nullif(v.calls, 0)) INTO top_value
      FROM jsonb_to_recordset(per_day) AS v(calls bigint, errors bigint, fallbacks bigint);
    sc := llmgw.chart_scale(least(top_value, 100));

    errors_svg := format('<svg class="chart" id="errors-chart" viewBox="0 0 %s %s" role="img" aria-label="Error and fallback rates per day">',
                         cw, eh)
        || (SELECT string_agg(format('<line class="grid" x1="%s" x2="%s" y1="%s" y2="%s"/>'
                                     '<text x="%s" y="%s" text-anchor="end">%s%%</text>',
                                     ml, cw - mr, y, y, ml - 6, y + 4,
                                     trim_scale(round((k * sc.tick)::numeric, 2))), '' ORDER BY k)
              FROM generate_series(0, round(sc.axis_max / sc.tick)::int) AS k,
                   LATERAL (SELECT round((mt + (eh - mt - mb) * (1 - k * sc.tick / sc.axis_max))::numeric, 1) AS y) g)
        || (SELECT string_agg(format('<text x="%s" y="%s" text-anchor="middle">%s</text>',
                                     round((ml + (v.day - first_day) * step + step / 2)::numeric, 1),
                                     eh - mb + 18, to_char(v.day, 'Mon DD')), '' ORDER BY v.day)
              FROM jsonb_to_recordset(per_day) AS v(day date)
             WHERE (v.day - first_day) % every = 0)
        || coalesce((SELECT string_agg(
                   CASE WHEN v.errors > 0 THEN format(
                       '<rect class="error-bar" x="%s" y="%s" width="%s" height="%s" data-day="%s" data-errors="%s" data-calls="%s">'
                       '<title>%s: errors, %s of %s calls (%s%%)</title></rect>',
                       round((ml + (v.day - first_day) * step + step * 0.14)::numeric, 1),
                       round((mt + (eh - mt - mb) * (1 - least(v.errors * 100.0 / v.calls / sc.axis_max, 1)))::numeric, 1),
                       round(greatest(step * 0.36, 0.5)::numeric, 1),
                       round(greatest((eh - mt - mb) * least(v.errors * 100.0 / v.calls / sc.axis_max, 1), 0.5)::numeric, 1),
                       to_char(v.day, 'YYYY-MM-DD'), v.errors, v.calls, to_char(v.day, 'Mon DD'), v.errors, v.calls,
                       to_char(v.errors * 100.0 / v.calls, 'FM990.0')) ELSE '' END
                   || CASE WHEN v.fallbacks > 0 THEN format(
                       '<rect class="fallback-bar" x="%s" y="%s" width="%s" height="%s" data-day="%s" data-fallbacks="%s" data-calls="%s">'
                       '<title>%s: fallbacks, %s of %s calls (%s%%)</title></rect>',
                       round((ml + (v.day - first_day) * step + step * 0.5)::numeric, 1),
                       round((mt + (eh - mt - mb) * (1 - least(v.fallbacks * 100.0 / v.calls / sc.axis_max, 1)))::numeric, 1),
                       round(greatest(step * 0.36, 0.5)::numeric, 1),
                       round(greatest((eh - mt - mb) * least(v.fallbacks * 100.0 / v.calls / sc.axis_max, 1), 0.5)::numeric, 1),
                       to_char(v.day, 'YYYY-MM-DD'), v.fallbacks, v.calls, to_char(v.day, 'Mon DD'), v.fallbacks, v.calls,
                       to_char(v.fallbacks * 100.0 / v.calls, 'FM990.0')) ELSE '' END,
                   '' ORDER BY v.day)
              FROM jsonb_to_recordset(per_day) AS v(day date, calls bigint, errors bigint, fallbacks bigint)
             WHERE v.calls > 0 AND (v.errors > 0 OR v.fallbacks > 0)), '')
        || format('<line class="axis" x1="%s" x2="%s" y1="%s" y2="%s"/>', ml, cw - mr, eh - mb, eh - mb)
        || '</svg>';

    SELECT string_agg(format('<tr data-day="%s" data-calls="%s" data-errors="%s" data-fallbacks="%s" data-cost="%s">'
                             '<td>%s</td><td class="n">%s</td><td class="n">%s</td><td class="n">%s</td>'
                             '<td class="n">%s</td><td class="n">%s</td></tr>',
                             to_char(v.day, 'YYYY-MM-DD'), v.calls, v.errors, v.fallbacks, v.cost,
                             to_char(v.day, 'YYYY-MM-DD'),
                             to_char(v.calls, 'FM999,999,999,999,990'),
                             to_char(v.errors, 'FM999,999,999,999,990'),
                             to_char(v.fallbacks, 'FM999,999,999,999,990'),
                             CASE WHEN v.calls > 0 THEN to_char(v.errors * 100.0 / v.calls, 'FM990.0') || '%' ELSE '' END,
                             llmgw.format_amount(v.cost)),
                      '' ORDER BY v.day)
      INTO days_html
      FROM jsonb_to_recordset(per_day) AS v(day date, calls bigint, errors bigint, fallbacks bigint, cost numeric);

    css := 'body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;'
        || 'color:#1f2933;background:#f5f7fa;margin:0;padding:24px}'
        || 'main{max-width:1160px;margin:0 auto}'
        || 'h1{font-size:24px;margin:0 0 2px}h2{font-size:16px;margin:0 0 10px}h3{font-size:14px;margin:0}'
        || '.sub{color:#52606d;margin:0 0 16px}'
        || 'section{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:16px;margin:0 0 16px}'
        || 'section.kpis{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;background:none;border:0;padding:0}'
        || '.kpi{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:10px 12px}'
        || '.kpi b{display:block;font-size:22px;font-variant-numeric:tabular-nums}.kpi span{color:#52606d;font-size:12px}'
        || '.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}.two>section{margin:0}'
        || '.wrap{margin-bottom:16px}'
        || 'table{border-collapse:collapse;width:100%}'
        || 'th,td{padding:4px 6px;text-align:left;border-bottom:1px solid #eef0f2;font-size:13px;vertical-align:middle}'
        || 'th{color:#52606d;font-weight:600}.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}'
        || 'svg.chart{width:100%;height:auto;display:block}'
        || 'svg.bar{width:100%;min-width:60px;height:12px;display:block}'
        || 'svg text{font-size:11px;fill:#52606d}.grid{stroke:#e4e7eb}.axis{stroke:#9aa5b1}'
        || '.legend{list-style:none;padding:0;margin:10px 0 0;display:flex;flex-wrap:wrap;gap:4px 18px}'
        || '.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}'
        || '.error-bar{fill:#e15759}.fallback-bar{fill:#f28e2b}'
        || '.budgets{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}'
        || '.budget{border:1px solid #e4e7eb;border-radius:6px;padding:10px 12px}'
        || '.budget p{margin:4px 0;font-size:13px}.budget .tag{color:#52606d;font-size:12px}'
        || 'svg.meter{width:100%;height:8px;display:block;margin:6px 0}svg.burn{width:100%;height:auto;display:block}'
        || '.ok .fill{fill:#59a14f}.warn .fill{fill:#edc948}.over .fill{fill:#e15759}'
        || '.warn .forecast-value{color:#b7791f}.over .spent{color:#c53030}'
        || '.remaining{fill:none;stroke:#4e79a7;stroke-width:2}'
        || '.forecast{stroke:#f28e2b;stroke-width:2;stroke-dasharray:5 4}'
        || '.ideal{stroke:#9aa5b1;stroke-dasharray:2 3}.now{stroke:#cbd2d9}'
        || '.zero{stroke:#c53030;stroke-width:1}.overrun{fill:#fdecec}.runs-out{fill:#c53030}'
        || '.note,.empty{color:#52606d;font-size:12px}text.empty{font-size:14px}'
        || 'code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}'
        || 'details summary{cursor:pointer;color:#52606d;margin-top:16px}.sub-h{margin-top:16px}'
        || 'footer{color:#7b8794;font-size:12px;margin:8px 0 24px}'
        || '@media (max-width:800px){section.kpis{grid-template-columns:repeat(2,1fr)}.two{grid-template-columns:1fr}}'
        || '@media print{body{background:#fff;padding:0}section{break-inside:avoid}}';

    html := '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        -- nothing to run, nothing to fetch: inline styles only
        || '<meta http-equiv="Content-Security-Policy" content="default-src ''none''; style-src ''unsafe-inline''">'
        || '<meta name="viewport" content="width=device-width, initial-scale=1">'
        || format('<title>llmgw spend %s to %s, %s</title>', to_char(first_day, 'YYYY-MM-DD'),
                  to_char(last_day, 'YYYY-MM-DD'), scope_label)
        || '<style>' || css || '</style></head><body><main>'
        || format('<header><h1>LLM spend</h1><p class="sub" id="scope" data-from="%s" data-to="%s" data-team="%s" data-currency="%s">'
                  '%s to %s (UTC days) · %s · amounts in %s · generated %s</p></header>',
                  to_char(first_day, 'YYYY-MM-DD'), to_char(last_day, 'YYYY-MM-DD'),
                  coalesce(llmgw.html_escape(team_name), ''),
                  coalesce(llmgw.html_escape(cur), ''),
                  to_char(first_day, 'Mon DD, YYYY'), to_char(last_day, 'Mon DD, YYYY'), scope_label,
                  coalesce(llmgw.html_escape(cur), 'no currency: nothing was priced'),
                  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'))
        || kpis
        || CASE WHEN other_currencies IS NOT NULL
                THEN format('<p class="note" id="other-currencies">Also spent in other currencies, not drawn: %s.</p>',
                            other_currencies)
                ELSE '' END
        || format('<section id="daily"><h2>Spend per day, by %s</h2>', CASE WHEN by_team THEN 'team' ELSE 'model' END)
        || daily_svg
        || '<ul class="legend">' || coalesce(legend, '') || '</ul></section>'
        || '<div class="two wrap"><section id="keys"><h2>Top keys</h2>'
        || coalesce(keys_html, '<p class="empty">No calls in this period.</p>')
        || '</section><section id="models"><h2>Top models</h2>'
        || coalesce(models_html, '<p class="empty">No calls in this period.</p>')
        || '</section></div>'
        || '<section id="budgets"><h2>Budgets in their current period</h2>' || budget_cards
        || '<p class="note">Remaining amount from the period''s start to now (blue), at an even pace (dotted), '
           'and forecast to the reset at the period''s run-rate so far (dashed); below 0 the budget is spent.</p>'
        || '</section>'
        || '<section id="errors"><h2>Errors and fallbacks per day</h2>' || errors_svg
        || '<ul class="legend"><li><span class="sw" style="background:#e15759"></span>errors: usage rows not ok, in % of calls</li>'
           '<li><span class="sw" style="background:#f28e2b"></span>fallbacks: attempts on another deployment after a failure, in % of calls</li></ul>'
        || '<div class="two"><div><h3 class="sub-h">Errors by class</h3>'
        || CASE WHEN class_rows IS NULL THEN '<p class="empty">No errors in this period.</p>'
                ELSE '<table id="error-classes"><thead><tr><th>Class</th><th class="n">Rows</th><th class="n">Share</th></tr></thead><tbody>'
                     || class_rows || '</tbody></table>' END
        || '</div><div><details><summary>Every day in figures</summary>'
        || '<table id="days"><thead><tr><th>Day</th><th class="n">Calls</th><th class="n">Errors</th>'
           '<th class="n">Fallbacks</th><th class="n">Error rate</th><th class="n">Spend</th></tr></thead><tbody>'
        || coalesce(days_html, '') || '</tbody></table></details></div></div></section>'
        || '<footer>From llmgw.usage_daily (spend, calls, errors) and llmgw.usage (fallbacks, error classes); '
           'budgets from llmgw.budget_status. Calls are usage rows: provider attempts and cache hits. '
           'What a reader sees follows its row-level security.</footer>'
        || '</main></body></html>';
    RETURN html;
END
$fn$;

REVOKE ALL ON FUNCTION llmgw.html_escape(text), llmgw.format_amount(numeric),
    llmgw.chart_scale(double precision), llmgw.spend_report(timestamptz, timestamptz, text)
    FROM PUBLIC;
-- the page runs with its reader's rights, helpers included
GRANT EXECUTE ON FUNCTION llmgw.html_escape(text), llmgw.format_amount(numeric),
    llmgw.chart_scale(double precision), llmgw.spend_report(timestamptz, timestamptz, text)
    TO llmgw_admin, llmgw_finance, llmgw_user;

COMMENT ON FUNCTION llmgw.html_escape(text) IS 'Text made inert in HTML and SVG content and quoted attributes (& < > " and '' escaped)';
COMMENT ON FUNCTION llmgw.format_amount(numeric) IS 'An amount as the spend report shows it: two decimals from 1 up with thousands separators, up to six below 1';
COMMENT ON FUNCTION llmgw.chart_scale(double precision) IS 'The axis of a spend report chart: a round tick (1, 2 or 5 times a power of ten) and the axis maximum, a whole number of ticks';
COMMENT ON FUNCTION llmgw.spend_report(timestamptz, timestamptz, text) IS 'One self-contained HTML page (inline SVG, no script, nothing fetched) of the spend of a period: per day by team or model, top keys and models, budget burn-downs with a forecast, error and fallback rates';
-- ==== Prometheus metrics (docs/metrics.md) ====
--
-- llmgw.metrics() is the Prometheus text exposition format of everything
-- below; llmgw.metric_samples() the same samples as rows, which the queries
-- file of prometheus-postgres-exporter (docs/prometheus/llmgw-queries.yaml)
-- reads.  What the usage rows say is counted in llmgw.usage_totals, kept
-- as rows are written and never decreased, so the counters neither go back
-- when old partitions of llmgw.usage are dropped nor need a scan of them;
-- the rest comes from shared memory (since this server life began), the
-- deployments' health and llmgw.budget_status.

-- Every usage row ever written, summed by what the metrics group by; one
-- set of rows per worker (shard), like llmgw.usage_daily, but no day
CREATE TABLE llmgw.usage_totals (
    shard integer NOT NULL DEFAULT 0,
    team_id bigint,
    model text,
    provider text,
    upstream_model text,
    status text NOT NULL,
    error_class text,
    cache_hit boolean NOT NULL,
    fallback_from text,
    currency text,
    calls bigint NOT NULL,
    unpriced bigint NOT NULL,
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    reasoning_tokens bigint NOT NULL,
    cost numeric NOT NULL,
    UNIQUE NULLS NOT DISTINCT (team_id, model, provider, upstream_model, status, error_class,
                               cache_hit, fallback_from, currency, shard)
);
SELECT pg_catalog.pg_extension_config_dump('llmgw.usage_totals', '');

CREATE FUNCTION llmgw.usage_totals_rollup() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    -- ordered, so that concurrent writers lock total rows in one order
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
CREATE TRIGGER usage_totals AFTER INSERT ON llmgw.usage
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION llmgw.usage_totals_rollup();

-- The usage rows already there (an update from 0.2; none in a new install).
-- The trigger's lock keeps new rows out until this commits, and they are
-- counted by the trigger then.
INSERT INTO llmgw.usage_totals (shard, team_id, model, provider, upstream_model, status,
    error_class, cache_hit, fallback_from, currency, calls, unpriced, input_tokens,
    output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost)
SELECT 0, u.team_id, u.model, u.provider, u.upstream_model, u.status, u.error_class,
       u.cache_hit, u.fallback_from, u.currency, count(*), count(*) FILTER (WHERE u.unpriced),
       coalesce(sum(u.input_tokens), 0), coalesce(sum(u.output_tokens), 0),
       coalesce(sum(u.cached_input_tokens), 0), coalesce(sum(u.cache_write_tokens), 0),
       coalesce(sum(u.reasoning_tokens), 0), coalesce(sum(u.cost), 0)
  FROM llmgw.usage u
 GROUP BY 2, 3, 4, 5, 6, 7, 8, 9, 10;

-- The metrics kept in shared memory since this server life began: the
-- queue, the workers, the fair share and the refused calls
CREATE FUNCTION llmgw.gateway_counters(OUT metric text, OUT labels text[],
                                       OUT value double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_gateway_counters'
LANGUAGE C STRICT VOLATILE;

-- The latency histogram of each deployment since the server started, in
-- Prometheus's terms
CREATE FUNCTION llmgw.deployment_latency(OUT deployment_id bigint,
                                         OUT le double precision[], OUT buckets bigint[],
                                         OUT sum_seconds double precision, OUT count bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_deployment_latency'
LANGUAGE C STRICT VOLATILE;

-- The metric families: name, Prometheus type and help, in the order
-- llmgw.metrics() shows them
CREATE FUNCTION llmgw.metric_families(OUT family text, OUT type text, OUT help text)
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

-- Every sample of the metric families asked for (all when NULL), in the
-- order llmgw.metrics() shows them.  SECURITY DEFINER: it reads the usage
-- totals, deployments and budgets of every team; only llmgw_admin and
-- llmgw_finance may call it.
CREATE FUNCTION llmgw.metric_samples(families text[] DEFAULT NULL)
RETURNS TABLE (family text, metric text, labels jsonb, value double precision)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $fn$
#variable_conflict use_column
DECLARE
    wanted text[] := metric_samples.families;
    unknown text;
BEGIN
    SELECT w INTO unknown FROM unnest(wanted) w
     WHERE w IS NULL OR w NOT IN (SELECT f.family FROM llmgw.metric_families() f) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown metric family "%"', coalesce(unknown, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'llmgw.metric_families() lists the families.';
    END IF;

    -- from the usage totals
    IF wanted IS NULL OR 'llmgw_calls_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_calls_total', 'llmgw_calls_total',
               jsonb_build_object('model', coalesce(t.model, ''),
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, ''),
                                  'status', t.status, 'error_class', coalesce(t.error_class, '')),
               sum(t.calls)::double precision
          FROM llmgw.usage_totals t
         GROUP BY t.model, t.provider, t.upstream_model, t.status, t.error_class
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_tokens_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_tokens_total', 'llmgw_tokens_total',
               jsonb_build_object('model', coalesce(t.model, ''),
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, ''),
                                  'bucket', b.bucket),
               sum(b.tokens)::double precision
          FROM llmgw.usage_totals t
         CROSS JOIN LATERAL (VALUES ('input', t.input_tokens), ('output', t.output_tokens),
                                    ('cached_input', t.cached_input_tokens),
                                    ('cache_write', t.cache_write_tokens),
                                    ('reasoning', t.reasoning_tokens)) b(bucket, tokens)
         WHERE NOT t.cache_hit
         GROUP BY t.model, t.provider, t.upstream_model, b.bucket
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_cost_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_cost_total', 'llmgw_cost_total',
               jsonb_build_object('team', coalesce(tm.name, '#' || t.team_id, ''),
                                  'model', coalesce(t.model, ''), 'currency', t.currency),
               sum(t.cost)::double precision
          FROM llmgw.usage_totals t
          LEFT JOIN llmgw.teams tm ON tm.id = t.team_id
         WHERE t.currency IS NOT NULL
         GROUP BY coalesce(tm.name, '#' || t.team_id, ''), t.model, t.currency
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_unpriced_calls_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_unpriced_calls_total', 'llmgw_unpriced_calls_total',
               jsonb_build_object('model', coalesce(t.model, ''),
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, '')),
               sum(t.unpriced)::double precision
          FROM llmgw.usage_totals t
         GROUP BY t.model, t.provider, t.upstream_model
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_cache_hits_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_cache_hits_total', 'llmgw_cache_hits_total',
               jsonb_build_object('model', coalesce(t.model, '')),
               (sum(t.calls) FILTER (WHERE t.cache_hit))::double precision
          FROM llmgw.usage_totals t
         GROUP BY t.model
        HAVING bool_or(t.cache_hit)
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_fallbacks_total' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_fallbacks_total', 'llmgw_fallbacks_total',
               jsonb_build_object('model', coalesce(t.model, ''), 'from', t.fallback_from,
                                  'provider', coalesce(t.provider, ''),
                                  'upstream_model', coalesce(t.upstream_model, '')),
               sum(t.calls)::double precision
          FROM llmgw.usage_totals t
         WHERE t.fallback_from IS NOT NULL
         GROUP BY t.model, t.fallback_from, t.provider, t.upstream_model
         ORDER BY 3;
    END IF;

    -- from the deployments' health in shared memory
    IF wanted IS NULL OR 'llmgw_latency_seconds' = ANY (wanted) THEN
        RETURN QUERY
        WITH h AS (
            SELECT jsonb_build_object('model', d.model, 'provider', d.provider,
                                      'upstream_model', d.upstream_model) AS labels,
                   l.le, l.buckets, l.sum_seconds, l.count
              FROM llmgw.deployment_latency() l
              JOIN llmgw.deployments d ON d.id = l.deployment_id)
        SELECT 'llmgw_latency_seconds', s.metric, s.labels, s.value
          FROM (SELECT h.labels AS key, 1 AS part, b.i AS i, 'llmgw_latency_seconds_bucket' AS metric,
                       h.labels || jsonb_build_object('le', b.le::text) AS labels,
                       h.buckets[b.i]::double precision AS value
                  FROM h CROSS JOIN LATERAL unnest(h.le) WITH ORDINALITY b(le, i)
                UNION ALL
                SELECT h.labels, 2, 0, 'llmgw_latency_seconds_bucket',
                       h.labels || '{"le": "+Inf"}', h.count::double precision FROM h
                UNION ALL
                SELECT h.labels, 3, 0, 'llmgw_latency_seconds_sum', h.labels, h.sum_seconds FROM h
                UNION ALL
                SELECT h.labels, 4, 0, 'llmgw_latency_seconds_count', h.labels,
                       h.count::double precision FROM h) s
         ORDER BY s.key, s.part, s.i;
    END IF;
    IF wanted IS NULL OR 'llmgw_deployment_in_flight' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_deployment_in_flight', 'llmgw_deployment_in_flight',
               jsonb_build_object('model', h.model, 'provider', h.provider,
                                  'upstream_model', h.upstream_model),
               h.in_flight::double precision
          FROM llmgw.deployment_health h
         ORDER BY 3;
    END IF;
    IF wanted IS NULL OR 'llmgw_deployment_cooling_down' = ANY (wanted) THEN
        RETURN QUERY
        SELECT 'llmgw_deployment_cooling_down', 'llmgw_deployment_cooling_down',
               jsonb_build_object('model', h.model, 'provider', h.provider,
                                  'upstream_model', h.upstream_model),
               CASE WHEN h.state = 'healthy' THEN 0 ELSE 1 END::double precision
          FROM llmgw.deployment_health h
         ORDER BY 3;
    END IF;

    -- from the queue, the workers, the fair share and the refusals
    RETURN QUERY
    SELECT c.metric, c.metric,
           coalesce((SELECT jsonb_object_agg(c.labels[2 * i - 1], c.labels[2 * i])
                       FROM generate_series(1, cardinality(c.labels) / 2) i), '{}'),
           c.value
      FROM llmgw.gateway_counters() WITH ORDINALITY c(metric, labels, value, n)
     WHERE wanted IS NULL OR c.metric = ANY (wanted)
     ORDER BY c.n;

    -- from the budgets: the spend of the ledger the workers enforce, not
    -- the rollups' (a scan of them per budget); none while the workers have
    -- not loaded the ledger
    IF wanted IS NULL OR wanted && '{llmgw_budget_limit,llmgw_budget_spent,llmgw_budget_reserved,llmgw_budget_remaining}' THEN
        RETURN QUERY
        WITH b AS (
            SELECT s.id, s.limit_amount, s.reserved, s.ledger_spent AS spent,
                   greatest(s.limit_amount - s.ledger_spent - s.reserved, 0) AS remaining,
                   jsonb_build_object('budget', s.name, 'scope', s.scope,
                                      'target', coalesce(s.target, ''), 'period', s.period,
                                      'enforcement', s.enforcement,
                                      'currency', s.currency) AS labels
              FROM llmgw.budget_status s)
        SELECT v.metric, v.metric, b.labels, v.value::double precision
          FROM b CROSS JOIN LATERAL (VALUES (1, 'llmgw_budget_limit', b.limit_amount),
                                            (2, 'llmgw_budget_spent', b.spent),
                                            (3, 'llmgw_budget_reserved', b.reserved),
                                            (4, 'llmgw_budget_remaining', b.remaining)) v(n, metric, value)
         WHERE (wanted IS NULL OR v.metric = ANY (wanted)) AND v.value IS NOT NULL
         ORDER BY v.n, b.id;
    END IF;
END
$fn$;

-- The Prometheus text exposition format (version 0.0.4) of every family
CREATE FUNCTION llmgw.metrics() RETURNS text
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET extra_float_digits = 1
AS $$
WITH s AS (
    SELECT s.family, s.metric, s.value, s.n,
           (SELECT '{' || string_agg(l.key || '="' ||
                                     replace(replace(replace(l.value, E'\\', E'\\\\'), '"', E'\\"'),
                                             E'\n', E'\\n') || '"', ','
                                     ORDER BY coalesce(array_position(
                                         '{reason,budget,scope,target,period,enforcement,team,model,provider,upstream_model,status,error_class,bucket,from,currency,worker,le}'::text[],
                                         l.key), 100), l.key) || '}'
              FROM jsonb_each_text(s.labels) l(key, value)) AS labels
      FROM llmgw.metric_samples() WITH ORDINALITY s(family, metric, labels, value, n))
SELECT string_agg(f.block, '' ORDER BY f.n)
  FROM (SELECT f.n,
               '# HELP ' || f.family || ' ' || replace(replace(f.help, E'\\', E'\\\\'), E'\n', E'\\n')
               || E'\n# TYPE ' || f.family || ' ' || f.type || E'\n'
               || coalesce(string_agg(s.metric || coalesce(s.labels, '') || ' ' ||
                                      CASE WHEN s.value IS NULL OR s.value = 'NaN' THEN 'NaN'
                                           WHEN s.value = 'Infinity' THEN '+Inf'
                                           WHEN s.value = '-Infinity' THEN '-Inf'
                                           ELSE s.value::text END || E'\n', '' ORDER BY s.n), '')
               AS block
          FROM llmgw.metric_families() WITH ORDINALITY f(family, type, help, n)
          LEFT JOIN s ON s.family = f.family
         GROUP BY f.n, f.family, f.type, f.help) f
$$;

REVOKE ALL ON llmgw.usage_totals FROM PUBLIC;
REVOKE ALL ON FUNCTION llmgw.usage_totals_rollup(), llmgw.gateway_counters(),
    llmgw.deployment_latency(), llmgw.metric_families(), llmgw.metric_samples(text[]),
    llmgw.metrics() FROM PUBLIC;
GRANT SELECT ON llmgw.usage_totals TO llmgw_admin, llmgw_finance;
GRANT EXECUTE ON FUNCTION llmgw.gateway_counters(), llmgw.deployment_latency(),
    llmgw.metric_families(), llmgw.metric_samples(text[]), llmgw.metrics()
    TO llmgw_admin, llmgw_finance;

COMMENT ON TABLE llmgw.usage_totals IS 'Every usage row ever written, summed by team, model, deployment, status, error class, cache hit, fallback and currency (per worker): the counters of llmgw.metrics(), which dropping partitions of llmgw.usage does not lower';
COMMENT ON COLUMN llmgw.usage_totals.shard IS 'The worker that wrote the row (from 1; 0: anything else), so that workers never wait for each other';
COMMENT ON COLUMN llmgw.usage_totals.team_id IS 'Team of the calls (NULL: no team)';
COMMENT ON COLUMN llmgw.usage_totals.model IS 'Model alias called';
COMMENT ON COLUMN llmgw.usage_totals.provider IS 'Provider of the deployment tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.usage_totals.upstream_model IS 'The provider''s model tried (NULL: cache hits)';
COMMENT ON COLUMN llmgw.usage_totals.status IS 'ok, error, cancelled or interrupted';
COMMENT ON COLUMN llmgw.usage_totals.error_class IS 'Error class of the rows (NULL: none)';
COMMENT ON COLUMN llmgw.usage_totals.cache_hit IS 'Rows answered from the response cache';
COMMENT ON COLUMN llmgw.usage_totals.fallback_from IS 'The deployment the call fell back from (NULL: none)';
COMMENT ON COLUMN llmgw.usage_totals.currency IS 'Currency of cost (NULL: rows without a price)';
COMMENT ON COLUMN llmgw.usage_totals.calls IS 'Usage rows: provider attempts and cache hits';
COMMENT ON COLUMN llmgw.usage_totals.unpriced IS 'Usage rows marked unpriced (cost NULL, not counted in cost)';
COMMENT ON COLUMN llmgw.usage_totals.input_tokens IS 'Sum of input_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.output_tokens IS 'Sum of output_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.cached_input_tokens IS 'Sum of cached_input_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.cache_write_tokens IS 'Sum of cache_write_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.reasoning_tokens IS 'Sum of reasoning_tokens, rows without a count adding 0';
COMMENT ON COLUMN llmgw.usage_totals.cost IS 'Sum of cost in currency units, rows without a cost adding 0';
COMMENT ON TRIGGER usage_totals ON llmgw.usage IS 'Adds each statement''s new usage rows to llmgw.usage_totals';
COMMENT ON FUNCTION llmgw.usage_totals_rollup() IS 'Trigger: add a statement''s new usage rows to llmgw.usage_totals';
COMMENT ON FUNCTION llmgw.gateway_counters() IS 'The metrics kept in shared memory since this server life began: queue, workers, fair share, refused calls (labels as name, value pairs)';
COMMENT ON FUNCTION llmgw.deployment_latency() IS 'The latency histogram of each deployment since the server started: bucket upper bounds in seconds, cumulative counts, sum and count';
COMMENT ON FUNCTION llmgw.metric_families() IS 'The families of llmgw.metrics(): name, Prometheus type and help';
COMMENT ON FUNCTION llmgw.metric_samples(text[]) IS 'Every sample of the metric families asked for (all when NULL), as rows: what the prometheus-postgres-exporter queries file reads';
COMMENT ON FUNCTION llmgw.metrics() IS 'All llmgw metrics in the Prometheus text exposition format';
-- ==== Forecasts and who is waiting (docs/money.md, docs/operations.md) ====

-- A budget's run-rate and when it runs out at that rate.  The rate is the
-- spend since `since` (the start of the period; for a total budget, its
-- first day of spend) per day, measured over at least a 24th of the period
-- (one day for a total budget), so that the first call of a period does not
-- forecast its end.  exhausts_at is NULL when the budget does not run out
-- before its period resets (for a total budget: within a century), or has
-- spent nothing; in the past when it has run out already.  The workers
-- raise a forecast alert with the same arithmetic.
CREATE FUNCTION llmgw.budget_projection(period text, limit_amount numeric, spent numeric,
                                        since timestamptz, at timestamptz,
                                        OUT run_rate numeric, OUT exhausts_at timestamptz,
                                        OUT projected_spent numeric)
RETURNS record
LANGUAGE sql STABLE STRICT PARALLEL SAFE
AS $$
SELECT CASE WHEN spent > 0 THEN pg_catalog.trim_scale(pg_catalog.round(spent * 86400 / w.span, 10))
            ELSE 0 END,
       CASE WHEN spent > 0
             AND (limit_amount - spent) * w.span / spent < coalesce(w.left_s, 3155760000)
            THEN at + pg_catalog.make_interval(
                          secs => ((limit_amount - spent) * w.span / spent)::float8) END,
       CASE WHEN w.left_s IS NULL THEN NULL
            WHEN spent > 0
            THEN pg_catalog.trim_scale(pg_catalog.round(
                     spent + spent * greatest(w.left_s, 0) / w.span, 10))
            ELSE spent END
  FROM (SELECT greatest(EXTRACT(epoch FROM at - since),
                                   CASE WHEN period = 'total' THEN 86400
                                        ELSE EXTRACT(epoch FROM llmgw.period_end(period, at)
                                                              - llmgw.period_start(period, at)) / 24
                                   END) AS span,
               CASE WHEN period <> 'total'
                    THEN EXTRACT(epoch FROM llmgw.period_end(period, at) - at)
               END AS left_s) w
$$;

-- A budget's spend, run-rate and forecast at a time, from the rollups
CREATE FUNCTION llmgw.budget_forecast(b llmgw.budgets, at timestamptz DEFAULT pg_catalog.now(),
                                      OUT spent numeric, OUT since timestamptz,
                                      OUT run_rate numeric, OUT exhausts_at timestamptz,
                                      OUT projected_spent numeric)
RETURNS record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT s.spent, s.since, p.run_rate, p.exhausts_at, p.projected_spent
  FROM (SELECT coalesce(sum(d.cost), 0) AS spent,
               CASE WHEN b.period = 'total'
                    THEN coalesce(min(d.day) FILTER (WHERE d.cost <> 0)::timestamp AT TIME ZONE 'UTC', at)
                    ELSE llmgw.period_start(b.period, at) END AS since
          FROM llmgw.usage_daily d
         WHERE d.currency = b.currency
           AND d.day >= (llmgw.period_start(b.period, at) AT TIME ZONE 'UTC')::date
           AND d.day <= (at AT TIME ZONE 'UTC')::date
           AND CASE b.scope
                 WHEN 'key' THEN d.key_id IN (SELECT k.id FROM llmgw.virtual_keys k
                                               WHERE k.lineage_id = b.key_id)
                 WHEN 'team' THEN d.team_id = b.team_id
                 WHEN 'role' THEN d.role_name = b.role_name
                 WHEN 'model' THEN d.model = b.model
                 ELSE true END) s
  CROSS JOIN LATERAL llmgw.budget_projection(b.period, b.limit_amount, s.spent, s.since, at) p
$$;

-- budget_status gains the forecast (columns appended: the view keeps its
-- grants and comments)
CREATE OR REPLACE VIEW llmgw.budget_status WITH (security_invoker = true) AS
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
       trim_scale(l.ledger_spent) AS ledger_spent,
       f.run_rate, f.exhausts_at, f.projected_spent
  FROM llmgw.budgets b
  LEFT JOIN llmgw.teams t ON t.id = b.team_id
  CROSS JOIN LATERAL (SELECT llmgw.budget_spent(b) AS spent) s
  LEFT JOIN llmgw.budget_ledger() l ON l.budget_id = b.id
  CROSS JOIN LATERAL llmgw.budget_forecast(b) f;

-- A third kind of alert: the budget will run out before it resets, at its
-- run-rate (once per budget and period, by the workers)
ALTER TABLE llmgw.alerts
    DROP CONSTRAINT alerts_kind_check,
    ADD CONSTRAINT alerts_kind_check
        CHECK (kind IN ('soft_limit_reached', 'hard_limit_reached', 'forecast_exhaustion')),
    ADD COLUMN run_rate numeric,
    ADD COLUMN exhausts_at timestamptz;

REVOKE ALL ON FUNCTION llmgw.budget_projection(text, numeric, numeric, timestamptz, timestamptz),
    llmgw.budget_forecast(llmgw.budgets, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.budget_projection(text, numeric, numeric, timestamptz, timestamptz),
    llmgw.budget_forecast(llmgw.budgets, timestamptz) TO llmgw_admin, llmgw_finance;

COMMENT ON FUNCTION llmgw.budget_projection(text, numeric, numeric, timestamptz, timestamptz) IS 'Run-rate per day of a spend since a time, when it reaches a limit, and the spend at the end of the period at that rate';
COMMENT ON FUNCTION llmgw.budget_forecast(llmgw.budgets, timestamptz) IS 'A budget''s spend, run-rate and forecast time of exhaustion at a time, from the rollups';
COMMENT ON VIEW llmgw.budget_status IS 'Each budget now: limit, spent this period, reserved by calls in flight, remaining, when it resets, its run-rate and when it runs out at that rate';
COMMENT ON TABLE llmgw.alerts IS 'A budget reaching its limit, or forecast to run out before it resets; each row is also sent as NOTIFY llmgw_alerts';
COMMENT ON COLUMN llmgw.budget_status.run_rate IS 'Spend per day over the current period so far (a total budget: since its first day of spend), measured over at least a 24th of the period, in currency units';
COMMENT ON COLUMN llmgw.budget_status.exhausts_at IS 'When the budget runs out at the run-rate (in the past: it has); NULL when it does not before it resets, or nothing was spent';
COMMENT ON COLUMN llmgw.budget_status.projected_spent IS 'Spend at the reset if the run-rate holds, in currency units (NULL: total)';
COMMENT ON COLUMN llmgw.alerts.budget_id IS 'The budget (NULL once the budget is dropped)';
COMMENT ON COLUMN llmgw.alerts.kind IS 'soft_limit_reached (the call went ahead), hard_limit_reached (calls are refused from now on) or forecast_exhaustion (it will run out before it resets at its run-rate)';
COMMENT ON COLUMN llmgw.alerts.period_start IS 'Start of the budget period of the alert (NULL: a total budget)';
COMMENT ON COLUMN llmgw.alerts.spent IS 'Spend of the period when the alert was raised, the charge that raised it included, in currency units';
COMMENT ON COLUMN llmgw.alerts.run_rate IS 'forecast_exhaustion: spend per day at which it runs out, in currency units (NULL: other kinds)';
COMMENT ON COLUMN llmgw.alerts.exhausts_at IS 'forecast_exhaustion: when it runs out at that rate, before its period resets (NULL: other kinds)';

-- Each call holding a request slot now (queued, running, being cancelled),
-- with the pid of the backend waiting for it.  The function filters: a role
-- that is not a member of llmgw_admin or llmgw_finance gets its own calls.
CREATE FUNCTION llmgw.call_slots(
    OUT request_id uuid, OUT state text, OUT caller text, OUT pid integer,
    OUT worker_pid integer, OUT role_name text, OUT model text,
    OUT submitted_at timestamptz, OUT age interval, OUT attempt integer,
    OUT attempt_started_at timestamptz, OUT deployment_id bigint, OUT provider text,
    OUT upstream_model text, OUT key_id bigint, OUT team_id bigint, OUT job_id bigint,
    OUT async_id bigint, OUT slot integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'llmgw_call_slots'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW llmgw.calls_now WITH (security_invoker = true) AS
SELECT c.request_id, c.state, c.caller, c.pid, c.worker_pid, c.role_name, c.team_id,
       t.name AS team, c.model, c.deployment_id, c.provider, c.upstream_model, c.attempt,
       c.submitted_at, c.attempt_started_at, c.age, c.key_id, k.prefix AS key_prefix,
       c.job_id, c.async_id, c.slot
  FROM llmgw.call_slots() c
  LEFT JOIN llmgw.teams t ON t.id = c.team_id
  LEFT JOIN llmgw.keys k ON k.id = c.key_id;

REVOKE ALL ON FUNCTION llmgw.call_slots() FROM PUBLIC;
-- the view reads the slots through this function, with the reader's rights
GRANT EXECUTE ON FUNCTION llmgw.call_slots() TO llmgw_admin, llmgw_finance, llmgw_user;
GRANT SELECT ON llmgw.calls_now TO llmgw_admin, llmgw_finance, llmgw_user;

COMMENT ON FUNCTION llmgw.call_slots() IS 'Every call holding a request slot (see the view llmgw.calls_now); a role that is not admin or finance gets its own';
COMMENT ON VIEW llmgw.calls_now IS 'Each call queued or running now, with the pid of its caller (join pg_stat_activity); admin and finance see all, others their own';
COMMENT ON COLUMN llmgw.calls_now.request_id IS 'The call (usage.request_id of its rows to come)';
COMMENT ON COLUMN llmgw.calls_now.state IS 'queued (no worker has taken it), running (a worker has it), or cancelling (its caller asked to abort it)';
COMMENT ON COLUMN llmgw.calls_now.caller IS 'sql (a session waits for it), async (llmgw.submit) or http (the front door)';
COMMENT ON COLUMN llmgw.calls_now.pid IS 'The backend waiting for it (pg_stat_activity.pid); NULL for async and http calls, whose caller is a worker';
COMMENT ON COLUMN llmgw.calls_now.worker_pid IS 'The llmgw worker running it (pg_stat_activity.pid; NULL: queued)';
COMMENT ON COLUMN llmgw.calls_now.role_name IS 'The role that made the call (NULL: a call of the front door)';
COMMENT ON COLUMN llmgw.calls_now.team_id IS 'The team of the call, once an attempt is sent (NULL: no team, or not sent yet)';
COMMENT ON COLUMN llmgw.calls_now.team IS 'The name of that team';
COMMENT ON COLUMN llmgw.calls_now.model IS 'The model alias called (cut to 63 bytes until an attempt is sent)';
COMMENT ON COLUMN llmgw.calls_now.deployment_id IS 'The deployment of the attempt sent (llmgw.deployments.id; NULL: none sent yet)';
COMMENT ON COLUMN llmgw.calls_now.provider IS 'The provider of that deployment';
COMMENT ON COLUMN llmgw.calls_now.upstream_model IS 'The provider''s model of that deployment';
COMMENT ON COLUMN llmgw.calls_now.attempt IS 'Number of the attempt sent last, from 1 (NULL: none sent yet)';
COMMENT ON COLUMN llmgw.calls_now.submitted_at IS 'When the call took its request slot (an asynchronous call: when a worker took it from llmgw.async_calls)';
COMMENT ON COLUMN llmgw.calls_now.attempt_started_at IS 'When the attempt sent last started';
COMMENT ON COLUMN llmgw.calls_now.age IS 'Time since submitted_at';
COMMENT ON COLUMN llmgw.calls_now.key_id IS 'The virtual key presented, once an attempt is sent (NULL: no key, or not sent yet)';
COMMENT ON COLUMN llmgw.calls_now.key_prefix IS 'The visible prefix of that key';
COMMENT ON COLUMN llmgw.calls_now.job_id IS 'The llmgw.jobs row the call works for (NULL: none)';
COMMENT ON COLUMN llmgw.calls_now.async_id IS 'The llmgw.async_calls row the call answers (NULL: none)';
COMMENT ON COLUMN llmgw.calls_now.slot IS 'The request slot it holds (calls_in_flight_now().slot)';

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

-- ==== OpenTelemetry spans (docs/tracing.md) ====

-- What the span export did since the server life began (shared memory)
CREATE FUNCTION llmgw.otel_stats(
    OUT enabled boolean,
    OUT spans_queued bigint,
    OUT spans_exporting bigint,
    OUT spans_exported bigint,
    OUT spans_dropped bigint,
    OUT spans_failed bigint,
    OUT exports bigint,
    OUT export_failures bigint)
AS 'MODULE_PATHNAME', 'llmgw_otel_stats'
LANGUAGE C STRICT VOLATILE;

REVOKE ALL ON FUNCTION llmgw.otel_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION llmgw.otel_stats() TO llmgw_admin, llmgw_finance;

COMMENT ON FUNCTION llmgw.otel_stats() IS 'OpenTelemetry span export since the server life began: whether a worker exports (llmgw.otel_endpoint), spans waiting in the workers and in exports in flight, exported, dropped (queue full or export turned off), failed (in exports that failed or that the collector rejected), exports and failed exports';
