# A database using llmgw, filled through the product, is dumped with
# pg_dump -Fc and restored with pg_restore into a fresh cluster (llmgw
# preloaded, its workers running, CREATE EXTENSION coming from the dump).
# Every llmgw table, every spend view and every sequence position is the
# same afterwards, the stored provider secret works, the policy state holds
# (revoked key, exhausted hard budget), and every create_* and a new call
# work without duplicate keys.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $mock = $ENV{LLMGW_MOCK_URL};
my $test_key = $ENV{LLMGW_TEST_KEY} or BAIL_OUT('LLMGW_TEST_KEY is not set');

my $src = LlmgwTest::node('dump_src', 2);
# an llmgw_admin may point providers at variables starting with LLMGW_
$src->append_conf('postgresql.conf', "llmgw.secret_env_prefix = 'LLMGW_'\n");
$src->reload;

# the last line of a psql output (the value a SELECT ... returned last)
sub last_line { return (split /\n/, $_[0])[-1]; }

# Providers: a stored secret, env: references (one set by a superuser, so
# trusted; one by an llmgw_admin, within llmgw.secret_env_prefix), two wire
# formats
$src->safe_psql('postgres', qq{
	CREATE ROLE ops_admin LOGIN IN ROLE llmgw_admin;
	CREATE ROLE analyst LOGIN IN ROLE llmgw_user;
	CREATE ROLE auditor LOGIN IN ROLE llmgw_finance;
	SET ROLE ops_admin;
	SELECT llmgw.create_provider('by-admin', 'openai_compatible', '$mock',
	                             secret => 'env:LLMGW_TEST_KEY');
	RESET ROLE;
	SELECT llmgw.create_provider('vault', 'openai_compatible', '$mock', timeout_ms => 5000);
	SELECT llmgw.set_provider_secret('vault', '$test_key');
	SELECT llmgw.create_provider('claude', 'anthropic', '$mock', secret => 'env:LLMGW_TEST_KEY',
	                             idle_timeout_ms => 5000);
});

# Models with several deployments, prices, teams, role bindings
$src->safe_psql('postgres', q{
	SELECT llmgw.create_model('vaulted', 'vault', 'vault-model');
	SELECT llmgw.create_model('multi', 'vault', 'multi-a', priority => 1);
	SELECT llmgw.create_model('multi', 'mock', 'multi-b', priority => 1, weight => 3);
	SELECT llmgw.create_model('multi', 'claude', 'multi-c', priority => 0);
	UPDATE llmgw.models SET strategy = 'least_busy', description = 'three deployments'
	 WHERE alias = 'multi';
	SELECT llmgw.create_model('metered', 'mock', 'metered-model', price_model => 'metered-price');
	SELECT llmgw.create_model('cached', 'mock', 'cached-model', price_model => 'metered-price');
	UPDATE llmgw.models SET cache_ttl = '1 hour', cache_hit_cost = 0.001 WHERE alias = 'cached';
	SELECT llmgw.create_model('gpt', 'mock', 'gpt-4o');
	SELECT llmgw.create_model('broken', 'mock', 'mock-model;status:500');
	SELECT llmgw.create_model('embed', 'mock', 'embed-model', price_model => 'metered-price');

	SELECT llmgw.set_price('metered-price', 0, 0, per_request => 0.01);
	-- supersedes the seed price of gpt-4o (seed rows are not dumped)
	SELECT llmgw.set_price('gpt-4o', 3, 12, cached_input => 1.5);
	SELECT llmgw.import_prices('{
		"mock-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
		"vault-model": {"input_cost_per_token": 3e-06, "output_cost_per_token": 4e-06},
		"multi-a": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
		"multi-b": {"input_cost_per_token": 2e-06, "output_cost_per_token": 2e-06,
		            "max_output_tokens": 4096},
		"anthropic/multi-c": {"input_cost_per_token": 5e-06, "output_cost_per_token": 5e-06}
	}');

	SELECT llmgw.create_team('support', allowed_models => '{demo,multi,metered,cached,vaulted,gpt}');
	SELECT llmgw.create_team('research', rpm_limit => 600, tpm_limit => 100000);
	SELECT llmgw.bind_role('analyst', 'research');
});

# Virtual keys: created, rotated, revoked
my ($k1_id, $k1) = split /\|/,
  $src->safe_psql('postgres', "SELECT key_id, api_key FROM llmgw.create_key('support', 'support bot')");
