# Provider batches (docs/batch.md) at Anthropic (Message Batches), Gemini
# (batch mode) and Azure OpenAI (global batch), through the mock: for each,
# a job split across batches with per-item failures and expiries, usage
# rows at the batch rates, a whole batch that fails, cancel, a create whose
# answer is lost (found again, not created twice), and kill -9 of a worker
# while waiting and while writing results, with the provider's requests,
# the rows written and the usage rows counted exactly, and no temporary file
# left behind.  Then Gemini answers delivered as a file (responsesFile), the
# caps on a result line and on a results file, and a Gemini job larger than
# one inline batch may carry, sent as an uploaded file (Gemini's resumable
# upload: one start and one upload request).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('batchprov', 2,
	conf => "llmgw.batch_poll_interval = 100\n");
(my $root = $ENV{LLMGW_MOCK_URL}) =~ s{/v1$}{};
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_provider('anth', 'anthropic', '$root/v1', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_provider('gem', 'gemini', '$root/v1beta', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_provider('az', 'azure', '$root', secret => 'env:LLMGW_TEST_KEY',
	                             api_version => '2024-10-21');
	SELECT llmgw.set_price('bp', input => 2, output => 4, batch_input => 1, batch_output => 2);
	CREATE ROLE bu LOGIN IN ROLE llmgw_user;
});
# each provider's models: plain, slow, failing, with its create's answer lost
my %prov = (anthropic => 'anth', gemini => 'gem', azure => 'az');
my %upstream = (anthropic => 'claude-b', gemini => 'gem-b', azure => 'dep-b');
for my $api (sort keys %prov)
{
	my ($p, $u) = ($prov{$api}, $upstream{$api});
	$node->safe_psql('postgres', qq{
		SELECT llmgw.create_model('$api', '$p', '$u', price_model => 'bp');
		SELECT llmgw.create_model('$api-slow', '$p', '$u;batch_ms:2000', price_model => 'bp');
		SELECT llmgw.create_model('$api-fail', '$p', '$u;batch_fail', price_model => 'bp');
		SELECT llmgw.create_model('$api-lost', '$p', '$u;create_lost;job_states', price_model => 'bp');
	});
}

# The mock's counters of a batch API
sub counters
{
	my ($api) = @_;
	return LlmgwTest::mock_stats()->{"batch_$api"};
}

# Growth since $before, as "uploads/creates/lists/cancels/downloads"
sub grown
{
	my ($api, $before) = @_;
	my $now = counters($api);
	return join '/', map { $now->{$_} - $before->{$_} } qw(uploads creates lists cancels downloads);
}

# Temporary files of worker 0 named in the data directory's pgsql_tmp (each
# is unlinked as soon as it is made: there should never be any)
sub temp_files
{
	opendir(my $d, $node->data_dir . '/base/pgsql_tmp') or return 0;
	my $n = grep { /llmgw/ } readdir $d;
	closedir $d;
	return $n;
}

# The unlinked temporary files of batches a process holds open
sub open_temp_files
{
	my ($pid) = @_;
	return scalar grep { (readlink($_) // '') =~ m{/pgsql_tmp/pgsql_tmp_llmgw_batch\.\d+\.\d+ \(deleted\)$} }
	  glob("/proc/$pid/fd/*");
}

sub wait_job
{
	my ($job, $status) = @_;
	$node->poll_query_until('postgres', "SELECT status = '$status' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not become $status: "
	  . $node->safe_psql('postgres', "SELECT string_agg(state || ' ' || coalesce(last_error, ''), '; ') FROM llmgw.batches WHERE job_id = $job");
}

my $tables = 0;
# A new table of n rows the batch user may fill; some bodies given
sub table
{
	my ($n, %bodies) = @_;
	my $t = 'bt' . ++$tables;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $t (id int PRIMARY KEY, body text, summary text);
		INSERT INTO $t SELECT g, 'row ' || g, NULL FROM generate_series(1, $n) g;
		GRANT SELECT, UPDATE ON $t TO bu;
	});
	$node->safe_psql('postgres', "UPDATE $t SET body = '$bodies{$_}' WHERE id = $_") for keys %bodies;
	return $t;
}

sub enrich
{
	my ($table, $model, $max, $extra) = @_;
	my ($out, $err) = ('', '');
	$extra //= '';
	$node->psql('postgres',
		"SET llmgw.batch_max_requests = $max; CALL llmgw.enrich('$table', 'id', \$\$'Summarise: ' || body\$\$, 'summary', '$model', mode => 'batch', retry => 'none'$extra)",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'bu' ]);
	return $err =~ /job (\d+): (\d+) rows queued in (\d+) provider batches/ ? ($1, $2, $3) : die "enrich: $err";
}

