-- The request log (docs/request_log.md): off by default; opted in per team,
-- key (and its rotations) or model; bodies redacted before anything is
-- stored and cut to llmgw.request_log_max_body (marked); one row per call,
-- joined to its last usage row; the row-level security of llmgw.usage;
-- daily partitions dropped beyond the retention.

-- The newest usage row of a model, and what the request log holds of it
CREATE FUNCTION rl_last(alias text)
RETURNS TABLE (status text, logged boolean, request text, response text,
               request_truncated boolean, response_truncated boolean, redacted boolean)
LANGUAGE sql AS $$
    SELECT u.status, l.request_id IS NOT NULL, l.request_body, l.response_body,
           l.request_truncated, l.response_truncated, l.redacted
      FROM (SELECT * FROM llmgw.usage WHERE model = alias ORDER BY id DESC LIMIT 1) u
      LEFT JOIN llmgw.request_log l USING (request_id, attempt, started_at)
$$;

SELECT llmgw.create_model('rl-model', 'mock', 'mock-model');
SELECT llmgw.create_model('rl-other', 'mock', 'mock-model');
SELECT llmgw.create_team('rl-team') > 0 AS team, llmgw.create_team('rl-other-team') > 0 AS other_team;
SELECT api_key AS team_key FROM llmgw.create_key('rl-team', 'rl team key') \gset
SELECT key_id AS logged_key_id, api_key AS logged_key
  FROM llmgw.create_key('rl-other-team', 'logged key') \gset
SELECT api_key AS quiet_key FROM llmgw.create_key('rl-other-team', 'quiet key') \gset
CREATE ROLE regress_rl_user LOGIN IN ROLE llmgw_user;       -- team rl-team
CREATE ROLE regress_rl_other LOGIN IN ROLE llmgw_user;      -- team rl-other-team
CREATE ROLE regress_rl_lone LOGIN IN ROLE llmgw_user;       -- no team
CREATE ROLE regress_rl_finance LOGIN IN ROLE llmgw_finance;
CREATE ROLE regress_rl_admin LOGIN IN ROLE llmgw_admin;
CREATE ROLE regress_rl_none LOGIN;
SELECT llmgw.bind_role('regress_rl_user', 'rl-team');
SELECT llmgw.bind_role('regress_rl_other', 'rl-other-team');
SHOW llmgw.request_log_max_body;
SHOW llmgw.request_log_retention;

-- Off by default: no rule, and calls leave nothing of their bodies
SELECT count(*) AS rules FROM llmgw.request_log_rules;
SELECT count(*) AS rows_before FROM llmgw.request_log \gset
SELECT llm_complete('off: write to jane.doe@example.com', 'rl-model');
SET llmgw.api_key = :'team_key';
SELECT llm_complete('off: a team call', 'rl-model');
RESET llmgw.api_key;
SELECT status, logged FROM rl_last('rl-model');
SELECT count(*) - :rows_before AS new_rows,
       count(*) FILTER (WHERE request_body LIKE '%off: %' OR response_body LIKE '%off: %') AS kept
  FROM llmgw.request_log;

-- Team scope, set by a delegated admin (twice: one rule)
SET ROLE regress_rl_admin;
SELECT llmgw.log_requests('team', 'rl-team');
SELECT llmgw.log_requests('team', 'rl-team');
RESET ROLE;
SELECT r.scope, t.name AS team, r.key_id, r.model, r.created_by
  FROM llmgw.request_log_rules r LEFT JOIN llmgw.teams t ON t.id = r.team_id;
-- by the team's key: an e-mail address and a card number in the prompt,
-- and in the answer (the mock echoes the prompt)
SET llmgw.api_key = :'team_key';
SELECT llm_complete('team: mail jane.doe@example.com, card 4111 1111 1111 1111', 'rl-model');
RESET llmgw.api_key;
SELECT * FROM rl_last('rl-model');
-- by a role bound to the team
SET ROLE regress_rl_user;
SELECT llm_complete('team by binding', 'rl-model');
RESET ROLE;
SELECT status, logged, response FROM rl_last('rl-model');
-- without a team (this superuser, no key): not logged
SELECT llm_complete('no team', 'rl-model');
SELECT status, logged FROM rl_last('rl-model');

