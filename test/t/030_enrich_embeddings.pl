# llmgw.enrich into embedding columns (docs/functions.md#batch-enrichment,
# docs/batch.md): pgvector's vector(n) and halfvec(n) columns filled
# synchronously and through a provider batch, a column of another
# dimension failing row by row in both modes (the job ends, nothing stuck),
# an expired item retried in a later batch, row-level security hiding rows
# from a batch job; and kill -9 in the middle of a synchronous run and of a
# batch's ingest, counted exactly afterwards (the mock's requests, the
# usage rows, each row written once).  The pgvector part is skipped when
# the server has no pgvector (test/scripts/lib.sh installs it).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('enrich_embed', 2, conf => "llmgw.batch_poll_interval = 100\n");
$node->safe_psql('postgres', q{
	SELECT llmgw.set_price('ev-price', input => 2, output => 0, batch_input => 1, batch_output => 0);
	SELECT llmgw.create_model('ev', 'mock', 'ev-model', price_model => 'ev-price');
	SELECT llmgw.create_model('ev-b', 'mock', 'ev-batch-model', price_model => 'ev-price');
	SELECT llmgw.create_model('ev-slow', 'mock', 'ev-model;delay:1500', price_model => 'ev-price');
	CREATE ROLE eu LOGIN IN ROLE llmgw_user;
});
LlmgwTest::log_writes($node, 'eu');

sub sq { return $node->safe_psql('postgres', $_[0]); }

# A table of n rows (id, body, and the columns given), eu may read and update
sub table
{
	my ($t, $n, $columns) = @_;
	sq(qq{
		CREATE TABLE $t (id int PRIMARY KEY, owner name NOT NULL DEFAULT 'eu', body text, $columns);
		INSERT INTO $t (id, body) SELECT g, '$t row ' || g FROM generate_series(1, $n) g;
		GRANT SELECT, UPDATE ON $t TO eu;
		CREATE TRIGGER log_write AFTER UPDATE ON $t FOR EACH ROW EXECUTE FUNCTION log_write()});
}

# CALL llmgw.enrich as eu; returns the job id
sub enrich
{
	my ($t, $column, $model, $args) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres',
		"CALL llmgw.enrich('$t', 'id', 'body', '$column', '$model'" . ($args ? ", $args" : '') . ')',
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'eu' ]);
	return $err =~ /job (\d+): \d+ rows (queued|done)/ ? $1 : die "enrich: $err";
}

