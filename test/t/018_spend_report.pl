# llmgw.spend_report() in a browser (docs/spend_report.md).  A known spend
# history (three teams, their keys, three models, four days, errors, a real
# fallback and a model whose alias is a <script> tag, called through the
# mock), the page rendered by headless Chromium (Debian's chromium): it
# loads without a single console message (it has no script, and its
# Content-Security-Policy would report anything it tried to fetch), its
# charts are there with their bars, every number it shows is the rows', the
# hostile names stay text, and a screenshot of it is not blank.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Compress::Zlib;
use Cwd qw(abs_path);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LlmgwTest;
use LlmgwHttp;

my ($chromium) = grep { -x $_ } ('/usr/bin/chromium', '/usr/bin/chromium-browser');
plan skip_all =>
  'chromium is not installed: Debian\'s package chromium could not be installed (test/scripts/test.sh installs it)'
  unless $chromium;

my $dir = abs_path(PostgreSQL::Test::Utils::tempdir);
# the front door serves the page at /spend to keys with scope finance
my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = LlmgwTest::node('spend', 1, conf => "llmgw.http_listen = '127.0.0.1:$port'\n");

# --- the history -------------------------------------------------------------

my $hostile_model = '<script>alert(1)</script>';
my $hostile_key = q{"><svg onload=alert(2)> & 'quotes'};
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_team(t) FROM unnest(ARRAY['alpha', 'beta', 'gamma']) t;
	SELECT llmgw.create_key('alpha', 'alpha app');
	SELECT llmgw.create_key('beta', \$k\$$hostile_key\$k\$);
	SELECT llmgw.create_key('gamma', 'gamma batch');
	SELECT llmgw.set_price('mock-model', 1, 2, max_output_tokens => 1000);
	SELECT llmgw.create_model(\$m\$$hostile_model\$m\$, 'mock', 'mock-model');
	SELECT llmgw.create_model('falls', 'mock', 'falls;status:500', priority => 1,
	                          price_model => 'mock-model');
	SELECT llmgw.create_model('falls', 'mock', 'mock-model', priority => 0);
	SELECT llmgw.create_budget('alpha monthly', 'team', 'alpha', 'month', 5);
	SELECT llmgw.create_budget('beta over', 'team', 'beta', 'total', 1);
	SELECT llmgw.create_budget('gamma total', 'team', 'gamma', 'total', 100, 'soft');
	SELECT llmgw.create_budget('everyone daily', 'global', NULL, 'day', 50, 'soft');
});

# calls through the product: the hostile alias with beta's key, and a call
# whose first deployment answers 500 and falls back
my ($beta_key_id, $beta_key) = split /\|/, $node->safe_psql('postgres',
	q{SELECT key_id, api_key FROM llmgw.create_key('beta', 'beta caller')});
$node->safe_psql('postgres',
	"SELECT llmgw.create_budget('beta caller weekly', 'key', '$beta_key_id', 'week', 1)");
$node->safe_psql('postgres', qq{
	SET llmgw.max_retries = 0;
	SELECT set_config('llmgw.api_key', '$beta_key', false);
	SELECT llm_complete('hello', \$m\$$hostile_model\$m\$);
	SELECT llm_complete('hello', 'falls');
});
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM llmgw.usage WHERE model = 'falls' AND fallback_from IS NOT NULL}),
	'1', 'a real fallback was recorded');

# spend of the last three days, written as the workers write it: per day,
# team and model a number of calls of a known cost; errors; fallbacks
$node->safe_psql('postgres', q{
	INSERT INTO llmgw.usage (request_id, started_at, role_name, key_id, team_id, model, provider,
	                         upstream_model, status, error_class, input_tokens, output_tokens,
	                         cost, currency, fallback_from)
	SELECT gen_random_uuid(),
	       date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
	         - make_interval(days => h.ago) + make_interval(mins => n),
	       'app', k.id, t.id, h.model, 'mock', 'mock-model',
	       CASE WHEN n <= h.errors THEN 'error' ELSE 'ok' END,
	       CASE WHEN n <= h.errors THEN 'server' END,
	       CASE WHEN n > h.errors THEN 1000 END, CASE WHEN n > h.errors THEN 100 END,
	       CASE WHEN n > h.errors THEN h.cost END, CASE WHEN n > h.errors THEN 'USD' END,
	       CASE WHEN n > h.errors AND n <= h.errors + h.fallbacks THEN 'mock/elsewhere' END
	  FROM (VALUES ('alpha', 'fast', 3, 10, 0.0125, 0, 0), ('alpha', 'smart', 3, 2, 0.5, 1, 1),
	               ('alpha', 'fast', 2, 20, 0.0125, 2, 0), ('beta', 'smart', 2, 4, 0.5, 0, 2),
	               ('beta', 'fast', 1, 30, 0.0125, 3, 1), ('gamma', 'embed', 1, 100, 0.0002, 0, 0),
	               ('gamma', 'smart', 3, 1, 0.5, 0, 0))
	       AS h(team, model, ago, calls, cost, errors, fallbacks)
	  JOIN llmgw.teams t ON t.name = h.team
	  JOIN llmgw.keys k ON k.team = h.team AND k.name NOT LIKE '%caller'
	  CROSS JOIN generate_series(1, h.calls) AS n;
});

