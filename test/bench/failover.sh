#!/usr/bin/env bash
# Benchmark: resilience under a flaky deployment.  In one run, at 32 clients
# against the mock with no added latency: (a) a model whose two deployments
# are healthy, (b) a model whose second deployment answers 500 to every
# other request (mock directive fail_every:2).  Prints throughput and p99 of
# both, their ratios, how many errors reached callers (goal: none) and what
# llmgw.deployment_health saw.
# Usage (root): bash test/bench/failover.sh [seconds per run, default 10]
set -euo pipefail
DURATION=${1:-10}
LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"
llmgw_install_packages
llmgw_build

LLMGW_TMP=$(mktemp -d /tmp/llmgw-bench.XXXXXX)
export LLMGW_TMP
trap 'llmgw_cluster_stop; llmgw_mock_stop; rm -rf "$LLMGW_TMP"' EXIT
llmgw_mock_start --threads 1
llmgw_cluster_start
echo "max_connections = 200" >>"$LLMGW_TMP/data/postgresql.conf"
llmgw_cluster_stop
runuser -u postgres -- $PGBIN/pg_ctl -D "$LLMGW_TMP/data" -l "$LLMGW_TMP/server.log" -w start >/dev/null

psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_model('healthy', 'mock', 'dep-a');
SELECT llmgw.create_model('healthy', 'mock', 'dep-b');
SELECT llmgw.create_model('flaky', 'mock', 'dep-c');
SELECT llmgw.create_model('flaky', 'mock', 'dep-d;status:500;fail_every:2');
ALTER DATABASE postgres SET llmgw.retry_base_delay = '5ms';
-- errors are counted, not hidden: pgbench would stop a client at its first
CREATE TABLE bench_errors (model text, sqlstate text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION bench_call(m text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM llm_complete('hello', m);
    RETURN 1;
EXCEPTION WHEN OTHERS THEN
    INSERT INTO bench_errors (model, sqlstate) VALUES (m, SQLSTATE);
    RETURN 0;
END $$;
SQL
chown -R postgres "$LLMGW_TMP"

# through llmgw: prints "p50_ms p99_ms calls_per_s"
run() {
    local model=$1 secs=$2 dir="$LLMGW_TMP/pgbench.$1.$2"
    mkdir -p "$dir" && chown postgres "$dir"
    echo "SELECT bench_call('$model');" >"$dir/call.sql"
    (cd "$dir" && runuser -u postgres -- pgbench -n -h "$PGHOST" -U postgres -c 32 -j 2 \
        -T "$secs" -f "$dir/call.sql" -l postgres >"$dir/summary" 2>&1)
    local tps
    tps=$(awk '/^tps/ {print $3; exit}' "$dir/summary")
    cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n | awk -v tps="$tps" '
        {v[NR] = $1} END {printf "%.3f %.3f %.1f\n", v[int(NR*0.5)]/1000, v[int(NR*0.99)]/1000, tps}'
}

run healthy 2 >/dev/null        # warm-ups
run flaky 2 >/dev/null
read -r hp50 hp99 htps < <(run healthy "$DURATION")
psql -qX -c "TRUNCATE bench_errors" >/dev/null
read -r fp50 fp99 ftps < <(run flaky "$DURATION")

printf "%-8s %-8s %10s %10s %12s\n" clients model p50_ms p99_ms calls_per_s
printf "%-8s %-8s %10s %10s %12s\n" 32 healthy "$hp50" "$hp99" "$htps"
printf "%-8s %-8s %10s %10s %12s\n" 32 flaky "$fp50" "$fp99" "$ftps"
ratio=$(awk -v a="$ftps" -v b="$htps" 'BEGIN {printf "%.3f", a / b}')
p99ratio=$(awk -v a="$fp99" -v b="$hp99" 'BEGIN {printf "%.2f", a / b}')
errors=$(psql -qXAt -c "SELECT count(*) FROM bench_errors WHERE model = 'flaky'")
echo "throughput ratio (flaky/healthy): $ratio  p99 ratio: $p99ratio"
echo "errors surfaced to callers in the flaky run: $errors"
psql -qX -c "SELECT status, count(*) AS attempts FROM llmgw.usage WHERE model = 'flaky' GROUP BY status ORDER BY status"
psql -qX -c "SELECT upstream_model, state, successes, failures, cooldowns, p50_ms, p99_ms
               FROM llmgw.deployment_health WHERE model = 'flaky' ORDER BY upstream_model"
verdict=PASS
awk -v r="$ratio" 'BEGIN {exit !(r >= 0.80)}' || verdict=FAIL
[ "$errors" = 0 ] || verdict=FAIL
echo "goal (>= 0.80 of healthy throughput, no errors surfaced): $verdict"