sub answered
{
	my ($t) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM $t WHERE summary IS NOT NULL");
}

# What each API asks of the provider for one batch: an upload (OpenAI
# formats), the create, and its results: OpenAI formats download the
# output and error files; Anthropic its results; Gemini's results are in
# the operation, whose GETs once it has finished the mock counts as
# downloads (the poll that sees it finished, and the fetch of its answers)
my %round = (anthropic => '0/3/0/0/3', gemini => '0/3/0/0/6', azure => '3/3/0/0/5');
my ($t, $before, $job, $rows, $batches);
my %one = (anthropic => '0/1/0/0/1', gemini => '0/1/0/0/2', azure => '1/1/0/0/1');

for my $api (qw(anthropic gemini azure))
{
	# ---- the round trip, split into three batches
	my $t = table(10, 3 => 'bad [[fail]]', 7 => 'late [[expire]]');
	my $before = counters($api);
	my ($job, $rows, $batches) = enrich($t, $api, 4);
	is("$rows/$batches", '10/3', "$api: ten rows queued as three batches of at most four");
	wait_job($job, 'finished');
	is(grown($api, $before), $round{$api}, "$api: the provider's requests, counted");
	is(answered($t), '8', "$api: eight rows answered (one failed, one expired)");
	is($node->safe_psql('postgres', "SELECT summary FROM $t WHERE id = 2"), 'Hello! You said: Summarise: row 2',
		"$api: an answer is written as the synchronous path writes it");
	is($node->safe_psql('postgres', "SELECT string_agg(status || ':' || coalesce(error_class, '-') || ':' || s, ',' ORDER BY status, error_class) FROM (SELECT status, error_class, count(*) AS s FROM llmgw.usage WHERE job_id = $job GROUP BY 1, 2) u"),
		'error:expired:1,error:invalid_request:1,ok:-:8', "$api: usage rows: ok, the failed item, the expired item");
	is($node->safe_psql('postgres', "SELECT count(*), count(DISTINCT request_id), count(*) FILTER (WHERE provider = '$prov{$api}' AND upstream_model = '$upstream{$api}' AND batch_id IS NOT NULL) FROM llmgw.usage WHERE job_id = $job"),
		'10|10|10', "$api: one usage row per item, naming the provider and its batch");
	is($node->safe_psql('postgres', qq{
		SELECT rows_done, rows_failed, status, batch_state, cardinality(provider_batch_ids)
		  FROM llmgw.job_progress WHERE id = $job}), '8|1|finished|completed|3', "$api: the job as job_progress shows it");
	# the same prompt synchronously: the same tokens at twice the price
	$node->safe_psql('postgres', "SELECT llm_complete('Summarise: row 2', '$api')");
	is($node->safe_psql('postgres', qq{
		SELECT s.input_tokens = b.input_tokens AND s.output_tokens = b.output_tokens, (s.cost / b.cost)::numeric(4,2)
		  FROM (SELECT * FROM llmgw.usage WHERE batch_id IS NULL AND model = '$api' ORDER BY id DESC LIMIT 1) s,
		       (SELECT u.* FROM llmgw.usage u JOIN llmgw.batch_items i ON i.request_id = u.request_id
		         WHERE i.row_key = '2' AND u.job_id = $job) b}),
		't|2.00', "$api: a batch item has the synchronous call's tokens, at half its cost");

	# ---- a whole batch the provider fails (Anthropic refuses its create)
	$t = table(4);
	($job) = enrich($t, "$api-fail", 100);
	wait_job($job, 'finished');
	is($node->safe_psql('postgres', "SELECT state, last_error IS NOT NULL, (SELECT rows_failed FROM llmgw.jobs WHERE id = $job) FROM llmgw.batches WHERE job_id = $job"),
		'failed|t|4', "$api: a batch the provider fails ends failed with its reason, its rows failed");
	is(answered($t), '0', "$api: its rows stay NULL");

	# ---- cancel
	$t = table(6);
	$before = counters($api);
	($job) = enrich($t, "$api-slow", 100);
	$node->poll_query_until('postgres', "SELECT provider_batch_id IS NOT NULL FROM llmgw.batches WHERE job_id = $job")
	  or die 'not submitted';
	$node->safe_psql('postgres', "SET ROLE bu; SELECT llmgw.cancel_job($job)");
	wait_job($job, 'stopped');
	like(grown($api, $before), qr{^[01]/1/0/1/}, "$api: the provider batch is cancelled once");
	is(answered($t), '3', "$api: the results the provider returned are written");
	is($node->safe_psql('postgres', "SELECT string_agg(status, ',' ORDER BY status) FROM llmgw.usage WHERE job_id = $job"),
		'cancelled,cancelled,cancelled,ok,ok,ok', "$api: the cancelled items have their usage rows");

	# ---- the create's answer is lost: the batch is found again, not created twice
	$t = table(5);
	$before = counters($api);
	($job) = enrich($t, "$api-lost", 100);
	wait_job($job, 'finished');
	my $g = grown($api, $before);
	like($g, qr{^[01]/1/1/0/}, "$api: after a lost create answer, the batch is looked for and not created again ($g)");
	is(answered($t) . '|' . $node->safe_psql('postgres', "SELECT count(*) FROM llmgw.usage WHERE job_id = $job"),
		'5|5', "$api: every row of the batch found again is written once");

	# ---- kill -9 of a worker while the batch waits at the provider
	$t = table(6);
	$before = counters($api);
	($job) = enrich($t, "$api-slow", 100);
	$node->poll_query_until('postgres', "SELECT provider_batch_id IS NOT NULL FROM llmgw.batches WHERE job_id = $job")
	  or die 'not submitted';
	LlmgwTest::kill_worker($node, 2);
	wait_job($job, 'finished');
	is(grown($api, $before), $one{$api}, "$api: after a crash while waiting, one create and one fetch of the results");
	is($node->safe_psql('postgres', "SELECT (SELECT count(*) FROM $t WHERE summary IS NOT NULL), count(*), count(DISTINCT request_id) FROM llmgw.usage WHERE job_id = $job"),
		'6|6|6', "$api: every row written once, one usage row each");

	# ---- kill -9 of a worker halfway through writing the results (worker
	# 0 alone, a result per transaction: test/t/036 kills a helper)
	$t = table(6);
	$node->safe_psql('postgres', qq{
		ALTER SYSTEM SET llmgw.batch_ingest_chunk = 1;
		ALTER SYSTEM SET llmgw.batch_ingest_helpers = 0;
		SELECT pg_reload_conf();
		CREATE SEQUENCE ${t}_writes;
		GRANT USAGE ON SEQUENCE ${t}_writes TO bu;
		CREATE FUNCTION ${t}_slow() RETURNS trigger LANGUAGE plpgsql AS \$\$
		BEGIN
		    IF nextval('${t}_writes') = 3 THEN PERFORM pg_sleep(60); END IF;
		    RETURN NEW;
		END \$\$;
		CREATE TRIGGER ${t}_slow BEFORE UPDATE ON $t FOR EACH ROW EXECUTE FUNCTION ${t}_slow();
	});
	$before = counters($api);
	($job) = enrich($t, $api, 100);
	$node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'llmgw worker' AND wait_event = 'PgSleep'})
	  or die 'the results are not being written';
	is(answered($t), '2', "$api: two results written when the worker is killed");
	my $w0 = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' AND wait_event = 'PgSleep'});
	is(open_temp_files($w0) . '/' . temp_files(), '1/0',
		"$api: worker 0 reads the downloaded results from a temporary file that has no name");
	LlmgwTest::kill_worker($node, 2);
	wait_job($job, 'finished');
	$node->safe_psql('postgres',
		'ALTER SYSTEM RESET llmgw.batch_ingest_chunk; ALTER SYSTEM RESET llmgw.batch_ingest_helpers; SELECT pg_reload_conf()');
	my $again = $api eq 'gemini' ? '0/1/0/0/3' : $api eq 'azure' ? '1/1/0/0/2' : '0/1/0/0/2';
	is(grown($api, $before), $again, "$api: after a crash while writing, one create, the results fetched again");
	is($node->safe_psql('postgres', "SELECT (SELECT count(*) FROM $t WHERE summary IS NOT NULL), count(*), count(DISTINCT request_id), (SELECT rows_done || '/' || rows_failed FROM llmgw.jobs WHERE id = $job) FROM llmgw.usage WHERE job_id = $job"),
		'6|6|6|6/0', "$api: every row written once, one usage row each, the job counts each once");
	is(temp_files(), 0, "$api: no temporary file left behind by the kill -9 and the restart");
}

