#!/usr/bin/env bash
# The demo: install packages, build, start a throwaway cluster and the mock
# provider, register a provider and a model, call it, show the usage row.
set -euo pipefail

LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"

[ "$(id -u)" = 0 ] || { echo "run as root (it installs packages and switches to postgres)"; exit 2; }
llmgw_install_packages
llmgw_build

LLMGW_TMP=$(mktemp -d /tmp/llmgw-demo.XXXXXX)
export LLMGW_TMP
trap 'llmgw_cluster_stop; llmgw_mock_stop; rm -rf "$LLMGW_TMP"' EXIT

export DEMO_KEY=sk-demo-not-a-real-key
LLMGW_SERVER_ENV="DEMO_KEY=$DEMO_KEY"
llmgw_mock_start --require-key "$DEMO_KEY"
# the HTTP front door on loopback (docs/http.md)
HTTP_PORT=$(llmgw_free_port)
LLMGW_EXTRA_CONF="llmgw.http_listen = '127.0.0.1:$HTTP_PORT'"
llmgw_cluster_start

KEYFILE=$LLMGW_TMP/demo.key
psql -X -v ON_ERROR_STOP=1 -v mock_url="$LLMGW_MOCK_URL" -v keyfile="$KEYFILE" -e <<'SQL'
CREATE EXTENSION llmgw;
-- the provider's key stays in the server's environment; only its name is stored
SELECT llmgw.create_provider('mock', 'openai_compatible', :'mock_url', secret => 'env:DEMO_KEY');
SELECT llmgw.create_model('demo', 'mock', 'gpt-4o-mini');
SELECT llm_complete('Say hello', model => 'demo');
\x on
SELECT request_id, role_name, model, provider, upstream_model, status, http_status,
       round(latency_ms::numeric, 2) AS latency_ms, input_tokens, output_tokens,
       cached_input_tokens, reasoning_tokens, cost, currency
  FROM llmgw.usage;
\x off
-- a team, a virtual key (shown once, stored as a hash) and a hard monthly budget
SELECT llmgw.create_team('demo-team');
SELECT api_key AS key FROM llmgw.create_key('demo-team', 'demo key') \gset
SELECT llmgw.create_budget('demo monthly', 'team', 'demo-team', 'month', 1.00);
\set ECHO none
SET llmgw.api_key = :'key';
\echo SET llmgw.api_key = <the key>
\set ECHO queries
SELECT llm_complete('Summarise: the quick brown fox', 'demo', max_tokens => 20);
RESET llmgw.api_key;
-- what finance sees
SELECT team, model, calls, cost FROM llmgw.spend_daily ORDER BY team NULLS FIRST;
SELECT name, limit_amount, spent, reserved, remaining, resets_at FROM llmgw.budget_status;
\set ECHO none
\t on
\a
\o :keyfile
SELECT :'key';
\o
SQL

# The same key and budget through the HTTP front door, as an OpenAI client would call it
KEY=$(tr -d ' \n' <"$KEYFILE")
echo
echo "+ curl http://127.0.0.1:$HTTP_PORT/v1/chat/completions -H 'Authorization: Bearer <the key>' ..."
curl -sS -D - "http://127.0.0.1:$HTTP_PORT/v1/chat/completions" \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"model": "demo", "messages": [{"role": "user", "content": "Hello through the front door"}], "user": "demo-app"}'
echo
psql -X -e -c "SELECT request_id, key_id, model, status, cost, tags FROM llmgw.usage WHERE key_id IS NOT NULL ORDER BY id"

# What finance sees, as one page (docs/spend_report.md): kept after the demo
REPORT=${LLMGW_SPEND_REPORT:-$PWD/llmgw-spend.html}
psql -X -At -v ON_ERROR_STOP=1 -o "$REPORT" \
    -c "SELECT llmgw.spend_report(now() - interval '30 days', now())"
echo
echo "+ SELECT llmgw.spend_report(now() - interval '30 days', now())"
echo "the spend report of the last 30 days is in $REPORT (open it in a browser)"
