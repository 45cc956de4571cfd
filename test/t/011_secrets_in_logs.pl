# Secrets out of every log (docs/security.md): every documented way to give
# llmgw a provider secret or to present a virtual key, with a server that
# logs everything it can and pg_stat_statements tracking every statement.
# Afterwards each secret and key (and each key without its 12-character
# prefix) is searched for in the server log, pg_stat_statements,
# pg_stat_activity (sampled while statements run), every llmgw table and
# view but llmgw.provider_secrets, and what the clients received.  The one
# form the docs say to avoid (SET llmgw.api_key under track_utility) must be
# found in pg_stat_statements: the search can fail.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Digest::MD5 qw(md5_hex);
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('secrets', 2, conf => q{
shared_preload_libraries = 'llmgw,pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_utility = on
log_statement = all
log_min_messages = debug1
log_min_error_statement = debug1
log_min_duration_statement = 0
log_parameter_max_length = -1
log_parameter_max_length_on_error = -1
log_error_verbosity = verbose
log_connections = on
log_disconnections = on
});
my $mock = $ENV{LLMGW_MOCK_URL};
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_stat_statements;
	SELECT llmgw.create_model('slow3', 'mock', 'mock-model;delay:3000');
	SELECT llmgw.create_team('leakteam');});

my $tmp = PostgreSQL::Test::Utils::tempdir;
sub hex16 { return sprintf('%08x%08x', int(rand(2**32)), int(rand(2**32))); }
sub secret { my ($n) = @_; return "sk-LEAK-$n-" . hex16(); }
sub md5_of_stored
{
	my ($provider) = @_;
	return $node->safe_psql('postgres',
		"SELECT md5(secret) FROM llmgw.provider_secrets WHERE provider = '$provider'");
}

# everything the clients received, stdout and stderr
my @client;

