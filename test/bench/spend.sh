#!/usr/bin/env bash
# Benchmark: the finance views over many usage rows.  Fills llmgw.usage with
# N rows (default 10 million) over 35 days around this month, in INSERTs of
# 1 million rows whose statement trigger maintains llmgw.usage_daily as they
# are written; then times, as llmgw_finance, this month's spend from
# llmgw.spend_daily and llmgw.spend_by_team (median of 5 runs after a warm-up)
# against the same answer computed from llmgw.usage directly, and checks that
# the month's cost in the rollups equals the cost of its usage rows exactly.
# Goal: each view query answers in under 100 ms.
# Usage (root): bash test/bench/spend.sh [rows, default 10000000]
set -euo pipefail
ROWS=${1:-10000000}
CHUNK=1000000
GOAL_MS=100
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
# days and months are UTC in llmgw; the session's too, so that the queries'
# date_trunc('month', now()) is the rollups' month
cat >>"$LLMGW_TMP/data/postgresql.conf" <<CONF
timezone = 'UTC'
max_wal_size = 4GB
CONF
llmgw_cluster_stop
runuser -u postgres -- $PGBIN/pg_ctl -D "$LLMGW_TMP/data" -l "$LLMGW_TMP/server.log" -w start >/dev/null

# 20 teams, 200 keys (10 a team), 10 models of which 9 are priced, and the
# previous month's partition (this month and 3 ahead come with the extension)
psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_team('team_' || t) FROM generate_series(1, 20) t;
SELECT llmgw.create_key('team_' || (1 + (k - 1) % 20), 'key ' || k) FROM generate_series(1, 200) k;
SELECT llmgw.set_price('upstream-' || m, input => 0.15 * (m + 1), output => 0.6 * (m + 1),
                       valid_from => date_trunc('month', now()) - interval '1 year')
  FROM generate_series(0, 8) m;
DO $$
DECLARE
    m timestamptz := (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '1 month')
                     AT TIME ZONE 'UTC';
BEGIN
    EXECUTE format('CREATE TABLE llmgw.%I PARTITION OF llmgw.usage FOR VALUES FROM (%L) TO (%L)',
                   'usage_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM'), m,
                   (m AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC');
END
$$;
SQL

# Row i (0-based) of N: started 35 days * i / N after two days before this
# month began; key i % 200 (its team and role with it), model (i / 200) % 10
# (model 9 has no price: cost NULL, unpriced), 2% errors and 0.1% cancelled
# without tokens or cost; costs are exact numerics at the model's price.
load_chunk() {
    psql -qX -v ON_ERROR_STOP=1 -v lo="$1" -v hi="$2" -v n="$ROWS" <<'SQL'
WITH k AS (SELECT array_agg(id ORDER BY id) AS ids, array_agg(team_id ORDER BY id) AS teams
             FROM llmgw.virtual_keys),
     p AS (SELECT array_agg(id ORDER BY model) AS ids, array_agg(input ORDER BY model) AS inp,
                  array_agg(output ORDER BY model) AS outp
             FROM llmgw.prices WHERE valid_to IS NULL),
     t0 AS (SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - interval '2 days')
                   AT TIME ZONE 'UTC' AS t0),
     g AS (SELECT i, i % 200 AS kx, (i / 200) % 10 AS m,
                  CASE WHEN i % 50 = 7 THEN 'error' WHEN i % 997 = 3 THEN 'cancelled'
                       ELSE 'ok' END AS status,
                  50 + (i * 7919) % 2000 AS tin, 10 + (i * 104729) % 500 AS tout,
                  t0 + make_interval(secs => i * (35 * 86400.0 / :n)) AS started_at
             FROM generate_series(:lo::bigint, :hi::bigint - 1) i, t0)
INSERT INTO llmgw.usage (request_id, attempt, started_at, recorded_at, role_name, key_id,
                         team_id, model, provider, upstream_model, status, error_class,
                         http_status, latency_ms, input_tokens, output_tokens,
                         cached_input_tokens, reasoning_tokens, usage_source, price_id, cost,
                         currency, unpriced)
SELECT gen_random_uuid(), 1, g.started_at,
       g.started_at + make_interval(secs => (200 + g.i % 1000) / 1000.0),
       'app_' || (g.kx % 50), k.ids[g.kx + 1], k.teams[g.kx + 1],
       'model_' || g.m, (ARRAY['openai', 'anthropic', 'gemini'])[1 + g.m % 3],
       'upstream-' || g.m, g.status,
       CASE g.status WHEN 'error' THEN 'server_error' END,
       CASE g.status WHEN 'ok' THEN 200 WHEN 'error' THEN 500 END,
       200 + g.i % 1000,
       CASE WHEN g.status = 'ok' THEN g.tin END, CASE WHEN g.status = 'ok' THEN g.tout END,
       CASE WHEN g.status = 'ok' THEN (g.tin / 4) * (g.i % 2) END,
       CASE WHEN g.status = 'ok' THEN 0 END,
       CASE WHEN g.status = 'ok' THEN 'provider' END,
       CASE WHEN g.status = 'ok' AND g.m < 9 THEN p.ids[g.m + 1] END,
       CASE WHEN g.status = 'ok' AND g.m < 9
            THEN trim_scale((g.tin * p.inp[g.m + 1] + g.tout * p.outp[g.m + 1]) / 1000000) END,
       CASE WHEN g.status = 'ok' AND g.m < 9 THEN 'USD' END,
       g.status = 'ok' AND g.m = 9
  FROM g, k, p;
SQL
}

