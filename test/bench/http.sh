#!/usr/bin/env bash
# Benchmark of the HTTP front door (docs/http.md).  Against the mock with no
# added latency, in one run, the same wrk script (test/bench/mock_post.lua, a
# small chat request) through (1) direct HTTP to the mock, (2) llmgw's front
# door with a virtual key, (3) Portkey's open-source gateway (npm, installed
# into the run's temporary directory, bound to 127.0.0.1) routed to the mock,
# (4) the floor: test/bench/floor_proxy.c, a proxy that does nothing but
# forward and make one durable write per turn of its loop before it answers
# (the least a gateway that commits a record of every call can do here);
# at 1 and 64 connections.  Then the time to first token of a streamed
# answer, direct and through llmgw, from the mock (whole stream at once) and
# from a paced provider (test/bench/paced_provider.mjs), and the private
# memory of each llmgw worker across a long run of plain and of streamed
# requests.  Checks that every llmgw request has one usage row.
# Usage (root): bash test/bench/http.sh [--long] [--workers N, default 2]
#                   [--seconds S, default 10] [--requests N] [--wrk-threads N]
#   --long: 1,000,000 requests in each memory run (default 200,000)
# Exits non-zero on a real failure only (a non-2xx answer, a socket error of
# llmgw, a usage row missing or extra); a missed goal prints "goal missed".
set -euo pipefail
DURATION=10
WORKERS=2
REQUESTS=200000
WRK_THREADS=1
while [ $# -gt 0 ]; do
    case $1 in
        --long) REQUESTS=1000000 ;;
        --workers) WORKERS=$2; shift ;;
        --seconds) DURATION=$2; shift ;;
        --requests) REQUESTS=$2; shift ;;
        --wrk-threads) WRK_THREADS=$2; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"
PACKAGES="$PACKAGES wrk curl iproute2"
llmgw_install_packages
command -v node >/dev/null && command -v npm >/dev/null ||
    { apt-get install -y -q nodejs npm >/dev/null; }
llmgw_build

LLMGW_TMP=$(mktemp -d /tmp/llmgw-bench.XXXXXX)
export LLMGW_TMP
PORTKEY_PID=
PACED_PID=
FLOOR_PID=
# on the way out, a failed run shows the end of the server's log
finish() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -f "$LLMGW_TMP/server.log" ]; then
        echo "exit status $rc; the end of the server log:"
        tail -n 30 "$LLMGW_TMP/server.log"
    fi
    [ -n "$PORTKEY_PID" ] && kill "$PORTKEY_PID" 2>/dev/null
    [ -n "$PACED_PID" ] && kill "$PACED_PID" 2>/dev/null
    [ -n "$FLOOR_PID" ] && kill "$FLOOR_PID" 2>/dev/null
    llmgw_cluster_stop
    llmgw_mock_stop
    rm -rf "$LLMGW_TMP"
}
trap finish EXIT
FAILED=0
fail() { echo "FAILURE: $*"; FAILED=1; }

# Portkey's gateway, installed from npm into the run's temporary directory.
# It listens on all interfaces (Hono's serve() without a hostname); the
# preload test/bench/force-local.cjs makes every listen() take 127.0.0.1,
# and the listening sockets are checked below.  --port=N picks its port.
mkdir "$LLMGW_TMP/portkey"
(cd "$LLMGW_TMP/portkey" && npm install --silent --no-audit --no-fund @portkey-ai/gateway >npm.log 2>&1) ||
    { cat "$LLMGW_TMP/portkey/npm.log"; echo "FAILURE: npm install @portkey-ai/gateway"; exit 1; }
PORTKEY_DIR=$LLMGW_TMP/portkey/node_modules/@portkey-ai/gateway
PORTKEY_PORT=$(llmgw_free_port)
node --require "$LLMGW_ROOT/test/bench/force-local.cjs" "$PORTKEY_DIR/build/start-server.js" \
    --port="$PORTKEY_PORT" --headless >"$LLMGW_TMP/portkey.log" 2>&1 &
PORTKEY_PID=$!

