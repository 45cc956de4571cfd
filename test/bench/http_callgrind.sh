#!/usr/bin/env bash
# Instructions per front-door request of one llmgw worker, counted by
# valgrind's callgrind: unlike wall-clock or CPU time, an instruction count
# repeats on a noisy shared machine.  The postmaster itself runs under
# callgrind (every backend and background worker is forked from it, so each
# has its own count, file cg.<pid>); llmgw.workers = 1, so the one worker
# serves every request.  Against the mock with no added latency, N chat
# requests through the front door with a virtual key (test/bench/client.mjs:
# exactly N, at a fixed number of keep-alive connections), per number of
# connections.  Around each phase the worker's counters are zeroed
# (callgrind_control -z) and dumped (callgrind_control --dump), so start-up,
# warm-up and the other phases are not counted.  Prints the worker's
# instructions per request, and where they go: the inclusive cost per
# request of the usage insert, the executor's start of its statements
# (ExecutorStart, all statements of the worker), the rollup trigger, the
# commit, libcurl, libmicrohttpd, jansson, malloc/free and palloc, and the
# self cost of each library.  Checks that each phase left one usage row per
# request.  Takes about 2 minutes with the defaults.
# Usage (root): bash test/bench/http_callgrind.sh [--requests N, default 1000]
#                   [--conns "1 64"] [--idle S, default 5] [--keep DIR]
#   --idle S: also count S seconds of an idle worker (its timers), to show
#             what of a phase's count is time rather than requests
#   --keep DIR: copy the callgrind files of the phases there (for
#             callgrind_annotate or kcachegrind)
# PGBIN selects another PostgreSQL 15 install (docs/testing.md).
set -euo pipefail
REQUESTS=1000
CONNS="1 64"
IDLE=5
KEEP=
while [ $# -gt 0 ]; do
    case $1 in
        --requests) REQUESTS=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --idle) IDLE=$2; shift ;;
        --keep) KEEP=$2; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"
PACKAGES="$PACKAGES valgrind curl"
llmgw_install_packages
command -v node >/dev/null || apt-get install -y -q nodejs >/dev/null
llmgw_build

