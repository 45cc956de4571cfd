# Secret files an llmgw_admin (not a superuser) may use: those inside
# llmgw.secret_directory (docs/security.md).  A file inside works; a
# symbolic link inside that leads out of it is refused when the file is read
# (LG005); a file with a header line after the key is refused (LG005) and
# nothing is sent.  Each case runs on a server of its own with
# restart_after_crash off, so that a worker that dies reading the file stops
# that server only (the regression suite's server would restart in a loop:
# every restarted worker loads the configuration again).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $key = $ENV{LLMGW_TEST_KEY} or BAIL_OUT('LLMGW_TEST_KEY is not set');
my $mock = $ENV{LLMGW_MOCK_URL};
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $dir = "$tmp/secrets";
mkdir $dir or die $!;
sub put
{
	my ($path, $text) = @_;
	open my $fh, '>', $path or die "$path: $!";
	print $fh $text;
	close $fh;
	chmod 0600, $path;
}
put("$dir/provider.key", "$key\n");
put("$tmp/outside.key", "$key\n");
put("$dir/injected.key", "$key\nX-Injected: 1\n");
symlink("$tmp/outside.key", "$dir/link-out.key") or die $!;
symlink("$dir/provider.key", "$dir/link-in.key") or die $!;

my $case = 0;
my @crashes;

# On a new server, as an admin: a provider whose secret is file:$file, and a
# call through it; returns what the call gave (the answer or the error)
sub admin_call
{
	my ($file, $model) = @_;
	my $node = LlmgwTest::node('files' . ++$case, 1, conf => qq{
llmgw.secret_directory = '$dir'
restart_after_crash = off
});
	$node->safe_psql('postgres', qq{
		CREATE ROLE regress_files_admin LOGIN IN ROLE llmgw_admin;
		SET ROLE regress_files_admin;
		SELECT llmgw.create_provider('files', 'openai_compatible', '$mock', secret => 'file:$dir/$file');
		SELECT llmgw.create_model('files', 'files', '$model');
		RESET ROLE;});
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET ROLE regress_files_admin; SELECT llm_complete('x', 'files')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my $log = slurp_file($node->logfile);
	my $crashed = $log =~ /terminated by signal|buffer overflow detected/;
	if ($crashed)
	{
		my ($how) = $log =~ /was terminated by (signal \d+: \w+)/;
		my $why = $log =~ /buffer overflow detected/ ? ', *** buffer overflow detected ***' : '';
		push @crashes, "$file (" . ($how // 'crash') . "$why)";
	}
	ok(!$crashed, "file:$file: the server keeps running (no worker dies reading the file)");
	$node->stop('fast', fail_ok => 1);
	my $got = $out ne '' ? $out : $err;
	$got =~ s/\Q$key\E/<provider key>/g;
	return $got;
}

like(admin_call('provider.key', 'mock-model;echo_auth'), qr/^Bearer <provider key>$/,
	'a file inside llmgw.secret_directory works for an admin: the key is sent');
like(admin_call('link-in.key', 'mock-model;echo_auth'), qr/^Bearer <provider key>$/,
	'so does a symbolic link that stays inside');
like(admin_call('link-out.key', 'link-out;echo_auth'),
	qr/LG005.*the secret file is outside llmgw\.secret_directory/s,
	'a symbolic link out of the directory is refused when the file is read (LG005)');
like(admin_call('injected.key', 'injected;echo_auth'),
	qr/LG005.*the secret is empty or contains control characters/s,
	'a file with a header line after the key is refused (LG005)');
is(LlmgwTest::mock_requests('link-out;echo_auth', 'injected;echo_auth'), 0,
	'and nothing was sent with those');

note(sprintf('figures: %d of %d secret files crashed a worker%s', scalar(@crashes), $case,
	@crashes ? ': ' . join('; ', @crashes) : ''));
done_testing();
