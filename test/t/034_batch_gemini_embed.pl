# Embeddings through Gemini's batch mode (docs/batch.md, "Gemini"):
# llmgw.submit_embedding_batch and CALL llmgw.enrich(..., mode => 'batch')
# into a real[] column, against a Gemini deployment, through the mock's
# models/{model}:asyncBatchEmbedContent: the vectors are those the
# synchronous path gives for the same text, each item has its usage row at
# the batch rate, an item Gemini refuses and one that expires end alone;
# answers delivered as a file (responsesFile); and a job beyond 20 MB of
# inline requests, sent as an uploaded file of EmbedContentRequests.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::gemini_batch_node('gembed');
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('gemb-file', 'gem', 'gem-e;responses_file', price_model => 'ge');
	-- the mock's OpenAI embeddings of a text: the same values Gemini's batch gives
	SELECT llmgw.create_model('oe', 'mock', 'oe-model;dim:8');
});

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub counters { return LlmgwTest::mock_stats()->{batch_gemini}; }

# Growth since $before, as "upload_starts/uploads/creates/cancels/downloads"
# (a resumable upload: its starts, then its upload requests)
sub grown
{
	my ($before) = @_;
	my $now = counters();
	return join '/', map { $now->{$_} - $before->{$_} } qw(upload_starts uploads creates cancels downloads);
}

sub wait_job
{
	my ($job) = @_;
	$node->poll_query_until('postgres', "SELECT status <> 'running' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not end: "
	  . sq("SELECT string_agg(state || ' ' || coalesce(last_error, ''), '; ') FROM llmgw.batches WHERE job_id = $job");
}

# A table of n rows gu may fill (id, body, e real[]); bodies given by id
sub table
{
	my ($t, $n, %bodies) = @_;
	sq(qq{
		CREATE TABLE $t (id int PRIMARY KEY, body text, e real[]);
		INSERT INTO $t SELECT g, '$t row ' || g FROM generate_series(1, $n) g;
		GRANT SELECT, UPDATE ON $t TO gu;
	});
	sq("UPDATE $t SET body = '$bodies{$_}' WHERE id = $_") for keys %bodies;
}

# CALL llmgw.enrich as gu in batch mode; (job, rows, batches)
sub enrich
{
	my ($t, $model, $body, $more) = @_;
	my ($out, $err) = ('', '');
	$body //= 'body';
	$more //= '';
	$node->psql('postgres',
		"CALL llmgw.enrich('$t', 'id', \$\$$body\$\$, 'e', '$model', mode => 'batch', retry => 'none'$more)",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'gu' ]);
	return $err =~ /job (\d+): (\d+) rows queued in (\d+) provider batches/ ? ($1, $2, $3) : die "enrich: $err";
}

# ---- llmgw.submit_embedding_batch to a Gemini deployment
my $before = counters();
my $b = sq("SET ROLE gu; SELECT llmgw.submit_embedding_batch(ARRAY['hello world', 'good night'], 'gemb')");
$node->poll_query_until('postgres', "SELECT state IN ('completed', 'failed', 'expired', 'cancelled') FROM llmgw.batches WHERE id = $b")
  or die 'the batch did not end';
is(sq("SELECT state || ':' || endpoint || ':' || provider FROM llmgw.batches WHERE id = $b"), 'completed:embeddings:gem',
	'an embeddings batch at Gemini completes');
is(grown($before), '0/0/1/0/2', 'one create (inline requests), the poll that saw it finished and the fetch of its answers');
is(sq("SELECT string_agg((ARRAY(SELECT jsonb_array_elements_text(i.answer #> '{data,0,embedding}')::real)
                          = llm_embed(x, 'oe'))::text, ',' ORDER BY i.custom_id)
         FROM llmgw.batch_items i JOIN unnest(ARRAY['hello world', 'good night']) WITH ORDINALITY AS t(x, n)
              ON i.custom_id = 'r' || t.n
        WHERE i.batch_id = $b"),
	'true,true', 'each answer is the vector of its text (as the mock\'s /v1/embeddings gives it)');
