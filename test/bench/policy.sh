#!/usr/bin/env bash
# Benchmark: the cost of policy per call.  Against the mock with no added
# latency, at 32 clients, in one run on one cluster:
#  (a) policy off: model 'plain', no price, called without a key; no budget
#      or limit applies (the caller has no key and no team);
#  (b) policy on: model 'governed', priced, called with a virtual key given
#      through PGOPTIONS; the key and its team have rate limits, and hard
#      budgets on the key, the team and global apply: key lookup, budget
#      reservation, rate limits and a priced usage row on every call.
# The global budget would refuse (a)'s unpriced model, so it exists only
# while (b) runs.  The two alternate in rounds (off on, on off, ...), each
# run after a 2 s warm-up, to even out drift; figures pool the rounds.
# Prints p50/p99 latency and throughput of both and their ratio, and checks
# that every call left one usage row, in (b) with key, team, price and cost.
# Usage (root): bash test/bench/policy.sh [seconds per run, default 10] [rounds, default 2]
set -euo pipefail
DURATION=${1:-10}
ROUNDS=${2:-2}
CLIENTS=32
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

KEY_ROW=$(psql -qAtX -F' ' -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL'
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url') \g /dev/null
SELECT llmgw.create_model('plain', 'mock', 'mock-model') \g /dev/null
SELECT llmgw.create_model('governed', 'mock', 'mock-model-2') \g /dev/null
SELECT llmgw.set_price('mock-model-2', input => 0.15, output => 0.6) \g /dev/null
SELECT llmgw.create_team('bench', rpm_limit => 100000000, tpm_limit => 100000000000) \g /dev/null
SELECT key_id, api_key FROM llmgw.create_key('bench', 'bench key', rpm_limit => 100000000,
                                              tpm_limit => 100000000000);
SQL
)
read -r KEY_ID KEY <<<"$KEY_ROW"
psql -qX -v ON_ERROR_STOP=1 -v kid="$KEY_ID" <<'SQL' >/dev/null
SELECT llmgw.create_budget('bench key', 'key', :'kid', 'month', 1000000);
SELECT llmgw.create_budget('bench team', 'team', 'bench', 'month', 1000000);
SQL
OPTS="-c llmgw.api_key=$KEY"
global_budget() {
    if [ "$1" = on ]; then
        psql -qX -v ON_ERROR_STOP=1 -c "SELECT llmgw.create_budget('everything', 'global', NULL, 'month', 1000000)
            WHERE NOT EXISTS (SELECT FROM llmgw.budgets WHERE name = 'everything')" >/dev/null
    else
        psql -qX -v ON_ERROR_STOP=1 -c "DELETE FROM llmgw.budgets WHERE name = 'everything'" >/dev/null
    fi
}

echo "SELECT llm_complete('hello', 'plain');" >"$LLMGW_TMP/off.sql"
echo "SELECT llm_complete('hello', 'governed', max_tokens => 16);" >"$LLMGW_TMP/on.sql"
chown -R postgres "$LLMGW_TMP"

# pgbench at $CLIENTS clients, script $1 ("off" or "on"), $2 seconds,
# PGOPTIONS $3, per-call logs in directory $4 when given
run_pgbench() {
    local dir=${4:-$LLMGW_TMP/warmup.$1} log=""
    mkdir -p "$dir" && chown postgres "$dir"
    [ -n "${4:-}" ] && log="-l"
    (cd "$dir" && runuser -u postgres -- env PGOPTIONS="$3" pgbench -n -h "$PGHOST" -U postgres \
        -c "$CLIENTS" -j 2 -T "$2" -f "$LLMGW_TMP/$1.sql" $log postgres >"$dir/summary" 2>&1) ||
        { cat "$dir/summary" >&2; echo "pgbench failed ($1)" >&2; exit 1; }
    if grep -q "aborted" "$dir/summary"; then
        cat "$dir/summary" >&2; echo "pgbench reported errors ($1)" >&2; exit 1
    fi
}

# usage rows of model $1: "all ok"
usage_rows() {
    psql -qAtX -F' ' -c "SELECT count(*), count(*) FILTER (WHERE status = 'ok')
                           FROM llmgw.usage WHERE model = '$1'"
}

# one measured run of configuration $1 in round $2, after a warm-up; leaves
# in $LLMGW_TMP/run.$1.$2: the per-call logs, the summary, and a file
# "tps calls usage_rows ok_rows" (rows: those the measured run added)
measure() {
    local dir="$LLMGW_TMP/run.$1.$2" model=plain opts="" all0 ok0 all1 ok1
    [ "$1" = on ] && model=governed opts=$OPTS
    global_budget "$1"
    PGOPTIONS="$opts" psql -qAtX -c "SELECT llm_complete('warm up', '$model')" >/dev/null
    run_pgbench "$1" 2 "$opts"
    read -r all0 ok0 <<<"$(usage_rows $model)"
    run_pgbench "$1" "$DURATION" "$opts" "$dir"
    read -r all1 ok1 <<<"$(usage_rows $model)"
    echo "$(awk '/^tps/ {print $3}' "$dir/summary") $(cat "$dir"/pgbench_log.* | wc -l)" \
        "$(( all1 - all0 )) $(( ok1 - ok0 ))" >"$dir/result"
}

