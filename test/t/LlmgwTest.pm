# Helpers of the llmgw TAP tests: a node with llmgw loaded and configured
# against the mock, and a psql running in the background.
package LlmgwTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use IPC::Run;
use IO::Socket::INET;
use Test::More;

# A started node with llmgw, the mock provider and models demo and slow;
# $extra_conf (optional) is appended to postgresql.conf after llmgw's own
# lines, so it may override them (shared_preload_libraries, say)
sub node
{
	my ($name, $workers, $extra_conf) = @_;
	my $mock = $ENV{LLMGW_MOCK_URL} or BAIL_OUT('LLMGW_MOCK_URL is not set');
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'llmgw'\nllmgw.workers = $workers\nrestart_after_crash = on\n"
		  . ($extra_conf // ''));
	$node->start;
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION llmgw;
		SELECT llmgw.create_provider('mock', 'openai_compatible', '$mock',
		                             secret => 'env:LLMGW_TEST_KEY');
		SELECT llmgw.create_model('demo', 'mock', 'mock-model');
		SELECT llmgw.create_model('slow', 'mock', 'mock-model;delay:10000');
	});
	return $node;
}

# Run sql in a background psql; returns the harness and refs to its output
sub background
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	my $timer = IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default);
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'),
		  '-c', $sql ],
		'>', \$out, '2>', \$err, $timer);
	return ($h, \$out, \$err);
}

# How many requests the mock provider saw for the model strings given
sub mock_requests
{
	my (@models) = @_;
	my $port = $ENV{LLMGW_MOCK_PORT} or BAIL_OUT('LLMGW_MOCK_PORT is not set');
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
	  or BAIL_OUT("cannot reach the mock: $!");
	print $s "GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	my $body = do { local $/; <$s> };
	my $total = 0;
	for my $model (@models)
	{
		my $q = quotemeta($model);
		my ($n) = $body =~ /"$q"\s*:\s*(\d+)/;
		$total += $n // 0;
	}
	return $total;
}

# Wait until some session sleeps in an llmgw call
sub wait_for_call
{
	my ($node) = @_;
	return $node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE wait_event_type = 'Extension' AND query LIKE '%llm_complete%'
		   AND backend_type = 'client backend'});
}

1;
