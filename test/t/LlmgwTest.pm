# Helpers of the llmgw TAP tests: a node with llmgw loaded and configured
# against the mock, and a psql running in the background.
package LlmgwTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use FindBin;
use IPC::Run;
use IO::Socket::INET;
use JSON::PP;
use Test::More;

# $node->init(%opts), its data directory a copy of the suite's initdb
# template (LLMGW_INITDB_TEMPLATE, made once by test/scripts/test.sh) rather
# than a new initdb: a node then costs a tenth of the time.  Everything
# init does after initdb (pg_hba.conf, the lines it adds to postgresql.conf)
# it still does.  Without a template, or with initdb arguments, a plain init.
sub init
{
	my ($node, %opts) = @_;
	my $template = $ENV{LLMGW_INITDB_TEMPLATE};
	return $node->init(%opts) if !$template || !-d $template || $opts{extra};
	my $system_or_bail = \&PostgreSQL::Test::Utils::system_or_bail;
	no warnings 'redefine';
	local *PostgreSQL::Test::Utils::system_or_bail = sub {
		# initdb -D $pgdata ...: the template copied to $pgdata
		return $system_or_bail->(@_) unless $_[0] eq 'initdb' && $_[1] eq '-D';
		return $system_or_bail->('cp', '-RPp', $template, $_[2]);
	};
	return $node->init(%opts);
}

# A started node with llmgw preloaded, the extension not created.  %opts
# go to init (allows_streaming => 1 for a primary with standbys), except
# conf: lines appended to postgresql.conf after llmgw's own, so that they
# may override them (shared_preload_libraries, say)
sub bare_node
{
	my ($name, $workers, %opts) = @_;
	my $conf = delete $opts{conf} // '';
	my $node = PostgreSQL::Test::Cluster->new($name);
	init($node, %opts);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'llmgw'\nllmgw.workers = $workers\nrestart_after_crash = on\n"
		  . $conf);
	$node->start;
	return $node;
}

# A started node with llmgw, the mock provider and models demo and slow
# (%opts as for bare_node)
sub node
{
	my ($name, $workers, %opts) = @_;
	my $mock = $ENV{LLMGW_MOCK_URL} or BAIL_OUT('LLMGW_MOCK_URL is not set');
	my $node = bare_node($name, $workers, %opts);
	$node->safe_psql('postgres', qq{
		CREATE EXTENSION llmgw;
		SELECT llmgw.create_provider('mock', 'openai_compatible', '$mock',
		                             secret => 'env:LLMGW_TEST_KEY');
		SELECT llmgw.create_model('demo', 'mock', 'mock-model');
		SELECT llmgw.create_model('slow', 'mock', 'mock-model;delay:10000');
	});
	return $node;
}

