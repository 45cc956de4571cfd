-- The escalations of docs/security.md, tried by a delegated llmgw_admin that
-- is not a superuser (and by others where said).  The test cluster lets any
-- admin use env:LLMGW_* and the files of $LLMGW_SECRET_DIR (lib.sh).
\getenv mock_url LLMGW_MOCK_URL
\getenv secret_dir LLMGW_SECRET_DIR
\getenv key_file LLMGW_KEY_FILE
\getenv test_key LLMGW_TEST_KEY
SELECT current_user AS su \gset
-- the same mock under another name: a new base URL that still reaches it
SELECT replace(:'mock_url', '//127.0.0.1:', '//localhost:') AS moved_url \gset
SELECT regexp_replace(:'secret_dir', '/[^/]+$', '') AS tmp_dir \gset

-- attempt(sql): the first column of the first row sql returns ('ok' when
-- none), or its SQLSTATE, message, detail and hint; the run's paths, mock
-- URL and provider key are replaced by names
CREATE TABLE atk_env AS
SELECT :'mock_url'::text AS mock_url, :'moved_url'::text AS moved_url,
       :'secret_dir'::text AS secret_dir, :'tmp_dir'::text AS tmp_dir, :'test_key'::text AS test_key;
GRANT SELECT ON atk_env TO PUBLIC;
CREATE FUNCTION attempt(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
    state text; msg text; detail text; hint text;
    e atk_env;
BEGIN
    SELECT * INTO e FROM atk_env;
    BEGIN
        IF sql ~* '^\s*(update|delete|insert|set|reset|alter)\M' AND sql !~* '\mreturning\M' THEN
            EXECUTE sql;
        ELSE
            EXECUTE sql INTO result;
        END IF;
        result := coalesce(nullif(result, ''), 'ok');
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
            detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
        result := state || ': ' || msg
            || CASE WHEN detail <> '' THEN E'\nDETAIL: ' || detail ELSE '' END
            || CASE WHEN hint <> '' THEN E'\nHINT: ' || hint ELSE '' END;
    END;
    result := replace(result, e.test_key, '<provider key>');
    result := replace(result, e.mock_url, '<mock>');
    result := replace(result, e.moved_url, '<moved mock>');
    result := replace(result, e.secret_dir, '<secret_dir>');
    RETURN replace(result, e.tmp_dir, '<tmp>');
END
$$;
CREATE ROLE regress_atk_admin LOGIN IN ROLE llmgw_admin;

------------------------------------------------------------------------------
-- Secret references: an admin reaches no file and no variable outside what
-- postgresql.conf allows, however it writes the provider row
------------------------------------------------------------------------------
SET ROLE regress_atk_admin;
SELECT attempt($$SELECT llmgw.create_provider('atk-passwd', 'openai_compatible',
    'http://127.0.0.1:9/v1', secret => 'file:/etc/passwd')$$) AS file_etc_passwd;
SELECT attempt($$SELECT llmgw.create_provider('atk-home', 'openai_compatible',
    'http://127.0.0.1:9/v1', secret => 'env:HOME')$$) AS env_home;
SELECT attempt($$INSERT INTO llmgw.providers (name, kind, base_url, secret_ref)
    VALUES ('atk-insert', 'openai_compatible', 'http://127.0.0.1:9/v1', 'env:HOME')$$) AS insert_env;
SELECT attempt($$INSERT INTO llmgw.providers (name, kind, base_url, secret_ref, secret_ref_trusted)
    VALUES ('atk-insert', 'openai_compatible', 'http://127.0.0.1:9/v1', 'file:/etc/passwd', true)$$)
    AS insert_claiming_trust;
SELECT llmgw.create_provider('atk-plain', 'openai_compatible', :'mock_url');
SELECT llmgw.create_model('atk-plain', 'atk-plain', 'atk-plain-model;echo_auth');
SELECT attempt($$UPDATE llmgw.providers SET secret_ref = 'file:/etc/hostname'
    WHERE name = 'atk-plain'$$) AS update_file;
SELECT attempt($$UPDATE llmgw.providers SET secret_ref = 'env:PGDATA', secret_ref_trusted = true
    WHERE name = 'atk-plain'$$) AS update_env_claiming_trust;
-- trust cannot be claimed: it stays false
UPDATE llmgw.providers SET secret_ref_trusted = true WHERE name = 'atk-plain';
SELECT name, secret_ref, secret_ref_trusted FROM llmgw.providers WHERE name = 'atk-plain';
-- near misses of the allowed prefix (LLMGW_) and directory
SELECT n, replace(replace(ref, :'secret_dir', '<secret_dir>'), :'tmp_dir', '<tmp>') AS ref,
       attempt(format($$SELECT llmgw.create_provider('atk-near-%s', 'openai_compatible',
                          'http://127.0.0.1:9/v1', secret => %L)$$, n, ref)) AS refused
  FROM unnest(ARRAY['env:LLMGW', 'env:llmgw_TEST_KEY', 'env:XLLMGW_TEST_KEY',
                    'file:' || :'secret_dir' || '/../provider.key',
                    'file:' || :'secret_dir' || '/./provider.key',
                    'file:' || :'secret_dir' || '//provider.key',
                    'file:' || :'secret_dir' || '/sub/../../provider.key',
                    'file:' || :'secret_dir' || '/..',
                    'file:' || :'secret_dir',
                    'file:' || :'secret_dir' || '_evil/provider.key',
                    'file:' || :'tmp_dir' || '/provider.key'])
       WITH ORDINALITY AS r(ref, n)
 ORDER BY n;
RESET ROLE;
SELECT count(*) AS providers_made FROM llmgw.providers WHERE name LIKE 'atk-near-%';

------------------------------------------------------------------------------
-- What postgresql.conf allows works for an admin, and the key reaches the
-- provider (the mock requires it; echo_auth answers with what it received).
-- Files of llmgw.secret_directory used by an admin (and symbolic links out
-- of it) are tried in test/t/015_secret_files.pl, each on a server of its
-- own: reading one crashes the worker (see there)
------------------------------------------------------------------------------
SET ROLE regress_atk_admin;
SELECT llmgw.create_provider('atk-env', 'openai_compatible', :'mock_url',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_model('atk-env', 'atk-env', 'mock-model;echo_auth');
SELECT attempt($$SELECT llm_complete('x', 'atk-env')$$) AS env_allowed;
SELECT secret_ref, secret_ref_trusted FROM llmgw.providers WHERE name = 'atk-env';
RESET ROLE;

-- A superuser may point a provider anywhere: the reference is trusted
SELECT llmgw.create_provider('atk-su-file', 'openai_compatible', :'mock_url',
                             secret => 'file:' || :'key_file');
SELECT llmgw.create_model('atk-su-file', 'atk-su-file', 'mock-model;echo_auth');
SELECT attempt($$SELECT llm_complete('x', 'atk-su-file')$$) AS superuser_file;

-- The upgrade path: a reference set before 0.2 (here: written with the
-- guard off) is not trusted until a superuser says so
ALTER TABLE llmgw.providers DISABLE TRIGGER providers_guard;
INSERT INTO llmgw.providers (name, kind, base_url, secret_ref)
VALUES ('atk-old', 'openai_compatible', :'mock_url', 'file:' || :'key_file');
ALTER TABLE llmgw.providers ENABLE TRIGGER providers_guard;
SELECT llmgw.create_model('atk-old', 'atk-old', 'mock-model;echo_auth');
SELECT attempt($$SELECT llm_complete('x', 'atk-old')$$) AS old_untrusted;
SET ROLE regress_atk_admin;
UPDATE llmgw.providers SET secret_ref_trusted = true WHERE name = 'atk-old';
RESET ROLE;
SELECT secret_ref_trusted AS after_admin_update FROM llmgw.providers WHERE name = 'atk-old';
UPDATE llmgw.providers SET secret_ref_trusted = true WHERE name = 'atk-old';
SELECT secret_ref_trusted AS after_superuser_update FROM llmgw.providers WHERE name = 'atk-old';
SELECT attempt($$SELECT llm_complete('x', 'atk-old')$$) AS old_trusted;
-- an admin's later change of something else keeps the trust; of the
-- reference, recomputes it
SET ROLE regress_atk_admin;
UPDATE llmgw.providers SET timeout_ms = 4000 WHERE name = 'atk-old';
SELECT secret_ref_trusted AS after_admin_timeout FROM llmgw.providers WHERE name = 'atk-old';
SELECT attempt($$UPDATE llmgw.providers SET secret_ref = 'file:/etc/hostname'
    WHERE name = 'atk-old'$$) AS admin_new_reference;
UPDATE llmgw.providers SET secret_ref = 'env:LLMGW_TEST_KEY' WHERE name = 'atk-old';
SELECT secret_ref, secret_ref_trusted FROM llmgw.providers WHERE name = 'atk-old';
RESET ROLE;

------------------------------------------------------------------------------
-- Control characters: a secret could inject HTTP headers
------------------------------------------------------------------------------
SET ROLE regress_atk_admin;
SELECT attempt($$SELECT llmgw.set_provider_secret('atk-plain', E'sk-ctl\nX-Injected: 1')$$)
    AS stored_newline;
SELECT attempt($$SELECT llmgw.create_provider('atk-ctl', 'openai_compatible',
    'http://127.0.0.1:9/v1', secret => E'sk-ctl\r\nX-Injected: 1')$$) AS created_crlf;
SELECT attempt($$SELECT llmgw.set_provider_secret('atk-plain', E'sk-ctl\tX')$$) AS stored_tab;
SELECT attempt($$SELECT llmgw.set_provider_secret('atk-plain', E'sk-ctl\x7f')$$) AS stored_del;
RESET ROLE;
SELECT count(*) AS ctl_providers FROM llmgw.providers WHERE name = 'atk-ctl';
-- a file with the key and a header line after it, trusted (a superuser's
-- reference), is not sent (an admin's: test/t/015_secret_files.pl)
\! printf '%s\nX-Injected: 1\n' "$LLMGW_TEST_KEY" >"$LLMGW_SECRET_DIR/../injected.key"
SELECT llmgw.create_provider('atk-inject-su', 'openai_compatible', :'mock_url',
                             secret => 'file:' || :'tmp_dir' || '/injected.key');
SELECT llmgw.create_model('atk-inject-su', 'atk-inject-su', 'atk-inject-su;echo_auth');
SELECT attempt($$SELECT llm_complete('x', 'atk-inject-su')$$) AS trusted_file_with_header;
-- a stored secret written around set_provider_secret()
SELECT llmgw.create_provider('atk-inject-stored', 'openai_compatible', :'mock_url');
INSERT INTO llmgw.provider_secrets VALUES ('atk-inject-stored', :'test_key' || E'\r\nX-Injected: 1');
UPDATE llmgw.providers SET secret_ref = 'stored' WHERE name = 'atk-inject-stored';
SELECT llmgw.create_model('atk-inject-stored', 'atk-inject-stored', 'atk-inject-stored;echo_auth');
SELECT attempt($$SELECT llm_complete('x', 'atk-inject-stored')$$) AS stored_with_header;
\! perl test/scripts/mock_count.pl 'atk-inject-su;echo_auth' 'atk-inject-stored;echo_auth'
-- what is sent otherwise: the key alone, on a provider of its own
SELECT attempt($$SELECT llm_complete('x', 'atk-su-file')$$) AS sent_otherwise;

------------------------------------------------------------------------------
-- A secret never follows a provider to another endpoint
------------------------------------------------------------------------------
-- a superuser's provider with a stored secret; the admin moves it
SELECT llmgw.create_provider('atk-moved', 'openai_compatible', :'mock_url', secret => :'test_key');
SELECT llmgw.create_model('atk-moved', 'atk-moved', 'mock-model;echo_auth');
SELECT attempt($$SELECT llm_complete('x', 'atk-moved')$$) AS before_move;
SET ROLE regress_atk_admin;
UPDATE llmgw.providers SET base_url = :'moved_url' WHERE name = 'atk-moved';
RESET ROLE;
SELECT count(*) AS stored_secrets FROM llmgw.provider_secrets WHERE provider = 'atk-moved';
SELECT secret_ref FROM llmgw.providers WHERE name = 'atk-moved';
SELECT attempt($$SELECT llm_complete('x', 'atk-moved')$$) AS after_move;
-- a new kind, the same
SELECT llmgw.create_provider('atk-kind', 'openai_compatible', :'mock_url',
                             secret => 'env:LLMGW_TEST_KEY');
SELECT llmgw.create_model('atk-kind', 'atk-kind', 'mock-model;echo_auth');
SET ROLE regress_atk_admin;
UPDATE llmgw.providers SET kind = 'openai' WHERE name = 'atk-kind';
RESET ROLE;
SELECT kind, secret_ref FROM llmgw.providers WHERE name = 'atk-kind';
SELECT attempt($$SELECT llm_complete('x', 'atk-kind')$$) AS after_kind;
-- moving it and giving it a new reference in one statement keeps the new one
SET ROLE regress_atk_admin;
UPDATE llmgw.providers SET base_url = :'mock_url', secret_ref = 'env:LLMGW_TEST_KEY'
 WHERE name = 'atk-moved';
RESET ROLE;
SELECT secret_ref FROM llmgw.providers WHERE name = 'atk-moved';
SELECT attempt($$SELECT llm_complete('x', 'atk-moved')$$) AS moved_with_new_reference;
-- repeating the old reference is no new one
SELECT llmgw.create_provider('atk-same', 'openai_compatible', :'mock_url', secret => :'test_key');
SELECT llmgw.create_model('atk-same', 'atk-same', 'mock-model;echo_auth');
SET ROLE regress_atk_admin;
UPDATE llmgw.providers SET base_url = :'moved_url', secret_ref = 'stored' WHERE name = 'atk-same';
RESET ROLE;
SELECT count(*) AS stored_secrets FROM llmgw.provider_secrets WHERE provider = 'atk-same';
SELECT attempt($$SELECT llm_complete('x', 'atk-same')$$) AS moved_with_same_reference;
-- in two statements: the reference dropped, then the provider moved and the
-- stored secret named again (the superuser's secret must not follow)
SELECT llmgw.create_provider('atk-two-step', 'openai_compatible', :'mock_url', secret => :'test_key');
SELECT llmgw.create_model('atk-two-step', 'atk-two-step', 'mock-model;echo_auth');
SET ROLE regress_atk_admin;
UPDATE llmgw.providers SET secret_ref = NULL WHERE name = 'atk-two-step';
UPDATE llmgw.providers SET base_url = :'moved_url', secret_ref = 'stored' WHERE name = 'atk-two-step';
RESET ROLE;
SELECT count(*) AS stored_secrets FROM llmgw.provider_secrets WHERE provider = 'atk-two-step';
SELECT attempt($$SELECT llm_complete('x', 'atk-two-step')$$) LIKE 'Bearer%' AS secret_followed;

------------------------------------------------------------------------------
-- No SSRF through base_url
------------------------------------------------------------------------------
SET ROLE regress_atk_admin;
SELECT url, attempt(format($$SELECT llmgw.create_provider('atk-ssrf-%s', 'openai_compatible', %L,
                                timeout_ms => 3000, connect_timeout_ms => 3000)$$, n, url))
  FROM unnest(ARRAY['http://169.254.169.254/v1', 'http://[fe80::1]/v1',
                    'http://[::ffff:169.254.169.254]/v1', 'http://metadata.google.internal/v1',
                    'http://100.100.100.200/latest', 'http://[fd00:ec2::254]/latest',
                    'https://METADATA.GOOGLE.INTERNAL:443/v1', 'http://metadata/computeMetadata',
                    'http://[::ffff:a9fe:a9fe]/v1', 'http://2852039166/v1',
                    'http://0xa9.0xfe.0xa9.0xfe/v1', 'http://169.254.169.254./v1',
                    'http://metadata.google.internal./v1'])
       WITH ORDINALITY AS u(url, n)
 ORDER BY n;
-- none got through; one that did is refused when a connection is opened
DO $$
BEGIN
    PERFORM llmgw.create_model(p.name, p.name, 'ssrf-model')
       FROM llmgw.providers p WHERE p.name LIKE 'atk-ssrf-%';
END
$$;
SELECT p.base_url, attempt(format('SELECT llm_complete(%L, %L)', 'x', p.name)) AS called
  FROM llmgw.providers p WHERE p.name LIKE 'atk-ssrf-%' ORDER BY p.name;
-- set directly, such a URL is refused when the workers load it
UPDATE llmgw.providers SET base_url = 'http://169.254.169.254/v1' WHERE name = 'atk-plain';
SELECT attempt($$SELECT llm_complete('x', 'atk-plain')$$) AS link_local_by_update;
UPDATE llmgw.providers SET base_url = 'http://[fe80::a9fe:a9fe]/v1' WHERE name = 'atk-plain';
SELECT attempt($$SELECT llm_complete('x', 'atk-plain')$$) AS link_local_v6_by_update;
RESET ROLE;
\! perl test/scripts/mock_count.pl 'atk-plain-model;echo_auth'

-- llmgw.allowed_hosts: the mock (127.0.0.1) is not listed, so calls to it
-- fail once the workers have reloaded their settings
ALTER SYSTEM SET llmgw.allowed_hosts = 'api.openai.com, .openai.azure.com';
SELECT pg_reload_conf();
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        BEGIN
            PERFORM llm_complete('x', 'demo');
        EXCEPTION WHEN SQLSTATE 'LG005' THEN
            RETURN;
        END;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RAISE NOTICE 'the workers did not refuse the mock within 5 s';
END
$$;
SELECT attempt($$SELECT llm_complete('x', 'demo')$$) AS not_listed;
SET ROLE regress_atk_admin;
SELECT replace(url, :'mock_url', '<mock>') AS url, attempt(format('SELECT llmgw.check_base_url(%L)', url))
  FROM unnest(ARRAY[:'mock_url', 'https://api.openai.com/v1', 'https://API.OPENAI.COM/v1',
                    'https://x.openai.azure.com/openai', 'https://evilopenai.azure.com/v1',
                    'https://openai.azure.com.evil.example/v1', 'https://api.openai.com.evil.example/v1'])
       WITH ORDINALITY AS u(url, n)
 ORDER BY n;
SELECT attempt(format($$SELECT llmgw.create_provider('atk-not-listed', 'openai_compatible', %L)$$,
                      :'mock_url')) AS create_not_listed;
RESET ROLE;
ALTER SYSTEM RESET llmgw.allowed_hosts;
SELECT pg_reload_conf();
DO $$
BEGIN
    FOR i IN 1 .. 100 LOOP
        BEGIN
            PERFORM llm_complete('x', 'demo');
            RETURN;
        EXCEPTION WHEN SQLSTATE 'LG005' THEN
            PERFORM pg_sleep(0.05);
        END;
    END LOOP;
    RAISE NOTICE 'the workers did not call the mock again within 5 s';
END
$$;
SELECT attempt($$SELECT llm_complete('x', 'demo')$$) LIKE 'Hello!%' AS listed_again;

------------------------------------------------------------------------------
-- Team bindings are explicit: a superuser is not bound to every team
------------------------------------------------------------------------------
SELECT llmgw.create_team('atk_team') AS atk_team \gset
CREATE ROLE regress_atk_x LOGIN IN ROLE llmgw_user;
CREATE ROLE regress_atk_member LOGIN IN ROLE regress_atk_x;
SELECT llmgw.bind_role('regress_atk_x', 'atk_team');
SELECT count(*) AS superuser_teams FROM llmgw.my_teams();
SELECT llm_chat('{"model": "demo", "messages": [{"role": "user", "content": "su"}]}')->>'id' AS su_req \gset
SELECT team_id IS NULL AS superuser_call_without_team, role_name = :'su' AS by_superuser
  FROM llmgw.usage WHERE request_id = :'su_req';
-- an explicit member of the bound role acts as its team
SET ROLE regress_atk_member;
SELECT array_agg(t) = ARRAY[:atk_team]::bigint[] AS member_teams FROM llmgw.my_teams() t;
SELECT llm_chat('{"model": "demo", "messages": [{"role": "user", "content": "member"}]}')->>'id' AS member_req \gset
RESET ROLE;
SELECT team_id = :atk_team AS member_call_with_team, role_name
  FROM llmgw.usage WHERE request_id = :'member_req';
-- a binding that names the superuser gives it the team
SELECT llmgw.bind_role(:'su', 'atk_team');
SELECT array_agg(t) = ARRAY[:atk_team]::bigint[] AS bound_superuser_teams FROM llmgw.my_teams() t;
SELECT llm_chat('{"model": "demo", "messages": [{"role": "user", "content": "su bound"}]}')->>'id' AS su_req \gset
SELECT team_id = :atk_team AS bound_superuser_call_with_team FROM llmgw.usage WHERE request_id = :'su_req';
SELECT llmgw.unbind_role(:'su');

------------------------------------------------------------------------------
-- The real caller: keys name the admin who made them
------------------------------------------------------------------------------
SET ROLE regress_atk_admin;
SELECT key_id AS adm_key FROM llmgw.create_key('atk_team', 'made by an admin') \gset
SELECT new_key_id AS adm_rotated FROM llmgw.rotate_key(:adm_key, grace => '0') \gset
RESET ROLE;
SELECT id = :adm_key AS first_key, created_by FROM llmgw.keys WHERE id IN (:adm_key, :adm_rotated) ORDER BY id;
SELECT key_id AS su_key FROM llmgw.create_key('atk_team', 'made by the superuser') \gset
SELECT created_by = :'su' AS superuser_key_names_superuser FROM llmgw.keys WHERE id = :su_key;
-- a role without llmgw_admin has no EXECUTE; granted it by mistake, the
-- function still checks who calls it (also a superuser acting as the role)
SET ROLE regress_atk_x;
SELECT attempt($$SELECT key_id FROM llmgw.create_key('atk_team')$$) AS user_creates_key;
RESET ROLE;
CREATE ROLE regress_atk_granted LOGIN;
GRANT USAGE ON SCHEMA llmgw TO regress_atk_granted;
GRANT EXECUTE ON FUNCTION llmgw.create_key(text, text, text[], timestamptz, integer, bigint),
                          llmgw.rotate_key(bigint, interval), llmgw.revoke_key(bigint)
   TO regress_atk_granted;
SET ROLE regress_atk_granted;
SELECT attempt($$SELECT key_id FROM llmgw.create_key('atk_team')$$) AS granted_creates_key;
SELECT attempt(format('SELECT new_key_id FROM llmgw.rotate_key(%s)', :adm_rotated)) AS granted_rotates_key;
SELECT attempt(format('SELECT llmgw.revoke_key(%s)', :adm_rotated)) AS granted_revokes_key;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION llmgw.create_key(text, text, text[], timestamptz, integer, bigint),
                           llmgw.rotate_key(bigint, interval), llmgw.revoke_key(bigint)
    FROM regress_atk_granted;
REVOKE USAGE ON SCHEMA llmgw FROM regress_atk_granted;
DROP ROLE regress_atk_granted;
SELECT count(*) AS keys_of_atk_team FROM llmgw.keys WHERE team = 'atk_team';

------------------------------------------------------------------------------
-- Keys required: a role binding alone cannot spend
------------------------------------------------------------------------------
CREATE ROLE regress_k LOGIN IN ROLE llmgw_user;
ALTER ROLE regress_k SET llmgw.require_key = on;
SELECT llmgw.bind_role('regress_k', 'atk_team');
SELECT api_key AS k_key FROM llmgw.create_key('atk_team', 'for regress_k') \gset
\c - regress_k
SHOW llmgw.require_key;
SELECT attempt($$SELECT llm_complete('no key', 'demo')$$) AS call_without_key;
SELECT attempt($$SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "no key"}]}')$$)
    AS submit_without_key;
SELECT attempt($$SET llmgw.require_key = off$$) AS set_off;
SELECT attempt($$SELECT set_config('llmgw.require_key', 'off', false)$$) AS set_config_off;
SELECT attempt($$ALTER ROLE regress_k SET llmgw.require_key = off$$) AS alter_role_off;
SELECT attempt($$RESET llmgw.require_key$$) AS reset_it;
SHOW llmgw.require_key;
-- an asynchronous call queued by hand presents no key either
SELECT attempt($$INSERT INTO llmgw.async_calls (model, request, max_retries, timeout_ms)
    VALUES ('demo', '{"model": "demo", "messages": [{"role": "user", "content": "by hand"}]}', 0, 0)
    RETURNING id$$) AS by_hand \gset
SELECT CASE WHEN :'by_hand' ~ '^[0-9]+$'
            THEN (SELECT w.status = 'error' AND w.sqlstate = '28000'
                    FROM llmgw.wait(substring(:'by_hand' FROM '^([0-9]+)$')::bigint, '10 s') w)
            ELSE :'by_hand' LIKE '28000:%' END AS by_hand_refused_without_key;
-- a key that is not one is refused; the key works
SELECT set_config('llmgw.api_key', 'lgw_not_a_key_of_this_gateway_000000', false) IS NOT NULL AS bad_key_set;
SELECT attempt($$SELECT llm_complete('bad key', 'demo')$$) AS call_with_bad_key;
SELECT set_config('llmgw.api_key', :'k_key', false) IS NOT NULL AS key_set;
SELECT llm_complete('with the key', 'demo');
\c - :su
SELECT count(*) AS regress_k_calls_without_key
  FROM llmgw.usage WHERE role_name = 'regress_k' AND key_id IS NULL;

------------------------------------------------------------------------------
-- Clean up: later tests list providers, models and teams
------------------------------------------------------------------------------
DO $$
BEGIN
    PERFORM llmgw.drop_model(alias) FROM llmgw.models WHERE alias LIKE 'atk-%';
    PERFORM llmgw.drop_provider(name) FROM llmgw.providers WHERE name LIKE 'atk-%';
END
$$;
DELETE FROM llmgw.async_calls WHERE owner = 'regress_k';
DELETE FROM llmgw.teams WHERE name = 'atk_team';
DROP ROLE regress_atk_admin, regress_atk_member, regress_atk_x, regress_k;
DROP FUNCTION attempt(text);
DROP TABLE atk_env;
