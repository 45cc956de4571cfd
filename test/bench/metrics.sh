#!/usr/bin/env bash
# Benchmark: llmgw.metrics() over a large llmgw.usage.  Fills llmgw.usage
# with N rows (default 1 million) over the last 365 days, in INSERTs of at
# most 1 million rows whose statement triggers keep llmgw.usage_daily and
# llmgw.usage_totals as they are written: 20 teams, 200 keys, 10 models of
# two deployments each, 5% errors over six error classes, 2% cache hits, 40
# budgets.  Then times, as an llmgw_finance role, llmgw.metrics() (median
# of 5 runs after a warm-up, as a Prometheus scrape every 15 s would run
# it), next to the same calls_total series computed from llmgw.usage
# directly, and checks that both give the same total.
# Goal: llmgw.metrics() in under 100 ms, whatever the number of rows.
# Usage (root): bash test/bench/metrics.sh [rows, default 1000000]
set -euo pipefail
ROWS=${1:-1000000}
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
LLMGW_EXTRA_CONF="timezone = 'UTC'
max_wal_size = 4GB" llmgw_cluster_start

psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_provider('other', 'anthropic', :'url');
SELECT llmgw.create_team('team_' || t) FROM generate_series(1, 20) t;
SELECT llmgw.create_key('team_' || (1 + (k - 1) % 20), 'key ' || k) FROM generate_series(1, 200) k;
SELECT llmgw.create_model('model-' || m, 'mock', 'upstream-' || m, priority => 1),
       llmgw.create_model('model-' || m, 'other', 'backup-' || m, priority => 0)
  FROM generate_series(0, 9) m;
SELECT llmgw.create_budget('team ' || t, 'team', 'team_' || t, 'month', 1000) FROM generate_series(1, 20) t;
SELECT llmgw.create_budget('model ' || m, 'model', 'model-' || m, 'day', 100) FROM generate_series(0, 9) m;
SELECT llmgw.create_budget('all ' || p, 'global', NULL, p, 100000) FROM unnest('{day,week,month,total}'::text[]) p;
SELECT llmgw.create_budget('key ' || k.id, 'key', k.id::text, 'week', 50)
  FROM llmgw.keys k ORDER BY k.id LIMIT 6;
CREATE ROLE bench_finance LOGIN IN ROLE llmgw_finance;
SQL

# Row i (0-based) of N: started 365 days * i / N before now; key i % 200
# (its team with it), model (i / 200) % 10, the backup deployment for one
# row in 50 (a fallback), errors for one in 20 (six classes), cache hits for
# one in 50; costs exact numerics.
load_chunk() {
    psql -qX -v ON_ERROR_STOP=1 -v lo="$1" -v hi="$2" -v n="$ROWS" <<'SQL'
WITH k AS (SELECT array_agg(id ORDER BY id) AS ids, array_agg(team_id ORDER BY id) AS teams
             FROM llmgw.virtual_keys),
     g AS (SELECT i, i % 200 AS kx, (i / 200) % 10 AS m,
                  CASE WHEN i % 20 = 3 THEN 'error' ELSE 'ok' END AS status,
                  (ARRAY['server', 'timeout', 'rate_limit', 'overloaded', 'quota',
                         'invalid_request'])[1 + (i / 20) % 6] AS error_class,
                  i % 50 = 7 AS hit, i % 50 = 11 AS backup,
                  50 + (i * 7919) % 2000 AS tin, 10 + (i * 104729) % 500 AS tout,
                  now() - make_interval(secs => i * (365 * 86400.0 / :n)) AS started_at
             FROM generate_series(:lo::bigint, :hi::bigint - 1) i)
INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, key_id, team_id, model,
                         provider, upstream_model, status, error_class, http_status, latency_ms,
                         input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,
                         usage_source, cost, currency, cache_hit, fallback_from)
SELECT gen_random_uuid(), CASE WHEN g.backup THEN 2 ELSE 1 END, g.started_at, 'app',
       k.ids[g.kx + 1], k.teams[g.kx + 1], 'model-' || g.m,
       CASE WHEN g.hit THEN NULL WHEN g.backup THEN 'other' ELSE 'mock' END,
       CASE WHEN g.hit THEN NULL WHEN g.backup THEN 'backup-' || g.m ELSE 'upstream-' || g.m END,
       g.status, CASE WHEN g.status = 'error' THEN g.error_class END,
       CASE WHEN g.status = 'error' THEN 500 ELSE 200 END, 100 + (g.i % 900),
       CASE WHEN g.status = 'ok' THEN g.tin END, CASE WHEN g.status = 'ok' THEN g.tout END,
       CASE WHEN g.status = 'ok' THEN g.tin / 4 END, CASE WHEN g.status = 'ok' THEN 0 END,
       'provider', CASE WHEN g.status = 'ok' THEN (g.tin * 0.15 + g.tout * 0.6) / 1000000 END,
       'USD', g.hit, CASE WHEN g.backup THEN 'mock/upstream-' || g.m END
  FROM g, k;
SQL
}

start=$(date +%s)
lo=0
while [ "$lo" -lt "$ROWS" ]; do
    hi=$((lo + CHUNK < ROWS ? lo + CHUNK : ROWS))
    load_chunk "$lo" "$hi"
    lo=$hi
done
psql -qX -c 'VACUUM ANALYZE' >/dev/null
echo "loaded $ROWS usage rows in $(($(date +%s) - start)) s"
psql -qXAt <<'SQL'
SELECT 'usage_daily rows: ' || count(*) FROM llmgw.usage_daily;
SELECT 'usage_totals rows: ' || count(*) FROM llmgw.usage_totals;
SQL

# median of 5 runs after a warm-up, in ms, of a query run as bench_finance
time_query() {
    local sql="$1" t
    for run in 1 2 3 4 5 6; do
        t=$(psql -qXAt -U bench_finance -c '\timing on' -c "$sql" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
        [ "$run" -gt 1 ] && echo "$t"
    done | sort -n | sed -n 3p
}
metrics_ms=$(time_query 'SELECT length(llmgw.metrics())')
scan_ms=$(time_query "SELECT count(*) FROM (SELECT model, provider, upstream_model, status, error_class, count(*) FROM llmgw.usage GROUP BY 1, 2, 3, 4, 5) s")
series=$(psql -qXAt -U bench_finance -c "SELECT count(*) FROM regexp_split_to_table(llmgw.metrics(), E'\n') l WHERE l NOT LIKE '#%' AND l <> ''")
same=$(psql -qXAt -U bench_finance -c "SELECT (SELECT sum(value) FROM llmgw.metric_samples('{llmgw_calls_total}')) = (SELECT count(*) FROM llmgw.usage)")
echo "llmgw.metrics(): $metrics_ms ms ($series samples); the calls_total series from llmgw.usage: $scan_ms ms; same total: $same"
awk -v m="$metrics_ms" -v g="$GOAL_MS" 'BEGIN { exit !(m < g) }' &&
    echo "goal met: under $GOAL_MS ms" || { echo "goal missed: $GOAL_MS ms"; exit 1; }
[ "$same" = t ]