my ($k2_id, $k2) = split /\|/, $src->safe_psql('postgres', q{
	SELECT key_id, api_key FROM llmgw.create_key('research', 'research key',
	                                            allowed_models => '{demo,metered,embed}',
	                                            rpm_limit => 100)});
my ($k3_id, $k3) = split /\|/,
  $src->safe_psql('postgres', "SELECT key_id, api_key FROM llmgw.create_key('support', 'leaked')");
$src->safe_psql('postgres', "SELECT llmgw.revoke_key($k3_id)");
my ($k4_id, $k4) = split /\|/,
  $src->safe_psql('postgres', "SELECT new_key_id, api_key FROM llmgw.rotate_key($k1_id, '1 hour')");

# Budgets: the support bot's key lineage has 0.02 for its lifetime (two
# metered calls), the metered model a soft 0.015 a month
$src->safe_psql('postgres', qq{
	SELECT llmgw.create_budget('support monthly', 'team', 'support', 'month', 100);
	SELECT llmgw.create_budget('bot lifetime', 'key', '$k1_id', 'total', 0.02);
	SELECT llmgw.create_budget('metered soft', 'model', 'metered', 'month', 0.015, 'soft');
	SELECT llmgw.create_budget('analyst daily', 'role', 'analyst', 'day', 5);
	SELECT llmgw.create_budget('everything', 'global', NULL, 'month', 1000, 'soft');
});

# Calls through every entry point
is($src->safe_psql('postgres', "SELECT llm_complete('a secret', 'vaulted', max_tokens => 5)"),
	'Hello! You said: a secret', 'source: the provider with a stored secret answers');
$src->safe_psql('postgres', qq{
	SET llmgw.api_key = '$k2';
	SELECT llm_complete('hello from research', 'demo', max_tokens => 5);
	SELECT llm_embed('embed me', 'embed');
	RESET llmgw.api_key;
	SET ROLE analyst;
	SELECT llm_complete('as analyst', 'demo');
	RESET ROLE;
	SELECT * FROM llm_complete_many(ARRAY['one', 'two', 'three', 'four'], 'multi');
	SELECT llm_chat('{"model": "multi", "messages": [{"role": "user", "content": "chat"}]}');
	SELECT llm_chat('{"model": "gpt", "max_tokens": 7,
	                  "messages": [{"role": "system", "content": "be brief"},
	                               {"role": "user", "content": "priced by gpt-4o"}]}');
	SELECT llm_complete('same question', 'cached', max_tokens => 5);
	SELECT llm_complete('same question', 'cached', max_tokens => 5);
});
like(LlmgwTest::error_of($src, "SET llmgw.max_retries = 0; SELECT llm_complete('x', 'broken')"),
	qr/^LG500: provider "mock" failed/, 'source: a failed call');
# the rotated key's lineage: two metered calls exhaust its hard budget
for my $i (1 .. 2)
{
	$src->safe_psql('postgres',
		"SET llmgw.api_key = '$k4'; SELECT llm_complete('metered $i', 'metered', max_tokens => 5)");
}
like(LlmgwTest::error_of($src,
		"SET llmgw.api_key = '$k4'; SELECT llm_complete('metered 3', 'metered', max_tokens => 5)"),
	qr/^LG010: budget "bot lifetime" is exhausted/, 'source: the hard key budget is exhausted');
like(LlmgwTest::error_of($src, "SET llmgw.api_key = '$k3'; SELECT llm_complete('x', 'demo')"),
	qr/^28000: virtual key .* was revoked/, 'source: the revoked key is refused');

# A job: enrich a small table (metered: it crosses the soft budget)
$src->safe_psql('postgres', q{
	CREATE TABLE public.tickets (id int PRIMARY KEY, body text, summary text);
	INSERT INTO public.tickets (id, body) SELECT i, 'ticket ' || i FROM generate_series(1, 5) i;
	CALL llmgw.enrich('tickets', 'id', $$'Summarise: ' || body$$, 'summary', 'metered',
	                  chunk_size => 2, job_name => 'tickets');
});

# Asynchronous calls, answered
my @async = map {
	last_line($src->safe_psql('postgres', qq{SET llmgw.api_key = '$k2';
		SELECT llmgw.submit('{"model": "demo", "messages": [{"role": "user", "content": "async $_"}]}')}));
} 1 .. 2;
for my $id (@async)
{
	is($src->safe_psql('postgres', "SELECT status FROM llmgw.wait($id, '60 seconds')"),
		'done', "source: asynchronous call $id answered");
}

