#!/usr/bin/env bash
# Build and run one libFuzzer target per provider wire format (clang,
# AddressSanitizer with leak detection, UBSan), seeded from
# ../shared/corpus when it is there, one for the front door's Anthropic
# Messages API (fuzz_frontdoor_anthropic.c, seeded from requests_anthropic/)
# and one for its Responses API (fuzz_frontdoor_responses.c, seeded from
# requests_responses/),
# one per provider batch API (fuzz_batch.c: batch objects, lists and
# results documents, Gemini's upload session answers, seeded from batch/),
# one for the scanners of the built-in redaction patterns
# (fuzz_redaction.c), and two that hold llmgw's JSON reader and writer to
# jansson's (fuzz_json_read.c, fuzz_json_write.c, seeded from the requests
# of the other targets).
# --short: 5 s each (the test suite); default: 60 s each, or
# LLMGW_FUZZ_SECONDS each (a longer hunt).  As many targets build and run
# at once as there are cores (LLMGW_FUZZ_JOBS).  Prints libFuzzer's final
# stats for each, and fails when a target fails to build or run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CORPUS="${LLMGW_CORPUS-$ROOT/../shared/corpus}"
SECONDS_EACH=${LLMGW_FUZZ_SECONDS:-60}
[ "${1:-}" = "--short" ] && SECONDS_EACH=5
BUILD="$HERE/build"
mkdir -p "$BUILD"

PGINC=$(/usr/lib/postgresql/15/bin/pg_config --includedir-server)
CFLAGS="-w -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$PGINC -I$ROOT/src -I$HERE"
SOURCES="$HERE/pg_stubs.c $ROOT/src/provider.c $ROOT/src/providers/openai.c $ROOT/src/providers/openai_responses.c $ROOT/src/providers/anthropic.c $ROOT/src/providers/gemini.c $ROOT/src/jsonutil.c $ROOT/src/jsonread.c $ROOT/src/translate.c $ROOT/src/sse.c $ROOT/src/retry.c $ROOT/src/errors.c"

