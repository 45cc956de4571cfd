#!/usr/bin/env bash
# Benchmark: provider batches (docs/batch.md).  N rows through
# CALL llmgw.enrich(..., mode => 'batch') against the mock's Batch API (each
# batch completes 3 s after its create).  For each N, on a freshly started
# server, it prints:
#   call_s    the CALL itself (the rows queued as batch items);
#   upload_s  llmgw's own time to build and upload: from the CALL's start to
#             the last batch's submitted_at (the CALL, worker 0's scan, the
#             JSONL built, uploaded and the batch created; the mock's time
#             to take the file is inside);
#   ingest_s  from the first poll that saw a batch completed to the last
#             result written: the output files downloaded, each row's answer
#             and usage row written (llmgw.batch_ingest_chunk per
#             transaction);
#   rows/s    N / ingest_s; limit/s the same N answers and N usage rows
#             written in one statement in the same run (the physical
#             limit); ratio the first over the second;
#   cpu_us    worker 0's CPU per row over ingest_s (the figure that does not
#             depend on what else the machine runs);
#   hwm_kB    worker 0's VmHWM at the end (it counts the shared buffers the
#             worker touched); anon_peak_kB the peak of its RssAnon (its
#             private memory), sampled every 50 ms;
#   and under each line, the rows written by worker 0's helpers
#   (llmgw.batch_ingest_helpers; their rollup rows, shards 65 - k);
# then, once, the cost per row of the first 2,000 rows of the last job
# against the same 2,000 rows through the synchronous path at the same
# prices (the ratio is the batch discount).  Nothing here asserts a time.
# Usage (root): [LLMGW_BATCH_HELPERS=H] bash test/bench/batch.sh [N[:ROWS_PER_BATCH] ...]
#     (H: llmgw.batch_ingest_helpers, default 1)
#     (default: 10000 100000:10000 100000; a batch holds at most 50000 rows)
set -euo pipefail
LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"
llmgw_install_packages
llmgw_build
SIZES=${*:-10000 100000:10000 100000}
SYNC_ROWS=2000

LLMGW_TMP=$(mktemp -d /tmp/llmgw-bench.XXXXXX)
export LLMGW_TMP
SAMPLER=
trap '[ -n "$SAMPLER" ] && { kill $SAMPLER 2>/dev/null || true; }; llmgw_cluster_stop; llmgw_mock_stop; rm -rf "$LLMGW_TMP"' EXIT
llmgw_mock_start --threads 2
LLMGW_EXTRA_CONF="llmgw.batch_poll_interval = 200
llmgw.batch_ingest_helpers = ${LLMGW_BATCH_HELPERS:-1}
shared_buffers = 512MB" llmgw_cluster_start
psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.set_price('bench-price', input => 2, output => 8, batch_input => 1, batch_output => 4);
SELECT llmgw.create_model('bench-batch', 'mock', 'mock-model;batch_ms:3000', price_model => 'bench-price');
SELECT llmgw.create_model('bench-sync', 'mock', 'mock-model', price_model => 'bench-price');
SQL

restart() {
    runuser -u postgres -- $PGBIN/pg_ctl -D "$LLMGW_TMP/data" -l "$LLMGW_TMP/server.log" -w restart >/dev/null
    for _ in $(seq 100); do
        [ "$(psql -qAtX -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")" -gt 0 ] && break
        sleep 0.1
    done
}

# the pid of worker 0 (its process title names it)
worker0() {
    ps -o pid=,args= --ppid "$(head -1 "$LLMGW_TMP/data/postmaster.pid")" |
        awk '/llmgw worker 0( |$)/ {print $1; exit}'
}

