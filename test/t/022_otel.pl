# OpenTelemetry spans (docs/tracing.md), exported to a collector of our own
# (a second mock, which speaks OTLP/HTTP JSON):
#  - one span per call and one child span per attempt that has a usage row,
#    each checked against its usage rows (ids, models, tokens, cost, team,
#    key prefix, status and error class, times), for plain calls, a retry and
#    a fallback, a failure, an unknown model, an embedding and a cache hit;
#    no prompt, answer, virtual key or provider secret in any span;
#  - batches of at most 512 spans; every span counted once (exported,
#    dropped, failed, queued or in flight) in llmgw.otel_stats(), and in
#    llmgw.metrics();
#  - a collector that never answers, and a port that refuses: calls answer
#    as fast as with export off (same run, relative), and the failed exports
#    are counted;
#  - a tiny llmgw.otel_max_queue drops spans and counts them; a collector
#    that fails or rejects spans; a collector killed mid-export; a new
#    endpoint at reload; a crash restart of the workers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(usleep);
use FindBin;
use lib $FindBin::Bin;
use LlmgwTest;

# One HTTP/1.0 request to a collector; returns the body of its answer
sub http
{
	my ($port, $method, $path, $body) = @_;
	$body //= '';
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
	  or die "cannot reach the collector: $!";
	print $s "$method $path HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: "
	  . length($body) . "\r\n\r\n$body";
	my $answer = do { local $/; <$s> };
	$answer =~ s/^.*?\r\n\r\n//s;
	return $answer;
}

# the collector: a mock of the test's own
my ($cport, $collector) = LlmgwTest::own_mock('collector1', '--threads', '1');
sub received   { return decode_json(http($cport, 'GET', '/stats'))->{otlp}; }
sub directives { http($cport, 'POST', '/otlp/directives', $_[0]); }

# Wait (up to the default timeout) until a condition holds
sub wait_for
{
	my ($cond) = @_;
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if $cond->();
		usleep(100_000);
	}
	return 0;
}

my $node = LlmgwTest::node('otel', 1, conf => qq{
llmgw.otel_endpoint = 'http://127.0.0.1:$cport'
llmgw.otel_timeout = '3s'
});

# What the export did (llmgw.otel_stats()) as a hash
sub stats
{
	my $row = $node->safe_psql('postgres', q{
		SELECT row_to_json(s) FROM llmgw.otel_stats() s});
	return decode_json($row);
}

# Every span produced is in exactly one of these
sub accounted
{
	my $s = shift // stats();
	return $s->{spans_queued} + $s->{spans_exporting} + $s->{spans_exported}
	  + $s->{spans_dropped} + $s->{spans_failed};
}

# Wait until no span waits or is being exported
sub drained
{
	return $node->poll_query_until('postgres', q{
		SELECT spans_queued = 0 AND spans_exporting = 0 FROM llmgw.otel_stats()});
}

# Wait until n spans more than in the stats s0 are all counted, none
# waiting or in flight (a call's spans are built once its caller is
# answered: a little after it returns); returns the stats then
sub settled
{
	my ($s0, $n) = @_;
	my $s;
	wait_for(sub {
		$s = stats();
		accounted($s) - accounted($s0) >= $n && $s->{spans_queued} == 0
		  && $s->{spans_exporting} == 0;
	});
	return $s;
}

# Change settings (ALTER SYSTEM) and reload; wait until the worker exports
# (or not), which tells that it has read them
sub reconfigure
{
	my ($settings, $enabled) = @_;
	$node->safe_psql('postgres', join('', map {
		"ALTER SYSTEM SET $_ = '$settings->{$_}';\n" } sort keys %$settings)
		. 'SELECT pg_reload_conf();');
	return $node->poll_query_until('postgres',
		'SELECT enabled FROM llmgw.otel_stats()', $enabled ? 't' : 'f');
}

$node->safe_psql('postgres', q{
	SELECT llmgw.set_price('mock-model', 1.5, 6);
	SELECT llmgw.set_price('fb-good', 2, 8);
	SELECT llmgw.create_team('otel-team');
	SELECT llmgw.create_model('emb', 'mock', 'mock-embed');
	SELECT llmgw.create_model('fb', 'mock', 'fb-broken;status:503');
	SELECT llmgw.create_model('fb', 'mock', 'fb-good', priority => -1);
	SELECT llmgw.create_model('bad', 'mock', 'bad-model;status:400');
	SELECT llmgw.create_model('paced', 'mock', 'paced-model;delay:100');});
