# Prometheus metrics (docs/metrics.md).  A known set of calls (successes,
# each of several error classes, a timeout, a fallback, a cache hit,
# refusals of every kind, a caller waiting for its fair share, a worker
# restarted), then llmgw.metrics(), the front door's GET /metrics (a key
# with scope metrics) and Debian's prometheus-postgres-exporter with the
# queries file docs/prometheus/llmgw-queries.yaml, started against the
# node's Unix socket as a member of llmgw_finance: all show the same
# series with the same values, and those values are what the usage rows
# say.  Counters of the usage rows do not go back when a partition of
# llmgw.usage is dropped nor when the server restarts after a crash (the
# counters of shared memory start again, with a new life start time).  A
# member of llmgw_user gets no metric, through llmgw.metrics() or the
# exporter.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
-x $exporter or BAIL_OUT("$exporter is missing (package prometheus-postgres-exporter)");
my $queries = "$FindBin::Bin/../../docs/prometheus/llmgw-queries.yaml";
-f $queries or BAIL_OUT("$queries is missing");
my $mock = $ENV{LLMGW_MOCK_URL};

sub free_port
{
	my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die $!;
	my $p = $s->sockport;
	close $s;
	return $p;
}

# 16 request slots: one role's fair share is 8 of them; the front door on
# a port of its own serves GET /metrics too
my $http_port = free_port();
my $node = LlmgwTest::node('metrics', 2,
	conf => "llmgw.queue_size = 16\nllmgw.max_retries = 0\nllmgw.http_listen = '127.0.0.1:$http_port'\n");

