-- Teams, virtual keys and who sees what.
SELECT llmgw.create_team('support') AS support \gset
SELECT llmgw.create_team('research', allowed_models => '{demo}') AS research \gset
SELECT llmgw.create_model('reserved', 'mock', 'mock-model');

SELECT key_id AS k1, api_key AS key1, prefix AS p1 FROM llmgw.create_key('support', 'first') \gset
SELECT left(:'key1', 4) AS scheme, length(:'key1') AS length, :'p1' = left(:'key1', 12) AS prefix;
-- only the hash is kept, and nobody but the owner reads it
SELECT count(*) FROM llmgw.virtual_keys WHERE hash = sha256(convert_to(:'key1', 'UTF8'));
SELECT name, team, state, prefix = :'p1' AS same_prefix FROM llmgw.keys WHERE id = :k1;

-- a call with the key is charged to the key and its team
SET llmgw.api_key = :'key1';
SELECT current_setting('llmgw.api_key') = :'p1' || '...' AS masked;
SELECT llm_complete('with a key', 'demo');
RESET llmgw.api_key;
SELECT key_id = :k1 AS by_key, team_id = :support AS by_team, status
  FROM llmgw.usage ORDER BY id DESC LIMIT 1;

-- keys limited to some models; teams too
SELECT api_key AS narrow FROM llmgw.create_key('support', 'narrow', allowed_models => '{reserved}') \gset
SET llmgw.api_key = :'narrow';
SELECT regexp_replace(try($$SELECT llm_complete('x', 'demo')$$), 'lgw_[0-9a-f]+', 'lgw_…') AS denied;
SELECT llm_complete('allowed', 'reserved');
SELECT api_key AS researcher FROM llmgw.create_key('research') \gset
SET llmgw.api_key = :'researcher';
SELECT try($$SELECT llm_complete('x', 'reserved')$$) AS team_denied;
RESET llmgw.api_key;

-- revoked, expired and unknown keys: 28000, and the key is never repeated
SELECT key_id AS k2, api_key AS key2 FROM llmgw.create_key('support', 'revoke me') \gset
SELECT llmgw.revoke_key(:k2);
SET llmgw.api_key = :'key2';
SELECT regexp_replace(try($$SELECT llm_complete('x', 'demo')$$), 'lgw_[0-9a-f]+', 'lgw_…') AS revoked;
SELECT api_key AS key3 FROM llmgw.create_key('support', expires_at => now() - interval '1 minute') \gset
SET llmgw.api_key = :'key3';
SELECT regexp_replace(regexp_replace(try($$SELECT llm_complete('x', 'demo')$$),
       'lgw_[0-9a-f]+', 'lgw_…'), 'at .*', 'at <time>') AS expired;
SET llmgw.api_key = 'lgw_0000000000000000000000000000000000000000';
SELECT try($$SELECT llm_complete('x', 'demo')$$) AS unknown;
RESET llmgw.api_key;

-- rotation: the new key works at once, the old one for the grace period
SELECT new_key_id AS k4, api_key AS key4 FROM llmgw.rotate_key(:k1, grace => '1 hour') \gset
SET llmgw.api_key = :'key4';
SELECT llm_complete('rotated', 'demo');
SET llmgw.api_key = :'key1';
SELECT llm_complete('old key in its grace period', 'demo');
RESET llmgw.api_key;
SELECT id = :k4 AS new, rotated_from = :k1 AS from_old, lineage_id = :k1 AS lineage, state
  FROM llmgw.keys WHERE id IN (:k1, :k4) ORDER BY id DESC;
SELECT new_key_id AS k5, api_key AS key5 FROM llmgw.rotate_key(:k4, grace => '0') \gset
SET llmgw.api_key = :'key4';
SELECT regexp_replace(regexp_replace(try($$SELECT llm_complete('x', 'demo')$$),
       'lgw_[0-9a-f]+', 'lgw_…'), 'at .*', 'at <time>') AS rotated_out;
RESET llmgw.api_key;
SELECT try(format('SELECT * FROM llmgw.rotate_key(%s)', :k2)) ~ '^42704: virtual key \d+ does not exist or is revoked$' AS revoked_cannot_rotate;

-- Row-level security from each role
CREATE ROLE regress_sam LOGIN IN ROLE llmgw_user;     -- support
CREATE ROLE regress_rita LOGIN IN ROLE llmgw_user;    -- research
CREATE ROLE regress_fin LOGIN IN ROLE llmgw_finance;
CREATE ROLE regress_ops LOGIN IN ROLE llmgw_admin;
SELECT llmgw.bind_role('regress_sam', 'support');
SELECT llmgw.bind_role('regress_rita', 'research');
GRANT EXECUTE ON FUNCTION try(text) TO PUBLIC;

SET ROLE regress_sam;
SELECT llm_complete('sam, as support', 'demo');
SELECT count(*) > 0 AS sam_sees_support, bool_and(team_id = :support) AS only_support
  FROM llmgw.usage;
SELECT try($$SELECT * FROM llmgw.virtual_keys$$) AS hashes;
SELECT count(*) > 0 AS sam_sees_team_keys, bool_and(team = 'support') AS only_support FROM llmgw.keys;
RESET ROLE;

SET ROLE regress_rita;
SELECT llm_complete('rita, as research', 'demo');
SELECT count(*) AS rita_rows, bool_and(team_id = :research) AS only_research FROM llmgw.usage;
SELECT count(*) AS rita_sees_support_spend FROM llmgw.spend_daily WHERE team = 'support';
SELECT try($$SELECT llm_complete('x', 'reserved')$$) AS rita_team_denied;
RESET ROLE;

SET ROLE regress_fin;
SELECT count(DISTINCT team_id) >= 2 AS finance_sees_all FROM llmgw.usage;
SELECT count(*) > 0 AS finance_reads_spend FROM llmgw.spend_by_team;
SELECT try($$SELECT llm_complete('x', 'demo')$$) AS finance_calls;
SELECT try($$SELECT * FROM llmgw.provider_secrets$$) AS finance_secrets;
SELECT try($$SELECT * FROM llmgw.virtual_keys$$) AS finance_hashes;
SELECT try($$SELECT * FROM llmgw.create_key('support')$$) AS finance_makes_keys;
RESET ROLE;

SET ROLE regress_ops;
SELECT count(*) > 0 AS admin_creates_keys FROM llmgw.create_key('support', 'by ops');
SELECT try($$SELECT * FROM llmgw.virtual_keys$$) AS admin_hashes;
SELECT try($$SELECT * FROM llmgw.provider_secrets$$) AS admin_secrets;
RESET ROLE;

SELECT llmgw.unbind_role('regress_sam');
SELECT llmgw.unbind_role('regress_rita');
DROP ROLE regress_sam, regress_rita, regress_fin, regress_ops;
