# The ingest of a provider batch's results (docs/batch.md, "Worker 0"):
# worker 0 writes a chunk itself (src/batch_ingest.c), and llmgw.batch_ingest
# writes it when llmgw's tables were changed (a trigger someone added).  The
# same results through both give the same items, usage rows, rollups,
# budgets and answers; the triggers added fire; a column someone added to
# llmgw.usage gets its default.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('ingest', 2, conf => "llmgw.batch_poll_interval = 100\n");
$node->safe_psql('postgres', q{
	SELECT llmgw.set_price('ingest-price', input => 2, output => 4, batch_input => 1, batch_output => 2);
	SELECT llmgw.create_model('bm', 'mock', 'batch-model', price_model => 'ingest-price');
	SELECT llmgw.create_model('em', 'mock', 'text-embedding-3-small', price_model => 'ingest-price');
	SELECT llmgw.create_team('tx');
	SELECT llmgw.create_budget('tx day', 'team', 'tx', 'day', 10);
	CREATE ROLE ingester LOGIN IN ROLE llmgw_user;
	SELECT llmgw.bind_role('ingester', 'tx');
	CREATE TABLE direct_t (id int PRIMARY KEY, body text, summary text);
	CREATE TABLE sql_t (LIKE direct_t INCLUDING ALL);
	INSERT INTO direct_t SELECT o, b, NULL
	  FROM unnest(ARRAY['plain one', 'plain two', 'bad [[fail]]', 'limited [[fail_429]]',
	                    'broken [[fail_500]]', 'late [[expire]]', U&'quote " and \\\\ and \00e9t\00e9',
	                    'plain three', 'plain four', 'plain five']) WITH ORDINALITY u(b, o);
	INSERT INTO sql_t SELECT * FROM direct_t;
	GRANT SELECT, UPDATE ON direct_t, sql_t TO ingester;
});

sub sq { return $node->safe_psql('postgres', $_[0]); }

sub run_job
{
	my ($table) = @_;
	my ($out, $err) = ('', '');
	$node->psql('postgres',
		"CALL llmgw.enrich('$table', 'id', \$\$'Summarise: ' || body\$\$, 'summary', 'bm', max_tokens => 100, mode => 'batch', retry => 'none')",
		stdout => \$out, stderr => \$err, extra_params => [ '-U', 'ingester' ]);
	my ($job) = $err =~ /job (\d+):/ or die "enrich: $err";
	$node->poll_query_until('postgres', "SELECT status = 'finished' FROM llmgw.jobs WHERE id = $job")
	  or die "job $job did not finish";
	return $job;
}

# What a job left, without what differs by nature (ids, times, batch ids)
sub outcome
{
	my ($job, $table) = @_;
	return sq(qq{
		SELECT string_agg(format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', u.tags->>'custom_id',
			u.status, u.error_class, u.http_status, u.input_tokens, u.output_tokens,
			u.cached_input_tokens, u.reasoning_tokens, u.usage_source, u.cost, u.currency,
			u.unpriced, u.attempt, u.role_name, u.team_id IS NOT NULL, u.model || u.provider || u.upstream_model), ',' ORDER BY u.tags->>'custom_id')
		  FROM llmgw.usage u WHERE u.job_id = $job})
	  . "\n"
	  . sq(qq{
		SELECT string_agg(format('%s|%s|%s|%s|%s', i.custom_id, i.state, i.error, i.error_class,
		                         i.request_id = u.request_id), ',' ORDER BY i.custom_id)
		  FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id
		  LEFT JOIN llmgw.usage u ON u.request_id = i.request_id
		 WHERE b.job_id = $job})
	  . "\n"
	  . sq("SELECT string_agg(id || '=' || coalesce(summary, '-'), ',' ORDER BY id) FROM $table")
	  . "\n"
	  . sq("SELECT rows_done || '/' || rows_failed FROM llmgw.jobs WHERE id = $job");
}

# A row trigger someone added (when, on what), counting its rows in table $name
sub counting_trigger
{
	my ($name, $on, $return) = @_;
	$node->safe_psql('postgres', qq{
		CREATE TABLE $name (n int);
		INSERT INTO $name VALUES (0);
		CREATE FUNCTION $name() RETURNS trigger LANGUAGE plpgsql AS
		  \$\$ BEGIN UPDATE public.$name SET n = n + 1; RETURN $return; END \$\$;
		CREATE TRIGGER $name $on FOR EACH ROW EXECUTE FUNCTION $name();
	});
}

# ---- the same job through both ways
my $direct = run_job('direct_t');
my $direct_outcome = outcome($direct, 'direct_t');
like($direct_outcome, qr/\n\d+=Hello.*\n6\/3$/s, 'the direct ingest answers six rows, fails three and one expires');

counting_trigger('usage_seen', 'AFTER INSERT ON llmgw.usage', 'NULL');
my $sql = run_job('sql_t');
is(outcome($sql, 'sql_t'), $direct_outcome,
	'with a trigger on llmgw.usage, llmgw.batch_ingest writes the same items, usage rows, answers and counts');
is(sq('SELECT n FROM usage_seen'), '10', 'and the trigger fired for each usage row');
$node->safe_psql('postgres', 'DROP TRIGGER usage_seen ON llmgw.usage');

