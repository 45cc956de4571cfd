# Upgrade: llmgw 0.1, filled with data, then ALTER EXTENSION llmgw UPDATE
# to the default version, must equal a fresh install of that version object
# for object (test/scripts/describe_extension.sql; a unified diff on
# failure), and every 0.1 row must still be there.
#
# The installed llmgw.so is the new one: this test does not call the model
# functions before the update (the workers may not serve a 0.1 schema).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $old_version = '0.1';
my $describe = "$FindBin::Bin/../scripts/describe_extension.sql";

# What the updates do to 0.1 data on purpose, each with its reason; every
# other 0.1 table must keep exactly its 0.1 rows over its 0.1 columns.
#
# Tables an update drops, with their rows
my %dropped_by_update = (
	'llmgw.calls_in_flight' =>
	  'from 0.2 on the journal of calls in flight is a file, and calls_in_flight a view;'
	  . ' its rows become interrupted usage rows');
# Columns an update rewrites: from the updated row, an SQL expression for the
# value the column had in 0.1
my %rewritten_by_update = (
	'llmgw.prices' =>
	  { source => q{CASE WHEN source = 'seed' THEN 'litellm' ELSE source END} });
# Tables an update may add rows to (say, new seed prices): their 0.1 rows
# must all still be there, new ones are allowed
my %update_may_add_rows = (
	'llmgw.usage' => 'the calls left in the 0.1 journal become interrupted rows',
	'llmgw.usage_daily' => 'and are rolled up');

my $node = PostgreSQL::Test::Cluster->new('upgrade');
LlmgwTest::init($node);
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'llmgw'\n");
$node->start;

my $default_version = $node->safe_psql('postgres',
	"SELECT default_version FROM pg_available_extensions WHERE name = 'llmgw'");
if ($default_version eq $old_version)
{
	$node->stop;
	plan skip_all =>
	  "llmgw's default version is $old_version: there is no newer version to update to";
}

$node->safe_psql('postgres', "CREATE EXTENSION llmgw VERSION '$old_version'");

# Every 0.1 table, with representative rows, as the superuser: plain
# INSERTs, and the SQL functions of 0.1 that write prices and budgets.
# Usage rows land in this month's partition and in the default one (an
# older month); the rollup trigger fills usage_daily.  Asynchronous calls
# are finished and journal rows belong to this server life, so that the
# workers leave them alone.
my $fill_sql = <<'SQL';
CREATE ROLE upgrade_analyst NOLOGIN;

INSERT INTO llmgw.providers (name, kind, base_url, api_version, secret_ref, timeout_ms,
                             connect_timeout_ms, idle_timeout_ms)
VALUES ('openai', 'openai', 'https://api.openai.com/v1', NULL, 'env:OPENAI_API_KEY',
        60000, 10000, NULL),
       ('azure-eu', 'azure', 'https://upgrade-eu.openai.azure.com/openai', '2024-10-21',
        'file:/etc/llmgw/azure.key', 30000, 5000, 15000),
       ('anthropic', 'anthropic', 'https://api.anthropic.com/v1', NULL, 'stored',
        120000, 10000, 30000),
       ('local', 'openai_compatible', 'http://127.0.0.1:8000/v1', NULL, NULL, 5000, 1000, NULL);
INSERT INTO llmgw.provider_secrets (provider, secret)
VALUES ('anthropic', 'sk-ant-upgrade-0123456789');

INSERT INTO llmgw.models (alias, description, rpm_limit, tpm_limit, strategy, cache_ttl,
                          cache_shared, cache_hit_cost)
VALUES ('chat', 'general chat', 600, 1000000, 'weighted', '1 hour', true, 0.0001),
       ('fast', NULL, NULL, NULL, 'least_busy', NULL, false, 0),
       ('embed', 'embeddings', NULL, 5000000, 'lowest_latency', NULL, false, 0);
INSERT INTO llmgw.deployments (model, provider, upstream_model, priority, weight, price_model,
                               rpm_limit, tpm_limit)
VALUES ('chat', 'openai', 'gpt-4o', 0, 3, NULL, 500, NULL),
       ('chat', 'azure-eu', 'gpt-4o', 0, 1, 'gpt-4o', NULL, 200000),
       ('chat', 'anthropic', 'claude-sonnet-4-5', 1, 1, NULL, NULL, NULL),
       ('fast', 'openai', 'gpt-4o-mini', 0, 1, NULL, NULL, NULL),
       ('fast', 'local', 'llama-3.1-8b', 1, 1, 'upgrade-local', NULL, NULL),
       ('embed', 'openai', 'text-embedding-3-small', 0, 1, NULL, NULL, NULL);