# --- the page and what the rows say, in one transaction (one now()) ---------

my $range = q{date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '3 days', now()};
my $cond = q{d.day >= (now() AT TIME ZONE 'UTC')::date - 3};
my $expected = $node->safe_psql('postgres', qq{
	BEGIN;
	\\o $dir/report.html
	SELECT llmgw.spend_report($range);
	\\o
	SELECT json_build_object(
	  'kpi', json_build_object(
	     'spend', (SELECT sum(cost) FROM llmgw.usage_daily d WHERE $cond AND currency = 'USD'),
	     'calls', (SELECT sum(calls) FROM llmgw.usage_daily d WHERE $cond),
	     'errors', (SELECT sum(errors) FROM llmgw.usage_daily d WHERE $cond),
	     'fallbacks', (SELECT count(*) FROM llmgw.usage u WHERE u.fallback_from IS NOT NULL
	                     AND u.started_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - interval '3 days'),
	     'unpriced', (SELECT sum(unpriced) FROM llmgw.usage_daily d WHERE $cond)),
	  'bars', (SELECT json_object_agg(x.day || ' ' || x.team, x.cost) FROM
	            (SELECT d.day, t.name AS team, sum(d.cost) AS cost FROM llmgw.usage_daily d
	               JOIN llmgw.teams t ON t.id = d.team_id WHERE $cond AND d.currency = 'USD'
	              GROUP BY 1, 2 HAVING sum(d.cost) > 0) x),
	  'keys', (SELECT json_object_agg(k.prefix, x.cost) FROM
	            (SELECT d.key_id, coalesce(sum(d.cost) FILTER (WHERE d.currency = 'USD'), 0) AS cost
	               FROM llmgw.usage_daily d WHERE $cond GROUP BY 1) x JOIN llmgw.keys k ON k.id = x.key_id),
	  'models', (SELECT json_object_agg(x.model, json_build_array(x.calls, x.cost)) FROM
	            (SELECT d.model, sum(d.calls) AS calls,
	                    coalesce(sum(d.cost) FILTER (WHERE d.currency = 'USD'), 0) AS cost
	               FROM llmgw.usage_daily d WHERE $cond GROUP BY 1) x),
	  'days', (SELECT json_object_agg(x.day, json_build_array(x.calls, x.errors, coalesce(f.n, 0))) FROM
	            (SELECT d.day, sum(d.calls) AS calls, sum(d.errors) AS errors
	               FROM llmgw.usage_daily d WHERE $cond GROUP BY 1) x
	            LEFT JOIN (SELECT (u.started_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
	                         FROM llmgw.usage u WHERE u.fallback_from IS NOT NULL GROUP BY 1) f
	              ON f.day = x.day),
	  'budgets', (SELECT json_object_agg(s.name, json_build_array(s.spent, s.limit_amount,
	                CASE WHEN s.period <> 'total' THEN round(s.spent * extract(epoch FROM s.resets_at - s.period_start)
	                     / greatest(extract(epoch FROM now() - s.period_start), 1), 6) END))
	              FROM llmgw.budget_status s));
	COMMIT;
});
my $want = decode_json($expected);
ok(-s "$dir/report.html" > 10000, 'the report was written');

# --- Chromium ------------------------------------------------------------------

# Run headless Chromium on the page; returns (exit code, stdout, stderr)
sub chromium
{
	my (@args) = @_;
	my $profile = abs_path(PostgreSQL::Test::Utils::tempdir);
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[ $chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
		  '--no-first-run', '--disable-background-networking', '--disable-component-update',
		  '--disable-sync', "--user-data-dir=$profile", '--enable-logging=stderr', '--v=0',
		  @args, "file://$dir/report.html" ],
		'<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$h->finish;
	return ($h->result(0), $out, $err);
}

my ($rc, $dom, $log) = chromium('--dump-dom');
is($rc, 0, 'chromium loaded the page');
my @console = grep { /:CONSOLE|Uncaught/ } split /\n/, $log;
is(scalar(@console), 0, 'no console message: nothing ran, nothing was fetched')
  or diag(join("\n", @console));
like($dom, qr/<html/, 'the DOM was dumped');

# the markup as the browser parsed it: no script element, no element that
# loads anything; the hostile names are text
unlike($dom, qr/<script/i, 'no script element in the DOM');
unlike($dom, qr/<(img|iframe|object|embed|link|a|use|image|foreignObject)[\s>]/i,
	'no element that loads or links');
unlike($dom, qr/<[^>]*\son[a-z]+\s*=/i, 'no event handler attribute');
like($dom, qr/&lt;script&gt;alert\(1\)&lt;\/script&gt;/, 'the <script> model alias is text');
like($dom, qr/"&gt;&lt;svg onload=alert\(2\)&gt; &amp; 'quotes'/, 'the hostile key name is text');

# attribute values as the DOM has them
sub unescape
{
	my ($s) = @_;
	$s =~ s/&lt;/</g;
	$s =~ s/&gt;/>/g;
	$s =~ s/&quot;/"/g;
	$s =~ s/&#39;/'/g;
	$s =~ s/&amp;/&/g;
	return $s;
}

# Compare two hashes of numbers (numerically)
sub same_numbers
{
	my ($got, $exp, $name) = @_;
	my @problems;
	for my $k (sort keys %$exp)
	{
		push @problems, "$k: page " . ($got->{$k} // 'missing') . ", rows $exp->{$k}"
		  unless defined $got->{$k} && abs($got->{$k} - $exp->{$k}) < 1e-9;
	}
	for my $k (sort keys %$got)
	{
		push @problems, "$k: on the page only" unless exists $exp->{$k};
	}
	is(scalar(@problems), 0, $name) or diag(join("\n", @problems));
}

# KPIs
for my $k (qw(spend calls errors fallbacks unpriced))
{
	my ($v) = $dom =~ /id="kpi-$k" data-value="([^"]*)"/;
	ok(defined $v && abs($v - ($want->{kpi}{$k} // 0)) < 1e-9,
		"KPI $k: " . ($v // 'missing') . ' = ' . ($want->{kpi}{$k} // 0));
}

# the stacked chart: one bar per day and team with spend, its cost the rows'
my ($daily) = $dom =~ m{(<svg[^>]*id="daily-chart".*?</svg>)}s;
ok($daily, 'the daily chart is there');
my %bars;
while ($daily =~ /<rect [^>]*data-day="([^"]*)" data-series="([^"]*)" data-cost="([^"]*)"/g)
{
	$bars{"$1 " . unescape($2)} += $3;
}
cmp_ok(scalar(keys %bars), '>=', 6, 'the daily chart has its bars');
same_numbers(\%bars, $want->{bars}, 'each bar is the spend of its day and team');

# the tables with bars: top keys and models
my %keys;
$keys{ unescape($1) } = $2 while $dom =~ /<tr data-key="([^"]*)" data-calls="[^"]*" data-cost="([^"]*)"/g;
delete $keys{''};    # calls without a key
same_numbers(\%keys, $want->{keys}, 'top keys: the spend of each key');
my %models;
my %model_calls;
while ($dom =~ /<tr data-model="([^"]*)" data-calls="([^"]*)" data-cost="([^"]*)"/g)
{
	$models{ unescape($1) } = $3;
	$model_calls{ unescape($1) } = $2;
}
same_numbers(\%models, { map { $_ => $want->{models}{$_}[1] } keys %{ $want->{models} } },
	'top models: the spend of each model');
