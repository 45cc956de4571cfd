-- Failure drill: an unknown key and a revoked key.  28000 before any
-- provider is called; the key is never repeated; no usage row.
SELECT llmgw.create_model('drill-key', 'mock', 'drill-key-model');
SELECT llmgw.create_team('drill-keys') > 0 AS team;
SELECT key_id AS k, api_key AS key FROM llmgw.create_key('drill-keys') \gset
SELECT llmgw.revoke_key(:k);
SELECT count(*) AS rows_before FROM llmgw.usage \gset
SET llmgw.api_key = 'lgw_not-a-key-of-this-gateway-at-all';
SELECT try($$SELECT llm_complete('x', 'drill-key')$$) AS unknown_key;
SET llmgw.api_key = :'key';
SELECT regexp_replace(try($$SELECT llm_complete('x', 'drill-key')$$), 'lgw_[0-9a-f]+', 'lgw_…')
       AS revoked_key;
RESET llmgw.api_key;
SELECT count(*) - :rows_before AS new_usage_rows FROM llmgw.usage;
\! perl test/scripts/mock_count.pl 'drill-key-model'
