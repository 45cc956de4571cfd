-- llmgw.tags is checked when it is set: only a JSON object that jsonb
-- accepts, of at most 4096 bytes, so that no session can hold a value that
-- the usage table would refuse.  Valid tags reach usage.tags.
SELECT llmgw.create_model('tg-demo', 'mock', 'tg-model');
SET llmgw.tags = '{"team": "tags", "n": 1}';

-- refused at SET time with 22023 and a DETAIL
SELECT v, try(format('SET llmgw.tags = %L', v))
  FROM unnest(ARRAY['{"x": "\u0000"}', '{"x": "a\u0000b"}', '[1]', 'x', '"a string"', '1',
                    'null', '{"a": 1', '{"a": 1} {"b": 2}', '{"a": "\uZZZZ"}', '{a: 1}']) v;
-- over 4096 bytes
SELECT regexp_replace(try(format('SET llmgw.tags = %L', '{"a": "' || repeat('x', 4088) || '"}')),
                      'x{10}x*', '<4088 x>') AS too_long;
-- a refused value leaves the setting as it was
SHOW llmgw.tags;
-- and so does set_config
SELECT try($$SELECT set_config('llmgw.tags', '[1]', false)$$);
SHOW llmgw.tags;
-- ALTER ROLE ... SET is checked too
CREATE ROLE regress_tags;
SELECT try($$ALTER ROLE regress_tags SET llmgw.tags = '{"x": "\u0000"}'$$);
SELECT count(*) AS role_settings FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
 WHERE r.rolname = 'regress_tags';
DROP ROLE regress_tags;

-- valid objects are recorded
SELECT llm_complete('tagged', 'tg-demo');
SET llmgw.tags = '{"city": "Z\u00fcrich", "nested": {"a": [1, 2]}}';
SELECT llm_complete('tagged again', 'tg-demo');
-- exactly 4096 bytes is allowed
SELECT octet_length(set_config('llmgw.tags', '{"a": "' || repeat('y', 4087) || '"}', false)) AS bytes;
SELECT llm_complete('big tags', 'tg-demo');
RESET llmgw.tags;
SELECT llm_complete('untagged', 'tg-demo');
SELECT status, CASE WHEN octet_length(tags::text) > 100
                    THEN 'a: ' || octet_length(tags ->> 'a') || ' bytes'
                    ELSE tags::text END AS tags
  FROM llmgw.usage WHERE model = 'tg-demo' ORDER BY id;

SELECT llmgw.drop_model('tg-demo');
