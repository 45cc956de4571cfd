# Provider batches (docs/batch.md) killed at every stage: kill -9 of worker
# 0 while its upload is in flight, between the upload and the create
# (state submitting, no create in flight), after a create reached the
# provider but before its answer was recorded (found again by its marker),
# and a whole-server restart (fast, then immediate) while the results are
# written; and an output file with lines that are not JSON objects.  After each, the mock's counters and the rows are counted
# exactly: no batch created twice, no result or usage row lost or doubled.
# (The pg_cron recipe of docs/batch.md runs in 016, which has no crash.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IO::Socket::INET;
use JSON::PP;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('batch_crash', 2, conf => "llmgw.batch_poll_interval = 100\n");
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('bc-upload', 'mock', 'batch-model;batch_upload_ms:3000', price_model => 'bc-price');
	SELECT llmgw.create_model('bc-busy', 'mock', 'batch-model;batch_create_busy', price_model => 'bc-price');
	SELECT llmgw.create_model('bc-create', 'mock', 'batch-model;batch_create_ms:3000', price_model => 'bc-price');
	SELECT llmgw.create_model('bc-create-late', 'mock', 'batch-model;batch_create_ms:30000', price_model => 'bc-price');
	SELECT llmgw.create_model('bc', 'mock', 'batch-model', price_model => 'bc-price');
	SELECT llmgw.set_price('bc-price', input => 2, output => 4, batch_input => 1, batch_output => 2);
	SELECT llmgw.create_model('bc-junk', 'mock', 'batch-model;batch_garbage', price_model => 'bc-price');
	CREATE ROLE batch_user LOGIN IN ROLE llmgw_user;
});
sub table
{
	my ($t, $n) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $t (id int PRIMARY KEY, body text, summary text);
		INSERT INTO $t SELECT g, '$t ' || g, NULL FROM generate_series(1, $n) g;
		GRANT SELECT, UPDATE ON $t TO batch_user});
}

# The counters' growth since $before: "uploads/creates/created/lists/downloads"
sub grown
{
	return LlmgwTest::mock_batch_grown($_[0], qw(uploads creates created lists downloads));
}

sub enrich
{
	my ($table, $model) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres',
		"CALL llmgw.enrich('$table', 'id', \$\$'Summarise: ' || body\$\$, 'summary', '$model', mode => 'batch')",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'batch_user' ]);
	return $err =~ /job (\d+): \d+ rows queued/ ? $1 : die "enrich: $err";
}

