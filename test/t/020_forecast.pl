# Who is waiting (llmgw.calls_now, docs/operations.md#who-is-waiting) and
# the forecast alert across a restart (docs/money.md#forecasts).
#
# Calls in flight: two roles call a slow model (3 s) at once (one of them
# more than its fair share, so that a call stays queued), one asynchronous
# call and one call of the HTTP front door run beside them.  A snapshot
# taken at one moment by a superuser, an admin, finance, each caller and a
# role outside llmgw: every SQL call joins pg_stat_activity by pid to the
# session (and the statement) waiting for it, every other call to the
# worker running it; each caller sees its own calls only, also through a
# leaky function in its WHERE clause; the outsider sees nothing.  Every
# call then has usage rows under the request ids the view showed.
#
# Forecast: a budget forecast to run out raises one alert (with NOTIFY),
# and no second one in the same period after a restart of the server.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $http_port = PostgreSQL::Test::Cluster::get_free_port();
# 2 workers of 8 transfers: a role, a key, a team or the asynchronous calls
# may run 4 calls at once (llmgw.max_share 25%), and whichever worker takes
# a call (the front door's runs where it arrived) has room for it
my $node = LlmgwTest::node('forecast', 2,
	conf => "llmgw.max_connections = 8\nllmgw.max_share = 25\n"
	  . "llmgw.http_listen = '127.0.0.1:$http_port'\n");
my $upstream = 'mock-model;delay:3000';

my $key = $node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('slowfc', 'mock', '$upstream');
	SELECT llmgw.create_team('fc-a');
	SELECT llmgw.create_team('fc-h');
	CREATE ROLE fc_alice LOGIN IN ROLE llmgw_user;
	CREATE ROLE fc_bob LOGIN IN ROLE llmgw_user;
	CREATE ROLE fc_admin LOGIN IN ROLE llmgw_admin;
	CREATE ROLE fc_fin LOGIN IN ROLE llmgw_finance;
	CREATE ROLE fc_none LOGIN;
	SELECT llmgw.bind_role('fc_alice', 'fc-a');
	SELECT api_key FROM llmgw.create_key('fc-h', 'front door key');});
$key = (split /\n/, $key)[-1];
my $deployment = $node->safe_psql('postgres',
	"SELECT id FROM llmgw.deployments WHERE model = 'slowfc'");