# psql, one -c per statement (each a simple-protocol query)
sub client
{
	my ($sql, $pgoptions) = @_;
	my ($out, $err) = ('', '');
	local $ENV{PGOPTIONS} = $pgoptions if defined $pgoptions;
	IPC::Run::run([ 'psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d', $node->connstr('postgres'),
					map { ('-c', $_) } @$sql ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @client, $out, $err;
	return ($out, $err);
}

# pgbench -M extended: each :variable is sent as a parameter
my $scripts = 0;
sub pgbench
{
	my ($script, $vars, $mode, $duration) = @_;
	my $file = "$tmp/script" . ++$scripts . '.sql';
	open my $fh, '>', $file or die $!;
	print $fh $script;
	close $fh;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'pgbench', '-n', '-M', $mode // 'extended',
					defined $duration ? ('-T', $duration) : ('-t', 1),
					'-f', $file, (map { ('-D', "$_=$vars->{$_}") } sort keys %$vars),
					$node->connstr('postgres') ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	push @client, $out, $err;
	return ($out, $err);
}

my (%secret, %key);    # what is searched for, by how it was passed
my ($out, $err);

# Provider secrets
$secret{create_provider_literal} = secret(1);
client([ "SELECT llmgw.create_provider('leak1', 'openai_compatible', '$mock', secret => '$secret{create_provider_literal}')" ]);
is(md5_of_stored('leak1'), md5_hex($secret{create_provider_literal}), 'create_provider with a literal secret stores it');

$secret{set_provider_secret_literal} = secret(2);
client([ "SELECT llmgw.set_provider_secret('leak1', '$secret{set_provider_secret_literal}')" ]);
is(md5_of_stored('leak1'), md5_hex($secret{set_provider_secret_literal}), 'set_provider_secret with a literal');

$secret{set_provider_secret_dollar_quoted} = secret(3);
client([ "SELECT llmgw.set_provider_secret('leak1', \$q\$$secret{set_provider_secret_dollar_quoted}\$q\$)" ]);
is(md5_of_stored('leak1'), md5_hex($secret{set_provider_secret_dollar_quoted}), 'set_provider_secret with a dollar-quoted literal');

$secret{set_provider_secret_parameter} = secret(4);
($out, $err) = pgbench("SELECT llmgw.set_provider_secret('leak1', :secret);\n",
	{ secret => $secret{set_provider_secret_parameter} });
is(md5_of_stored('leak1'), md5_hex($secret{set_provider_secret_parameter}),
	'set_provider_secret with the secret as a parameter (extended protocol)') or diag($err);

$secret{create_provider_parameter} = secret(5);
($out, $err) = pgbench("SELECT llmgw.create_provider('leak2', 'openai_compatible', :url, secret => :secret);\n",
	{ url => $mock, secret => $secret{create_provider_parameter} });
is(md5_of_stored('leak2'), md5_hex($secret{create_provider_parameter}),
	'create_provider with the secret as a parameter') or diag($err);

$secret{failing_literal} = secret(6);
($out, $err) = client([ "SELECT llmgw.set_provider_secret('no-such-provider', '$secret{failing_literal}')" ]);
like($err, qr/provider "no-such-provider" does not exist/, 'a failing set_provider_secret (literal)');

$secret{failing_parameter} = secret(7);
($out, $err) = pgbench("SELECT llmgw.set_provider_secret('no-such-provider', :secret);\n",
	{ secret => $secret{failing_parameter} });
like($err, qr/provider "no-such-provider" does not exist/, 'a failing set_provider_secret (parameter)');

$secret{failing_create_provider} = secret(8);
($out, $err) = client([ "SELECT llmgw.create_provider('leak1', 'openai_compatible', '$mock', secret => '$secret{failing_create_provider}')" ]);
like($err, qr/duplicate key value/, 'a failing create_provider (the provider exists)');

$secret{control_character} = secret(9);
($out, $err) = client([ "SELECT llmgw.set_provider_secret('leak1', E'$secret{control_character}\\nX-Injected: 1')" ]);
like($err, qr/22023/, 'a secret with a control character is refused');

# Virtual keys (the creating statement returns each one once)
my @keys = split /\n/, $node->safe_psql('postgres', q{
	SELECT k.api_key FROM generate_series(1, 8) i, LATERAL llmgw.create_key('leakteam', 'k' || i) k ORDER BY i});
my ($k_set_config, $k_pgoptions, $k_dynamic, $k_parameter, $k_sampled, $k_sampled2, $k_race, $k_unsafe) = @keys;
my $k_invalid = 'lgw_' . hex16() . hex16() . hex16() . substr(hex16(), 0, 8);
sub key_id
{
	my ($k) = @_;
	return $node->safe_psql('postgres', "SELECT id FROM llmgw.keys WHERE prefix = '" . substr($k, 0, 12) . "'");
}
sub calls_of
{
	my ($k) = @_;
	return $node->safe_psql('postgres',
		"SELECT count(*) FROM llmgw.usage WHERE status = 'ok' AND key_id = " . key_id($k));
}

$key{set_config} = $k_set_config;
($out, $err) = client([ "SELECT set_config('llmgw.api_key', '$k_set_config', false)",
	'SHOW llmgw.api_key', "SELECT llm_complete('k1', 'demo')" ]);
is(calls_of($k_set_config), 1, 'a key presented with set_config() is used') or diag($err);
like($out, qr/^\Q@{[substr($k_set_config, 0, 12)]}\E\.\.\.$/m, 'SHOW gives the prefix');

$key{pgoptions} = $k_pgoptions;
($out, $err) = client([ "SELECT llm_complete('k2', 'demo')" ], "-c llmgw.api_key=$k_pgoptions");
is(calls_of($k_pgoptions), 1, 'a key presented with PGOPTIONS is used') or diag($err);

$key{failing_dynamic_sql} = $k_dynamic;
($out, $err) = client([ qq{DO \$\$ BEGIN EXECUTE format('SELECT set_config(%L, %L, false)::int', 'llmgw.api_key', '$k_dynamic'); END \$\$} ]);
like($err, qr/invalid input syntax for type integer/, 'a key inside failing dynamic SQL');
like($err, qr/CONTEXT:.*SQL statement/s, 'whose error has a CONTEXT line');

$key{parameter} = $k_parameter;
($out, $err) = pgbench("SELECT set_config('llmgw.api_key', :key, false);\nSELECT llm_complete('k4', 'demo');\n",
	{ key => $k_parameter });
is(calls_of($k_parameter), 1, 'a key presented as a parameter (extended protocol) is used') or diag($err);

$key{invalid} = $k_invalid;
($out, $err) = client([ "SELECT set_config('llmgw.api_key', '$k_invalid', false)",
	"SELECT llm_complete('k5', 'demo')" ]);
like($err, qr/28000/, 'an invalid key is refused');

# pg_stat_activity while a call with a key runs: the statement that set the
# key, alone and within a longer query string
my @activity;
sub sample_activity
{
	my ($why) = @_;
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE wait_event_type = 'Extension' AND backend_type = 'client backend'}), $why);
	for (1 .. 5)
	{
		push @activity, $node->safe_psql('postgres',
			'SELECT pid, state, query FROM pg_stat_activity WHERE pid <> pg_backend_pid()');
		usleep(100_000);
	}
}
$key{sampled_while_running} = $k_sampled;
my ($h, $hout, $herr) = LlmgwTest::background($node,
	"SELECT set_config('llmgw.api_key', '$k_sampled', false), llm_complete('k6', 'slow3')");
sample_activity('a call presenting a key runs');
$h->finish;
push @client, $$hout, $$herr;
is(calls_of($k_sampled), 1, 'and it was made with the key') or diag($$herr);

