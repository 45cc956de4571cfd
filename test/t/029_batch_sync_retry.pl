# A batch job with retry => 'sync' (docs/batch.md#retries): its expired
# items and its items failed with a 429 or a 5xx are called through the
# synchronous path (asynchronous calls of the job's owner), priced at the
# synchronous rates, each with a usage row of its own, and their answers
# written into the job's rows once; a 400 is not retried; an owner without
# budget left gets the budget error in the job; kill -9 while the retries
# are in flight, counted exactly afterwards (the mock's requests, the rows
# written, the usage rows).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('batchsync', 2,
	conf => "llmgw.batch_poll_interval = 100\n");
$node->safe_psql('postgres', q{
	SELECT llmgw.create_model('bs', 'mock', 'batch-model;sync29', price_model => 'bsp');
	SELECT llmgw.create_model('bs-slow', 'mock', 'batch-model;delay:3000;sync29k', price_model => 'bsp');
	SELECT llmgw.set_price('bsp', input => 2, output => 4, batch_input => 1, batch_output => 2);
	SELECT llmgw.create_team('ta');
	CREATE ROLE bu LOGIN IN ROLE llmgw_user;      -- team ta
	CREATE ROLE bz LOGIN IN ROLE llmgw_user;      -- no team, a small budget
	SELECT llmgw.bind_role('bu', 'ta');
	SELECT llmgw.create_budget('ta total', 'team', 'ta', 'total', 1);
	CREATE TABLE t1 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t1 VALUES (1, 'fine', NULL), (2, 'late [[expire]]', NULL), (3, 'busy [[fail_429]]', NULL),
	                      (4, 'broken [[fail_500]]', NULL), (5, 'bad [[fail]]', NULL);
	GRANT SELECT, UPDATE ON t1 TO bu;
});

sub sq { return $node->safe_psql('postgres', $_[0]); }

# Run enrich as a role; returns the job id
sub enrich
{
	my ($role, $table, $model, $retry) = @_;
	return (LlmgwTest::batch_enrich($node, $role,
		"CALL llmgw.enrich('$table', 'id', 'body', 'summary', '$model', max_tokens => 100, mode => 'batch', retry => '$retry')"))[0];
}

sub wait_job { LlmgwTest::wait_job_end($node, $_[0]); }

# ---- expired, 429 and 500 items go through the synchronous path; a 400 does not
my $sync_before = LlmgwTest::mock_requests('batch-model;sync29');
my $job = enrich('bu', 't1', 'bs', 'sync');
wait_job($job);
is(sq("SELECT string_agg(id || ':' || coalesce(summary, '-'), ',' ORDER BY id) FROM t1"),
	'1:Hello! You said: fine,2:Hello! You said: late [[expire]],3:Hello! You said: busy [[fail_429]],'
	  . '4:Hello! You said: broken [[fail_500]],5:-',
	'the expired, rate-limited and failed items are answered synchronously; the refused one is not');
is(LlmgwTest::mock_requests('batch-model;sync29') - $sync_before, 3, 'three synchronous calls reached the provider');
is(sq("SELECT string_agg(i.custom_id || ':' || i.state || ':' || coalesce(i.error_class, '-') || ':' || (i.sync_call IS NOT NULL), ','
                         ORDER BY i.custom_id)
         FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.job_id = $job"),
	'r1:done:-:false,r2:expired:expired:true,r3:failed:rate_limit:true,r4:failed:server:true,r5:failed:invalid_request:false',
	'the batch items keep their batch outcome and name their synchronous call');
