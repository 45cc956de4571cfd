# Failure isolation: one session's row that llmgw.usage refuses must not cost
# other sessions their usage rows.  A test-only trigger refuses every row
# tagged "poison".  Session A calls with that tag while sessions B and C
# call the same slow model at the same time, so that their calls settle in
# the same worker rounds.  Every call of B and C succeeds with its row (and
# its own tags); A's calls fail with LG007, but their rows are written
# without the tags, so that the usage rows match the provider requests the
# mock counted, and the budget counts A's calls too.  While the calls run,
# llmgw.calls_in_flight shows them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use JSON::PP;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $upstream = 'iso-model;delay:300';
(my $mock_root = $ENV{LLMGW_MOCK_URL}) =~ s{/v1/?$}{};
my $http = HTTP::Tiny->new(timeout => 10);

# How many requests the mock saw for the model string since the last reset
sub mock_requests
{
	my $r = $http->get("$mock_root/stats");
	die "mock /stats: $r->{status}" unless $r->{success};
	return decode_json($r->{content})->{by_model}{$upstream} // 0;
}

my $node = LlmgwTest::node('isolation', 2);

$node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('iso', 'mock', '$upstream', price_model => 'iso-price');
	SELECT llmgw.set_price('iso-price', 0, 0, per_request => 0.01);
	SELECT llmgw.create_budget('iso model', 'model', 'iso', 'day', 100, 'soft');
	CREATE ROLE iso_a IN ROLE llmgw_user;
	CREATE ROLE iso_b IN ROLE llmgw_user;
	CREATE ROLE iso_c IN ROLE llmgw_user;
});

# The usage rows go to the monthly partitions (made first) or the default
# one; a BEFORE ROW trigger on the partitioned table reaches them all.
$node->safe_psql('postgres', 'SELECT llmgw.create_usage_partitions(1)');
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.iso_poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.tags ? 'poison' THEN
			RAISE EXCEPTION 'poisoned usage row';
		END IF;
		RETURN NEW;
	END
	$$;
	CREATE TRIGGER iso_poison BEFORE INSERT ON llmgw.usage
		FOR EACH ROW EXECUTE FUNCTION public.iso_poison();
});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
	 WHERE t.tgname = 'iso_poison' AND c.relname ~ '^usage_(default|\d{4}_\d{2})$'}),
	$node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_inherits WHERE inhparent = 'llmgw.usage'::regclass}),
	'the trigger is on every partition of llmgw.usage');

my $r = $http->post("$mock_root/reset");
ok($r->{success}, 'mock counters reset');

# A gate (an advisory lock) so that the three sessions start together
my ($gate) = LlmgwTest::background($node, 'SELECT pg_advisory_lock(4343); SELECT pg_sleep(600)');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND granted");

my $prompts = "ARRAY(SELECT 'call ' || i FROM generate_series(1, 20) i)";
my %sql = (
	a => "SET ROLE iso_a; SET llmgw.tags = '{\"poison\": 1}';",
	b => "SET ROLE iso_b; SET llmgw.tags = '{\"session\": \"b\"}';",
	c => "SET ROLE iso_c; SET llmgw.tags = '{\"session\": \"c\"}';");
my %run;
for my $s (qw(a b c))
{
	my @cmd = ('psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'),
		'-c', $sql{$s}, '-c', 'SELECT pg_advisory_lock_shared(4343)');
	if ($s eq 'c')
	{
		# session C: twenty statements of one call each
		push @cmd, '-c', "SELECT llm_complete('call $_', 'iso')" for 1 .. 20;
	}
	else
	{
		# sessions A and B: one statement of twenty calls, four at a time
		push @cmd, '-c', "SELECT coalesce(sqlstate, 'ok') || ' ' || coalesce(error, answer)
			FROM llm_complete_many($prompts, 'iso', concurrency => 4, on_error => 'continue')
			ORDER BY ordinality";
	}
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$run{$s} = [ $h, \$out, \$err ];
}
$node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE query LIKE '%pg_advisory_lock(4343)%' AND pid <> pg_backend_pid()});
$gate->finish;

