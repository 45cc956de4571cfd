# The request log on a cluster of its own (docs/request_log.md):
#
# - off by default: calls with an e-mail address in the prompt leave it in
#   no table of the database, and no partition of llmgw.request_log is made;
# - llmgw.request_log_max_body set in postgresql.conf cuts the bodies;
# - a call through the HTTP front door is logged like a call of SQL;
# - retention: old daily partitions (made for past days) are dropped by
#   worker 0's housekeeping as soon as llmgw.request_log_retention changes
#   (ALTER SYSTEM and a reload), the recent ones kept;
# - kill -9 of a worker with a logged call in flight: the call becomes an
#   interrupted usage row without a log row, every log row keeps its usage
#   row, and logging goes on after the crash restart;
# - pg_dump and pg_restore keep the logged rows, the rules and the
#   redaction rules (a changed built-in rule included, without duplicates),
#   and the restored cluster logs and redacts with them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $http_port = PostgreSQL::Test::Cluster::get_free_port();
my $node = LlmgwTest::node('reqlog', 2,
	conf => "llmgw.request_log_max_body = 1kB\nllmgw.http_listen = '127.0.0.1:$http_port'\n");
$node->safe_psql('postgres', q{
	SELECT llmgw.create_model('rl-slow', 'mock', 'reqlog-slow;delay:3000');
	SELECT llmgw.create_team('rl');
	SELECT llmgw.create_team('rl-quiet');
});
my ($key_id, $key) = split /\|/,
  $node->safe_psql('postgres', "SELECT key_id, api_key FROM llmgw.create_key('rl', 'logged')");
my ($quiet_id, $quiet) = split /\|/,
  $node->safe_psql('postgres', "SELECT key_id, api_key FROM llmgw.create_key('rl-quiet', 'quiet')");

# Where a text is kept: every table of the llmgw schema (partitions
# included) and of public, as the superuser sees them
sub tables_holding
{
	my ($needle) = @_;
	my @tables = split /\n/, $node->safe_psql('postgres', q{
		SELECT c.oid::regclass FROM pg_class c
		 WHERE c.relnamespace IN ('llmgw'::regnamespace, 'public'::regnamespace)
		   AND c.relkind = 'r' ORDER BY 1});
	my @found;
	for my $t (@tables)
	{
		push @found, $t
		  if $node->safe_psql('postgres',
			"SELECT count(*) FROM $t t WHERE strpos(t::text, '$needle') > 0") > 0;
	}
	return join(',', @found);
}

# --- off by default ----------------------------------------------------------

$node->safe_psql('postgres', qq{
	SELECT llm_complete('off by default: mail jane.off\@example.com', 'demo');
	SET llmgw.api_key = '$key';
	SELECT llm_complete('off by default, with a key: jane.off\@example.com', 'demo');
	SELECT llm_chat('{"model": "demo", "messages": [{"role": "user", "content": "jane.off\@example.com via chat"}]}');
});
is($node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM llmgw.request_log_rules) || ':'
	       || (SELECT count(*) FROM llmgw.request_log) || ':'
	       || (SELECT count(*) FROM pg_inherits WHERE inhparent = 'llmgw.request_log'::regclass)}),
	'0:0:0', 'off by default: no rule, no row, no partition made');
is(tables_holding('jane.off@example.com'), '', 'off by default: the prompt is in no table');
is($node->safe_psql('postgres', "SELECT count(*) FROM llmgw.usage WHERE model = 'demo'"),
	'3', 'off by default: the calls have their usage rows');

# --- on for a team, bodies cut at 1kB ------------------------------------------

$node->safe_psql('postgres', "SELECT llmgw.log_requests('team', 'rl')");
$node->safe_psql('postgres', qq{
	SET llmgw.api_key = '$key';
	SELECT llm_complete('logged: mail jane.on\@example.com ' || repeat('y', 2000), 'demo');
	SET llmgw.api_key = '$quiet';
	SELECT llm_complete('not logged: jane.quiet\@example.com', 'demo');
});
is($node->safe_psql('postgres', q{
	SELECT string_agg(concat_ws(':', request_bytes > 2000, octet_length(request_body), request_truncated,
	                            octet_length(response_body), response_truncated, redacted), ',')
	  FROM llmgw.request_log}),
	't:1024:t:1024:t:t', 'on: one row, both bodies cut at llmgw.request_log_max_body (1kB)');