# Seeds: the corpus's recorded bodies of a provider's cases, behind a status
# byte, and the requests of requests/ for the request builders
seed() {
    local name=$1 pattern=$2 dir="$BUILD/seeds_$1"
    mkdir -p "$dir"
    printf '\0{}' >"$dir/empty"
    # requests for the builder (first byte 0300): content parts, response_format
    for f in "$HERE"/requests/*.json; do
        { printf '\300'; cat "$f"; } >"$dir/request-$(basename "$f" .json)"
    done
    # answers the corpus has none of (answers/NAME-*, with their first byte)
    for f in "$HERE"/answers/"$name"-*; do
        [ -f "$f" ] && cp "$f" "$dir/"
    done
    [ -n "$CORPUS" ] && [ -d "$CORPUS" ] || { echo "corpus not found at $CORPUS: built-in seed only" >&2; echo "$dir"; return; }
    for f in "$CORPUS"/$pattern/body.json "$CORPUS"/$pattern/case.json; do
        [ -f "$f" ] || continue
        { printf '\0'; cat "$f"; } >"$dir/$(basename "$(dirname "$f")")-$(basename "$f")"
        { printf '\4'; cat "$f"; } >"$dir/$(basename "$(dirname "$f")")-$(basename "$f")-429"
    done
    for f in "$CORPUS"/$pattern/stream.txt; do
        [ -f "$f" ] || continue
        { printf '\100'; cat "$f"; } >"$dir/$(basename "$(dirname "$f")")-stream"
    done
    for f in "$CORPUS"/$pattern/case.json; do
        case "$f" in *embed*) { printf '\200'; cat "$(dirname "$f")"/body.json 2>/dev/null || cat "$f"; } \
            >"$dir/$(basename "$(dirname "$f")")-embed" ;; esac
    done
    echo "$dir"
}

# seeds of a front door target (anthropic, responses): client requests of
# its API and normalised answers
seed_frontdoor() {
    local dir="$BUILD/seeds_frontdoor_$1"
    mkdir -p "$dir"
    cp "$HERE"/requests_$1/*.json "$dir"/
    echo "$dir"
}

# seeds of a batch API's target: its status, list and results documents
seed_batch() {
    local api=$1 dir="$BUILD/seeds_batch_$1" f kind
    mkdir -p "$dir"
    for f in "$HERE"/batch/"$api"-*; do
        [ -f "$f" ] || continue
        case "$f" in *-status*) kind='\0' ;; *-list.*) kind='\1' ;; *-responses.*) kind='\3' ;;
            *-session-*) kind='\4' ;; *) kind='\2' ;; esac
        { printf "$kind"; cat "$f"; } >"$dir/$(basename "$f")"
    done
    echo "$dir"
}

# Run target name (built as $BUILD/fuzz_NAME) on its regressions, then fuzz
# it from seeds; fails when either fails
run_target() {
    local name=$1 seeds=$2 failed=0
    mkdir -p "$BUILD/work_$name"
    # inputs that once broke this parser, kept so they never do again
    for r in "$HERE"/regressions/"$name"-*; do
        [ -f "$r" ] || continue
        "$BUILD/fuzz_$name" "$r" >"$BUILD/regression_$name.log" 2>&1 ||
            { echo "regression $(basename "$r") fails"; tail -20 "$BUILD/regression_$name.log"; failed=1; }
    done
    echo "== fuzz_$name ($SECONDS_EACH s)"
    if ! ASAN_OPTIONS=detect_leaks=1 "$BUILD/fuzz_$name" -max_total_time="$SECONDS_EACH" \
        -artifact_prefix="$BUILD/" \
        -print_final_stats=1 "$BUILD/work_$name" "$seeds" >"$BUILD/fuzz_$name.log" 2>&1; then
        failed=1
        tail -40 "$BUILD/fuzz_$name.log"
    fi
    grep -a -E 'stat::(number_of_executed_units|new_units_added|peak_rss)|DONE' "$BUILD/fuzz_$name.log" | tail -4
    return $failed
}

# the scanners of the built-in redaction patterns (fuzz_redaction.c)
seed_redaction() {
    local dir="$BUILD/seeds_redaction"
    mkdir -p "$dir"
    printf '\0mail jane.doe+x@mail.example.co.uk, card 4111 1111 1111 1111' >"$dir/mixed"
    printf '\3a@b.c1d.ef 1-2-3-4-5-6-7-8-9-0-1-2-3 lgw_0123456789abcdefXYZ' >"$dir/edges"
    printf '\0{"content":"x@y.zz 12345678901234567890 lgw_lgw_0123456789abcdef"}' >"$dir/json"
    echo "$dir"
}

# JSON documents of every kind for the reader and the writer: the
# other targets' requests, and values at the edges
# (the reader's target takes a byte of flags first: 0, an object or array)
seed_json() {
    local dir="$BUILD/seeds_$1" f
    mkdir -p "$dir"
    for f in "$HERE"/requests*/*.json; do cp "$f" "$dir/$(basename "$(dirname "$f")")-$(basename "$f")"; done
    printf '[-9223372036854775808,9223372036854775807,0,-0,1.5,1e300,-2.5e-7,0.1,"\\u0000\\u001f\\b\\f\\n\\r\\t\\"\\\\/"]' >"$dir/edges"
    printf '{"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80":"\\ud83d\\ude00 \\u00e9 \\u007f","":{},"a":[[],{}]}' >"$dir/utf8"
    printf '"\xed\xa0\x80 \xc0\xaf \xf4\x90\x80\x80 \xff"' >"$dir/not-utf8"
    printf '{"a\\u0041\\ud83d\\ude00":[1e400,-1e-400,12345678901234567890,-0.0,1E+2,"\\u0000"],"a\\u0041\\ud83d\\ude00":{}}' >"$dir/escapes"
    if [ "$1" = json_read ]; then
        for f in "$dir"/*; do { printf '\0'; cat "$f"; } >"$f.flags" && mv "$f.flags" "$f"; done
    fi
    echo "$dir"
}

LIBS="-ljansson /usr/lib/postgresql/15/lib/libpgcommon.a /usr/lib/postgresql/15/lib/libpgport.a"
BATCH_SOURCES="$ROOT/src/batch_result.c $ROOT/src/batch_wire.c $ROOT/src/batch_openai.c $ROOT/src/batch_anthropic.c $ROOT/src/batch_gemini.c"

# The sources the targets share are compiled once, as many at once as
# there are jobs, with coverage but without libFuzzer's main; each target
# is its harness linked with the objects it needs
OBJ="$BUILD/obj"
OBJ_CFLAGS=${CFLAGS/-fsanitize=fuzzer,/-fsanitize=fuzzer-no-link,}
objects() { for f in "$@"; do echo "$OBJ/$(basename "$f" .c).o"; done; }
build_objects() {
    local f
    mkdir -p "$OBJ"
    rm -f "$OBJ"/*.o "$OBJ/failed"
    for f in $SOURCES $BATCH_SOURCES "$ROOT/src/frontdoor_anthropic.c" "$ROOT/src/frontdoor_responses.c" \
        "$ROOT/src/frontdoor_openai.c" "$ROOT/src/redaction_scan.c"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
        { clang $OBJ_CFLAGS -c -o "$(objects "$f")" "$f" || touch "$OBJ/failed"; } &
    done
    wait
    [ ! -e "$OBJ/failed" ]
}

# Build target name and run it (no set -e in here: it runs where a failure
# is tested, which turns set -e off; every step says its own failure)
build_and_run() {
    local name=$1
    rm -f "$BUILD/fuzz_$name"
    case $name in
        openai | responses | anthropic | gemini)
            local pattern
            case $name in
                openai) pattern='{openai,azure,openai_compatible}-*' ;;
                responses) pattern='openai-*responses*' ;;
                *) pattern="$name-*" ;;
            esac
            clang $CFLAGS -DFUZZ_PROVIDER=llmgw_provider_$name -o "$BUILD/fuzz_$name" \
                "$HERE/fuzz_parse.c" $(objects $SOURCES) -lcurl $LIBS || return 1
            run_target "$name" "$(eval seed "$name" "\"$pattern\"")" ;;
        frontdoor_anthropic)
            clang $CFLAGS -o "$BUILD/fuzz_$name" "$HERE/fuzz_frontdoor_anthropic.c" \
                $(objects "$HERE/pg_stubs.c" "$ROOT/src/frontdoor_anthropic.c" "$ROOT/src/jsonutil.c" "$ROOT/src/jsonread.c" \
                "$ROOT/src/translate.c" "$ROOT/src/sse.c" "$ROOT/src/errors.c") $LIBS || return 1
            run_target "$name" "$(seed_frontdoor anthropic)" ;;
        frontdoor_responses)
            clang $CFLAGS -o "$BUILD/fuzz_$name" "$HERE/fuzz_frontdoor_responses.c" \
                $(objects "$HERE/pg_stubs.c" "$ROOT/src/frontdoor_responses.c" "$ROOT/src/frontdoor_openai.c" \
                "$ROOT/src/jsonutil.c" "$ROOT/src/jsonread.c" "$ROOT/src/sse.c" "$ROOT/src/errors.c") $LIBS || return 1
            run_target "$name" "$(seed_frontdoor responses)" ;;
        batch_*)
            # (Azure reads its batches with the OpenAI functions: one target for both)
            clang $CFLAGS -DFUZZ_BATCH=llmgw_$name -o "$BUILD/fuzz_$name" \
                "$HERE/fuzz_batch.c" $(objects $SOURCES $BATCH_SOURCES) -lcurl $LIBS || return 1
            run_target "$name" "$(seed_batch "${name#batch_}")" ;;
        redaction)
            clang $CFLAGS -o "$BUILD/fuzz_redaction" "$HERE/fuzz_redaction.c" \
                $(objects "$ROOT/src/redaction_scan.c") || return 1
            run_target redaction "$(seed_redaction)" ;;
        json_read | json_write)
            clang $CFLAGS -o "$BUILD/fuzz_$name" "$HERE/fuzz_$name.c" \
                $(objects "$HERE/pg_stubs.c" "$ROOT/src/jsonutil.c" "$ROOT/src/jsonread.c" "$ROOT/src/sse.c" "$ROOT/src/errors.c") $LIBS || return 1
            run_target $name "$(seed_json "$name")" ;;
    esac
}

# The targets, as many at once as there are cores (LLMGW_FUZZ_JOBS): each
# builds and runs alone, its output kept for the end, a failure marked
# (LLMGW_FUZZ_TARGETS: some of them only)
TARGETS=${LLMGW_FUZZ_TARGETS:-"openai responses anthropic gemini frontdoor_anthropic frontdoor_responses batch_openai batch_anthropic batch_gemini redaction json_read json_write"}
JOBS=${LLMGW_FUZZ_JOBS:-$(nproc)}
build_objects || { echo "the sources the fuzz targets share do not build"; exit 1; }
for name in $TARGETS; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
    rm -f "$BUILD/job_$name.failed"
    build_and_run "$name" >"$BUILD/job_$name.out" 2>&1 || touch "$BUILD/job_$name.failed" &
done
wait
status=0
for name in $TARGETS; do
    cat "$BUILD/job_$name.out"
    [ -e "$BUILD/job_$name.failed" ] && { echo "fuzz_$name failed"; status=1; }
done
exit $status
