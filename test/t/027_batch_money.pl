# The money side of provider batches (docs/batch.md#money): the worst case
# of a batch reserved on the hard budgets at submission and settled item by
# item against the usage rows, a synchronous call refused for what a batch
# reserved, a budget too small for the whole job (only what fits is sent)
# or for anything (LG010), kill -9 of a worker while results are written,
# expired items retried and answered once, an embeddings batch, and roles
# that may not see or spend what is not theirs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('batchmoney', 2,
	conf => "llmgw.batch_poll_interval = 100\n");
$node->safe_psql('postgres', q{
	SELECT llmgw.create_model('bm', 'mock', 'batch-model', price_model => 'bp');
	SELECT llmgw.create_model('bm-slow', 'mock', 'batch-model;batch_ms:2500', price_model => 'bp');
	SELECT llmgw.create_model('emb', 'mock', 'text-embedding-3-small');
	SELECT llmgw.set_price('bp', input => 2, output => 4, batch_input => 1, batch_output => 2);
	SELECT llmgw.create_team('ta');
	SELECT llmgw.create_team('tb', allowed_models => '{demo}');
	CREATE ROLE bu LOGIN IN ROLE llmgw_user;      -- team ta
	CREATE ROLE bv LOGIN IN ROLE llmgw_user;      -- no team
	CREATE ROLE bw LOGIN IN ROLE llmgw_user;
	SELECT llmgw.bind_role('bu', 'ta');
	SELECT llmgw.create_budget('ta total', 'team', 'ta', 'total', 1);
	CREATE FUNCTION reqs(n int, tag text DEFAULT 'x') RETURNS jsonb[] LANGUAGE sql AS $$
	    SELECT array_agg(jsonb_build_object('messages', jsonb_build_array(jsonb_build_object(
	               'role', 'user', 'content', tag || ' ' || g)), 'max_tokens', 1000) ORDER BY g)
	      FROM generate_series(1, n) g $$;
	GRANT EXECUTE ON FUNCTION reqs(int, text) TO PUBLIC;
});

sub sq { return $node->safe_psql('postgres', $_[0]); }

# stderr of a statement run as a role (verbose: SQLSTATE, DETAIL)
sub stderr_of
{
	my ($role, $sql) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role, '-v', 'VERBOSITY=verbose' ]);
	return $err;
}

sub wait_batch
{
	my ($b) = @_;
	$node->poll_query_until('postgres', "SELECT state IN ('completed', 'failed') FROM llmgw.batches WHERE id = $b")
	  or die "batch $b did not end";
	is(sq("SELECT state || coalesce(': ' || last_error, '') FROM llmgw.batches WHERE id = $b"), 'completed',
		"batch $b completed");
}