INSERT INTO llmgw.teams (name, allowed_models, rpm_limit, tpm_limit)
VALUES ('research', NULL, NULL, NULL),
       ('support', '{chat,fast}', 120, 200000);
INSERT INTO llmgw.role_bindings (role_name, team_id)
SELECT 'upgrade_analyst', id FROM llmgw.teams WHERE name = 'research';

-- keys: sha256 of the key (32 bytes), its first 12 characters, and the
-- first key of its rotation chain as lineage_id
INSERT INTO llmgw.virtual_keys (name, prefix, hash, team_id, allowed_models, rpm_limit,
                                tpm_limit, expires_at, revoked_at, lineage_id, created_by)
SELECT k.name, substr(k.api_key, 1, 12), sha256(convert_to(k.api_key, 'UTF8')), t.id,
       k.allowed_models, k.rpm_limit, k.tpm_limit, k.expires_at, k.revoked_at, 0, 'postgres'
  FROM (VALUES ('ci', 'lgw_0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d', 'support', '{fast}'::text[],
                60, NULL::bigint, now() + interval '90 days', NULL::timestamptz),
               ('notebook', 'lgw_1111111111111111111111111111111111111111', 'research', NULL,
                NULL, 100000, NULL, NULL),
               ('old laptop', 'lgw_2222222222222222222222222222222222222222', 'research', NULL,
                NULL, NULL, NULL, now() - interval '3 days'),
               (NULL, 'lgw_3333333333333333333333333333333333333333', NULL, '{embed}',
                NULL, NULL, NULL, NULL))
       k(name, api_key, team, allowed_models, rpm_limit, tpm_limit, expires_at, revoked_at)
  LEFT JOIN llmgw.teams t ON t.name = k.team;
UPDATE llmgw.virtual_keys SET lineage_id = id WHERE lineage_id = 0;
-- the ci key rotated: the old one expires after the grace period
INSERT INTO llmgw.virtual_keys (name, prefix, hash, team_id, allowed_models, rpm_limit,
                                expires_at, rotated_from, lineage_id)
SELECT k.name, 'lgw_4444aaaa', sha256(convert_to('lgw_4444aaaa-rotated', 'UTF8')), k.team_id,
       k.allowed_models, k.rpm_limit, k.expires_at, k.id, k.lineage_id
  FROM llmgw.virtual_keys k WHERE k.name = 'ci';
UPDATE llmgw.virtual_keys SET expires_at = now() + interval '1 hour'
 WHERE name = 'ci' AND rotated_from IS NULL;

-- prices: a history of two rows (the first closed), and an import
SELECT llmgw.set_price('upgrade-local', 0.1, 0.2, valid_from => now() - interval '60 days');
SELECT llmgw.set_price('upgrade-local', 0.15, 0.3, cached_input => 0.05, per_request => 0.001,
                       valid_from => now() - interval '10 days', source => 'upgrade test');
SELECT llmgw.import_prices('{
  "upgrade-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                    "input_cost_per_token_above_128k_tokens": 2e-06,
                    "output_cost_per_token_above_128k_tokens": 4e-06,
                    "max_output_tokens": 8192},
  "upgrade-embed": {"input_cost_per_token": 2e-08, "output_cost_per_token": 0.0}
}', now() - interval '5 days');

-- budgets of every scope, and alerts
SELECT llmgw.create_budget('research monthly', 'team', 'research', 'month', 100);
SELECT llmgw.create_budget('ci key daily', 'key',
                           (SELECT id::text FROM llmgw.virtual_keys
                             WHERE name = 'ci' AND rotated_from IS NULL),
                           'day', 5, 'soft');
SELECT llmgw.create_budget('analyst weekly', 'role', 'upgrade_analyst', 'week', 20);
SELECT llmgw.create_budget('chat total', 'model', 'chat', 'total', 1000, 'hard', 'EUR');
SELECT llmgw.create_budget('everything', 'global', NULL, 'month', 10000);
INSERT INTO llmgw.alerts (budget_id, budget_name, kind, period_start, limit_amount, spent,
                          currency, team_id)
SELECT id, name, 'soft_limit_reached', llmgw.period_start(period), limit_amount, 5.25,
       currency, team_id
  FROM llmgw.budgets WHERE name = 'ci key daily';
INSERT INTO llmgw.alerts (budget_id, budget_name, kind, period_start, limit_amount, spent,
                          currency, team_id)
VALUES (NULL, 'a deleted budget', 'hard_limit_reached', now() - interval '40 days', 1, 1.5,
        'USD', NULL);

