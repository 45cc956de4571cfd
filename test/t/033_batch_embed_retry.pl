# retry => 'sync' for embeddings batches (docs/batch.md#retries): an enrich
# job into a real[] column whose items expire and fail with a 429 and a 500
# calls each once through the synchronous embeddings path (asynchronous
# calls of endpoint embeddings, priced at the synchronous rates), a 400 is
# not retried, each row written once with the vector llm_embed gives;
# submit_embedding_batch(..., retry => 'sync') without a job (the answers,
# OpenAI embeddings lists, in batch_items.answer); bad retry values; kill -9
# of a worker with embeddings retries in flight, and llmgw.cancel_job of a
# job with embeddings retries in flight, counted exactly afterwards (the
# mock's requests, the usage rows, the writes of each row).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('batchembedsync', 2,
	conf => "llmgw.batch_poll_interval = 100\n");
my $fast = 'emb-model;sync33';
my $slow = 'emb-model;delay:3000;sync33k';
my $stuck = 'emb-model;delay:20000;sync33c';
$node->safe_psql('postgres', qq{
	SELECT llmgw.set_price('ebp', input => 2, output => 0, batch_input => 1, batch_output => 0);
	SELECT llmgw.create_model('eb', 'mock', '$fast', price_model => 'ebp');
	SELECT llmgw.create_model('eb-slow', 'mock', '$slow', price_model => 'ebp');
	SELECT llmgw.create_model('eb-stuck', 'mock', '$stuck', price_model => 'ebp');
	SELECT llmgw.create_team('te');
	CREATE ROLE eu LOGIN IN ROLE llmgw_user;      -- team te
	SELECT llmgw.bind_role('eu', 'te');
	SELECT llmgw.create_budget('te total', 'team', 'te', 'total', 1);
});
LlmgwTest::log_writes($node, 'eu');

sub sq { return $node->safe_psql('postgres', $_[0]); }

# A table of embeddings eu may fill, its rows' bodies given
sub table
{
	my ($t, @bodies) = @_;
	my $values = join ', ', map { "($_, '$bodies[$_ - 1]')" } 1 .. @bodies;
	sq(qq{
		CREATE TABLE $t (id int PRIMARY KEY, body text, e real[]);
		INSERT INTO $t (id, body) VALUES $values;
		GRANT SELECT, UPDATE ON $t TO eu;
		CREATE TRIGGER log_write AFTER UPDATE ON $t FOR EACH ROW EXECUTE FUNCTION log_write()});
}

# CALL llmgw.enrich(..., mode => 'batch') into column e as eu; the job id
sub enrich
{
	my ($t, $model, $retry) = @_;
	return (LlmgwTest::batch_enrich($node, 'eu',
		"CALL llmgw.enrich('$t', 'id', 'body', 'e', '$model', mode => 'batch', retry => '$retry')"))[0];
}

# Wait until the mock saw n requests of a model since $before; how many it saw
sub wait_requests
{
	my ($model, $before, $n) = @_;
	my $deadline = time + 60;
	sleep 0.2 while LlmgwTest::mock_requests($model) - $before < $n && time < $deadline;
	return LlmgwTest::mock_requests($model) - $before;
}

# ---- expired, 429 and 500 items embedded synchronously; a 400 not
table('t1', 'fine', 'late [[expire]]', 'busy [[fail_429]]', 'broken [[fail_500]]', 'bad [[fail]]');
my $before = LlmgwTest::mock_requests($fast);
my $job = enrich('t1', 'eb', 'sync');
LlmgwTest::wait_job_end($node, $job);
is(sq("SELECT string_agg(id || ':' || coalesce(cardinality(e)::text, '-'), ',' ORDER BY id) FROM t1"),
	'1:8,2:8,3:8,4:8,5:-', 'the expired, rate-limited and failed items are embedded synchronously; the refused one is not');
