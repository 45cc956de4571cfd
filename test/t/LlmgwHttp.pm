# A raw HTTP/1.1 client for the tests of the front door (017_http_hostile)
# and its fuzzer (test/fuzz/http_fuzz.pl): requests are bytes, sent over a
# plain socket, so that they may be as broken as a test needs; responses
# are parsed by hand (Content-Length, chunked, or up to the close).
package LlmgwHttp;

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use Time::HiRes qw(time);
use Errno qw(EAGAIN EWOULDBLOCK EINTR);

$SIG{PIPE} = 'IGNORE';

# The bytes of a request: method, path, headers (a list of [name, value]),
# body; Content-Length is added when the body is defined and no header
# names it (cl => undef keeps it out)
sub request_bytes
{
	my (%r) = @_;
	my $version = $r{version} // 'HTTP/1.1';
	my $text = "$r{method} $r{path} $version\r\n";
	my @headers = @{ $r{headers} // [] };
	my $has_cl = grep { lc($_->[0]) eq 'content-length' || lc($_->[0]) eq 'transfer-encoding' } @headers;
	unshift @headers, [ 'Host', '127.0.0.1' ] unless grep { lc($_->[0]) eq 'host' } @headers;
	push @headers, [ 'Content-Length', length($r{body}) ]
	  if defined $r{body} && !$has_cl && !exists $r{no_cl};
	$text .= "$_->[0]: $_->[1]\r\n" for @headers;
	return $text . "\r\n" . ($r{body} // '');
}

# A JSON POST with a virtual key
sub post_json
{
	my ($path, $key, $body, @extra) = @_;
	return request_bytes(
		method => 'POST',
		path => $path,
		headers => [
			[ 'Content-Type', 'application/json' ],
			(defined $key ? ([ 'Authorization', "Bearer $key" ]) : ()), @extra
		],
		body => $body);
}

# A connected socket, or undef
sub connect_to
{
	my ($port) = @_;
	return IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
		Proto => 'tcp', Timeout => 5);
}

# Decode the chunked body in buf: (body, complete?)
sub dechunk
{
	my ($buf) = @_;
	my $body = '';
	my $pos = 0;
	while (1)
	{
		my $eol = index($buf, "\r\n", $pos);
		return ($body, 0) if $eol < 0;
		my $line = substr($buf, $pos, $eol - $pos);
		$line =~ s/;.*//;
		return ($body, 0) unless $line =~ /^\s*([0-9a-fA-F]+)\s*$/;
		my $size = hex($1);
		if ($size == 0)
		{
			# trailers end with an empty line
			return ($body, index($buf, "\r\n\r\n", $eol) >= 0 || substr($buf, $eol) eq "\r\n\r\n");
		}
		return ($body, 0) if length($buf) < $eol + 2 + $size + 2;
		$body .= substr($buf, $eol + 2, $size);
		$pos = $eol + 2 + $size + 2;
	}
}

# Parse what was received of a response: undef while the headers are
# incomplete, else {status, headers => {lc name => value}, body, complete}
sub parse_response
{
	my ($buf, $closed) = @_;
	my $end = index($buf, "\r\n\r\n");
	return undef if $end < 0;
	# interim answers (100 Continue) before the response
	while ($buf =~ m{^HTTP/\d\.\d 1\d\d}) {
		$buf = substr($buf, $end + 4);
		$end = index($buf, "\r\n\r\n");
		return undef if $end < 0;
	}
	my ($first, @lines) = split /\r\n/, substr($buf, 0, $end);
	return { status => 0, headers => {}, body => '', complete => 1, bad => $first }
	  unless $first =~ m{^HTTP/\d\.\d (\d{3})};
	my %r = (status => $1, headers => {});
	for (@lines)
	{
		$r{headers}{ lc $1 } = $2 if /^([^:]+):\s*(.*)$/;
	}
	my $raw = substr($buf, $end + 4);
	if (($r{headers}{'transfer-encoding'} // '') =~ /chunked/i)
	{
		@r{qw(body complete)} = dechunk($raw);
	}
	elsif (defined $r{headers}{'content-length'})
	{
		my $n = $r{headers}{'content-length'};
		$r{body} = substr($raw, 0, $n);
		$r{complete} = length($raw) >= $n;
	}
	else
	{
		$r{body} = $raw;
		$r{complete} = $closed;
	}
	$r{complete} ||= 0;
	return \%r;
}

# Write all of bytes (optionally in pieces, delay seconds apart); false if
# the peer closed or reset first
sub write_all
{
	my ($s, $bytes) = @_;
	my $off = 0;
	while ($off < length($bytes))
	{
		my $n = syswrite($s, $bytes, length($bytes) - $off, $off);
		return 0 unless defined $n;
		$off += $n;
	}
	return 1;
}

# Read from s until the response is complete, the peer closes, or timeout
# seconds pass: {status (0: none), headers, body, raw, error: undef,
# 'closed' (no response before the close) or 'timeout', elapsed}
sub read_response
{
	my ($s, $timeout, $start) = @_;
	my $buf = '';
	my $closed = 0;
	my $deadline = time + $timeout;
	my $sel = IO::Select->new($s);
	my $r;
	while (1)
	{
		$r = parse_response($buf, $closed);
		last if ($r && $r->{complete}) || $closed;
		my $left = $deadline - time;
		last if $left <= 0;
		next unless $sel->can_read($left);
		my $n = sysread($s, $buf, 65536, length($buf));
		$closed = 1 if !$n;
	}
	my %out = (raw => $buf, elapsed => time - ($start // time));
	if ($r && $r->{complete})
	{
		%out = (%out, %$r);
	}
	else
	{
		%out = (%out, status => $r ? $r->{status} : 0, headers => $r ? $r->{headers} : {},
			body => $r ? $r->{body} : '', error => $closed ? 'closed' : 'timeout');
	}
	return \%out;
}

# Send bytes on a new connection and read the response (timeout seconds)
sub send_raw
{
	my ($port, $bytes, %o) = @_;
	my $start = time;
	my $s = connect_to($port) or return { status => 0, error => "connect: $!", raw => '' };
	my $wrote = write_all($s, $bytes);
	my $r = read_response($s, $o{timeout} // 10, $start);
	$r->{write_failed} = !$wrote;
	close $s;
	return $r;
}

# A streamed response being read: the socket, the bytes so far, and the
# SSE data lines with the time each arrived
sub stream_open
{
	my ($port, $bytes) = @_;
	my $s = connect_to($port) or return undef;
	write_all($s, $bytes);
	return { sock => $s, buf => '', events => [], start => time, closed => 0, seen => 0 };
}

# Read what arrived within timeout seconds; true while the stream goes on
sub stream_poll
{
	my ($st, $timeout) = @_;
	my $sel = IO::Select->new($st->{sock});
	return 0 if $st->{closed};
	if ($sel->can_read($timeout))
	{
		my $n = sysread($st->{sock}, $st->{buf}, 65536, length($st->{buf}));
		$st->{closed} = 1 if !$n;
	}
	my $r = parse_response($st->{buf}, $st->{closed}) or return !$st->{closed};
	$st->{status} = $r->{status};
	$st->{headers} = $r->{headers};
	$st->{complete} = $r->{complete};
	my @data = ($r->{body} // '') =~ /^data: ([^\n]*)\n\n/mg;
	my $now = time;
	push @{ $st->{events} }, [ $now - $st->{start}, $_ ] for @data[ $st->{seen} .. $#data ];
	$st->{seen} = scalar @data;
	return !($r->{complete} || $st->{closed});
}

# Read until pred($st) holds, the stream ends, or timeout seconds pass
sub stream_until
{
	my ($st, $pred, $timeout) = @_;
	my $deadline = time + $timeout;
	while (time < $deadline)
	{
		return 1 if $pred->($st);
		last unless stream_poll($st, 0.05);
	}
	return $pred->($st);
}

1;