-- Key scope: that key, and the keys rotated from it; not the team's other key
SELECT llmgw.log_requests('key', :'logged_key_id');
SET llmgw.api_key = :'logged_key';
SELECT llm_complete('by the logged key', 'rl-model');
RESET llmgw.api_key;
SELECT status, logged, response FROM rl_last('rl-model');
SET llmgw.api_key = :'quiet_key';
SELECT llm_complete('by the quiet key', 'rl-model');
RESET llmgw.api_key;
SELECT status, logged FROM rl_last('rl-model');
SELECT api_key AS rotated_key FROM llmgw.rotate_key(:logged_key_id) \gset
SET llmgw.api_key = :'rotated_key';
SELECT llm_complete('by the rotated key', 'rl-model');
RESET llmgw.api_key;
SELECT status, logged, response FROM rl_last('rl-model');

-- Model scope: any caller of that model, with or without a team
SELECT llmgw.log_requests('model', 'rl-other');
SELECT llm_complete('model scope', 'rl-other');
SELECT status, logged, response FROM rl_last('rl-other');
SET ROLE regress_rl_lone;
SELECT llm_complete('a lone call', 'rl-other');
RESET ROLE;
SELECT status, logged, response FROM rl_last('rl-other');
SELECT llm_complete('another model, no team', 'rl-model');
SELECT status, logged FROM rl_last('rl-model');
-- The workers write log rows straight into the day's partition, as COPY
-- does; a table someone gave a trigger gets them through an INSERT
-- statement, which fires it
CREATE TABLE rl_seen (request_id uuid, logged_at timestamptz);
CREATE FUNCTION rl_seen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.rl_seen VALUES (NEW.request_id, NEW.logged_at);
    RETURN NULL;
END $$;
CREATE TRIGGER rl_seen AFTER INSERT ON llmgw.request_log FOR EACH ROW EXECUTE FUNCTION rl_seen();
SELECT llm_complete('seen by a trigger', 'rl-other');
SELECT status, logged, response FROM rl_last('rl-other');
SELECT count(*) AS seen_by_the_trigger, bool_and(s.logged_at = l.logged_at) AS same_time
  FROM rl_seen s JOIN llmgw.request_log l USING (request_id);
DROP TRIGGER rl_seen ON llmgw.request_log;
SELECT llm_complete('no trigger again', 'rl-other');
SELECT status, logged, response FROM rl_last('rl-other');
SELECT count(*) AS still_seen FROM rl_seen;
DROP TABLE rl_seen;
DROP FUNCTION rl_seen();

-- Off again: the next calls are not logged
SELECT llmgw.log_requests('model', 'rl-other', false);
SELECT llmgw.log_requests('team', 'rl-team', enabled => false);
SELECT llm_complete('model scope off', 'rl-other');
SELECT status, logged FROM rl_last('rl-other');
SET llmgw.api_key = :'team_key';
SELECT llm_complete('team scope off', 'rl-model');
RESET llmgw.api_key;
SELECT status, logged FROM rl_last('rl-model');
SELECT llmgw.log_requests('team', 'rl-team');
SELECT r.scope, t.name AS team, r.key_id = :logged_key_id AS logged_key, r.model
  FROM llmgw.request_log_rules r LEFT JOIN llmgw.teams t ON t.id = r.team_id ORDER BY r.scope;