is(tables_holding('jane.on@example.com') . '|' . tables_holding('jane.quiet@example.com'), '|',
	'on: the logged address was redacted, the other team\'s call left nothing');
is($node->safe_psql('postgres', 'SHOW llmgw.request_log_max_body'), '1kB', 'the setting as configured');

# the HTTP front door's calls go the same way: logged as sent, redacted
my $http = HTTP::Tiny->new(timeout => 30)->post(
	"http://127.0.0.1:$http_port/v1/chat/completions",
	{
		headers => { 'Authorization' => "Bearer $key", 'Content-Type' => 'application/json' },
		content => '{"model": "demo", "messages": [{"role": "user", "content": "over HTTP: jane.http@example.com"}]}'
	});
is($http->{status}, 200, 'front door: the call is answered') or diag($http->{content});
is($node->safe_psql('postgres', q{
	SELECT request_body::jsonb->'messages'->0->>'content' || ' | ' || (response_body::jsonb->'message'->>'content')
	  FROM llmgw.request_log WHERE request_body LIKE '%over HTTP%'}),
	'over HTTP: [email] | Hello! You said: over HTTP: [email]', 'front door: the call is logged, redacted');

# --- retention: worker 0 drops old days when the setting changes ---------------

$node->safe_psql('postgres', q{
	SELECT llmgw.create_request_log_partitions((now() AT TIME ZONE 'UTC')::date - 40, 1);
	SELECT llmgw.create_request_log_partitions((now() AT TIME ZONE 'UTC')::date - 3, 1);
	INSERT INTO llmgw.request_log (request_id, attempt, started_at, request_body, request_bytes)
	SELECT gen_random_uuid(), 1, now() - make_interval(days => d), 'old ' || d, 5
	  FROM unnest(ARRAY[40, 3]) d;
});
my $old_days = q{
	SELECT string_agg(((now() AT TIME ZONE 'UTC')::date - (started_at AT TIME ZONE 'UTC')::date)::text,
	                  ',' ORDER BY started_at)
	  FROM llmgw.request_log WHERE request_body LIKE 'old %'};
is($node->safe_psql('postgres', $old_days), '40,3', 'retention: rows of 40 and 3 days ago');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', 'ALTER SYSTEM SET llmgw.request_log_retention = 7; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', "SELECT ($old_days) = '3'"),
	'retention 7: worker 0 dropped the day 40 days ago, kept the one 3 days ago');
ok($node->wait_for_log(qr/llmgw dropped 1 daily partitions of llmgw\.request_log older than 7 days/,
		$log_offset), 'retention 7: and said so in the server log');
$node->safe_psql('postgres', 'ALTER SYSTEM SET llmgw.request_log_retention = 2; SELECT pg_reload_conf()');
ok($node->poll_query_until('postgres', "SELECT ($old_days) IS NULL"),
	'retention 2: the day 3 days ago is dropped too');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM llmgw.request_log WHERE request_body NOT LIKE 'old %'}),
	'2', 'retention 2: today\'s logged calls stay');
$node->safe_psql('postgres', 'ALTER SYSTEM RESET llmgw.request_log_retention; SELECT pg_reload_conf()');

# --- kill -9 with a logged call in flight ---------------------------------------

my ($h) = LlmgwTest::background($node,
	"SET llmgw.api_key = '$key'; SELECT llm_complete('slow and logged', 'rl-slow')");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM llmgw.calls_in_flight WHERE model = 'rl-slow'"),
	'kill -9: the logged call is in flight');
my $victim = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' ORDER BY pid LIMIT 1");
kill 'KILL', $victim;
$h->finish;
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_ls_dir('pg_llmgw') f WHERE f LIKE 'dead.%'}),
	'kill -9: the cluster is back and the dead life is recorded');
is($node->safe_psql('postgres', q{
	SELECT u.status || ':' || (l.request_id IS NOT NULL)
	  FROM llmgw.usage u LEFT JOIN llmgw.request_log l USING (request_id, attempt, started_at)
	 WHERE u.model = 'rl-slow'}),
	'interrupted:false', 'kill -9: the call is an interrupted usage row, without a log row');