llmgw_mock_start --threads 1
PACED_PORT=$(llmgw_free_port)
node "$LLMGW_ROOT/test/bench/paced_provider.mjs" "$PACED_PORT" 50 >"$LLMGW_TMP/paced.log" 2>&1 &
PACED_PID=$!
HTTP_PORT=$(llmgw_free_port)
LLMGW_EXTRA_CONF="llmgw.http_listen = '127.0.0.1:$HTTP_PORT'
llmgw.workers = $WORKERS"
llmgw_cluster_start
psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" -v paced="http://127.0.0.1:$PACED_PORT/v1" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
-- the alias is the mock's model name, so that every path gets the same body
SELECT llmgw.create_model('mock-model', 'mock', 'mock-model');
SELECT llmgw.create_provider('paced', 'openai_compatible', :'paced');
SELECT llmgw.create_model('paced-model', 'paced', 'paced-model');
SELECT llmgw.create_team('bench');
SQL
KEY=$(psql -qAtX -c "SELECT api_key FROM llmgw.create_key('bench', 'bench key')")

# the floor: as many threads as llmgw has workers, its durable writes on the
# data directory's disk
gcc -O2 -Wall -o "$LLMGW_TMP/floor_proxy" "$LLMGW_ROOT/test/bench/floor_proxy.c" -levent -lpthread
"$LLMGW_TMP/floor_proxy" --upstream "127.0.0.1:$LLMGW_MOCK_PORT" --threads "$WORKERS" \
    --sync-file "$LLMGW_TMP/data/floor.sync" --port-file "$LLMGW_TMP/floor.port" >"$LLMGW_TMP/floor.log" 2>&1 &
FLOOR_PID=$!
for _ in $(seq 100); do [ -s "$LLMGW_TMP/floor.port" ] && break; sleep 0.1; done
[ -s "$LLMGW_TMP/floor.port" ] || { cat "$LLMGW_TMP/floor.log"; echo "FAILURE: the floor proxy did not start"; exit 1; }
FLOOR_PORT=$(cat "$LLMGW_TMP/floor.port")

DIRECT_URL=$LLMGW_MOCK_URL/chat/completions
LLMGW_URL=http://127.0.0.1:$HTTP_PORT/v1/chat/completions
PORTKEY_URL=http://127.0.0.1:$PORTKEY_PORT/v1/chat/completions
FLOOR_URL=http://127.0.0.1:$FLOOR_PORT/v1/chat/completions
DIRECT_H=()
FLOOR_H=()
LLMGW_H=(-H "Authorization: Bearer $KEY")
PORTKEY_H=(-H "x-portkey-provider: openai" -H "x-portkey-custom-host: $LLMGW_MOCK_URL"
           -H "Authorization: Bearer sk-mock-not-a-real-key")

# wait until each server answers
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null && break; sleep 0.1
done
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORTKEY_PORT/" && break; sleep 0.1
done
listening=$(ss -Hltnp | awk -v pid="pid=$PORTKEY_PID," 'index($0, pid) {print $4}' | sort -u | tr '\n' ' ')
echo "portkey $(node -p "require('$PORTKEY_DIR/package.json').version") listens on: $listening"
for a in $listening; do
    case $a in 127.0.0.1:*) ;; *) echo "FAILURE: Portkey could not be bound to 127.0.0.1 only"; exit 1 ;; esac
done
[ -n "$listening" ] || { cat "$LLMGW_TMP/portkey.log"; echo "FAILURE: Portkey does not listen"; exit 1; }

BODY='{"model":"mock-model","messages":[{"role":"user","content":"hello"}]}'
SBODY='{"model":"mock-model","messages":[{"role":"user","content":"hello"}],"stream":true}'
for path in DIRECT LLMGW PORTKEY FLOOR; do
    url=${path}_URL; hdr=${path}_H[@]
    code=$(curl -s -o "$LLMGW_TMP/probe.$path" -w '%{http_code}' "${!hdr}" \
        -H 'Content-Type: application/json' -d "$BODY" "${!url}")
    [ "$code" = 200 ] || { cat "$LLMGW_TMP/probe.$path"; echo; echo "FAILURE: $path answered $code"; exit 1; }
done
cat >"$LLMGW_TMP/stream.lua" <<LUA
dofile("$LLMGW_ROOT/test/bench/mock_post.lua")
wrk.body = wrk.body:sub(1, -2) .. ',"stream":true}'
LUA

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  llmgw workers: $WORKERS  mock threads: 1  wrk threads: at most $WRK_THREADS  seconds per run: $DURATION"

