# Fair share (docs/security.md): one llmgw_user floods the gateway with
# 1,024 slow calls at once while another makes 20 single calls.  The other
# role is served at once (far below the slow model's delay, never 53000),
# the flooder holds at most llmgw.max_share (50%) of llmgw.queue_size slots
# and of the calls the workers run at once, a second flooding session of the
# same role gets LG012 with llmgw.share_wait = off, and the flood completes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $flood = 1024;
my $delay = 2000;       # ms, each flooding call
my $others = 20;
my $node = LlmgwTest::node('share', 2);
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('flood', 'mock', 'flood-model;delay:$delay');
	CREATE ROLE regress_flooder LOGIN IN ROLE llmgw_user;
	CREATE ROLE regress_other LOGIN IN ROLE llmgw_user;
	-- n single calls, one after the other: how many answered, the errors,
	-- the slowest call in ms
	CREATE FUNCTION single_calls(n int, OUT ok int, OUT errors text, OUT max_ms float8)
	LANGUAGE plpgsql AS \$\$
	DECLARE
		t0 timestamptz;
	BEGIN
		ok := 0; errors := ''; max_ms := 0;
		FOR i IN 1 .. n LOOP
			t0 := clock_timestamp();
			BEGIN
				PERFORM llm_complete('single call ' || i, 'demo');
				ok := ok + 1;
			EXCEPTION WHEN OTHERS THEN
				errors := errors || SQLSTATE || ' ' || SQLERRM || ';';
			END;
			max_ms := greatest(max_ms, extract(epoch FROM clock_timestamp() - t0) * 1000);
		END LOOP;
	END
	\$\$;});
my ($queue_size, $max_share, $workers, $max_connections) = split /\|/, $node->safe_psql('postgres', q{
	SELECT current_setting('llmgw.queue_size'), current_setting('llmgw.max_share'),
	       current_setting('llmgw.workers'), current_setting('llmgw.max_connections')});
my $slot_cap = int($queue_size * $max_share / 100);
my $running_cap = int($workers * $max_connections * $max_share / 100);

sub as_role
{
	my ($role, $sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres') . " user=$role",
		  '-c', $sql ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return ($h, \$out, \$err);
}

# The flood: every prompt at once
my ($fh, $fout, $ferr) = as_role('regress_flooder', qq{
	SELECT count(answer), count(*) FILTER (WHERE sqlstate IS NOT NULL)
	  FROM llm_complete_many(array(SELECT 'flood ' || i FROM generate_series(1, $flood) i),
	                         'flood', concurrency => $flood, on_error => 'continue')});
ok($node->poll_query_until('postgres',
		"SELECT calls_queued + calls_in_flight >= $slot_cap FROM llmgw.stats()"),
	"the flood fills its share of the slots ($slot_cap)");

# Meanwhile: the other role's single calls, and a second flooding session of
# the flooder that will not wait
my ($oh, $oout, $oerr) = as_role('regress_other', "SELECT * FROM single_calls($others)");
my ($sh, $sout, $serr) = as_role('regress_flooder', qq{
	SET llmgw.share_wait = off;
	SELECT count(*) FROM llm_complete_many(array(SELECT 'second ' || i FROM generate_series(1, 10) i),
	                                       'flood', concurrency => 10)});
my ($lh, $lout, $lerr) = as_role('regress_flooder', q{
	SET llmgw.share_wait = off;
	SELECT llm_complete('one more', 'flood')});

# What the gateway holds while the flood runs
my ($peak_slots, $peak_running, $samples) = (0, 0, 0);
while ($fh->pumpable)
{
	$fh->pump_nb;
	my ($slots, $running) = split /\|/, $node->safe_psql('postgres',
		'SELECT calls_queued + calls_in_flight, calls_in_flight FROM llmgw.stats()');
	$peak_slots = $slots if $slots > $peak_slots;
	$peak_running = $running if $running > $peak_running;
	$samples++;
	usleep(20_000);
}
$fh->finish;
$oh->finish;
$sh->finish;
$lh->finish;

chomp($$fout, $$oout);
is($$fout, "$flood|0", "the flood completes: all $flood calls answered") or diag($$ferr);
my ($other_ok, $other_errors, $other_max_ms) = split /\|/, $$oout;
is($other_ok, $others, "the other role's $others calls all succeed") or diag($$oerr);
is($other_errors, '', 'none of them fails (no 53000, no LG012)');
ok(defined $other_max_ms && $other_max_ms < 1500,
	sprintf('each answered far below the flood\'s %d ms delay (slowest %.0f ms)', $delay, $other_max_ms // -1));
ok($peak_slots <= $slot_cap + 1,
	"the flooder held at most $max_share% of the $queue_size slots (peak $peak_slots of all slots in use, the other role's one included)");
ok($peak_running <= $running_cap + 1,
	"the workers ran at most $max_share% of $workers x $max_connections calls of one role at once (peak $peak_running)");
like($$serr, qr/LG012.*holds its whole share/s,
	'a second flooding session of the same role gets LG012 with llmgw.share_wait = off');
like($$lerr, qr/LG012/, 'so does a single call of that role');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM llmgw.usage WHERE role_name = 'regress_flooder' AND status = 'ok'"),
	$flood, 'one usage row per flooding call');
is($node->safe_psql('postgres', q{
		SELECT (SELECT max(recorded_at) FROM llmgw.usage WHERE role_name = 'regress_other')
		     < (SELECT max(recorded_at) FROM llmgw.usage WHERE role_name = 'regress_flooder')}),
	't', "the other role's calls were served while the flood ran");

note(sprintf('figures: flood %d calls of %d ms (concurrency %d), other role %d/%d calls ok, slowest %.0f ms; peak %d of %d slots in use (cap %d per role), peak %d calls running (cap %d); %d samples',
	$flood, $delay, $flood, $other_ok // 0, $others, $other_max_ms // -1, $peak_slots, $queue_size,
	$slot_cap, $peak_running, $running_cap, $samples));

$node->stop;
done_testing();
