# A server stopped in immediate mode while calls are in flight: after the
# restart every settled usage row is there, the calls in flight are
# recorded as interrupted, and the budget ledger matches the usage rows.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('restart', 2);
my $key = $node->safe_psql('postgres', q{
	SELECT llmgw.create_model('metered', 'mock', 'metered-model', price_model => 'metered-model');
	SELECT llmgw.create_model('metered-slow', 'mock', 'metered-model;delay:4000',
	                          price_model => 'metered-model');
	SELECT llmgw.set_price('metered-model', 0, 0, per_request => 0.01);
	SELECT llmgw.create_team('restart');
	SELECT api_key FROM llmgw.create_key('restart', 'k');});
$key = (split /\n/, $key)[-1];
$node->safe_psql('postgres',
	"SELECT llmgw.create_budget('team budget', 'team', 'restart', 'month', 1)");

# five calls settle
for my $i (1 .. 5)
{
	$node->safe_psql('postgres',
		"SET llmgw.api_key = '$key'; SELECT llm_complete('settled $i', 'metered', max_tokens => 5)");
}
# eight are in flight when the server stops
my @bg;
for my $i (1 .. 8)
{
	push @bg, [ LlmgwTest::background($node,
		"SET llmgw.api_key = '$key'; SELECT llm_complete('in flight $i', 'metered-slow', max_tokens => 5)") ];
}
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 8 FROM llmgw.calls_in_flight"),
	'the calls in flight are journaled');
is($node->safe_psql('postgres',
		"SELECT reserved > 0 FROM llmgw.budget_status WHERE name = 'team budget'"),
	't', 'they hold a reservation');

# and three asynchronous calls are queued or running
my @async = map {
	$node->safe_psql('postgres', qq{SET llmgw.api_key = '$key';
		SELECT llmgw.submit('{"model": "metered-slow", "max_tokens": 5,
		                      "messages": [{"role": "user", "content": "async $_"}]}')});
} 1 .. 3;
@async = map { (split /\n/)[-1] } @async;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM llmgw.async_calls WHERE status = 'running'")
	  && $node->poll_query_until('postgres',
		"SELECT count(*) = 11 FROM llmgw.calls_in_flight"),
	'the asynchronous calls are running, and journaled');

$node->stop('immediate');
$_->[0]->finish for @bg;
$node->start;

ok($node->poll_query_until('postgres',
		"SELECT count(*) FROM llmgw.usage WHERE status = 'interrupted'", '11'),
	'after the restart the calls in flight (8 and 3 asynchronous) are recorded as interrupted');
# after the restart the asynchronous calls are taken again, at once
for my $id (@async)
{
	is($node->safe_psql('postgres', "SELECT status FROM llmgw.wait($id, '60 seconds')")
			. '|' . $node->safe_psql('postgres', "SELECT attempts FROM llmgw.async_calls WHERE id = $id"),
		'done|2', "asynchronous call $id survives the restart and is answered");
}

is($node->safe_psql('postgres', q{
	SELECT count(*), sum(cost) FROM llmgw.usage WHERE status = 'ok'}), '8|0.08',
	'no settled usage row is missing');
is($node->safe_psql('postgres', 'SELECT count(*) FROM llmgw.calls_in_flight'), '0',
	'the journal is empty');
is($node->safe_psql('postgres',
		"SET llmgw.api_key = '$key'; SELECT llm_complete('after', 'metered', max_tokens => 5)"),
	'Hello! You said: after', 'calls work after the restart');
# an interrupted call is charged as the provider may have billed it: here
# the per-request price, 0.01 (docs/failures.md); 9 answered + 11 interrupted
is($node->safe_psql('postgres', q{
	SELECT sum(cost) FILTER (WHERE status = 'interrupted'), min(usage_source)
	  FROM llmgw.usage WHERE status = 'interrupted'}),
	'0.11|estimated', 'interrupted calls are priced by estimate');
is($node->safe_psql('postgres', q{
	SELECT spent, reserved, ledger_spent FROM llmgw.budget_status WHERE name = 'team budget'}),
	'0.20|0|0.2', 'the budget is correct: spent = usage rows = ledger, nothing reserved');
is($node->safe_psql('postgres', q{
	SELECT team_id IS NOT NULL AND key_id IS NOT NULL FROM llmgw.usage
	 WHERE status = 'interrupted' LIMIT 1}), 't', 'interrupted rows keep key and team');

$node->stop;
done_testing();