# Figures of a wrk run: "requests_per_s p50_ms p99_ms completed non2xx socket_errors"
wrk_figures() {
    awk 'function ms(v) {
             if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
             if (v ~ /m$/) return v * 60000; return v * 1000 }
         /^ +50%/ {p50 = ms($2)} /^ +99%/ {p99 = ms($2)} / requests in / {n = $1}
         /Non-2xx/ {bad = $NF} /Socket errors/ {gsub(",", ""); se = $4 + $6 + $8 + $10}
         /^Requests\/sec/ {rps = $2}
         END {printf "%.1f %.3f %.3f %d %d %d\n", rps, p50, p99, n, bad, se}' "$1"
}

# wrk against a path: run_wrk NAME CONNECTIONS SECONDS SCRIPT; prints its figures
run_wrk() {
    local url=${1}_URL hdr=${1}_H[@] t=$(( $2 < WRK_THREADS ? $2 : WRK_THREADS ))
    wrk -t"$t" -c"$2" -d"$3"s --latency -s "$4" "${!hdr}" "${!url}" >"$LLMGW_TMP/wrk.out" 2>&1
    cat "$LLMGW_TMP/wrk.out" >>"$LLMGW_TMP/wrk.log"
    wrk_figures "$LLMGW_TMP/wrk.out"
}

# the calls llmgw holds (queued or in flight), from /health
llmgw_busy() {
    curl -s "http://127.0.0.1:$HTTP_PORT/health" |
        awk '{gsub(/[{}" ]/, ""); n = split($0, kv, ","); s = 0
              for (i = 1; i <= n; i++) if (kv[i] ~ /^calls_(queued|in_flight):/) {split(kv[i], p, ":"); s += p[2]}
              print s}'
}
# CPU time of the llmgw workers in clock ticks: "user system"
workers_cpu() {
    for p in $(psql -qAtX -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker'"); do
        cat "/proc/$p/stat" 2>/dev/null || true
    done | awk '{u += $14; s += $15} END {print u + 0, s + 0}'
}
# CPU time of the floor proxy in clock ticks: "user system"
floor_cpu() { awk '{print $14, $15}' "/proc/$FLOOR_PID/stat"; }
usage_rows() { psql -qAtX -c "SELECT count(*) FROM llmgw.usage"; }
# "all ok cancelled" rows
usage_counts() {
    psql -qAtX -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE status = 'ok'),
        count(*) FILTER (WHERE status = 'cancelled') FROM llmgw.usage"
}
# rows neither ok nor cancelled (a cancelled row is a request whose client
# left: wrk leaves its requests in flight when it stops)
usage_bad_rows() { psql -qAtX -c "SELECT count(*) FROM llmgw.usage WHERE status NOT IN ('ok', 'cancelled')"; }
# requests the mock has received; stops the run, saying so, when it does not answer
mock_requests() {
    local stats
    stats=$(curl -s --max-time 10 "http://127.0.0.1:$LLMGW_MOCK_PORT/stats") || {
        echo "FAILURE: the mock's /stats did not answer (curl status $?); the end of its log:"
        tail -n 5 "$LLMGW_TMP/mock.log"
        exit 1
    } >&2
    # the top-level member (the OTLP collector's counters have a "requests" too)
    echo "$stats" | perl -MJSON::PP -0777 -ne 'print decode_json($_)->{requests}'
}