sub wait_job
{
	my ($job) = @_;
	$node->poll_query_until('postgres', "SELECT status = 'finished' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not finish";
}

sub kill_worker0 { LlmgwTest::kill_worker($node, 2); }

# Each row written once, with one usage row, every item done, the job
# counting each row once, and one batch that ended completed
sub exactly_once
{
	my ($job, $table, $n, $what) = @_;
	is($node->safe_psql('postgres', qq{
		SELECT (SELECT count(*) FROM $table WHERE summary = 'Hello! You said: Summarise: ' || body),
		       (SELECT count(*) || '/' || count(DISTINCT request_id) || '/' || count(*) FILTER (WHERE status = 'ok')
		          FROM llmgw.usage WHERE job_id = $job),
		       (SELECT string_agg(state || ':' || c, ',') FROM (SELECT i.state, count(*) AS c
		          FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id
		         WHERE b.job_id = $job GROUP BY 1) s),
		       (SELECT count(*) FROM llmgw.usage u JOIN llmgw.batch_items i ON i.request_id = u.request_id
		         WHERE u.job_id = $job),
		       (SELECT string_agg(state, ',') FROM llmgw.batches WHERE job_id = $job),
		       (SELECT rows_done || '/' || rows_failed || '/' || status FROM llmgw.jobs WHERE id = $job)}),
		"$n|$n/$n/$n|done:$n|$n|completed|$n/0/finished", "$what: every row once, one usage row per item");
}

# ---- kill -9 while the upload is in flight (the mock has the file and
# answers 3 s late): the batch is uploaded again, the first file unused
table('up', 6);
my $before = LlmgwTest::mock_batch();
my $job = enrich('up', 'bc-upload');
for (1 .. 100) { last if LlmgwTest::mock_batch()->{uploads} > $before->{uploads}; select undef, undef, undef, 0.1; }
is($node->safe_psql('postgres', "SELECT state FROM llmgw.batches WHERE job_id = $job"), 'queued',
	'the upload reached the provider, its answer not yet');
kill_worker0();
wait_job($job);
is(grown($before), '2/1/1/0/1', 'killed mid-upload: uploaded again, created once, no list needed');
exactly_once($job, 'up', 6, 'killed mid-upload');

# ---- kill -9 between the upload and the create: the first create was
# refused (503), so the batch waits in state submitting with no create in
# flight; after the restart the provider's list is read (the create's
# outcome is not known to the new worker) and, no batch having the
# marker, it is created.  The create is tried again after twice a poll
# interval (at most 1 s): polls of a second here, so that the test sees the
# refused create's two seconds on a loaded machine (with the node's 100 ms,
# 200 ms could pass between two of its queries)
table('sub', 6);
$node->safe_psql('postgres', "ALTER SYSTEM SET llmgw.batch_poll_interval = 1000; SELECT pg_reload_conf()");
sleep 1;
$before = LlmgwTest::mock_batch();
$job = enrich('sub', 'bc-busy');
$node->poll_query_until('postgres', "SELECT state = 'submitting' AND last_error LIKE 'creating the batch failed: HTTP 503%' FROM llmgw.batches WHERE job_id = $job")
  or die 'the create was not refused';
kill_worker0();
wait_job($job);
$node->safe_psql('postgres', "ALTER SYSTEM RESET llmgw.batch_poll_interval; SELECT pg_reload_conf()");
is(grown($before), '1/2/1/1/1', 'killed in state submitting: one upload, the list read, created once');
exactly_once($job, 'sub', 6, 'killed in state submitting');

# ---- kill -9 after the create reached the provider, before its answer
# was recorded (the mock creates at once and answers 3 s late): the batch
# is found by its marker and adopted, not created again
table('cr', 6);
$before = LlmgwTest::mock_batch();
$job = enrich('cr', 'bc-create');
for (1 .. 100) { last if LlmgwTest::mock_batch()->{created} > $before->{created}; select undef, undef, undef, 0.1; }
is($node->safe_psql('postgres', "SELECT state || '/' || (provider_batch_id IS NULL)::int FROM llmgw.batches WHERE job_id = $job"),
	'submitting/1', 'the provider made the batch, llmgw does not know it yet');
kill_worker0();
wait_job($job);
is(grown($before), '1/1/1/1/1', 'killed before the create was answered: found by its marker, created once');
exactly_once($job, 'cr', 6, 'killed before the create was answered');
is($node->safe_psql('postgres', "SELECT provider_batch_id LIKE 'batch_mock_%' AND submitted_at IS NOT NULL AND price_id IS NOT NULL FROM llmgw.batches WHERE job_id = $job"),
	't', 'the adopted batch has its provider id, submission time and price');

# ---- the same, but another client of the provider made 100 batches since:
# the list's full page does not reach back to when the batch was queued, so
# llmgw cannot tell whether it was created; it is never created again, and
# fails saying where to look
table('crowd', 3);
$before = LlmgwTest::mock_batch();
$job = enrich('crowd', 'bc-create-late');
for (1 .. 100) { last if LlmgwTest::mock_batch()->{created} > $before->{created}; select undef, undef, undef, 0.1; }
{
	my $http = HTTP::Tiny->new(timeout => 10,
		default_headers => { Authorization => "Bearer $ENV{LLMGW_TEST_KEY}" });
	my $base = "http://127.0.0.1:$ENV{LLMGW_MOCK_PORT}/v1";
	my $line = '{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"batch-model","messages":[{"role":"user","content":"hi"}]}}';
	my $b = 'crowdboundary';
	my $up = $http->post("$base/files", { headers => { 'Content-Type' => "multipart/form-data; boundary=$b" },
		content => "--$b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
		  . "--$b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n"
		  . "Content-Type: application/jsonl\r\n\r\n$line\n\r\n--$b--\r\n" });
	my $file = decode_json($up->{content})->{id};
	my $made = 0;
	for (1 .. 100)
	{
		my $r = $http->post("$base/batches", { headers => { 'Content-Type' => 'application/json' },
			content => encode_json({ input_file_id => $file, endpoint => '/v1/chat/completions',
									 completion_window => '24h' }) });
		$made++ if $r->{success};
	}
	is($made, 100, 'another client made 100 batches while the create was unanswered');
}
kill_worker0();
ok($node->poll_query_until('postgres', "SELECT state = 'failed' FROM llmgw.batches WHERE job_id = $job"),
	'the batch ends failed');
like($node->safe_psql('postgres', "SELECT last_error FROM llmgw.batches WHERE job_id = $job"),
	qr/^cannot tell whether the provider created this batch: its 100 latest batches were all made since it was queued; look for metadata llmgw_batch = [0-9a-f-]{36}/,
	'it says it cannot tell, and which marker to look for');
is(LlmgwTest::mock_batch()->{created} - $before->{created}, 101, 'created once by llmgw (and 100 times by the other client): never twice');

# ---- an output file with lines that are not JSON objects: the chunk
# holding them is written without them, and the server log says so
table('junk', 6);
$before = LlmgwTest::mock_batch();
$job = enrich('junk', 'bc-junk');
wait_job($job);
exactly_once($job, 'junk', 6, 'lines that are not JSON in the output');
like(slurp_file($node->logfile), qr/WARNING:  llmgw: 2 lines of the results of batch \d+ are not JSON objects/,
	'the lines left out are counted in the server log');

# ---- a whole-server restart while the results are written (one per
# transaction): a fast restart at the third answer, an immediate stop at
# the sixth
table('ing', 8);
LlmgwTest::slow_writes($node, 'ing', 'batch_user', 3, 6);
$before = LlmgwTest::mock_batch();
$job = enrich('ing', 'bc');
LlmgwTest::wait_ingest_sleep($node);
is($node->safe_psql('postgres', "SELECT count(*) FROM ing WHERE summary IS NOT NULL"), '2',
	'two results written at the fast restart');
$node->restart;
LlmgwTest::wait_ingest_sleep($node);
is($node->safe_psql('postgres', "SELECT count(*) FROM ing WHERE summary IS NOT NULL"), '4',
	'four written at the immediate stop');
$node->stop('immediate');
$node->start;
wait_job($job);
is(grown($before), '1/1/1/0/3', 'two server restarts while ingesting: the output fetched three times, nothing else again');
exactly_once($job, 'ing', 8, 'restarted twice while ingesting');
is($node->safe_psql('postgres', "SELECT count(*) FROM llmgw.usage u JOIN llmgw.batches b ON b.id = u.batch_id WHERE u.job_id = $job AND u.price_id = b.price_id AND u.cost > 0"),
	'8', 'each usage row priced at the batch\'s price row');

$node->stop;
done_testing();
