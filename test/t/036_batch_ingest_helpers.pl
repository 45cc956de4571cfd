# The helpers of worker 0's batch ingest (docs/batch.md, "Worker 0";
# src/batch_helper.c): a results file of more than one chunk is written by
# worker 0 and llmgw.batch_ingest_helpers background workers at once.
# Each case counts what a job left exactly: one usage row per item, each
# row of the table written once with its own answer (an AFTER UPDATE
# trigger logs every write that commits), the job's counts, the rollups
# and the budget's spend equal to the usage rows.  The helpers' rollup
# rows (shard 65 - k) show that they wrote.  Then the hostile cases: a
# helper killed with kill -9 while it writes (the server restarts), the
# helpers kept for the next file and llmgw's tables changed meanwhile, a
# helper terminated (pg_terminate_backend: worker 0 sees its chunk
# unanswered and writes the results again later), worker 0 killed while a
# helper writes, llmgw's tables changed (llmgw.batch_ingest writes every
# chunk), no background worker slot for a helper (worker 0
# writes alone), and helpers off.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $rows = 400;
my $node = LlmgwTest::node('ingest_helpers', 2,
	conf => "llmgw.batch_poll_interval = 100\nllmgw.batch_ingest_chunk = 20\n"
	  . "llmgw.batch_ingest_helpers = 2\nmax_worker_processes = 16\n");
$node->safe_psql('postgres', q{
	SELECT llmgw.set_price('hp', input => 2, output => 4, batch_input => 1, batch_output => 2);
	SELECT llmgw.create_model('hm', 'mock', 'batch-model', price_model => 'hp');
	SELECT llmgw.create_team('ht');
	SELECT llmgw.create_budget('ht total', 'team', 'ht', 'total', 100);
	CREATE ROLE hu LOGIN IN ROLE llmgw_user;
	SELECT llmgw.bind_role('hu', 'ht');
});
LlmgwTest::log_writes($node, 'hu');

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub table
{
	my ($t) = @_;
	sq(qq{
		CREATE TABLE $t (id int PRIMARY KEY, body text, summary text);
		INSERT INTO $t SELECT g, 'row ' || g, NULL FROM generate_series(1, $rows) g;
		GRANT SELECT, UPDATE ON $t TO hu;
		CREATE TRIGGER ${t}_log AFTER UPDATE ON $t FOR EACH ROW EXECUTE FUNCTION log_write();
	});
}

sub enrich
{
	my ($t) = @_;
	my ($job) = LlmgwTest::batch_enrich($node, 'hu',
		"CALL llmgw.enrich('$t', 'id', \$\$'Summarise: ' || body\$\$, 'summary', 'hm', max_tokens => 50, mode => 'batch', retry => 'none')");
	return $job;
}

# What a job left: usage rows and distinct items, rows written once with
# their own answers, its counts, its rollups, the budget's spend against
# the usage rows of the team
sub outcome
{
	my ($job, $t) = @_;
	return sq(qq{
		SELECT (SELECT count(*) || '/' || count(DISTINCT tags->>'custom_id') FROM llmgw.usage WHERE job_id = $job),
		       (SELECT count(*) FILTER (WHERE summary = 'Hello! You said: Summarise: row ' || id) FROM $t),
		       (SELECT count(*) || '/' || count(DISTINCT id) FROM writes WHERE tab = '$t'),
		       (SELECT rows_done || '/' || rows_failed || '/' || status FROM llmgw.jobs WHERE id = $job),
		       (SELECT (SELECT sum(calls) FROM llmgw.usage_daily WHERE batch)
		               = (SELECT count(*) FROM llmgw.usage WHERE batch_id IS NOT NULL)),
		       (SELECT s.spent = (SELECT sum(u.cost) FROM llmgw.usage u JOIN llmgw.teams t ON t.id = u.team_id WHERE t.name = 'ht')
		           AND s.ledger_spent = s.spent AND s.reserved = 0
		          FROM llmgw.budget_status s WHERE s.name = 'ht total')});
}

my $done = "$rows/$rows|$rows|$rows/$rows|$rows/0/finished|t|t";

# the calls the helpers' shards hold (65 - k), and worker 0's (1)
sub by_helpers { return sq('SELECT coalesce(sum(calls), 0) FROM llmgw.usage_daily WHERE batch AND shard > 60'); }
sub by_worker0 { return sq('SELECT coalesce(sum(calls), 0) FROM llmgw.usage_daily WHERE batch AND shard = 1'); }

# Wait until the two workers run (after a restart)
sub workers_back
{
	$node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")
	  or die 'the workers did not come back';
}

# Settings changed, then the server restarted
sub restart_with
{
	my ($sql) = @_;
	sq($sql);
	$node->restart;
	workers_back();
}

# Enrich a new table $t through a batch; returns the job once it ended
sub job_on
{
	my ($t) = @_;
	table($t);
	my $job = enrich($t);
	LlmgwTest::wait_job_end($node, $job);
	return $job;
}

