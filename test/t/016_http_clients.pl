# The HTTP front door through the official clients: the openai and
# @anthropic-ai/sdk npm packages and the Vercel AI SDK, ai with its
# OpenAI-compatible, OpenAI and Anthropic providers (pinned in
# test/http/package.json, installed
# here once with npm ci; skipped only when npm is absent) call
# llmgw.http_listen as they would call the vendors.  test/http/clients.mjs
# runs one scenario per node process and prints what the SDK returned or
# threw; this file asserts it, and checks the usage rows, budgets and spend
# the calls left behind.
#
# - OpenAI: chat plain (text, usage, proof headers = the usage row), streamed
#   as the provider sends it (same text, usage, proof in the last chunk; a
#   client that leaves: row cancelled), tools (and their results sent back),
#   JSON mode, embeddings (base64 by default, decoded), models of an
#   allow-list, user/metadata/x-llmgw-tags in usage.tags;
# - every error class as the SDK's exception (maxRetries 0) with its stable
#   code in the body and x-llmgw-error-code, Retry-After of a rate limit and
#   of a daily budget; a key revoked between two calls on one kept-alive
#   connection;
# - Anthropic: messages plain, streamed (proof in message_delta), tools
#   (streamed too), tags, errors;
# - 4*K concurrent HTTP calls against a hard budget of K calls: exactly K;
# - a team's rate limit shared by SQL and HTTP calls of one key;
# - and the pg_cron recipe of docs/batch.md (LlmgwTest::cron_recipe_*):
#   scheduled first, looked at last, here because this file runs long and
#   without a crash (pg_cron fires on whole minutes).
#
# The mock's pace:MS directive spaces a stream's events, so that the client
# can see them arrive one by one.
use strict;
use warnings;
use utf8;
use FindBin;
use lib $FindBin::Bin;
use Cwd qw(abs_path);
use IO::Socket::INET;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use LlmgwTest;

my $dir = abs_path("$FindBin::Bin/../http");
my $started = time;

plan skip_all => 'npm is not installed (the SDK tests need node and npm)'
  unless system('sh', '-c', 'command -v npm >/dev/null && command -v node >/dev/null') == 0;

# --- a node serving the front door (made first: the pg_cron recipe's
# minute starts running while the SDKs install) ---------------------------------

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = LlmgwTest::node('http_clients', 2,
	conf => "llmgw.http_listen = '127.0.0.1:$port'\n" . $LlmgwTest::cron_conf);
my $cron_port = LlmgwTest::cron_recipe_schedule($node);

# --- the SDKs, installed once from the lock file ----------------------------

LlmgwTest::npm_ready($dir, 'the SDKs');

my $base = "http://127.0.0.1:$port";

# The status line of GET /health (the workers listen once they are up)
sub health
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 2)
	  or return '';
	print $s "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
	my $line = <$s> // '';
	close $s;
	return $line;
}
my $deadline = time + 30;
sleep 0.1 until health() =~ m{^HTTP/1\.[01] 200} || time > $deadline;
like(health(), qr{^HTTP/1\.[01] 200}, 'the front door answers GET /health on llmgw.http_listen');

# Models: priced by tokens, priced per request (exactly 0.01 a call), and
# the mock's behaviours (tool calls from its OpenAI, Anthropic and Gemini
# formats); a provider that gives up after 300 ms
(my $mock_root = $ENV{LLMGW_MOCK_URL}) =~ s{/v1$}{};
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('priced', 'mock', 'mock-model', price_model => 'tok-price');
	SELECT llmgw.set_price('tok-price', 3, 15);
	SELECT llmgw.create_model('priced-paced', 'mock', 'mock-model;pace:100',
	                          price_model => 'tok-price');
	SELECT llmgw.create_model('paced', 'mock', 'mock-model;pace:100');
	SELECT llmgw.create_model('acme/fast', 'mock', 'mock-model');
	SELECT llmgw.create_model('midfail', 'mock', 'mock-model;pace:50;stream_error');
	SELECT llmgw.create_model('metered', 'mock', 'metered-model;delay:300',
	                          price_model => 'metered-model');
	SELECT llmgw.set_price('metered-model', 0, 0, per_request => 0.01);
	SELECT llmgw.create_model('tools', 'mock', 'mock-model;tool_call');
	SELECT llmgw.create_model('tools-paced', 'mock', 'mock-model;tool_call;pace:100');
	SELECT llmgw.create_provider('claude', 'anthropic', '$mock_root/v1', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_model('tools-claude', 'claude', 'mock-model;tool_call;pace:100');
	SELECT llmgw.create_provider('gem', 'gemini', '$mock_root/v1beta', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_model('tools-gemini', 'gem', 'mock-model;tool_call;pace:100');
	SELECT llmgw.create_model('tools3', 'mock', 'mock-model;tool_calls:3');
	SELECT llmgw.create_model('tools3-claude', 'claude', 'mock-model;tool_calls:3');
	SELECT llmgw.create_model('tools3-gemini', 'gem', 'mock-model;tool_calls:3');
	SELECT llmgw.create_model('echo', 'mock', 'mock-model;echo_body');
	SELECT llmgw.create_model('echo-claude', 'claude', 'mock-model;echo_body');
	SELECT llmgw.set_price('cached-price', input => 3, output => 15, cached_input => 0.3, cache_write_5m => 3.75);
	SELECT llmgw.create_model('claude-cached', 'claude', 'mock-model;cached:20;cache_write:5',
	                          price_model => 'cached-price');
	SELECT llmgw.create_model('claude-think', 'claude', 'mock-model');
	SELECT llmgw.create_model('claude-plain', 'claude', 'mock-model');
	SELECT llmgw.create_model('vllm', 'mock', 'mock-model;stop_reason');
	SELECT llmgw.create_model('claude-think-cached', 'claude', 'mock-model');
	SELECT llmgw.create_model('reasoner', 'mock', 'mock-model;reasoning:5');
	SELECT llmgw.create_model('tools-gemini-signed', 'gem', 'mock-model;tool_call;thought_signatures');
	UPDATE llmgw.models SET cache_ttl = '1 hour' WHERE alias = 'claude-think-cached';
	SELECT llmgw.create_model('embed', 'mock', 'mock-embed;dim:8');
	SELECT llmgw.create_model('embed-gemini', 'gem', 'mock-embed');
	SELECT llmgw.create_model('ctx', 'mock', 'mock-model;context');
	SELECT llmgw.create_model('broken', 'mock', 'mock-model;status:500');
	SELECT llmgw.create_provider('mock300', 'openai_compatible', '$ENV{LLMGW_MOCK_URL}',
	                             secret => 'env:LLMGW_TEST_KEY', timeout_ms => 300);
	SELECT llmgw.create_model('late', 'mock300', 'mock-model;delay:5000');
	SELECT llmgw.create_team('web');
	SELECT llmgw.create_team('mixed', rpm_limit => 4);
});

# A new key of a team: (id, key)
sub new_key
{
	my ($team, $name, $opts) = @_;
	my $row = $node->safe_psql('postgres',
		"SELECT key_id || '|' || api_key FROM llmgw.create_key('$team', '$name'"
		  . ($opts ? ", $opts" : '') . ')');
	return split /\|/, $row;
}