$node->safe_psql('postgres', qq{
	SET llmgw.api_key = '$key'; SELECT llm_complete('after the crash', 'demo')});
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM llmgw.request_log l
	 WHERE NOT EXISTS (SELECT 1 FROM llmgw.usage u
	                    WHERE (u.request_id, u.attempt, u.started_at) = (l.request_id, l.attempt, l.started_at))})
	  . ':' . $node->safe_psql('postgres', "SELECT count(*) FROM llmgw.request_log WHERE request_body LIKE '%after the crash%'"),
	'0:1', 'kill -9: every log row has its usage row, and logging goes on');

# --- dump and restore -------------------------------------------------------------

$node->safe_psql('postgres', qq{
	SELECT llmgw.log_requests('key', '$quiet_id');
	SELECT llmgw.log_requests('model', 'rl-slow');
	UPDATE llmgw.redaction_rules SET replacement = '[pan]' WHERE name = 'card';
	UPDATE llmgw.redaction_rules SET enabled = false WHERE name = 'virtual_key';
	INSERT INTO llmgw.redaction_rules (name, pattern, replacement) VALUES ('ticket', 'TICKET-[0-9]+', '[ticket]');
	SET llmgw.api_key = '$quiet';
	SELECT llm_complete('card 4111 1111 1111 1111 and TICKET-9 before the dump', 'demo');
});
is($node->safe_psql('postgres', q{
	SELECT response_body FROM llmgw.request_log WHERE request_body LIKE '%before the dump%'}),
	'Hello! You said: card [pan] and [ticket] before the dump', 'dump: the changed rules redact');

my %snap_sql = (
	request_log => q{
		SELECT count(*) || ' ' || md5(string_agg(l::text, E'\n' ORDER BY request_id, attempt))
		  FROM llmgw.request_log l},
	rules => q{
		SELECT string_agg(concat_ws(':', r.scope, t.name, r.key_id, r.model, r.created_by), ',' ORDER BY r.id)
		  FROM llmgw.request_log_rules r LEFT JOIN llmgw.teams t ON t.id = r.team_id},
	redaction_rules => q{
		SELECT string_agg(concat_ws(':', name, pattern, replacement, enabled, builtin, created_at), E'\n' ORDER BY name)
		  FROM llmgw.redaction_rules},
	partitions => q{
		SELECT count(*) || ':' || bool_and(EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = i.inhrelid AND x.indisprimary))
		  FROM pg_inherits i WHERE inhparent = 'llmgw.request_log'::regclass});
my %before = map { ($_ => $node->safe_psql('postgres', $snap_sql{$_})) } keys %snap_sql;
like($before{request_log}, qr/^4 /, 'dump: four logged calls in the source');
note "$_: $before{$_}" for sort keys %before;

my $dir = PostgreSQL::Test::Utils::tempdir;
my ($out, $err) = ('', '');
my $rc = IPC::Run::run([ 'pg_dump', '-Fc', '-f', "$dir/reqlog.dump", '-d', $node->connstr('postgres') ],
	'>', \$out, '2>', \$err);
(my $dump_err = $err) =~ s/pg_dump: warning: there are circular foreign-key constraints on this table:\n.*?\n.*?\n.*?\n//s;
ok($rc && $dump_err eq '', 'pg_dump -Fc succeeds') or diag($err);

my $dst = LlmgwTest::bare_node('reqlog_dst', 2);
$rc = IPC::Run::run([ 'pg_restore', '-d', $dst->connstr('postgres'), "$dir/reqlog.dump" ],
	'>', \$out, '2>', \$err);
ok($rc && $err eq '', 'pg_restore succeeds without an error') or diag($err);
for my $k (sort keys %snap_sql)
{
	is($dst->safe_psql('postgres', $snap_sql{$k}), $before{$k}, "restore: $k the same");
}
$dst->safe_psql('postgres', qq{
	SET llmgw.api_key = '$quiet';
	SELECT llm_complete('card 4111 1111 1111 1111 and TICKET-10 after the restore', 'demo');
});
is($dst->safe_psql('postgres', q{
	SELECT response_body FROM llmgw.request_log WHERE request_body LIKE '%after the restore%'}),
	'Hello! You said: card [pan] and [ticket] after the restore',
	'restore: a new call of the logged key is logged, with the restored redaction rules');

$node->stop;
$dst->stop;
done_testing();
