# llmgw.cancel_job reaches a batch job's synchronous retries
# (docs/batch.md#retries): those no worker took are never sent, those in
# flight are aborted (a cancelled usage row each), the job ends stopped with
# its rows NULL, counted neither done nor failed; another role cannot cancel
# them; a retry in flight when the server crashed, cancelled while the
# workers serve no database, is not sent again after the restart.  And an
# asynchronous call that outlives llmgw.async_lease is not taken a second
# time while a worker makes it, yet one whose server died is (the mock's
# requests and the usage rows counted exactly).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

# a lease of 1 s; asynchronous calls hold at most 2 slots (1% of 200)
my $node = LlmgwTest::node('synccancel', 2,
	conf => "llmgw.batch_poll_interval = 100\nllmgw.async_lease = 1\n"
	  . "llmgw.queue_size = 200\nllmgw.max_share = 1\n");
my $slow = 'mock-model;delay:4000;lease30';
my $retry = 'batch-model;delay:20000;sync30c';
$node->safe_psql('postgres', qq{
	CREATE DATABASE spare;
	SELECT llmgw.create_model('lease-slow', 'mock', '$slow');
	SELECT llmgw.create_model('cs', 'mock', 'batch-model;sync30', price_model => 'csp');
	SELECT llmgw.create_model('cs-slow', 'mock', '$retry', price_model => 'csp');
	SELECT llmgw.set_price('csp', input => 2, output => 4, batch_input => 1, batch_output => 2);
	SELECT llmgw.create_team('tc');
	CREATE ROLE bu LOGIN IN ROLE llmgw_user;      -- team tc
	CREATE ROLE bo LOGIN IN ROLE llmgw_user;      -- another user
	SELECT llmgw.bind_role('bu', 'tc');
	SELECT llmgw.create_budget('tc total', 'team', 'tc', 'total', 10);
});

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub submit
{
	my ($model, $text) = @_;
	return sq(qq{SELECT llmgw.submit('{"model": "$model", "messages": [{"role": "user", "content": "$text"}]}')});
}

# Wait until the mock has seen $n more requests for $model than $before
sub wait_requests
{
	my ($model, $before, $n) = @_;
	my $deadline = time + 60;
	sleep 0.1 while LlmgwTest::mock_requests($model) - $before < $n && time < $deadline;
	return LlmgwTest::mock_requests($model) - $before;
}

# Run enrich as bu; returns the job id
sub enrich
{
	my ($table, $model, $retry) = @_;
	return (LlmgwTest::batch_enrich($node, 'bu',
		"CALL llmgw.enrich('$table', 'id', 'body', 'summary', '$model', max_tokens => 100, mode => 'batch', retry => '$retry')"))[0];
}

sub wait_job { LlmgwTest::wait_job_end($node, $_[0]); }

# ---- a call that outlives its lease is not taken again while a worker makes it
my $before = LlmgwTest::mock_requests($slow);
my $id = submit('lease-slow', 'long');
is(wait_requests($slow, $before, 1), 1, 'the long call is at the provider');
$node->poll_query_until('postgres', "SELECT lease_until < now() FROM llmgw.async_calls WHERE id = $id")
  or die 'the lease did not run out';
# a call submitted now makes worker 0 take calls again
my $other = submit('demo', 'quick');
is(sq("SELECT status FROM llmgw.wait($other, '60 seconds')"), 'done',
	'a call submitted once the lease ran out is taken and answered');
is(sq("SELECT status, attempts FROM llmgw.async_calls WHERE id = $id"), 'running|1',
	'meanwhile the long call, its lease over, was not taken again');