same_numbers(\%model_calls, { map { $_ => $want->{models}{$_}[0] } keys %{ $want->{models} } },
	'top models: the calls of each model');
ok(exists $models{$hostile_model}, 'the <script> model is a row of its own');
my ($keys_table) = $dom =~ m{(<table id="top-keys">.*?</table>)}s;
my ($models_table) = $dom =~ m{(<table id="top-models">.*?</table>)}s;
like($keys_table, qr/<svg class="bar"[^>]*><rect width="160(\.0)?"/, 'the largest key has the full bar');
like($models_table, qr/<svg class="bar"[^>]*><rect width="120(\.0)?"/, 'the largest model has the full bar');

# budgets: spent, limit and forecast of each
my (%spent, %limit, %forecast);
while ($dom =~ /<div class="budget (\w+)" data-budget="([^"]*)" data-spent="([^"]*)" data-limit="([^"]*)" data-forecast="([^"]*)"/g)
{
	my $name = unescape($2);
	$spent{$name} = $3;
	$limit{$name} = $4;
	$forecast{$name} = $5 eq '' ? undef : $5;
}
same_numbers(\%spent, { map { $_ => $want->{budgets}{$_}[0] } keys %{ $want->{budgets} } },
	'budgets: spent in the current period');
same_numbers(\%limit, { map { $_ => $want->{budgets}{$_}[1] } keys %{ $want->{budgets} } },
	'budgets: limits');
for my $b (sort keys %{ $want->{budgets} })
{
	my $f = $want->{budgets}{$b}[2];
	if (defined $f)
	{
		ok(defined $forecast{$b} && abs($forecast{$b} - $f) < 1e-6, "budget $b: forecast at its reset $f");
	}
	else
	{
		ok(!defined $forecast{$b}, "budget $b: no forecast (total)");
	}
}
like($dom, qr/<div class="budget over" data-budget="beta over"/, 'a budget over its limit says so');
my @burn = $dom =~ /<svg class="burn"/g;
is(scalar(@burn), 5, 'a burn-down per budget');
my @forecast_lines = $dom =~ /<line class="forecast"/g;
is(scalar(@forecast_lines), 3, 'a forecast line per budget that resets');

# errors and fallbacks per day, in the chart and the table
my ($errors) = $dom =~ m{(<svg[^>]*id="errors-chart".*?</svg>)}s;
ok($errors && $errors =~ /class="error-bar"/ && $errors =~ /class="fallback-bar"/,
	'the error chart has error and fallback bars');
my (%days, %error_bars, %fallback_bars);
$days{$1} = "$2 $3 $4"
  while $dom =~ /<tr data-day="([^"]*)" data-calls="([^"]*)" data-errors="([^"]*)" data-fallbacks="([^"]*)"/g;
delete $days{$_} for grep { $days{$_} eq '0 0 0' } keys %days;
is_deeply(\%days, { map { $_ => join(' ', @{ $want->{days}{$_} }) } keys %{ $want->{days} } },
	'every day in figures: calls, errors, fallbacks');
$error_bars{$1} = "$2 $3" while $errors =~ /data-day="([^"]*)" data-errors="([^"]*)" data-calls="([^"]*)"/g;
is_deeply(\%error_bars,
	{ map { $_ => "$want->{days}{$_}[1] $want->{days}{$_}[0]" } grep { $want->{days}{$_}[1] > 0 } keys %{ $want->{days} } },
	'an error bar per day with errors');