# History: rows of January (no partition: the default one) and of March (a
# partition made by hand to backfill), written as superuser; and the
# partitions of this month and the next
$src->safe_psql('postgres', q{
	CREATE TABLE llmgw.usage_2026_03 PARTITION OF llmgw.usage
	   FOR VALUES FROM ('2026-03-01 00:00+00') TO ('2026-04-01 00:00+00');
	INSERT INTO llmgw.usage (request_id, attempt, started_at, recorded_at, role_name, team_id,
	                         model, provider, upstream_model, status, input_tokens,
	                         output_tokens, usage_source, cost, currency, tags)
	SELECT gen_random_uuid(), 1, d + i * interval '1 hour', d + i * interval '1 hour',
	       'legacy_app', (SELECT id FROM llmgw.teams WHERE name = 'support'),
	       'demo', 'mock', 'mock-model', CASE WHEN i = 3 THEN 'error' ELSE 'ok' END,
	       100 * i, 20 * i, 'provider', 0.25 * i, 'USD', '{"imported": true}'
	  FROM unnest(ARRAY['2026-01-15 10:00+00', '2026-03-10 08:00+00']::timestamptz[]) d,
	       generate_series(1, 3) i;
	SELECT llmgw.create_usage_partitions(1);
});

# Nothing in flight, nothing queued: the source is at rest
ok($src->poll_query_until('postgres', q{
	SELECT (SELECT count(*) FROM llmgw.calls_in_flight) = 0
	   AND (SELECT count(*) FROM llmgw.async_calls WHERE status IN ('queued', 'running')) = 0}),
	'source: no call in flight');

# What the source holds, checked so that the comparison below means something
like($src->safe_psql('postgres', q{
	SELECT string_agg(p || '=' || n, ',' ORDER BY p)
	  FROM (SELECT tableoid::regclass::text AS p, count(*) AS n FROM llmgw.usage GROUP BY 1) s}),
	qr/^llmgw\.usage_2026_03=3,llmgw\.usage_\d{4}_\d{2}=\d+,llmgw\.usage_default=3$/,
	'source: usage rows in two monthly partitions and the default partition');
is($src->safe_psql('postgres', q{
	SELECT string_agg(kind || ':' || budget_name, ',' ORDER BY id) FROM llmgw.alerts
	 WHERE kind <> 'forecast_exhaustion'}),
	'hard_limit_reached:bot lifetime,soft_limit_reached:metered soft',
	'source: a hard and a soft budget alert');
is($src->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM llmgw.usage WHERE cache_hit),
	       (SELECT count(*) FROM llmgw.response_cache),
	       (SELECT string_agg(status || ':' || rows_done, ',') FROM llmgw.jobs),
	       (SELECT count(*) FROM llmgw.usage WHERE async_id IS NOT NULL),
	       (SELECT count(*) FROM llmgw.usage WHERE status = 'error')}),
	'1|1|finished:5|2|3',
	'source: a cache hit, a finished job, answered asynchronous calls, errors');
is($src->safe_psql('postgres', q{
	SELECT (SELECT sum(calls) FROM llmgw.usage_daily) = (SELECT count(*) FROM llmgw.usage)
	   AND (SELECT sum(cost) FROM llmgw.usage_daily) = (SELECT sum(coalesce(cost, 0)) FROM llmgw.usage)}),
	't', 'source: the rollups count every usage row once');