# A node (as node, two workers, batches polled every 100 ms) with a Gemini
# provider gem on the mock, an embeddings model gemb (price ge: batch input
# at half the price) and a role gu of llmgw_user
sub gemini_batch_node
{
	my ($name) = @_;
	(my $root = $ENV{LLMGW_MOCK_URL}) =~ s{/v1$}{};
	my $node = node($name, 2, conf => "llmgw.batch_poll_interval = 100\n");
	$node->safe_psql('postgres', qq{
		SELECT llmgw.create_provider('gem', 'gemini', '$root/v1beta', secret => 'env:LLMGW_TEST_KEY');
		SELECT llmgw.set_price('ge', input => 2, output => 0, batch_input => 1, batch_output => 0);
		SELECT llmgw.create_model('gemb', 'gem', 'gem-e', price_model => 'ge');
		CREATE ROLE gu LOGIN IN ROLE llmgw_user;
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

# The mock's GET /stats, decoded (the test harness's mock, or the one on $port)
sub mock_stats
{
	my ($port) = @_;
	$port //= $ENV{LLMGW_MOCK_PORT} or BAIL_OUT('LLMGW_MOCK_PORT is not set');
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
	  or BAIL_OUT("cannot reach the mock: $!");
	print $s "GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	my $body = do { local $/; <$s> };
	$body =~ s/^.*?\r\n\r\n//s;
	return JSON::PP::decode_json($body);
}

# kill -9 of an llmgw worker (the server restarts every process); returns
# when the node's $workers workers are back
sub kill_worker
{
	my ($node, $workers) = @_;
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' ORDER BY pid LIMIT 1");
	kill 'KILL', $pid;
	sleep 1;
	$node->poll_query_until('postgres',
		"SELECT count(*) = $workers FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")
	  or die 'the workers did not come back';
}

# The mock's batch counters (uploads, creates, created, lists, ...)
sub mock_batch
{
	my ($port) = @_;
	return mock_stats($port)->{batch};
}

# The growth of the named batch counters since $before, as "n/n/..."
sub mock_batch_grown
{
	my ($before, @names) = @_;
	my $now = mock_batch();
	return join '/', map { $now->{$_} - $before->{$_} } @names;
}

# How many requests the mock provider saw for the model strings given
sub mock_requests
{
	my (@models) = @_;
	my $stats = mock_stats();
	my $total = 0;
	$total += $stats->{by_model}{$_} // 0 for @models;
	return $total;
}

# Batch results written one item per transaction by worker 0 alone (no
# helpers: test/t/036 has theirs), and the writes of $table sleeping 60 s
# at the write numbers given (a BEFORE UPDATE trigger counting them in a
# sequence $role may use): the moment to kill worker 0 while it writes
# results (wait_ingest_sleep)
sub slow_writes
{
	my ($node, $table, $role, @at) = @_;
	my $at = join ', ', @at;
	$node->safe_psql('postgres', qq{
		ALTER SYSTEM SET llmgw.batch_ingest_chunk = 1;
		ALTER SYSTEM SET llmgw.batch_ingest_helpers = 0;
		SELECT pg_reload_conf();
		CREATE SEQUENCE ${table}_writes;
		GRANT USAGE ON SEQUENCE ${table}_writes TO $role;
		CREATE FUNCTION ${table}_slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
		    IF nextval('${table}_writes') IN ($at) THEN PERFORM pg_sleep(60); END IF;
		    RETURN NEW;
		END \$\$;
		CREATE TRIGGER ${table}_slow BEFORE UPDATE ON $table FOR EACH ROW EXECUTE FUNCTION ${table}_slow()});
}

# Every write of a row that commits, by table and row: the table writes
# (tab, id), filled by the trigger function log_write() (an AFTER UPDATE
# row trigger a test adds to its tables) as $role writes
sub log_writes
{
	my ($node, $role) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE writes (tab text, id int);
		GRANT INSERT ON writes TO $role;
		CREATE FUNCTION log_write() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
		    INSERT INTO public.writes VALUES (TG_TABLE_NAME, NEW.id);
		    RETURN NEW;
		END \$\$;
	});
}

# Wait until a worker sleeps in a slow write (slow_writes)
sub wait_ingest_sleep
{
	my ($node) = @_;
	$node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'llmgw worker' AND wait_event = 'PgSleep'})
	  or die 'the results are not being written';
}

# Run a CALL llmgw.enrich(..., mode => 'batch') as a role; returns the job
# id, its rows queued and its provider batches, as its NOTICE says
sub batch_enrich
{
	my ($node, $role, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err, extra_params => [ '-U', $role ]);
	return $err =~ /job (\d+): (\d+) rows queued in (\d+) provider batches/ ? ($1, $2, $3)
	  : die "enrich: $err";
}

# Are a job's synchronous retries (its usage rows outside a batch) all
# priced at the synchronous rates, twice their price's batch rates: t or f
sub sync_rows_priced
{
	my ($node, $job) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT bool_and(u.cost > 0 AND u.cost = llmgw.cost(p, u.input_tokens, u.output_tokens)
		                AND u.cost = 2 * llmgw.cost(llmgw.batch_price(p), u.input_tokens, u.output_tokens))
		  FROM llmgw.usage u JOIN llmgw.prices p ON p.id = u.price_id
		 WHERE u.job_id = $job AND u.batch_id IS NULL});
}