# Every 50 ms until killed, without starting a process (so that the
# probe takes nothing from the ingest it measures): the peak RssAnon (kB)
# of process $1 into $2, and "time cpu_ticks" lines into $3
sample() {
    local pid=$1 out=$2 log=$3 peak=0 k v rest fifo fd
    set +e
    fifo=$(mktemp -u "$LLMGW_TMP/tick.XXXXXX")
    mkfifo "$fifo"
    exec {fd}<>"$fifo"
    while [ -r "/proc/$pid/status" ]; do
        while read -r k v rest; do
            [ "$k" = RssAnon: ] && { [ "$v" -gt "$peak" ] && peak=$v && echo "$peak" >"$out"; break; }
        done <"/proc/$pid/status" 2>/dev/null
        read -r rest <"/proc/$pid/stat" 2>/dev/null || break
        rest=${rest##*) }
        read -r -a v <<<"$rest"
        echo "$EPOCHREALTIME $((v[11] + v[12]))" >>"$log"
        read -r -t 0.05 -u "$fd" rest || true
    done
}

# worker 0's CPU seconds at epoch time $2, from a sample() log $1
cpu_at() { awk -v t="$2" -v hz="$(getconf CLK_TCK)" '$1 <= t {c = $2} END {printf "%.2f", c / hz}' "$1"; }

secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }

printf "%-7s %7s %8s %8s %8s %8s %8s %6s %7s %8s %s\n" rows batches call_s upload_s ingest_s \
    rows/s limit/s ratio cpu_us hwm_kB "anon_peak_kB"
# CPU seconds a process has used (utime + stime)
cpu() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }

for size in $SIZES; do
    n=${size%%:*}
    per_batch=50000
    [ "$size" != "$n" ] && per_batch=${size#*:}
    psql -qX -c "SET client_min_messages = warning; DROP TABLE IF EXISTS items, items_limit;
                 CREATE TABLE items (id int PRIMARY KEY, body text, out text);
                 INSERT INTO items SELECT i, 'Summarise ticket ' || i || ': the printer on floor ' || (i % 7)
                                         || ' jams when printing double-sided pages.' FROM generate_series(1, $n) i;
                 CREATE TABLE items_limit (LIKE items INCLUDING ALL);
                 INSERT INTO items_limit SELECT * FROM items;
                 ANALYZE items, items_limit;" >/dev/null
    restart
    w0=$(worker0)
    echo 0 >"$LLMGW_TMP/anon"
    : >"$LLMGW_TMP/cpu.log"
    sample "$w0" "$LLMGW_TMP/anon" "$LLMGW_TMP/cpu.log" &
    SAMPLER=$!
    helped0=$(psql -qAtX -c "SELECT coalesce(sum(calls), 0) FROM llmgw.usage_daily WHERE batch AND shard > 60")
    start=$(date +%s.%N)
    psql -qX -v ON_ERROR_STOP=1 -c "SET llmgw.batch_max_requests = $per_batch" \
        -c "CALL llmgw.enrich('items', 'id', 'body', 'out', 'bench-batch', mode => 'batch')" >/dev/null 2>&1
    called=$(date +%s.%N)
    job=$(psql -qAtX -c "SELECT max(id) FROM llmgw.jobs")
    # the job's end, waited for by one session (not a client started ten times a second)
    psql -qX -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
        WHILE (SELECT status FROM llmgw.jobs WHERE id = $job) = 'running' LOOP
            PERFORM pg_sleep(0.1);
        END LOOP; END \$\$" >/dev/null
    # worker 0's CPU from the first batch seen completed (the first poll that saw it) to the job's end
    cpu0=$(cpu_at "$LLMGW_TMP/cpu.log" "$(psql -qAtX -c "SELECT extract(epoch FROM min(checked_at))
                                                         FROM llmgw.batches WHERE job_id = $job")")
    cpu1=$(cpu "$w0")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$w0/status")
    kill $SAMPLER 2>/dev/null || true; wait $SAMPLER 2>/dev/null || true; SAMPLER=
    # checked_at: the poll that saw the batch completed (no poll follows it)
    read -r nb upload ingest done_ usage status <<<"$(psql -qAtX -F' ' -c "
        SELECT count(*),
               extract(epoch FROM max(b.submitted_at) - j.started_at)::numeric(10,2),
               extract(epoch FROM max(b.finished_at) - min(b.checked_at))::numeric(10,2),
               j.rows_done, (SELECT count(*) FROM llmgw.usage u WHERE u.job_id = j.id), j.status
          FROM llmgw.batches b JOIN llmgw.jobs j ON j.id = b.job_id
         WHERE j.id = $job GROUP BY j.id")"
    # the physical limit: the same answers and as many usage rows in one statement
    lstart=$(date +%s.%N)
    psql -qX -v ON_ERROR_STOP=1 -c "
        WITH u AS (INSERT INTO llmgw.usage (request_id, attempt, started_at, role_name, model, provider,
                                            upstream_model, status, http_status, input_tokens, output_tokens,
                                            usage_source, price_id, cost, currency, tags)
                   SELECT gen_random_uuid(), 1, now(), 'postgres', 'bench-limit', 'mock', 'mock-model', 'ok', 200,
                          20, 30, 'provider', NULL, 0.00014, 'USD',
                          jsonb_build_object('batch', 'batch_x', 'custom_id', 'r' || i.id)
                     FROM items i)
        UPDATE items_limit l SET out = i.out FROM items i WHERE l.id = i.id" >/dev/null
    lend=$(date +%s.%N)
    lsecs=$(secs "$lstart" "$lend")
    rate=$(awk -v n="$n" -v s="$ingest" 'BEGIN {printf "%.0f", n / s}')
    us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$n" 'BEGIN {printf "%.1f", (b - a) * 1e6 / n}')
    lrate=$(awk -v n="$n" -v s="$lsecs" 'BEGIN {printf "%.0f", n / s}')
    printf "%-7s %7s %8s %8s %8s %8s %8s %6s %7s %8s %s\n" "$n" "$nb" "$(secs "$start" "$called")" "$upload" \
        "$ingest" "$rate" "$lrate" "$(awk -v a="$rate" -v b="$lrate" 'BEGIN {printf "%.3f", a / b}')" "$us" \
        "$hwm" "$(cat "$LLMGW_TMP/anon")"
    echo "        job $job $status ($nb batches of at most $per_batch rows): rows done $done_, usage rows $usage," \
        "rows filled $(psql -qAtX -c "SELECT count(*) FROM items WHERE out IS NOT NULL")," \
        "written by helpers $(($(psql -qAtX -c "SELECT coalesce(sum(calls), 0) FROM llmgw.usage_daily
                                                 WHERE batch AND shard > 60") - helped0))"
done

# cost per row: the first rows of the last job against the same rows synchronously
psql -qX -v ON_ERROR_STOP=1 -c "SET client_min_messages = warning; DROP TABLE IF EXISTS items_sync;
             CREATE TABLE items_sync AS SELECT id, body, NULL::text AS out FROM items WHERE id <= $SYNC_ROWS;
             ALTER TABLE items_sync ADD PRIMARY KEY (id);" \
    -c "CALL llmgw.enrich('items_sync', 'id', 'body', 'out', 'bench-sync', concurrency => 64)" >/dev/null 2>&1
psql -qAtX -F' ' -c "
    WITH s AS (SELECT sum(u.cost) / count(*) AS per_row, count(*) AS n FROM llmgw.usage u
                WHERE u.job_id = (SELECT max(id) FROM llmgw.jobs) AND u.status = 'ok'),
         b AS (SELECT sum(u.cost) / count(*) AS per_row, count(*) AS n FROM llmgw.usage u
                 JOIN llmgw.batch_items i ON i.request_id = u.request_id
                WHERE u.job_id = $job AND i.row_key::int <= $SYNC_ROWS AND u.status = 'ok')
    SELECT s.n, s.per_row::numeric(20,10), b.n, b.per_row::numeric(20,10), (b.per_row / s.per_row)::numeric(6,3)
      FROM s, b" | {
    read -r sn sp bn bp ratio
    echo "cost per row: synchronous $sp ($sn rows), batch $bp (the same $bn rows), batch/sync $ratio"
}