# A session of a role, in the background
sub as_role
{
	my ($role, @sql) = @_;
	my ($out, $err) = ('', '');
	my @cmd = ('psql', '-XAtq', '-v', 'VERBOSITY=verbose', '-d',
		$node->connstr('postgres') . " user=$role");
	push @cmd, '-c', $_ for @sql;
	my $h = IPC::Run::start(\@cmd, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return [ $h, \$out, \$err ];
}

# The sessions connect first and wait at a gate (an advisory lock), so that
# every call starts at once when it opens
my ($gate) = LlmgwTest::background($node, 'SELECT pg_advisory_lock(4344); SELECT pg_sleep(600)');
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND granted");
my $through_gate = 'SELECT pg_advisory_lock_shared(4344)';
# bob: an asynchronous call, then a call of his own
my $bob = as_role('fc_bob', $through_gate,
	q{SELECT llmgw.submit('{"model": "slowfc", "messages": [{"role": "user", "content": "bob async"}]}')},
	"SELECT llm_complete('bob', 'slowfc')");
# alice: five calls at once, one more than her share of the calls running
my $alice = as_role('fc_alice', $through_gate,
	"SELECT count(*) FROM llm_complete_many(ARRAY['a1', 'a2', 'a3', 'a4', 'a5'], 'slowfc', concurrency => 5)");
$node->poll_query_until('postgres',
	"SELECT count(*) = 2 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
$node->safe_psql('postgres', q{
	SELECT pg_terminate_backend(pid) FROM pg_stat_activity
	 WHERE query LIKE '%pg_advisory_lock(4344)%' AND pid <> pg_backend_pid()});
$gate->finish;
# a client of the front door
my ($curl_out, $curl_err) = ('', '');
my $curl = IPC::Run::start(
	[ 'curl', '-sS', '-m', '60', "http://127.0.0.1:$http_port/v1/chat/completions",
	  '-H', "Authorization: Bearer $key", '-H', 'Content-Type: application/json',
	  '-d', '{"model": "slowfc", "messages": [{"role": "user", "content": "from http"}]}' ],
	'>', \$curl_out, '2>', \$curl_err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));

# One moment, seen by everyone: as soon as 7 calls are sent and alice's
# fifth waits, each role reads llmgw.calls_now in turn, in one session
my ($rc, $out, $err) = $node->psql('postgres', q{
	CREATE TABLE snap AS
	SELECT ''::text AS seen_by, c.*, ''::text AS act_user, ''::text AS act_type,
	       ''::text AS act_query, ''::text AS worker_type
	  FROM llmgw.calls_now c WHERE false;
	CREATE TABLE leak (seen_by text, returned bigint, calls bigint, saw text);
	GRANT INSERT ON snap, leak TO PUBLIC;
	CREATE FUNCTION pg_temp.leak(t text) RETURNS boolean
	LANGUAGE plpgsql IMMUTABLE COST 0.0000001 AS $$
	BEGIN
		PERFORM set_config('leak.calls', (current_setting('leak.calls')::bigint + 1)::text, false);
		PERFORM set_config('leak.seen', current_setting('leak.seen') || t || E'\n', false);
		RETURN true;
	END
	$$;
	DO $$
	BEGIN
		FOR i IN 1 .. 3000 LOOP
			EXIT WHEN (SELECT count(*) FILTER (WHERE attempt IS NOT NULL) = 7
			              AND count(*) FILTER (WHERE state = 'queued') = 1
			             FROM llmgw.calls_now);
			PERFORM pg_sleep(0.01);
		END LOOP;
	END
	$$;
	INSERT INTO snap
	SELECT 'superuser', c.*, a.usename, a.backend_type, a.query, w.backend_type
	  FROM llmgw.calls_now c
	  LEFT JOIN pg_stat_activity a ON a.pid = c.pid
	  LEFT JOIN pg_stat_activity w ON w.pid = c.worker_pid;
	SET ROLE fc_admin;
	INSERT INTO snap
	SELECT 'admin', c.*, a.usename, a.backend_type, NULL, w.backend_type
	  FROM llmgw.calls_now c
	  LEFT JOIN pg_stat_activity a ON a.pid = c.pid
	  LEFT JOIN pg_stat_activity w ON w.pid = c.worker_pid;
	SET ROLE fc_fin;
	INSERT INTO snap SELECT 'finance', c.*, NULL, NULL, NULL, NULL FROM llmgw.calls_now c;
	SET ROLE fc_alice;
	INSERT INTO snap SELECT 'alice', c.*, NULL, NULL, NULL, NULL FROM llmgw.calls_now c;
	SELECT set_config('leak.calls', '0', false), set_config('leak.seen', '', false);
	INSERT INTO leak (seen_by, returned)
	SELECT 'alice', count(*) FROM llmgw.calls_now c WHERE pg_temp.leak(c::text);
	RESET ROLE;
	UPDATE leak SET calls = current_setting('leak.calls')::bigint, saw = current_setting('leak.seen')
	 WHERE seen_by = 'alice';
	SET ROLE fc_bob;
	INSERT INTO snap SELECT 'bob', c.*, NULL, NULL, NULL, NULL FROM llmgw.calls_now c;
	SELECT set_config('leak.calls', '0', false), set_config('leak.seen', '', false);
	INSERT INTO leak (seen_by, returned)
	SELECT 'bob', count(*) FROM llmgw.calls_now c WHERE pg_temp.leak(c::text);
	RESET ROLE;
	UPDATE leak SET calls = current_setting('leak.calls')::bigint, saw = current_setting('leak.seen')
	 WHERE seen_by = 'bob';
	SELECT 'taken';
});
like($out, qr/taken/, 'the snapshot was taken') or diag($err);

$_->[0]->finish for ($alice, $bob);
$curl->finish;
like(${ $alice->[1] }, qr/^5$/m, 'alice: five answers') or diag(${ $alice->[2] });
like(${ $bob->[1] }, qr/^Hello! You said: bob$/m, 'bob: an answer') or diag(${ $bob->[2] });
my ($async) = ${ $bob->[1] } =~ /^(\d+)$/m;
like($curl_out, qr/Hello! You said: from http/, 'the front door client: an answer')
  or diag($curl_out . $curl_err);
is($node->safe_psql('postgres', "SELECT status FROM llmgw.wait($async, '60 seconds')"), 'done',
	'bob\'s asynchronous call is answered');

# What the admin saw (pg_stat_activity shows an admin who runs the other
# sessions, not what they run: that needs pg_read_all_stats, or a superuser)
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s %s %s %s', caller, coalesce(role_name, '-'), state, n), ', '
	                  ORDER BY caller, role_name, state)
	  FROM (SELECT caller, role_name, state, count(*) n FROM snap
	         WHERE seen_by = 'admin' GROUP BY 1, 2, 3) s}),
	'async fc_bob running 1, http - running 1, sql fc_alice queued 1, sql fc_alice running 4, sql fc_bob running 1',
	'admin: every call, by caller, role and state');