# Every llmgw table (count and md5 of all columns, ordered by primary key),
# the spend views and the sequence positions; response_cache is not dumped
# by design (cached answers are rebuilt by calls), so it is left out
sub snapshot
{
	my ($node) = @_;
	my %snap;
	my @tables = split /\n/, $node->safe_psql('postgres', q{
		SELECT c.oid::regclass || '|' || coalesce(
		       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
		          FROM pg_index x CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, ord)
		          JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
		         WHERE x.indrelid = c.oid AND x.indisprimary), '')
		  FROM pg_class c
		 WHERE c.relnamespace IN ('llmgw'::regnamespace, 'public'::regnamespace)
		   AND c.relkind IN ('r', 'p') AND c.relname <> 'response_cache'
		 ORDER BY 1});
	for (@tables)
	{
		my ($t, $pk) = split /\|/;
		my $order = $pk eq '' ? 't::text' : "$pk, t::text";
		$snap{"table $t"} = $node->safe_psql('postgres',
			"SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, E'\\n' ORDER BY $order)), '')"
			  . " FROM $t t");
	}
	for my $v (qw(spend_daily spend_by_key spend_by_team spend_by_model requests keys
		prices_now))
	{
		$snap{"view $v"} = $node->safe_psql('postgres',
			"SELECT count(*) || ' ' || coalesce(md5(string_agg(v::text, E'\\n' ORDER BY v::text)), '')"
			  . " FROM llmgw.$v v");
	}
	$snap{'view budget_status'} = $node->safe_psql('postgres', q{
		SELECT string_agg(concat_ws(':', name, scope, target, period, enforcement, limit_amount, spent),
		                  ',' ORDER BY id) FROM llmgw.budget_status});
	$snap{'view job_progress'} = $node->safe_psql('postgres', q{
		SELECT string_agg(concat_ws(':', id, name, status, rows_total, rows_done, rows_failed, spend,
		                            rows_per_second, started_at, finished_at), ',' ORDER BY id)
		  FROM llmgw.job_progress});
	$snap{'sequences'} = $node->safe_psql('postgres', q{
		SELECT string_agg(sequencename || '=' || coalesce(last_value::text, 'unused'), ','
		                  ORDER BY sequencename)
		  FROM pg_sequences WHERE schemaname = 'llmgw'});
	$snap{'indexes'} = $node->safe_psql('postgres', q{
		SELECT string_agg(pg_get_indexdef(x.indexrelid) || coalesce(' (' || p.inhparent::regclass || ')', ''),
		                  E'\n' ORDER BY pg_get_indexdef(x.indexrelid))
		  FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
		  LEFT JOIN pg_inherits p ON p.inhrelid = x.indexrelid
		 WHERE c.relnamespace = 'llmgw'::regnamespace});
	$snap{'extension'} = $node->safe_psql('postgres',
		"SELECT extversion || ' ' || extnamespace::regnamespace FROM pg_extension WHERE extname = 'llmgw'");
	return \%snap;
}
my $before = snapshot($src);
note "$_: $before->{$_}" for sort keys %$before;
ok(scalar(grep { /^table llmgw\./ } keys %$before) >= 18, 'snapshot covers the llmgw tables');

# The dump, and the roles (pg_dump does not dump roles)
my $dir = PostgreSQL::Test::Utils::tempdir;
my ($out, $err) = ('', '');
my $rc = IPC::Run::run([ 'pg_dump', '-Fc', '-f', "$dir/llmgw.dump", '-d', $src->connstr('postgres') ],
	'>', \$out, '2>', \$err);
# pg_dump warns about the self-reference of virtual_keys.rotated_from (it
# orders the data of extension config tables by their foreign keys); the
# restore does not need --disable-triggers: one COPY loads the whole table
(my $dump_err = $err) =~ s/pg_dump: warning: there are circular foreign-key constraints on this table:\n.*?\n.*?\n.*?\n//s;
ok($rc, 'pg_dump -Fc succeeds');
is($dump_err, '', 'pg_dump prints no error');
$rc = IPC::Run::run([ 'pg_dumpall', '--roles-only', '-f', "$dir/roles.sql", '-d', $src->connstr('postgres') ],
	'>', \$out, '2>', \$err);
ok($rc && $err eq '', 'pg_dumpall --roles-only succeeds') or diag($err);

# A fresh cluster: llmgw preloaded, its workers running, no CREATE EXTENSION
my $dst = LlmgwTest::bare_node('dump_dst', 2);
is($dst->safe_psql('postgres', "SELECT count(*) FROM pg_extension WHERE extname = 'llmgw'"),
	'0', 'target: llmgw is not installed before the restore');
ok($dst->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'llmgw worker'"),
	'target: the workers run during the restore');
# the restoring superuser exists already: its CREATE ROLE fails, as usual
my $me = $dst->safe_psql('postgres', 'SELECT current_user');
($out, $err) = ('', '');
$rc = IPC::Run::run([ 'psql', '-X', '-q', '-f', "$dir/roles.sql", '-d', $dst->connstr('postgres') ],
	'>', \$out, '2>', \$err);
