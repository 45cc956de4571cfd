# Provider batches (docs/batch.md) through the mock's OpenAI Batch API: a
# job split across batches with per-item failures and expiries, usage rows
# at half the synchronous price, the hostile cases of submit_batch, cancel,
# and kill -9 of a worker while waiting and while writing results, with
# the provider's requests, the rows written and the usage rows counted
# exactly.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use JSON::PP;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('batch', 2,
	conf => "llmgw.batch_poll_interval = 100\n");
$node->safe_psql('postgres', q{
	SELECT llmgw.create_model('bm', 'mock', 'batch-model', price_model => 'batch-price');
	SELECT llmgw.create_model('bm-slow', 'mock', 'batch-model;batch_ms:2000', price_model => 'batch-price');
	SELECT llmgw.create_model('bm-fail', 'mock', 'batch-model;batch_fail', price_model => 'batch-price');
	SELECT llmgw.set_price('batch-price', input => 2, output => 4, batch_input => 1, batch_output => 2);
	CREATE ROLE batch_user LOGIN IN ROLE llmgw_user;
	CREATE ROLE batch_other LOGIN IN ROLE llmgw_user;
	CREATE ROLE batch_nobody LOGIN;
	CREATE TABLE t1 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t1 SELECT g, 'row ' || g, NULL FROM generate_series(1, 10) g;
	UPDATE t1 SET body = 'bad [[fail]]' WHERE id = 3;
	UPDATE t1 SET body = 'late [[expire]]' WHERE id = 7;
	GRANT SELECT, UPDATE ON t1 TO batch_user;
	GRANT SELECT ON t1 TO batch_other;
});

# The counters' growth since $before, as "uploads/creates/lists/cancels/downloads"
sub grown
{
	return LlmgwTest::mock_batch_grown($_[0], qw(uploads creates lists cancels downloads));
}