# the rollups and the ledger agree with the usage rows, whichever way they were written
is(sq(q{
	SELECT (SELECT sum(calls) FROM llmgw.usage_daily WHERE batch) = (SELECT count(*) FROM llmgw.usage WHERE batch_id IS NOT NULL),
	       (SELECT sum(cost) FROM llmgw.usage_daily WHERE batch) = (SELECT sum(cost) FROM llmgw.usage WHERE batch_id IS NOT NULL),
	       (SELECT sum(errors) FROM llmgw.usage_daily WHERE batch) = (SELECT count(*) FROM llmgw.usage WHERE batch_id IS NOT NULL AND status <> 'ok'),
	       (SELECT sum(input_tokens) FROM llmgw.usage_daily WHERE batch) = (SELECT sum(input_tokens) FROM llmgw.usage WHERE batch_id IS NOT NULL),
	       (SELECT string_agg(status || coalesce(error_class, '') || ':' || calls || ':' || cost, ',' ORDER BY status, error_class)
	          FROM (SELECT status, error_class, sum(calls) AS calls, sum(cost) AS cost FROM llmgw.usage_totals
	                 WHERE model = 'bm' GROUP BY 1, 2) t)
	     = (SELECT string_agg(status || coalesce(error_class, '') || ':' || calls || ':' || cost, ',' ORDER BY status, error_class)
	          FROM (SELECT status, error_class, count(*) AS calls, sum(coalesce(cost, 0)) AS cost FROM llmgw.usage
	                 WHERE model = 'bm' GROUP BY 1, 2) u),
	       b.spent = (SELECT sum(cost) FROM llmgw.usage WHERE batch_id IS NOT NULL), b.reserved
	  FROM llmgw.budget_status b WHERE b.name = 'tx day'}),
	't|t|t|t|t|t|0', 'rollups, totals and the budget equal the usage rows; nothing left reserved');

# ---- a trigger on llmgw.batch_items: llmgw.batch_ingest too
$node->safe_psql('postgres', 'UPDATE sql_t SET summary = NULL');
counting_trigger('items_seen', 'BEFORE UPDATE ON llmgw.batch_items', 'NEW');
my $again = run_job('sql_t');
is(sq('SELECT n >= 10 FROM items_seen'), 't', 'a trigger on llmgw.batch_items: it fires for the results');
is(sq("SELECT rows_done || '/' || rows_failed FROM llmgw.jobs WHERE id = $again"), '6/3', 'and the job is the same');
$node->safe_psql('postgres', 'DROP TRIGGER items_seen ON llmgw.batch_items');

# ---- a column someone added to llmgw.usage gets its default
$node->safe_psql('postgres', q{
	ALTER TABLE llmgw.usage ADD COLUMN cost_centre text NOT NULL DEFAULT 'unassigned';
	UPDATE direct_t SET summary = NULL;
});
my $added = run_job('direct_t');
is(sq("SELECT count(*), min(cost_centre), count(DISTINCT id) FROM llmgw.usage WHERE job_id = $added"),
	'10|unassigned|10', 'a column added to llmgw.usage gets its default, each row its own id');
$node->safe_psql('postgres', 'ALTER TABLE llmgw.usage DROP COLUMN cost_centre');

# ---- an item's result is written on its own page (a heap-only tuple: no
# index entry), which batch_items' fill factor leaves room for; pageinspect
# reads the flag of each item's row as it is now
$node->safe_psql('postgres', q{
	CREATE EXTENSION pageinspect;
	CREATE TABLE hot_t (id int PRIMARY KEY, body text, summary text);
	INSERT INTO hot_t SELECT i, 'plain ticket ' || i, NULL FROM generate_series(1, 2000) i;
	GRANT SELECT, UPDATE ON hot_t TO ingester;
});
my $hot = run_job('hot_t');
is(sq(qq{
	SELECT count(*) FILTER (WHERE i.state = 'done'), count(*) FILTER (WHERE (p.t_infomask2 & 32768) <> 0)
	  FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id
	 CROSS JOIN LATERAL heap_page_items(get_raw_page('llmgw.batch_items', (i.ctid::text::point)[0]::int)) p
	 WHERE b.job_id = $hot AND p.lp = (i.ctid::text::point)[1]::int}),
	'2000|2000', 'every item of a job of 2,000 rows got its result without a new index entry');
# what the workers wrote reaches the statistics autovacuum goes by (worker 0
# wrote the first chunk, and runs no SQL call that would report it)
ok($node->poll_query_until('postgres',
		"SELECT n_tup_upd >= 2000 FROM pg_stat_user_tables WHERE relname = 'hot_t'"),
	'the answers written count in pg_stat_user_tables');

# ---- batches without a job: the provider's body as it was written (numbers too)
my $chat = sq(q{SELECT llmgw.submit_batch(ARRAY['{"messages":[{"role":"user","content":"hi"}],"max_tokens":50}']::jsonb[], 'bm')});
my $embed = sq(q{SELECT llmgw.submit_embedding_batch(ARRAY['to embed', 'too'], 'em')});
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM llmgw.batches WHERE id IN ($chat, $embed) AND state = 'completed'")
  or die 'the batches did not complete';
is(sq("SELECT count(*), bool_and(answer ? 'choices' OR answer ? 'data'),
              bool_and(answer->'usage' ? 'prompt_tokens')
         FROM llmgw.batch_items WHERE batch_id IN ($chat, $embed) AND state = 'done'"),
	'3|t|t', 'answers of batches without a job are the provider bodies');
is(sq("SELECT jsonb_typeof(answer #> '{data,0,embedding}'), (SELECT count(*) FROM llmgw.usage WHERE batch_id = $embed AND output_tokens = 0)
         FROM llmgw.batch_items WHERE batch_id = $embed LIMIT 1"),
	'array|2', 'embeddings: vectors in the answer, no output billed');

done_testing();