# wrk through llmgw, then the accounting: every request llmgw forwarded to
# the mock has one usage row; every request wrk completed has an ok row; the
# others are those in flight when wrk stopped (at most one per connection),
# which llmgw answered to nobody (ok) or cancelled when wrk closed them, the
# request sent to the mock or not yet.
# run_llmgw CONNECTIONS SECONDS SCRIPT; sets LFIG (its figures), ROWS, ACCOUNTING
run_llmgw() {
    local a0 o0 x0 a1 o1 x1 m0 c0 completed busy ok cancelled
    read -r a0 o0 x0 <<<"$(usage_counts)"; m0=$(mock_requests); c0=$(workers_cpu)
    LFIG=$(run_wrk LLMGW "$1" "$2" "$3")
    for _ in $(seq 300); do
        busy=$(llmgw_busy); [ "$busy" = 0 ] && break; sleep 0.1
    done
    read -r a1 o1 x1 <<<"$(usage_counts)"
    ROWS=$(( a1 - a0 )); ok=$(( o1 - o0 )); cancelled=$(( x1 - x0 ))
    LCPU=$(echo "$c0 $(workers_cpu)" | awk -v n="$ROWS" -v hz="$(getconf CLK_TCK)" '{
        printf "%.1f µs (user %.1f, system %.1f)", ($3 + $4 - $1 - $2) / hz / n * 1e6,
            ($3 - $1) / hz / n * 1e6, ($4 - $2) / hz / n * 1e6 }')
    FORWARDED=$(( $(mock_requests) - m0 ))
    workers_same
    read -r _ _ _ completed _ _ <<<"$LFIG"
    ACCOUNTING="llmgw requests completed by wrk: $completed  usage rows: $ROWS (ok $ok, cancelled $cancelled)  forwarded to the mock: $FORWARDED  in flight when wrk stopped: $(( ROWS - completed ))"
    if [ "$FORWARDED" -gt "$ROWS" ] || [ $(( ROWS - FORWARDED )) -gt "$cancelled" ] ||
        [ "$ok" -lt "$completed" ] || [ $(( ok + cancelled )) -ne "$ROWS" ] ||
        [ "$ROWS" -gt $(( completed + $1 )) ]; then
        ACCOUNTING="$ACCOUNTING  MISMATCH"
    fi
}

# a figure line, and a check of the non-2xx answers and socket errors
report() {
    local conns=$1 path=$2 rps p50 p99 n bad se
    read -r rps p50 p99 n bad se <<<"$3"
    printf "%-6s %-8s %12s %9s %9s %10s %8s %8s\n" "$conns" "$path" "$rps" "$p50" "$p99" "$n" "$bad" "$se"
    [ "$bad" -eq 0 ] || fail "$path at $conns connections: $bad non-2xx answers"
    [ "$path" != llmgw ] || [ "$se" -eq 0 ] || fail "llmgw at $conns connections: $se socket errors"
}

# the workers' pids: one that changes was restarted (a crash)
WORKER_PIDS=$(psql -qAtX -c "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")
workers_same() {
    local now
    now=$(psql -qAtX -c "SELECT string_agg(pid::text, ' ' ORDER BY pid) FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")
    [ "$now" = "$WORKER_PIDS" ] || { fail "llmgw workers restarted ($WORKER_PIDS, now $now)"; WORKER_PIDS=$now; }
}

# warm up every path (connections, the workers' plans and caches, Node's JIT)
for p in DIRECT LLMGW PORTKEY FLOOR; do run_wrk $p 4 2 "$LLMGW_ROOT/test/bench/mock_post.lua" >/dev/null; done
for _ in $(seq 300); do [ "$(llmgw_busy)" = 0 ] && break; sleep 0.1; done
[ "$(usage_bad_rows)" = 0 ] || fail "usage rows neither ok nor cancelled after the warm-up"

echo
echo "POST /v1/chat/completions, same wrk script (mock_post.lua), mock with no latency"
printf "%-6s %-8s %12s %9s %9s %10s %8s %8s\n" conns path requests/s p50_ms p99_ms requests non2xx sockerr
declare -A FIG
for c in 1 64; do
    FIG[direct$c]=$(run_wrk DIRECT $c "$DURATION" "$LLMGW_ROOT/test/bench/mock_post.lua")
    report $c direct "${FIG[direct$c]}"
    run_llmgw $c "$DURATION" "$LLMGW_ROOT/test/bench/mock_post.lua"
    FIG[llmgw$c]=$LFIG
    report $c llmgw "${FIG[llmgw$c]}"
    FIG[acct$c]=$ACCOUNTING
    FIG[cpu$c]=$LCPU
    FIG[portkey$c]=$(run_wrk PORTKEY $c "$DURATION" "$LLMGW_ROOT/test/bench/mock_post.lua")
    report $c portkey "${FIG[portkey$c]}"
    f0=$(floor_cpu)
    FIG[floor$c]=$(run_wrk FLOOR $c "$DURATION" "$LLMGW_ROOT/test/bench/mock_post.lua")
    report $c floor "${FIG[floor$c]}"
    read -r _ _ _ completed _ _ <<<"${FIG[floor$c]}"
    FIG[floorcpu$c]=$(echo "$f0 $(floor_cpu)" | awk -v n="$completed" -v hz="$(getconf CLK_TCK)" '{
        printf "%.1f µs (user %.1f, system %.1f)", ($3 + $4 - $1 - $2) / hz / n * 1e6,
            ($3 - $1) / hz / n * 1e6, ($4 - $2) / hz / n * 1e6 }')
