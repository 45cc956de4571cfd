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