my ($key, $prefix) = split /\|/, $node->safe_psql('postgres', q{
	SELECT api_key, prefix FROM llmgw.create_key('otel-team', 'otel')});
ok(stats()->{enabled}, 'the worker exports (llmgw.otel_endpoint is set)');

# --- spans and their attributes
my $with_key = "SELECT set_config('llmgw.api_key', '$key', false);";
for my $i (1 .. 3)
{
	$node->safe_psql('postgres', "$with_key SELECT llm_complete('MARKER-PROMPT-$i', 'demo')");
}
$node->safe_psql('postgres', "SELECT llm_embed('MARKER-EMBED', 'emb')");
$node->safe_psql('postgres', q{
	SET llmgw.max_retries = 1; SET llmgw.retry_base_delay = 0;
	SELECT llm_complete('MARKER-FALLBACK', 'fb')});
like(LlmgwTest::error_of($node, "SELECT llm_complete('MARKER-BAD', 'bad')"),
	qr/^LG400/, 'a call the provider refuses fails');
like(LlmgwTest::error_of($node, "SELECT llm_complete('MARKER-UNKNOWN', 'no-such-model')"),
	qr/^42704/, 'a call to an unknown model fails');
$node->safe_psql('postgres', q{
	SET llmgw.cache = on;
	SELECT llm_complete('MARKER-CACHED', 'demo');
	SELECT llm_complete('MARKER-CACHED', 'demo')});

# the calls: one per request id of the usage rows, and the unknown model's
my ($ncalls, $nattempts) = split /\|/, $node->safe_psql('postgres', q{
	SELECT count(DISTINCT request_id) + 1, count(*) FILTER (WHERE NOT cache_hit)
	  FROM llmgw.usage});
is($ncalls, 9, 'nine calls, eight with usage rows');
ok($node->poll_query_until('postgres',
		'SELECT spans_exported FROM llmgw.otel_stats()', $ncalls + $nattempts),
	'one span per call and per attempt exported') or diag(explain(stats()));
is(received()->{spans}, $ncalls + $nattempts, 'the collector received them all');

my $spans = decode_json(http($cport, 'GET', '/otlp/spans'))->{spans};
my $raw = http($cport, 'GET', '/otlp/spans');
my %by_trace;
push @{ $by_trace{ $_->{traceId} } }, $_ for @$spans;

# attributes of a span as a hash of plain values
sub attrs
{
	my ($span) = @_;
	my %a;
	for my $kv (@{ $span->{attributes} })
	{
		my $v = $kv->{value};
		$a{ $kv->{key} } =
		    exists $v->{stringValue} ? $v->{stringValue}
		  : exists $v->{intValue}    ? $v->{intValue} + 0
		  : exists $v->{doubleValue} ? $v->{doubleValue}
		  : exists $v->{boolValue}   ? ($v->{boolValue} ? 'true' : 'false')
		  : exists $v->{arrayValue}  ? join(',', map { $_->{stringValue} } @{ $v->{arrayValue}{values} })
		  :                            undef;
	}
	return \%a;
}

# the usage rows, as the spans should tell them
my $rows = decode_json($node->safe_psql('postgres', q{
	SELECT json_agg(u ORDER BY request_id, attempt) FROM (
	  SELECT replace(request_id::text, '-', '') AS trace, request_id::text AS request_id,
	         attempt, model, provider, upstream_model, status, error_class, http_status,
	         input_tokens, output_tokens, cost, currency, cache_hit, team_id,
	         (SELECT prefix FROM llmgw.virtual_keys k WHERE k.id = key_id) AS key_prefix,
	         (extract(epoch FROM started_at) * 1000000)::bigint::text || '000' AS start_nanos
	    FROM llmgw.usage) u}));
my %rows_of;
push @{ $rows_of{ $_->{trace} } }, $_ for @$rows;

my @problems;
sub expect
{
	my ($what, $got, $want) = @_;
	$got  //= '(none)';
	$want //= '(none)';
	push @problems, "$what: $got, expected $want" if "$got" ne "$want";
}
sub before_or_same { my ($a, $b) = @_; return length($a) < length($b) || (length($a) == length($b) && $a le $b); }