$node->safe_psql('postgres', qq{
	CREATE ROLE prom LOGIN IN ROLE llmgw_finance;
	CREATE ROLE app LOGIN IN ROLE llmgw_user;
	SELECT llmgw.create_provider('claude', 'anthropic', '$mock', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_provider('badsecret', 'openai_compatible', '$mock',
	                             secret => 'sk-not-the-key');
	SELECT llmgw.set_price('fast-price', input => 1, output => 2, per_request => 0.001);
	SELECT llmgw.set_price('claude-price', input => 3, output => 15, per_request => 0.002);
	SELECT llmgw.create_model('fast', 'mock', 'fast-model;cached:2;reasoning:3',
	                          price_model => 'fast-price');
	SELECT llmgw.create_model('slowish', 'mock', 'slowish-model;delay:120', price_model => 'fast-price');
	SELECT llmgw.create_model('claude', 'claude', 'claude-model;cache_write:7',
	                          price_model => 'claude-price');
	SELECT llmgw.create_model('fb', 'mock', 'fb-primary;status:503', priority => 1);
	SELECT llmgw.create_model('fb', 'mock', 'fb-backup', priority => 0);
	SELECT llmgw.create_model('cached', 'mock', 'cached-model', price_model => 'fast-price');
	UPDATE llmgw.models SET cache_ttl = '1 hour', cache_hit_cost = 0.0001 WHERE alias = 'cached';
	SELECT llmgw.create_model('e500', 'mock', 'e500;status:500');
	SELECT llmgw.create_model('equota', 'mock', 'equota;quota');
	SELECT llmgw.create_model('econtext', 'mock', 'econtext;context');
	SELECT llmgw.create_model('ebad', 'mock', 'ebad;status:400');
	SELECT llmgw.create_model('eauth', 'badsecret', 'eauth-model');
	SELECT llmgw.create_model('tout', 'mock', 'tout;delay:3000');
	SELECT llmgw.create_model('dlimited', 'mock', 'dlimited-model', rpm_limit => 1);
	SELECT llmgw.create_model('mlimited', 'mock', 'mlimited-model');
	UPDATE llmgw.models SET rpm_limit = 1 WHERE alias = 'mlimited';
	SELECT llmgw.create_model('slow8', 'mock', 'slow8;delay:6000');
	SELECT llmgw.create_team('red') > 0, llmgw.create_team('blue', allowed_models => '{fast}') > 0;
	SELECT llmgw.create_budget('blue lifetime', 'team', 'blue', 'total', 0.0015) > 0;
	SELECT llmgw.create_budget('everything', 'global', NULL, 'month', 100, 'soft') > 0;
});
my $key_red = $node->safe_psql('postgres', "SELECT api_key FROM llmgw.create_key('red')");
my $key_blue = $node->safe_psql('postgres', "SELECT api_key FROM llmgw.create_key('blue')");
my $key_red_fast = $node->safe_psql('postgres',
	"SELECT api_key FROM llmgw.create_key('red', 'fast only', allowed_models => '{fast}')");
my $key_red_rpm = $node->safe_psql('postgres',
	"SELECT api_key FROM llmgw.create_key('red', 'one a minute', rpm_limit => 1)");

# run sql with a key, as the superuser; returns "ok" or "SQLSTATE: message"
sub call
{
	my ($key, $sql) = @_;
	my $set = $key ? "SELECT set_config('llmgw.api_key', '$key', false);" : '';
	return LlmgwTest::error_of($node, "$set $sql");
}

# The known set of calls
is(call($key_red, "SELECT llm_complete('one two three', 'fast', max_tokens => 5)"), 'ok', 'success');
is(call($key_red, "SELECT llm_complete('four', 'fast', max_tokens => 5)"), 'ok', 'success');
is(call($key_red, "SELECT llm_complete('slow', 'slowish', max_tokens => 5)"), 'ok', 'success, slower');
is(call($key_red, "SELECT llm_complete('cache me', 'claude', max_tokens => 5)"), 'ok',
	'success, Anthropic with a cache write');
is(call(undef, "SELECT llm_complete('no team', 'fast', max_tokens => 5)"), 'ok', 'success without a team');
is(call($key_red, "SELECT llm_complete('fall back', 'fb', max_tokens => 5)"), 'ok', 'a fallback');
is(call($key_red, "SELECT llm_complete('same question', 'cached')"), 'ok', 'cached: a miss');
is(call($key_red, "SELECT llm_complete('same question', 'cached')"), 'ok', 'cached: a hit');
is(call($key_red, "SELECT llm_complete('x', 'e500')"), 'LG500: provider "mock" failed: the provider had an internal error',
	'server error') for 1 .. 3;
like(call($key_red, "SELECT llm_complete('x', 'equota')"), qr/^LG402:/, 'quota');
like(call($key_red, "SELECT llm_complete('x', 'econtext')"), qr/^LG413:/, 'context length');
like(call($key_red, "SELECT llm_complete('x', 'ebad')"), qr/^LG400:/, 'invalid request');
like(call($key_red, "SELECT llm_complete('x', 'eauth')"), qr/^LG401:/, 'provider auth');
like(call($key_red, "SET llmgw.request_timeout = '200ms'; SELECT llm_complete('x', 'tout')"),
	qr/^LG002:/, 'timeout');
# refusals: no provider called, no usage row
is(call($key_blue, "SELECT llm_complete('b1', 'fast', max_tokens => 5)"), 'ok', 'blue: within its budget');
like(call($key_blue, "SELECT llm_complete('b2', 'fast', max_tokens => 5)"), qr/^LG010:/,
	'refused: a hard team budget');
like(call($key_blue, "SELECT llm_complete('b3', 'slowish')"), qr/^42501: team "blue" may not use/,
	'refused: the team may not use the model');
like(call($key_red_fast, "SELECT llm_complete('k', 'claude')"), qr/^42501: virtual key \S+ may not use/,
	'refused: the key may not use the model');
like(call('lgw_' . ('x' x 40), "SELECT llm_complete('k', 'fast')"), qr/^28000:/, 'refused: an invalid key');
is(call($key_red_rpm, "SELECT llm_complete('r1', 'fast', max_tokens => 5)"), 'ok', 'key limit: first');
like(call($key_red_rpm, "SELECT llm_complete('r2', 'fast', max_tokens => 5)"), qr/^LG011:/,
	'refused: the key\'s rate limit');
is(call($key_red, "SELECT llm_complete('d1', 'dlimited')"), 'ok', 'deployment limit: first');
like(call($key_red, "SELECT llm_complete('d2', 'dlimited')"), qr/^LG011:/,
	'refused: the deployment\'s rate limit');
is(call($key_red, "SELECT llm_complete('m1', 'mlimited')"), 'ok', 'model limit: first');
like(call($key_red, "SELECT llm_complete('m2', 'mlimited')"), qr/^LG011:/,
	'refused: the model\'s rate limit');

# samples of some families, as the superuser: {labels as key=value,...} => value
sub samples
{
	my ($families) = @_;
	my %s;
	for (split /\n/, $node->safe_psql('postgres',
		"SELECT metric, labels, value FROM llmgw.metric_samples('$families')"))
	{
		my ($m, $l, $v) = split /\|/;
		my $labels = decode_json($l);
		$s{ $m . '{' . join(',', map { "$_=$labels->{$_}" } grep { $labels->{$_} ne '' } sort keys %$labels) . '}' } = $v;
	}
	return \%s;
}

# The fair share: role app holds its 8 slots with slow calls; a ninth call
# with llmgw.share_wait = off is refused, one with share_wait on waits
my $app = $node->connstr('postgres') . ' user=app';
my @slow = IPC::Run::start([ 'psql', '-XAtq', '-d', $app, '-c',
	"SELECT count(*) FROM llm_complete_many(array_fill('x'::text, ARRAY[8]), 'slow8', concurrency => 8)" ],
	'>', \my $slow_out, '2>', \my $slow_err);
ok($node->poll_query_until('postgres', q{
	SELECT value = 8 FROM llmgw.metric_samples('{llmgw_deployment_in_flight}')
	 WHERE labels->>'model' = 'slow8'}), 'slow8: 8 attempts in flight');
my $busy = samples('{llmgw_calls_in_flight,llmgw_queue_depth}');
cmp_ok($busy->{'llmgw_calls_in_flight{}'} + $busy->{'llmgw_queue_depth{}'}, '>=', 8,
	'calls in flight and queued while they run');
like(LlmgwTest::error_of($node, "SET ROLE app; SET llmgw.share_wait = off; SELECT llm_complete('9th', 'fast')"),
	qr/^LG012:/, 'refused: the role holds its whole share');
my @wait = IPC::Run::start([ 'psql', '-XAtq', '-d', $app, '-c', "SELECT llm_complete('10th', 'fast')" ],
	'>', \my $wait_out, '2>', \my $wait_err);
ok($node->poll_query_until('postgres', q{
	SELECT value = 1 FROM llmgw.metric_samples('{llmgw_fair_share_waiting}')}),
	'a caller waits for its share');
IPC::Run::finish(@slow);
IPC::Run::finish(@wait);
is($slow_out, "8\n", 'the slow calls answered');
like($wait_out, qr/Hello/, 'the waiting call answered once the share had room');

# a worker that exits is started again
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' ORDER BY pid LIMIT 1});
kill 'TERM', $pid;
ok($node->poll_query_until('postgres', q{
	SELECT (SELECT sum(value) FROM llmgw.metric_samples('{llmgw_worker_restarts_total}')) = 1
	   AND (SELECT value FROM llmgw.metric_samples('{llmgw_workers_running}')) = 2}),
	'a worker restart is counted');

# --- the exposition of llmgw.metrics(), as prom (llmgw_finance) ---

# parse the text exposition format; returns {series => value} (labels sorted,
# empty ones and the exporter's "server" left out), and the lines that are not
# well formed
sub parse
{
	my ($text) = @_;
	my (%s, @bad, $type);
	for my $line (split /\n/, $text)
	{
		if ($line =~ /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/) { $type = $1; next; }
		next if $line =~ /^# HELP \S+ /;
		if ($line !~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/)
		{
			push @bad, $line;
			next;
		}
		my ($name, $lbl, $v) = ($1, $2 // '', $3);
		next unless $name =~ /^llmgw_/;
		push @bad, "$line (not of family $type)"
		  unless defined $type && $name =~ /^\Q$type\E(_bucket|_sum|_count)?$/;
		my %l;
		while ($lbl =~ /\G([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)",?/gc)
		{
			my ($k, $val) = ($1, $2);
			$val =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
			$l{$k} = $val;
		}
		push @bad, "$line (labels)" unless (pos($lbl) // 0) == length($lbl);
		delete $l{server};
		my $key = $name . '{' . join(',', map { "$_=$l{$_}" } grep { $l{$_} ne '' } sort keys %l) . '}';
		push @bad, "$line (twice)" if exists $s{$key};
		$s{$key} = $v eq '+Inf' ? 9**9**9 : $v eq '-Inf' ? -9**9**9 : $v eq 'NaN' ? 'NaN' : $v + 0;
	}
	return (\%s, \@bad);
}

my ($text, $err) = ('', '');
$node->psql('postgres', 'SELECT llmgw.metrics()', stdout => \$text, stderr => \$err,
	extra_params => [ '-U', 'prom' ]);
my ($from_sql, $bad) = parse($text);
is_deeply($bad, [], 'llmgw.metrics(): every line well formed, under the TYPE of its family');
my @types = $text =~ /^# TYPE (\S+) /mg;
is(scalar(@types), $node->safe_psql('postgres', 'SELECT count(*) FROM llmgw.metric_families()'),
	'a TYPE line per family');

# the same series from the usage rows
my %expected;
for (split /\n/, $node->safe_psql('postgres', q{
	SELECT 'llmgw_calls_total', jsonb_build_object('model', model, 'provider', provider,
	           'upstream_model', upstream_model, 'status', status, 'error_class', error_class),
	       count(*)
	  FROM llmgw.usage GROUP BY model, provider, upstream_model, status, error_class
	UNION ALL
	SELECT 'llmgw_tokens_total', jsonb_build_object('model', model, 'provider', provider,
	           'upstream_model', upstream_model, 'bucket', b),
	       coalesce(sum(CASE b WHEN 'input' THEN input_tokens WHEN 'output' THEN output_tokens
	                           WHEN 'cached_input' THEN cached_input_tokens
	                           WHEN 'cache_write' THEN cache_write_tokens
	                           ELSE reasoning_tokens END), 0)
	  FROM llmgw.usage, unnest('{input,output,cached_input,cache_write,reasoning}'::text[]) b
	 WHERE NOT cache_hit GROUP BY model, provider, upstream_model, b
	UNION ALL
	SELECT 'llmgw_cost_total', jsonb_build_object('team', t.name, 'model', u.model,
	           'currency', u.currency), sum(coalesce(u.cost, 0))
	  FROM llmgw.usage u LEFT JOIN llmgw.teams t ON t.id = u.team_id
	 WHERE u.currency IS NOT NULL GROUP BY t.name, u.model, u.currency
	UNION ALL
	SELECT 'llmgw_unpriced_calls_total', jsonb_build_object('model', model, 'provider', provider,
	           'upstream_model', upstream_model), count(*) FILTER (WHERE unpriced)
	  FROM llmgw.usage GROUP BY model, provider, upstream_model
	UNION ALL
	SELECT 'llmgw_cache_hits_total', jsonb_build_object('model', model), count(*)
	  FROM llmgw.usage WHERE cache_hit GROUP BY model
	UNION ALL
	SELECT 'llmgw_fallbacks_total', jsonb_build_object('model', model, 'from', fallback_from,
	           'provider', provider, 'upstream_model', upstream_model), count(*)
	  FROM llmgw.usage WHERE fallback_from IS NOT NULL
	 GROUP BY model, fallback_from, provider, upstream_model
	UNION ALL
	SELECT 'llmgw_latency_seconds_count', jsonb_build_object('model', model, 'provider', provider,
	           'upstream_model', upstream_model), count(*)
	  FROM llmgw.usage WHERE status = 'ok' AND NOT cache_hit GROUP BY model, provider, upstream_model
	UNION ALL
	SELECT 'llmgw_latency_seconds_sum', jsonb_build_object('model', model, 'provider', provider,
	           'upstream_model', upstream_model), sum(latency_ms) / 1000
	  FROM llmgw.usage WHERE status = 'ok' AND NOT cache_hit GROUP BY model, provider, upstream_model
	UNION ALL
	SELECT 'llmgw_budget_' || v.m, jsonb_build_object('budget', b.name, 'scope', b.scope,
	           'target', b.target, 'period', b.period, 'enforcement', b.enforcement,
	           'currency', b.currency), v.x
	  FROM llmgw.budget_status b
	 CROSS JOIN LATERAL (VALUES ('limit', b.limit_amount), ('spent', b.ledger_spent),
	                            ('reserved', b.reserved),
	                            ('remaining', greatest(b.limit_amount - b.ledger_spent - b.reserved, 0))) v(m, x)}))
{
	my ($m, $l, $v) = split /\|/;
	my $labels = decode_json($l);
	$expected{ $m . '{' . join(',', map { "$_=$labels->{$_}" }
		  grep { defined $labels->{$_} && $labels->{$_} ne '' } sort keys %$labels) . '}' } = $v;
}
# the latency buckets: the attempts at or below each bound
my @ok_latencies = split /\n/, $node->safe_psql('postgres', q{
	SELECT model || '|' || provider || '|' || upstream_model || '|' || latency_ms / 1000
	  FROM llmgw.usage WHERE status = 'ok' AND NOT cache_hit});
for my $series (grep { /^llmgw_latency_seconds_bucket\{/ } keys %$from_sql)
{
	my ($le) = $series =~ /le=([^,}]+)/;
	my ($model) = $series =~ /model=([^,}]+)/;
	my ($upstream) = $series =~ /upstream_model=([^,}]+)/;
	$expected{$series} = scalar(grep {
		my ($m, $p, $u, $s) = split /\|/;
		$m eq $model && $u eq $upstream && ($le eq 'inf' || $le eq '+Inf' || $s <= $le)
	} @ok_latencies);
}

# compare two sets of series; returns the differences
sub differences
{
	my ($got, $want, $families) = @_;
	my @d;
	for my $k (sort keys %$want)
	{
		next unless grep { $k =~ /^\Q$_\E[_{]/ } @$families;
		if (!exists $got->{$k}) { push @d, "missing $k = $want->{$k}"; next; }
		push @d, "$k = $got->{$k}, expected $want->{$k}"
		  if abs($got->{$k} - $want->{$k}) > 1e-9 * (1 + abs($want->{$k}));
	}
	for my $k (sort keys %$got)
	{
		next unless grep { $k =~ /^\Q$_\E[_{]/ } @$families;
		# a deployment tried but never successful has an empty histogram
		next if $k =~ /^llmgw_latency_seconds_/ && $got->{$k} == 0;
		push @d, "unexpected $k = $got->{$k}" unless exists $want->{$k};
	}
	return \@d;
}
my @from_usage = qw(llmgw_calls_total llmgw_tokens_total llmgw_cost_total llmgw_unpriced_calls_total
  llmgw_cache_hits_total llmgw_fallbacks_total llmgw_latency_seconds llmgw_budget_limit
  llmgw_budget_spent llmgw_budget_reserved llmgw_budget_remaining);
is_deeply(differences($from_sql, \%expected, \@from_usage), [],
	'llmgw.metrics(): calls, tokens, cost, cache hits, fallbacks, latencies and budgets are the usage rows\'');

# what the known calls must have left, spelt out
my %known = (
	'llmgw_calls_total{error_class=overloaded,model=fb,provider=mock,status=error,upstream_model=fb-primary;status:503}' => 1,
	'llmgw_calls_total{model=fb,provider=mock,status=ok,upstream_model=fb-backup}' => 1,
	'llmgw_fallbacks_total{from=mock/fb-primary;status:503,model=fb,provider=mock,upstream_model=fb-backup}' => 1,
	'llmgw_cache_hits_total{model=cached}' => 1,
	'llmgw_calls_total{model=cached,status=ok}' => 1,
	'llmgw_calls_total{error_class=server,model=e500,provider=mock,status=error,upstream_model=e500;status:500}' => 3,
	'llmgw_calls_total{error_class=quota,model=equota,provider=mock,status=error,upstream_model=equota;quota}' => 1,
	'llmgw_calls_total{error_class=context_length,model=econtext,provider=mock,status=error,upstream_model=econtext;context}' => 1,
	'llmgw_calls_total{error_class=invalid_request,model=ebad,provider=mock,status=error,upstream_model=ebad;status:400}' => 1,
	'llmgw_calls_total{error_class=auth,model=eauth,provider=badsecret,status=error,upstream_model=eauth-model}' => 1,
	'llmgw_calls_total{error_class=timeout,model=tout,provider=mock,status=error,upstream_model=tout;delay:3000}' => 1,
	'llmgw_tokens_total{bucket=cache_write,model=claude,provider=claude,upstream_model=claude-model;cache_write:7}' => 7,
	'llmgw_tokens_total{bucket=cached_input,model=fast,provider=mock,upstream_model=fast-model;cached:2;reasoning:3}' => 2 * 6,
	'llmgw_tokens_total{bucket=reasoning,model=fast,provider=mock,upstream_model=fast-model;cached:2;reasoning:3}' => 3 * 6,
	'llmgw_deployment_cooling_down{model=e500,provider=mock,upstream_model=e500;status:500}' => 1,
	'llmgw_deployment_cooling_down{model=fast,provider=mock,upstream_model=fast-model;cached:2;reasoning:3}' => 0,
	'llmgw_refusals_total{reason=budget,scope=team}' => 1,
	'llmgw_refusals_total{reason=budget,scope=global}' => 0,
	'llmgw_refusals_total{reason=not_allowed,scope=team}' => 1,
	'llmgw_refusals_total{reason=not_allowed,scope=key}' => 1,
	'llmgw_refusals_total{reason=invalid_key,scope=key}' => 1,
	'llmgw_refusals_total{reason=rate_limit,scope=key}' => 1,
	'llmgw_refusals_total{reason=rate_limit,scope=deployment}' => 1,
	'llmgw_refusals_total{reason=rate_limit,scope=model}' => 1,
	'llmgw_refusals_total{reason=rate_limit,scope=team}' => 0,
	'llmgw_refusals_total{reason=fair_share,scope=share}' => 1,
	'llmgw_refusals_total{reason=queue_full,scope=queue}' => 0,
	'llmgw_fair_share_waiting{}' => 0,
	'llmgw_queue_depth{}' => 0,
	'llmgw_calls_in_flight{}' => 0,
	'llmgw_queue_size{}' => 16,
	'llmgw_workers_running{}' => 2,
	'llmgw_workers_configured{}' => 2,
	'llmgw_budget_spent{budget=blue lifetime,currency=USD,enforcement=hard,period=total,scope=team,target=blue}' =>
	  $node->safe_psql('postgres', "SELECT ceil(sum(cost) * 1e10) / 1e10 FROM llmgw.usage WHERE team_id = llmgw.team_id('blue')"),
);
my @wrong = map { "$_ = " . ($from_sql->{$_} // 'missing') . ", expected $known{$_}" }
  grep { !defined $from_sql->{$_} || $from_sql->{$_} != $known{$_} } sort keys %known;
is_deeply(\@wrong, [], 'llmgw.metrics(): the known calls, error classes, refusals and gauges');
cmp_ok($from_sql->{'llmgw_fair_share_waits_total{}'}, '>=', 1, 'a fair-share wait counted');
cmp_ok($from_sql->{'llmgw_fair_share_wait_seconds_total{}'}, '>', 0, 'and its time');
is(scalar(grep { /^llmgw_worker_restarts_total/ && $from_sql->{$_} == 1 } keys %$from_sql), 1,
	'one worker restarted once');
is($from_sql->{'llmgw_requests_total{}'}, $node->safe_psql('postgres', 'SELECT calls_since_start FROM llmgw.stats()'),
	'requests since start as llmgw.stats() has them');
cmp_ok(abs($from_sql->{'llmgw_life_start_time_seconds{}'} - $node->safe_psql('postgres',
	'SELECT extract(epoch FROM life_started_at) FROM llmgw.stats()')), '<', 1e-3, 'life start');
my ($cost_red) = $node->safe_psql('postgres', q{
	SELECT sum(cost) FROM llmgw.usage WHERE team_id = llmgw.team_id('red') AND model = 'fast'});
cmp_ok(abs($from_sql->{'llmgw_cost_total{currency=USD,model=fast,team=red}'} - $cost_red), '<', 1e-12,
	'cost of team red on model fast');

# --- the front door's GET /metrics: the same, to a key with scope metrics ---

# GET /metrics with a key; returns the HTTP status and the body
sub front_metrics
{
	my ($key) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '--max-time', '30', '-w', '\n%{http_code}',
		'-H', "Authorization: Bearer $key", "http://127.0.0.1:$http_port/metrics" ],
		'>', \$out, '2>', \$err);
	my ($body, $code) = $out =~ /^(.*)\n(\d+)$/s;
	return ($code // 0, $body // '');
}
my ($key_metrics_id, $key_metrics) = split /\|/, $node->safe_psql('postgres',
	"SELECT key_id, api_key FROM llmgw.create_key('red', 'prometheus')");
$node->safe_psql('postgres', "SELECT llmgw.set_key_scopes($key_metrics_id, ARRAY['metrics'])");
my ($code, $body) = (0, '');
for (1 .. 50)
{
	# the workers know the key and its scope once they reload the configuration
	($code, $body) = front_metrics($key_metrics);
	last if $code == 200;
	usleep(100_000);
}
is($code, 200, 'front door: GET /metrics to a key with scope metrics');
my ($from_http, $bad_http) = parse($body);
is_deeply($bad_http, [], 'front door: every line well formed');
is_deeply(differences($from_http, $from_sql, [ split /\n/, $node->safe_psql('postgres',
	'SELECT family FROM llmgw.metric_families()') ]), [],
	'front door: the same series with the same values as llmgw.metrics()');
($code) = front_metrics($key_red);
is($code, 403, 'front door: not to a key without the scope');

# --- the exporter, on a private port, with nothing but the queries file ---

# start the exporter as role; returns its harness and port
sub start_exporter
{
	my ($role) = @_;
	my $port = free_port();
	local $ENV{DATA_SOURCE_NAME} = 'host=' . $node->host . ' port=' . $node->port
	  . " user=$role dbname=postgres sslmode=disable";
	my $h = IPC::Run::start([ $exporter, "--web.listen-address=127.0.0.1:$port",
		'--disable-default-metrics', '--disable-settings-metrics', '--no-collector.database',
		'--no-collector.bgwriter', "--extend.query-path=$queries", '--log.level=error' ],
		'>', \my $out, '2>', \my $err);
	for (1 .. 100)
	{
		last if IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port);
		usleep(100_000);
	}
	return ($h, $port);
}

sub scrape
{
	my ($port) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-sf', '--max-time', '30', "http://127.0.0.1:$port/metrics" ],
		'>', \$out, '2>', \$err) or return '';
	return $out;
}

my ($exp, $port) = start_exporter('prom');
my $scraped = scrape($port);
like($scraped, qr/^pg_up(\{[^}]*\})? 1$/m, 'exporter: connected');
like($scraped, qr/^pg_exporter_last_scrape_error(\{[^}]*\})? 0$/m, 'exporter: every query ran')
  or diag(join("\n", grep { /^pg_exporter/ } split /\n/, $scraped));
my ($from_exporter, $bad_exporter) = parse($scraped);
is_deeply($bad_exporter, [], 'exporter: every line well formed');
# the same series and values as llmgw.metrics()
my @families = split /\n/, $node->safe_psql('postgres', 'SELECT family FROM llmgw.metric_families()');
is_deeply(differences($from_exporter, $from_sql, \@families), [],
	'exporter: the same series with the same values as llmgw.metrics()');
is_deeply(differences($from_exporter, \%expected, \@from_usage), [],
	'exporter: calls, tokens, cost, cache hits, fallbacks, latencies and budgets are the usage rows\'');
like($scraped, qr/^# TYPE llmgw_latency_seconds histogram$/m, 'exporter: the latency is a histogram');
like($scraped, qr/^# TYPE llmgw_calls_total counter$/m, 'exporter: calls are a counter');

# a member of llmgw_user gets none of it (llmgw.metrics() shows every team's spend)
like(LlmgwTest::error_of($node, 'SET ROLE app; SELECT llmgw.metrics()'),
	qr/^42501: permission denied for function metrics/, 'llmgw_user: no llmgw.metrics()');
my ($exp_app, $port_app) = start_exporter('app');
my $scraped_app = scrape($port_app);
like($scraped_app, qr/^pg_exporter_last_scrape_error(\{[^}]*\})? 1$/m, 'exporter as llmgw_user: its queries fail');
is(scalar(grep { /^llmgw_/ } split /\n/, $scraped_app), 0, 'exporter as llmgw_user: no llmgw series');
$exp_app->kill_kill;

# --- counters of the usage rows never go back ---

sub total
{
	my ($s, $family) = @_;
	my $t = 0;
	$t += $s->{$_} for grep { /^\Q$family\E\{/ } keys %$s;
	return $t;
}
# rows of an old month, in a partition of their own, then the partition dropped
$node->safe_psql('postgres', q{
	CREATE TABLE llmgw.usage_2020_01 PARTITION OF llmgw.usage
	    FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-02-01 00:00+00');
	INSERT INTO llmgw.usage (request_id, started_at, model, provider, upstream_model, status,
	                         input_tokens, output_tokens, cost, currency, team_id)
	SELECT gen_random_uuid(), '2020-01-15 12:00+00', 'history', 'mock', 'old-model', 'ok', 10, 20,
	       0.5, 'USD', llmgw.team_id('red')
	  FROM generate_series(1, 3)});
my ($with_old) = parse(scrape($port));
is(total($with_old, 'llmgw_calls_total') - total($from_exporter, 'llmgw_calls_total'), 3,
	'three old rows counted');
is($with_old->{'llmgw_cost_total{currency=USD,model=history,team=red}'}, 1.5, 'and their cost');
$node->safe_psql('postgres', 'DROP TABLE llmgw.usage_2020_01');
my ($after_drop) = parse(scrape($port));
is_deeply(differences($after_drop, $with_old, \@from_usage), [],
	'the partition dropped: no counter went back');

# a crash restart: the usage counters stay, those of shared memory start anew
my $life = $with_old->{'llmgw_life_start_time_seconds{}'};
$pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' ORDER BY pid LIMIT 1});
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', qq{
	SELECT (SELECT value > $life FROM llmgw.metric_samples('{llmgw_life_start_time_seconds}'))
	   AND (SELECT value = 2 FROM llmgw.metric_samples('{llmgw_workers_running}'))}),
	'crash restart: a new life, the workers back');
# the exporter connects again
my $again = '';
for (1 .. 50)
{
	$again = scrape($port);
	last if $again =~ /^pg_exporter_last_scrape_error(\{[^}]*\})? 0$/m && $again =~ /^llmgw_queue_size/m;
	usleep(200_000);
}
my ($after_crash) = parse($again);
cmp_ok($after_crash->{'llmgw_life_start_time_seconds{}'}, '>', $life, 'crash restart: a new life');
is(total($after_crash, 'llmgw_refusals_total'), 0, 'crash restart: refusals start from zero');
is(total($after_crash, 'llmgw_worker_restarts_total'), 0, 'crash restart: so do worker restarts');
is_deeply(differences($after_crash, $after_drop,
		[qw(llmgw_calls_total llmgw_tokens_total llmgw_cost_total llmgw_cache_hits_total llmgw_fallbacks_total)]),
	[], 'crash restart: the counters of the usage rows are where they were');

$exp->kill_kill;
$node->stop;
done_testing();