done
for c in 1 64; do
    echo "${c} connection(s): ${FIG[acct$c]}"
    case ${FIG[acct$c]} in *MISMATCH) fail "usage rows do not match the requests at $c connections" ;; esac
done
for c in 1 64; do echo "llmgw workers' CPU per request at $c connection(s): ${FIG[cpu$c]}; the floor's: ${FIG[floorcpu$c]}"; done
[ "$(usage_bad_rows)" = 0 ] || fail "usage rows neither ok nor cancelled"

echo
read -r drps dp50 _ <<<"${FIG[direct1]}"
read -r lrps lp50 _ <<<"${FIG[llmgw1]}"
read -r prps pp50 _ <<<"${FIG[portkey1]}"
read -r frps fp50 _ <<<"${FIG[floor1]}"
# The physical floor of an answer given after its usage row commits: one
# fdatasync of the WAL's disk (pg_test_fsync on the data directory, 8 kB
# writes, as the commit of one round does)
FSYNC_MS=$(runuser -u postgres -- $PGBIN/pg_test_fsync -s 2 -f "$LLMGW_TMP/data/fsync.test" 2>/dev/null |
    awk '/^ +fdatasync / {for (i = 1; i <= NF; i++) if ($i == "usecs/op") {print $(i - 1) / 1000; exit}}')
rm -f "$LLMGW_TMP/data/fsync.test"
awk -v l="$lp50" -v d="$dp50" -v p="$pp50" -v f="${FSYNC_MS:-0}" -v fl="$fp50" 'BEGIN {
    a = l - d
    printf "llmgw added p50 at 1 connection: %.3f ms (goal <= 0.2 ms: %s)\n", a, (a <= 0.2 ? "met" : "goal missed")
    printf "  of which one fdatasync of the WAL disk (pg_test_fsync, same run: every answer waits for the commit of its usage row): %.3f ms; the rest: %.3f ms\n", f, a - f
    printf "floor added p50 at 1 connection: %.3f ms (a proxy that only forwards and writes durably; the goal is %s it)\n", fl - d, (fl - d <= 0.2 ? "above" : "below")
    printf "  llmgw over the floor: %.3f ms\n", l - fl
    printf "portkey added p50 at 1 connection: %.3f ms\n", p - d }'
awk -v l="$lrps" -v d="$drps" -v p="$prps" 'BEGIN {
    printf "throughput at 1 connection: llmgw/direct %.2f×  llmgw/portkey %.2f×\n", l / d, l / p }'
read -r drps _ _ <<<"${FIG[direct64]}"
read -r lrps lp50 _ <<<"${FIG[llmgw64]}"
read -r prps pp50 _ <<<"${FIG[portkey64]}"
read -r frps _ _ <<<"${FIG[floor64]}"
awk -v l="$lrps" -v d="$drps" -v p="$prps" -v fl="$frps" 'BEGIN {
    r = l / p
    printf "throughput at 64 connections: llmgw/direct %.2f×\n", l / d
    printf "throughput at 64 connections: llmgw/portkey %.2f× (goal >= 20×: %s)\n", r, (r >= 20 ? "met" : "goal missed")
    printf "throughput at 64 connections: floor/portkey %.2f× (the goal is %s the floor), llmgw/floor %.2f×\n", fl / p, (fl / p >= 20 ? "within" : "beyond"), l / fl }'