# Wait until a job has ended, however it ended
sub wait_job_end
{
	my ($node, $job) = @_;
	$node->poll_query_until('postgres', "SELECT status <> 'running' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not end";
}

# "SQLSTATE: message" of the error a statement raises, or "ok"
sub error_of
{
	my ($node, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	return $err =~ /ERROR:  ([0-9A-Z]{5}): ([^\n]*)/ ? "$1: $2" : 'ok';
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

# A mock provider of the test's own (its counters its own, its stderr in
# tmp_check/mock_NAME.log), started with the mock's options @args, in the
# background until the test ends; returns its port, and in list context
# its port and pid (to kill it: stop_mock)
my @own_mocks;
END { kill 'TERM', $_ for @own_mocks; }
sub own_mock
{
	my ($name, @args) = @_;
	my $base = "$PostgreSQL::Test::Utils::tmp_check/mock_$name";
	unlink "$base.port";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open STDOUT, '>', '/dev/null';
		open STDERR, '>>', "$base.log";
		exec "$FindBin::Bin/../mock/llmgw-mock", '--port', '0', '--port-file', "$base.port", @args
		  or die "exec: $!";
	}
	push @own_mocks, $pid;
	for (1 .. 200) { last if -s "$base.port"; select undef, undef, undef, 0.05; }
	my $port = do { local (@ARGV, $/) = ("$base.port"); <> } or die "the mock $name did not start";
	chomp $port;
	return wantarray ? ($port, $pid) : $port;
}

# Stop a mock of own_mock with a signal ('KILL' mid-request, 'TERM')
sub stop_mock
{
	my ($pid, $signal) = @_;
	kill $signal, $pid;
	waitpid $pid, 0;
	@own_mocks = grep { $_ != $pid } @own_mocks;
}

# npm_install($dir) for a test that cannot go on without the packages: a
# failed test and the end of the script when they could not be installed;
# else a note of their versions, what naming them
sub npm_ready
{
	my ($dir, $what) = @_;
	unless (npm_install($dir))
	{
		Test::More::fail("npm ci installs the pinned $what into $dir");
		Test::More::done_testing();
		exit;
	}
	my $want = JSON::PP::decode_json(PostgreSQL::Test::Utils::slurp_file("$dir/package.json"))->{dependencies};
	Test::More::note("$what: " . join(', ', map {
		"$_ " . JSON::PP::decode_json(PostgreSQL::Test::Utils::slurp_file("$dir/node_modules/$_/package.json"))
		  ->{version} } sort keys %$want));
	return;
}

# The npm packages pinned in $dir/package.json, installed into $dir once
# from its lock file (npm ci, with a cache of the test's own) unless their
# versions are there already; false (npm's output in the log) when they
# could not be
sub npm_install
{
	my ($dir) = @_;
	my $installed = sub {
		my $want = JSON::PP::decode_json(PostgreSQL::Test::Utils::slurp_file("$dir/package.json"))
		  ->{dependencies};
		for my $pkg (keys %$want)
		{
			my $file = "$dir/node_modules/$pkg/package.json";
			return 0 unless -f $file;
			return 0 unless JSON::PP::decode_json(PostgreSQL::Test::Utils::slurp_file($file))->{version}
			  eq $want->{$pkg};
		}
		return 1;
	};
	return 1 if $installed->();
	my ($out, $err) = ('', '');
	my $cache = PostgreSQL::Test::Utils::tempdir('npm');
	my $ok = IPC::Run::run(
		[ 'npm', 'ci', '--no-audit', '--no-fund', '--prefix', $dir, "--cache=$cache" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(300));
	return 1 if $ok && $installed->();
	Test::More::diag("npm ci in $dir: $out\n$err");
	return 0;
}

# The lines of postgresql.conf that pg_cron needs beside llmgw (and a
# batch poll every 100 ms, so that the recipe's batch is seen done at once)
our $cron_conf = "shared_preload_libraries = 'llmgw,pg_cron'\n"
  . "cron.database_name = 'postgres'\ncron.use_background_workers = on\nmax_worker_processes = 32\n"
  . "llmgw.batch_poll_interval = 100\n";

# The pg_cron recipe of docs/batch.md, run as written: scheduled here (by
# a role of llmgw_user, cron_user, against a mock of its own), it fires at
# the next whole minute (pg_cron 1.4 has no shorter schedule), so a test
# schedules it first and checks it last (cron_recipe_check), in a file that
# runs long without a crash (a crash restart at the minute would skip the
# run).  Returns the mock's port.
sub cron_recipe_schedule
{
	my ($node) = @_;
	my $port = own_mock('cron');
	$node->safe_psql('postgres', qq{
		SELECT llmgw.set_price('cron-price', input => 2, output => 4, batch_input => 1, batch_output => 2);
		SELECT llmgw.create_provider('mock_cron', 'openai_compatible', 'http://127.0.0.1:$port/v1');
		SELECT llmgw.create_model('nightly', 'mock_cron', 'batch-model', price_model => 'cron-price');
		CREATE ROLE cron_user LOGIN IN ROLE llmgw_user;
		CREATE TABLE tickets (id int PRIMARY KEY, body text, summary text);
		INSERT INTO tickets SELECT g, 'ticket ' || g, NULL FROM generate_series(1, 5) g;
		GRANT SELECT, UPDATE ON tickets TO cron_user;
		CREATE EXTENSION pg_cron;
		GRANT USAGE ON SCHEMA cron TO cron_user;
		SET ROLE cron_user;
		SELECT cron.schedule('nightly-tickets', '* * * * *',
		    \$\$CALL llmgw.enrich('public.tickets', 'id', \$q\$'Summarise: ' || body\$q\$, 'summary',
		                        'nightly', mode => 'batch')\$\$);
	});
	return $port;
}

# The pg_cron recipe fired: the batch submitted, its rows filled, nothing
# outstanding (waits for the minute)
sub cron_recipe_check
{
	my ($node, $port) = @_;
	$node->poll_query_until('postgres', q{
		SELECT EXISTS (SELECT 1 FROM llmgw.jobs WHERE source = 'public.tickets' AND rows_total = 5)}, 't')
	  or die 'the pg_cron job did not run';
	my $job = $node->safe_psql('postgres', "SELECT id FROM llmgw.jobs WHERE source = 'public.tickets' AND rows_total = 5");
	$node->poll_query_until('postgres', "SELECT status = 'finished' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not finish";
	is($node->safe_psql('postgres', q{
		SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job c USING (jobid)
		 WHERE c.jobname = 'nightly-tickets' AND d.status = 'succeeded'}),
		't', 'pg_cron recipe: cron.job_run_details shows the run succeeded');
	$node->safe_psql('postgres', "SET ROLE cron_user; SELECT cron.unschedule('nightly-tickets')");
	is($node->safe_psql('postgres', qq{
		SELECT j.owner, j.mode, (SELECT count(*) FROM tickets WHERE summary IS NOT NULL),
		       (SELECT count(*) FROM llmgw.usage u WHERE u.job_id = j.id AND u.batch_id IS NOT NULL),
		       (SELECT count(*) FROM llmgw.batches_outstanding o WHERE o.job_id = j.id)
		  FROM llmgw.jobs j WHERE j.id = $job}),
		'cron_user|batch|5|5|0',
		'pg_cron recipe: run as its role, the batch submitted, its rows filled, nothing outstanding');
	is(mock_batch($port)->{created}, 1, 'pg_cron recipe: the scheduled job made one provider batch');
}

1;