sub wait_job
{
	my ($job) = @_;
	$node->poll_query_until('postgres', "SELECT status <> 'running' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not end";
}

# the worst case of one of reqs(n, tag)'s requests at bp's batch rates:
# every byte an input token at 1 per 1M, 1000 output tokens at 2 per 1M
sub worst
{
	my ($tag) = @_;
	return ("SELECT ((octet_length(jsonb_build_object('messages', jsonb_build_array(jsonb_build_object('role', 'user', 'content', '$tag 1')), 'max_tokens', 1000)::text) * 1 + 1000 * 2) / 1000000.0)::numeric");
}

# ---- a reservation at submission, given back and charged item by item
my $b = sq("SET ROLE bu; SELECT llmgw.submit_batch(reqs(3), 'bm-slow')");
my $w = sq(worst('x'));
is(sq("SELECT reserved = 3 * $w, batch_reserved = reserved FROM llmgw.budget_status WHERE name = 'ta total'"),
	't|t', "the batch's worst case (3 x $w) is reserved on the team's hard budget");
is(sq("SELECT count(*), sum(reserved) = 3 * $w FROM llmgw.batch_items WHERE batch_id = $b AND state = 'pending'"),
	'3|t', 'each pending item holds its share');
is(sq("SELECT team_id = llmgw.team_id('ta'), charged_on = reserved_on FROM llmgw.batches WHERE id = $b"),
	't|t', 'the batch is the team\'s, charged and reserved on its budget');
wait_batch($b);
is(sq("SELECT s.reserved, s.spent = u.cost, s.ledger_spent = u.cost, u.cost > 0
        FROM llmgw.budget_status s,
             (SELECT sum(cost) AS cost FROM llmgw.usage WHERE batch_id = $b) u
       WHERE s.name = 'ta total'"),
	'0|t|t|t', 'once the items land: nothing reserved, spent = ledger_spent = their usage rows');

# ---- a synchronous call refused for what a batch reserved
sq("SELECT llmgw.create_budget('bv role', 'role', 'bv', 'total', 3 * $w + 0.000001)");
$b = sq("SET ROLE bv; SELECT llmgw.submit_batch(reqs(3), 'bm-slow')");
my $err = stderr_of('bv', "SELECT llm_complete('hi', 'bm-slow', max_tokens => 10)");
like($err, qr/LG010: budget "bv role" is exhausted/, 'a synchronous call finds the budget reserved by the batch');
like($err, qr/Spent 0\.000000 USD of [0-9.]+ USD this budget's lifetime, ${\ sprintf('%.6f', 3 * $w)} USD reserved/,
	'its DETAIL counts the batch reservation');
wait_batch($b);
is(stderr_of('bv', "SELECT llm_complete('hi', 'bm-slow', max_tokens => 10)"), '',
	'once the batch is settled the call goes through');

# ---- a budget too small for the job: only what fits; nothing: LG010
sq("SELECT llmgw.create_budget('bw role', 'role', 'bw', 'total', 2.5 * ($w))");
sq(q{
	CREATE TABLE t1 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t1 SELECT g, 'x ' || g, NULL FROM generate_series(1, 5) g;
	GRANT SELECT, UPDATE ON t1 TO bw});
$err = stderr_of('bw', "CALL llmgw.enrich('t1', 'id', 'body', 'summary', 'bm', max_tokens => 1000, mode => 'batch')");
like($err, qr/only 2 of 5 requests fit under budget "bw role"/, 'submit_batch says how many fit');
like($err, qr/job (\d+): 2 rows queued in 1 provider batches.*job \1: 3 rows held back/s,
	'enrich queues the two rows that fit and holds three back');
my ($job) = $err =~ /job (\d+):/;
is(sq("SELECT rows_total, rows_held, last_error LIKE 'LG010: 3 rows held back%' FROM llmgw.job_progress WHERE id = $job"),
	'2|3|t', 'job_progress shows the rows held back');
wait_job($job);
is(sq("SELECT count(*) FROM t1 WHERE summary IS NOT NULL"), '2', 'the two rows are answered, the rest stay NULL');
sq(q{
	CREATE ROLE bx LOGIN IN ROLE llmgw_user;
	GRANT SELECT, UPDATE ON t1 TO bx;
	SELECT llmgw.create_budget('bx role', 'role', 'bx', 'total', 0.000001)});
like(stderr_of('bx', "SELECT llmgw.submit_batch(reqs(1), 'bm')"),
	qr/ERROR:  LG010: budget "bx role" is exhausted/, 'a batch whose first request does not fit: LG010');
like(stderr_of('bx', "CALL llmgw.enrich('t1', 'id', 'body', 'summary', 'bm', max_tokens => 1000, mode => 'batch')"),
	qr/ERROR:  LG010: budget "bx role" is exhausted/, 'enrich with no room at all: LG010');
is(sq("SELECT count(*) FROM llmgw.jobs WHERE owner = 'bx'"), '0', 'and no job is left behind');

# ---- kill -9 of a worker while results are written: reservations and charges stay exact
sq(q{
	SELECT llmgw.create_budget('ta day', 'team', 'ta', 'day', 1);
	CREATE TABLE t5 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t5 SELECT g, 'five ' || g, NULL FROM generate_series(1, 6) g;
	GRANT SELECT, UPDATE ON t5 TO bu;
});
LlmgwTest::slow_writes($node, 't5', 'bu', 3);
$err = stderr_of('bu', "CALL llmgw.enrich('t5', 'id', 'body', 'summary', 'bm', max_tokens => 1000, mode => 'batch')");
($job) = $err =~ /job (\d+):/;
LlmgwTest::wait_ingest_sleep($node);
is(sq("SELECT b.reserved = (SELECT sum(i.reserved) FROM llmgw.batch_items i JOIN llmgw.batches t ON t.id = i.batch_id
                           WHERE t.job_id = $job AND i.state = 'pending'), b.reserved > 0
        FROM llmgw.budget_status b WHERE b.name = 'ta day'"),
	't|t', 'mid-ingest: the reservation is that of the items not written');
my $pid = sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' AND wait_event = 'PgSleep'");
kill 'KILL', $pid;
sleep 1;
$node->poll_query_until('postgres', "SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")
  or die 'the workers did not come back';
wait_job($job);
is(sq("SELECT b.reserved, b.spent = u.cost, b.ledger_spent = u.cost, u.n, u.ids
        FROM llmgw.budget_status b,
             (SELECT sum(cost) AS cost, count(*) AS n, count(DISTINCT request_id) AS ids
                FROM llmgw.usage WHERE team_id = llmgw.team_id('ta')
                 AND started_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') u
       WHERE b.name = 'ta day'"),
	'0|t|t|9|9', 'after the crash: nothing reserved, every item charged once, ledger = rollups = usage rows');
is(sq("SELECT count(*), count(DISTINCT request_id), (SELECT count(*) FROM t5 WHERE summary IS NOT NULL) FROM llmgw.usage WHERE job_id = $job"),
	'6|6|6', 'one usage row per item of the job');
sq("ALTER SYSTEM RESET llmgw.batch_ingest_chunk; ALTER SYSTEM RESET llmgw.batch_ingest_helpers; SELECT pg_reload_conf()");

# ---- expired items go again in a later batch, answered once, at most 3 attempts
sq(q{
	CREATE TABLE t6 (id int PRIMARY KEY, body text, summary text);
	INSERT INTO t6 VALUES (1, 'once [[expire_once]]', NULL), (2, 'never [[expire]]', NULL), (3, 'fine', NULL);
	GRANT SELECT, UPDATE ON t6 TO bu});
$err = stderr_of('bu', "CALL llmgw.enrich('t6', 'id', 'body', 'summary', 'bm', max_tokens => 1000, mode => 'batch')");
($job) = $err =~ /job (\d+):/;
wait_job($job);
is(sq("SELECT string_agg(id || ':' || (summary IS NOT NULL), ',' ORDER BY id) FROM t6"), '1:true,2:false,3:true',
	'the item that expired once is answered on its retry');
is(sq("SELECT string_agg(i.row_key || '/' || u.attempt || '/' || u.status || coalesce('/' || u.error_class, ''), ',' ORDER BY i.row_key, u.attempt)
        FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id
        JOIN llmgw.usage u ON u.request_id = i.request_id WHERE b.job_id = $job"),
	'1/1/error/expired,1/2/ok,2/1/error/expired,2/2/error/expired,2/3/error/expired,3/1/ok',
	'one usage row per attempt: the retried item answered once, the other given up after 3 attempts');
is(sq("SELECT rows_done, rows_failed, status, (SELECT count(*) FROM llmgw.batches WHERE job_id = $job) FROM llmgw.jobs WHERE id = $job"),
	'2|0|finished|3', 'the job ends after three batches');
sq(q{UPDATE t6 SET body = 'again [[expire_once]]', summary = NULL WHERE id = 1});
$err = stderr_of('bu', "CALL llmgw.enrich('t6', 'id', 'body', 'summary', 'bm', max_tokens => 1000, mode => 'batch', retry => 'none')");
($job) = $err =~ /job (\d+):/;
wait_job($job);
is(sq("SELECT (SELECT count(*) FROM llmgw.batches WHERE job_id = $job), (SELECT summary IS NULL FROM t6 WHERE id = 1)"),
	'1|t', "retry => 'none': no second batch");

# ---- embeddings through a batch, at the batch rates
$b = sq("SET ROLE bu; SELECT llmgw.submit_embedding_batch(ARRAY['hello world', 'good night'], 'emb')");
wait_batch($b);
is(sq("SELECT string_agg(jsonb_array_length(answer #> '{data,0,embedding}')::text, ',' ORDER BY custom_id) FROM llmgw.batch_items WHERE batch_id = $b"),
	'8,8', 'the vectors land in batch_items.answer');
is(sq("SELECT string_agg(u.input_tokens || ':' || u.output_tokens || ':' ||
                        (u.cost = llmgw.cost(llmgw.batch_price(p), u.input_tokens, 0) AND u.cost * 2 = llmgw.cost(p, u.input_tokens, 0)), ',')
        FROM llmgw.usage u JOIN llmgw.prices p ON p.id = u.price_id WHERE u.batch_id = $b"),
	'2:0:true,2:0:true', 'its usage rows are priced at half the embedding rate');

# ---- the spend views tell batch from synchronous spend
sq("SET ROLE bu; SELECT llm_complete('a synchronous call', 'bm', max_tokens => 10)");
is(sq("SELECT (SELECT sum(cost) FILTER (WHERE batch) = (SELECT sum(cost) FROM llmgw.usage WHERE batch_id IS NOT NULL)
                  AND sum(cost) FILTER (WHERE NOT batch) = (SELECT sum(cost) FROM llmgw.usage WHERE batch_id IS NULL)
                FROM llmgw.spend_daily),
              (SELECT batch_cost = (SELECT sum(cost) FROM llmgw.usage WHERE batch_id IS NOT NULL AND team_id = llmgw.team_id('ta'))
                      AND batch_calls < calls
                 FROM llmgw.spend_by_team WHERE team = 'ta')"),
	't|t', 'spend_daily.batch and spend_by_team.batch_cost split batch from synchronous spend');

# ---- hostile
is(sq("SET ROLE bv; SELECT count(*) FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id WHERE b.owner <> 'bv'"),
	'0', 'a role sees no other role\'s items or reservations');
like(LlmgwTest::error_of($node, "SET ROLE bv; SELECT reserved FROM llmgw.budget_status"),
	qr/^42501/, 'nor budget_status');
like(LlmgwTest::error_of($node, "SET ROLE bv; SELECT llmgw.budget_batch_reserve('{1}', '{1}', '{0}', '{0}', '{1}')"),
	qr/^42501/, 'the ledger functions are not callable');
like(LlmgwTest::error_of($node, "SET ROLE bv; SELECT llmgw.session_key_hash()"),
	qr/^42501/, 'nor the session key hash');
my $key = sq("SELECT api_key FROM llmgw.create_key('tb')");
like(LlmgwTest::error_of($node, "SET ROLE bv; SELECT set_config('llmgw.api_key', '$key', false); SELECT llmgw.submit_batch(reqs(1), 'bm')"),
	qr/^42501: virtual key \S+ may not use model "bm"|^42501: team "tb" may not use model "bm"/,
	'a key cannot submit a batch its team may not send');
sq("SELECT llmgw.revoke_key(id) FROM llmgw.keys WHERE team = 'tb'");
like(LlmgwTest::error_of($node, "SET ROLE bv; SELECT set_config('llmgw.api_key', '$key', false); SELECT llmgw.submit_batch(reqs(1), 'demo')"),
	qr/^28000/, 'a revoked key submits nothing');

$node->stop;
done_testing();
