# Budgets and rate limits under concurrency: 50 sessions call at the same
# instant with one key.  The budget allows exactly 20 calls: exactly 20
# succeed, 30 get the budget error, and the settled spend is the limit.
# The same for a limit of 20 requests per minute.  Also: the key never
# shows in pg_stat_activity, and soft budgets send NOTIFY llmgw_alerts.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('race', 2);
$node->append_conf('postgresql.conf', "max_connections = 120\n");
$node->restart;

my $budget_key = $node->safe_psql('postgres', q{
	SELECT llmgw.create_model('metered', 'mock', 'metered-model;delay:300',
	                          price_model => 'metered-model');
	SELECT llmgw.set_price('metered-model', 0, 0, per_request => 0.01);
	SELECT llmgw.create_team('race');
	SELECT api_key FROM llmgw.create_key('race', 'budget key');});
$budget_key = (split /\n/, $budget_key)[-1];
my $key_id = $node->safe_psql('postgres', 'SELECT max(id) FROM llmgw.virtual_keys');
$node->safe_psql('postgres',
	"SELECT llmgw.create_budget('twenty calls', 'key', '$key_id', 'total', 0.20)");
my $rpm_key = $node->safe_psql('postgres',
	q{SELECT api_key FROM llmgw.create_key('race', 'rpm key', rpm_limit => 20)});

# Start 50 sessions that block on an advisory lock, release them together,
# and return (successes, errors matching $expect, other errors).
sub race
{
	my ($key, $model, $expect) = @_;
	my ($gate, $gout, $gerr) = LlmgwTest::background($node,
		"SELECT pg_advisory_lock(4242); SELECT pg_sleep(600)");
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND granted");
	my @runs;
	for my $i (1 .. 50)
	{
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'),
			  '-c', "SET llmgw.api_key = '$key'",
			  '-c', 'SELECT pg_advisory_lock_shared(4242)',
			  '-c', "SELECT llm_complete('call $i', '$model', max_tokens => 5)" ],
			'>', \$out, '2>', \$err,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		push @runs, [ $h, \$out, \$err ];
	}
	$node->poll_query_until('postgres',
		"SELECT count(*) = 50 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
	$node->safe_psql('postgres', q{
		SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		 WHERE query LIKE '%pg_advisory_lock(4242)%' AND pid <> pg_backend_pid()});
	$gate->finish;
	my ($ok, $refused, $other) = (0, 0, '');
	for my $r (@runs)
	{
		$r->[0]->finish;
		if (${ $r->[1] } =~ /Hello! You said/) { $ok++ }
		elsif (${ $r->[2] } =~ $expect) { $refused++ }
		else { $other .= ${ $r->[2] } }
	}
	return ($ok, $refused, $other);
}

my ($ok, $refused, $other) = race($budget_key, 'metered', qr/LG010: budget "twenty calls" is exhausted/);
is($ok, 20, 'budget: exactly 20 of 50 concurrent calls succeed');
is($refused, 30, 'budget: the other 30 get LG010') or diag($other);
is($node->safe_psql('postgres', q{
	SELECT spent, reserved, ledger_spent, remaining FROM llmgw.budget_status
	 WHERE name = 'twenty calls'}), '0.20|0|0.2|0',
	'settled spend is exactly the limit, nothing left reserved');
is($node->safe_psql('postgres', q{
	SELECT count(*), sum(cost) FROM llmgw.usage WHERE status = 'ok' AND model = 'metered'}),
	'20|0.20', 'one priced usage row per successful call');

($ok, $refused, $other) = race($rpm_key, 'demo', qr/LG011: rate limit of virtual key lgw_[0-9a-f]+ reached/);
is($ok, 20, 'rpm: exactly 20 of 50 concurrent calls succeed');
is($refused, 30, 'rpm: the other 30 get LG011') or diag($other);

# The key is never visible in pg_stat_activity
my ($h, $out, $err) = LlmgwTest::background($node,
	"SET llmgw.api_key = '$rpm_key'; SELECT pg_sleep(3)");
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event = 'PgSleep'");
my $activity = $node->safe_psql('postgres',
	"SELECT query FROM pg_stat_activity WHERE wait_event = 'PgSleep'");
unlike($activity, qr/lgw_/, 'the key does not appear in pg_stat_activity');
like($activity, qr/statement hidden/, 'the statement that set it is hidden');
$h->finish;
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$rpm_key\E|\Q$budget_key\E/, 'no key in the server log');

# A soft budget sends NOTIFY llmgw_alerts when it is reached
$node->safe_psql('postgres',
	"SELECT llmgw.create_budget('soft team', 'team', 'race', 'day', 0.205, 'soft')");
my ($lout, $lerr) = ('', '');
my $lh = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', 'LISTEN llmgw_alerts',
	  '-c', 'SELECT pg_sleep(4)', '-c', 'SELECT 1' ],
	'>', \$lout, '2>', \$lerr, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(4)'");
$node->safe_psql('postgres', q{
	UPDATE llmgw.budgets SET limit_amount = 1 WHERE name = 'twenty calls';});
$node->safe_psql('postgres',
	"SET llmgw.api_key = '$budget_key'; SELECT llm_complete('over', 'metered', max_tokens => 5)");
$lh->finish;
like($lout . $lerr, qr/llmgw_alerts.*soft team.*soft_limit_reached/s,
	'NOTIFY llmgw_alerts names the budget') or diag($lout . $lerr);
is($node->safe_psql('postgres',
		"SELECT kind, spent FROM llmgw.alerts WHERE budget_name = 'soft team'"
		  . " AND kind <> 'forecast_exhaustion'"),
	'soft_limit_reached|0.21', 'and the alert is a row');

# A call without an output bound holds all that is left of a hard budget
# while it runs, so that it is the only call that can overshoot it.
my $open_key = $node->safe_psql('postgres', q{
	SELECT llmgw.create_model('open', 'mock', 'metered-model;delay:3000', price_model => 'open-price');
	SELECT llmgw.set_price('open-price', 1, 1000);
	SELECT api_key FROM llmgw.create_key('race', 'open key');});
$open_key = (split /\n/, $open_key)[-1];
my $open_id = $node->safe_psql('postgres', 'SELECT max(id) FROM llmgw.virtual_keys');
$node->safe_psql('postgres', "SELECT llmgw.create_budget('open budget', 'key', '$open_id', 'total', 1)");
($h, $out, $err) = LlmgwTest::background($node,
	"SET llmgw.api_key = '$open_key'; SELECT llm_complete('no bound', 'open')");
ok($node->poll_query_until('postgres',
		"SELECT reserved = 1 FROM llmgw.budget_status WHERE name = 'open budget'"),
	'an unbounded call reserves the rest of the budget');
my ($rc, $o, $e) = $node->psql('postgres',
	"SET llmgw.api_key = '$open_key'; SELECT llm_complete('bounded', 'open', max_tokens => 5)");
like($e, qr/budget "open budget" is exhausted/, 'a second call waits for it to settle');
$h->finish;
is($node->safe_psql('postgres',
		"SELECT reserved, spent > 0 FROM llmgw.budget_status WHERE name = 'open budget'"), '0|t',
	'settled, the reservation is released');

$node->stop;
done_testing();