for my $trace (sort keys %rows_of)
{
	my @rows = @{ $rows_of{$trace} };
	my @spans = @{ $by_trace{$trace} // [] };
	my @roots = grep { !exists $_->{parentSpanId} } @spans;
	my @children = sort { attrs($a)->{'llmgw.attempt'} <=> attrs($b)->{'llmgw.attempt'} }
	  grep { exists $_->{parentSpanId} } @spans;
	my @attempt_rows = grep { !$_->{cache_hit} } @rows;
	my $model = $rows[0]{model};
	expect("$model: call spans", scalar @roots, 1);
	expect("$model: attempt spans", scalar @children, scalar @attempt_rows);
	next unless @roots == 1;
	my $root = $roots[0];
	my $ra = attrs($root);
	my $last = $rows[-1];
	my $op = $model eq 'emb' ? 'embeddings' : 'chat';
	expect("$model: call span name", $root->{name}, "$op $model");
	expect("$model: call span kind", $root->{kind}, 1);
	expect("$model: llmgw.request_id", $ra->{'llmgw.request_id'}, $last->{request_id});
	expect("$model: gen_ai.operation.name", $ra->{'gen_ai.operation.name'}, $op);
	expect("$model: gen_ai.request.model", $ra->{'gen_ai.request.model'}, $model);
	expect("$model: llmgw.cache_hit", $ra->{'llmgw.cache_hit'}, $last->{cache_hit} ? 'true' : 'false');
	expect("$model: llmgw.team_id", $ra->{'llmgw.team_id'}, $last->{team_id});
	expect("$model: llmgw.key_prefix", $ra->{'llmgw.key_prefix'}, $last->{key_prefix});
	expect("$model: llmgw.status", $ra->{'llmgw.status'}, $last->{status});
	expect("$model: error.type", $ra->{'error.type'},
		$last->{status} eq 'ok' ? undef : $last->{error_class});
	expect("$model: status code", $root->{status}{code}, $last->{status} eq 'ok' ? undef : 2);
	my ($in, $out, $cost, $any_in, $any_out, $any_cost) = (0, 0, 0, 0, 0, 0);
	for (@attempt_rows)
	{
		$in += $_->{input_tokens} // 0;   $any_in ||= defined $_->{input_tokens};
		$out += $_->{output_tokens} // 0; $any_out ||= defined $_->{output_tokens};
	}
	for (@rows) { $cost += $_->{cost} // 0; $any_cost ||= defined $_->{cost}; }
	expect("$model: gen_ai.usage.input_tokens", $ra->{'gen_ai.usage.input_tokens'}, $any_in ? $in : undef);
	expect("$model: gen_ai.usage.output_tokens", $ra->{'gen_ai.usage.output_tokens'}, $any_out ? $out : undef);
	if ($any_cost)
	{
		my $got = $ra->{'llmgw.cost'} // -1;
		push @problems, "$model: llmgw.cost $got, expected $cost"
		  if abs($got - $cost) > 1e-9 * ($cost || 1);
		expect("$model: llmgw.currency", $ra->{'llmgw.currency'}, $last->{currency});
	}
	else
	{
		expect("$model: llmgw.cost", $ra->{'llmgw.cost'}, undef);
	}
	if (@attempt_rows)
	{
		expect("$model: gen_ai.system", $ra->{'gen_ai.system'}, 'openai');
		expect("$model: llmgw.attempt", $ra->{'llmgw.attempt'}, $attempt_rows[-1]{attempt});
		expect("$model: gen_ai.response.model", $ra->{'gen_ai.response.model'},
			$last->{status} eq 'ok' ? $attempt_rows[-1]{upstream_model} : undef);
	}
	push @problems, "$model: the call span ends before it starts"
	  unless before_or_same($root->{startTimeUnixNano}, $root->{endTimeUnixNano});
	for my $i (0 .. $#children)
	{
		my ($span, $row) = ($children[$i], $attempt_rows[$i]);
		last unless $row;
		my $a = attrs($span);
		my $what = "$model attempt $row->{attempt}";
		expect("$what: parent", $span->{parentSpanId}, $root->{spanId});
		expect("$what: kind", $span->{kind}, 3);
		expect("$what: name", $span->{name}, "$op $row->{upstream_model}");
		expect("$what: llmgw.attempt", $a->{'llmgw.attempt'}, $row->{attempt});
		expect("$what: gen_ai.request.model", $a->{'gen_ai.request.model'}, $row->{upstream_model});
		expect("$what: gen_ai.system", $a->{'gen_ai.system'}, 'openai');
		expect("$what: llmgw.deployment", $a->{'llmgw.deployment'}, "$row->{provider}/$row->{upstream_model}");
		expect("$what: llmgw.status", $a->{'llmgw.status'}, $row->{status});
		expect("$what: error.type", $a->{'error.type'}, $row->{status} eq 'ok' ? undef : $row->{error_class});
		expect("$what: http.response.status_code", $a->{'http.response.status_code'}, $row->{http_status});
		expect("$what: input tokens", $a->{'gen_ai.usage.input_tokens'}, $row->{input_tokens});
		expect("$what: output tokens", $a->{'gen_ai.usage.output_tokens'}, $row->{output_tokens});
		expect("$what: llmgw.request_id", $a->{'llmgw.request_id'}, $row->{request_id});
		expect("$what: start", $span->{startTimeUnixNano}, $row->{start_nanos});
		push @problems, "$what: outside its call span"
		  unless before_or_same($root->{startTimeUnixNano}, $span->{startTimeUnixNano})
		  && before_or_same($span->{endTimeUnixNano}, $root->{endTimeUnixNano});
	}
}
is(join("\n", @problems), '', 'every span says what its usage rows say');

my @fb = @{ $rows_of{ (grep { $rows_of{$_}[0]{model} eq 'fb' } keys %rows_of)[0] } };
is(join(' ', map { "$_->{attempt}:$_->{upstream_model}:$_->{status}" } @fb),
	'1:fb-broken;status:503:error 2:fb-broken;status:503:error 3:fb-good:ok',
	'the fallback call: a retry, then the fallback (three attempt spans)');
my ($unknown) = grep { !exists $_->{parentSpanId} && attrs($_)->{'gen_ai.request.model'} eq 'no-such-model' } @$spans;
ok($unknown && !$by_trace{ $unknown->{traceId} }[1]
	  && attrs($unknown)->{'error.type'} eq 'unknown_model',
	'the unknown model: a call span alone, error.type unknown_model');
my @finish = map { attrs($_)->{'gen_ai.response.finish_reasons'} // '' }
  grep { (attrs($_)->{'gen_ai.request.model'} // '') eq 'mock-model' } @$spans;
ok(@finish && !grep({ $_ ne 'stop' } @finish), 'finish reasons of the answered attempts: stop');

unlike($raw, qr/MARKER/, 'no prompt and no answer in any span');
unlike($raw, qr/\Q$key\E/, 'no virtual key in any span');
unlike($raw, qr/\Q$ENV{LLMGW_TEST_KEY}\E/, 'no provider secret in any span');
like($raw, qr/\Q$prefix\E/, 'the key prefix is there');
my $last = decode_json(http($cport, 'GET', '/otlp/last'));
my %resource = map { $_->{key} => ($_->{value}{stringValue} // $_->{value}{intValue}) }
  @{ $last->{resourceSpans}[0]{resource}{attributes} };
is($resource{'service.name'}, 'llmgw', 'resource: service.name');
is($last->{resourceSpans}[0]{scopeSpans}[0]{scope}{name}, 'llmgw', 'scope: llmgw');
my $s = stats();
is(accounted($s), $ncalls + $nattempts, 'every span counted once');
is($s->{spans_dropped} + $s->{spans_failed} + $s->{export_failures}, 0, 'nothing dropped or failed');
is($s->{exports}, received()->{accepted}, 'every export accepted by the collector');

# --- a burst: batches of at most 512 spans
my $before = received();
$node->safe_psql('postgres', q{
	SELECT count(*) FROM llm_complete_many(array(SELECT 'burst ' || i FROM generate_series(1, 300) i),
	                                       'demo', concurrency => 300)});
ok($node->poll_query_until('postgres',
		'SELECT spans_exported FROM llmgw.otel_stats()', $s->{spans_exported} + 600),
	'a burst of 300 calls: 600 spans exported');
my $after = received();
is($after->{spans} - $before->{spans}, 600, 'the collector received 600 spans');
cmp_ok($after->{accepted} - $before->{accepted}, '>=', 2, 'in two exports or more (512 spans at most each)');
# the last export holds what was left after whole batches
my $last_batch = 0;
$last_batch += scalar @{ $_->{spans} } for @{ decode_json(http($cport, 'GET', '/otlp/last'))->{resourceSpans}[0]{scopeSpans} };
cmp_ok($last_batch, '<=', 512, 'an export holds at most 512 spans');

# --- a collector that never answers, a port that refuses: calls unaffected
$node->safe_psql('postgres', q{
	-- n calls of the paced model (100 ms each) one after the other: answered, ms in all, slowest
	CREATE FUNCTION paced_calls(n int, OUT ok int, OUT total_ms float8, OUT max_ms float8)
	LANGUAGE plpgsql AS $$
	DECLARE
		t0 timestamptz;
		t1 timestamptz := clock_timestamp();
	BEGIN
		ok := 0; max_ms := 0;
		FOR i IN 1 .. n LOOP
			t0 := clock_timestamp();
			IF llm_complete('paced ' || i, 'paced') IS NOT NULL THEN ok := ok + 1; END IF;
			max_ms := greatest(max_ms, extract(epoch FROM clock_timestamp() - t0) * 1000);
		END LOOP;
		total_ms := extract(epoch FROM clock_timestamp() - t1) * 1000;
	END
	$$;});
my $n = 20;
sub paced
{
	my ($ok, $total, $max) = split /\|/, $node->safe_psql('postgres', "SELECT * FROM paced_calls($n)");
	return ($ok, $total, $max);
}

ok(reconfigure({ 'llmgw.otel_endpoint' => '' }, 0), 'export off');
my ($base_ok, $base_total, $base_max) = paced();
is($base_ok, $n, 'baseline: every call answered');

directives('stall');
my $f0 = stats()->{export_failures};
my $r0 = received()->{requests};
ok(reconfigure({ 'llmgw.otel_endpoint' => "http://127.0.0.1:$cport" }, 1), 'export on, to a collector that never answers');
my ($stall_ok, $stall_total, $stall_max) = paced();
my $stall_requests = received()->{requests} - $r0;
is($stall_ok, $n, 'stalled collector: every call answered');
cmp_ok($stall_requests, '>=', 1, 'the collector was sent an export during the calls (and never answered it)');
ok($node->poll_query_until('postgres', "SELECT export_failures > $f0 FROM llmgw.otel_stats()"),
	'the stalled export ended as a failure, after llmgw.otel_timeout');
ok(drained(), 'and nothing waits');

my $dead = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0);
my $dead_port = $dead->sockport;
close $dead;
$f0 = stats()->{export_failures};
$node->safe_psql('postgres', "ALTER SYSTEM SET llmgw.otel_endpoint = 'http://127.0.0.1:$dead_port'; SELECT pg_reload_conf();");
my ($refused_ok, $refused_total, $refused_max) = paced();
is($refused_ok, $n, 'refusing port: every call answered');
ok($node->poll_query_until('postgres', "SELECT export_failures > $f0 FROM llmgw.otel_stats()"),
	'exports to a port that refuses fail, and are counted');
note(sprintf('figures: %d calls of 100 ms one after the other: export off %.0f ms (slowest %.0f), '
		. 'collector stalled %.0f ms (slowest %.0f, %.2fx), port refusing %.0f ms (slowest %.0f, %.2fx)',
		$n, $base_total, $base_max, $stall_total, $stall_max, $stall_total / $base_total,
		$refused_total, $refused_max, $refused_total / $base_total));
cmp_ok($stall_total, '<', 1.5 * $base_total, 'a stalled collector does not slow the calls down (relative to export off)');
cmp_ok($refused_total, '<', 1.5 * $base_total, 'nor does a port that refuses');
cmp_ok($stall_max, '<', 5 * $base_max, 'no single call waits for the stalled export');

# --- a tiny queue: spans beyond it are dropped and counted
directives('stall');
ok(drained(), 'nothing waits before the tiny queue');
ok(reconfigure({ 'llmgw.otel_endpoint' => '', 'llmgw.otel_max_queue' => 4 }, 0), 'llmgw.otel_max_queue = 4 read');
ok(reconfigure({ 'llmgw.otel_endpoint' => "http://127.0.0.1:$cport" }, 1), 'export on again');
my $s0 = stats();
$node->safe_psql('postgres', "SELECT llm_complete('tiny ' || i, 'demo') FROM generate_series(1, 10) i");
my $s1;
wait_for(sub { $s1 = stats(); accounted($s1) - accounted($s0) >= 20 });
my $dropped = $s1->{spans_dropped} - $s0->{spans_dropped};
my $exports = $s1->{exports} - $s0->{exports};
is(accounted($s1) - accounted($s0), 20, 'ten calls: twenty spans, each counted once');
cmp_ok($dropped, '>=', 20 - 4 - 4 * $exports,
	"at most 4 spans queued and 4 per export ($exports started): $dropped dropped");
cmp_ok($dropped, '>', 0, 'spans were dropped');
directives('');
my $s2 = settled($s0, 20);
ok($s2->{spans_queued} == 0 && $s2->{spans_exporting} == 0, 'the queue drains once the collector answers');
is(($s2->{spans_exported} - $s0->{spans_exported}) + ($s2->{spans_dropped} - $s0->{spans_dropped})
	  + ($s2->{spans_failed} - $s0->{spans_failed}), 20,
	'exported + dropped + failed = the twenty spans');
# the same counts are Prometheus counters in llmgw.metrics()
my $exposition = $node->safe_psql('postgres', 'SELECT llmgw.metrics()');
my %counter = map { /^llmgw_otel_spans_(\w+)_total (\S+)$/ ? ($1 => $2) : () } split /\n/, $exposition;
my $s3 = stats();
is(join(' ', map { $counter{$_} // 'none' } qw(exported dropped failed)),
	join(' ', map { $s3->{"spans_$_"} } qw(exported dropped failed)),
	'llmgw.metrics(): llmgw_otel_spans_{exported,dropped,failed}_total are the counts of llmgw.otel_stats()');
like($exposition, qr/^# TYPE llmgw_otel_spans_dropped_total counter$/m, 'dropped spans are a counter');
ok(reconfigure({ 'llmgw.otel_endpoint' => '', 'llmgw.otel_max_queue' => 2048 }, 0), 'the default queue again');
ok(reconfigure({ 'llmgw.otel_endpoint' => "http://127.0.0.1:$cport" }, 1), 'export on again');

# --- a collector that fails, one that rejects part of an export
directives('status:500');
$s0 = stats();
$node->safe_psql('postgres', "SELECT llm_complete('failing collector', 'demo')");
$s1 = settled($s0, 2);
is($s1->{spans_failed} - $s0->{spans_failed}, 2, 'its spans count as failed');
cmp_ok($s1->{export_failures} - $s0->{export_failures}, '>=', 1, 'and the export as a failure');
directives('reject:1');
$node->safe_psql('postgres', "SELECT llm_complete('rejecting collector', 'demo')");
$s2 = settled($s1, 2);
is($s2->{spans_failed} - $s1->{spans_failed}, 1, 'the rejected span counts as failed (partialSuccess)');
is($s2->{spans_exported} - $s1->{spans_exported}, 1, 'the other as exported');
is($s2->{export_failures}, $s1->{export_failures}, 'the export itself succeeded');

# --- the collector dies mid-export; a new one at reload
directives('stall');
$s0 = stats();
$node->safe_psql('postgres', "SELECT llm_complete('collector dies', 'demo')");
ok($node->poll_query_until('postgres', 'SELECT spans_exporting > 0 FROM llmgw.otel_stats()'),
	'an export hangs on the collector');
LlmgwTest::stop_mock($collector, 'KILL');
ok($node->poll_query_until('postgres', "SELECT export_failures > $s0->{export_failures} FROM llmgw.otel_stats()"),
	'the collector killed mid-export: a failed export');
is($node->safe_psql('postgres', "SELECT llm_complete('no collector', 'demo') IS NOT NULL"), 't',
	'calls go on without a collector');
($cport, $collector) = LlmgwTest::own_mock('collector2', '--threads', '1');
ok(reconfigure({ 'llmgw.otel_endpoint' => '' }, 0), 'export off');
ok(reconfigure({ 'llmgw.otel_endpoint' => "http://127.0.0.1:$cport/" }, 1),
	'export on, to a new collector (the endpoint with a trailing /)');
$node->safe_psql('postgres', "SELECT llm_complete('new collector ' || i, 'demo') FROM generate_series(1, 3) i");
ok(wait_for(sub { received()->{spans} >= 6 }),
	'the new collector receives the spans');

# --- a crash restart: a new life, new counters, export goes on
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' LIMIT 1});
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', 'SELECT workers_running = 1 FROM llmgw.stats()'),
	'the workers are back after kill -9 of one');
my $after_crash = stats();
ok($after_crash->{enabled} && $after_crash->{spans_exported} == 0,
	'the new server life exports, its counters from zero');
my $got = received()->{spans};
$node->safe_psql('postgres', "SELECT llm_complete('after the crash', 'demo')");
ok($node->poll_query_until('postgres', 'SELECT spans_exported FROM llmgw.otel_stats()', 2),
	'spans exported after the crash restart');
is(received()->{spans} - $got, 2, 'the collector received them');

$node->stop;
LlmgwTest::stop_mock($collector, 'TERM');
done_testing();