# ---- Gemini answers as a file (responsesFile), read through the Files API
$node->safe_psql('postgres', "SELECT llmgw.create_model('gemini-file', 'gem', 'gem-b;responses_file', price_model => 'bp')");
$t = table(10, 3 => 'bad [[fail]]', 7 => 'late [[expire]]');
$before = counters('gemini');
($job, $rows, $batches) = enrich($t, 'gemini-file', 4);
wait_job($job, 'finished');
is($node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE output_file_id = 'files/batch-' || provider_batch_id) FROM llmgw.batches WHERE job_id = $job"),
	'3', 'responsesFile: each batch names its answers file');
is(grown('gemini', $before), '0/3/0/0/6', 'responsesFile: three creates, each batch seen finished and its file downloaded once');
is(answered($t), '8', 'responsesFile: eight rows answered (one failed, one expired)');
is($node->safe_psql('postgres', "SELECT summary FROM $t WHERE id = 2"), 'Hello! You said: Summarise: row 2',
	'responsesFile: an answer is written as the synchronous path writes it');
is($node->safe_psql('postgres', "SELECT string_agg(status || ':' || coalesce(error_class, '-') || ':' || s, ',' ORDER BY status, error_class) FROM (SELECT status, error_class, count(*) AS s FROM llmgw.usage WHERE job_id = $job GROUP BY 1, 2) u"),
	'error:expired:1,error:invalid_request:1,ok:-:8', 'responsesFile: usage rows: ok, the failed item, the expired item');