-- Bad targets, and who may set rules
SELECT try($$SELECT llmgw.log_requests('role', 'x')$$);
SELECT try($$SELECT llmgw.log_requests('team', 'no-such-team')$$);
SELECT try($$SELECT llmgw.log_requests('key', 'abc')$$);
SELECT try($$SELECT llmgw.log_requests('key', '999999999')$$);
SELECT try($$SELECT llmgw.log_requests('model', 'no-such-model')$$);
SELECT try($$SELECT llmgw.log_requests('team', NULL)$$);
SELECT try($$SELECT llmgw.log_requests('model', 'no-such-model', false)$$) AS removing_nothing;
SET ROLE regress_rl_user;
SELECT try($$SELECT llmgw.log_requests('team', 'rl-team', false)$$);
SELECT try($$DELETE FROM llmgw.request_log_rules$$);
SELECT try($$SELECT * FROM llmgw.redaction_rules$$);
SELECT try($$SELECT llmgw.redact('x')$$);
RESET ROLE;
SET ROLE regress_rl_finance;
SELECT count(*) AS rules_finance_sees FROM llmgw.request_log_rules;
SELECT try($$UPDATE llmgw.redaction_rules SET enabled = false$$);
SELECT try($$SELECT llmgw.log_requests('model', 'rl-model')$$);
RESET ROLE;

-- Redaction rules: the built-in ones, tried with llmgw.redact
SELECT name, replacement, enabled, builtin FROM llmgw.redaction_rules ORDER BY name;
SET ROLE regress_rl_admin;
SELECT llmgw.redact('jane.doe+tag@mail.example.co.uk wrote') AS email,
       llmgw.redact('4111-1111-1111-1111, 4111111111111 and 4111 1111 1111 1111 111') AS cards,
       llmgw.redact('order 123456789012 and 12345678901234567890 stay') AS not_cards,
       llmgw.redact('key lgw_0123456789abcdef0123 pasted') AS virtual_key,
       llmgw.redact(E'a JSON escape before it: \\n4111111111111111') AS after_escape;
-- The built-in rules are matched by scanners of their own (src/redaction.c),
-- not the regular expression engine: on crafted and generated bodies they
-- must give exactly what regexp_replace gives, rule after rule in name order
SELECT setseed(0.42);
CREATE TEMP TABLE redaction_bodies AS
SELECT b FROM unnest(ARRAY[
    '', '@', 'a@b', 'a@b.c', 'a@b.cd', 'a@b.cd1', 'a@b.c1d.ef', 'a@b..cd', 'a@.cd', '.@b.cd',
    'a@b@c.de', 'x@-.ab', 'a@b.c-d.efg-h', 'a.b@c.de.', 'a@b.cd.', 'é@b.cd', 'aé@b.cd', 'a@bé.cd',
    'mail: a+b%c_d@x-y.example.co.uk, b@c.de', '1234567890123', '123456789012', '12345678901234567890',
    '1234567890123456789', '1234 5678 9012 3456 7890 1234', '1-2-3-4-5-6-7-8-9-0-1-2-3',
    '1--2345678901234', '1 2345678901234', '12345678901234 ', 'x1234567890123x', '1234567890123@a.bc',
    'a@b.cd1234567890123', 'lgw_', 'lgw_0123456789abcde', 'lgw_0123456789abcdef', 'lgw_lgw_0123456789abcdefgh',
    'xlgw_0123456789abcdefé', 'lgw_0123456789abcdef@a.bc', '4111111111111111lgw_0123456789abcdef'
]) b
UNION ALL
SELECT string_agg((ARRAY['0', '1', '7', '9', ' ', '-', '@', '.', 'a', 'Z', 'q', 'é', '%', '+', '_',
                         'lgw_', 'ab', '12345', '.co', 'x@y', '4111 1111 1111 1111'])
                  [1 + floor(random() * 21)::int], '') AS b
FROM generate_series(1, 4000) i, generate_series(1, 1 + i % 30) j
GROUP BY i;
CREATE TEMP VIEW redaction_compared AS
SELECT b, llmgw.redact(b) AS scanned,
       regexp_replace(regexp_replace(regexp_replace(b,
           (SELECT pattern FROM llmgw.redaction_rules WHERE name = 'card'), '[card]', 'g'),
           (SELECT pattern FROM llmgw.redaction_rules WHERE name = 'email'), '[email]', 'g'),
           (SELECT pattern FROM llmgw.redaction_rules WHERE name = 'virtual_key'), '[virtual key]', 'g')
           AS engine
