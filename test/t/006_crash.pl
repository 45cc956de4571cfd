# kill -9 under load, of an llmgw worker and of a caller backend: the
# postmaster crash-restarts, and within seconds every call that was in
# flight has its "interrupted" usage row, priced by estimate and counted by
# its budget; asynchronous calls that were running are taken again at once.
# Nothing is lost: usage rows = the requests the mock provider received.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('crash', 2);
# model strings of this test only: the mock counts them apart
my $slow = 'crash-slow;delay:3000';
my $busy = 'crash-busy;delay:150';
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('crash-slow', 'mock', '$slow', price_model => 'crash-price');
	SELECT llmgw.create_model('crash-busy', 'mock', '$busy', price_model => 'crash-price');
	SELECT llmgw.set_price('crash-price', input => 1, output => 2, per_request => 0.001);
	SELECT llmgw.create_team('crash');
	SELECT llmgw.bind_role('postgres', 'crash');
	SELECT llmgw.create_budget('crash team', 'team', 'crash', 'month', 1000, 'soft');
});

# pgbench clients calling the busy model without a pause, until killed
my $script = $node->basedir . '/busy.sql';
open my $fh, '>', $script or die;
print $fh "SELECT llm_complete('busy call', 'crash-busy', max_tokens => 5);\n";
close $fh;

# Start the load: 4 sessions with 50 slow calls each, pgbench on the busy
# model, and asynchronous calls; wait until the slow ones are all in flight
sub start_load
{
	my ($round) = @_;
	my @sessions = map {
		[ LlmgwTest::background($node,
			"SELECT count(*) FROM llm_complete_many(array_fill('slow $round $_'::text, ARRAY[50]),"
			  . " 'crash-slow', max_tokens => 10, concurrency => 50)") ]
	} 1 .. 4;
	my $pgbench = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', '60', '-f', $script,
		  $node->connstr('postgres') ],
		'>', \my $out, '2>', \my $err);
	my @async = map {
		(split /\n/, $node->safe_psql('postgres', qq{
			SELECT llmgw.submit('{"model": "crash-slow", "max_tokens": 10,
			                      "messages": [{"role": "user", "content": "async $round $_"}]}')}))[-1]
	} 1 .. 5;
	$node->poll_query_until('postgres',
		"SELECT count(*) >= 205 FROM llmgw.calls_in_flight WHERE model = 'crash-slow'")
	  or die 'the slow calls did not all start';
	sleep(1);					# the busy calls come and go meanwhile
	return (\@sessions, $pgbench, \@async);
}

# Crash with kill -9 of $victim; returns the seconds until every call of
# the dead life is recorded (no journal of a dead life left)
sub crash_and_recover
{
	my ($victim, $sessions, $pgbench) = @_;
	my $in_flight = $node->safe_psql('postgres', 'SELECT count(*) FROM llmgw.calls_in_flight');
	my $t0 = time();
	kill 'KILL', $victim;
	$_->[0]->finish for @$sessions;
	$pgbench->finish;
	# the postmaster restarts on its own (restart_after_crash)
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM pg_ls_dir('pg_llmgw') f WHERE f LIKE 'dead.%'})
	  or die 'the calls of the dead life were not recorded';
	return ($in_flight, time() - $t0);
}

# After a crash: the checks, and the figures for the record
sub check
{
	my ($what, $in_flight, $seconds, $async) = @_;

	# asynchronous calls: taken again at once, answered, their first try recorded
	for my $id (@$async)
	{
		is($node->safe_psql('postgres', "SELECT status FROM llmgw.wait($id, '60 seconds')"),
			'done', "$what: asynchronous call $id is answered after the crash");
	}
	my $ids = join(',', @$async);
	is($node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE a.attempts = 2),
		       count(*) FILTER (WHERE EXISTS (SELECT 1 FROM llmgw.usage u
		                        WHERE u.async_id = a.id AND u.status = 'interrupted'))
		  FROM llmgw.async_calls a WHERE a.id IN ($ids)}), '5|5',
		"$what: each asynchronous call was taken twice, its first try recorded as interrupted");

	# every request the provider received has its usage row, and no more
	my $rows = $node->safe_psql('postgres',
		"SELECT count(*) FROM llmgw.usage WHERE model IN ('crash-slow', 'crash-busy')");
	my $requests = LlmgwTest::mock_requests($slow, $busy);
	is($rows, $requests, "$what: usage rows = requests the provider received");
	my $interrupted = $node->safe_psql('postgres',
		"SELECT count(*) FROM llmgw.usage WHERE status = 'interrupted' AND error_class = 'interrupted'"
		  . " AND model IN ('crash-slow', 'crash-busy')");
	cmp_ok($interrupted, '>=', 205, "$what: the calls in flight are interrupted rows");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM llmgw.usage
		 WHERE status = 'interrupted' AND (usage_source IS DISTINCT FROM 'estimated'
		       OR cost IS NULL OR team_id IS NULL)}), '0',
		"$what: priced by estimate, with their team");
	# the budget counts every row: the ledger was reloaded after recovery
	$node->poll_query_until('postgres', q{
		SELECT spent = ledger_spent FROM llmgw.budget_status WHERE name = 'crash team'})
	  or diag($node->safe_psql('postgres', 'SELECT * FROM llmgw.budget_status'));
	is($node->safe_psql('postgres', q{
		SELECT b.spent = u.cost AND b.ledger_spent = u.cost
		  FROM llmgw.budget_status b,
		       (SELECT sum(cost) AS cost FROM llmgw.usage WHERE team_id IS NOT NULL) u
		 WHERE b.name = 'crash team'}), 't',
		"$what: budget spent = ledger = the usage rows' cost");
	note(sprintf('figures: %s: %d calls in flight at the kill; %d usage rows, %d provider requests; '
		  . 'recovered in %.2f s', $what, $in_flight, $rows, $requests, $seconds));
}

# 1. kill -9 of an llmgw worker
my ($sessions, $pgbench, $async) = start_load(1);
my $worker = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' LIMIT 1");
my ($in_flight, $seconds) = crash_and_recover($worker, $sessions, $pgbench);
check('worker killed', $in_flight, $seconds, $async);

# 2. kill -9 of a caller backend
($sessions, $pgbench, $async) = start_load(2);
my $caller = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity
	 WHERE backend_type = 'client backend' AND query LIKE '%llm_complete_many%' LIMIT 1});
($in_flight, $seconds) = crash_and_recover($caller, $sessions, $pgbench);
check('caller killed', $in_flight, $seconds, $async);

is($node->safe_psql('postgres', "SELECT llm_complete('after', 'demo')"),
	'Hello! You said: after', 'calls work after the crashes');
$node->stop;
done_testing();
