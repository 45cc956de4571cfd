# Codex, OpenAI's coding agent CLI (npm @openai/codex, pinned in
# test/http/codex/package.json, installed here with npm ci; skipped only
# when npm is absent), against the front door's Responses API as a team
# points it at llmgw: a model provider in its config.toml whose base_url is
# the front door and whose key, from the environment, a virtual key.  It
# sends what the SDK tests do not: a long developer prompt, a dozen function
# tools with strict schemas, a web search tool (left out by llmgw: it runs
# no built-in tool), reasoning settings, include of encrypted reasoning,
# store false, and on the next turn its function call and the call's output.
#
# - one prompt (codex exec): answered, its usage row the key's;
# - an agent loop: the deployment calls a tool once (tool_once), Codex runs
#   it and sends back the call and its output, the deployment answers: two
#   turns, each with its usage row; on an OpenAI-compatible deployment and
#   on an Anthropic one;
# - a revoked key: Codex reports the 401.
#
# Codex's config here turns off what would reach beyond the front door (its
# update check, analytics, remote models and plugins, and its subagents,
# whose namespaced tools llmgw does not take); checked once with strace: its
# only connections were to the front door, and no name was looked up.
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

my $dir = abs_path("$FindBin::Bin/../http/codex");

plan skip_all => 'npm is not installed (Codex comes from npm)'
  unless system('sh', '-c', 'command -v npm >/dev/null && command -v node >/dev/null') == 0;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $node = LlmgwTest::node('codex', 2, conf => "llmgw.http_listen = '127.0.0.1:$port'\n");
(my $mock_root = $ENV{LLMGW_MOCK_URL}) =~ s{/v1$}{};
$node->safe_psql('postgres', qq{
	SELECT llmgw.create_model('cx-model', 'mock', 'mock-model');
	SELECT llmgw.create_model('cx-agent', 'mock', 'mock-model;tool_once');
	SELECT llmgw.create_provider('claude', 'anthropic', '$mock_root/v1', secret => 'env:LLMGW_TEST_KEY');
	SELECT llmgw.create_model('cx-claude-agent', 'claude', 'mock-model;tool_once');
	SELECT llmgw.create_team('coders');
});
my ($key_id, $key) = split /\|/, $node->safe_psql('postgres',
	"SELECT key_id || '|' || api_key FROM llmgw.create_key('coders', 'codex')");

LlmgwTest::npm_ready($dir, 'Codex');

# codex exec --json PROMPT with a model of llmgw and a key: its events
# (agent messages, errors, whether the turn failed)
sub codex
{
	my ($model, $api_key, $prompt) = @_;
	my $home = PostgreSQL::Test::Utils::tempdir('home');
	my $work = PostgreSQL::Test::Utils::tempdir('work');
	my ($out, $err) = ('', '');
	append_to_file("$home/config.toml", <<"TOML");
model = "$model"
model_provider = "llmgw"
check_for_update_on_startup = false

[model_providers.llmgw]
name = "llmgw"
base_url = "http://127.0.0.1:$port/v1"
env_key = "LLMGW_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[agents]
enabled = false

[analytics]
enabled = false

[features]
remote_models = false
plugin_discovery_prefetch = false
apps = false
remote_plugin = false
tool_suggest = false
api_key_model_discovery = false
plugins = false
TOML
	local %ENV = (PATH => $ENV{PATH}, HOME => $home, CODEX_HOME => $home, LLMGW_KEY => $api_key);
	IPC::Run::run([ "$dir/node_modules/.bin/codex", 'exec', '--skip-git-repo-check', '--json', '-C', $work,
			$prompt ],
		'<', \'', '>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	my %r = (messages => [], errors => [], failed => 0, raw => "$out\n$err");
	for my $line (split /\n/, $out)
	{
		my $e = eval { decode_json($line) } or next;
		my $item = $e->{item} // {};
		push @{ $r{messages} }, $item->{text} if ($item->{type} // '') eq 'agent_message';
		push @{ $r{errors} }, $e->{message} if ($e->{type} // '') eq 'error';
		$r{failed} = 1 if ($e->{type} // '') eq 'turn.failed';
	}
	return \%r;
}

sub q1 { return $node->safe_psql('postgres', shift) }

# --- one prompt ------------------------------------------------------------

my $r = codex('cx-model', $key, 'say hi');
is(join('|', @{ $r->{messages} }), 'Hello! You said: say hi', 'a prompt: answered through the front door')
  or diag($r->{raw});
is(q1(qq{SELECT count(*) || '|' || min(status) || '|' || bool_and(input_tokens > 1000)::int
           FROM llmgw.usage WHERE key_id = $key_id AND model = 'cx-model'}),
	'1|ok|1', "its usage row is the key's, Codex's long prompt in");

# --- an agent loop -----------------------------------------------------------

for my $model (qw(cx-agent cx-claude-agent))
{
	$r = codex($model, $key, 'say hi');
	ok(!$r->{failed} && ($r->{messages}[-1] // '') eq 'Hello! You said: say hi',
		"an agent loop ($model): a tool call, Codex's output of it sent back, then the answer")
	  or diag($r->{raw});
	is(q1(qq{SELECT count(*) || '|' || count(*) FILTER (WHERE status = 'ok')
	           FROM llmgw.usage WHERE key_id = $key_id AND model = '$model'}),
		'2|2', "$model: two turns, each with its usage row");
}

# --- a revoked key -----------------------------------------------------------

$node->safe_psql('postgres', "SELECT llmgw.revoke_key($key_id)");
$r = codex('cx-model', $key, 'say hi again');
ok($r->{failed} && (grep { /401/ } @{ $r->{errors} }), 'a revoked key: Codex reports the 401')
  or diag($r->{raw});

done_testing();
