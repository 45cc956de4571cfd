#!/usr/bin/env bash
# Benchmark: what seeing costs.  The overhead benchmark's load (pgbench,
# SELECT llm_complete(...) against the mock with no added latency, 32
# clients) with metrics, tracing and the request log each on, all of them
# on, and all off, in one run on one cluster:
#   metrics      a scraper calls llmgw.metrics() every second (Prometheus
#                scrapes every 15 s; this is fifteen times that)
#   tracing      llmgw.otel_endpoint set: a span per call and per attempt,
#                exported to a second mock, a collector that reads each
#                export and drops it unparsed (--otlp-discard), as a
#                collector on another host costs this one nothing
#   request log  every call of the model logged (llmgw.log_requests), with
#                the built-in redaction rules
# The settings rotate (off, metrics, tracing, log, all) for ROUNDS rounds so
# that a drift of the shared machine falls on every setting alike; each
# setting's figure is its median over the rounds.  Prints each setting's
# calls/s and its ratio to "off" measured in the same run, and checks that
# every call left a committed usage row (and a logged body, and a span).
# Goal: all on costs under 10% of the throughput of all off.
# Usage (root): bash test/bench/observability.sh [seconds per run, default 10] [rounds, default 3]
set -euo pipefail
DURATION=${1:-10}
ROUNDS=${2:-3}
CLIENTS=32
LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"
llmgw_install_packages
llmgw_build

LLMGW_TMP=$(mktemp -d /tmp/llmgw-bench.XXXXXX)
export LLMGW_TMP
SCRAPER=
COLLECTOR_PID=
trap '[ -n "$SCRAPER" ] && kill "$SCRAPER" 2>/dev/null; [ -n "$COLLECTOR_PID" ] && kill "$COLLECTOR_PID" 2>/dev/null; llmgw_cluster_stop; llmgw_mock_stop; rm -rf "$LLMGW_TMP"' EXIT
llmgw_mock_start --threads 1
"$LLMGW_ROOT/test/mock/llmgw-mock" --port 0 --port-file "$LLMGW_TMP/collector.port" --threads 1 \
    --otlp-discard >"$LLMGW_TMP/collector.log" 2>&1 &
COLLECTOR_PID=$!
for _ in $(seq 100); do [ -s "$LLMGW_TMP/collector.port" ] && break; sleep 0.05; done
COLLECTOR="http://127.0.0.1:$(cat "$LLMGW_TMP/collector.port")"
LLMGW_EXTRA_CONF="max_connections = 200" llmgw_cluster_start

psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_model('bench', 'mock', 'mock-model');
CREATE ROLE scraper LOGIN IN ROLE llmgw_finance;
SQL
echo "SELECT llm_complete('hello, my address is someone@example.com', 'bench');" >"$LLMGW_TMP/call.sql"
chown -R postgres "$LLMGW_TMP"

# Turn one kind of seeing on or off
set_metrics() {
    if [ "$1" = on ]; then
        (while :; do psql -qAtX -U scraper -c "SELECT length(llmgw.metrics())" >/dev/null; sleep 1; done) &
        SCRAPER=$!
    elif [ -n "$SCRAPER" ]; then
        kill "$SCRAPER" 2>/dev/null; wait "$SCRAPER" 2>/dev/null || true; SCRAPER=
    fi
}
set_tracing() {
    local endpoint=''
    [ "$1" = on ] && endpoint=$COLLECTOR
    psql -qAtX -c "ALTER SYSTEM SET llmgw.otel_endpoint = '$endpoint'" -c "SELECT pg_reload_conf()" >/dev/null
    # the workers read it at their next round; wait until they agree
    local want=f
    [ "$1" = on ] && want=t
    for _ in $(seq 100); do
        psql -qAtX -c "SELECT llm_complete('settle', 'bench')" >/dev/null
        [ "$(psql -qAtX -c "SELECT enabled FROM llmgw.otel_stats()")" = "$want" ] && return 0
        sleep 0.1
    done
    echo "the workers did not turn tracing $1"; exit 1
}
set_log() {
    psql -qAtX -c "SELECT llmgw.log_requests('model', 'bench', $([ "$1" = on ] && echo true || echo false))" >/dev/null
    sleep 0.5   # the workers reload the rules when the change commits
}
configure() {
    case $1 in
    off) set_metrics off; set_tracing off; set_log off ;;
    metrics) set_metrics on; set_tracing off; set_log off ;;
    tracing) set_metrics off; set_tracing on; set_log off ;;
    log) set_metrics off; set_tracing off; set_log on ;;
    all) set_metrics on; set_tracing on; set_log on ;;
    esac
}

# calls/s of one pgbench run
run() {
    local dir="$LLMGW_TMP/pgbench.$1.$2"
    mkdir -p "$dir" && chown postgres "$dir"
    (cd "$dir" && runuser -u postgres -- pgbench -n -h "$PGHOST" -U postgres -c "$CLIENTS" \
        -j 2 -T "$DURATION" -f "$LLMGW_TMP/call.sql" >"$dir/summary" 2>&1)
    awk '/^number of transactions actually processed/ {n = $NF} /^tps/ {t = $3} END {print t, n}' "$dir/summary"
}

SETTINGS="off metrics tracing log all"
rows_before=$(psql -qAtX -c "SELECT count(*) FROM llmgw.usage WHERE status = 'ok'")
logged_before=$(psql -qAtX -c "SELECT count(*) FROM llmgw.request_log")
calls=0
logged_calls=0
declare -A rates
for r in $(seq "$ROUNDS"); do
    for s in $SETTINGS; do
        configure "$s"
        read -r tps n <<<"$(run "$s" "$r")"
        rates[$s]="${rates[$s]:-} $tps"
        calls=$((calls + n))
        case $s in log | all) logged_calls=$((logged_calls + n)) ;; esac
        printf "round %d  %-8s %10.1f calls/s\n" "$r" "$s" "$tps"
    done
done
configure off

median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
base=$(echo "${rates[off]}" | median)
echo
printf "%-8s %12s %10s   (median of %d runs of %d s, %d clients)\n" setting calls_per_s vs_off "$ROUNDS" "$DURATION" "$CLIENTS"
for s in $SETTINGS; do
    m=$(echo "${rates[$s]}" | median)
    awk -v s="$s" -v m="$m" -v b="$base" 'BEGIN { printf "%-8s %12.1f %10.3f   cost %5.1f%%\n", s, m, m / b, 100 * (1 - m / b) }'
done

# every call has its usage row; every logged call its body; the spans
sleep 2
rows=$(( $(psql -qAtX -c "SELECT count(*) FROM llmgw.usage WHERE status = 'ok'") - rows_before ))
logged=$(( $(psql -qAtX -c "SELECT count(*) FROM llmgw.request_log") - logged_before ))
read -r exported dropped failed <<<"$(psql -qAtX -F' ' -c "SELECT spans_exported, spans_dropped, spans_failed FROM llmgw.otel_stats()")"
echo "pgbench calls: $calls  committed ok usage rows: $rows (settling calls included)"
echo "calls with the log on: $logged_calls  logged bodies: $logged (settling calls included)"
echo "spans exported: $exported  dropped: $dropped  failed: $failed"
[ "$rows" -ge "$calls" ] || { echo "MISMATCH: some calls have no usage row"; exit 1; }
[ "$logged" -ge "$logged_calls" ] || { echo "MISMATCH: some logged calls have no request_log row"; exit 1; }