$err =~ s/^psql:\S+: ERROR:  role "\Q$me\E" already exists\n//m;
ok($rc && $err eq '', 'target: the roles are restored first') or diag($err);
is($dst->safe_psql('postgres', q{
	SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles
	 WHERE rolname IN ('ops_admin', 'analyst', 'auditor', 'llmgw_admin', 'llmgw_user', 'llmgw_finance')}),
	'analyst,auditor,llmgw_admin,llmgw_finance,llmgw_user,ops_admin', 'target: the roles are there');

($out, $err) = ('', '');
my $t0 = time;
$rc = IPC::Run::run([ 'pg_restore', '-d', $dst->connstr('postgres'), "$dir/llmgw.dump" ],
	'>', \$out, '2>', \$err);
ok($rc, 'pg_restore exits 0') or diag("exit status $?");
is($err, '', 'pg_restore prints no error');
note 'pg_restore took ' . (time - $t0) . ' s';

# The same tables, views and sequences
my $after = snapshot($dst);
is_deeply([ sort keys %$after ], [ sort keys %$before ], 'target: the same tables and views');
for my $k (sort keys %$before)
{
	is($after->{$k}, $before->{$k}, "target: $k is the same");
}
my $trusted = q{SELECT string_agg(name || ':' || secret_ref_trusted, ',' ORDER BY name) FROM llmgw.providers};
is($dst->safe_psql('postgres', $trusted), $src->safe_psql('postgres', $trusted),
	'target: secret_ref_trusted as in the source (the restoring superuser vouches for no reference)');
is($dst->safe_psql('postgres', 'SELECT count(*) FROM llmgw.response_cache'), '0',
	'target: the response cache is not restored (not dumped, by design)');
is($dst->safe_psql('postgres', q{
	SELECT source || ':' || input || ':' || output FROM llmgw.prices_now WHERE model = 'gpt-4o'}),
	'manual:3:12', 'target: the price set over the seed price is the one in force');
is($dst->safe_psql('postgres', q{
	SELECT count(*) FROM llmgw.prices WHERE source = 'seed'}),
	$src->safe_psql('postgres', "SELECT count(*) FROM llmgw.prices WHERE source = 'seed'"),
	'target: CREATE EXTENSION made the seed prices anew');

# The restored configuration serves calls: the stored secret is there (the
# mock refuses any other key), env: resolves
is(LlmgwTest::error_of($dst, "SELECT llm_complete('after restore', 'vaulted', max_tokens => 5)"),
	'ok', 'target: a call through the provider with the stored secret succeeds');
is($dst->safe_psql('postgres', q{
	SELECT status || ':' || (cost IS NOT NULL AND NOT unpriced) FROM llmgw.usage
	 WHERE model = 'vaulted' ORDER BY id DESC LIMIT 1}), 'ok:true', 'target: it is priced');
is($dst->safe_psql('postgres', qq{
	SET llmgw.api_key = '$k2'; SELECT llm_complete('research after restore', 'demo', max_tokens => 10)}),
	'Hello! You said: research after restore', 'target: a key created before the dump works');
like(LlmgwTest::error_of($dst, "SET llmgw.api_key = '$k3'; SELECT llm_complete('x', 'demo')"),
	qr/^28000: virtual key .* was revoked/, 'target: the revoked key stays revoked');
like(LlmgwTest::error_of($dst,
		"SET llmgw.api_key = '$k4'; SELECT llm_complete('metered 3', 'metered', max_tokens => 5)"),
	qr/^LG010: budget "bot lifetime" is exhausted/, 'target: the exhausted hard budget still refuses');
is($dst->safe_psql('postgres', q{
	SELECT count(*) FROM llmgw.budget_status WHERE ledger_spent IS DISTINCT FROM spent}),
	'0', 'target: the budget ledger holds the restored spend') or diag($dst->safe_psql('postgres',
		'SELECT name, spent, reserved, ledger_spent FROM llmgw.budget_status ORDER BY id'));
is($dst->safe_psql('postgres', "SELECT llm_chat('{\"model\": \"multi\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}')->>'model' IS NOT NULL"),
	't', 'target: llm_chat over the restored deployments');
is($dst->safe_psql('postgres', q{
	SELECT llm_complete('same question', 'cached', max_tokens => 5);
	SELECT cache_hit FROM llmgw.usage WHERE model = 'cached' ORDER BY id DESC LIMIT 1}),
	"Hello! You said: same question\nf", 'target: a cached model answers (from the provider)');