LLMGW_TMP=$(mktemp -d /tmp/llmgw-callgrind.XXXXXX)
export LLMGW_TMP
CG=$LLMGW_TMP/cg
finish() {
    local rc=$?
    if [ "$rc" -ne 0 ] && [ -f "$LLMGW_TMP/server.log" ]; then
        echo "exit status $rc; the end of the server log:"
        tail -n 30 "$LLMGW_TMP/server.log"
    fi
    # pg_ctl's fast stop returns when postmaster.pid is gone; the
    # postmaster, under callgrind, then still writes its file: wait for it
    # before the directory is removed
    local pm
    pm=$(head -n 1 "$LLMGW_TMP/data/postmaster.pid" 2>/dev/null || true)
    llmgw_cluster_stop
    for _ in $(seq 600); do
        [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null || break; sleep 0.1
    done
    llmgw_mock_stop
    rm -rf "$LLMGW_TMP"
}
trap finish EXIT

# The postmaster pg_ctl starts is this wrapper (lib.sh's LLMGW_POSTGRES):
# exec keeps the pid, which pg_ctl checks against postmaster.pid.
# callgrind_control reaches a process through valgrind's gdbserver (vgdb,
# FIFOs named after the pid, user and host), which a forked child opens only
# with --trace-children=yes (nothing llmgw runs is exec'd: the switch only
# keeps the gdbserver of the forked backends).  The names' user and host come
# from LOGNAME/USER and HOST, read again at each command from the memory of
# the initial environment, which PostgreSQL overwrites with the process
# title: a command then opens FIFOs that do not exist and valgrind kills the
# worker.  Unset, they read "???" at start and after alike.  The FIFOs go
# into the run's directory (--vgdb-prefix), not /tmp, which others share.
# valgrind's own messages go to their own files, not the server log.
mkdir "$CG"
cat >"$LLMGW_TMP/postgres-callgrind" <<SH
#!/bin/sh
exec env -u USER -u LOGNAME -u HOST valgrind --tool=callgrind --trace-children=yes \\
    --vgdb-prefix=$CG/vgdb --callgrind-out-file=$CG/cg.%p --log-file=$CG/valgrind.%p \\
    $PGBIN/postgres "\$@"
SH
chmod 755 "$LLMGW_TMP/postgres-callgrind"
chown postgres "$CG"
export LLMGW_POSTGRES=$LLMGW_TMP/postgres-callgrind
# start-up and shutdown under callgrind take tens of seconds, not one
export PGCTLTIMEOUT=600

llmgw_mock_start --threads 1
HTTP_PORT=$(llmgw_free_port)
LLMGW_EXTRA_CONF="llmgw.http_listen = '127.0.0.1:$HTTP_PORT'
llmgw.workers = 1"
echo "starting the cluster under callgrind (slow)"
llmgw_cluster_start
psql -qX -v ON_ERROR_STOP=1 -v url="$LLMGW_MOCK_URL" <<'SQL' >/dev/null
CREATE EXTENSION llmgw;
SELECT llmgw.create_provider('mock', 'openai_compatible', :'url');
SELECT llmgw.create_model('mock-model', 'mock', 'mock-model');
SELECT llmgw.create_team('bench');
SQL
KEY=$(psql -qAtX -c "SELECT api_key FROM llmgw.create_key('bench', 'bench key')")
URL=http://127.0.0.1:$HTTP_PORT/v1/chat/completions
for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null && break; sleep 0.5
done
WORKER=$(psql -qAtX -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'llmgw worker'")
case $WORKER in
    ''|*[!0-9]*) echo "FAILURE: not one llmgw worker: '$WORKER'"; exit 1 ;;
esac

usage_rows() { psql -qAtX -c "SELECT count(*) FROM llmgw.usage WHERE status = 'ok'"; }
# send N requests at C connections; fails unless all N were answered 200
send() {
    local out n ok failed secs
    out=$(node "$LLMGW_ROOT/test/bench/client.mjs" "$URL" "$1" "$2" mock-model "authorization:Bearer $KEY")
    read -r n ok failed secs <<<"$out"
    [ "$ok" = "$1" ] && [ "$failed" = 0 ] ||
        { echo "FAILURE: $1 requests at $2 connections: $ok ok, $failed failed"; exit 1; }
    echo "$secs"
}
# callgrind_control on the worker, as its user with the names' variables
# unset (above); vgdb wakes it with ptrace when it sleeps in epoll_wait.
# callgrind_control exits 0 on failure too: its "OK." is the check
cg_control() {
    local out
    out=$(runuser -u postgres -- env -u USER -u LOGNAME -u HOST \
        callgrind_control --vgdb-prefix="$CG/vgdb" "$@" "$WORKER" 2>&1)
    case $out in
        *OK.*) ;;
        *) echo "FAILURE: callgrind_control $* $WORKER: $out" >&2; exit 1 ;;
    esac
}
# zero the worker's counters
cg_zero() { cg_control -z; }
# dump the worker's counters since the zero into a new file; prints its path
cg_dump() {
    local before after f
    before=$(ls "$CG" | grep -c "^cg\.$WORKER\." || true)
    cg_control --dump="$1"
    for _ in $(seq 100); do
        after=$(ls "$CG" | grep -c "^cg\.$WORKER\." || true)
        [ "$after" -gt "$before" ] && break; sleep 0.1
    done
    # dumps are numbered cg.<pid>.1, .2, ...: the newest is the highest
    f=$(ls "$CG" | grep "^cg\.$WORKER\.[0-9]*$" | sort -t. -k3 -n | tail -n 1)
    [ -n "$f" ] || { echo "FAILURE: no callgrind dump of the worker $WORKER" >&2; exit 1; }
    [ -z "$KEEP" ] || { mkdir -p "$KEEP"; cp "$CG/$f" "$KEEP/cg.$1"; }
    echo "$CG/$f"
}
# the Ir total of a dump: its "totals:" line ("summary:" is wrong after a
# zero, an unsigned that went below zero)
cg_total() { awk '/^totals:/ {print $2; exit}' "$1"; }
# A dump that callgrind_annotate reads right: the functions that were on the
# stack at the zero (main ... llmgw_worker_main) have calls=0 lines, whose
# costs it takes for the caller's own instead of the callee's (it counts a
# call only when calls > 0): made calls=1; and the summary made the total
cg_fix() {
    sed -e 's/^calls=0 /calls=1 /' -e "s/^summary: .*/summary: $(cg_total "$1")/" "$1" >"$1.fixed"
    echo "$1.fixed"
}