# Time to first token of a streamed answer: curl's time_starttransfer (the
# front door sends its headers with the first text event), and the time to
# the end, median of 50 requests each on a new connection, the paths taking
# turns.  Two providers: the mock, which sends its whole stream at once, and
# test/bench/paced_provider.mjs, which sends its first token, then the rest
# 50 ms later (a model generating), so the first token crosses llmgw while
# the stream is still open.
# ttft NAME BODY PATH...: prints "PATH ttfb_ms total_ms" per path
ttft() {
    local name=$1 body=$2 path url hdr bad
    shift 2
    for _ in $(seq 50); do
        for path in "$@"; do
            url=${path}_URL; hdr=${path}_H[@]
            curl -s -o "$LLMGW_TMP/sse.$name.$path" -w "%{http_code} %{time_starttransfer} %{time_total}\n" \
                "${!hdr}" -H 'Content-Type: application/json' -d "$body" "${!url}" >>"$LLMGW_TMP/ttfb.$name.$path"
            grep -q '"content":"Hello' "$LLMGW_TMP/sse.$name.$path" &&
                grep -q '^data: \[DONE\]' "$LLMGW_TMP/sse.$name.$path" ||
                echo "bad 0 0" >>"$LLMGW_TMP/ttfb.$name.$path"
        done
    done
    for path in "$@"; do
        bad=$(awk '$1 != 200' "$LLMGW_TMP/ttfb.$name.$path" | wc -l)
        [ "$bad" -eq 0 ] || fail "$name, $path: $bad streamed answers not 200 or not a whole stream"
        echo "$path $(awk '$1 == 200 {print $2 * 1000}' "$LLMGW_TMP/ttfb.$name.$path" | median) $(awk '$1 == 200 {print $3 * 1000}' "$LLMGW_TMP/ttfb.$name.$path" | median)"
    done
}
median() { sort -n | awk '{v[NR] = $1} END {printf "%.3f", (v[int((NR + 1) / 2)] + v[int(NR / 2) + 1]) / 2}'; }
ttft_report() {
    awk -v what="$1" '{ttfb[$1] = $2; total[$1] = $3
         printf "%s, %s: time to first byte %.3f ms, to the end %.3f ms\n", what, tolower($1), $2, $3}
         END {printf "%s: llmgw added time to first token: %.3f ms, to the end: %.3f ms\n", what,
                ttfb["LLMGW"] - ttfb["DIRECT"], total["LLMGW"] - total["DIRECT"]}'
}
echo
echo "streamed answer (\"stream\": true), median of 50 curl requests per path, a new connection each"
ttft mock "$SBODY" DIRECT LLMGW >"$LLMGW_TMP/ttft.mock"
ttft_report "mock (whole stream at once)" <"$LLMGW_TMP/ttft.mock"
PACED_DIRECT_URL=http://127.0.0.1:$PACED_PORT/v1/chat/completions
PACED_LLMGW_URL=$LLMGW_URL
PACED_DIRECT_H=()
PACED_LLMGW_H=("${LLMGW_H[@]}")
PBODY='{"model":"paced-model","messages":[{"role":"user","content":"hello"}],"stream":true}'
ttft paced "$PBODY" PACED_DIRECT PACED_LLMGW >"$LLMGW_TMP/ttft.paced"
sed 's/^PACED_//' "$LLMGW_TMP/ttft.paced" | ttft_report "paced provider (first token, 50 ms, the rest)"
# Portkey 1.15.2 on Node 20 fails every streamed chat completion with
# "TypeError: immutable" (its updateHeaders appends to the headers of the
# provider's fetch Response, Portkey-AI/gateway#1389): say so, don't time it
code=$(curl -s -o "$LLMGW_TMP/sse.portkey" -w '%{http_code}' "${PORTKEY_H[@]}" \
    -H 'Content-Type: application/json' -d "$SBODY" "$PORTKEY_URL")
if grep -q '^data: \[DONE\]' "$LLMGW_TMP/sse.portkey"; then
    echo "portkey streams (status $code); not timed"
else
    echo "portkey does not stream: status $code, $(head -c 120 "$LLMGW_TMP/sse.portkey"); $(grep -m1 -o 'TypeError: [a-z]*' "$LLMGW_TMP/portkey.log" || true)"
fi