is(sq("SELECT status FROM llmgw.wait($id, '60 seconds')"), 'done', 'the long call is answered');
is(LlmgwTest::mock_requests($slow) - $before, 1, 'the provider was called once');
is(sq("SELECT string_agg(status, ','), (SELECT attempts FROM llmgw.async_calls WHERE id = $id)
         FROM llmgw.usage WHERE async_id = $id"), 'ok|1', 'one ok usage row, one take');

# ---- kill -9 while it is at the provider: taken again once, and only once
$before = LlmgwTest::mock_requests($slow);
$id = submit('lease-slow', 'crash');
is(wait_requests($slow, $before, 1), 1, 'the call is at the provider');
LlmgwTest::kill_worker($node, 2);
is(sq("SELECT status FROM llmgw.wait($id, '60 seconds')"), 'done', 'after the crash the call is answered');
is(LlmgwTest::mock_requests($slow) - $before, 2, 'the provider was called once more, and no more');
is(sq("SELECT string_agg(status, ',' ORDER BY status), (SELECT attempts FROM llmgw.async_calls WHERE id = $id)
         FROM llmgw.usage WHERE async_id = $id"), 'interrupted,ok|2',
	'usage: the interrupted first try and one ok row');

# ---- cancel_job: two retries in flight, one still queued (the async share is 2 slots)
sq(q{
	CREATE TABLE t1 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t1 SELECT g, 'late ' || g || ' [[expire]]', NULL FROM generate_series(1, 3) g;
	GRANT SELECT, UPDATE ON t1 TO bu});
$before = LlmgwTest::mock_requests($retry);
my $job = enrich('t1', 'cs-slow', 'sync');
is(wait_requests($retry, $before, 2), 2, 'two synchronous retries are at the provider');
$node->poll_query_until('postgres', "SELECT count(*) = 3 FROM llmgw.async_calls WHERE job_id = $job")
  or die 'the retries were not queued';
is(sq("SELECT string_agg(status, ',' ORDER BY status) FROM llmgw.async_calls WHERE job_id = $job"),
	'queued,running,running', 'the third waits in the table');

like(LlmgwTest::error_of($node, "SET ROLE bo; SELECT llmgw.cancel_job($job)"),
	qr/^42704: job $job does not exist/, 'another role cannot cancel the job');
like(LlmgwTest::error_of($node, "SET ROLE bu; SELECT llmgw.cancel_job_calls()"),
	qr/^42501/, 'nor may a user call the internal function');
is(sq("SELECT j.status, j.cancel_requested, (SELECT string_agg(status, ',' ORDER BY status)
                                              FROM llmgw.async_calls WHERE job_id = $job)
         FROM llmgw.jobs j WHERE j.id = $job"),
	'running|f|queued,running,running', 'so its retries are untouched');

sq("SET ROLE bu; SELECT llmgw.cancel_job($job)");
wait_job($job);
is(sq("SELECT status, cancel_requested, rows_done, rows_failed, (SELECT count(*) FROM t1 WHERE summary IS NULL)
         FROM llmgw.jobs WHERE id = $job"),
	'stopped|t|0|0|3', 'the job stops; its rows stay NULL, counted neither done nor failed');
is(LlmgwTest::mock_requests($retry) - $before, 2, 'the queued retry never reached the provider');
is(sq("SELECT string_agg(status || ':' || coalesce(error_class, '-'), ',' ORDER BY id), count(DISTINCT async_id)
         FROM llmgw.usage WHERE job_id = $job AND batch_id IS NULL"),
	'cancelled:cancelled,cancelled:cancelled|2', 'the two in flight were aborted: a cancelled usage row each');
is(sq("SELECT string_agg(a.status || ':' || a.sqlstate || ':' || (u.id IS NOT NULL), ',' ORDER BY a.id)
         FROM llmgw.async_calls a LEFT JOIN llmgw.usage u ON u.async_id = a.id WHERE a.job_id = $job"),
	'error:57014:true,error:57014:true,error:57014:false', 'every retry ends 57014; the unsent one has no usage row');
is(sq("SELECT s.reserved, s.spent = coalesce(u.cost, 0)
         FROM llmgw.budget_status s, (SELECT sum(cost) AS cost FROM llmgw.usage WHERE team_id = llmgw.team_id('tc')) u
        WHERE s.name = 'tc total'"), '0|t', 'nothing stays reserved, the spend is the usage rows');
is(sq("SELECT count(*) FROM llmgw.calls_now"), '0', 'no slot holds a call any more');
my $again = enrich('t1', 'cs', 'none');
wait_job($again);
is(sq("SELECT rows_total FROM llmgw.jobs WHERE id = $again"), '3', 'a later CALL sends the rows again');

# ---- a retry in flight when the server crashes, cancelled while the
# ---- workers serve another database: after the restart it is not sent
sq(q{
	CREATE TABLE t2 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t2 VALUES (1, 'late [[expire]]', NULL);
	GRANT SELECT, UPDATE ON t2 TO bu});
$before = LlmgwTest::mock_requests($retry);
$job = enrich('t2', 'cs-slow', 'sync');
is(wait_requests($retry, $before, 1), 1, 'the retry is at the provider');
$node->stop('immediate');
$node->append_conf('postgresql.conf', "llmgw.database = 'spare'");
$node->start;
sq("SET ROLE bu; SELECT llmgw.cancel_job($job)");
is(sq("SELECT j.status, a.status FROM llmgw.jobs j JOIN llmgw.async_calls a ON a.job_id = j.id WHERE j.id = $job"),
	'running|running', 'the retry of the dead server life is still outstanding');
$node->append_conf('postgresql.conf', "llmgw.database = 'postgres'");
$node->restart;
wait_job($job);
is(sq("SELECT status, rows_done, rows_failed, (SELECT summary IS NULL FROM t2) FROM llmgw.jobs WHERE id = $job"),
	'stopped|0|0|t', 'the job stops with its row NULL');
is(LlmgwTest::mock_requests($retry) - $before, 1, 'the cancelled retry was not sent again');
is(sq("SELECT string_agg(u.status, ','), min(a.status || ':' || a.sqlstate)
         FROM llmgw.async_calls a LEFT JOIN llmgw.usage u ON u.async_id = a.id WHERE a.job_id = $job"),
	'interrupted|error:57014', 'usage: only the interrupted first try; the retry ends 57014');
is(sq("SELECT reserved FROM llmgw.budget_status WHERE name = 'tc total'"), '0', 'nothing stays reserved');

# ---- malformed
like(LlmgwTest::error_of($node, "SET ROLE bu; SELECT llmgw.cancel_job(NULL)"), qr/^42704/,
	'cancel_job(NULL): 42704');

$node->stop;
done_testing();