is(temp_files(), 0, 'no temporary file left behind after the batches');

# ---- kill -9 while the answers file is being downloaded
$node->safe_psql('postgres', "SELECT llmgw.create_model('gemini-file-slow', 'gem', 'gem-b;responses_file;batch_download_ms:3000', price_model => 'bp')");
$t = table(4);
$before = counters('gemini');
($job) = enrich($t, 'gemini-file-slow', 100);
$node->poll_query_until('postgres', "SELECT state = 'ingesting' FROM llmgw.batches WHERE job_id = $job")
  or die 'not ingesting';
# the poll that saw it finished, then the file's download asked
for (1 .. 100)
{
	last if counters('gemini')->{downloads} - $before->{downloads} >= 2;
	select(undef, undef, undef, 0.05);
}
my $held = 0;
$held += open_temp_files($_) for split /\n/, $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker'");
is("$held/" . temp_files(), '1/0', 'mid-download: the file being downloaded is open and has no name');
LlmgwTest::kill_worker($node, 2);
wait_job($job, 'finished');
is(grown('gemini', $before), '0/1/0/0/3', 'after a kill -9 mid-download: one create, the poll that saw it finished, the download cut short and the download again');
is(answered($t) . '|' . $node->safe_psql('postgres', "SELECT count(*), count(DISTINCT request_id) FROM llmgw.usage WHERE job_id = $job"),
	'4|4|4', 'after a kill -9 mid-download: every row written once, one usage row each');