-- usage: this month (its monthly partition) ...
INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, key_id, team_id, model,
                         provider, upstream_model, status, error_class, http_status,
                         latency_ms, input_tokens, output_tokens, cached_input_tokens,
                         cache_write_tokens, cache_write_1h_tokens, reasoning_tokens,
                         usage_source, price_id, cost, currency, unpriced, cache_hit,
                         fallback_from, tags)
SELECT md5('upgrade-now-' || i)::uuid, 1,
       date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           + i * interval '7 minutes',
       'upgrade_analyst', k.id, k.team_id, 'chat', 'openai', 'gpt-4o',
       CASE WHEN i % 7 = 0 THEN 'error' ELSE 'ok' END,
       CASE WHEN i % 7 = 0 THEN 'rate_limit' END,
       CASE WHEN i % 7 = 0 THEN 429 ELSE 200 END,
       100 + i * 1.5, 1000 + i, 50 + i, CASE WHEN i % 3 = 0 THEN 512 END,
       CASE WHEN i % 5 = 0 THEN 256 END, CASE WHEN i % 10 = 0 THEN 128 END,
       CASE WHEN i % 4 = 0 THEN 10 END,
       CASE WHEN i % 6 = 0 THEN 'estimated' ELSE 'provider' END,
       p.id, CASE WHEN i % 7 <> 0 THEN 0.0025 * i END, 'USD', false, i % 9 = 0,
       NULL, CASE WHEN i % 2 = 0 THEN jsonb_build_object('job', '1', 'i', i) END
  FROM generate_series(1, 40) i
  LEFT JOIN llmgw.virtual_keys k ON k.name = 'notebook'
  LEFT JOIN llmgw.prices p ON p.model = 'gpt-4o' AND p.valid_to IS NULL;
-- ... a call that failed over, an unpriced one and an interrupted one ...
INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, key_id, team_id, model,
                         provider, upstream_model, status, error_class, http_status,
                         latency_ms, input_tokens, output_tokens, usage_source, cost, currency,
                         unpriced, fallback_from)
VALUES (md5('upgrade-fallback')::uuid, 1, now() - interval '1 minute', 'postgres', NULL, NULL,
        'chat', 'azure-eu', 'gpt-4o', 'error', 'server_error', 503, 35.5, NULL, NULL, NULL,
        NULL, NULL, false, NULL),
       (md5('upgrade-fallback')::uuid, 2, now() - interval '1 minute', 'postgres', NULL, NULL,
        'chat', 'anthropic', 'claude-sonnet-4-5', 'ok', NULL, 200, 812.25, 2000, 300,
        'provider', 0.0105, 'USD', false, 'azure-eu'),
       (md5('upgrade-unpriced')::uuid, 1, now() - interval '2 minutes', 'postgres', NULL, NULL,
        'fast', 'local', 'llama-3.1-8b', 'ok', NULL, 200, 20, 10, 5, 'estimated', NULL, NULL,
        true, NULL),
       (md5('upgrade-interrupted')::uuid, 1, now() - interval '3 minutes', 'upgrade_analyst',
        NULL, (SELECT id FROM llmgw.teams WHERE name = 'research'), 'chat', 'openai', 'gpt-4o',
        'interrupted', 'interrupted', NULL, NULL, NULL, NULL, NULL, NULL, NULL, false, NULL);
-- ... and four months ago (the default partition)
INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, key_id, team_id, model,
                         provider, upstream_model, status, http_status, latency_ms,
                         input_tokens, output_tokens, usage_source, cost, currency, tags)
SELECT md5('upgrade-old-' || i)::uuid, 1,
       date_trunc('month', now() - interval '4 months') + i * interval '13 hours',
       NULL, k.id, k.team_id, 'fast', 'openai', 'gpt-4o-mini', 'ok', 200, 50 + i,
       300 + i, 20 + i, 'provider', 0.00002 * i, 'USD', '{"source": "batch"}'::jsonb
  FROM generate_series(1, 25) i
  LEFT JOIN llmgw.virtual_keys k ON k.name = 'ci' AND k.rotated_from IS NULL;

-- finished asynchronous calls (a worker takes only queued or stale ones)
INSERT INTO llmgw.async_calls (owner, model, request, key_hash, tags, max_retries, timeout_ms,
                               status, answer, sqlstate, error, attempts, started_at,
                               finished_at, server_started_at)
