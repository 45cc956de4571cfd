# llmgw on a streaming physical standby: no worker runs there, the finance
# views read what the primary wrote, calls fail at once with SQLSTATE 25006;
# once promoted, the workers start and calls work.  The journal of calls in
# flight comes with the base backup: after the promotion, a call the
# primary had in flight at backup time and finished is not recorded again,
# one that never reached the standby's data is recorded as interrupted.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $primary = LlmgwTest::node('primary', 2, allows_streaming => 1);
my $key = $primary->safe_psql('postgres', q{
	SELECT llmgw.create_model('metered', 'mock', 'metered-model', price_model => 'metered-price');
	SELECT llmgw.create_model('finishing', 'mock', 'mock-model;delay:5000');
	SELECT llmgw.create_model('hanging', 'mock', 'mock-model;delay:120000');
	SELECT llmgw.create_model('embed', 'mock', 'embed-model');
	SELECT llmgw.set_price('metered-price', 0, 0, per_request => 0.01);
	SELECT llmgw.create_team('finance-team');
	SELECT llmgw.create_budget('team month', 'team', 'finance-team', 'month', 10);
	SELECT api_key FROM llmgw.create_key('finance-team', 'k');});
$key = (split /\n/, $key)[-1];

is($primary->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmgw worker'"),
	'2', 'primary: two llmgw workers run');

# Calls on the primary: synchronous, many, chat, a job, an asynchronous one
$primary->safe_psql('postgres', qq{
	SET llmgw.api_key = '$key';
	SELECT llm_complete('one', 'metered', max_tokens => 5);
	SELECT * FROM llm_complete_many(ARRAY['two', 'three'], 'metered');
	SELECT llm_chat('{"model": "metered", "messages": [{"role": "user", "content": "four"}]}');
	RESET llmgw.api_key;
	CREATE TABLE notes (id int PRIMARY KEY, body text, answer text);
	INSERT INTO notes SELECT i, 'note ' || i FROM generate_series(1, 3) i;
});
$primary->safe_psql('postgres',
	q{CALL llmgw.enrich('notes', 'id', 'body', 'answer', 'metered', job_name => 'notes')});
my $async = $primary->safe_psql('postgres', q{
	SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "async"}]}')});
is($primary->safe_psql('postgres', "SELECT status FROM llmgw.wait($async, '60 seconds')"), 'done',
	'primary: the asynchronous call is answered');

# Two calls in flight while the base backup is taken: one finishes before the
# standby is promoted, the other hangs on the primary
my @finishing = LlmgwTest::background($primary,
	"SELECT llm_complete('finishing', 'finishing', max_tokens => 5)");
my @hanging = LlmgwTest::background($primary,
	"SELECT llm_complete('hanging', 'hanging', max_tokens => 5)");
ok($primary->poll_query_until('postgres', 'SELECT count(*) = 2 FROM llmgw.calls_in_flight'),
	'primary: two calls in flight are journaled');
sleep 2;    # the journal is flushed to disk once a second
$primary->backup('bk');
is($primary->safe_psql('postgres', 'SELECT count(*) FROM llmgw.calls_in_flight'), '2',
	'primary: both were still in flight when the backup ended');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'bk', has_streaming => 1);
$standby->start;

# the first call ends on the primary; its usage row reaches the standby
$finishing[0]->finish;
is(${ $finishing[1] }, "Hello! You said: finishing\n", 'primary: the finishing call is answered');
$primary->safe_psql('postgres', qq{
	SET llmgw.api_key = '$key';
	SELECT llm_complete('five', 'metered', max_tokens => 5);
});
$primary->wait_for_catchup($standby);

# On the standby
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'standby: in recovery');
is($standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmgw worker'"),
	'0', 'standby: no llmgw worker runs');
is($standby->safe_psql('postgres',
		'SELECT workers_running, calls_queued, calls_in_flight, workers_configured FROM llmgw.stats()'),
	'0|0|0|2', 'standby: llmgw.stats() works and shows no worker');

# the finance views are plain reads, equal to the primary's
for my $q (
	'SELECT * FROM llmgw.spend_daily',
	'SELECT * FROM llmgw.spend_by_key',
	'SELECT * FROM llmgw.spend_by_team',
	'SELECT * FROM llmgw.spend_by_model',
	'SELECT name, limit_amount, spent FROM llmgw.budget_status',
	'SELECT * FROM llmgw.requests',
	'SELECT id, name, status, rows_done, spend FROM llmgw.job_progress',
	'SELECT * FROM llmgw.usage')
{
	my $sql = "SELECT count(*) || ' ' || md5(string_agg(v::text, E'\\n' ORDER BY v::text)) FROM ($q) v";
	my $p = $primary->safe_psql('postgres', $sql);
	is($standby->safe_psql('postgres', $sql), $p, "standby: $q reads as on the primary ($p)");
}
is($standby->safe_psql('postgres', q{
	SELECT count(*), sum(cost) FROM llmgw.usage WHERE model = 'metered'}),
	'8|0.08', 'standby: the usage rows of the primary');