is($node->safe_psql('postgres', q{
	SELECT count(*), count(DISTINCT pid), bool_and(act_user = role_name)
	  FROM snap WHERE seen_by = 'admin' AND caller = 'sql'}),
	'6|2|t',
	'admin: each SQL call joins pg_stat_activity by pid, to a session of its role');
is($node->safe_psql('postgres', q{
	SELECT count(*), bool_and(act_user = role_name), bool_and(act_type = 'client backend'),
	       bool_and(act_query LIKE '%llm_complete%')
	  FROM snap WHERE seen_by = 'superuser' AND caller = 'sql'}),
	'6|t|t|t', 'superuser: to a client backend, and to the statement that waits for it');
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s pid:%s worker:%s async:%s', caller, coalesce(pid::text, 'none'),
	                         worker_type, async_id IS NOT NULL), ', ' ORDER BY caller)
	  FROM snap WHERE seen_by = 'superuser' AND caller <> 'sql'}),
	'async pid:none worker:llmgw worker async:t, http pid:none worker:llmgw worker async:f',
	'an asynchronous call and a front door call have no caller pid, and the worker running them');
is($node->safe_psql('postgres', qq{
	SELECT count(*),
	       bool_and(deployment_id = $deployment AND provider = 'mock'
	                AND upstream_model = '$upstream' AND attempt = 1 AND model = 'slowfc'),
	       bool_and(worker_type = 'llmgw worker'),
	       bool_and(attempt_started_at >= submitted_at AND age > interval '0'),
	       string_agg(DISTINCT coalesce(team, '-'), ',' ORDER BY coalesce(team, '-'))
	  FROM snap WHERE seen_by = 'superuser' AND state = 'running'}),
	'7|t|t|t|-,fc-a,fc-h',
	'running calls name their deployment, attempt, worker and team');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT request_id, state, caller, pid, worker_pid, role_name, team,
	                             model, deployment_id, attempt, key_prefix, async_id
	                        FROM snap WHERE seen_by = 'admin'
	                      EXCEPT
	                      SELECT request_id, state, caller, pid, worker_pid, role_name, team,
	                             model, deployment_id, attempt, key_prefix, async_id
	                        FROM snap WHERE seen_by = 'superuser') d}),
	'0', 'the admin sees the calls as the superuser does');
is($node->safe_psql('postgres', q{
	SELECT count(*), bool_and(worker_pid IS NULL AND attempt IS NULL AND deployment_id IS NULL
	                          AND model = 'slowfc' AND role_name = 'fc_alice' AND age >= interval '0'),
	       bool_and(pid = (SELECT min(pid) FROM snap WHERE seen_by = 'admin' AND role_name = 'fc_alice'
	                                                    AND caller = 'sql'))
	  FROM snap WHERE seen_by = 'admin' AND state = 'queued'}),
	'1|t|t', 'admin: the queued call has no worker nor attempt yet, and its caller\'s pid');
is($node->safe_psql('postgres', q{
	SELECT key_prefix IS NOT NULL AND team = 'fc-h' FROM snap WHERE seen_by = 'admin' AND caller = 'http'}),
	't', 'admin: the front door call shows its key\'s prefix and team');

# What each of the others saw
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s:%s', seen_by, n), ' ' ORDER BY seen_by)
	  FROM (SELECT seen_by, count(*) n FROM snap GROUP BY 1) s}),
	'admin:8 alice:5 bob:2 finance:8 superuser:8', 'finance sees all; alice and bob see their own');
is($node->safe_psql('postgres', q{
	SELECT bool_and(role_name = 'fc_alice') FROM snap WHERE seen_by = 'alice'}),
	't', 'alice sees only her calls');
