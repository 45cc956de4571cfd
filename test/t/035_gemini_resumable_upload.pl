# Gemini's resumable upload of a batch's input file (docs/batch.md,
# "Gemini"), through the mock's /upload/v1beta/files and its knobs
# (POST /gemini/upload_knobs): a job beyond 20 MB of inline requests whose
# first upload is cut after N bytes goes on from where the session stands
# (one start, one query, two upload requests, the file taken whole and
# once), every row written once with one usage row each; a session URL on
# another host is refused, with no request sent to it, and never quoted; a
# malformed X-Goog-Upload-Size-Received starts the upload again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::gemini_batch_node('gresum');

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub counters { return LlmgwTest::mock_stats()->{batch_gemini}; }

# Growth since $before of the named counters, as "n/n/..."
sub grown
{
	my ($before, @names) = @_;
	my $now = counters();
	return join '/', map { $now->{$_} - $before->{$_} } @names;
}

# Set the mock's upload knobs (';'-separated; '' clears them)
sub knobs
{
	my ($knobs) = @_;
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{LLMGW_MOCK_PORT})
	  or BAIL_OUT("cannot reach the mock: $!");
	print $s "POST /gemini/upload_knobs HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: "
	  . length($knobs) . "\r\n\r\n$knobs";
	my $answer = do { local $/; <$s> };
	$answer =~ m{^HTTP/1\.\d 200} or BAIL_OUT("the mock refused the knobs: $answer");
}

sub wait_job
{
	my ($job) = @_;
	$node->poll_query_until('postgres', "SELECT status <> 'running' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not end: "
	  . sq("SELECT string_agg(state || ' ' || coalesce(last_error, ''), '; ') FROM llmgw.batches WHERE job_id = $job");
}

# A table of 24 rows of 900 kB (one batch, beyond 20 MB inline) gu may fill
sub table
{
	my ($t) = @_;
	sq(qq{
		CREATE TABLE $t (id int PRIMARY KEY, body text, e real[]);
		INSERT INTO $t SELECT g, repeat('w', 900000) || g FROM generate_series(1, 24) g;
		GRANT SELECT, UPDATE ON $t TO gu;
	});
}

# CALL llmgw.enrich of a table as gu in batch mode; (job, rows, batches)
sub enrich
{
	my ($t) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres',
		"CALL llmgw.enrich('$t', 'id', 'body', 'e', 'gemb', mode => 'batch', retry => 'none')",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'gu' ]);
	return $err =~ /job (\d+): (\d+) rows queued in (\d+) provider batches/ ? ($1, $2, $3) : die "enrich: $err";
}

# Every row written once, one usage row each (and no other)
sub written_once
{
	my ($t, $job, $what) = @_;
	is(sq("SELECT rows_done || '/' || rows_failed FROM llmgw.jobs WHERE id = $job") . '|'
		  . sq("SELECT count(*) FILTER (WHERE cardinality(e) = 8) FROM $t") . '|'
		  . sq("SELECT count(*) || '/' || count(DISTINCT custom_id) || '/' || count(*) FILTER (WHERE status = 'ok')
		          FROM llmgw.usage u JOIN llmgw.batch_items i ON i.batch_id = u.batch_id AND i.request_id = u.request_id
		         WHERE u.job_id = $job") . '|'
		  . sq("SELECT count(*) FROM llmgw.usage WHERE job_id = $job"),
		'24/0|24|24/24/24|24', "$what: every row written once, one usage row each");
}

# ---- the first upload cut after N bytes: the rest sent from where the session stands
my $cut = 1_000_000;
table('gcut');
knobs("cut_upload:$cut");
my $before = counters();
my ($job, $rows, $batches) = enrich('gcut');
is("$rows/$batches", '24/1', '24 rows of 900 kB queued as one batch (beyond 20 MB inline: a file)');
wait_job($job);
is(sq("SELECT state || '|' || (input_file_id LIKE 'files/%') || '|' || coalesce(last_error, '') FROM llmgw.batches WHERE job_id = $job"),
	'completed|true|', 'the batch completes, its file named by the upload that finished it');
is(grown($before, qw(upload_starts upload_queries uploads creates)), '1/1/2/1',
	'one start, one query after the cut, two upload requests, one create');
my $size = counters()->{upload_announced} - $before->{upload_announced};
my $bytes = counters()->{upload_bytes} - $before->{upload_bytes};
cmp_ok($size, '>', 20_000_000, 'the file announced is beyond 20 MB');
is($bytes, $size, 'the session took the file whole and once: the second upload request sent only the rest');
cmp_ok($bytes, '<=', $size + $cut, 'bytes received: at most the size and the cut part');
written_once('gcut', $job, 'resumed upload');

# ---- a session URL on another host: refused, nothing sent to it
table('gforeign');
knobs('foreign_session');
$before = counters();
($job) = enrich('gforeign');
$node->poll_query_until('postgres',
	"SELECT last_error LIKE '%X-Goog-Upload-URL%' FROM llmgw.batches WHERE job_id = $job")
  or die 'no error for a foreign session URL: ' . sq("SELECT state || ' ' || coalesce(last_error, '') FROM llmgw.batches WHERE job_id = $job");
is(sq("SELECT state || '|' || last_error FROM llmgw.batches WHERE job_id = $job"),
	"queued|the upload's session URL (X-Goog-Upload-URL) is not on the host of the provider's base URL: refused; the upload starts again",
	'a session URL on another host is refused with a clear last_error (the URL not quoted)');
is(grown($before, qw(uploads upload_queries)), '0/0', 'no request sent to the foreign session URL');
cmp_ok(grown($before, 'upload_starts'), '>=', 1, 'the start was sent');
knobs('');
wait_job($job);
written_once('gforeign', $job, 'once the provider names its own host');

# ---- a malformed X-Goog-Upload-Size-Received: the upload starts again
table('gbad');
knobs("cut_upload:$cut;bad_size_received");
$before = counters();
($job) = enrich('gbad');
$node->poll_query_until('postgres',
	"SELECT state <> 'queued' OR last_error LIKE '%X-Goog-Upload-Size-Received%' FROM llmgw.batches WHERE job_id = $job")
  or die 'the batch did not move';
like(sq("SELECT coalesce(last_error, '') FROM llmgw.batches WHERE job_id = $job"),
	qr/^the upload session's answer to a query has no X-Goog-Upload-Size-Received of at most the file's \d+ bytes; the upload starts again$/,
	'a malformed X-Goog-Upload-Size-Received: a clear last_error');
wait_job($job);
knobs('');
is(grown($before, qw(upload_starts upload_queries uploads)), '2/2/3',
	'started again: two starts, two queries (the malformed one, then the second session\'s), three upload requests');
written_once('gbad', $job, 'after a malformed query answer');

# the session URL is the session's credential: never in the server log
unlike(slurp_file($node->logfile), qr/upload_id=/, 'no session URL in the server log');

$node->stop;
done_testing();