sub wait_job
{
	my ($job) = @_;
	$node->poll_query_until('postgres', "SELECT status <> 'running' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not end";
}

# "done/failed/status" of a job
sub job { return sq("SELECT rows_done || '/' || rows_failed || '/' || status FROM llmgw.jobs WHERE id = $_[0]"); }

# Rows written, and the most writes of one row
sub written
{
	my ($t) = @_;
	return sq("SELECT count(DISTINCT id) || '/' || coalesce(max(n), 0)
	             FROM (SELECT id, count(*) AS n FROM writes WHERE tab = '$t' GROUP BY id) w");
}

my $has_vector = sq("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") eq '1';

SKIP:
{
	skip 'pgvector is not installed (test/scripts/lib.sh installs it)', 18 unless $has_vector;
	sq('CREATE EXTENSION vector');
	table('vt', 10, 'v8 vector(8), v3 vector(3), h8 halfvec(8), b8 vector(8), b3 vector(3)');

	# ---- synchronous: a chunk per provider request
	my $before = LlmgwTest::mock_requests('ev-model');
	my $job = enrich('vt', 'v8', 'ev', 'chunk_size => 4');
	is(job($job), '10/0/finished', 'vector(8): every row embedded');
	is(LlmgwTest::mock_requests('ev-model') - $before, 3, 'three provider requests for three chunks');
	is(sq("SELECT count(*), bool_and(status = 'ok'), bool_and(output_tokens = 0),
	              bool_and(cost = input_tokens * 2 / 1e6), sum(input_tokens)
	         FROM llmgw.usage WHERE job_id = $job"),
		'3|t|t|t|30', 'one usage row per request: input tokens priced, output 0');
	is(sq("SELECT count(*) FROM vt WHERE v8 = llm_embed(body, 'ev')::vector"), '10',
		'the vectors are llm_embed\'s');
	is(written('vt'), '10/1', 'each row written once');

	$job = enrich('vt', 'h8', 'ev');
	is(sq("SELECT count(*) FROM vt WHERE h8 = v8::halfvec(8)"), '10', 'halfvec(8) too');

	# ---- synchronous, the wrong dimension: the chunk's rows fail, and the job
	# stops there rather than pay for rows that would all fail alike
	$before = LlmgwTest::mock_requests('ev-model');
	my ($out, $err) = ('', '');
	$node->psql('postgres', "CALL llmgw.enrich('vt', 'id', 'body', 'v3', 'ev', chunk_size => 5)",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'eu' ]);
	($job) = $err =~ /job (\d+):/;
	is(job($job) . '|' . sq("SELECT last_error FROM llmgw.jobs WHERE id = $job"),
		'0/5/stopped|22000: expected 3 dimensions, not 8',
		'vector(3): the first chunk\'s five rows failed with the dimension error, the job stopped');
	like($err, qr/WARNING:  llmgw.enrich job \d+ stopped: model "ev" gives embeddings of 8 dimensions, column v3 of vt holds vector\(3\)/,
		'a WARNING says why');
	is(LlmgwTest::mock_requests('ev-model') - $before, 1, 'one request (paid for), no more');
	is(sq('SELECT count(v3) FROM vt'), '0', 'nothing written');

	# ---- a provider batch: /v1/embeddings lines, answers at the batch rate
	my $mock = LlmgwTest::mock_batch();
	$job = enrich('vt', 'b8', 'ev-b', "mode => 'batch'");
	wait_job($job);
	is(job($job), '10/0/finished', 'batch into vector(8): every row');
	is(sq("SELECT count(*) FROM vt WHERE b8 = v8"), '10', 'the same vectors as the synchronous path');
	is(sq("SELECT count(*), count(DISTINCT request_id), bool_and(status = 'ok'), bool_and(output_tokens = 0),
	              bool_and(cost = input_tokens * 1 / 1e6)
	         FROM llmgw.usage WHERE job_id = $job AND batch_id IS NOT NULL")
		  . '|' . LlmgwTest::mock_batch_grown($mock, qw(uploads creates)),
		'10|10|t|t|t|1/1', 'one usage row per item at the batch rate; one upload, one create');

	# ---- a batch into the wrong dimension: the items fail, the job ends
	$job = enrich('vt', 'b3', 'ev-b', "mode => 'batch'");
	wait_job($job);
	is(job($job) . '|' . sq("SELECT last_error FROM llmgw.jobs WHERE id = $job"),
		'0/10/finished|22000: expected 3 dimensions, not 8', 'batch into vector(3): ten rows failed, the job finished');
	is(sq("SELECT string_agg(DISTINCT i.state || ':' || i.error, ',') || '|' || count(*) || '|' || (SELECT count(b3) FROM vt)
	         FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.job_id = $job"),
		'failed:22000: expected 3 dimensions, not 8|10|0', 'each item failed with its error, nothing written');

	# ---- dimensions => 3: vector(3) filled through a batch, each line asking for 3
	$job = enrich('vt', 'b3', 'ev-b', "mode => 'batch', dimensions => 3");
	wait_job($job);
	is(job($job) . '|' . sq("SELECT count(*) FROM vt WHERE b3 = llm_embed(body, 'ev', 3)::vector"),
		'10/0/finished|10', 'dimensions => 3 fills vector(3) through a batch: llm_embed\'s vectors of 3');
	# another dimension than the column's: refused before any job or call
	($out, $err) = ('', '');
	$node->psql('postgres', "CALL llmgw.enrich('vt', 'id', 'body', 'v3', 'ev', dimensions => 4)",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'eu' ]);
	like($err, qr/ERROR:  dimensions 4 does not fit column v3 of vt, of type vector\(3\)/,
		'dimensions => 4 for a vector(3) column: refused');
	is(sq('SELECT count(v3) FROM vt'), '0', 'and nothing written');
}

# ---- an expired embeddings item goes again in a later batch (retry => 'batch')
table('rt', 3, 'e real[]');
sq(q{UPDATE rt SET body = 'rt late [[expire_once]]' WHERE id = 2; DELETE FROM writes});
my $job = enrich('rt', 'e', 'ev-b', "mode => 'batch'");
wait_job($job);
is(job($job) . '|' . sq("SELECT count(e) FROM rt"), '3/0/finished|3', 'the expired item was answered in a second batch');
is(sq("SELECT string_agg(b.endpoint || ':' || i.custom_id || ':' || i.state || ':' || i.attempt, ',' ORDER BY b.id, i.custom_id)
         FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.job_id = $job"),
	'embeddings:r1:done:1,embeddings:r2:expired:1,embeddings:r3:done:1,embeddings:r2:done:2',
	'two embeddings batches, the second with the expired item\'s second attempt');
is(written('rt'), '3/1', 'each row written once');

# ---- a chat batch whose row refuses its answer (a trigger raises): that
# item fails alone, the others are written, the job ends
table('ct', 4, 'summary text');
sq(q{
	CREATE FUNCTION ct_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    IF NEW.id = 2 THEN RAISE EXCEPTION 'row 2 takes no answer' USING ERRCODE = 'check_violation'; END IF;
	    RETURN NEW;
	END $$;
	CREATE TRIGGER ct_refuse BEFORE UPDATE ON ct FOR EACH ROW EXECUTE FUNCTION ct_refuse()});
sq(q{SELECT llmgw.create_model('ev-chat', 'mock', 'batch-model', price_model => 'ev-price')});
$job = enrich('ct', 'summary', 'ev-chat', "mode => 'batch'");
wait_job($job);
is(job($job) . '|' . sq("SELECT last_error FROM llmgw.jobs WHERE id = $job")
	  . '|' . sq("SELECT string_agg(id || ':' || coalesce(summary, '-'), ',' ORDER BY id) FROM ct"),
	'3/1/finished|23514: row 2 takes no answer|1:Hello! You said: ct row 1,2:-,3:Hello! You said: ct row 3,4:Hello! You said: ct row 4',
	'a chat answer a trigger refuses fails its row alone; the job finishes');

# ---- row-level security: the rows eu may not see are not sent
table('st', 9, 'e real[]');
sq(q{
	UPDATE st SET owner = 'someone' WHERE id % 3 <> 0;
	ALTER TABLE st ENABLE ROW LEVEL SECURITY;
	CREATE POLICY own ON st USING (owner = current_user);
	DELETE FROM writes});
$job = enrich('st', 'e', 'ev-b', "mode => 'batch'");
wait_job($job);
is(sq("SELECT rows_total || '/' || rows_done FROM llmgw.jobs WHERE id = $job")
	  . '|' . sq("SELECT count(*) FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.job_id = $job")
	  . '|' . sq("SELECT string_agg(id::text, ',' ORDER BY id) FROM st WHERE e IS NOT NULL"),
	'3/3|3|3,6,9', 'only the three rows eu sees were sent and written');

# ---- kill -9 of the backend running a synchronous enrich while a chunk's
# request is in flight: the chunks committed stay, the next run sends the
# rest, the interrupted chunk once more
table('ks', 12, 'e real[]');
my $slow = 'ev-model;delay:1500';
my $before = LlmgwTest::mock_requests($slow);
my $h = IPC::Run::start(
	[ 'psql', '-XAtq', '-U', 'eu', '-d', $node->connstr('postgres'),
	  '-c', "CALL llmgw.enrich('ks', 'id', 'body', 'e', 'ev-slow', chunk_size => 3)" ],
	'>', \my $out, '2>', \my $err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$node->poll_query_until('postgres', q{
	SELECT (SELECT coalesce(max(rows_done), 0) FROM llmgw.jobs WHERE source = 'ks') >= 3
	   AND EXISTS (SELECT 1 FROM llmgw.calls_in_flight WHERE model = 'ev-slow')})
  or die 'no chunk committed with the next in flight';
kill 'KILL', sq("SELECT pid FROM pg_stat_activity WHERE query LIKE '%llmgw.enrich(''ks''%' AND pid <> pg_backend_pid()");
$h->finish;
$node->poll_query_until('postgres', "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")
  or die 'the server did not come back';
# the first job's rows_done was committed with its rows
my $first = sq("SELECT rows_done FROM llmgw.jobs WHERE source = 'ks'");
is(sq("SELECT count(e) FROM ks") . '|' . ($first >= 3 && $first < 12 ? 'mid-run' : $first), "$first|mid-run",
	'killed mid-run: the rows of the committed chunks are written');
$job = enrich('ks', 'e', 'ev-slow', 'chunk_size => 3');
is(sq("SELECT count(e) FROM ks") . '|' . written('ks'), '12|12/1', 'after the crash every row is written, each once');
is(LlmgwTest::mock_requests($slow) - $before, 5, 'five requests: four chunks, and the interrupted one again');
$node->poll_query_until('postgres', "SELECT count(*) = 5 FROM llmgw.usage WHERE model = 'ev-slow'")
  or die 'the interrupted call has no usage row';
is(sq("SELECT string_agg(status, ',' ORDER BY status) FROM llmgw.usage WHERE model = 'ev-slow'"),
	'interrupted,ok,ok,ok,ok', 'usage: four ok requests and the interrupted one');
is(sq("SELECT rows_done FROM llmgw.jobs WHERE id = $job") + $first, 12,
	'the second job did the rows the first had not committed');

# ---- kill -9 of worker 0 while it writes a batch's results (one item per
# transaction, the third write sleeping): the results are read again, and
# each item, usage row and row is written once
table('kb', 8, 'e real[]');
LlmgwTest::slow_writes($node, 'kb', 'eu', 3);
my $mock = LlmgwTest::mock_batch();
$job = enrich('kb', 'e', 'ev-b', "mode => 'batch'");
LlmgwTest::wait_ingest_sleep($node);
is(sq('SELECT count(e) FROM kb'), '2', 'two results written when worker 0 is killed');
LlmgwTest::kill_worker($node, 2);
wait_job($job);
is(job($job) . '|' . written('kb'), '8/0/finished|8/1', 'every row written, each once');
is(sq("SELECT count(*) || '/' || count(DISTINCT request_id) || '/' || count(*) FILTER (WHERE status = 'ok')
         FROM llmgw.usage WHERE job_id = $job")
	  . '|' . sq("SELECT string_agg(state || ':' || c, ',') FROM (SELECT i.state, count(*) AS c
	                FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.job_id = $job GROUP BY 1) s"),
	'8/8/8|done:8', 'one usage row per item, every item done');
is(LlmgwTest::mock_batch_grown($mock, qw(uploads creates downloads)), '1/1/2',
	'uploaded and created once, the results downloaded again after the crash');
$node->stop;
done_testing();