is($node->safe_psql('postgres', q{
	SELECT string_agg(caller, ',' ORDER BY caller) FROM snap WHERE seen_by = 'bob'}),
	'async,sql', 'bob sees his call and his asynchronous call');
is($node->safe_psql('postgres', q{
	SELECT string_agg(format('%s returned:%s shown:%s other:%s', seen_by, returned, calls,
	                         strpos(saw, CASE seen_by WHEN 'alice' THEN 'fc_bob' ELSE 'fc_alice' END) > 0),
	                  ', ' ORDER BY seen_by)
	  FROM leak}),
	'alice returned:5 shown:5 other:f, bob returned:2 shown:2 other:f',
	'a leaky function in the WHERE clause is shown no call of another role');
is(LlmgwTest::error_of($node, 'SET ROLE fc_none; SELECT * FROM llmgw.calls_now'),
	'42501: permission denied for schema llmgw', 'a role outside llmgw reads nothing');

# The request ids shown are those of the usage rows written
is($node->safe_psql('postgres', q{
	SELECT count(*), count(u.request_id) FROM snap s
	  LEFT JOIN (SELECT DISTINCT request_id FROM llmgw.usage) u USING (request_id)
	 WHERE s.seen_by = 'admin'}),
	'8|8', 'every call shown has its usage rows, under the same request id');
is($node->safe_psql('postgres', 'SELECT count(*) FROM llmgw.calls_now'), '0',
	'nothing is left in flight');

# Forecast: a month budget 0.003 short of its limit, its spend at the start
# of the month; a call of 0.001 makes it forecast to run out
$node->safe_psql('postgres', q{
	SELECT llmgw.create_usage_partitions(0);
	SELECT llmgw.create_model('fcm', 'mock', 'fcm-model', price_model => 'fcm-price');
	SELECT llmgw.set_price('fcm-price', input => 0, output => 0, per_request => 0.001);
	INSERT INTO llmgw.usage (request_id, started_at, model, provider, upstream_model, status, cost, currency)
	VALUES (gen_random_uuid(), llmgw.period_start('month'), 'fcm', 'mock', 'fcm-model', 'ok', 99.997, 'USD');
	SELECT llmgw.create_budget('tap forecast', 'model', 'fcm', 'month', 100, 'soft');});
my ($lout, $lerr) = ('', '');
my $lh = IPC::Run::start(
	[ 'psql', '-XAtq', '-d', $node->connstr('postgres'), '-c', 'LISTEN llmgw_alerts',
	  '-c', 'SELECT pg_sleep(3)', '-c', 'SELECT 1' ],
	'>', \$lout, '2>', \$lerr, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$node->poll_query_until('postgres',
	"SELECT count(*) > 0 FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3)'");
$node->safe_psql('postgres', "SELECT llm_complete('one', 'fcm')");
$lh->finish;
like($lout . $lerr,
	qr/llmgw_alerts.*"budget" : "tap forecast", "kind" : "forecast_exhaustion".*"run_rate" : [0-9.]+, "exhausts_at" : "\d{4}-/s,
	'NOTIFY llmgw_alerts sends the forecast, with its run-rate and time') or diag($lout . $lerr);
my $alerts = q{SELECT string_agg(kind || ':' || spent, ',' ORDER BY id) FROM llmgw.alerts
	 WHERE budget_name = 'tap forecast'};
is($node->safe_psql('postgres', $alerts), 'forecast_exhaustion:99.998', 'one forecast alert');

# The server restarts: the ledger forgets that it alerted, the alerts table
# does not
$node->restart;
$node->poll_query_until('postgres',
	"SELECT workers_running = workers_configured FROM llmgw.stats()");
$node->safe_psql('postgres', "SELECT llm_complete('two', 'fcm')");
is($node->safe_psql('postgres', $alerts), 'forecast_exhaustion:99.998',
	'after a restart, a call still forecast to run out raises no second alert in the period');
$node->safe_psql('postgres', "SELECT llm_complete('three', 'fcm')");
is($node->safe_psql('postgres', $alerts), 'forecast_exhaustion:99.998,soft_limit_reached:100',
	'reaching the limit raises its own alert');
is($node->safe_psql('postgres', q{
	SELECT spent, ledger_spent, exhausts_at <= now() FROM llmgw.budget_status WHERE name = 'tap forecast'}),
	'100.000|100|t', 'budget_status: spent, and run out');

$node->stop;
done_testing();
