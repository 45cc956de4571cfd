# pg_cancel_backend() aborts the HTTP transfer in flight: the caller gets
# 57014 and the worker records the call as cancelled instead of waiting
# for the provider's answer.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('cancel', 2);

my ($h, $out, $err) = LlmgwTest::background($node, "SELECT llm_complete('x', 'slow')");
LlmgwTest::wait_for_call($node);
is($node->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	 WHERE wait_event_type = 'Extension' AND query LIKE '%llm_complete%'
	   AND backend_type = 'client backend'}), 't', 'cancel sent');
$h->finish;
like($$err, qr/57014.*canceling statement due to user request/, 'caller gets 57014');
is($node->safe_psql('postgres',
		'SELECT status, error_class, http_status IS NULL FROM llmgw.usage ORDER BY id DESC LIMIT 1'),
	'cancelled|cancelled|t', 'the transfer was aborted and recorded as cancelled');

# pg_terminate_backend of the caller: the worker still aborts and records it
($h, $out, $err) = LlmgwTest::background($node, "SELECT llm_complete('y', 'slow')");
LlmgwTest::wait_for_call($node);
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE wait_event_type = 'Extension' AND query LIKE '%llm_complete%'
	   AND backend_type = 'client backend'});
$h->finish;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM llmgw.usage WHERE status = 'cancelled'"),
	'a terminated caller\'s call is cancelled and recorded');
is($node->safe_psql('postgres', "SELECT llm_complete('ok', 'demo')"), 'Hello! You said: ok',
	'calls work afterwards');

$node->stop;
done_testing();