FROM redaction_bodies;
SELECT count(*) AS bodies, count(*) FILTER (WHERE scanned <> b) > 2000 AS most_redacted
FROM redaction_compared;
SELECT b, scanned, engine FROM redaction_compared WHERE scanned IS DISTINCT FROM engine LIMIT 5;
DROP VIEW redaction_compared;
DROP TABLE redaction_bodies;
-- a replacement with a backslash refers to the match: the engine does it
UPDATE llmgw.redaction_rules SET replacement = '<\&>' WHERE name = 'email';
SELECT llmgw.redact('write to jane@example.com') AS match_in_replacement;
UPDATE llmgw.redaction_rules SET replacement = '[email]' WHERE name = 'email';
-- an admin's own rule; a broken pattern, one matching nothing at all, and
-- built-in rules that would vanish are refused
INSERT INTO llmgw.redaction_rules (name, pattern, replacement) VALUES ('ticket', 'TICKET-[0-9]+', '[ticket]');
SELECT try($$INSERT INTO llmgw.redaction_rules (name, pattern) VALUES ('broken', '(unclosed')$$);
SELECT split_part(try($$INSERT INTO llmgw.redaction_rules (name, pattern) VALUES ('everything', 'x*')$$),
                  E'\n', 1) AS matching_empty;
SELECT try($$DELETE FROM llmgw.redaction_rules WHERE name = 'email'$$);
SELECT try($$UPDATE llmgw.redaction_rules SET name = 'mail' WHERE name = 'email'$$);
SELECT try($$UPDATE llmgw.redaction_rules SET builtin = false WHERE name = 'email'$$);
SELECT builtin AS still_builtin FROM llmgw.redaction_rules WHERE name = 'email';
-- disabled, a built-in rule redacts nothing
UPDATE llmgw.redaction_rules SET enabled = false WHERE name = 'email';
SELECT llmgw.redact('jane@example.com about TICKET-42');
UPDATE llmgw.redaction_rules SET enabled = true WHERE name = 'email';
-- a rule inserted under a built-in name replaces it (how a restore brings it back)
SELECT pattern AS email_pattern FROM llmgw.redaction_rules WHERE name = 'email' \gset
INSERT INTO llmgw.redaction_rules (name, pattern, replacement) VALUES ('email', '[a-z]+@example\.com', '[example mail]');
SELECT name, replacement, enabled, builtin FROM llmgw.redaction_rules WHERE name IN ('email', 'ticket') ORDER BY name;
SELECT llmgw.redact('jane@example.com, bob@example.org');
UPDATE llmgw.redaction_rules SET pattern = :'email_pattern', replacement = '[email]' WHERE name = 'email';
RESET ROLE;

-- A logged call's bodies, redacted before they were stored: request and
-- answer both
SET llmgw.api_key = :'team_key';
SELECT llm_complete('Card 5500-0000-0000-0004, mail ops@example.org, TICKET-7', 'rl-model');
RESET llmgw.api_key;
SELECT request, response, redacted FROM rl_last('rl-model');
SELECT count(*) AS raw_values_kept
  FROM llmgw.request_log
 WHERE concat(request_body, response_body) ~ '5500|ops@example|TICKET-7|jane\.doe|4111';

-- llm_chat (the normalised answer), an embedding, an error, a cache hit
SET llmgw.api_key = :'team_key';
SELECT llm_chat('{"model": "rl-model", "messages": [{"role": "user", "content": "chat with bob@example.com"}]}')
       ->'message'->>'content' AS answer;
SELECT status, request::jsonb->'messages'->0->>'content' AS request_content,
       response::jsonb->'message'->>'content' AS response_content,
       response::jsonb->'usage' ? 'input_tokens' AS response_has_usage
  FROM rl_last('rl-model');
