#!/usr/bin/perl
# A mutation fuzzer of the HTTP front door, against a running server:
# valid seed requests (chat completions plain and streamed, with tools and
# content parts, tool calls streamed to both APIs, Anthropic messages
# plain and streamed, embeddings of strings and of token arrays, models,
# health) are mutated at the JSON level (hostile values, huge numbers,
# invalid UTF-8, NUL, deep nesting, wrong types, deleted members), at the
# HTTP level (request line, duplicated and absurd headers, Content-Length
# and chunked framing) and at the byte level (flips, truncation, inserted
# and duplicated slices), and sent over raw sockets, a few at a time.
#
#   perl test/fuzz/http_fuzz.pl --port P --key KEY [--n N] [--seed S]
#        [--concurrency C] [--timeout SECONDS] [--save DIR] [--connstr CONNSTR]
#
# With --connstr, the llmgw workers' PIDs are read before, every 250
# requests and after: a change is a crash (the exit status is 1).  Prints a
# "# figures:" line: requests sent, the status histogram ("closed": closed
# without an answer, "timeout": no answer within the timeout, which an
# incomplete request earns), worker restarts.  With --save, every request
# answered 5xx, and the batch during which a worker restarted, are written
# there to replay.  test/t/017_http_hostile.pl runs it with a small N.
package LlmgwHttpFuzz;

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t";
use LlmgwHttp;
use JSON::PP;
use IO::Select;
use Time::HiRes qw(time);
use Getopt::Long;

my $json = JSON::PP->new->canonical;