is(temp_files(), 0, 'no temporary file left behind by the kill -9 mid-download and the restart');

# ---- a cap passed (a result line, a results file): a clear error on the
# batch, and once the setting is raised, every row written once
sub beyond_cap
{
	my ($setting, $value, $model, $body, $error, $what) = @_;
	$node->safe_psql('postgres', "ALTER SYSTEM SET $setting = $value; SELECT pg_reload_conf()");
	my $t = table(3);
	$node->safe_psql('postgres', "UPDATE $t SET body = $body");
	my ($job) = enrich($t, $model, 100);
	$node->poll_query_until('postgres', "SELECT last_error = '$error' FROM llmgw.batches WHERE job_id = $job")
	  or die "no error for $what: " . $node->safe_psql('postgres', "SELECT state || ' ' || coalesce(last_error, '') FROM llmgw.batches WHERE job_id = $job");
	pass("$what beyond $setting stops the batch with a clear error");
	$node->safe_psql('postgres', "ALTER SYSTEM RESET $setting; SELECT pg_reload_conf()");
	wait_job($job, 'finished');
	is(answered($t) . '|' . $node->safe_psql('postgres', "SELECT count(*) FROM llmgw.usage WHERE job_id = $job"),
		'3|3', "$what: with the cap raised, every row written once");
}
beyond_cap('llmgw.batch_max_result_line', 64, 'gemini-file', "CASE id WHEN 2 THEN repeat('x', 100000) ELSE body END",
	'a line of its results is longer than llmgw.batch_max_result_line (64 kB)', 'a result line');
beyond_cap('llmgw.batch_max_download', 1, 'azure', "repeat('y', 600000)",
	'its results are larger than llmgw.batch_max_download (1 MB)', 'a results file');
is(temp_files(), 0, 'no temporary file left behind after the errors');

# ---- a Gemini job beyond 20 MB of inline requests: an uploaded file (Files API)
$t = table(24);
$node->safe_psql('postgres', "UPDATE $t SET body = repeat('w ', 450000) || id");
$before = counters('gemini');
($job, $rows, $batches) = enrich($t, 'gemini', 100, ', max_tokens => 3');
is("$rows/$batches", '24/1', 'a Gemini job of 24 rows of 900 kB is queued as one batch');
wait_job($job, 'finished');
is($node->safe_psql('postgres', "SELECT count(*), sum(requests), bool_and(state = 'completed'), bool_and(input_file_id LIKE 'files/%'), bool_and(output_file_id LIKE 'files/batch-%') FROM llmgw.batches WHERE job_id = $job"),
	'1|24|t|t|t', 'beyond 20 MB inline, one batch: its requests uploaded as a file, its answers a file');
is(grown('gemini', $before), '1/1/0/0/2', 'one upload request, one create naming the file, the answers file downloaded once');
is(join('/', map { counters('gemini')->{$_} - $before->{$_} } qw(upload_starts upload_queries)), '1/0',
	'the resumable upload: one start, no query');
is($node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE summary = 'Hello! You said:'), (SELECT rows_done FROM llmgw.jobs WHERE id = $job) FROM $t"),
	'24|24', 'every row answered once');
is(temp_files(), 0, 'no temporary file left behind');

# ---- the same with the create's answer lost: found again by its display name, created once
$t = table(3);
$node->safe_psql('postgres', "UPDATE $t SET body = repeat('v ', 4000000) || id");
$before = counters('gemini');
($job) = enrich($t, 'gemini-lost', 100, ', max_tokens => 3');
wait_job($job, 'finished');
like(grown('gemini', $before), qr{^1/1/1/0/[12]$}, 'a file batch whose create answer was lost: one upload request, one create, the list read');
is(counters('gemini')->{upload_starts} - $before->{upload_starts}, 1, 'one start of the upload');
is($node->safe_psql('postgres', "SELECT count(*) FILTER (WHERE summary = 'Hello! You said:'), (SELECT count(*) FROM llmgw.usage WHERE job_id = $job) FROM $t"),
	'3|3', 'every row answered once, one usage row each');

$node->stop;
done_testing();