SELECT array_length(llm_embed('embed carol@example.com', 'rl-model'), 1) > 0 AS embedded;
SELECT status, request::jsonb->>'input' AS input, response ~ '^\{[-0-9.e,]+\}\n?$' AS response_is_a_vector
  FROM rl_last('rl-model');
RESET llmgw.api_key;
SELECT llmgw.create_model('rl-broken', 'mock', 'mock-model;status:500');
SELECT llmgw.log_requests('model', 'rl-broken');
SELECT try($$SELECT llm_complete('a call that fails', 'rl-broken')$$) ~ '^LG' AS failed;
SELECT status, logged, response::jsonb->'error'->>'sqlstate' AS sqlstate,
       response::jsonb->'error'->>'message' AS message
  FROM rl_last('rl-broken');
SELECT llmgw.create_model('rl-cached', 'mock', 'mock-model');
UPDATE llmgw.models SET cache_ttl = '1 hour' WHERE alias = 'rl-cached';
SET llmgw.api_key = :'team_key';
SELECT llm_complete('cached question', 'rl-cached'), llm_complete('cached question', 'rl-cached');
RESET llmgw.api_key;
SELECT u.cache_hit, l.request_id IS NOT NULL AS logged, l.response_body
  FROM llmgw.usage u LEFT JOIN llmgw.request_log l USING (request_id, attempt, started_at)
 WHERE u.model = 'rl-cached' ORDER BY u.id;

-- Huge bodies are cut at llmgw.request_log_max_body (64kB), and marked; a
-- body of three-byte characters is cut between two of them
SET llmgw.api_key = :'team_key';
SELECT length(llm_complete(repeat('x', 70000), 'rl-model')) AS answer_length;
SELECT l.request_bytes, octet_length(l.request_body) AS request_kept, l.request_truncated,
       l.response_bytes, octet_length(l.response_body) AS response_kept, l.response_truncated
  FROM (SELECT * FROM llmgw.usage WHERE model = 'rl-model' ORDER BY id DESC LIMIT 1) u
  JOIN llmgw.request_log l USING (request_id, attempt, started_at);
SELECT length(llm_complete(repeat('€', 30000), 'rl-model')) AS answer_length;
SELECT l.request_bytes, octet_length(l.request_body) AS request_kept, l.request_truncated,
       right(l.request_body, 2) AS request_ends, right(l.response_body, 2) AS response_ends
  FROM (SELECT * FROM llmgw.usage WHERE model = 'rl-model' ORDER BY id DESC LIMIT 1) u
  JOIN llmgw.request_log l USING (request_id, attempt, started_at);
-- a short one is whole
SELECT llm_complete('short', 'rl-model');
SELECT l.request_bytes = octet_length(l.request_body) AS whole, l.request_truncated, l.response_truncated
  FROM (SELECT * FROM llmgw.usage WHERE model = 'rl-model' ORDER BY id DESC LIMIT 1) u
  JOIN llmgw.request_log l USING (request_id, attempt, started_at);
RESET llmgw.api_key;

-- Row-level security, as on llmgw.usage
SELECT count(*) AS all_rows FROM llmgw.request_log \gset
SET ROLE regress_rl_user;           -- rl-team: its calls, by key or by binding
SELECT count(*) > 0 AS sees_rows, bool_and(team_id IN (SELECT llmgw.my_teams())) AS only_its_team,
       count(*) FILTER (WHERE role_name = 'regress_rl_lone') AS lone_rows
  FROM llmgw.request_log;
SET ROLE regress_rl_other;          -- rl-other-team: the logged key's two calls
SELECT count(*) AS rows, bool_and(team_id IN (SELECT llmgw.my_teams())) AS only_its_team
  FROM llmgw.request_log;