clock() { date +%s.%N; }
echo "loading $ROWS usage rows in INSERTs of $CHUNK (rollups maintained by the statement trigger)"
start=$(clock)
for (( lo = 0; lo < ROWS; lo += CHUNK )); do
    hi=$(( lo + CHUNK < ROWS ? lo + CHUNK : ROWS ))
    t=$(clock)
    load_chunk "$lo" "$hi"
    awk -v a="$t" -v b="$(clock)" -v n=$(( hi - lo )) -v lo="$lo" -v hi="$hi" 'BEGIN {
        printf "  rows %d..%d: %.1f s, %.0f rows/s\n", lo, hi - 1, b - a, n / (b - a) }'
done
end=$(clock)
awk -v a="$start" -v b="$end" -v n="$ROWS" 'BEGIN {
    printf "load: %d rows in %.1f s, %.0f rows/s\n", n, b - a, n / (b - a) }'
t=$(clock)
psql -qX -c "VACUUM (ANALYZE) llmgw.usage" -c "VACUUM (ANALYZE) llmgw.usage_daily"
awk -v a="$t" -v b="$(clock)" 'BEGIN { printf "vacuum analyze (so that autovacuum stays out of the timings): %.1f s\n", b - a }'

psql -qX <<'SQL'
SELECT (SELECT count(*) FROM llmgw.usage_daily) AS usage_daily_rows,
       (SELECT sum(calls) FROM llmgw.usage_daily) AS calls_in_rollups,
       (SELECT count(*) FROM llmgw.usage) AS usage_rows,
       pg_size_pretty(pg_total_relation_size('llmgw.usage_daily')) AS usage_daily_size,
       (SELECT pg_size_pretty(sum(pg_total_relation_size(relid)))
          FROM pg_partition_tree('llmgw.usage')) AS usage_size;
SELECT tableoid::regclass AS partition, count(*) AS rows, min(started_at), max(started_at)
  FROM llmgw.usage GROUP BY 1 ORDER BY 3;
SQL

# median of 5 runs after a warm-up, as llmgw_finance, in ms (psql \timing:
# the whole round trip, planning and the rows' transfer included)
time_query() {
    { echo "SET ROLE llmgw_finance;"; echo '\o /dev/null'; echo '\timing on'
      for _ in 1 2 3 4 5 6; do echo "$1"; done; } |
        psql -qX -v ON_ERROR_STOP=1 | awk '/^Time:/ {print $2}' | tail -n +2 | sort -n | sed -n 3p
}

Q1="SELECT team, sum(cost) FROM llmgw.spend_daily WHERE day >= date_trunc('month', now())::date GROUP BY team;"
Q2="SELECT * FROM llmgw.spend_daily WHERE team = 'team_3' AND day >= date_trunc('month', now())::date;"
Q3="SELECT * FROM llmgw.spend_by_team WHERE month = date_trunc('month', now())::date;"
QRAW="SELECT team_id, sum(cost) FROM llmgw.usage WHERE started_at >= date_trunc('month', now()) GROUP BY team_id;"
n1=$(psql -qAtX -c "SET ROLE llmgw_finance; ${Q1%;}" | wc -l)
n2=$(psql -qAtX -c "SET ROLE llmgw_finance; ${Q2%;}" | wc -l)
n3=$(psql -qAtX -c "SET ROLE llmgw_finance; ${Q3%;}" | wc -l)
nr=$(psql -qAtX -c "SET ROLE llmgw_finance; ${QRAW%;}" | wc -l)
m1=$(time_query "$Q1"); m2=$(time_query "$Q2"); m3=$(time_query "$Q3"); mr=$(time_query "$QRAW")

verdict() { awk -v t="$1" -v g="$GOAL_MS" 'BEGIN { print (t < g ? "PASS" : "FAIL") }'; }
printf "\n%-78s %6s %10s %8s %s\n" query rows median_ms view/raw goal
for q in 1 2 3 raw; do
    case $q in
        1) sql=$Q1 rows=$n1 ms=$m1 ;;
        2) sql=$Q2 rows=$n2 ms=$m2 ;;
        3) sql=$Q3 rows=$n3 ms=$m3 ;;
        raw) sql=$QRAW rows=$nr ms=$mr ;;
    esac
    if [ "$q" = raw ]; then
        printf "%-78s %6s %10s %8s %s\n" "${sql:0:78}" "$rows" "$ms" 1 "(baseline: usage scanned)"
    else
        printf "%-78s %6s %10s %8s %s\n" "${sql:0:78}" "$rows" "$ms" \
            "$(awk -v a="$ms" -v b="$mr" 'BEGIN {printf "%.4f", a / b}')" "$(verdict "$ms") (< $GOAL_MS ms)"
    fi
done
awk -v a="$m1" -v b="$mr" 'BEGIN {
    printf "spend_daily (team totals this month) / raw scan: %.4f, i.e. %.0f times faster\n", a / b, b / a }'

# reconciliation: this month's cost in the usage rows and in the rollups
echo
read -r ucost vcost equal <<<"$(psql -qAtX -F' ' <<'SQL'
SET ROLE llmgw_finance;
WITH m AS (SELECT date_trunc('month', now()) AS lo, date_trunc('month', now()) + interval '1 month' AS hi)
SELECT u.c, v.c, u.c = v.c
  FROM m,
       LATERAL (SELECT sum(cost) AS c FROM llmgw.usage
                 WHERE started_at >= m.lo AND started_at < m.hi) u,
       LATERAL (SELECT sum(cost) AS c FROM llmgw.spend_daily
                 WHERE day >= m.lo::date AND day < m.hi::date) v;
SQL
)"
echo "this month's cost: usage $ucost  spend_daily $vcost  equal: $equal"
[ "$equal" = t ] || { echo "MISMATCH: the rollups do not reconcile with the usage rows"; exit 1; }