# Cost per request of a dump: inclusive of the named functions and their
# groups, self of each library.  callgrind_annotate's lines are
# "Ir (pct) file:function [object]" (the object when --context is off, the
# function without debug information is ???:name).
# report FILE REQUESTS
report() {
    local file n=$2
    file=$(cg_fix "$1")
    callgrind_annotate --inclusive=yes --threshold=100 "$file" >"$LLMGW_TMP/incl.txt"
    callgrind_annotate --inclusive=no --threshold=100 "$file" >"$LLMGW_TMP/self.txt"
    perl -e '
        my ($n, $total, $incl, $self) = @ARGV;
        sub rows { my ($f) = @_; my @r; open my $h, "<", $f or die;
            while (<$h>) {
                next unless /^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S+?):(\S+)(?:\s+\[(.*)\])?\s*$/;
                my ($ir, $file, $fn, $obj) = ($1, $2, $3, $4 // "");
                $ir =~ s/,//g; push @r, [$ir, $fn, $obj, $file];
            } return @r }
        my @incl = rows($incl); my @self = rows($self);
        my %incl; for (@incl) { $incl{$_->[1]} //= $_->[0] }
        my $per = sub { sprintf "%12.0f %6.1f%%", $_[0] / $n, 100 * $_[0] / $total };
        printf "  %-56s %12s %7s\n", "inclusive (the function and all it calls)", "Ir/request", "share";
        # the functions named: one line each, absent ones said so
        # (PostgreSQL is stripped: its static functions, ExecCallTriggerFunc
        # and CommitTransaction among them, are only addresses; so are
        # llmgw'"'"'s static ones that the compiler inlined: the exported
        # callers stand for them)
        for my $f (qw(llmgw_worker_main llmgw_frontdoor_run llmgw_http_drive llmgw_settle
                      llmgw_usage_insert ExecutorStart AfterTriggerEndQuery plpgsql_exec_trigger
                      CommitTransactionCommand XLogFlush MHD_run curl_multi_socket_action)) {
            printf "  %-56s %s\n", $f, defined $incl{$f} ? $per->($incl{$f}) : "      (not called)";
        }
        # for each group, its top functions by inclusive cost (they nest:
        # the lines of one group are not to be added up)
        my @groups = (["jansson (json_*)", qr/^json_/], ["libcurl (curl_*)", qr/^curl_/],
                      ["libmicrohttpd (MHD_*)", qr/^MHD_/],
                      ["malloc/free", qr/^(malloc|free|calloc|realloc|cfree|_int_malloc|_int_free)$/],
                      ["palloc/pfree", qr/^(palloc|palloc0|pfree|repalloc|MemoryContextAlloc\w*|AllocSet\w+)$/]);
        for my $g (@groups) {
            my @m = grep { $_->[1] =~ $g->[1] } @incl; my %seen;
            @m = grep { !$seen{$_->[1]}++ } @m;
            printf "  %s, top inclusive:\n", $g->[0];
            printf "    %-54s %s\n", $_->[1], $per->($_->[0]) for @m[0 .. ($#m < 2 ? $#m : 2)];
            printf "    (none)\n" unless @m;
        }
        # self cost by shared object: exact shares, they add up
        my %obj;
        for (@self) {
            my $o = $_->[2] ne "" ? $_->[2] : "(object not named)";
            $o =~ s{.*/}{}; $o =~ s/\.so[.\d]*$//;
            $o = "libc malloc/free" if $_->[1] =~ /^(malloc|free|calloc|realloc|cfree|_int_malloc|_int_free|malloc_consolidate|unlink_chunk\S*|tcache\S*)$/;
            $obj{$o} += $_->[0];
        }
        printf "  %-56s %12s %7s\n", "self, by object (adds up to the total)", "Ir/request", "share";
        my $i = 0;
        for my $o (sort { $obj{$b} <=> $obj{$a} } keys %obj) {
            last if ++$i > 12;
            printf "  %-56s %s\n", $o, $per->($obj{$o});
        }
    ' "$n" "$(cg_total "$1")" "$LLMGW_TMP/incl.txt" "$LLMGW_TMP/self.txt"
}

# Warm-up at every connection count: the worker's plans, caches and
# connections to the mock; its counts are not reported
for c in $CONNS; do send $(( c * 4 > 50 ? c * 4 : 50 )) "$c" >/dev/null; done
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  commit: $(git -C "$LLMGW_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')  cores: $(nproc)  llmgw worker pid: $WORKER  requests per phase: $REQUESTS  $(valgrind --version)"

declare -A TOTAL SECS
if [ "$IDLE" -gt 0 ]; then
    cg_zero; sleep "$IDLE"; f=$(cg_dump idle)
    TOTAL[idle]=$(cg_total "$f")
    echo "idle worker: $(( TOTAL[idle] / IDLE )) instructions/s (its timers; under callgrind)"
fi
FAILED=0
for c in $CONNS; do
    r0=$(usage_rows)
    cg_zero
    SECS[$c]=$(send "$REQUESTS" "$c")
    # every answer follows its usage row's commit; wait anyway, then dump
    for _ in $(seq 100); do [ $(( $(usage_rows) - r0 )) -ge "$REQUESTS" ] && break; sleep 0.1; done
    f=$(cg_dump "conns$c")
    rows=$(( $(usage_rows) - r0 ))
    TOTAL[$c]=$(cg_total "$f")
    echo
    echo "== $REQUESTS requests at $c connection(s), ${SECS[$c]} s under callgrind; usage rows: $rows"
    [ "$rows" -eq "$REQUESTS" ] || { echo "FAILURE: $rows usage rows for $REQUESTS requests"; FAILED=1; }
    report "$f" "$REQUESTS"
done
echo
for c in $CONNS; do
    awk -v t="${TOTAL[$c]}" -v n="$REQUESTS" -v c="$c" -v s="${SECS[$c]}" -v i="${TOTAL[idle]:-0}" -v is="$IDLE" 'BEGIN {
        printf "instructions/request at %s connection(s): %.0f", c, t / n
        if (is > 0) printf " (of which the idle rate over the phase'"'"'s %.1f s: %.0f)", s, i / is * s / n
        printf "\n" }'
done
[ "$FAILED" -eq 0 ] || { echo "FAILED (see the lines above)"; exit 1; }
echo "ok"
