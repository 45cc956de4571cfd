# A worker that dies mid-call never leaves its caller hanging, and the next
# call works: SIGTERM restarts the worker alone (the caller gets an
# "interrupted" error and the usage row says so); SIGKILL restarts the
# whole cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('restart', 1);
is($node->safe_psql('postgres', "SELECT llm_complete('hi', 'demo')"),
	'Hello! You said: hi', 'a call works');

my $worker_pid = q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker'};

# SIGTERM: the postmaster restarts that worker, which finds the orphaned call
my ($h, $out, $err) = LlmgwTest::background($node, "SELECT llm_complete('x', 'slow')");
LlmgwTest::wait_for_call($node);
kill 'TERM', $node->safe_psql('postgres', $worker_pid);
$h->finish;
like($$err, qr/LG006.*interrupted by a worker or server restart/, 'caller gets an interrupted error');
is($node->safe_psql('postgres',
		'SELECT status, error_class FROM llmgw.usage ORDER BY id DESC LIMIT 1'),
	'interrupted|interrupted', 'the usage row says interrupted');
ok($node->poll_query_until('postgres', "SELECT llm_complete('again', 'demo') = 'Hello! You said: again'"),
	'the next call works after a worker restart');

# an asynchronous call whose worker dies is queued again at once and
# answered; its first try is an interrupted usage row
$node->safe_psql('postgres', "SELECT llmgw.create_model('slowish', 'mock', 'mock-model;delay:1500')");
my $async = $node->safe_psql('postgres', q{
	SELECT llmgw.submit('{"model": "slowish", "messages": [{"role": "user", "content": "async"}]}')});
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM llmgw.calls_in_flight WHERE async_id = $async");
kill 'TERM', $node->safe_psql('postgres', $worker_pid);
is($node->safe_psql('postgres', "SELECT status FROM llmgw.wait($async, '60 seconds')"), 'done',
	'an asynchronous call whose worker died is answered');
is($node->safe_psql('postgres', qq{
	SELECT a.attempts, (SELECT count(*) FROM llmgw.usage u
	                     WHERE u.async_id = a.id AND u.status = 'interrupted')
	  FROM llmgw.async_calls a WHERE a.id = $async}), '2|1',
	'it was taken twice, its first try recorded as interrupted');

# SIGKILL: crash restart of the cluster; the caller is disconnected, not hung
($h, $out, $err) = LlmgwTest::background($node, "SELECT llm_complete('x', 'slow')");
LlmgwTest::wait_for_call($node);
kill 'KILL', $node->safe_psql('postgres', $worker_pid);
$h->finish;
like($$err, qr/terminat|server closed the connection|connection to server/,
	'caller is disconnected by the crash restart');
ok($node->poll_query_until('postgres', "SELECT llm_complete('back', 'demo') = 'Hello! You said: back'"),
	'the next call works after a crash restart');
my $rows_before = $node->safe_psql('postgres', "SELECT count(*) FROM llmgw.usage WHERE status = 'ok'");
cmp_ok($rows_before, '>=', 2, 'settled usage rows survived the crash');

$node->stop;
done_testing();
