# An asynchronous call (a batch job's synchronous retry is one) that
# outlives llmgw.async_lease is not taken a second time while a worker makes
# it, yet one whose server died is (the mock's requests and the usage rows
# counted exactly).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

# a lease of 1 s; asynchronous calls hold at most 2 slots (1% of 200)
my $node = LlmgwTest::node('synccancel', 2,
	conf => "llmgw.batch_poll_interval = 100\nllmgw.async_lease = 1\n"
	  . "llmgw.queue_size = 200\nllmgw.max_share = 1\n");
my $slow = 'mock-model;delay:8000;lease30';
$node->safe_psql('postgres', qq{SELECT llmgw.create_model('lease-slow', 'mock', '$slow')});

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

$node->stop;
done_testing();