# while they run, the calls in flight are in the view
ok($node->poll_query_until('postgres', q{
	SELECT count(DISTINCT role_name) = 3 AND bool_and(model = 'iso')
	  FROM llmgw.calls_in_flight}),
	'llmgw.calls_in_flight shows the calls of the three sessions');

$_->[0]->finish for values %run;

my @a = split /\n/, ${ $run{a}[1] };
my @b = split /\n/, ${ $run{b}[1] };
my @c = split /\n/, ${ $run{c}[1] };
is(scalar(grep { /^ok Hello! You said: call \d+$/ } @b), 20, 'session B: 20 answers')
  or diag(${ $run{b}[1] } . ${ $run{b}[2] });
is(scalar(grep { /^Hello! You said: call \d+$/ } @c), 20, 'session C: 20 answers')
  or diag(${ $run{c}[1] } . ${ $run{c}[2] });
is(scalar(grep { /^LG007 / } @a), 20, 'session A: 20 calls fail with LG007 (usage_not_recorded)')
  or diag(${ $run{a}[1] } . ${ $run{a}[2] });
like((grep { /^LG007 / } @a)[0] // '', qr/the call's usage could not be recorded/,
	'A\'s error says its usage could not be recorded');

my $requests = mock_requests();
is($requests, 60, 'the mock saw 60 requests');
is($node->safe_psql('postgres', q{SELECT count(*) FROM llmgw.usage WHERE model = 'iso'}),
	$requests, 'one usage row per provider request');
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s %s %s %s', role_name, n, tags, cost), ', ' ORDER BY role_name)
	  FROM (SELECT role_name, count(*) n, string_agg(DISTINCT coalesce(tags::text, 'untagged'), '/') tags,
	               sum(cost) cost
	          FROM llmgw.usage WHERE model = 'iso' GROUP BY role_name) s}),
	'iso_a 20 untagged 0.20, iso_b 20 {"session": "b"} 0.20, iso_c 20 {"session": "c"} 0.20',
	'A\'s rows are there without tags; B\'s and C\'s keep their own tags; all priced');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM llmgw.usage WHERE model = 'iso' AND status = 'ok'}),
	'60', 'every row records an answered attempt');
is($node->safe_psql('postgres', q{
	SELECT spent, ledger_spent FROM llmgw.budget_status WHERE name = 'iso model'}),
	'0.60|0.6', 'the budget counts A\'s calls too (spent and ledger)');
is($node->safe_psql('postgres', 'SELECT count(*) FROM llmgw.calls_in_flight'), '0',
	'nothing is left in flight');

my $log = slurp_file($node->logfile);
my $warnings = () = $log =~
  /WARNING:  llmgw recorded the usage of a call to model "iso" without its tags: poisoned usage row/g;
is($warnings, 20, 'the server log has a warning for each of A\'s calls');
unlike($log, qr/llmgw could not record the usage/, 'no usage row was given up');
my $rounds = () = $log =~ /could not record a round of usage rows at once/g;
diag("rounds written call by call: $rounds");

# one more such call on its own: its DETAIL says the row went without its tags
my ($rc, $out, $err) = $node->psql('postgres',
	"SET ROLE iso_a; SET llmgw.tags = '{\"poison\": 2}'; SELECT llm_complete('alone', 'iso')",
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/LG007: .*usage could not be recorded.*DETAIL: .*without llmgw\.tags.*poisoned usage row/s,
	'LG007 with a DETAIL naming the tags and the reason') or diag($err);
is($node->safe_psql('postgres', q{
	SELECT count(*), count(*) FILTER (WHERE tags IS NULL) FROM llmgw.usage WHERE role_name = 'iso_a'}),
	'21|21', 'and its row is written without tags');

$node->stop;
done_testing();
