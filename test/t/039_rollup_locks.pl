# The rollups of the usage rows a worker writes straight into llmgw.usage
# are updated in place (src/rollup.c): each rollup row is found and locked
# before any is changed.  A session that holds the day's rollup row (an
# administrator's repair) makes the worker wait for it, not fail; when that
# session changes the row and commits, the worker adds to the row's new
# version, not the old one.  A trigger of someone's on llmgw.usage_daily
# makes the worker go through the INSERT ... ON CONFLICT statement, which
# fires it.  After each, the rollups hold exactly what llmgw.usage holds.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $node = LlmgwTest::node('rollup_locks', 1);
$node->safe_psql('postgres', q{
	SELECT llmgw.set_price('rl-price', input => 1, output => 2);
	SELECT llmgw.create_model('rl', 'mock', 'rl-model', price_model => 'rl-price');
	CREATE TABLE rl_gate (open boolean);
});

# The model's usage rows, its days' rollup rows and its totals, summed: equal?
my $reconciled = q{
	SELECT u.calls = d.calls AND u.calls = t.calls AND u.cost = d.cost AND u.cost = t.cost
	       AND u.i = d.i AND u.i = t.i AND u.o = d.o AND u.o = t.o
	       AND u.calls IS NOT NULL
	  FROM (SELECT count(*) AS calls, sum(cost) AS cost, sum(input_tokens) AS i,
	               sum(output_tokens) AS o FROM llmgw.usage WHERE model = 'rl') u,
	       (SELECT sum(calls) AS calls, sum(cost) AS cost, sum(input_tokens) AS i,
	               sum(output_tokens) AS o FROM llmgw.usage_daily WHERE model = 'rl') d,
	       (SELECT sum(calls) AS calls, sum(cost) AS cost, sum(input_tokens) AS i,
	               sum(output_tokens) AS o FROM llmgw.usage_totals WHERE model = 'rl') t};

is($node->safe_psql('postgres', q{SELECT llm_complete('first', model => 'rl') IS NOT NULL}),
	't', 'a first call makes its rollup rows');
is($node->safe_psql('postgres', $reconciled), 't', 'the rollups hold its row');

# A session locks the day's rollup row, waits for the gate, changes the row
# (a new version of it) and commits
my ($locker, $lout, $lerr) = LlmgwTest::background($node, q{
	BEGIN;
	SELECT count(*) FROM (SELECT FROM llmgw.usage_daily WHERE model = 'rl' FOR UPDATE) l;
	DO $$ BEGIN
	    WHILE NOT EXISTS (SELECT 1 FROM rl_gate WHERE open) LOOP PERFORM pg_sleep(0.05); END LOOP;
	END $$;
	UPDATE llmgw.usage_daily SET cost = cost + 0 WHERE model = 'rl';
	COMMIT;
});
$node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%rl_gate WHERE open%'
	   AND wait_event = 'PgSleep'})
  or die "the locking session did not start: $$lerr";

my ($call, $cout, $cerr) =
  LlmgwTest::background($node, q{SELECT llm_complete('second call', model => 'rl')});
ok( $node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_stat_activity
		 WHERE backend_type <> 'client backend' AND wait_event_type = 'Lock'}),
	'the worker waits for the rollup row the session holds');
$call->pump_nb;
ok($call->pumpable, 'and the call waits for its usage to be recorded');

$node->safe_psql('postgres', 'INSERT INTO rl_gate VALUES (true)');
$locker->finish;
is($$lerr, '', 'the session changed the row and committed');
$call->finish;
is($$cerr, '', 'then the call is answered');
isnt($$cout, '', 'with its answer');
is($node->safe_psql('postgres', $reconciled), 't',
	'the rollups hold both rows: the second added to the row\'s new version, once');

# A trigger of someone's on usage_daily: the statement, which fires it
$node->safe_psql('postgres', q{
	CREATE TABLE rl_seen (n integer);
	CREATE FUNCTION rl_seen() RETURNS trigger LANGUAGE plpgsql
	    AS $$ BEGIN INSERT INTO rl_seen VALUES (1); RETURN NULL; END $$;
	CREATE TRIGGER rl_seen AFTER UPDATE ON llmgw.usage_daily FOR EACH ROW
	    EXECUTE FUNCTION rl_seen();
	SELECT llm_complete('third', model => 'rl');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM rl_seen'), '1',
	'a row trigger on usage_daily fires for the day\'s row of the call');
$node->safe_psql('postgres', q{
	DROP TRIGGER rl_seen ON llmgw.usage_daily;
	SELECT llm_complete('fourth', model => 'rl');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM rl_seen'), '1',
	'and without it the rows are updated in place again');
is($node->safe_psql('postgres', $reconciled), 't', 'the rollups hold all four rows');
is($node->safe_psql('postgres', q{SELECT count(*) FROM llmgw.usage WHERE model = 'rl' AND status = 'ok'}),
	'4', 'four calls, four usage rows');

$node->stop;
done_testing();