is($standby->safe_psql('postgres', q{SET ROLE llmgw_finance;
	SELECT team, sum(calls), sum(cost) FROM llmgw.spend_daily WHERE team IS NOT NULL GROUP BY team}),
	'finance-team|5|0.05', 'standby: llmgw_finance reads the spend');

# every call fails at once, with 25006
my $standby_error = '25006: llmgw cannot call models on a standby server';
for my $call (
	q{SELECT llm_complete('x', 'demo')},
	q{SELECT * FROM llm_complete_many(ARRAY['x'], 'demo')},
	q{SELECT llm_chat('{"model": "demo", "messages": [{"role": "user", "content": "x"}]}')},
	q{SELECT llm_embed('x', 'embed')},
	q{SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "x"}]}')})
{
	my $t0 = time;
	is(LlmgwTest::error_of($standby, "SET statement_timeout = '20s'; $call"), $standby_error,
		"standby: $call fails with 25006");
	ok(time - $t0 < 10, 'standby: at once');
}
is($standby->safe_psql('postgres', q{
	DO $$
	BEGIN
	    PERFORM llm_complete('x', 'demo');
	    RAISE EXCEPTION 'no error';
	EXCEPTION WHEN read_only_sql_transaction THEN
	    RAISE NOTICE 'caught %', SQLERRM;
	END $$;
	SELECT 'caught'}), 'caught', 'standby: the error is caught as read_only_sql_transaction');

# Promotion: the workers start, calls work and write usage rows
$standby->promote;
ok($standby->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'llmgw worker'"),
	'promoted: the workers start');
is(LlmgwTest::error_of($standby, "SELECT llm_complete('after promotion', 'metered', max_tokens => 5)"),
	'ok', 'promoted: a call works');
is($standby->safe_psql('postgres', q{
	SELECT status || ':' || cost FROM llmgw.usage WHERE model = 'metered'
	 ORDER BY id DESC LIMIT 1}), 'ok:0.01', 'promoted: it wrote a priced usage row');
is($standby->safe_psql('postgres', q{
	SELECT count(*), sum(cost) FROM llmgw.usage WHERE model = 'metered'}),
	'9|0.09', 'promoted: the rows of the primary and the new one');
is($standby->safe_psql('postgres', qq{SET llmgw.api_key = '$key';
	SELECT llm_complete('with the key', 'metered', max_tokens => 10)}),
	'Hello! You said: with the key', 'promoted: the virtual key works');
is($standby->safe_psql('postgres',
		"SELECT spent || ':' || ledger_spent FROM llmgw.budget_status WHERE name = 'team month'"),
	'0.06:0.06', 'promoted: the budget ledger counts the primary\'s spend');
my $promoted_async = $standby->safe_psql('postgres', q{
	SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "async"}]}')});
ok($promoted_async > $async, 'promoted: a new asynchronous call gets a new id');
is($standby->safe_psql('postgres', "SELECT status FROM llmgw.wait($promoted_async, '60 seconds')"),
	'done', 'promoted: and is answered');

# The journal from the base backup: the call still hanging on the primary is
# recorded as interrupted; the finished one keeps its one row
ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM llmgw.usage WHERE model = 'hanging' AND status = 'interrupted'}),
	'promoted: the call in flight at backup time is recorded as interrupted');
is($standby->safe_psql('postgres', q{
	SELECT string_agg(status, ',' ORDER BY id) FROM llmgw.usage WHERE model = 'finishing'}),
	'ok', 'promoted: the call that finished before the promotion is not recorded twice');

# the hanging call ends on the primary (cancelled)
$primary->safe_psql('postgres', q{
	SELECT pg_cancel_backend(pid) FROM pg_stat_activity
	 WHERE query LIKE '%''hanging''%' AND backend_type = 'client backend' AND pid <> pg_backend_pid()});
$hanging[0]->finish;
like(${ $hanging[2] }, qr/57014/, 'primary: the hanging call is cancelled');

$standby->stop;
$primary->stop;
done_testing();
