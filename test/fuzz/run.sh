#!/usr/bin/env bash
# Build and run the libFuzzer targets (clang, AddressSanitizer, UBSan), seeded
# from ../shared/corpus when it is there.  --short: a few seconds each (the
# test suite); default: 60 s each.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CORPUS="${LLMGW_CORPUS:-$ROOT/../shared/corpus}"
SECONDS_EACH=60
[ "${1:-}" = "--short" ] && SECONDS_EACH=10
BUILD="$HERE/build"
mkdir -p "$BUILD"

PGINC=$(/usr/lib/postgresql/15/bin/pg_config --includedir-server)
CFLAGS="-w -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I$PGINC -I$ROOT/src -I$HERE"

build_target() {
    local name=$1; shift
    clang $CFLAGS -o "$BUILD/$name" "$HERE/$name.c" "$HERE/pg_stubs.c" "$@" -ljansson
}

# Seeds: every recorded OpenAI-style body, behind a status byte 0 (HTTP 200)
seed_openai() {
    local dir="$BUILD/seeds_openai"
    mkdir -p "$dir"
    printf '\0{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}' >"$dir/plain"
    printf '\4{"error":{"message":"m","type":"requests","code":"rate_limit_exceeded"}}' >"$dir/error"
    if [ -d "$CORPUS" ]; then
        for f in "$CORPUS"/openai*/body.json "$CORPUS"/azure*/body.json "$CORPUS"/openai*/case.json; do
            [ -f "$f" ] || continue
            { printf '\0'; cat "$f"; } >"$dir/$(basename "$(dirname "$f")")-$(basename "$f")"
        done
    else
        echo "corpus not found at $CORPUS: seeding with built-in examples only"
    fi
    echo "$dir"
}

build_target fuzz_openai "$ROOT/src/provider_openai.c" "$ROOT/src/errors.c"
seeds=$(seed_openai)
mkdir -p "$BUILD/work_openai"
ASAN_OPTIONS=detect_leaks=1 "$BUILD/fuzz_openai" -max_total_time="$SECONDS_EACH" \
    -print_final_stats=1 "$BUILD/work_openai" "$seeds" 2>&1 | tail -15