sub wait_job
{
	my ($job, $status) = @_;
	$node->poll_query_until('postgres',
		"SELECT status = '$status' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not become $status";
}

sub enrich
{
	my ($user, $table, $model, $max) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres',
		"SET llmgw.batch_max_requests = $max; CALL llmgw.enrich('$table', 'id', \$\$'Summarise: ' || body\$\$, 'summary', '$model', mode => 'batch', retry => 'none')",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', $user ]);
	return $err =~ /job (\d+): (\d+) rows queued in (\d+) provider batches/ ? ($1, $2, $3) : die "enrich: $err";
}

# ---- the round trip, split into three batches
my $before = LlmgwTest::mock_batch();
my ($job, $rows, $batches) = enrich('batch_user', 't1', 'bm', 4);
is("$rows/$batches", '10/3', 'ten rows queued as three batches of at most four');
wait_job($job, 'finished');
is(grown($before), '3/3/0/0/5', 'three uploads, three creates, no list, the output and error files fetched');
is($node->safe_psql('postgres', 'SELECT count(*) FILTER (WHERE summary IS NOT NULL) FROM t1'), '8',
	'eight rows answered (one failed, one expired)');
is($node->safe_psql('postgres', "SELECT summary FROM t1 WHERE id = 2"), 'Hello! You said: Summarise: row 2',
	'an answer is written as the synchronous path writes it');
is($node->safe_psql('postgres', "SELECT string_agg(status || ':' || coalesce(error_class, '-'), ',' ORDER BY s) FROM (SELECT status, error_class, count(*) AS s FROM llmgw.usage WHERE job_id = $job GROUP BY 1, 2) u"),
	'error:expired,error:invalid_request,ok:-', 'usage rows: ok, the failed item, the expired item');
is($node->safe_psql('postgres', "SELECT count(*), count(DISTINCT request_id) FROM llmgw.usage WHERE job_id = $job"),
	'10|10', 'one usage row per item');
is($node->safe_psql('postgres', qq{
	SELECT rows_total, rows_done, rows_failed, status, mode, batch_state, cardinality(provider_batch_ids)
	  FROM llmgw.job_progress WHERE id = $job}), '10|8|1|finished|batch|completed|3', 'the job as job_progress shows it');
# the same prompt synchronously costs twice as much
$node->safe_psql('postgres', q{SELECT llm_complete('Summarise: row 2', 'bm')});
my $sync = $node->safe_psql('postgres', q{
	SELECT cost FROM llmgw.usage WHERE batch_id IS NULL AND model = 'bm' ORDER BY id DESC LIMIT 1});
my $batch = $node->safe_psql('postgres', qq{
	SELECT u.cost FROM llmgw.usage u JOIN llmgw.batch_items i ON i.request_id = u.request_id
	 WHERE i.row_key = '2' AND u.job_id = $job});
is($node->safe_psql('postgres', "SELECT ($sync / $batch)::numeric(4,2)"), '2.00',
	"a batch item costs half the synchronous call (sync $sync, batch $batch)");
is($node->safe_psql('postgres', qq{SELECT count(*) FROM llmgw.batches b JOIN llmgw.prices p ON p.id = b.price_id
	  WHERE b.job_id = $job AND p.model = 'batch-price' AND b.submitted_at IS NOT NULL}), '3',
	'each batch keeps the price row in force at its submission');

# run again: nothing left to send
($job, $rows, $batches) = enrich('batch_user', 't1', 'bm', 4);
is("$rows", '2', 'a second run takes only the two rows still NULL');
wait_job($job, 'finished');

# ---- hostile callers
like(LlmgwTest::error_of($node, "SET ROLE batch_other; CALL llmgw.enrich('t1', 'id', 'body', 'summary', 'bm', mode => 'batch')"),
	qr/^42501/, 'a role that may not update the column queues nothing');
like(LlmgwTest::error_of($node, "SET ROLE batch_nobody; SELECT llmgw.submit_batch(ARRAY['{\"messages\":[]}'::jsonb], 'bm')"),
	qr/^42501/, 'a role without llmgw_user may not submit a batch');
like(LlmgwTest::error_of($node, "SET ROLE batch_user; SELECT llmgw.submit_batch(ARRAY['[1]'::jsonb], 'bm')"),
	qr/^22023/, 'a request that is not an object with messages is refused');
like(LlmgwTest::error_of($node, "SET ROLE batch_user; SELECT llmgw.submit_batch(ARRAY['{\"messages\":[]}'::jsonb], 'nope')"),
	qr/^42704/, 'an unknown model is refused');
like(LlmgwTest::error_of($node, "SET ROLE batch_user; SET llmgw.batch_max_requests = 2; SELECT llmgw.submit_batch(array_fill('{\"messages\":[]}'::jsonb, ARRAY[3]), 'bm')"),
	qr/^54000/, 'more requests than llmgw.batch_max_requests are refused');
like(LlmgwTest::error_of($node, "SET ROLE batch_other; SELECT llmgw.submit_batch(ARRAY['{\"messages\":[]}'::jsonb], 'bm', $job, ARRAY['1'])"),
	qr/^42501/, 'another role\'s job cannot be fed');
like(LlmgwTest::error_of($node, "SET ROLE batch_other; SELECT llmgw.cancel_job($job)"),
	qr/^42704/, 'another role\'s job cannot be cancelled');
like(LlmgwTest::error_of($node, "SET ROLE batch_user; UPDATE llmgw.batches SET state = 'ingesting'"),
	qr/^42501/, 'batches are not writable by their owner');
is($node->safe_psql('postgres', 'SET ROLE batch_other; SELECT count(*) FROM llmgw.batches'), '0',
	'a role sees only its own batches');
# a whole batch that the provider fails
$node->safe_psql('postgres', q{
	CREATE TABLE t2 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t2 SELECT g, 'two ' || g, NULL FROM generate_series(1, 4) g;
	GRANT SELECT, UPDATE ON t2 TO batch_user});
($job) = enrich('batch_user', 't2', 'bm-fail', 100);
wait_job($job, 'finished');
is($node->safe_psql('postgres', "SELECT state, last_error IS NOT NULL FROM llmgw.batches WHERE job_id = $job"),
	'failed|t', 'a batch the provider fails ends failed, with its reason');
is($node->safe_psql('postgres', "SELECT rows_failed, (SELECT count(*) FROM t2 WHERE summary IS NOT NULL) FROM llmgw.jobs WHERE id = $job"),
	'4|0', 'its rows count as failed and stay NULL');

# ---- cancel
$node->safe_psql('postgres', q{
	CREATE TABLE t3 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t3 SELECT g, 'three ' || g, NULL FROM generate_series(1, 6) g;
	GRANT SELECT, UPDATE ON t3 TO batch_user});
$before = LlmgwTest::mock_batch();
($job) = enrich('batch_user', 't3', 'bm-slow', 100);
$node->poll_query_until('postgres', "SELECT provider_batch_id IS NOT NULL FROM llmgw.batches WHERE job_id = $job")
  or die 'not submitted';
$node->safe_psql('postgres', "SET ROLE batch_user; SELECT llmgw.cancel_job($job)");
wait_job($job, 'stopped');
is(grown($before), '1/1/0/1/2', 'the provider batch is cancelled once');
is($node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE summary IS NOT NULL) FROM t3"), '3',
	'the results the provider returned are written');