is(sq("SELECT string_agg(coalesce(error_class, status), ',' ORDER BY coalesce(error_class, status))
         FROM llmgw.usage WHERE job_id = $job AND batch_id IS NOT NULL"),
	'expired,invalid_request,ok,rate_limit,server', 'one batch usage row per item of the batch');
is(sq("SELECT count(*), count(DISTINCT u.async_id), bool_and(u.status = 'ok'), bool_and(u.key_id IS NULL),
              bool_and(u.team_id = llmgw.team_id('ta')), bool_and(u.role_name = 'bu')
         FROM llmgw.usage u JOIN llmgw.batch_items i ON i.sync_call = u.async_id
        WHERE u.job_id = $job AND u.batch_id IS NULL"),
	'3|3|t|t|t|t', 'one synchronous usage row per retried item, as the job\'s owner and team');
is(LlmgwTest::sync_rows_priced($node, $job), 't', 'the synchronous rows are priced at the synchronous rates');
is(sq("SELECT status, rows_done, rows_failed, retry, spend = (SELECT sum(cost) FROM llmgw.usage WHERE job_id = $job),
              (SELECT count(*) FROM llmgw.batches WHERE job_id = $job)
         FROM llmgw.job_progress WHERE id = $job"),
	'finished|4|1|sync|t|1', 'the job: four rows done, one failed, its spend counts both paths, one batch');
is(sq("SELECT s.reserved, s.spent = u.cost, s.ledger_spent = u.cost
         FROM llmgw.budget_status s, (SELECT sum(cost) AS cost FROM llmgw.usage WHERE team_id = llmgw.team_id('ta')) u
        WHERE s.name = 'ta total'"),
	'0|t|t', 'the budget: nothing reserved, batch and synchronous spend charged once');
is(sq("SELECT (SELECT count(*) FILTER (WHERE batch) FROM llmgw.usage_daily WHERE team_id = llmgw.team_id('ta')) > 0,
              (SELECT sum(cost) FILTER (WHERE NOT batch) FROM llmgw.spend_daily WHERE team = 'ta')
                = (SELECT sum(cost) FROM llmgw.usage WHERE job_id = $job AND batch_id IS NULL)"),
	't|t', 'the spend views count the retries as synchronous spend');
$job = enrich('bu', 't1', 'bs', 'sync');
wait_job($job);
is(sq("SELECT rows_total, rows_done, (SELECT summary IS NULL FROM t1 WHERE id = 5) FROM llmgw.jobs WHERE id = $job"),
	'1|0|t', 'a second CALL sends only the row still NULL (the refused one, refused again)');

# ---- the owner without budget left for the synchronous call: LG010 in the job
# (the budget holds the batch's worst case at the batch rates, not the
# synchronous one at twice the rates)
my $worst = sq(q{SELECT llmgw.worst_case_cost(llmgw.batch_price(p), octet_length('{"messages": [{"role": "user", "content": "late [[expire]]"}], "max_tokens": 100}'), 100)
                   FROM llmgw.prices p WHERE p.model = 'bsp'});
sq(qq{
	SELECT llmgw.create_budget('bz role', 'role', 'bz', 'total', 1.5 * $worst);
	CREATE TABLE t2 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t2 VALUES (1, 'late [[expire]]', NULL);
	GRANT SELECT, UPDATE ON t2 TO bz});
$sync_before = LlmgwTest::mock_requests('batch-model;sync29');
$job = enrich('bz', 't2', 'bs', 'sync');
wait_job($job);
is(sq("SELECT status, rows_done, rows_failed, last_error LIKE 'LG010: budget \"bz role\" is exhausted%',
              (SELECT summary IS NULL FROM t2)
         FROM llmgw.jobs WHERE id = $job"),
	'finished|0|1|t|t', 'the synchronous retry fails with the budget error, and the job says so');
is(sq("SELECT a.status, a.sqlstate FROM llmgw.async_calls a JOIN llmgw.batch_items i ON i.sync_call = a.id
        JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.job_id = $job"),
	'error|LG010', 'its asynchronous call ended with LG010');
is(LlmgwTest::mock_requests('batch-model;sync29') - $sync_before, 0, 'and never reached the provider');
is(sq("SELECT reserved FROM llmgw.budget_status WHERE name = 'bz role'"), '0', 'nothing stays reserved');

# ---- kill -9 while the synchronous retries are in flight
sq(q{
	CREATE TABLE t3 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t3 SELECT g, 'late ' || g || ' [[expire]]', NULL FROM generate_series(1, 3) g;
	GRANT SELECT, UPDATE ON t3 TO bu});
my $slow_before = LlmgwTest::mock_requests('batch-model;delay:3000;sync29k');
$job = enrich('bu', 't3', 'bs-slow', 'sync');
my $deadline = time + 60;
sleep 0.2 while LlmgwTest::mock_requests('batch-model;delay:3000;sync29k') - $slow_before < 3 && time < $deadline;
is(LlmgwTest::mock_requests('batch-model;delay:3000;sync29k') - $slow_before, 3,
	'the three synchronous retries are in flight');
LlmgwTest::kill_worker($node, 2);
wait_job($job);
is(LlmgwTest::mock_requests('batch-model;delay:3000;sync29k') - $slow_before, 6,
	'after the crash each retry is called once more, and no more');
is(sq("SELECT count(*) FILTER (WHERE summary LIKE 'Hello! You said: late %'), count(*) FROM t3"), '3|3',
	'every row is written');
is(sq("SELECT string_agg(status, ',' ORDER BY status), count(DISTINCT async_id) FROM llmgw.usage
        WHERE job_id = $job AND batch_id IS NULL"),
	'interrupted,interrupted,interrupted,ok,ok,ok|3',
	'usage: the interrupted first tries and one ok row per item');
is(sq("SELECT count(*) FROM llmgw.usage WHERE job_id = $job AND batch_id IS NOT NULL"), '3',
	'one batch usage row per item');
is(sq("SELECT status, rows_done, rows_failed FROM llmgw.jobs WHERE id = $job"), 'finished|3|0',
	'the job finishes with its last retry');

# ---- a batch without a job: its own retry; the answers land in batch_items.answer
$sync_before = LlmgwTest::mock_requests('batch-model;sync29');
my $b = sq(q{SET ROLE bu; SELECT llmgw.submit_batch(ARRAY(SELECT jsonb_build_object('messages', jsonb_build_array(
                 jsonb_build_object('role', 'user', 'content', c)), 'max_tokens', 100) FROM unnest(ARRAY['one', 'two [[expire]]', 'three [[fail_500]]']) c),
                 'bs', retry => 'sync')});
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 FROM llmgw.async_calls a WHERE a.batch_id = $b AND a.status IN ('done', 'error')})
  or die 'the retries of the batch did not end';
is(sq("SELECT string_agg(custom_id || ':' || coalesce(answer #>> '{choices,0,message,content}', answer #>> '{message,content}'), ','
                         ORDER BY custom_id) FROM llmgw.batch_items WHERE batch_id = $b"),
	'r1:Hello! You said: one,r2:Hello! You said: two [[expire]],r3:Hello! You said: three [[fail_500]]',
	"submit_batch(retry => 'sync'): the retried items' answers (llm_chat's) in batch_items.answer");
is(sq("SELECT count(*), bool_and(status = 'ok' AND job_id IS NULL) FROM llmgw.usage u
        JOIN llmgw.batch_items i ON i.sync_call = u.async_id WHERE i.batch_id = $b AND u.batch_id IS NULL"),
	'2|t', 'one synchronous usage row per retried item');
is(LlmgwTest::mock_requests('batch-model;sync29') - $sync_before, 2, 'two synchronous calls');
$b = sq(q{SET ROLE bu; SELECT llmgw.submit_batch(ARRAY['{"messages": [{"role": "user", "content": "jobless [[expire_once]]"}], "max_tokens": 100}'::jsonb],
                 'bs', retry => 'batch')});
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM llmgw.batches b WHERE b.id > $b AND b.job_id IS NULL AND b.state = 'completed' AND b.retry = 'batch'})
  or die 'the batch was not retried';
is(sq("SELECT string_agg(i.state || ':' || coalesce(i.answer #>> '{choices,0,message,content}', '-'), ',' ORDER BY i.batch_id)
         FROM llmgw.batch_items i WHERE i.batch_id >= $b AND i.custom_id = 'r1'
          AND i.batch_id IN (SELECT id FROM llmgw.batches WHERE job_id IS NULL AND owner = 'bu')"),
	'expired:-,done:Hello! You said: jobless [[expire_once]]', "submit_batch(retry => 'batch'): the expired item answered in a later batch");

# ---- hostile
like(LlmgwTest::error_of($node, "SET ROLE bu; SELECT llmgw.submit_batch(ARRAY['{\"messages\": []}'::jsonb], 'bs', retry => 'soon')"),
	qr/^22023: retry must be batch, sync or none/, 'submit_batch: an unknown retry: 22023');
like(LlmgwTest::error_of($node, "SET ROLE bu; SELECT llmgw.submit_batch(ARRAY['{\"messages\": []}'::jsonb], 'bs', $job, '{1}', 'sync')"),
	qr/^22023: the batches of a job retry as their job says/, 'submit_batch: a retry for a job\'s batch: 22023');
like(LlmgwTest::error_of($node, "CALL llmgw.enrich('t1', 'id', 'body', 'summary', 'bs', mode => 'batch', retry => 'later')"),
	qr/^22023: retry must be batch, sync or none/, 'an unknown retry: 22023');
like(LlmgwTest::error_of($node, "SET ROLE bu; INSERT INTO llmgw.async_calls (model, request, max_retries, timeout_ms, job_id, batch_id)
                                  VALUES ('bs', '{\"messages\": []}', 0, 0, $job, 1)"),
	qr/^42501/, 'a role cannot queue a call as the retry of a batch item');
is(sq("SET ROLE bz; SELECT count(*) FROM llmgw.async_calls WHERE job_id IS NOT NULL AND owner <> 'bz'"), '0',
	'nor see the retries of another role');

$node->stop;
done_testing();