is(sq("SELECT string_agg(u.status || ':' || u.provider || ':' || coalesce(u.input_tokens::text, 'null') || ':'
                         || coalesce(u.output_tokens::text, 'null'), ',')
         FROM llmgw.usage u WHERE u.batch_id = $b"),
	'ok:gem:null:null,ok:gem:null:null', 'a usage row per item; Gemini reports no token counts for embeddings: NULL, not 0');

# ---- enrich into real[] through Gemini: a refused item, an expired one
table('gt', 6, 3 => 'bad [[fail]]', 5 => 'late [[expire]]');
$before = counters();
my ($job, $rows, $batches) = enrich('gt', 'gemb');
is("$rows/$batches", '6/1', 'six rows queued in one batch');
wait_job($job);
is(sq("SELECT rows_done || '/' || rows_failed || '/' || status FROM llmgw.jobs WHERE id = $job"), '4/1/finished',
	'four rows embedded, one failed (the expired one is neither)');
is(sq("SELECT count(*) FILTER (WHERE CASE WHEN e IS NULL THEN false ELSE e = llm_embed(body, 'oe') END)
               || '/' || count(e) FROM gt"), '4/4',
	'the vectors written are the synchronous path\'s for the same text');
is(sq("SELECT string_agg(status || ':' || coalesce(error_class, '-') || ':' || s, ',' ORDER BY status, error_class)
         FROM (SELECT status, error_class, count(*) AS s FROM llmgw.usage WHERE job_id = $job GROUP BY 1, 2) u"),
	'error:expired:1,error:invalid_request:1,ok:-:4', 'usage rows: four ok, the refused item, the expired item');
is(grown($before), '0/0/1/0/2', 'one create, the answers fetched once');

# ---- the answers as a file (responsesFile)
table('gf', 4);
$before = counters();
($job) = enrich('gf', 'gemb-file');
wait_job($job);
is(sq("SELECT count(*) FILTER (WHERE e = llm_embed(body, 'oe')) FROM gf"), '4', 'answers from a responses file, written');
is(grown($before), '0/0/1/0/2', 'one create, the poll that saw it finished, its file downloaded once');

# ---- dimensions: each line asks Gemini for outputDimensionality 5
table('gdim', 3);
($job) = enrich('gdim', 'gemb', undef, ', dimensions => 5');
wait_job($job);
is(sq("SELECT count(*) FILTER (WHERE cardinality(e) = 5 AND e = llm_embed(body, 'oe', 5)) FROM gdim"), '3',
	'dimensions => 5: vectors of 5 values, those the synchronous path gives when asked for 5');
is(sq("SELECT string_agg(DISTINCT (i.request ->> 'dimensions'), ',') FROM llmgw.batch_items i
         JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.job_id = $job"), '5',
	'each item\'s request carries the dimension');

# ---- beyond 20 MB of inline requests: an uploaded file of EmbedContentRequests
table('gu24', 24);
$before = counters();
($job, $rows, $batches) = enrich('gu24', 'gemb', "repeat('w', 900000) || id");
is("$rows/$batches", '24/1', '24 rows of 900 kB queued as one batch');
wait_job($job);
is(sq("SELECT rows_done || '/' || rows_failed FROM llmgw.jobs WHERE id = $job") . '|'
	  . sq("SELECT count(*) FILTER (WHERE cardinality(e) = 8) FROM gu24"),
	'24/0|24', 'every row embedded');
is(grown($before), '1/1/1/0/2', 'one start and one upload request (resumable), one create naming the file, the answers file downloaded once');
is(sq("SELECT count(*) FROM gu24 WHERE e = llm_embed(repeat('w', 900000) || id, 'oe')"), '24',
	'the vectors of the uploaded requests\' texts');

done_testing();
