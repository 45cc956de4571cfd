# More llmgw workers than max_worker_processes leaves room for: the server
# starts, says so with a WARNING, and llmgw.stats() shows how many of the
# configured workers run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = PostgreSQL::Test::Cluster->new('workers');
LlmgwTest::init($node);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'llmgw'
llmgw.workers = 8
max_worker_processes = 6
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION llmgw');

ok($node->log_contains(qr/WARNING:  only \d of the 8 llmgw workers could be registered/),
	'the server log says that not every llmgw worker could be registered');
ok($node->log_contains(qr/HINT:  Raise max_worker_processes/), 'and how to fix it');
$node->poll_query_until('postgres',
	'SELECT workers_running > 0 FROM llmgw.stats()');
my ($configured, $running) = split /\|/,
  $node->safe_psql('postgres', 'SELECT workers_configured, workers_running FROM llmgw.stats()');
is($configured, 8, 'stats() shows the workers configured');
cmp_ok($running, '<', 8, 'and fewer running');
$node->stop;
done_testing();