# The seeds: [method, path, extra headers, body (a Perl structure) or undef]
sub seeds
{
	my $anthropic = [ [ 'anthropic-version', '2023-06-01' ] ];
	my $user = { role => 'user', content => 'hello there, how are you' };
	my $tool = {
		type => 'function',
		function => {
			name => 'get_weather',
			description => 'weather of a city',
			parameters => { type => 'object', properties => { city => { type => 'string' } } }
		}
	};
	return (
		[ 'POST', '/v1/chat/completions', [],
			{ model => 'demo', messages => [ { role => 'system', content => 'be brief' }, $user ],
			  max_tokens => 20, temperature => 0.5, user => 'fuzz', metadata => { run => 'fuzz' } } ],
		[ 'POST', '/v1/chat/completions', [],
			{ model => 'demo', messages => [$user], stream => JSON::PP::true,
			  stream_options => { include_usage => JSON::PP::true } } ],
		[ 'POST', '/v1/chat/completions', [ [ 'x-llmgw-tags', '{"team":"fuzz"}' ] ],
			{ model => 'demo', tools => [$tool], tool_choice => 'auto',
			  messages => [
				  $user,
				  { role => 'assistant', content => undef,
					tool_calls => [ { id => 'call_1', type => 'function',
							function => { name => 'get_weather', arguments => '{"city":"Paris"}' } } ] },
				  { role => 'tool', tool_call_id => 'call_1', content => 'sunny' } ] } ],
		[ 'POST', '/v1/chat/completions', [],
			{ model => 'demo', response_format => { type => 'json_object' },
			  messages => [ { role => 'user', content => [
					  { type => 'text', text => 'what is this' },
					  { type => 'image_url', image_url => { url => 'data:image/png;base64,iVBORw0KGgo=' } } ] } ] } ],
		[ 'POST', '/v1/messages', $anthropic,
			{ model => 'demo', max_tokens => 50, system => 'be brief', messages => [$user] } ],
		[ 'POST', '/v1/messages', $anthropic,
			{ model => 'demo', max_tokens => 50, stream => JSON::PP::true, messages => [$user] } ],
		[ 'POST', '/v1/messages', $anthropic,
			{ model => 'demo', max_tokens => 50,
			  tools => [ { name => 'get_weather', input_schema => { type => 'object' } } ],
			  messages => [
				  $user,
				  { role => 'assistant', content => [ { type => 'tool_use', id => 'tu_1',
						  name => 'get_weather', input => { city => 'Paris' } } ] },
				  { role => 'user', content => [ { type => 'tool_result', tool_use_id => 'tu_1',
						  content => 'sunny' } ] } ] } ],
		# prompt-cache marks on every block that takes one
		[ 'POST', '/v1/messages', $anthropic,
			{ model => 'demo', max_tokens => 50,
			  system => [ { type => 'text', text => 'be brief', cache_control => { type => 'ephemeral' } } ],
			  tools => [ { name => 'get_weather', input_schema => { type => 'object' },
					  cache_control => { type => 'ephemeral', ttl => '1h' } } ],
			  messages => [
				  { role => 'user', content => [ { type => 'text', text => 'weather?',
						  cache_control => { type => 'ephemeral' } } ] },
				  { role => 'assistant', content => [ { type => 'tool_use', id => 'tu_1',
						  name => 'get_weather', input => {}, cache_control => { type => 'ephemeral' } } ] },
				  { role => 'user', content => [ { type => 'tool_result', tool_use_id => 'tu_1',
						  content => 'sunny', cache_control => { type => 'ephemeral', ttl => '5m' } } ] } ] } ],
		# extended thinking: the setting, and an earlier answer's blocks sent back
		[ 'POST', '/v1/messages', $anthropic,
			{ model => 'demo', max_tokens => 50, stream => JSON::PP::true,
			  thinking => { type => 'enabled', budget_tokens => 1024 },
			  messages => [
				  $user,
				  { role => 'assistant', content => [
						  { type => 'thinking', thinking => 'they greet me', signature => 'EqQB' },
						  { type => 'redacted_thinking', data => 'EmwK' },
						  { type => 'text', text => 'fine' } ] },
				  $user ] } ],
		# the Responses API: items, a function call and its output, streamed
		[ 'POST', '/v1/responses', [],
			{ model => 'demo', instructions => 'be brief', stream => JSON::PP::true,
			  tools => [ { type => 'function', name => 'get_weather', parameters => { type => 'object' } } ],
			  input => [
				  { role => 'user', content => [ { type => 'input_text', text => 'weather?' } ] },
				  { type => 'function_call', call_id => 'c1', name => 'get_weather', arguments => '{}' },
				  { type => 'function_call_output', call_id => 'c1', output => 'sunny' } ] } ],
		# three tool calls streamed (model tools: 017 makes it), to both APIs
		[ 'POST', '/v1/chat/completions', [],
			{ model => 'tools', tools => [$tool], stream => JSON::PP::true, messages => [$user] } ],
		[ 'POST', '/v1/messages', $anthropic,
			{ model => 'tools', max_tokens => 50, stream => JSON::PP::true,
			  tools => [ { name => 'get_weather', input_schema => { type => 'object' } } ],
			  messages => [$user] } ],
		[ 'POST', '/v1/embeddings', [], { model => 'demo', input => [ 'one text', 'another' ] } ],
		[ 'POST', '/v1/embeddings', [], { model => 'demo', input => [ [ 9906, 1917 ], [15339] ] } ],
		[ 'POST', '/v1/embeddings', [],
			{ model => 'demo', input => 'one', encoding_format => 'base64', dimensions => 4 } ],
		[ 'GET', '/v1/models', [], undef ],
		[ 'GET', '/v1/models/demo', [], undef ],
		[ 'GET', '/health', [], undef ],
	);
}

sub pick { return $_[ int(rand(@_)) ]; }
sub chance { return rand() < $_[0]; }

# Raw JSON texts a value may be replaced with (not all of them valid JSON)
my @raw_values = (
	'1e999', '-1e999', '123456789012345678901234567890', '-9223372036854775809',
	'9223372036854775807', '1.5e-400', '-0', '0.0000000000000000000001', 'NaN',
	'Infinity', '0x10', '01', '1.', '.5', '"\u0000"', '"a\u0000b"', '"\ud800"',
	'"\udc00\ud800"', "\"\xff\xfe\"", "\"\xc0\x80\"", "\"\xed\xa0\x80\"", "\"a\x00b\"",
	"\"\x01\x02\x1f\"", 'null', 'true', 'false', '""', '[]', '{}', '[[[[[[[[]]]]]]]]',
	'{"a":1,"a":2}', '"' . ('x' x 70000) . '"', '[' . join(',', (1) x 5000) . ']',
	'{' . join(',', map { "\"k$_\":$_" } 1 .. 3000) . '}', '"demo;stall"', '"nosuch"',
	'"' . ("\xe2\x82\xac" x 2000) . '"', '"\\"', '"\n\r\t"', '{"role":"user"}',
	'[{"role":"user","content":null}]', '[{"role":42,"content":[]}]', '[{"type":"nope"}]',
);

