-- llmgw.job (usage.job_id, set by llmgw.enrich) cannot be forged: it must
-- name a running job of the calling role.
CREATE ROLE regress_job_me IN ROLE llmgw_user;
CREATE ROLE regress_job_other IN ROLE llmgw_user;
SELECT llmgw.create_model('jo-demo', 'mock', 'jo-model', price_model => 'jo-price');
SELECT llmgw.set_price('jo-price', 0, 0, per_request => 0.01) > 0 AS priced;
-- jobs with ids of our own, so that the messages do not vary
INSERT INTO llmgw.jobs (id, name, owner, source, output_column, model, status)
OVERRIDING SYSTEM VALUE
VALUES (990001, 'jo other running', 'regress_job_other', 't', 'c', 'jo-demo', 'running'),
       (990002, 'jo mine running', 'regress_job_me', 't', 'c', 'jo-demo', 'running'),
       (990003, 'jo mine finished', 'regress_job_me', 't', 'c', 'jo-demo', 'finished'),
       (990004, 'jo mine failed', 'regress_job_me', 't', 'c', 'jo-demo', 'failed');

SET ROLE regress_job_me;
-- another role's running job
SET llmgw.job = '990001';
SELECT try($$SELECT llm_complete('forged', 'jo-demo')$$);
SELECT try($$SELECT llm_chat('{"model": "jo-demo", "messages": [{"role": "user", "content": "forged"}]}')$$);
SELECT try($$SELECT * FROM llm_complete_many(ARRAY['forged'], 'jo-demo')$$);
-- my own jobs, but finished or failed
SET llmgw.job = '990003';
SELECT try($$SELECT llm_complete('finished', 'jo-demo')$$);
SET llmgw.job = '990004';
SELECT try($$SELECT llm_complete('failed', 'jo-demo')$$);
-- no such job
SET llmgw.job = '999999';
SELECT try($$SELECT llm_complete('nothing', 'jo-demo')$$);
-- not a job id at all
SELECT try($$SET llmgw.job = '990002 OR true'$$);
SELECT try($$SET llmgw.job = '-1'$$);
-- my running job: the call works and carries it
SET llmgw.job = '990002';
SELECT llm_complete('mine', 'jo-demo');
RESET llmgw.job;
SELECT llm_complete('no job', 'jo-demo');
RESET ROLE;

-- a superuser cannot charge another role's job either
SET llmgw.job = '990001';
SELECT try($$SELECT llm_complete('forged', 'jo-demo')$$);
RESET llmgw.job;

-- only the call made under the running job carries it; nothing is charged
-- to the other role's job
SELECT role_name, job_id, status FROM llmgw.usage WHERE model = 'jo-demo' ORDER BY id;
SELECT id, name, spend FROM llmgw.job_progress WHERE id BETWEEN 990001 AND 990004 ORDER BY id;
\! perl test/scripts/mock_count.pl 'jo-model'

DELETE FROM llmgw.jobs WHERE id BETWEEN 990001 AND 990004;
SELECT llmgw.drop_model('jo-demo');
DROP ROLE regress_job_me, regress_job_other;
