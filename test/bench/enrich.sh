#!/usr/bin/env bash
# Benchmark (the headline figure): enrich N rows against the mock with 200 ms
# of latency per call at concurrency 256, and in the same run the same N
# calls through Portkey's gateway and through direct HTTP, both driven by
# test/bench/client.mjs at the same concurrency.  The physical limit is
# N x 0.2 s / 256.  Prints wall times, ratios to the limit, the workers' peak
# memory and the usage rows written.
# Usage (root): bash test/bench/enrich.sh [N ...]     (default: 1000 10000)
set -euo pipefail
LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"
llmgw_install_packages
command -v node >/dev/null && command -v npm >/dev/null ||
    { apt-get install -y -q nodejs npm >/dev/null; }
llmgw_build
SIZES=${*:-1000 10000}
CONC=256
LATENCY_MS=200

LLMGW_TMP=$(mktemp -d /tmp/llmgw-bench.XXXXXX)
export LLMGW_TMP
PORTKEY_PID=
trap '[ -n "$PORTKEY_PID" ] && kill $PORTKEY_PID 2>/dev/null; llmgw_cluster_stop; llmgw_mock_stop; rm -rf "$LLMGW_TMP"' EXIT

# Portkey's open-source gateway, bound to 127.0.0.1 by a preload
(cd "$LLMGW_TMP" && npm install --silent --no-audit --no-fund @portkey-ai/gateway >/dev/null 2>&1)
node --require "$LLMGW_ROOT/test/bench/force-local.cjs" \
    "$LLMGW_TMP/node_modules/@portkey-ai/gateway/build/start-server.js" >"$LLMGW_TMP/portkey.log" 2>&1 &
PORTKEY_PID=$!

llmgw_mock_start --threads 2
llmgw_cluster_start
psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" -v lat="$LATENCY_MS" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_model('slow', 'mock', 'mock-model;delay:' || :'lat');
SQL
for _ in $(seq 50); do grep -q "running at" "$LLMGW_TMP/portkey.log" && break; sleep 0.2; done

MODEL="mock-model;delay:$LATENCY_MS"
printf "%-8s %-8s %10s %10s %8s %s\n" rows path seconds limit ratio notes
for n in $SIZES; do
    limit=$(awk -v n="$n" -v c="$CONC" -v l="$LATENCY_MS" 'BEGIN {printf "%.2f", n * l / 1000 / c}')

    # llmgw: CALL llmgw.enrich on a table of n rows
    psql -qX -c "SET client_min_messages = warning; DROP TABLE IF EXISTS items; CREATE TABLE items (id int PRIMARY KEY, body text, out text);
                 INSERT INTO items SELECT i, 'row ' || i FROM generate_series(1, $n) i;" >/dev/null
    before=$(psql -qAtX -c "SELECT count(*) FROM llmgw.usage")
    start=$(date +%s.%N)
    psql -qX -c "CALL llmgw.enrich('items', 'id', 'body', 'out', 'slow', chunk_size => $(( n < 5000 ? n : 5000 )), concurrency => $CONC)" >/dev/null 2>&1
    end=$(date +%s.%N)
    rows=$(( $(psql -qAtX -c "SELECT count(*) FROM llmgw.usage") - before ))
    filled=$(psql -qAtX -c "SELECT count(*) FROM items WHERE out IS NOT NULL")
    mem=$(for p in $(psql -qAtX -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker'"); do
              awk '/VmHWM/ {print $2}' /proc/$p/status; done | sort -n | tail -1)
    secs=$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')
    printf "%-8s %-8s %10s %10s %8s %s\n" "$n" llmgw "$secs" "$limit" \
        "$(awk -v s="$secs" -v l="$limit" 'BEGIN {printf "%.3f", s / l}')" \
        "usage rows $rows, rows filled $filled, worker peak RSS ${mem} kB"

    read -r _ ok failed secs <<<"$(node "$LLMGW_ROOT/test/bench/client.mjs" \
        "$LLMGW_MOCK_URL/chat/completions" "$n" "$CONC" "$MODEL")"
    printf "%-8s %-8s %10s %10s %8s %s\n" "$n" direct "$secs" "$limit" \
        "$(awk -v s="$secs" -v l="$limit" 'BEGIN {printf "%.3f", s / l}')" "ok $ok, failed $failed"

    read -r _ ok failed secs <<<"$(node "$LLMGW_ROOT/test/bench/client.mjs" \
        "http://127.0.0.1:8787/v1/chat/completions" "$n" "$CONC" "$MODEL" \
        "x-portkey-provider:openai" "x-portkey-custom-host:$LLMGW_MOCK_URL")"
    printf "%-8s %-8s %10s %10s %8s %s\n" "$n" portkey "$secs" "$limit" \
        "$(awk -v s="$secs" -v l="$limit" 'BEGIN {printf "%.3f", s / l}')" "ok $ok, failed $failed"
done