$fallback_bars{$1} = $2 while $errors =~ /data-day="([^"]*)" data-fallbacks="([^"]*)"/g;
is_deeply(\%fallback_bars,
	{ map { $_ => $want->{days}{$_}[2] } grep { $want->{days}{$_}[2] > 0 } keys %{ $want->{days} } },
	'a fallback bar per day with fallbacks');

# --- a screenshot that is not blank ------------------------------------------

($rc, undef, $log) = chromium('--screenshot=' . "$dir/report.png", '--window-size=1200,1600',
	'--hide-scrollbars');
is($rc, 0, 'chromium took a screenshot');
my ($colours, $top_share, $w, $h) = png_colours("$dir/report.png");
is("$w x $h", '1200 x 1600', 'the screenshot is 1200 x 1600');
cmp_ok($colours, '>', 50, "the screenshot has many colours ($colours)");
cmp_ok($top_share, '<', 0.9, sprintf('no colour covers 90%% of it (the most common: %.1f%%)', 100 * $top_share));

# Distinct colours of a PNG and the share of the most common one (8-bit RGB
# or RGBA, not interlaced: what Chromium writes); returns (colours, share,
# width, height)
sub png_colours
{
	my ($file) = @_;
	my $data = slurp_file($file);
	substr($data, 0, 8) eq "\x89PNG\r\n\x1a\n" or die "$file is not a PNG";
	my ($pos, $idat, $width, $height, $depth, $ctype, $interlace) = (8, '');
	while ($pos < length $data)
	{
		my ($len, $type) = unpack('N a4', substr($data, $pos, 8));
		my $body = substr($data, $pos + 8, $len);
		$pos += 12 + $len;
		($width, $height, $depth, $ctype, undef, undef, $interlace) = unpack('N N C C C C C', $body)
		  if $type eq 'IHDR';
		$idat .= $body if $type eq 'IDAT';
		last if $type eq 'IEND';
	}
	die "unsupported PNG (depth $depth, colour type $ctype, interlace $interlace)"
	  unless $depth == 8 && ($ctype == 2 || $ctype == 6) && !$interlace;
	my $bpp = $ctype == 6 ? 4 : 3;
	my $raw = uncompress($idat) // die "$file: bad zlib data";
	my $stride = $width * $bpp;
	my @prev = (0) x $stride;
	my %count;
	for my $y (0 .. $height - 1)
	{
		my $off = $y * ($stride + 1);
		my $filter = ord(substr($raw, $off, 1));
		my @cur = unpack('C*', substr($raw, $off + 1, $stride));
		for my $i (0 .. $stride - 1)
		{
			my $a = $i >= $bpp ? $cur[ $i - $bpp ] : 0;
			my $b = $prev[$i];
			my $c = $i >= $bpp ? $prev[ $i - $bpp ] : 0;
			if ($filter == 1) { $cur[$i] = ($cur[$i] + $a) & 255; }
			elsif ($filter == 2) { $cur[$i] = ($cur[$i] + $b) & 255; }
			elsif ($filter == 3) { $cur[$i] = ($cur[$i] + (($a + $b) >> 1)) & 255; }
			elsif ($filter == 4)
			{
				my $p = $a + $b - $c;
				my ($pa, $pb, $pc) = (abs($p - $a), abs($p - $b), abs($p - $c));
				$cur[$i] = ($cur[$i] + (($pa <= $pb && $pa <= $pc) ? $a : ($pb <= $pc ? $b : $c))) & 255;
			}
		}
		for (my $i = 0; $i < $stride; $i += $bpp)
		{
			$count{ ($cur[$i] << 16) | ($cur[ $i + 1 ] << 8) | $cur[ $i + 2 ] }++;
		}
		@prev = @cur;
	}
	my ($top) = sort { $count{$b} <=> $count{$a} } keys %count;
	return (scalar(keys %count), $count{$top} / ($width * $height), $width, $height);
}

# --- served by the front door -----------------------------------------------

my ($finance_id, $finance_key) = split /\|/, $node->safe_psql('postgres',
	q{SELECT key_id, api_key FROM llmgw.create_key('gamma', 'gamma finance')});
$node->safe_psql('postgres', "SELECT llmgw.set_key_scopes($finance_id, '{finance}')");
my $other_key = $node->safe_psql('postgres', q{SELECT api_key FROM llmgw.create_key('gamma', 'no scope')});
sub spend
{
	my ($key, $query) = @_;
	my $r;
	# the workers see the new keys once they have reloaded
	for (1 .. 50)
	{
		$r = LlmgwHttp::send_raw($port, LlmgwHttp::request_bytes(method => 'GET',
				path => "/spend$query", headers => [ [ 'Authorization', "Bearer $key" ] ]), timeout => 30);
		last unless $r->{status} == 401;
		select(undef, undef, undef, 0.1);
	}
	return $r;
}
my ($from, $to) = split /\|/, $node->safe_psql('postgres',
	q{SELECT (now() AT TIME ZONE 'UTC')::date - 10, (now() AT TIME ZONE 'UTC')::date + 1});
my $served = spend($finance_key, "?from=${from}T00:00:00Z&to=${to}T00:00:00Z");
is($served->{status}, 200, 'GET /spend with a finance key: 200');
like($served->{headers}{'content-type'} // '', qr{^text/html}, 'GET /spend: text/html');
like($served->{body}, qr/^<!DOCTYPE html>.*id="daily-chart".*<\/html>$/s, 'GET /spend: the page');
my ($served_spend) = $served->{body} =~ /id="kpi-spend" data-value="([^"]*)"/;
is($served_spend, $node->safe_psql('postgres',
		"SELECT sum(cost) FROM llmgw.usage_daily WHERE currency = 'USD' AND day >= '$from'"),
	'GET /spend: the spend of every team');
my $team_page = spend($finance_key, "?from=${from}T00:00:00Z&to=${to}T00:00:00Z&team=alpha");
is($team_page->{status}, 200, 'GET /spend?team=alpha: 200');
ok($team_page->{body} =~ /team alpha/ && $team_page->{body} !~ /beta|gamma/,
	'GET /spend?team=alpha: that team only');
is(spend($other_key, '')->{status}, 403, 'GET /spend with a key without scope finance: 403');

$node->stop;
done_testing();
