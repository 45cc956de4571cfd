#!/usr/bin/env bash
# Benchmark: resilience under a flaky deployment.  In one run, at 32 clients
# against the mock with no added latency: (a) model 'healthy', two healthy
# deployments of equal priority and weight, (b) model 'flaky', two of equal
# priority and weight, the second answering 500 to every other request (mock
# directive fail_every:2).  llmgw.max_retries = 2, llmgw.retry_base_delay =
# 5ms; the cooldown settings keep their defaults (3 failures, 30 s).  Each
# run follows a 2 s warm-up; 'flaky' warms up through its own alias, so the
# measured run starts with both deployments healthy and the cooldown happens
# (or not) inside it.  Prints throughput and p50/p99 of both and their
# ratios, how many errors reached callers (goal: none), the failed attempts
# that were retried or fell back, what llmgw.deployment_health saw, and
# PASS/FAIL against the goal (>= 0.80 of healthy throughput, no errors).
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
LLMGW_EXTRA_CONF="max_connections = 200" llmgw_cluster_start

FLAKY='dep-d;status:500;fail_every:2'
psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" -v flaky="$FLAKY" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_model('healthy', 'mock', 'dep-a');
SELECT llmgw.create_model('healthy', 'mock', 'dep-b');
SELECT llmgw.create_model('flaky', 'mock', 'dep-c');
SELECT llmgw.create_model('flaky', 'mock', :'flaky');
-- the same upstreams under another alias: other deployments, other health
SELECT llmgw.create_model('flaky-warmup', 'mock', 'dep-c');
SELECT llmgw.create_model('flaky-warmup', 'mock', :'flaky');
ALTER DATABASE postgres SET llmgw.max_retries = 2;
ALTER DATABASE postgres SET llmgw.retry_base_delay = '5ms';
-- errors are counted, not hidden: pgbench would stop a client at its first
CREATE TABLE bench_errors (model text, sqlstate text, message text,
                           at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION bench_call(m text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    PERFORM llm_complete('hello', m);
    RETURN 1;
EXCEPTION WHEN OTHERS THEN
    INSERT INTO bench_errors (model, sqlstate, message) VALUES (m, SQLSTATE, SQLERRM);
    RETURN 0;
END $$;
SQL
chown -R postgres "$LLMGW_TMP"

# pgbench at 32 clients through bench_call($1) for $2 seconds, per-call logs
# in $LLMGW_TMP/pgbench.$1.$2
run_pgbench() {
    local dir="$LLMGW_TMP/pgbench.$1.$2"
    mkdir -p "$dir" && chown postgres "$dir"
    echo "SELECT bench_call('$1');" >"$dir/call.sql"
    (cd "$dir" && runuser -u postgres -- pgbench -n -h "$PGHOST" -U postgres -c 32 -j 2 \
        -T "$2" -f "$dir/call.sql" -l postgres >"$dir/summary" 2>&1) || true
}

# through llmgw: prints "p50_ms p99_ms calls_per_s calls failed_transactions aborted_clients"
through_llmgw() {
    local dir="$LLMGW_TMP/pgbench.$1.$DURATION" tps failed aborted calls
    run_pgbench "$1" "$DURATION"
    tps=$(awk '/^tps/ {print $3; exit}' "$dir/summary")
    failed=$(awk '/^number of failed transactions/ {print $5; exit}' "$dir/summary")
    aborted=$(grep -c "client [0-9]* aborted" "$dir/summary" || true)
    calls=$(cat "$dir"/pgbench_log.* | wc -l)
    cat "$dir"/pgbench_log.* | awk '{print $3 / 1000}' | sort -n |
        awk -v tps="${tps:-0}" -v n="$calls" -v f="${failed:-0}" -v a="$aborted" '{v[NR] = $1} END {
            printf "%.3f %.3f %.1f %d %d %d\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], tps, n, f, a }'
}

psql -qAtX -c "SELECT llm_complete('warm up', 'healthy')" >/dev/null
run_pgbench healthy 2           # warm-ups
run_pgbench flaky-warmup 2
read -r hp50 hp99 htps hcalls hfailed haborted <<<"$(through_llmgw healthy)"
read -r fp50 fp99 ftps fcalls ffailed faborted <<<"$(through_llmgw flaky)"

printf "%-8s %-8s %10s %10s %12s\n" clients model p50_ms p99_ms calls_per_s
printf "%-8s %-8s %10s %10s %12s\n" 32 healthy "$hp50" "$hp99" "$htps"
printf "%-8s %-8s %10s %10s %12s\n" 32 flaky "$fp50" "$fp99" "$ftps"
ratio=$(awk -v a="$ftps" -v b="$htps" 'BEGIN {printf "%.3f", a / b}')
p99ratio=$(awk -v a="$fp99" -v b="$hp99" 'BEGIN {printf "%.2f", a / b}')
echo "throughput ratio (flaky/healthy): $ratio  p99 ratio (flaky/healthy): $p99ratio"

caught=$(psql -qAtX -c "SELECT count(*) FROM bench_errors WHERE model = 'flaky'")
read -r requests notok <<<"$(psql -qAtX -F' ' -c "SELECT count(*), count(*) FILTER (WHERE status <> 'ok')
                                                    FROM llmgw.requests WHERE model = 'flaky'")"
read -r attempts errattempts <<<"$(psql -qAtX -F' ' -c "SELECT count(*), count(*) FILTER (WHERE status = 'error')
                                                         FROM llmgw.usage WHERE model = 'flaky'")"
errors=$(( caught + ffailed + faborted ))
echo "flaky run: $fcalls calls, $requests in llmgw.requests, $attempts attempts in llmgw.usage"
echo "errors surfaced to callers in the flaky run: $errors (caught in SQL: $caught, pgbench failed" \
     "transactions: $ffailed, aborted clients: $faborted); llmgw.requests not 'ok': $notok"
echo "failed attempts retried or fallen back from (llmgw.usage status 'error'): $errattempts"
psql -qAtX -v flaky="$FLAKY" -v fcalls="$fcalls" <<'SQL'
SELECT format('attempts on the flaky deployment: %s, first attempt of %s%% of the calls',
              count(*), round(100.0 * count(*) FILTER (WHERE attempt = 1) / nullif(:'fcalls', 0), 1))
  FROM llmgw.usage WHERE model = 'flaky' AND upstream_model = :'flaky';
SQL
[ "$caught" -eq 0 ] || psql -qX -c "SELECT sqlstate, message, count(*) FROM bench_errors
                                      GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5"
psql -qX -c "SELECT upstream_model, state, successes, failures, cooldowns, p50_ms, p99_ms
               FROM llmgw.deployment_health WHERE model = 'flaky' ORDER BY upstream_model"
hcaught=$(psql -qAtX -c "SELECT count(*) FROM bench_errors WHERE model = 'healthy'")
[ $(( hcaught + hfailed + haborted )) -eq 0 ] || echo "warning: the healthy run had errors" \
    "(caught: $hcaught, failed transactions: $hfailed, aborted clients: $haborted)"
verdict=PASS
awk -v r="$ratio" 'BEGIN {exit !(r >= 0.80)}' || verdict=FAIL
[ "$errors" -eq 0 ] && [ "$notok" -eq 0 ] || verdict=FAIL
echo "goal (>= 0.80 of healthy throughput, no errors surfaced): $verdict"