is($node->safe_psql('postgres', "SELECT string_agg(status, ',' ORDER BY status) FROM llmgw.usage WHERE job_id = $job"),
	'cancelled,cancelled,cancelled,ok,ok,ok', 'the cancelled items have their usage rows');

# ---- kill -9 of a worker while the batch waits at the provider
sub kill_worker { LlmgwTest::kill_worker($node, 2); }
$node->safe_psql('postgres', q{
	CREATE TABLE t4 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t4 SELECT g, 'four ' || g, NULL FROM generate_series(1, 6) g;
	GRANT SELECT, UPDATE ON t4 TO batch_user});
$before = LlmgwTest::mock_batch();
($job) = enrich('batch_user', 't4', 'bm-slow', 100);
$node->poll_query_until('postgres', "SELECT provider_batch_id IS NOT NULL FROM llmgw.batches WHERE job_id = $job")
  or die 'not submitted';
kill_worker();
wait_job($job, 'finished');
is(grown($before), '1/1/0/0/1', 'after a crash while waiting: one upload, one create, one download');
is($node->safe_psql('postgres', "SELECT (SELECT count(*) FROM t4 WHERE summary IS NOT NULL), count(*), count(DISTINCT request_id) FROM llmgw.usage WHERE job_id = $job"),
	'6|6|6', 'every row written once, one usage row each');

# ---- kill -9 of a worker halfway through writing the results (worker 0
# alone, a result per transaction: test/t/036 kills a helper)
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET llmgw.batch_ingest_chunk = 1;
	ALTER SYSTEM SET llmgw.batch_ingest_helpers = 0;
	SELECT pg_reload_conf();
	CREATE TABLE t5 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t5 SELECT g, 'five ' || g, NULL FROM generate_series(1, 6) g;
	GRANT SELECT, UPDATE ON t5 TO batch_user;
	CREATE SEQUENCE t5_writes;
	GRANT USAGE ON SEQUENCE t5_writes TO batch_user;
	-- the third answer written sleeps: the worker is killed meanwhile
	CREATE FUNCTION t5_slow() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    IF nextval('t5_writes') = 3 THEN PERFORM pg_sleep(60); END IF;
	    RETURN NEW;
	END $$;
	CREATE TRIGGER t5_slow BEFORE UPDATE ON t5 FOR EACH ROW EXECUTE FUNCTION t5_slow();
});
$before = LlmgwTest::mock_batch();
($job) = enrich('batch_user', 't5', 'bm', 100);
$node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'llmgw worker' AND wait_event = 'PgSleep'})
  or die 'the results are not being written';
is($node->safe_psql('postgres', "SELECT count(*) FROM t5 WHERE summary IS NOT NULL"), '2',
	'two results written when the worker is killed');
kill_worker();
wait_job($job, 'finished');
is(grown($before), '1/1/0/0/2', 'after a crash while ingesting: one upload, one create, the output fetched again');
is($node->safe_psql('postgres', "SELECT (SELECT count(*) FROM t5 WHERE summary IS NOT NULL), count(*), count(DISTINCT request_id) FROM llmgw.usage WHERE job_id = $job"),
	'6|6|6', 'every row written once, one usage row each, none twice');
is($node->safe_psql('postgres', "SELECT rows_done, rows_failed FROM llmgw.jobs WHERE id = $job"), '6|0',
	'the job counts each row once');

# ---- a cancel goes to the provider when it commits, not at the next poll
# (polls every 10 minutes here: longer than the harness waits)
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET llmgw.batch_poll_interval = '10min';
	SELECT pg_reload_conf();
	CREATE TABLE t6 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t6 SELECT g, 'six ' || g, NULL FROM generate_series(1, 4) g;
	GRANT SELECT, UPDATE ON t6 TO batch_user});
($job) = enrich('batch_user', 't6', 'bm-slow', 100);
$node->poll_query_until('postgres', "SELECT provider_batch_id IS NOT NULL FROM llmgw.batches WHERE job_id = $job")
  or die 'not submitted';
$before = LlmgwTest::mock_batch();
$node->safe_psql('postgres', "SET ROLE batch_user; SELECT llmgw.cancel_job($job)");
my $deadline = time + $PostgreSQL::Test::Utils::timeout_default;
sleep 0.1 while LlmgwTest::mock_batch()->{cancels} == $before->{cancels} && time < $deadline;
is(grown($before), '0/0/0/1/0', 'with a poll every 10 minutes, the cancel reaches the provider at once');

$node->stop;
done_testing();