my %keys;
my %key_ids;
for my $k (
	[ 'main',   'web',   undef ],
	[ 'allow',  'web',   q{allowed_models => '{demo,priced}'} ],
	[ 'revoke', 'web',   undef ],
	[ 'budget', 'web',   undef ],
	[ 'daily',  'web',   undef ],
	[ 'rpm',    'web',   'rpm_limit => 2' ],
	[ 'race',   'web',   undef ],
	[ 'mixed',  'mixed', undef ])
{
	($key_ids{ $k->[0] }, $keys{ $k->[0] }) = new_key($k->[1], "$k->[0] key", $k->[2]);
}
my $web_team = $node->safe_psql('postgres', "SELECT llmgw.team_id('web')");
my $mixed_team = $node->safe_psql('postgres', "SELECT llmgw.team_id('mixed')");
$node->safe_psql('postgres',
	"SELECT llmgw.create_budget('one call', 'key', '$key_ids{budget}', 'total', 0.01);
	 SELECT llmgw.create_budget('one call a day', 'key', '$key_ids{daily}', 'day', 0.01)");

# Run a scenario of clients.mjs; its JSON answer
sub scenario
{
	my ($name, %args) = @_;
	my ($out, $err) = ('', '');
	local $ENV{LLMGW_HTTP} = $base;
	local $ENV{LLMGW_KEYS} = encode_json(\%keys);
	local $ENV{LLMGW_ARGS} = encode_json(\%args);
	local $ENV{LLMGW_PSQL} = $node->connstr('postgres');
	my $t0 = time;
	my $ok = IPC::Run::run([ 'node', "$dir/clients.mjs", $name ],
		'>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	note(sprintf('scenario %s: %.1f s', $name, time - $t0));
	my $res = eval { decode_json($out) };
	BAIL_OUT("scenario $name failed: $err$out") unless $ok && $res;
	return $res;
}

sub q1 { return $node->safe_psql('postgres', shift) }

# "class status code" of an SDK exception, and its header code agrees
sub error_is
{
	my ($r, $class, $status, $code, $name) = @_;
	my $got = $r->{ok} ? 'no exception' : join(' ', map { $_ // 'null' } @$r{qw(class status code)});
	is($got, "$class $status $code", $name) or diag(explain($r));
}

# --- 1. OpenAI: the calls --------------------------------------------------------

my $o = scenario('openai');

my $plain = $o->{plain};
ok($plain->{ok} && $plain->{object} eq 'chat.completion' && $plain->{role} eq 'assistant'
	  && $plain->{text} eq 'Hello! You said: hello from the openai sdk: ünïcødé 日本語 🎉' && $plain->{finish} eq 'stop',
	'openai chat plain: the answer text, finish_reason stop') or diag(explain($plain));
ok($plain->{usage}{prompt_tokens} > 0 && $plain->{usage}{completion_tokens} > 0
	  && $plain->{usage}{total_tokens} == $plain->{usage}{prompt_tokens} + $plain->{usage}{completion_tokens},
	'openai chat plain: usage counts') or diag(explain($plain->{usage}));
my $rid = $plain->{headers}{'x-request-id'} // '';
is(q1("SELECT count(*) || '|' || min(key_id) || '|' || min(team_id) || '|'
	         || bool_and(role_name IS NULL) || '|' || min(status) || '|' || min(model)
	         || '|' || min(input_tokens) || '|' || min(output_tokens)
	    FROM llmgw.usage WHERE request_id = '$rid'"),
	"1|$key_ids{main}|$web_team|true|ok|priced|$plain->{usage}{prompt_tokens}|$plain->{usage}{completion_tokens}",
	'openai chat plain: x-request-id is the usage row (key, team, no role, tokens)')
  or diag(explain($plain->{headers}));
my $cost = $plain->{headers}{'x-llmgw-cost'} // 'none';
is(q1("SELECT cost > 0 AND cost = '$cost'::numeric AND currency = '"
		  . ($plain->{headers}{'x-llmgw-currency'} // '') . "'
	    FROM llmgw.usage WHERE request_id = '$rid'"), 't',
	"openai chat plain: x-llmgw-cost ($cost) and currency equal the usage row");
is(join(' ', map { $plain->{headers}{$_} // 'none' } qw(x-llmgw-deployment x-llmgw-attempts)),
	'mock/mock-model 1', 'openai chat plain: deployment and attempts headers');

my $st = $o->{stream};
ok($st->{ok} && $st->{text} eq $plain->{text} && $st->{content_chunks} > 1,
	'openai chat stream: the deltas concatenated are the plain answer, in several chunks')
  or diag(explain($st));
ok($st->{ok} && defined $st->{first_content_ms} && $st->{first_content_ms} + 300 < $st->{end_ms},
	sprintf('openai chat stream: the first text arrives as the provider sends it (%.0f ms of %.0f)',
		$st->{first_content_ms} // -1, $st->{end_ms} // -1)) or diag(explain($st));
ok($st->{ok} && $st->{finish} eq 'stop' && $st->{usage}
	  && $st->{usage}{prompt_tokens} == $plain->{usage}{prompt_tokens}
	  && $st->{usage}{completion_tokens} == $plain->{usage}{completion_tokens}
	  && $st->{last_choices} == 0,
	'openai chat stream: include_usage gives the usage in a last chunk without choices')
  or diag(explain($st));
my $sid = $st->{headers}{'x-request-id'} // '';
ok($st->{ok} && $st->{llmgw} && $st->{llmgw}{request_id} eq $sid
	  && $st->{llmgw}{deployment} eq 'mock/mock-model;pace:100' && $st->{llmgw}{attempts} == 1
	  && scalar(@{ $st->{ids} }) == 1 && $st->{objects}[0] eq 'chat.completion.chunk',
	'openai chat stream: the last chunk carries the proof (request_id = x-request-id)')
  or diag(explain($st));
is(q1("SELECT status || '|' || (cost = '" . ($st->{llmgw}{cost} // -1) . "'::numeric) || '|' || key_id
	    FROM llmgw.usage WHERE request_id = '$sid'"),
	"ok|true|$key_ids{main}", 'openai chat stream: its usage row, cost as the proof says');

my $tl = $o->{tools};
my $call = $tl->{ok} && $tl->{tool_calls} ? $tl->{tool_calls}[0] : {};
ok($tl->{ok} && $tl->{finish} eq 'tool_calls' && $call->{type} eq 'function'
	  && $call->{function}{name} eq 'get_weather' && $call->{id}
	  && eval { decode_json($call->{function}{arguments})->{city} eq 'Paris' },
	'openai tools: a get_weather tool call with JSON arguments, finish_reason tool_calls')
  or diag(explain($tl));
my $ts = $o->{tools_stream};
ok($ts->{ok} && $ts->{finish} eq 'tool_calls'
	  && $ts->{tool_calls}[0]{function}{name} eq 'get_weather'
	  && eval { decode_json($ts->{tool_calls}[0]{function}{arguments})->{city} eq 'Paris' },
	'openai tools streamed: the stream helper assembles the same call')
  or diag(explain($ts));

# A tool call streams as it comes: its start (id, name), then its arguments
# piece by piece (the mock's OpenAI and Anthropic formats send them in two
# pieces, Gemini's a whole call in one event), long before the end
for my $model (qw(tools-paced tools-claude tools-gemini))
{
	my $tp = $o->{"tools_pieces_$model"};
	my $args = join('', map { $_->{arguments} } @{ $tp->{pieces} // [] });
	my $pieces = $model eq 'tools-gemini' ? 1 : 2;
	ok($tp->{ok} && @{ $tp->{starts} } == 1 && $tp->{starts}[0]{index} == 0
		  && $tp->{starts}[0]{name} eq 'get_weather' && $tp->{starts}[0]{id}
		  && @{ $tp->{pieces} } == $pieces && !(grep { $_->{index} != 0 } @{ $tp->{pieces} })
		  && (eval { decode_json($args)->{city} } // '') eq 'Paris' && $tp->{finish} eq 'tool_calls',
		"openai tool call streamed from $model: a start, then $pieces piece(s) of arguments")
	  or diag(explain($tp));
	next if $model eq 'tools-gemini';
	ok($tp->{ok} && defined $tp->{first_tool_ms} && $tp->{first_tool_ms} + 200 < $tp->{end_ms},
		sprintf("openai tool call streamed from $model: its first chunk %.0f ms before the end (%.0f ms)",
			($tp->{end_ms} // 0) - ($tp->{first_tool_ms} // 0), $tp->{end_ms} // -1))
	  or diag(explain($tp));
}

# The ids of the mock's three calls from a tools3 model, as a client of an
# API gets them: the provider's, or made up by llmgw with $made_up (Gemini's
# calls have none)
sub tools3_ids
{
	my ($model, $made_up) = @_;
	return map { "${made_up}_$_" } 0 .. 2 if $model eq 'tools3-gemini';
	my $prefix = $model eq 'tools3' ? 'call_mock' : 'toolu_mock';
	return ($prefix, "${prefix}_1", "${prefix}_2");
}

# Three calls at once, the first without arguments: in order, each with its
# id (made up for Gemini's, which have none), plain and streamed alike
for my $model (qw(tools3 tools3-claude tools3-gemini))
{
	my $t3 = $o->{"tools3_$model"};
	my @ids = tools3_ids($model, 'call_llmgw');
	for my $how (qw(plain streamed))
	{
		my @calls = @{ $t3->{$how} // [] };
		my @args = map { eval { decode_json($_->{arguments}) } } @calls;
		ok($t3->{ok} && @calls == 3 && join(',', map { $_->{id} } @calls) eq join(',', @ids)
			  && !(grep { $_->{name} ne 'get_weather' } @calls) && @args == 3
			  && !%{ $args[0] } && $args[1]{city} eq 'Paris' && $args[2]{city} eq 'Paris'
			  && !(grep { $_ ne 'tool_calls' } @{ $t3->{finish} }),
			"openai three tool calls from $model, $how: in order, ids, the first without arguments")
		  or diag(explain($t3));
	}
}

my $js = $o->{json_mode};
my $echoed = $js->{ok} ? eval { decode_json($js->{text}) } : undef;
ok($echoed && $echoed->{response_format}{type} eq 'json_object',
	'openai JSON mode: response_format json_object reaches the provider, the answer is JSON')
  or diag(explain($js));

my $e1 = $o->{embed_one};
my $v1 = $e1->{ok} ? $e1->{data}[0]{embedding} : undef;
ok($e1->{ok} && $e1->{object} eq 'list' && scalar(@{ $e1->{data} }) == 1
	  && ref($v1) eq 'ARRAY' && scalar(@$v1) == 8
	  && !grep({ !defined $_ || $_ < -1 || $_ > 1 } @$v1),
	'openai embeddings of a string: one vector of 8 floats (base64, decoded by the SDK)')
  or diag(explain($e1));
my $el = $o->{embed_list};
my $ef = $o->{embed_float};
my $same = $el->{ok} && $ef->{ok} && scalar(@{ $el->{data} }) == 3;
for my $i (0 .. 2)
{
	last unless $same;
	my ($b64, $flt) = ($el->{data}[$i], $ef->{data}[$i]);
	$same &&= $b64->{index} == $i && scalar(@{ $b64->{embedding} }) == 8;
	$same &&= abs($b64->{embedding}[$_] - $flt->{embedding}[$_]) < 1e-6 for 0 .. 7;
}
ok($same, 'openai embeddings of a list: 3 vectors in order, base64 equal to encoding_format float')
  or diag(explain([ $el, $ef ]));
ok($same && join(',', @{ $el->{data}[0]{embedding} }) eq join(',', @$v1)
	  && join(',', @{ $el->{data}[0]{embedding} }) ne join(',', @{ $el->{data}[1]{embedding} }),
	'openai embeddings: the same string gives the same vector, another string another');
my ($t1, $tt) = @$o{qw(embed_tokens_one embed_tokens)};
ok($t1->{ok} && $tt->{ok} && @{ $t1->{data} } == 1 && @{ $tt->{data} } == 2
	  && join(',', @{ $t1->{data}[0]{embedding} }) eq join(',', @{ $tt->{data}[0]{embedding} })
	  && join(',', @{ $tt->{data}[0]{embedding} }) ne join(',', @{ $tt->{data}[1]{embedding} })
	  && $t1->{usage}{prompt_tokens} == 2 && $tt->{usage}{prompt_tokens} == 3,
	'openai embeddings of token arrays (one, two): passed to the deployment, a vector each, a token per integer')
  or diag(explain([$t1, $tt]));
error_is($o->{embed_tokens_gemini}, 'BadRequestError', 400, 'invalid_request',
	'openai embeddings of token arrays to a Gemini deployment, which embeds text only: BadRequestError');
like($o->{embed_tokens_gemini}{message} // '', qr/Gemini embeds text only/,
	'openai embeddings of token arrays to Gemini: refused by llmgw, saying why (nothing sent)');
error_is($o->{embed_tokens_mixed}, 'BadRequestError', 400, 'invalid_request',
	'openai embeddings of strings and token arrays mixed: BadRequestError');

my $m = $o->{models};
is($m->{ok} ? join(',', @{ $m->{ids} }) : 'error', 'demo,priced',
	'openai models.list: only the aliases of the key allow-list') or diag(explain($m));
ok($m->{ok} && (grep { $_ eq 'embed' } @{ $m->{all} }) && (grep { $_ eq 'late' } @{ $m->{all} }),
	'openai models.list: a key without allow-list sees every alias');
my @lp_expected = map { [ $_, -0.125, 2 ] } ('Hello!', ' You', ' said:', ' two', ' words');
for my $k (qw(logprobs logprobs_stream))
{
	is_deeply($o->{$k}{ok} ? $o->{$k}{content} : $o->{$k}, \@lp_expected,
		"openai $k: one entry per token of the answer, with its top_logprobs"
		  . ($k eq 'logprobs_stream' ? ' (the stream helper joins the final chunk\'s list)' : ''));
}
is(join(' ', map { $o->{logprobs_refused}{$_} // 'none' } qw(ok status class)), '0 400 BadRequestError',
	'openai logprobs to an Anthropic deployment: 400, not an answer without them')
  or diag(explain($o->{logprobs_refused}));
is($o->{model_one}{ok} ? $o->{model_one}{id} : 'error', 'demo', 'openai models.retrieve of an allowed alias');
error_is($o->{model_hidden}, 'NotFoundError', 404, 'unknown_model',
	'openai models.retrieve of an alias outside the allow-list: NotFoundError');

my $tg = $o->{tags};
my $tid = $tg->{headers}{'x-request-id'} // '';
is(q1("SELECT tags = '{\"user\":\"alice\",\"project\":\"apollo\",\"source\":\"sdk-test\"}'::jsonb
	    FROM llmgw.usage WHERE request_id = '$tid'"), 't',
	'openai user, metadata and x-llmgw-tags land in usage.tags (metadata over the header)')
  or diag(q1("SELECT tags FROM llmgw.usage WHERE request_id = '$tid'"));

# --- 2. every error class as the SDK's exception -------------------------------

my $sp = $o->{stream_plain};
ok($sp->{ok} && $sp->{text} eq $plain->{text} && !defined $sp->{usage} && $sp->{finish} eq 'stop'
	  && $sp->{llmgw} && $sp->{llmgw}{request_id},
	'openai chat stream without include_usage: no usage chunk, the proof on the finish chunk')
  or diag(explain($sp));
my $ab = $o->{abort};
my $abid = $ab->{headers}{'x-request-id'} // '00000000-0000-0000-0000-000000000000';
ok($ab->{ok} && $ab->{text} eq 'Hello!'
	  && $node->poll_query_until('postgres',
		"SELECT string_agg(status || ' ' || error_class, ',') FROM llmgw.usage WHERE request_id = '$abid'",
		'cancelled cancelled'),
	'openai stream aborted by the client after its first text: the usage row says cancelled')
  or diag(explain($ab));
is($plain->{sdk_request_id} // 'none', $rid, "openai SDK: the response's _request_id is llmgw's x-request-id");
my $pt = $o->{passthrough};
my $ptb = $pt->{ok} ? eval { decode_json($pt->{text}) } : undef;
ok($ptb && $ptb->{messages}[0]{role} eq 'system' && $ptb->{messages}[0]{content} eq 'be brief'
	  && $ptb->{max_completion_tokens} == 500 && $ptb->{seed} == 7 && abs($ptb->{temperature} - 0.2) < 1e-9,
	'openai: a system message, max_completion_tokens, seed, temperature reach the provider')
  or diag(explain($pt));
my $ocm = $o->{cache_marks}{ok} ? eval { decode_json($o->{cache_marks}{text}) } : undef;
ok($ocm && $ocm->{system}[0]{text} eq 'Long rules.' && $ocm->{system}[0]{cache_control}{type} eq 'ephemeral'
	  && ($ocm->{cache_control}{ttl} // '') eq '1h',
	'openai: a cache_control on a content part reaches an Anthropic deployment on its block, one on the request on the request')
  or diag(explain($o->{cache_marks}));
is($o->{model_slash}{ok} ? "$o->{model_slash}{id}: $o->{model_slash}{text}" : 'error',
	'acme/fast: Hello! You said: slash', 'openai: an alias with a slash, retrieved and called')
  or diag(explain($o->{model_slash}));
my $tr = $o->{tool_result};
my $sent = $tr->{ok} ? eval { decode_json($tr->{text}) } : undef;
ok($sent && $sent->{messages}[1]{tool_calls}[0]{id} eq 'call_1'
	  && $sent->{messages}[2]{role} eq 'tool' && $sent->{messages}[2]{tool_call_id} eq 'call_1'
	  && $sent->{messages}[2]{content} eq 'sunny, 21 C' && $sent->{tools}[0]{function}{name} eq 'get_weather',
	'openai tools: the tool result sent back reaches the provider as a tool message')
  or diag(explain($tr));
my $sb = $o->{stream_broken};
ok($sb->{ok} && $sb->{text} eq $plain->{text} && $sb->{thrown}
	  && $sb->{thrown}{class} eq 'APIError' && !defined $sb->{thrown}{status}
	  && $sb->{thrown}{code} eq 'server' && $sb->{thrown}{body}{type} eq 'api_error',
	'openai stream broken by the provider after its text: the SDK throws APIError, code server')
  or diag(explain($sb));
my $e = scenario('errors', revoke_id => $key_ids{revoke}, rpm => 2);

error_is($e->{unknown_key}, 'AuthenticationError', 401, 'invalid_key', 'unknown key: AuthenticationError, code invalid_key');
error_is($e->{missing_key}, 'AuthenticationError', 401, 'missing_key', 'missing key: AuthenticationError, code missing_key');
ok($e->{before_revoke}{ok} && $e->{revoke_sql}{ok}, 'a key works until it is revoked')
  or diag(explain([ $e->{before_revoke}, $e->{revoke_sql} ]));
ok($e->{revoke_reused} && !$e->{revoke_reused}[0] && $e->{revoke_reused}[1],
	'revoked key: the next call goes over the same kept-alive connection')
  or diag(explain($e->{revoke_reused}));
error_is($e->{revoked}, 'AuthenticationError', 401, 'invalid_key',
	'revoked key, same client and connection: the next call is an AuthenticationError');
error_is($e->{revoked_models}, 'AuthenticationError', 401, 'invalid_key',
	'revoked key: models.list is an AuthenticationError too');
error_is($e->{not_allowed}, 'PermissionDeniedError', 403, 'not_allowed',
	'model outside the allow-list: PermissionDeniedError, code not_allowed');
error_is($e->{unknown_model}, 'NotFoundError', 404, 'unknown_model', 'unknown model: NotFoundError, code unknown_model');
ok($e->{budget_first}{ok}, 'budget of one call: the first call passes') or diag(explain($e->{budget_first}));
error_is($e->{budget}, 'RateLimitError', 429, 'budget_exhausted',
	'exhausted hard budget: RateLimitError, code budget_exhausted');
ok($e->{daily_first}{ok}, 'daily budget of one call: the first call passes') or diag(explain($e->{daily_first}));
error_is($e->{daily}, 'RateLimitError', 429, 'budget_exhausted', 'exhausted daily budget: RateLimitError, code budget_exhausted');
my $until_midnight = q1("SELECT ceil(extract(epoch FROM llmgw.period_end('day') - now()))");
my $daily_retry = $e->{daily}{headers}{'retry-after'};
ok(defined $daily_retry && $daily_retry =~ /^\d+$/ && $daily_retry > 0 && abs($daily_retry - $until_midnight) <= 60,
	'exhausted daily budget: Retry-After is the end of the period (' . ($daily_retry // 'none')
	  . " s, $until_midnight s to go)") or diag(explain($e->{daily}));
ok(!defined $e->{budget}{headers}{'retry-after'}, 'exhausted lifetime budget: no Retry-After (it never resets)')
  or diag(explain($e->{budget}));
ok(!(grep { !$_->{ok} } @{ $e->{rpm_allowed} }), 'rpm limit 2: two calls pass')
  or diag(explain($e->{rpm_allowed}));
error_is($e->{rpm}, 'RateLimitError', 429, 'local_rate_limit', 'rpm limit: RateLimitError, code local_rate_limit');
error_is($e->{bad_tags}, 'BadRequestError', 400, 'invalid_tags', 'x-llmgw-tags not a JSON object: BadRequestError, code invalid_tags');
my $retry = $e->{rpm}{headers}{'retry-after'};
ok(defined $retry && $retry =~ /^\d+$/ && $retry > 0 && $retry <= 60,
	'rpm limit: a Retry-After header of a positive number of seconds (' . ($retry // 'none') . ')')
  or diag(explain($e->{rpm}));
error_is($e->{no_messages}, 'BadRequestError', 400, 'invalid_request', 'messages missing: BadRequestError, code invalid_request');
error_is($e->{context}, 'BadRequestError', 400, 'context_length', 'context too long: BadRequestError, code context_length');
error_is($e->{server}, 'InternalServerError', 502, 'server', 'provider 500: InternalServerError 502, code server');
is($e->{server}{headers}{'x-llmgw-attempts'} // 'none', '3', 'provider 500: after 3 attempts (llmgw.max_retries 2)');
error_is($e->{timeout}, 'InternalServerError', 504, 'timeout', 'provider timeout: InternalServerError 504, code timeout');
error_is($e->{stream_server}, 'InternalServerError', 502, 'server',
	'a stream that fails before its first byte: InternalServerError 502 from create()');

# every error: the OpenAI envelope, the code in the body and the header
my @errors = grep { ref($_) eq 'HASH' && !$_->{ok} } values %$e;
my @bad = grep {
	my $b = $_->{body} // {};
	!(defined $b->{code} && $b->{code} eq ($_->{headers}{'x-llmgw-error-code'} // '')
	  && defined $b->{message} && defined $b->{type} && exists $b->{param}
	  && $_->{headers}{'content-type'} =~ m{^application/json})
} @errors;
ok(@errors == 15 && !@bad, scalar(@errors) . ' errors: each body {message, type, param, code} with the x-llmgw-error-code header')
  or diag(explain(\@bad));
my @no_id = grep { !$_->{headers}{'x-request-id'} } map { $e->{$_} }
  qw(budget rpm context server timeout not_allowed unknown_model);
ok(!@no_id, 'errors of calls carry x-request-id') or diag(explain(\@no_id));
is(q1("SELECT string_agg(DISTINCT error_class, ',' ORDER BY error_class) FROM llmgw.usage
	    WHERE request_id IN ('" . join("','", map { $e->{$_}{headers}{'x-request-id'} // '00000000-0000-0000-0000-000000000000' } qw(context server timeout)) . "')"),
	'context_length,server,timeout', 'the failed calls have usage rows with their error class');

# --- 3. Anthropic -------------------------------------------------------------------

my $ai = scenario('aisdk');
for my $provider (qw(compat openai_chat anthropic))
{
	for my $how (qw(text stream))
	{
		my $r = $ai->{"${provider}_$how"} // {};
		ok($r->{ok} && ($r->{text} // '') eq 'Hello! You said: hello from the ai sdk'
			  && ($r->{usage}{input} // 0) > 0 && ($r->{usage}{output} // 0) == 8,
			"AI SDK, $provider provider, $how: the answer and its usage")
		  or diag(explain($r));
	}
}
for my $provider (qw(compat anthropic))
{
	my $r = $ai->{"${provider}_tools"} // {};
	ok($r->{ok} && $r->{steps} == 2 && ($r->{calls}[0][0] // '') eq 'get_weather'
		  && ($r->{results}[0][0] // '') eq 'sunny in Paris' && $r->{second_request} =~ /sunny in Paris/,
		"AI SDK, $provider provider: a tool loop, the tool's result sent back on the next step")
	  or diag(explain($r));
}
for my $how (qw(text stream))
{
	my $r = $ai->{"responses_$how"} // {};
	ok($r->{ok} && ($r->{text} // '') eq 'Hello! You said: hello from the ai sdk'
		  && ($r->{usage}{input} // 0) > 0 && ($r->{usage}{output} // 0) == 8,
		"AI SDK, the OpenAI provider's default model (the Responses API), $how: the answer and its usage")
	  or diag(explain($r));
}
{
	my $r = $ai->{responses_tools} // {};
	ok($r->{ok} && $r->{steps} == 2 && ($r->{calls}[0][0] // '') eq 'get_weather'
		  && ($r->{results}[0][0] // '') eq 'sunny in Paris' && $r->{second_request} =~ /sunny in Paris/,
		'AI SDK, the Responses API: a tool loop, the function call output sent back')
	  or diag(explain($r));
}

my $rs = scenario('responses');
my $rp = $rs->{plain} // {};
my $rrid = $rp->{headers}{'x-request-id'} // '00000000-0000-0000-0000-000000000000';
(my $rhex = $rrid) =~ s/-//g;
ok($rp->{ok} && ($rp->{text} // '') eq 'Hello! You said: hello from the responses api' && $rp->{status} eq 'completed'
	  && $rp->{id} eq "resp_$rhex" && join(',', map { $_->{type} } @{ $rp->{output} }) eq 'message'
	  && $rp->{usage}{output_tokens} == 8 && $rp->{usage}{total_tokens} == $rp->{usage}{input_tokens} + 8,
	'Responses API: a Response, its id the usage row\'s request id, its usage')
  or diag(explain($rp));
is(q1("SELECT status || '|' || output_tokens || '|' || (tags = '{\"user\":\"carol\",\"source\":\"responses\"}'::jsonb)::int
         || '|' || input_tokens FROM llmgw.usage WHERE request_id = '$rrid'"),
	"ok|8|1|$rp->{usage}{input_tokens}", 'Responses API: its usage row, with user and metadata as tags and the instructions counted');
for my $k (qw(logprobs logprobs_stream))
{
	is_deeply($rs->{$k}{ok} ? $rs->{$k}{content} : $rs->{$k},
		[ map { [ $_, -0.125, 1 ] } ('Hello!', ' You', ' said:', ' two', ' words') ],
		"Responses API $k: include message.output_text.logprobs gives the output_text's logprobs");
}
my $rst = $rs->{stream} // {};
ok($rst->{ok} && $rst->{text} eq 'Hello! You said: hello from the responses api' && $rst->{final} eq $rst->{text}
	  && join(',', @{ $rst->{types} }[0 .. 3]) eq
	  'response.created,response.in_progress,response.output_item.added,response.content_part.added'
	  && $rst->{types}[-1] eq 'response.completed' && ($rst->{usage}{output_tokens} // 0) == 8
	  && ($rst->{proof}{request_id} // '') =~ /^[0-9a-f-]{36}$/,
	'Responses API streamed: the events in order, the text piece by piece, the final Response, the proof at the end')
  or diag(explain($rst));
my $rt = $rs->{tools} // {};
my $rsent = $rt->{ok} ? eval { decode_json($rt->{sent}) } : undef;
ok($rt->{ok} && ($rt->{call}{name} // '') eq 'get_weather' && ($rt->{call}{arguments} // '') eq '{"city":"Paris"}'
	  && $rsent && $rsent->{messages}[1]{tool_calls}[0]{id} eq $rt->{call}{call_id}
	  && $rsent->{messages}[2]{role} eq 'tool' && $rsent->{messages}[2]{content} eq 'sunny, 21 C',
	'Responses API: a function call, sent back with its output as the chat turn of a tool call and its result')
  or diag(explain($rt));
my $rstt = $rs->{stream_tools} // {};
ok($rstt->{ok} && ($rstt->{output}[0]{type} // '') eq 'function_call'
	  && ($rstt->{output}[0]{arguments} // '') eq '{"city":"Paris"}' && join('', @{ $rstt->{pieces} }) eq '{"city":"Paris"}',
	'Responses API streamed: a function call, its arguments in pieces')
  or diag(explain($rstt));
my $rj = $rs->{json} // {};
my $rjsent = $rj->{ok} ? eval { decode_json($rj->{sent}) } : undef;
ok($rjsent && $rjsent->{response_format}{type} eq 'json_schema' && $rjsent->{response_format}{json_schema}{name} eq 'city'
	  && !exists $rjsent->{metadata},
	'Responses API: text.format json_schema as the chat request\'s response_format; metadata (tags) not sent on')
  or diag(explain($rj));
my $rab = $rs->{abort} // {};
my $rabid = $rab->{headers}{'x-request-id'} // '00000000-0000-0000-0000-000000000000';
ok($rab->{ok} && $rab->{text} eq 'Hello!'
	  && $node->poll_query_until('postgres',
		"SELECT string_agg(status || ' ' || error_class, ',') FROM llmgw.usage WHERE request_id = '$rabid'",
		'cancelled cancelled'),
	'Responses API: a stream aborted by the client after its first text: the usage row says cancelled')
  or diag(explain($rab));
error_is($rs->{stored}, 'BadRequestError', 400, 'invalid_request',
	'Responses API: previous_response_id refused (llmgw keeps no responses)');
like($rs->{stored}{message} // '', qr/previous_response_id/, 'Responses API: the refusal names previous_response_id');
error_is($rs->{unknown_model}, 'NotFoundError', 404, 'unknown_model',
	'Responses API: an unknown model is the SDK\'s NotFoundError');

my $a = scenario('anthropic');

my $am = $a->{plain}{message} // {};
ok($a->{plain}{ok} && $am->{type} eq 'message' && $am->{role} eq 'assistant'
	  && $am->{content}[0]{type} eq 'text'
	  && $am->{content}[0]{text} eq 'Hello! You said: hello from the anthropic sdk'
	  && $am->{stop_reason} eq 'end_turn',
	'anthropic messages.create: a text block, stop_reason end_turn') or diag(explain($a->{plain}));
ok($am->{usage} && $am->{usage}{input_tokens} > 0 && $am->{usage}{output_tokens} > 0,
	'anthropic messages.create: usage input_tokens and output_tokens') or diag(explain($am->{usage}));
my $aid = $a->{plain}{headers}{'x-request-id'} // '';
is(q1("SELECT count(*) || '|' || min(key_id) || '|' || min(input_tokens) || '|' || min(output_tokens)
	    FROM llmgw.usage WHERE request_id = '$aid'"),
	"1|$key_ids{main}|" . ($am->{usage}{input_tokens} // '') . '|' . ($am->{usage}{output_tokens} // ''),
	'anthropic messages.create: x-request-id is its usage row, same tokens');
is(q1("SELECT tags = '{\"user\":\"bob\",\"source\":\"anthropic-sdk\"}'::jsonb FROM llmgw.usage WHERE request_id = '$aid'"),
	't', 'anthropic metadata.user_id and x-llmgw-tags land in usage.tags')
  or diag(q1("SELECT tags FROM llmgw.usage WHERE request_id = '$aid'"));
my $as = $a->{stream};
my $asm = $as->{message} // {};
ok($as->{ok} && join('', @{ $as->{texts} }) eq $am->{content}[0]{text} && @{ $as->{texts} } > 1
	  && $asm->{content}[0]{text} eq $am->{content}[0]{text},
	'anthropic messages.stream: the text events make the answer, finalMessage has it')
  or diag(explain($as));
ok($as->{ok} && defined $as->{first_text_ms} && $as->{first_text_ms} + 300 < $as->{end_ms},
	sprintf('anthropic messages.stream: the first text arrives as the provider sends it (%.0f ms of %.0f)',
		$as->{first_text_ms} // -1, $as->{end_ms} // -1)) or diag(explain($as));
ok($as->{ok} && $asm->{stop_reason} eq 'end_turn' && $asm->{usage}{output_tokens} > 0
	  && $as->{events}[0] eq 'message_start' && $as->{events}[-1] eq 'message_stop',
	'anthropic messages.stream: message_start .. message_stop, stop_reason and usage')
  or diag(explain($as));
my $asid = $as->{headers}{'x-request-id'} // '';
ok($as->{ok} && $as->{proof} && $as->{proof}{request_id} eq $asid && $as->{proof}{deployment} eq 'mock/mock-model;pace:100'
	  && $as->{proof}{attempts} == 1,
	'anthropic messages.stream: message_delta carries the proof (request_id = x-request-id)')
  or diag(explain($as));
my $at = $a->{tools}{message} // {};
my ($tu) = grep { $_->{type} eq 'tool_use' } @{ $at->{content} // [] };
ok($a->{tools}{ok} && $tu && $tu->{name} eq 'get_weather' && $tu->{id}
	  && ref($tu->{input}) eq 'HASH' && ($tu->{input}{city} // '') eq 'Paris'
	  && $at->{stop_reason} eq 'tool_use',
	'anthropic tools: a tool_use block with its input, stop_reason tool_use') or diag(explain($a->{tools}));
error_is({ %{ $a->{bad_key} }, code => $a->{bad_key}{body}{error}{code} },
	'AuthenticationError', 401, 'invalid_key', 'anthropic unknown key: AuthenticationError, code invalid_key');
is($a->{bad_key}{body}{type} // '', 'error', 'anthropic error envelope: {"type": "error", "error": {...}}');
error_is({ %{ $a->{unknown_model} }, code => $a->{unknown_model}{body}{error}{code} },
	'NotFoundError', 404, 'unknown_model', 'anthropic unknown model: NotFoundError, code unknown_model');
error_is({ %{ $a->{not_allowed} }, code => $a->{not_allowed}{body}{error}{code} },
	'PermissionDeniedError', 403, 'not_allowed', 'anthropic model outside the allow-list: PermissionDeniedError');

my $ats = $a->{tools_stream}{message} // {};
my ($tus) = grep { $_->{type} eq 'tool_use' } @{ $ats->{content} // [] };
ok($a->{tools_stream}{ok} && $tus && $tus->{name} eq 'get_weather' && ($tus->{input}{city} // '') eq 'Paris'
	  && $ats->{stop_reason} eq 'tool_use' && @{ $a->{tools_stream}{json} } > 0,
	'anthropic tools streamed: input_json_delta events assemble the tool_use input')
  or diag(explain($a->{tools_stream}));
for my $model (qw(tools-paced tools-claude tools-gemini))
{
	my $tp = $a->{"tools_pieces_$model"};
	my ($use) = grep { $_->{type} eq 'tool_use' } @{ $tp->{message}{content} // [] };
	my $pieces = $model eq 'tools-gemini' ? 1 : 2;
	ok($tp->{ok} && $use && $use->{name} eq 'get_weather' && $use->{id}
		  && ($use->{input}{city} // '') eq 'Paris' && @{ $tp->{json} } == $pieces
		  && join(',', @{ $tp->{blocks} }) eq 'tool_use' && $tp->{message}{stop_reason} eq 'tool_use',
		"anthropic tool call streamed from $model: a tool_use block, its input in $pieces piece(s)")
	  or diag(explain($tp));
	next if $model eq 'tools-gemini';
	ok($tp->{ok} && defined $tp->{first_json_ms} && $tp->{first_json_ms} + 100 < $tp->{end_ms},
		sprintf("anthropic tool call streamed from $model: its first piece %.0f ms before the end (%.0f ms)",
			($tp->{end_ms} // 0) - ($tp->{first_json_ms} // 0), $tp->{end_ms} // -1))
	  or diag(explain($tp));
}
for my $model (qw(tools3 tools3-claude tools3-gemini))
{
	my $t3 = $a->{"tools3_$model"};
	my @ids = tools3_ids($model, 'toolu_llmgw');
	for my $how (qw(plain streamed))
	{
		my @uses = @{ $t3->{$how} // [] };
		ok($t3->{ok} && @uses == 3 && join(',', map { $_->{id} } @uses) eq join(',', @ids)
			  && !(grep { $_->{name} ne 'get_weather' } @uses)
			  && !%{ $uses[0]{input} } && $uses[1]{input}{city} eq 'Paris' && $uses[2]{input}{city} eq 'Paris'
			  && join(',', @{ $t3->{blocks} }) eq 'tool_use,tool_use,tool_use'
			  && !(grep { $_ ne 'tool_use' } @{ $t3->{stop} }),
			"anthropic three tool calls from $model, $how: three tool_use blocks in order, the first input {}")
		  or diag(explain($t3));
	}
}
my $cu = $a->{cache_usage};
my $acu = $cu->{usage} // {};
ok($cu->{ok} && $acu->{cache_read_input_tokens} == 20 && $acu->{cache_creation_input_tokens} == 5
	  && $acu->{input_tokens} > 0 && ($cu->{openai_usage}{prompt_tokens_details}{cached_tokens} // -1) == 20
	  && $cu->{openai_usage}{prompt_tokens} == $acu->{input_tokens} + 25,
	'prompt cache: reads and writes reported apart (Anthropic API), cached_tokens within prompt_tokens (OpenAI API)')
  or diag(explain($cu));
for my $api (qw(anthropic openai))
{
	my $h = ($api eq 'anthropic' ? $cu->{headers} : $cu->{openai_headers}) // {};
	my $rid = $h->{'x-request-id'} // '00000000-0000-0000-0000-000000000000';
	my $cost = ($h->{'x-llmgw-cost'} // '') =~ /^[0-9.]+$/ ? $h->{'x-llmgw-cost'} : '-1';
	is(q1(qq{SELECT u.cached_input_tokens || '|' || u.cache_write_tokens || '|'
	                || (u.cost = llmgw.cost(p, u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_tokens))::int
	                || '|' || (u.cost < llmgw.cost(p, u.input_tokens, u.output_tokens))::int
	                || '|' || (u.cost = $cost)::int
	           FROM llmgw.usage u JOIN llmgw.prices p ON p.id = u.price_id WHERE u.request_id = '$rid'}),
		'20|5|1|1|1', "prompt cache, $api API: the usage row counts the reads and writes and prices them at their rates, less than uncached")
	  or diag(explain($h));
}
my $th = $a->{thinking};
my $thought = 'Thinking about: two and two?';
ok($th->{ok} && (grep { ($_->{type} // '') eq 'thinking' && $_->{thinking} eq $thought && $_->{signature} =~ /^mocksig-/ }
		($th->{plain}[0], $th->{streamed}[0])) == 2
	  && $th->{plain}[1]{type} eq 'text' && $th->{streamed}[1]{type} eq 'text'
	  && $th->{streamed}[0]{signature} eq $th->{plain}[0]{signature}
	  && join(',', @{ $th->{deltas} }) eq 'signature_delta,text_delta,thinking_delta',
	'anthropic extended thinking: a signed thinking block before the text, plain and streamed (thinking_delta, signature_delta)')
  or diag(explain($th));
ok($th->{ok} && ($th->{next}[0]{thinking} // '') eq 'Thinking about: and three?'
	  && !$th->{altered}{ok} && ($th->{altered}{class} // '') eq 'BadRequestError'
	  && $th->{altered}{message} =~ /signature/,
	'anthropic extended thinking: the blocks sent back on the next turn as they came; an altered one is the provider\'s 400')
  or diag(explain($th));
ok($th->{ok} && ($th->{openai}{reasoning_content} // '') eq $thought
	  && ($th->{openai}{thinking_blocks}[0]{signature} // '') eq $th->{plain}[0]{signature}
	  && $th->{openai_stream}{reasoning} eq $thought
	  && ($th->{openai_stream}{blocks}[0]{signature} // '') eq $th->{plain}[0]{signature},
	'openai SDK, extended thinking: reasoning_content and thinking_blocks, plain and streamed')
  or diag(explain($th));
my ($fresh, $hit) = @{ $th->{cached} // [ {}, {} ] };
ok($th->{ok} && !defined $fresh->{cache} && ($hit->{cache} // '') eq 'hit'
	  && JSON::PP->new->canonical->encode($hit->{content}) eq JSON::PP->new->canonical->encode($fresh->{content})
	  && ($hit->{content}[0]{type} // '') eq 'thinking' && ($th->{ocached}[1]{cache} // '') eq 'hit'
	  && $th->{ocached}[1]{reasoning} eq $thought && $th->{ocached}[1]{text} eq $th->{ocached}[0]{text},
	'extended thinking streamed from the cache: the thinking whole before the text, both APIs')
  or diag(explain($th));
my $rs = $th->{reasoner} // {};
ok($th->{ok} && ($rs->{message}{reasoning_content} // '') eq 'Reasoning about: two and two?'
	  && !$rs->{message}{thinking_blocks} && $rs->{streamed} eq 'Reasoning about: two and two?'
	  && join('|', @{ $rs->{anthropic} // [] }) eq 'text|text',
	'an OpenAI-compatible reasoning_content: to the OpenAI SDK plain and streamed; no thinking block to the Anthropic SDK')
  or diag(explain($rs));
my $sg = $th->{signed} // {};
ok($th->{ok} && ($sg->{first}{tool_calls}[0]{extra_content}{google}{thought_signature} // '') eq 'mocksig-gemini'
	  && ($sg->{streamed_signature} // '') eq 'mocksig-gemini'
	  && ($sg->{second_finish} // '') eq 'tool_calls' && ($sg->{anthropic_stop} // '') eq 'tool_use',
	'Gemini thought signatures: to the OpenAI SDK in extra_content, plain and streamed, sent back on the next turn; an Anthropic client\'s turn goes through')
  or diag(explain($sg));
my $dc = $a->{documents};
my ($doc_claude, $doc_openai, $doc_from_openai) =
  map { $dc->{ok} ? eval { decode_json($dc->{$_}) } : undef } qw(anthropic openai from_openai);
ok($doc_claude && $doc_claude->{messages}[0]{content}[0]{type} eq 'document'
	  && $doc_claude->{messages}[0]{content}[0]{source}{media_type} eq 'application/pdf'
	  && $doc_claude->{messages}[0]{content}[0]{title} eq 'invoice.pdf'
	  && $doc_claude->{messages}[0]{content}[1]{text} eq 'Total: 42 EUR'
	  && $doc_openai && $doc_openai->{messages}[0]{content}[0]{type} eq 'file'
	  && $doc_openai->{messages}[0]{content}[0]{file}{file_data} eq 'data:application/pdf;base64,JVBERi0xLjQK'
	  && $doc_openai->{messages}[0]{content}[0]{file}{filename} eq 'invoice.pdf'
	  && $doc_from_openai && $doc_from_openai->{messages}[0]{content}[0]{type} eq 'document',
	'documents: an Anthropic PDF block reaches an Anthropic deployment as a document and an OpenAI one as a file part; a text one as text; an OpenAI file part reaches Anthropic as a document')
  or diag(explain($dc));
my $cm = $a->{cache_marks};
my ($to_claude, $to_openai) = map { $cm->{ok} ? eval { decode_json($cm->{$_}) } : undef } qw(anthropic openai);
my $cmm = $to_claude ? $to_claude->{messages} : [];
ok($to_claude && $to_claude->{system}[0]{cache_control}{type} eq 'ephemeral' && !$to_claude->{system}[1]{cache_control}
	  && $to_claude->{tools}[0]{cache_control}{type} eq 'ephemeral'
	  && $cmm->[0]{content}[0]{cache_control}{ttl} eq '1h'
	  && $cmm->[1]{content}[0]{type} eq 'tool_use' && $cmm->[1]{content}[0]{cache_control}{type} eq 'ephemeral'
	  && $cmm->[2]{content}[0]{type} eq 'tool_result' && $cmm->[2]{content}[0]{cache_control}{type} eq 'ephemeral',
	'anthropic cache_control: an Anthropic deployment receives every prompt-cache mark where the client put it')
  or diag(explain($cm));
my $auto = $cm->{ok} ? eval { decode_json($cm->{automatic}) } : undef;
is($auto ? $auto->{cache_control}{type} : 'none', 'ephemeral',
	'anthropic cache_control on the request itself (automatic caching) reaches an Anthropic deployment')
  or diag(explain($cm));
ok($to_openai && @{ $to_openai->{messages} } == 4 && ($cm->{openai} // '') !~ /cache_control/,
	'anthropic cache_control: an OpenAI deployment receives the request without them') or diag(explain($cm));
my $atr = $a->{tool_result}{message} // {};
my $asent = $a->{tool_result}{ok} ? eval { decode_json($atr->{content}[0]{text}) } : undef;
ok($asent && $asent->{messages}[1]{tool_calls}[0]{id} eq 'toolu_1'
	  && $asent->{messages}[1]{tool_calls}[0]{function}{name} eq 'get_weather'
	  && $asent->{messages}[2]{role} eq 'tool' && $asent->{messages}[2]{tool_call_id} eq 'toolu_1'
	  && $asent->{messages}[2]{content} eq 'sunny, 21 C',
	'anthropic tools: tool_use and tool_result sent back reach the provider as a call and a tool message')
  or diag(explain($a->{tool_result}));
my $asys = $a->{system}{ok} ? eval { decode_json($a->{system}{message}{content}[0]{text}) } : undef;
ok($asys && $asys->{messages}[0]{role} eq 'system' && $asys->{messages}[0]{content} eq 'be brief'
	  && $asys->{max_tokens} == 500 && $asys->{stop}[0] eq 'END',
	'anthropic: system, max_tokens and stop_sequences reach the provider') or diag(explain($a->{system}));
my $ass = $a->{stop_sequence};
for my $how ('plain', 'streamed', 'vllm', 'vllm_streamed')
{
	my $f = $ass->{$how} // {};
	# (the mock streams words: the space before the sequence is not sent)
	ok($ass->{ok} && ($f->{text} // '') =~ /^Hello! You ?$/ && $f->{stop_reason} eq 'stop_sequence'
		  && ($f->{stop_sequence} // '') eq 'said',
		"anthropic $how: a stop sequence ends the answer, and stop_sequence says which ("
		  . ($how =~ /vllm/ ? "an OpenAI-compatible deployment that says, as vLLM's stop_reason" : 'Anthropic deployment') . ')')
	  or diag(explain($ass));
}
ok($ass->{ok} && $ass->{openai_format}{text} eq 'Hello! You ' && $ass->{openai_format}{stop_reason} eq 'end_turn'
	  && !defined $ass->{openai_format}{stop_sequence},
	'anthropic: from an OpenAI-format deployment, which does not say, stop_sequence is null and stop_reason end_turn')
  or diag(explain($ass));
is(q1(q{SELECT llm_chat('{"model": "claude-plain", "stop": ["said"],
	"messages": [{"role": "user", "content": "stop here"}]}')->>'stop_sequence'}), 'said',
	'llm_chat: the normalised answer has the stop sequence that ended it');
is(q1(q{SELECT llm_chat('{"model": "vllm", "stop": ["said"], "stream": true,
	"messages": [{"role": "user", "content": "stop here"}]}')->>'stop_sequence'}), 'said',
	'llm_chat: and from vLLM\'s stop_reason, streamed');
is(q1(q{SELECT llm_chat('{"model": "claude-plain",
	"messages": [{"role": "user", "content": "stop here"}]}') ? 'stop_sequence'}), 'f',
	'llm_chat: and no stop_sequence member when none did');
ok($a->{models}{ok} && (grep { $_ eq 'demo' } @{ $a->{models}{ids} }) && (grep { $_ eq 'acme/fast' } @{ $a->{models}{ids} }),
	'anthropic models.list: the aliases of the key') or diag(explain($a->{models}));
my $asb = $a->{stream_broken};
ok($asb->{ok} && $asb->{text} eq $am->{content}[0]{text} && $asb->{thrown}
	  && $asb->{thrown}{class} eq 'APIError' && $asb->{thrown}{body}{type} eq 'error'
	  && $asb->{thrown}{body}{error}{type} eq 'api_error',
	'anthropic stream broken by the provider after its text: the SDK throws APIError (an error event)')
  or diag(explain($asb));
is($asb->{thrown}{body}{error}{code} // 'none', 'server',
	'anthropic in-stream error: the error carries the stable code like a plain error body');
# --- 4. the budget race through HTTP ------------------------------------------

my $k = 5;
$node->safe_psql('postgres',
	"SELECT llmgw.create_budget('race', 'key', '$key_ids{race}', 'total', " . ($k * 0.01) . ')');
my $t0 = time;
my $r = scenario('race', n => 4 * $k);
my $race_s = time - $t0;
is($r->{ok}, $k, "budget race: exactly $k of " . 4 * $k . ' concurrent HTTP calls succeed');
is($r->{budget}, 3 * $k, 'budget race: the others are RateLimitError, code budget_exhausted')
  or diag(explain($r->{other}));
is(q1("SELECT (spent = limit_amount) || '|' || reserved || '|' || (ledger_spent = limit_amount)
	    FROM llmgw.budget_status WHERE name = 'race'"), 'true|0|true',
	'budget race: the spend is exactly the limit, nothing left reserved');
is(q1("SELECT count(*) || '|' || sum(cost) FROM llmgw.usage
	    WHERE key_id = $key_ids{race} AND status = 'ok'"), "$k|" . sprintf('%.2f', $k * 0.01),
	'budget race: one priced usage row per successful call');
my $spent = q1("SELECT spent FROM llmgw.budget_status WHERE name = 'race'");
note(sprintf('figures: budget race: %d concurrent HTTP calls, %d succeeded, %d budget_exhausted, spend %s of limit %.2f, %.1f s',
	4 * $k, $r->{ok}, $r->{budget}, $spent, $k * 0.01, $race_s));

# --- 5. one team's rate limit, SQL and HTTP ------------------------------------

$node->safe_psql('postgres', "SELECT llmgw.create_budget('mixed team', 'team', 'mixed', 'day', 100, 'soft')");
my $x = scenario('mixed', limit => 4);
my @steps = @{ $x->{steps} };
ok(@steps == 4 && !(grep { !$_->{ok} } @steps),
	'team rpm 4: two SQL and two HTTP calls of its key pass, alternating') or diag(explain(\@steps));
error_is($x->{http_after}, 'RateLimitError', 429, 'local_rate_limit',
	'team rpm 4: the fifth call, over HTTP, is a RateLimitError');
like($x->{sql_after}{err} // '', qr/LG011: rate limit of team/,
	'team rpm 4: and a call through SQL is refused with LG011') or diag(explain($x->{sql_after}));
is(q1("SELECT count(*) FILTER (WHERE role_name IS NOT NULL) || '|' || count(*) FILTER (WHERE role_name IS NULL)
	         || '|' || count(DISTINCT key_id) || '|' || sum(cost)
	    FROM llmgw.usage WHERE team_id = $mixed_team AND status = 'ok'"),
	"2|2|1|0.04", 'team spend: 2 SQL rows (a role) and 2 HTTP rows (no role) of one key, 0.04');
is(q1("SELECT spent FROM llmgw.budget_status WHERE name = 'mixed team'") . '|'
	  . q1("SELECT sum(cost) FROM llmgw.spend_daily WHERE team = 'mixed'"),
	'0.04|0.04', "the team's budget and daily spend count both kinds");
note(sprintf('figures: mixed: %d calls (2 SQL, 2 HTTP) + 2 refused, team spend %s',
	scalar(@steps), q1("SELECT spent FROM llmgw.budget_status WHERE name = 'mixed team'")));

my $total = q1("SELECT count(DISTINCT request_id) || ' calls, ' || count(DISTINCT request_id) FILTER (WHERE status = 'ok')
	|| ' ok, spend ' || coalesce(sum(cost), 0) FROM llmgw.usage WHERE role_name IS NULL");
note(sprintf('figures: HTTP calls in llmgw.usage: %s; test %.1f s', $total, time - $started));

LlmgwTest::cron_recipe_check($node, $cron_port);
$node->stop;
done_testing();