$key{sampled_query_string} = $k_sampled2;
($h, $hout, $herr) = LlmgwTest::background($node,
	"SELECT set_config('llmgw.api_key', '$k_sampled2', false); SELECT llm_complete('k7', 'slow3')");
sample_activity('a query string that sets a key, then calls, runs');
$h->finish;
push @client, $$hout, $$herr;
is(calls_of($k_sampled2), 1, 'and it was made with the key') or diag($$herr);

# pg_stat_activity sampled as fast as a session can while other sessions run
# the documented statements over and over, the secret as a parameter of the
# extended protocol.  (A literal in the statement text is visible for the
# moment before the function runs: PostgreSQL publishes the text before any
# extension code sees it; docs/security.md says so and recommends this form.)
$node->safe_psql('postgres', 'CREATE TABLE sampled (query text)');
sub race
{
	my ($script, $vars) = @_;
	my ($sh, $sout, $serr) = LlmgwTest::background($node, q{
		DO $$
		DECLARE t0 timestamptz := clock_timestamp();
		BEGIN
			WHILE clock_timestamp() < t0 + interval '3 s' LOOP
				PERFORM pg_stat_clear_snapshot();
				INSERT INTO sampled SELECT a.query FROM pg_stat_activity a
				 WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend';
			END LOOP;
		END
		$$});
	$node->poll_query_until('postgres', 'SELECT count(*) > 0 FROM sampled');
	my ($bout, $berr) = pgbench($script, $vars, 'extended', 2);
	$sh->finish;
	return $berr . $$serr;
}
$key{race} = $k_race;
my $race_err = race("SELECT set_config('llmgw.api_key', :key, false);\n", { key => $k_race });
$secret{race} = secret(10);
$race_err .= race("SELECT llmgw.set_provider_secret('leak2', :secret);\n", { secret => $secret{race} });
is($race_err, '', 'the racing statements ran');
my $samples = $node->safe_psql('postgres', 'SELECT count(*) FROM sampled');
ok($samples > 100, "pg_stat_activity sampled ($samples rows)");

# The form to avoid: SET is a utility statement, stored verbatim
client([ "SET llmgw.api_key = '$k_unsafe'", "SELECT llm_complete('k8', 'demo')" ]);

# Where to look
my %place;
$place{'server log'} = slurp_file($node->logfile);
$place{pg_stat_statements} = $node->safe_psql('postgres', 'SELECT query FROM pg_stat_statements');
$place{pg_stat_activity} = join("\n", @activity,
	$node->safe_psql('postgres', 'SELECT query FROM sampled'),
	$node->safe_psql('postgres', 'SELECT query FROM pg_stat_activity'));
my @relations = split /\n/, $node->safe_psql('postgres', q{
	SELECT c.oid::regclass FROM pg_class c
	 WHERE c.relnamespace = 'llmgw'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
	   AND c.oid <> 'llmgw.provider_secrets'::regclass
	 ORDER BY 1});
$place{"llmgw tables and views"} = join("\n", map {
	$node->safe_psql('postgres', "SELECT t::text FROM $_ t") } @relations);
$place{'client messages'} = join("\n", @client);

# What to look for: every secret, every key, every key but its prefix
my %needle;
$needle{"provider secret, $_"} = $secret{$_} for keys %secret;
for (keys %key)
{
	$needle{"key, $_"} = $key{$_};
	$needle{"key without its prefix, $_"} = substr($key{$_}, 12);
}
my $hits = 0;
my %hits;
for my $p (sort keys %place)
{
	$hits{$p} = 0;
	for my $n (sort keys %needle)
	{
		my $count = () = $place{$p} =~ /\Q$needle{$n}\E/g;
		$hits += $count;
		$hits{$p} += $count;
		is($count, 0, "$p: no $n");
	}
}

# The search finds what is there
like($place{pg_stat_statements}, qr/\Q$k_unsafe\E/,
	'SET llmgw.api_key is stored verbatim by pg_stat_statements (the form docs/security.md says to avoid)');
unlike($place{'server log'}, qr/\Q$k_unsafe\E/, 'but it is not in the server log');
like($place{'server log'}, qr/statement: SELECT llmgw\.set_provider_secret\('\[redacted\]', '\[redacted\]'\)/,
	'the log has the statements, masked');

note(sprintf('figures: %d secrets and keys searched for (%d strings) in %d places (%s; %d llmgw relations, %d pg_stat_activity rows sampled): %d hits',
	scalar(keys %secret) + scalar(keys %key), scalar(keys %needle), scalar(keys %place),
	join(', ', map { "$_: $hits{$_} hits" } sort keys %place), scalar(@relations), $samples, $hits));

$node->stop;
done_testing();