# Memory of each llmgw worker across a long run: after the runs above (the
# warm-up), then at checkpoints every quarter of the requests, 64
# connections.  Private memory (RssAnon) is what a leak grows; VmRSS also
# counts the shared memory the worker has touched (RssShmem: shared buffers
# filling with usage rows, the DSA), which grows to its size and stops.
worker_pids() { psql -qAtX -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker' ORDER BY pid"; }
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo "?"; }
mem_line() {
    local p out=""
    for p in $(worker_pids); do
        out="$out  worker $p: RssAnon $(status_kb $p RssAnon) kB, RssShmem $(status_kb $p RssShmem) kB, VmRSS $(status_kb $p VmRSS) kB, Pss $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo "?") kB;"
    done
    echo "$out"
}
mem_snapshot() { for p in $(worker_pids); do echo "$p $(status_kb $p RssAnon) $(status_kb $p VmRSS)"; done | sort; }

memory_run() {
    local name=$1 script=$2 rate=$3 done_n=0 first=0 quarter=$(( REQUESTS / 4 )) secs bad se
    echo
    echo "memory, $name requests: $REQUESTS at 64 connections, checkpoint every $quarter"
    mem_snapshot >"$LLMGW_TMP/mem0"
    echo "after warm-up:$(mem_line)"
    while [ "$done_n" -lt "$REQUESTS" ]; do
        secs=$(awk -v n="$quarter" -v r="$rate" 'BEGIN {s = int(n / r + 0.999); print s < 1 ? 1 : s}')
        run_llmgw 64 "$secs" "$script"
        read -r rate _ _ _ bad se <<<"$LFIG"
        [ "$bad" -eq 0 ] || fail "memory run ($name): $bad non-2xx answers"
        [ "$se" -eq 0 ] || fail "memory run ($name): $se socket errors"
        case $ACCOUNTING in *MISMATCH) fail "memory run ($name): $ACCOUNTING" ;; esac
        done_n=$(( done_n + ROWS ))
        echo "after $done_n requests ($rate/s):$(mem_line)"
        if [ "$first" -eq 0 ]; then first=$done_n; mem_snapshot >"$LLMGW_TMP/memq"; fi
    done
    mem_snapshot >"$LLMGW_TMP/mem1"
    # the whole run, and from the first checkpoint on: the first quarter
    # warms up this kind of request.  glibc's heap grows in steps of 128 kB
    # or more, so over a short run one step can read as a rate: growth under
    # 512 kB in all is called flat within those steps (--long tells more)
    join "$LLMGW_TMP/mem0" "$LLMGW_TMP/memq" | join - "$LLMGW_TMP/mem1" |
        awk -v n="$done_n" -v m="$(( done_n - first ))" -v what="$name" '{
        ga = ($6 - $2) / n * 100000; gv = ($7 - $3) / n * 100000
        la = ($6 - $4) / m * 100000; lv = ($7 - $5) / m * 100000
        if (la > worst) worst = la
        if ($6 - $4 > worst_kb) worst_kb = $6 - $4
        printf "worker %s memory growth, %s: RssAnon %.1f kB per 100k requests over the whole run (%d requests), %.1f kB per 100k after the first checkpoint (%d requests, %+d kB); VmRSS %.1f and %.1f kB per 100k\n", $1, what, ga, n, la, m, $6 - $4, gv, lv }
        END {
            if (worst <= 100) verdict = "flat (goal: flat, at most 100 kB of private memory per 100k requests after the first checkpoint)"
            else if (worst_kb <= 512) verdict = sprintf("flat within the allocator'"'"'s steps (at most %+d kB after the first checkpoint, under 512 kB; --long tells a leak of a few bytes per request)", worst_kb)
            else verdict = "goal missed: private memory grows by more than 100 kB per 100k requests after the first checkpoint"
            printf "worker memory, %s: %s\n", what, verdict }'
}
read -r rate64 _ <<<"${FIG[llmgw64]}"
memory_run plain "$LLMGW_ROOT/test/bench/mock_post.lua" "$rate64"
memory_run streamed "$LLMGW_TMP/stream.lua" "$rate64"
[ "$(usage_bad_rows)" = 0 ] || fail "usage rows neither ok nor cancelled"
echo
read -r all ok cancelled <<<"$(usage_counts)"
echo "usage rows in all: $all (ok $ok, cancelled $cancelled: requests in flight when wrk stopped), none failed: $([ "$(usage_bad_rows)" = 0 ] && echo yes || echo no)"
[ "$FAILED" -eq 0 ] || { echo "FAILED (see the lines above)"; exit 1; }
echo "ok"