is(LlmgwTest::mock_requests($fast) - $before, 3, 'three synchronous embeddings requests reached the provider');
is(sq("SELECT string_agg(i.custom_id || ':' || i.state || ':' || coalesce(i.error_class, '-') || ':'
                         || coalesce(a.endpoint || '/' || a.status, '-'), ',' ORDER BY i.custom_id)
         FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id
         LEFT JOIN llmgw.async_calls a ON a.id = i.sync_call WHERE b.job_id = $job"),
	'r1:done:-:-,r2:expired:expired:embeddings/done,r3:failed:rate_limit:embeddings/done,'
	  . 'r4:failed:server:embeddings/done,r5:failed:invalid_request:-',
	'the items keep their batch outcome and name their embeddings call');
is(sq("SELECT string_agg(coalesce(error_class, status), ',' ORDER BY coalesce(error_class, status))
         FROM llmgw.usage WHERE job_id = $job AND batch_id IS NOT NULL"),
	'expired,invalid_request,ok,rate_limit,server', 'one batch usage row per item');
is(sq("SELECT count(*), count(DISTINCT u.async_id), bool_and(u.status = 'ok'), bool_and(u.role_name = 'eu'),
              bool_and(u.team_id = llmgw.team_id('te')), bool_and(u.output_tokens = 0 AND u.input_tokens > 0)
         FROM llmgw.usage u JOIN llmgw.batch_items i ON i.sync_call = u.async_id
        WHERE u.job_id = $job AND u.batch_id IS NULL"),
	'3|3|t|t|t|t', 'one synchronous usage row per retried item, as the owner and team, no output');
is(LlmgwTest::sync_rows_priced($node, $job), 't', 'the synchronous rows are priced at the synchronous rates');
is(sq("SELECT status, rows_done, rows_failed, retry, spend = (SELECT sum(cost) FROM llmgw.usage WHERE job_id = $job)
         FROM llmgw.job_progress WHERE id = $job"),
	'finished|4|1|sync|t', 'the job: four rows done, one failed, its spend counts both paths');
is(sq("SELECT count(*), count(DISTINCT id) FROM writes WHERE tab = 't1'"), '4|4', 'each row written once');
is(sq("SELECT s.reserved, s.spent = u.cost FROM llmgw.budget_status s,
              (SELECT sum(cost) AS cost FROM llmgw.usage WHERE team_id = llmgw.team_id('te')) u
        WHERE s.name = 'te total'"), '0|t', 'the budget: nothing reserved, both kinds of spend charged once');

# ---- a batch without a job: the answers land in batch_items.answer
$before = LlmgwTest::mock_requests($fast);
my $b = sq(q{SET ROLE eu; SELECT llmgw.submit_embedding_batch(ARRAY['one', 'two [[expire]]', 'three [[fail_500]]', 'four [[fail]]'],
                 'eb', retry => 'sync')});
$node->poll_query_until('postgres', qq{
	SELECT count(*) = 2 FROM llmgw.async_calls a WHERE a.batch_id = $b AND a.status IN ('done', 'error')})
  or die 'the retries of the batch did not end';
is(sq("SELECT string_agg(custom_id || ':' || state || ':' || coalesce(answer ->> 'object', '-') || ':'
                         || coalesce(jsonb_array_length(answer #> '{data,0,embedding}')::text, '-'), ',' ORDER BY custom_id)
         FROM llmgw.batch_items WHERE batch_id = $b"),
	'r1:done:list:8,r2:expired:list:8,r3:failed:list:8,r4:failed:-:-',
	"submit_embedding_batch(retry => 'sync'): the retried items' embeddings lists in batch_items.answer");
is(sq("SELECT count(*), bool_and(u.status = 'ok' AND u.job_id IS NULL AND u.output_tokens = 0) FROM llmgw.usage u
        JOIN llmgw.batch_items i ON i.sync_call = u.async_id WHERE i.batch_id = $b AND u.batch_id IS NULL"),
	'2|t', 'one synchronous usage row per retried item');
is(LlmgwTest::mock_requests($fast) - $before, 2, 'two synchronous embeddings requests');

# ---- hostile
like(LlmgwTest::error_of($node, "SET ROLE eu; SELECT llmgw.submit_embedding_batch(ARRAY['x'], 'eb', retry => 'soon')"),
	qr/^22023: retry must be batch, sync or none/, 'submit_embedding_batch: an unknown retry: 22023');
like(LlmgwTest::error_of($node, "SET ROLE eu; SELECT llmgw.submit_embedding_batch(ARRAY['x'], 'eb', $job, '{1}', 'sync')"),
	qr/^22023: the batches of a job retry as their job says/, 'submit_embedding_batch: a retry with a job: 22023');
like(LlmgwTest::error_of($node, "CALL llmgw.enrich('t1', 'id', 'body', 'e', 'eb', mode => 'batch', retry => 'later')"),
	qr/^22023: retry must be batch, sync or none/, 'enrich into embeddings: an unknown retry: 22023');
like(LlmgwTest::error_of($node, "SET ROLE eu; UPDATE llmgw.async_calls SET endpoint = 'chat'"),
	qr/^42501/, 'a role cannot change what its calls are');

# ---- kill -9 while three embeddings retries are at the provider
table('t3', map { "late $_ [[expire]]" } 1 .. 3);
$before = LlmgwTest::mock_requests($slow);
$job = enrich('t3', 'eb-slow', 'sync');
is(wait_requests($slow, $before, 3), 3, 'the three embeddings retries are in flight');
LlmgwTest::kill_worker($node, 2);
LlmgwTest::wait_job_end($node, $job);
is(LlmgwTest::mock_requests($slow) - $before, 6, 'after the crash each retry is called once more, and no more');
is(sq("SELECT count(*) FILTER (WHERE cardinality(e) = 8), count(*) FROM t3"), '3|3', 'every row is written');
is(sq("SELECT count(*), count(DISTINCT id) FROM writes WHERE tab = 't3'"), '3|3', 'each once');
is(sq("SELECT string_agg(status, ',' ORDER BY status), count(DISTINCT async_id) FROM llmgw.usage
        WHERE job_id = $job AND batch_id IS NULL"),
	'interrupted,interrupted,interrupted,ok,ok,ok|3', 'usage: the interrupted first tries and one ok row per item');
is(sq("SELECT status, rows_done, rows_failed FROM llmgw.jobs WHERE id = $job"), 'finished|3|0',
	'the job finishes with its last retry');

# ---- cancel_job with two embeddings retries in flight
table('t4', map { "late $_ [[expire]]" } 1 .. 2);
$before = LlmgwTest::mock_requests($stuck);
$job = enrich('t4', 'eb-stuck', 'sync');
is(wait_requests($stuck, $before, 2), 2, 'two embeddings retries are at the provider');
sq("SET ROLE eu; SELECT llmgw.cancel_job($job)");
LlmgwTest::wait_job_end($node, $job);
is(sq("SELECT status, rows_done, rows_failed, (SELECT count(*) FROM t4 WHERE e IS NULL) FROM llmgw.jobs WHERE id = $job"),
	'stopped|0|0|2', 'the job stops; its rows stay NULL, counted neither done nor failed');
is(sq("SELECT string_agg(u.status || ':' || a.endpoint || ':' || a.status || ':' || a.sqlstate, ',')
         FROM llmgw.usage u JOIN llmgw.async_calls a ON a.id = u.async_id WHERE u.job_id = $job AND u.batch_id IS NULL"),
	'cancelled:embeddings:error:57014,cancelled:embeddings:error:57014', 'both aborted: a cancelled usage row each');
is(LlmgwTest::mock_requests($stuck) - $before, 2, 'and not sent again');
is(sq("SELECT count(*) FROM writes WHERE tab = 't4'"), '0', 'nothing written');

# ---- the vectors are llm_embed's (last: these are requests of their own)
is(sq("SELECT bool_and(e = llm_embed(body, 'eb')) FROM t1 WHERE e IS NOT NULL"), 't',
	'each row holds the vector llm_embed gives for its text');

$node->stop;
done_testing();