# "p50_ms p99_ms calls_per_s calls usage_rows ok_rows" of configuration $1 over all rounds
pooled() {
    local tps calls rows ok
    read -r tps calls rows ok <<<"$(cat "$LLMGW_TMP"/run."$1".*/result |
        awk '{t += $1; c += $2; r += $3; o += $4} END {printf "%.1f %d %d %d", t / NR, c, r, o}')"
    cat "$LLMGW_TMP"/run."$1".*/pgbench_log.* | awk '{print $3 / 1000}' | sort -n |
        awk -v tps="$tps" -v c="$calls" -v r="$rows" -v o="$ok" '{v[NR] = $1} END {
            printf "%.3f %.3f %s %d %d %d\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1], tps, c, r, o }'
}

echo "$ROUNDS rounds of ${DURATION} s per configuration at $CLIENTS clients"
for (( r = 1; r <= ROUNDS; r++ )); do
    if (( r % 2 )); then order="off on"; else order="on off"; fi
    for cfg in $order; do measure "$cfg" "$r"; done
    read -r otps _ <"$LLMGW_TMP/run.off.$r/result"
    read -r ntps _ <"$LLMGW_TMP/run.on.$r/result"
    awk -v r="$r" -v o="$order" -v a="$otps" -v b="$ntps" 'BEGIN {
        printf "  round %d (%s): off %.1f calls/s, on %.1f calls/s, ratio %.3f\n", r, o, a, b, b / a }'
done
global_budget on
PGOPTIONS="$OPTS" psql -qAtX -c "SELECT llm_complete('settle', 'governed', max_tokens => 16)" >/dev/null

read -r op50 op99 orate ocalls orows ook <<<"$(pooled off)"
read -r np50 np99 nrate ncalls nrows nok <<<"$(pooled on)"
printf "%-8s %-10s %10s %10s %12s %10s %10s\n" clients policy p50_ms p99_ms calls_per_s calls usage_rows
printf "%-8s %-10s %10s %10s %12s %10s %10s\n" "$CLIENTS" off "$op50" "$op99" "$orate" "$ocalls" "$orows"
printf "%-8s %-10s %10s %10s %12s %10s %10s\n" "$CLIENTS" on "$np50" "$np99" "$nrate" "$ncalls" "$nrows"
awk -v a="$np50" -v b="$op50" -v c="$np99" -v d="$op99" -v e="$nrate" -v f="$orate" 'BEGIN {
    printf "added p50 latency: %.3f ms  added p99 latency: %.3f ms  latency ratio p50 (on/off): %.2f\n",
        a - b, c - d, a / b
    printf "throughput ratio (on/off): %.3f  policy cost: %.1f%% of throughput\n", e / f, (1 - e / f) * 100 }'

# checks: one usage row per call (no retries), every row of (b) attributed and priced
fail=0
echo "policy off: calls $ocalls  usage rows $orows (ok $ook)"
[ "$ocalls" -eq "$orows" ] && [ "$ocalls" -eq "$ook" ] ||
    { echo "MISMATCH (off): calls and usage rows differ"; fail=1; }
echo "policy on:  calls $ncalls  usage rows $nrows (ok $nok)"
[ "$ncalls" -eq "$nrows" ] && [ "$ncalls" -eq "$nok" ] ||
    { echo "MISMATCH (on): calls and usage rows differ"; fail=1; }
read -r rows nokey noteam noprice nocost wrongkey total offpriced <<<"$(psql -qAtX -F' ' -v kid="$KEY_ID" <<'SQL'
SELECT count(*), count(*) FILTER (WHERE key_id IS NULL), count(*) FILTER (WHERE team_id IS NULL),
       count(*) FILTER (WHERE price_id IS NULL), count(*) FILTER (WHERE cost IS NULL),
       count(*) FILTER (WHERE key_id <> :'kid' OR team_id <> llmgw.team_id('bench')),
       coalesce(sum(cost), 0),
       (SELECT count(*) FROM llmgw.usage WHERE model = 'plain'
           AND (key_id IS NOT NULL OR team_id IS NOT NULL OR cost IS NOT NULL))
  FROM llmgw.usage WHERE model = 'governed';
SQL
)"
echo "policy on, all $rows rows (warm-ups included): key_id NULL $nokey, team_id NULL $noteam, price_id NULL $noprice, cost NULL $nocost, other key or team $wrongkey; total cost $total"
[ "$nokey" -eq 0 ] && [ "$noteam" -eq 0 ] && [ "$noprice" -eq 0 ] && [ "$nocost" -eq 0 ] &&
    [ "$wrongkey" -eq 0 ] || { echo "MISMATCH (on): some usage rows lack key, team, price or cost"; fail=1; }
[ "$offpriced" -eq 0 ] || { echo "MISMATCH (off): $offpriced rows have a key, team or cost"; fail=1; }
# the budgets saw every charge and hold no reservation once the calls are done
# (the global budget is re-created when (b) follows (a): its ledger then
# restarts from the rollups)
psql -qX -c "SELECT name, scope, limit_amount, spent, reserved, ledger_spent, spent = $total AS equals_usage
               FROM llmgw.budget_status ORDER BY id"
exit $fail
