#!/usr/bin/env bash
# Benchmark: what llmgw adds to a provider call.  Against the mock with no
# added latency, in one run: (a) direct HTTP to the mock with wrk, (b)
# SELECT llm_complete(...) through llmgw with pgbench; at 1 and 32 clients.
# Prints p50/p99 latency and throughput of both and their ratios, and checks
# that every llmgw call left a committed usage row.
# Usage (root): bash test/bench/overhead.sh [seconds per run, default 10]
set -euo pipefail
DURATION=${1:-10}
LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"
PACKAGES="$PACKAGES wrk"
llmgw_install_packages
llmgw_build

LLMGW_TMP=$(mktemp -d /tmp/llmgw-bench.XXXXXX)
export LLMGW_TMP
trap 'llmgw_cluster_stop; llmgw_mock_stop; rm -rf "$LLMGW_TMP"' EXIT
llmgw_mock_start --threads 1
LLMGW_EXTRA_CONF="max_connections = 200" llmgw_cluster_start

psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_model('bench', 'mock', 'mock-model');
SQL

BODY='{"model":"mock-model","messages":[{"role":"user","content":"hello"}]}'
cat >"$LLMGW_TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.3f %.3f %.1f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests / (summary.duration / 1e6)))
end
LUA
echo "SELECT llm_complete('hello', 'bench');" >"$LLMGW_TMP/call.sql"
chown -R postgres "$LLMGW_TMP"

# direct HTTP: prints "p50_ms p99_ms calls_per_s"
direct() {
    wrk -t"$(( $1 < 2 ? 1 : 2 ))" -c"$1" -d"${DURATION}s" -s "$LLMGW_TMP/post.lua" \
        "$LLMGW_MOCK_URL/chat/completions" | awk '/^RESULT/ {print $2, $3, $4}'
}

# through llmgw: prints "p50_ms p99_ms calls_per_s", from pgbench's per-call log
through_llmgw() {
    local dir="$LLMGW_TMP/pgbench.$1"
    mkdir -p "$dir" && chown postgres "$dir"
    (cd "$dir" && runuser -u postgres -- pgbench -n -h "$PGHOST" -U postgres -c "$1" \
        -j "$(( $1 < 2 ? 1 : 2 ))" -T "$DURATION" -f "$LLMGW_TMP/call.sql" -l postgres \
        >"$dir/summary" 2>&1)
    local tps
    tps=$(awk '/^tps/ {print $3}' "$dir/summary")
    cat "$dir"/pgbench_log.* | awk '{print $3 / 1000}' | sort -n |
        awk -v tps="$tps" '{v[NR] = $1} END {
            printf "%.3f %.3f %.1f\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], tps }'
}

rows_before=$(psql -qAtX -c "SELECT count(*) FROM llmgw.usage")
psql -qAtX -c "SELECT llm_complete('warm up', 'bench')" >/dev/null
direct 1 >/dev/null   # warm up the mock
printf "%-8s %-8s %10s %10s %12s\n" clients path p50_ms p99_ms calls_per_s
for c in 1 32; do
    read -r dp50 dp99 drate <<<"$(direct $c)"
    read -r lp50 lp99 lrate <<<"$(through_llmgw $c)"
    printf "%-8s %-8s %10s %10s %12s\n" "$c" direct "$dp50" "$dp99" "$drate"
    printf "%-8s %-8s %10s %10s %12s\n" "$c" llmgw "$lp50" "$lp99" "$lrate"
    awk -v a="$lp50" -v b="$dp50" -v c="$lrate" -v d="$drate" -v n="$c" 'BEGIN {
        printf "clients=%s  added p50 latency: %.3f ms  latency ratio (llmgw/direct): %.2f  throughput ratio: %.2f\n",
            n, a - b, a / b, c / d }'
done
calls=$(cat "$LLMGW_TMP"/pgbench.*/pgbench_log.* | wc -l)
rows=$(( $(psql -qAtX -c "SELECT count(*) FROM llmgw.usage WHERE status = 'ok'") - rows_before - 1 ))
echo "llmgw calls: $calls  committed usage rows: $rows"
[ "$calls" -eq "$rows" ] || { echo "MISMATCH: some calls have no usage row"; exit 1; }