VALUES ('upgrade_analyst', 'chat',
        '{"model": "chat", "messages": [{"role": "user", "content": "hello"}]}',
        sha256(convert_to('lgw_1111111111111111111111111111111111111111', 'UTF8')),
        '{"batch": "a"}', 2, 60000, 'done',
        '{"content": "Hello!", "usage": {"input_tokens": 3, "output_tokens": 2}}',
        NULL, NULL, 1, now() - interval '5 seconds', now(), pg_postmaster_start_time()),
       ('postgres', 'fast', '{"model": "fast", "messages": [{"role": "user", "content": "x"}]}',
        NULL, NULL, 0, 1000, 'error', NULL, 'LG010', 'budget "everything" is exhausted', 2,
        now() - interval '1 minute', now() - interval '50 seconds', pg_postmaster_start_time());

-- enrichment jobs
INSERT INTO llmgw.jobs (name, owner, source, output_column, model, status, rows_total,
                        rows_done, rows_failed, rows_skipped, last_error, finished_at)
VALUES ('tickets', 'upgrade_analyst', 'public.tickets', 'summary', 'fast', 'finished',
        3, 2, 1, 0, 'LG002: invalid model', now()),
       (NULL, 'postgres', 'public.docs', 'embedding_note', 'chat', 'stopped', 10, 4, 0, 1,
        'LG010: budget exhausted', now()),
       ('nightly', 'postgres', 'public.reviews', 'sentiment', 'fast', 'running', 100, 40, 0, 0,
        NULL, NULL);

-- cached answers, far from expiry and small (the workers trim the cache)
INSERT INTO llmgw.response_cache (key, model, scope, kind, answer, expires_at, hits)
VALUES (sha256(convert_to('upgrade-cache-1', 'UTF8')), 'chat', 'team:1', 0,
        '{"content": "cached answer"}', now() + interval '10 years', 3),
       (sha256(convert_to('upgrade-cache-2', 'UTF8')), 'chat', 'shared', 1,
        '{"content": "another"}', now() + interval '10 years', 0);

-- a call in flight in this server life (a restart would record it as interrupted)
INSERT INTO llmgw.calls_in_flight (request_id, server_started_at, started_at, role_name,
                                   key_id, team_id, model, provider, upstream_model)
VALUES (md5('upgrade-in-flight')::uuid, pg_postmaster_start_time(), now(), 'postgres', NULL,
        NULL, 'chat', 'openai', 'gpt-4o');
SQL
$node->safe_psql('postgres', $fill_sql);

# The extension's tables (not partitions: their rows are read through the
# parent) and their columns now
my $tables_sql = q{
	SELECT c.oid::regclass::text, string_agg(quote_ident(a.attname), ',' ORDER BY a.attnum)
	  FROM pg_extension e
	  JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
	                  AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass
	  JOIN pg_class c ON c.oid = d.objid AND c.relkind IN ('r', 'p') AND NOT c.relispartition
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE e.extname = 'llmgw'
	 GROUP BY 1 ORDER BY 1};
my %old_columns = map { split /\|/ } split /\n/, $node->safe_psql('postgres', $tables_sql);

# The rows of a table, each as the text of a row of the given columns (a
# comma-separated list of names or expressions), sorted; and their count and
# md5
sub rows_of
{
	my ($table, $columns) = @_;
	return $node->safe_psql('postgres',
		"SELECT r FROM (SELECT ROW($columns)::text AS r FROM $table) s ORDER BY r COLLATE \"C\"");
}

sub checksum_of
{
	my ($table, $columns) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) || ' ' || coalesce(md5(string_agg(r, E'\\n' ORDER BY r COLLATE "C")), '-')
		  FROM (SELECT ROW($columns)::text AS r FROM $table) s});
}

# The 0.1 columns of a table after the update: rewritten ones mapped back
sub old_columns_after
{
	my ($table) = @_;
	my $rewritten = $rewritten_by_update{$table} // {};
	return join ',',
	  map { defined $rewritten->{$_} ? "($rewritten->{$_})" : $_ }
	  split /,/, $old_columns{$table};
}

my (%old_rows, %old_checksums);
for my $table (sort keys %old_columns)
{
	$old_rows{$table} = rows_of($table, $old_columns{$table});
	$old_checksums{$table} = checksum_of($table, $old_columns{$table});
	unlike($old_checksums{$table}, qr/^0 /, "$old_version table $table is filled");
}
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT tableoid) >= 2 AND bool_or(tableoid = 'llmgw.usage_default'::regclass)
	  FROM llmgw.usage}),
	't', 'usage rows are in the default partition and in a monthly one');
is($node->safe_psql('postgres', 'SELECT sum(calls) FROM llmgw.usage_daily'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM llmgw.usage'),
	'the rollup trigger counted every usage row');
my %old_sequences = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT schemaname || '.' || sequencename, coalesce(last_value, 0) FROM pg_sequences
	 WHERE schemaname = 'llmgw'});