# Every identity sequence goes on from its restored position: no duplicate keys
my $max = $src->safe_psql('postgres', q{
	SELECT concat_ws(',', (SELECT max(id) FROM llmgw.teams), (SELECT max(id) FROM llmgw.virtual_keys),
	       (SELECT max(id) FROM llmgw.budgets), (SELECT max(id) FROM llmgw.deployments),
	       (SELECT max(id) FROM llmgw.prices), (SELECT max(id) FROM llmgw.async_calls),
	       (SELECT max(id) FROM llmgw.jobs), (SELECT max(id) FROM llmgw.alerts),
	       (SELECT max(id) FROM llmgw.usage))});
my @max = split /,/, $max;
my $team = $dst->safe_psql('postgres', "SELECT llmgw.create_team('after')");
my ($key_id) = split /\|/,
  $dst->safe_psql('postgres', "SELECT key_id, api_key FROM llmgw.create_key('after', 'new')");
$dst->safe_psql('postgres', q{
	SELECT llmgw.create_model('after-model', 'mock', 'after-model-upstream',
	                          price_model => 'after-price')});
my $deployment = $dst->safe_psql('postgres',
	"SELECT id FROM llmgw.deployments WHERE model = 'after-model'");
my $budget = $dst->safe_psql('postgres',
	"SELECT llmgw.create_budget('after soft', 'model', 'after-model', 'month', 0.000001, 'soft')");
my $price = $dst->safe_psql('postgres', "SELECT llmgw.set_price('after-price', 0, 0, per_request => 0.001)");
my $async = last_line($dst->safe_psql('postgres', q{
	SELECT llmgw.submit('{"model": "after-model", "messages": [{"role": "user", "content": "queued after"}]}')}));
is($dst->safe_psql('postgres', "SELECT status FROM llmgw.wait($async, '60 seconds')"), 'done',
	'target: a new asynchronous call is answered');