# A deeply nested value, depth n
sub deep
{
	my ($n) = @_;
	return pick('[' x $n . ']' x $n, '{"a":' x $n . '1' . '}' x $n, '[' x $n);
}

# Every path (list of keys and indexes) into a structure
sub paths
{
	my ($v, $prefix, $out) = @_;
	push @$out, $prefix if @$prefix;
	if (ref $v eq 'HASH')
	{
		paths($v->{$_}, [ @$prefix, $_ ], $out) for sort keys %$v;
	}
	elsif (ref $v eq 'ARRAY')
	{
		paths($v->[$_], [ @$prefix, $_ ], $out) for 0 .. $#$v;
	}
	return $out;
}

# The JSON text of body with one to three mutations
sub mutate_json
{
	my ($body) = @_;
	my $copy = $json->decode($json->encode($body));
	my %raw;
	my $n = 1 + int(rand(3));
	for (1 .. $n)
	{
		my $all = paths($copy, [], []);
		last unless @$all;
		my $path = pick(@$all);
		my $parent = $copy;
		$parent = ref $parent eq 'HASH' ? $parent->{$_} : $parent->[$_] for @$path[ 0 .. $#$path - 1 ];
		my $last = $path->[-1];
		my $op = int(rand(6));
		my $value;
		if ($op == 0)
		{
			# a placeholder, replaced by raw text after encoding
			my $tag = 'RAW' . int(rand(1e9));
			$raw{$tag} = chance(0.1) ? deep(pick(100, 3000, 25000)) : pick(@raw_values);
			$value = $tag;
		}
		elsif ($op == 1)
		{
			$value = pick(undef, JSON::PP::true, 0, -1, 2**31, 2**53 + 1, 1e300, '', [], {}, 'x' x 1000);
		}
		elsif ($op == 2)
		{
			# delete the member or element
			if (ref $parent eq 'HASH') { delete $parent->{$last}; }
			elsif (ref $parent eq 'ARRAY') { splice @$parent, $last, 1; }
			next;
		}
		elsif ($op == 3)
		{
			# an unknown or duplicated member beside it
			if (ref $parent eq 'HASH')
			{
				$parent->{ pick('stream', 'n', 'model', 'max_tokens', 'stream_options', 'unknown',
						"k\x{0}ey", "\x{ff}") } = pick(JSON::PP::true, 5, 'demo', { include_usage => 1 });
			}
			next;
		}
		elsif ($op == 4)
		{
			$value = pick('demo', 'slow', 'nosuch', '', 'demo;delay:10', 'de mo', "d\x{e9}mo",
				'demo' x 2000, 'assistant', 'tool', 'system', 'developer', 'user');
			$value = 'demo' if $value eq 'slow' && !chance(0.05);
		}
		else
		{
			# the same value, but of the other type
			my $old = ref $parent eq 'HASH' ? $parent->{$last} : $parent->[$last];
			$value = ref $old ? "$old" : [$old];
		}
		if (ref $parent eq 'HASH') { $parent->{$last} = $value; }
		elsif (ref $parent eq 'ARRAY') { $parent->[$last] = $value; }
	}
	my $text = $json->encode($copy);
	$text =~ s/"(RAW\d+)"/$raw{$1}/g;
	return $text;
}

# The request line, headers and body of a seed, mutated at the HTTP level
sub mutate_http
{
	my ($seed, $key, $body) = @_;
	my ($method, $path, $extra) = @$seed;
	my @headers = ([ 'Host', '127.0.0.1' ]);
	push @headers, [ 'Content-Type', 'application/json' ] if defined $body;
	push @headers, [ 'Authorization', "Bearer $key" ];
	push @headers, @$extra;
	my $version = 'HTTP/1.1';
	my $framing = 'length';
	for (1 .. (chance(0.5) ? 1 : 1 + int(rand(3))))
	{
		my $op = int(rand(16));
		if ($op == 0) { $method = pick('get', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'CONNECT', 'TRACE', "P\0ST", 'POST ' x 3, 'X' x 5000, ''); }
		elsif ($op == 1)
		{
			$path = pick("$path?x=1", "$path/", "/v1/$path", "//", "/%00", "$path%00", "/v1/models/" . ('a' x 5000),
				"/v1/models/%ff", "http://127.0.0.1$path", '*', "$path#frag", "/v1/../v1/chat/completions",
				"/v1/chat/completions\0", "/v1/models/\xff\xfe", '', "$path?" . ('q=1&' x 3000));
		}
		elsif ($op == 2) { $version = pick('HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', '', 'HTTP/01.1', 'HTTP/1.10', 'http/1.1', 'HTTP/9.9'); }
		elsif ($op == 3) { push @headers, pick(@headers); }    # a duplicate
		elsif ($op == 4) { push @headers, [ 'Content-Length', pick('-1', '99999999999999999999', 'abc', '0', ' 5', '1e3', '18446744073709551616') ]; }
		elsif ($op == 5) { $framing = pick('chunked', 'both', 'badchunk', 'none', 'short', 'long'); }
		elsif ($op == 6) { push @headers, [ 'X-Big', 'b' x pick(1000, 30000, 70000) ]; }
		elsif ($op == 7) { push @headers, [ "X-H$_", 'v' ] for 1 .. pick(100, 2000); }
		elsif ($op == 8) { push @headers, pick([ 'NoColon', undef ], [ ' Folded', 'x' ], [ "Bad Name", 'x' ], [ "X-Nul", "a\0b" ], [ '', 'empty' ], [ 'X-Ctl', "\x01\x7f" ]); }
		elsif ($op == 9)
		{
			@headers = grep { $_->[0] ne 'Authorization' } @headers;
			push @headers, pick([ 'Authorization', 'Bearer' ], [ 'Authorization', 'Bearer    ' ], [ 'Authorization', "Basic $key" ],
				[ 'Authorization', 'Bearer ' . ('k' x 60000) ], [ 'Authorization', "Bearer \xff\xfe$key" ], [ 'x-api-key', $key ],
				[ 'Authorization', "Bearer $key\0extra" ], [ 'Authorization', "Bearer $key" ], [ 'x-api-key', '' ]);
		}
		elsif ($op == 10)
		{
			@headers = grep { $_->[0] ne 'Content-Type' } @headers;
			push @headers, [ 'Content-Type', pick('application/json; charset=utf-8', 'text/plain', 'application/jsonx', 'APPLICATION/JSON', '', "application/json\0", 'multipart/form-data; boundary=x') ];
		}
		elsif ($op == 11) { push @headers, [ 'Expect', pick('100-continue', 'nonsense') ]; }
		elsif ($op == 12) { push @headers, [ 'Connection', pick('close', 'keep-alive', 'Upgrade'), ], [ 'Upgrade', 'websocket' ]; }
		elsif ($op == 13) { push @headers, [ 'x-llmgw-tags', pick('[]', '{', '{"a":' . ('[' x 5000), '{"k":"' . ('v' x 5000) . '"}', "\xff", '{"user":null}') ]; }
		elsif ($op == 14) { push @headers, [ 'Transfer-Encoding', pick('gzip', 'chunked, chunked', 'identity', 'xchunked') ]; }
		else { @headers = grep { $_->[0] ne 'Host' } @headers; }
	}
	my $text = "$method $path" . ($version eq '' ? '' : " $version") . "\r\n";
	for (@headers)
	{
		$text .= defined $_->[1] ? "$_->[0]: $_->[1]\r\n" : "$_->[0]\r\n";
	}
	$body //= '';
	if ($framing eq 'length' || $framing eq 'short' || $framing eq 'long')
	{
		my $n = length($body) + ($framing eq 'short' ? -int(rand(length($body) + 1)) : $framing eq 'long' ? 1 + int(rand(100)) : 0);
		$text .= "Content-Length: $n\r\n" if length($body) || $method eq 'POST';
	}
	elsif ($framing ne 'none')
	{
		$text .= "Transfer-Encoding: chunked\r\n";
		$text .= "Content-Length: " . length($body) . "\r\n" if $framing eq 'both';
		my $chunks = '';
		my $rest = $body;
		while (length $rest)
		{
			my $piece = substr($rest, 0, 1 + int(rand(4096)), '');
			$chunks .= sprintf("%x\r\n%s\r\n", length($piece), $piece);
		}
		$chunks .= "0\r\n\r\n";
		$chunks =~ s/^[0-9a-f]+/pick('zz', 'ffffffffffffffffffff', '-1', '1;ext=1', ' 1', '100000000')/e if $framing eq 'badchunk';
		$body = $chunks;
	}
	return $text . "\r\n" . $body;
}

# Byte-level damage to a whole request
sub mutate_bytes
{
	my ($bytes) = @_;
	my $len = length($bytes);
	return $bytes unless $len;
	my $op = int(rand(6));
	if ($op == 0)
	{
		for (1 .. 1 + int(rand(8)))
		{
			my $i = int(rand($len));
			substr($bytes, $i, 1) = chr(ord(substr($bytes, $i, 1)) ^ (1 << int(rand(8))));
		}
	}
	elsif ($op == 1) { $bytes = substr($bytes, 0, int(rand($len))); }
	elsif ($op == 2) { substr($bytes, int(rand($len)), 0) = pick("\0", "\xff", "\r\n", "\r\n\r\n", "\n", ' ', "\x80\x80", '%', '"', '{', ']'); }
	elsif ($op == 3)
	{
		my $i = int(rand($len));
		my $n = int(rand($len - $i)) + 1;
		substr($bytes, $i, 0) = substr($bytes, $i, $n);
	}
	elsif ($op == 4) { substr($bytes, int(rand($len)), int(rand(16)) + 1) = ''; }
	else { $bytes .= $bytes; }    # pipelined twice
	return $bytes;
}

# One fuzzed request
sub one_request
{
	my ($seeds, $key) = @_;
	my $seed = pick(@$seeds);
	my $body = defined $seed->[3] ? $json->encode($seed->[3]) : undef;
	my $kind = rand();
	$body = mutate_json($seed->[3]) if defined $seed->[3] && $kind < 0.45;
	my $bytes;
	if ($kind < 0.45 || $kind >= 0.9)
	{
		$bytes = LlmgwHttp::request_bytes(method => $seed->[0], path => $seed->[1],
			headers => [ (defined $body ? ([ 'Content-Type', 'application/json' ]) : ()),
				[ 'Authorization', "Bearer $key" ], @{ $seed->[2] } ],
			body => $body);
	}
	else
	{
		$bytes = mutate_http($seed, $key, $body);
	}
	$bytes = mutate_bytes($bytes) if $kind >= 0.75;
	return $bytes;
}

# Send n fuzzed requests; returns the figures
sub run
{
	my (%o) = @_;
	my $n = $o{n} // 1000;
	my $conc = $o{concurrency} // 16;
	my $timeout = $o{timeout} // 0.3;
	my $seed = $o{seed} // int(time);
	srand($seed);
	my @seeds = seeds();
	my (%hist, @active, @batch, @fivexx, @restarts);
	my $sel = IO::Select->new;
	my ($sent, $saved) = (0, 0);
	my $start = time;
	my $pids = $o{workers} ? $o{workers}->() : undef;

	my $finish = sub {
		my ($c, $r) = @_;
		my $label = $r ? ($r->{status} || 'badresp') : $c->{closed} ? 'closed' : 'timeout';
		$hist{$label}++;
		if ($r && $r->{status} >= 500)
		{
			push @fivexx, { status => $r->{status}, request => $c->{bytes}, body => $r->{body} };
			if ($o{save})
			{
				open my $f, '>:raw', sprintf('%s/5xx-%05d.req', $o{save}, $saved++);
				print $f $c->{bytes};
				close $f;
			}
		}
		$sel->remove($c->{sock});
		close $c->{sock};
	};

	while ($sent < $n || @active)
	{
		while (@active < $conc && $sent < $n)
		{
			my $bytes = one_request(\@seeds, $o{key});
			my $s = LlmgwHttp::connect_to($o{port});
			$sent++;
			if (!$s)
			{
				$hist{refused}++;
				next;
			}
			$s->blocking(0);
			my $c = { sock => $s, bytes => $bytes, off => 0, buf => '', deadline => time + $timeout, closed => 0 };
			push @active, $c;
			push @batch, $bytes;
			$sel->add($s);
		}
		# write what is pending, read what arrived
		for my $c (@active)
		{
			next if $c->{off} >= length($c->{bytes}) || $c->{closed};
			my $w = syswrite($c->{sock}, $c->{bytes}, length($c->{bytes}) - $c->{off}, $c->{off});
			if (defined $w) { $c->{off} += $w; }
			elsif (!$!{EAGAIN}) { $c->{off} = length($c->{bytes}); }    # the server stopped reading
		}
		my @ready = $sel->can_read(0.02);
		my %ready = map { fileno($_) => 1 } @ready;
		my @left;
		for my $c (@active)
		{
			if ($ready{ fileno($c->{sock}) })
			{
				my $got = sysread($c->{sock}, $c->{buf}, 65536, length($c->{buf}));
				$c->{closed} = 1 if defined $got && $got == 0;
				$c->{closed} = 1 if !defined $got && !$!{EAGAIN};
			}
			my $r = LlmgwHttp::parse_response($c->{buf}, $c->{closed});
			if (($r && $r->{complete}) || ($r && $r->{status} == 0))
			{
				$finish->($c, $r);
			}
			elsif ($c->{closed} || time > $c->{deadline})
			{
				$finish->($c, $r && $r->{status} ? { %$r, status => $r->{status} } : undef);
			}
			else
			{
				push @left, $c;
			}
		}
		@active = @left;
		if ($o{workers} && ($sent % 250 == 0 || ($sent == $n && !@active)) && @batch)
		{
			my $now = $o{workers}->();
			if ($now ne $pids)
			{
				push @restarts, { before => $pids, after => $now, at => $sent };
				if ($o{save})
				{
					for my $i (0 .. $#batch)
					{
						open my $f, '>:raw', sprintf('%s/restart-%d-%05d.req', $o{save}, $sent, $i);
						print $f $batch[$i];
						close $f;
					}
				}
				$pids = $now;
			}
			@batch = ();
		}
	}
	return {
		seed => $seed,
		sent => $sent,
		hist => \%hist,
		elapsed => time - $start,
		fivexx => \@fivexx,
		restarts => \@restarts,
	};
}

# "200:n 400:n ..." of a histogram
sub histogram_text
{
	my ($h) = @_;
	return join(' ', map { "$_:$h->{$_}" } sort { ($h->{$b} <=> $h->{$a}) || ($a cmp $b) } keys %$h);
}

sub main
{
	my %o = (n => 1000, concurrency => 16, timeout => 0.3);
	GetOptions(\%o, 'port=i', 'key=s', 'n=i', 'seed=i', 'concurrency=i', 'timeout=f', 'save=s', 'connstr=s')
	  && $o{port} && $o{key}
	  or die "usage: http_fuzz.pl --port P --key KEY [--n N] [--seed S] [--concurrency C] [--timeout S] [--save DIR] [--connstr C]\n";
	if ($o{connstr})
	{
		my $c = $o{connstr};
		$o{workers} = sub {
			my $out = `psql -XAtq -d '$c' -c "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'llmgw worker'"`;
			chomp $out;
			return $out;
		};
	}
	my $f = run(%o);
	printf "# figures: http fuzz: %d requests in %.1f s (seed %d), status %s, worker restarts %d, 5xx %d\n",
	  $f->{sent}, $f->{elapsed}, $f->{seed}, histogram_text($f->{hist}), scalar @{ $f->{restarts} },
	  scalar @{ $f->{fivexx} };
	exit(@{ $f->{restarts} } ? 1 : 0);
}

main() unless caller;

1;