# The update
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'ALTER EXTENSION llmgw UPDATE');
is($ret, 0, "ALTER EXTENSION llmgw UPDATE from $old_version succeeds")
  or diag($stderr);
if ($ret != 0)
{
	$node->stop;
	done_testing();
	exit;
}
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'llmgw'"),
	$default_version, "the updated extension is at the default version, $default_version");

# A fresh install of the default version next to it
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION llmgw');

# The two schemas, object for object
my $describe_sql = slurp_file($describe);
my $updated = $node->safe_psql('postgres', $describe_sql, extra_params => [ '-v', 'ext=llmgw' ]);
my $fresh = $node->safe_psql('fresh', $describe_sql, extra_params => [ '-v', 'ext=llmgw' ]);
like($fresh, qr/^extension llmgw \| version \| \Q$default_version\E$/m,
	'describe_extension.sql describes the fresh install');
my $diff = diff_texts('upgrade_schema', "fresh install of $default_version", $fresh,
	"$old_version updated to $default_version", $updated);
is($diff, '',
	"the updated schema equals a fresh install of $default_version, object for object"
	  . ' (diff: - fresh, + updated)');

# The 0.1 data, over the 0.1 columns
my %new_columns = map { split /\|/ } split /\n/, $node->safe_psql('postgres', $tables_sql);
for my $table (sort keys %old_columns)
{
	if ($dropped_by_update{$table})
	{
		ok(!defined $new_columns{$table},
			"table $table is dropped by the update: $dropped_by_update{$table}");
		next;
	}
	if (!defined $new_columns{$table})
	{
		fail("table $table is still there after the update");
		next;
	}
	my %now = map { $_ => 1 } split /,/, $new_columns{$table};
	my @gone = grep { !$now{$_} } split /,/, $old_columns{$table};
	if (@gone)
	{
		fail("the $old_version columns of $table are still there after the update")
		  or diag('gone: ' . join(', ', @gone));
		next;
	}
	my $columns = old_columns_after($table);
	my $rows = rows_of($table, $columns);
	if ($update_may_add_rows{$table})
	{
		my %after = map { $_ => 1 } split /\n/, $rows;
		my @lost = grep { !$after{$_} } split /\n/, $old_rows{$table};
		is(scalar(@lost), 0, "every $old_version row of $table is still there")
		  or diag(join("\n", 'lost:', @lost));
		next;
	}
	is(checksum_of($table, $columns), $old_checksums{$table},
		"$table keeps its $old_version rows (count and md5 over its $old_version columns)")
	  or diag(diff_texts('upgrade_rows', 'before the update', $old_rows{$table},
						 'after', $rows));
}
# the call the 0.1 journal held is an interrupted usage row now
is($node->safe_psql('postgres', q{
	SELECT status, error_class, model, provider FROM llmgw.usage
	 WHERE request_id = md5('upgrade-in-flight')::uuid}),
	'interrupted|interrupted|chat|openai',
	'the call left in the 0.1 journal is recorded as interrupted');

# the rewrite of prices.source (0.1 to 0.2): the seed of 0.1, its first
# seven rows, and only it, is marked as the seed
is($node->safe_psql('postgres',
		"SELECT string_agg(id::text, ',' ORDER BY id) FROM llmgw.prices WHERE source = 'seed'"),
	'1,2,3,4,5,6,7', 'the seed prices of 0.1, and only they, have source seed');
my %new_sequences = map { split /\|/ } split /\n/, $node->safe_psql('postgres', q{
	SELECT schemaname || '.' || sequencename, coalesce(last_value, 0) FROM pg_sequences
	 WHERE schemaname = 'llmgw'});
for my $seq (sort keys %old_sequences)
{
	ok(defined $new_sequences{$seq} && $new_sequences{$seq} >= $old_sequences{$seq},
		"sequence $seq did not go back ($old_sequences{$seq} before the update)")
	  or diag('now: ' . ($new_sequences{$seq} // 'gone'));
}

# Two texts as a unified diff (files in tmp_check, kept for a look)
sub diff_texts
{
	my ($name, $label1, $text1, $label2, $text2) = @_;
	my $file1 = "$PostgreSQL::Test::Utils::tmp_check/${name}_1.txt";
	my $file2 = "$PostgreSQL::Test::Utils::tmp_check/${name}_2.txt";
	unlink $file1, $file2;
	append_to_file($file1, "$text1\n");
	append_to_file($file2, "$text2\n");
	my ($diff) = run_command([ 'diff', '-u', '--label', $label1, '--label', $label2,
							   $file1, $file2 ]);
	return $diff;
}

$node->stop;
done_testing();
