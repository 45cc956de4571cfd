# Claude Code, the CLI (npm @anthropic-ai/claude-code, pinned in
# test/http/claude-code/package.json, installed here with npm ci; skipped
# only when npm is absent), against the front door's Anthropic API as a team
# points it at llmgw: ANTHROPIC_BASE_URL and a virtual key as
# ANTHROPIC_API_KEY, its models llmgw aliases.  It sends what the SDK tests
# do not: a long system prompt of text blocks with prompt-cache marks, a
# system message in the middle of the conversation, adaptive extended
# thinking, two dozen tools, streamed answers, and on the next turn the
# thinking blocks and tool results of the last one.
#
# - one prompt (claude -p): answered, its usage row the key's, the thinking
#   billed as output;
# - an agent loop: the deployment calls a tool every turn; three turns, each
#   sending back the signed thinking blocks the mock checks (an altered or
#   dropped block would be the mock's 400), each with its usage row;
# - the same on other provider kinds: a prompt to an OpenAI-compatible
#   deployment, an agent loop on a Gemini one that checks thought signatures
#   (Claude Code's tool_use blocks cannot carry them: Gemini's skip value);
# - a revoked key: Claude Code reports the 401.
#
# Claude Code talks to nothing else with CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC
# (no update check, telemetry or error reports; checked once with strace:
# its only connections were to the front door).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Cwd qw(abs_path);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LlmgwTest;

my $dir = abs_path("$FindBin::Bin/../http/claude-code");

plan skip_all => 'npm is not installed (Claude Code comes from npm)'
  unless system('sh', '-c', 'command -v npm >/dev/null && command -v node >/dev/null') == 0;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = LlmgwTest::node('claude_code', 2, conf => "llmgw.http_listen = '127.0.0.1:$port'\n");
(my $mock_root = $ENV{LLMGW_MOCK_URL}) =~ s{/v1$}{};
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_provider('claude', 'anthropic', '$mock_root/v1', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_model('cc-model', 'claude', 'mock-model');
	SELECT llmgw.create_model('cc-agent', 'claude', 'mock-model;tool_call');
	SELECT llmgw.create_provider('gem', 'gemini', '$mock_root/v1beta', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_model('cc-gemini-agent', 'gem', 'mock-model;tool_call;thought_signatures');
	SELECT llmgw.create_model('cc-openai', 'mock', 'mock-model');
	SELECT llmgw.create_team('coders');
});
my ($key_id, $key) = split /\|/, $node->safe_psql('postgres',
	"SELECT key_id || '|' || api_key FROM llmgw.create_key('coders', 'claude code')");

LlmgwTest::npm_ready($dir, 'Claude Code');

# claude -p PROMPT --output-format json with model and key, more options in
# @args; its JSON result
sub claude
{
	my ($model, $api_key, $prompt, @args) = @_;
	my $home = PostgreSQL::Test::Utils::tempdir('home');
	my ($out, $err) = ('', '');
	my %env = (
		PATH => $ENV{PATH}, HOME => $home,
		ANTHROPIC_BASE_URL => "http://127.0.0.1:$port", ANTHROPIC_API_KEY => $api_key,
		ANTHROPIC_MODEL => $model, ANTHROPIC_SMALL_FAST_MODEL => 'cc-model',
		CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC => 1, DISABLE_TELEMETRY => 1,
		DISABLE_AUTOUPDATER => 1, DISABLE_ERROR_REPORTING => 1);
	local %ENV = %env;
	IPC::Run::run([ "$dir/node_modules/.bin/claude", '-p', $prompt, '--output-format', 'json', @args ],
		'<', \'', '>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my $res = eval { decode_json($out) };
	diag("claude: $out\n$err") unless $res;
	return $res // {};
}

sub q1 { return $node->safe_psql('postgres', shift) }

# --- one prompt ------------------------------------------------------------

my $r = claude('cc-model', $key, 'say hi');
ok(!$r->{is_error} && ($r->{result} // '') eq 'Hello! You said: say hi' && ($r->{stop_reason} // '') eq 'end_turn',
	'a prompt: answered through the front door')
  or diag(explain($r));
is(q1(qq{SELECT count(*) || '|' || min(status) || '|' || min(output_tokens) || '|' || bool_and(input_tokens > 1000)::int
           FROM llmgw.usage WHERE key_id = $key_id AND model = 'cc-model'}),
	'1|ok|9|1',
	"its usage row is the key's, Claude Code's long prompt in, the adaptive thinking's words billed with the answer's");

# --- an agent loop ---------------------------------------------------------

$r = claude('cc-agent', $key, 'say hi', '--max-turns', '3');
ok(($r->{subtype} // '') eq 'error_max_turns' && !defined $r->{api_error_status}
	  && ($r->{stop_reason} // '') eq 'tool_use',
	'an agent loop: every turn a tool call, until Claude Code stops at its turn limit, with no API error')
  or diag(explain($r));
is(q1(qq{SELECT count(*) || '|' || count(*) FILTER (WHERE status = 'ok')
           FROM llmgw.usage WHERE key_id = $key_id AND model = 'cc-agent'}),
	'3|3', 'three turns, each with its usage row: the thinking blocks and tool results sent back were taken');

# --- other providers behind Claude Code ----------------------------------------

$r = claude('cc-openai', $key, 'say hi');
ok(!$r->{is_error} && ($r->{result} // '') eq 'Hello! You said: say hi',
	'a prompt answered by an OpenAI-compatible deployment (its thinking setting dropped)')
  or diag(explain($r));
$r = claude('cc-gemini-agent', $key, 'say hi', '--max-turns', '3');
ok(($r->{subtype} // '') eq 'error_max_turns' && !defined $r->{api_error_status},
	'an agent loop on a Gemini deployment that checks thought signatures as Gemini 3 does: three turns, no API error')
  or diag(explain($r));
is(q1(qq{SELECT count(*) FILTER (WHERE status = 'ok') FROM llmgw.usage
           WHERE key_id = $key_id AND model IN ('cc-openai', 'cc-gemini-agent')}),
	'4', 'their usage rows');

# --- a revoked key -----------------------------------------------------------

$node->safe_psql('postgres', "SELECT llmgw.revoke_key($key_id)");
$r = claude('cc-model', $key, 'say hi again');
ok($r->{is_error} && ($r->{api_error_status} // 0) == 401, 'a revoked key: Claude Code reports the 401')
  or diag(explain($r));

done_testing();
