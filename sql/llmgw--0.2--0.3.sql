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