# ---- two helpers and worker 0 write twenty chunks
my $job = job_on('t1');
is(outcome($job, 't1'), $done, 'twenty chunks: every item one usage row, every row written once with its answer, counts, rollups and budget exact');
my $helped = by_helpers();
cmp_ok($helped, '>', 0, "helpers wrote chunks ($helped rows)");
cmp_ok(by_worker0(), '>', 0, 'worker 0 wrote chunks too');
# ---- the helpers stay for the next file (two seconds): a second job's
# chunks, then a third's after someone added a trigger on llmgw.batch_items
# while they waited (llmgw.batch_ingest writes its chunks: the direct
# path's share lock on the batch's row went with its subtransaction, so
# worker 0's and a helper's chunks wait for each other's commits, not
# for each other's locks)
$job = job_on('t8');
is(outcome($job, 't8'), $done, 'the next job, helpers left from the last: every item once');
sq(q{CREATE FUNCTION items_seen() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
     CREATE TRIGGER items_seen AFTER UPDATE ON llmgw.batch_items FOR EACH ROW EXECUTE FUNCTION items_seen()});
$job = job_on('t9');
is(outcome($job, 't9'), $done, 'llmgw\'s tables changed while helpers waited: every item once');
ok(!$node->log_contains(qr/deadlock detected/), 'no deadlock');
sq('DROP TRIGGER items_seen ON llmgw.batch_items');

# they end once worker 0 has had no results to write for two seconds
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'llmgw batch ingest'"),
	'the helpers ended after the last file');

# A helper's first write of $t sleeps 60 s (a helper's rollup shard is 65 - k)
sub helper_sleeps
{
	my ($t) = @_;
	sq(qq{
		CREATE SEQUENCE ${t}_sleeps;
		GRANT USAGE ON SEQUENCE ${t}_sleeps TO hu;
		CREATE FUNCTION ${t}_slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
		    IF current_setting('llmgw.rollup_shard') IN ('63', '64') AND nextval('${t}_sleeps') = 1 THEN
		        PERFORM pg_sleep(60);
		    END IF;
		    RETURN NEW;
		END \$\$;
		CREATE TRIGGER ${t}_slow BEFORE UPDATE ON $t FOR EACH ROW EXECUTE FUNCTION ${t}_slow()});
}

sub sleeping_helper
{
	my $q = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw batch ingest' AND wait_event = 'PgSleep'};
	$node->poll_query_until('postgres', "SELECT count(*) > 0 FROM ($q) s") or die 'no helper sleeps';
	return sq($q);
}

# ---- kill -9 of a helper while it writes: the server restarts, the job ends exact
table('t2');
helper_sleeps('t2');
$job = enrich('t2');
my $pid = sleeping_helper();
kill 'KILL', $pid;
workers_back();
LlmgwTest::wait_job_end($node, $job);
is(outcome($job, 't2'), $done, 'a helper killed with kill -9 mid-chunk: after the restart, nothing lost, nothing twice');
ok($node->log_contains(qr/background worker "llmgw batch ingest" \(PID $pid\) was terminated by signal 9/),
	'the server log names the helper killed');

# ---- a helper terminated mid-chunk: worker 0 writes the rest, then reads the results again
table('t3');
helper_sleeps('t3');
my $downloads = LlmgwTest::mock_batch()->{downloads};
$job = enrich('t3');
$pid = sleeping_helper();
sq("SELECT pg_terminate_backend($pid)");
LlmgwTest::wait_job_end($node, $job);
is(outcome($job, 't3'), $done, 'a helper terminated mid-chunk: its chunk written later, once');
is(LlmgwTest::mock_batch()->{downloads} - $downloads, 2, 'the results were downloaded twice');

# ---- kill -9 of worker 0 while a helper writes: the helper goes with the server
table('t6');
helper_sleeps('t6');
$job = enrich('t6');
$pid = sleeping_helper();
LlmgwTest::kill_worker($node, 2);
LlmgwTest::wait_job_end($node, $job);
is(outcome($job, 't6'), $done, 'worker 0 killed with kill -9 while a helper writes: nothing lost, nothing twice');
is(sq("SELECT count(*) FROM pg_stat_activity WHERE pid = $pid"), '0', 'the helper went with the restart');

# ---- llmgw's tables changed (a trigger someone added on llmgw.batch_items):
# llmgw.batch_ingest writes the chunks, worker 0 alone once it wrote one
# (a helper left from the last file may write the first: the two wait
# for each other's commits on the batch's row, not for each other's locks)
sq(q{CREATE FUNCTION items_touched() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
     CREATE TRIGGER items_touched AFTER UPDATE ON llmgw.batch_items FOR EACH ROW EXECUTE FUNCTION items_touched()});
my ($h0, $w0);
$job = job_on('t7');
is(outcome($job, 't7'), $done, 'chunks written by llmgw.batch_ingest: every item once');
ok(!$node->log_contains(qr/deadlock detected/), 'no deadlock');
sq('DROP TRIGGER items_touched ON llmgw.batch_items');

# ---- no background worker slot for a helper: worker 0 writes alone (the
# slots: the two llmgw workers and the logical replication launcher)
restart_with('ALTER SYSTEM SET max_worker_processes = 3');
($h0, $w0) = (by_helpers(), by_worker0());
$job = job_on('t4');
is(outcome($job, 't4'), $done, 'no slot for a helper: worker 0 writes every chunk');
is(by_helpers() - $h0, 0, 'no helper wrote');
is(by_worker0() - $w0, $rows, 'worker 0 wrote them all');

# ---- helpers off
restart_with('ALTER SYSTEM RESET max_worker_processes; ALTER SYSTEM SET llmgw.batch_ingest_helpers = 0');
($h0, $w0) = (by_helpers(), by_worker0());
$job = job_on('t5');
is(outcome($job, 't5'), $done, 'llmgw.batch_ingest_helpers = 0: worker 0 alone');
is(by_helpers() - $h0, 0, 'no helper started');

$node->stop;
done_testing();