$dst->safe_psql('postgres', q{
	INSERT INTO public.tickets (id, body) SELECT i, 'ticket ' || i FROM generate_series(6, 8) i;
	CALL llmgw.enrich('tickets', 'id', $$'Summarise: ' || body$$, 'summary', 'after-model',
	                  job_name => 'after restore');
});
my $job = $dst->safe_psql('postgres', "SELECT id FROM llmgw.jobs WHERE name = 'after restore'");
my $alert = $dst->safe_psql('postgres', "SELECT max(id) FROM llmgw.alerts WHERE budget_name = 'after soft'");
my $usage = $dst->safe_psql('postgres', "SELECT min(id) FROM llmgw.usage WHERE model = 'after-model'");
my @new = ($team, $key_id, $budget, $deployment, $price, $async, $job, $alert, $usage);
my @names = qw(team key budget deployment price async_call job alert usage);
for my $i (0 .. $#names)
{
	ok($new[$i] =~ /^\d+$/ && $new[$i] > $max[$i],
		"target: a new $names[$i] gets id $new[$i], after the restored ones ($max[$i])");
}
is($dst->safe_psql('postgres', q{
	SELECT rows_done || ':' || spend FROM llmgw.job_progress WHERE name = 'after restore'}),
	'3:0.003', 'target: the new job is done and priced');

# The rollups were restored, not recounted: still one count per usage row
is($dst->safe_psql('postgres', q{
	SELECT (SELECT sum(calls) FROM llmgw.usage_daily) = (SELECT count(*) FROM llmgw.usage)
	   AND (SELECT sum(cost) FROM llmgw.usage_daily) = (SELECT sum(coalesce(cost, 0)) FROM llmgw.usage)}),
	't', 'target: the rollups count every usage row once, new calls included');
# The rebuild of the rollups that docs/operations.md gives (after a restore
# with --load-via-partition-root) sums to the same spend
my $sums = q{
	SELECT (SELECT md5(string_agg(v::text, ',' ORDER BY v::text)) FROM llmgw.spend_by_team v)
	       || (SELECT md5(string_agg(v::text, ',' ORDER BY v::text)) FROM llmgw.spend_by_key v)
	       || (SELECT md5(string_agg(v::text, ',' ORDER BY v::text)) FROM llmgw.spend_by_model v)
	       || (SELECT string_agg(spent::text, ',' ORDER BY id) FROM llmgw.budget_status)};
is($dst->safe_psql('postgres', qq{
	BEGIN;
	TRUNCATE llmgw.usage_daily;
	INSERT INTO llmgw.usage_daily (day, shard, team_id, key_id, role_name, model, provider,
	    upstream_model, currency, calls, errors, unpriced, cache_hits, input_tokens,
	    output_tokens, cached_input_tokens, reasoning_tokens, cost, batch)
	SELECT (started_at AT TIME ZONE 'UTC')::date, 0, team_id, key_id, role_name, model,
	       provider, upstream_model, currency, count(*), count(*) FILTER (WHERE status <> 'ok'),
	       count(*) FILTER (WHERE unpriced), count(*) FILTER (WHERE cache_hit),
	       coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
	       coalesce(sum(cached_input_tokens), 0), coalesce(sum(reasoning_tokens), 0),
	       coalesce(sum(cost), 0), batch_id IS NOT NULL
	  FROM llmgw.usage GROUP BY 1, 3, 4, 5, 6, 7, 8, 9, 19;
	$sums;
	ROLLBACK}), $dst->safe_psql('postgres', $sums), 'target: the documented rebuild of the rollups');
is($dst->safe_psql('postgres', q{
	SELECT sum(cost) FROM llmgw.usage WHERE started_at < '2026-04-01'}),
	'3.00', 'target: the historical rows are there (two months of 0.25 + 0.5 + 0.75)');

# A restore that takes a while (a big llmgw.usage): the workers of the
# target reload the configuration while pg_restore still loads the data.
# Simulated by loading the rollups last, after a pause longer than the
# interval at which worker 0 looks for a new configuration (5 s).  The
# budget ledger must end up with the restored spend all the same.
my $slow = LlmgwTest::bare_node('dump_slow', 2);
IPC::Run::run([ 'psql', '-X', '-q', '-f', "$dir/roles.sql", '-d', $slow->connstr('postgres') ],
	'>', \$out, '2>', \$err);
IPC::Run::run([ 'pg_restore', '-l', "$dir/llmgw.dump" ], '>', \$out) or die 'pg_restore -l failed';
my @toc = split /\n/, $out;
my @rollups = grep { /TABLE DATA llmgw usage_daily / } @toc;
is(scalar(@rollups), 1, 'the dump has the data of llmgw.usage_daily');
PostgreSQL::Test::Utils::append_to_file("$dir/first.list", join("\n", grep { !/TABLE DATA llmgw usage_daily / } @toc) . "\n");
PostgreSQL::Test::Utils::append_to_file("$dir/last.list", "$rollups[0]\n");
IPC::Run::run([ 'pg_restore', '-L', "$dir/first.list", '-d', $slow->connstr('postgres'), "$dir/llmgw.dump" ],
	'>', \$out, '2>', \$err);
sleep 6;
$rc = IPC::Run::run([ 'pg_restore', '-L', "$dir/last.list", '-d', $slow->connstr('postgres'), "$dir/llmgw.dump" ],
	'>', \$out, '2>', \$err);
ok($rc, 'slow restore: the rollups are loaded last');
is($slow->safe_psql('postgres', 'SELECT sum(cost) FROM llmgw.usage_daily'),
	$src->safe_psql('postgres', 'SELECT sum(cost) FROM llmgw.usage_daily'), 'slow restore: all of them');
like(LlmgwTest::error_of($slow,
		"SET llmgw.api_key = '$k4'; SELECT llm_complete('metered 3', 'metered', max_tokens => 5)"),
	qr/^LG010: budget "bot lifetime" is exhausted/, 'slow restore: the exhausted hard budget still refuses');
is($slow->safe_psql('postgres', q{
	SELECT count(*) FROM llmgw.budget_status WHERE ledger_spent IS DISTINCT FROM spent}),
	'0', 'slow restore: the budget ledger holds the restored spend') or diag($slow->safe_psql('postgres',
		'SELECT name, spent, reserved, ledger_spent FROM llmgw.budget_status ORDER BY id'));
# what docs/operations.md says to do after a restore: restart the server
$slow->restart;
ok($slow->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM llmgw.budget_status WHERE ledger_spent IS DISTINCT FROM spent}),
	'slow restore, restarted: the budget ledger holds the restored spend');
like(LlmgwTest::error_of($slow,
		"SET llmgw.api_key = '$k4'; SELECT llm_complete('metered 4', 'metered', max_tokens => 5)"),
	qr/^LG010: budget "bot lifetime" is exhausted/, 'slow restore, restarted: the hard budget refuses');

$src->stop;
$dst->stop;
$slow->stop;
done_testing();
