#!/usr/bin/perl
# Print how many requests the mock provider saw for each model string given
# (the failure drill uses it to prove retries and fallbacks happened exactly
# as often as the usage rows say).  Reads LLMGW_MOCK_PORT.
use strict;
use warnings;
use IO::Socket::INET;
use JSON::PP;

my $port = $ENV{LLMGW_MOCK_PORT} or die "LLMGW_MOCK_PORT is not set\n";
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port)
  or die "cannot reach the mock: $!\n";
print $s "GET /stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
my $body = do { local $/; <$s> };
$body =~ s/^.*?\r\n\r\n//s;
my $stats = decode_json($body);
printf "mock requests for %s: %d\n", $_, $stats->{by_model}{$_} // 0 for @ARGV;
