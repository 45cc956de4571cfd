# Connections to a provider that closes them when idle, as providers do:
# the worker keeps an idle connection in its epoll set until it stirs
# (src/http.c), so a connection the provider closed must leave the set at
# once (else its end-of-file wakes the worker for ever, a busy loop), and the
# next call must open a new connection and succeed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('conns', 1);
my $port = LlmgwTest::own_mock('idle', '--threads', '1', '--idle-ms', '150');
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_provider('closer', 'openai_compatible', 'http://127.0.0.1:$port/v1',
	                             secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_model('idle', 'closer', 'mock-model');
});
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker'});

# The worker's CPU time in clock ticks
sub cpu_ticks
{
	open my $f, '<', "/proc/$pid/stat" or die "stat of $pid: $!";
	my @f = split ' ', (<$f> =~ s/^.*\) //r);
	return $f[11] + $f[12];
}

my $ok = 0;
$ok += $node->safe_psql('postgres', "SELECT llm_complete('one $_', 'idle')") eq "Hello! You said: one $_"
  for 1 .. 20;
is($ok, 20, 'twenty calls in a row on a kept connection');

for my $round (1 .. 3)
{
	usleep(600_000);	# the provider closes the idle connection after 150 ms
	my $before = cpu_ticks();
	usleep(1_000_000);
	my $used = cpu_ticks() - $before;
	cmp_ok($used, '<', 50,
		"round $round: the worker does not spin on a connection the provider closed ($used ticks in a second)");
	is($node->safe_psql('postgres', "SELECT llm_complete('again $round', 'idle')"),
		"Hello! You said: again $round", "round $round: the next call opens a new connection");
}

# Calls in parallel open several connections; all are closed while idle,
# then all are used again
my @bg = map { [ LlmgwTest::background($node, "SELECT llm_complete('par $_', 'idle')") ] } 1 .. 6;
for my $i (0 .. $#bg)
{
	my ($h, $out) = @{ $bg[$i] };
	$h->finish;
	like($$out, qr/Hello! You said: par \d/, "parallel call $i answered");
}
usleep(600_000);
my $before = cpu_ticks();
usleep(1_000_000);
cmp_ok(cpu_ticks() - $before, '<', 50, 'no spinning after several connections were closed');
my $again = $node->safe_psql('postgres',
	"SELECT count(*) FROM generate_series(1, 10) g WHERE llm_complete('last ' || g, 'idle') LIKE 'Hello!%'");
is($again, 10, 'calls after that succeed');
is($node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE status = 'ok') || '/' || count(*) FROM llmgw.usage WHERE model = 'idle'"),
	'39/39', 'every call has its ok usage row');

$node->stop;
done_testing();
