-- Who may do what: llmgw_user calls models and sees its own usage;
-- llmgw_admin configures; nobody but the owner reads secrets.
CREATE ROLE regress_alice LOGIN IN ROLE llmgw_user;
CREATE ROLE regress_bob LOGIN IN ROLE llmgw_user;
CREATE ROLE regress_nobody LOGIN;
CREATE ROLE regress_admin LOGIN IN ROLE llmgw_admin;
GRANT EXECUTE ON FUNCTION try(text) TO PUBLIC;

SET ROLE regress_alice;
SELECT llm_complete('from alice', 'demo');
SELECT role_name, model, status FROM llmgw.usage;   -- alice's own row only
SELECT try($$SELECT * FROM llmgw.providers$$);
SELECT try($$SELECT * FROM llmgw.provider_secrets$$);
SELECT try($$SELECT llmgw.create_provider('x', 'openai', 'https://x/v1')$$);
RESET ROLE;

SET ROLE regress_bob;
SELECT count(*) AS bob_sees FROM llmgw.usage;
RESET ROLE;

SET ROLE regress_nobody;
SELECT try($$SELECT llm_complete('x', 'demo')$$);
RESET ROLE;

SET ROLE regress_admin;
SELECT llmgw.create_provider('adminmade', 'openai_compatible', 'http://127.0.0.1:1/v1',
                             secret => 'sk-admin-secret');
SELECT name, secret_ref FROM llmgw.providers WHERE name = 'adminmade';
SELECT try($$SELECT * FROM llmgw.provider_secrets$$);
SELECT count(*) > 0 AS admin_sees_all FROM llmgw.usage WHERE role_name <> current_user;
SELECT llmgw.drop_provider('adminmade');
RESET ROLE;

DROP ROLE regress_alice, regress_bob, regress_nobody, regress_admin;