SELECT count(*) AS rows_of_rl_team FROM llmgw.request_log WHERE request_body LIKE '%team: %';
SET ROLE regress_rl_lone;           -- no team: its own call without a team
SELECT count(*) AS rows, string_agg(response_body, ',') AS response FROM llmgw.request_log;
SET ROLE regress_rl_finance;        -- everything
SELECT count(*) = :all_rows AS sees_all FROM llmgw.request_log;
SET ROLE regress_rl_admin;
SELECT count(*) = :all_rows AS sees_all FROM llmgw.request_log;
RESET ROLE;
SET ROLE regress_rl_none;
SELECT try($$SELECT count(*) FROM llmgw.request_log$$);
RESET ROLE;
-- nobody writes the log but the workers; an admin may erase rows
SELECT format('SELECT count(*) FROM %s', min(inhrelid::regclass::text)) AS partition_query
  FROM pg_inherits WHERE inhparent = 'llmgw.request_log'::regclass \gset
SET ROLE regress_rl_user;
SELECT try($$INSERT INTO llmgw.request_log (request_id, attempt, started_at, request_body, request_bytes)
             VALUES (gen_random_uuid(), 1, now(), 'forged', 6)$$);
SELECT try($$UPDATE llmgw.request_log SET request_body = 'changed'$$);
SELECT try($$DELETE FROM llmgw.request_log$$);
SELECT try(:'partition_query') ~ '^42501' AS partition_refused;
SET ROLE regress_rl_finance;
SELECT try($$DELETE FROM llmgw.request_log$$);
SET ROLE regress_rl_admin;
DELETE FROM llmgw.request_log WHERE role_name = 'regress_rl_lone';
SELECT try($$UPDATE llmgw.request_log SET request_body = 'changed'$$);
RESET ROLE;
SELECT count(*) AS lone_rows FROM llmgw.request_log WHERE role_name = 'regress_rl_lone';

-- Daily partitions: one made for a day long past, then dropped beyond the
-- retention (30 days) with its rows; 0 keeps everything
SET ROLE regress_rl_admin;
SELECT llmgw.create_request_log_partitions((now() AT TIME ZONE 'UTC')::date - 100, 1) AS made,
       llmgw.create_request_log_partitions((now() AT TIME ZONE 'UTC')::date - 100, 1) AS made_again;
RESET ROLE;
-- noon (UTC) of that day: now() - 100 days can fall on the day before
-- (across a change of summer time, just after midnight UTC)
INSERT INTO llmgw.request_log (request_id, attempt, started_at, request_body, request_bytes)
VALUES (gen_random_uuid(), 1,
        (((now() AT TIME ZONE 'UTC')::date - 100) + time '12:00') AT TIME ZONE 'UTC', 'old', 3);
SET ROLE regress_rl_admin;
SELECT llmgw.prune_request_log(0) AS dropped_keeping_all;
SELECT count(*) AS old_rows FROM llmgw.request_log WHERE started_at < now() - interval '99 days';
SELECT llmgw.prune_request_log() AS dropped;
SELECT count(*) AS old_rows FROM llmgw.request_log WHERE started_at < now() - interval '99 days';
SELECT count(*) > 0 AS recent_rows_kept FROM llmgw.request_log;
SELECT try($$SELECT llmgw.prune_request_log(-1)$$);
SELECT try($$SELECT llmgw.create_request_log_partitions(NULL, 0)$$);
RESET ROLE;
SELECT bool_and(pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM%') AS daily_partitions,
       bool_and(EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisprimary)) AS with_keys
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'llmgw.request_log'::regclass;

-- Clean up (logged rows, like usage rows, stay)
DELETE FROM llmgw.redaction_rules WHERE name = 'ticket';
DELETE FROM llmgw.request_log_rules WHERE model IN ('rl-broken');
DELETE FROM llmgw.teams WHERE name IN ('rl-team', 'rl-other-team');
SELECT count(*) AS rules_left FROM llmgw.request_log_rules;
SELECT llmgw.drop_model(m) FROM unnest(ARRAY['rl-model', 'rl-other', 'rl-broken', 'rl-cached']) m;
DROP ROLE regress_rl_user, regress_rl_other, regress_rl_lone, regress_rl_finance, regress_rl_admin,
          regress_rl_none;
DROP FUNCTION rl_last(text);
