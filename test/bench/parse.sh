#!/usr/bin/env bash
# Benchmark: parse cost per response for each wire format (see parse.c).
# Usage (root, after the packages of test/scripts/lib.sh): bash test/bench/parse.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
PGINC=$(/usr/lib/postgresql/15/bin/pg_config --includedir-server)
gcc -O2 -w -I"$PGINC" -I"$ROOT/src" -I"$ROOT/test/fuzz" -o "$BUILD/parse" \
    "$ROOT/test/bench/parse.c" "$ROOT/test/fuzz/pg_stubs.c" "$ROOT"/src/provider.c \
    "$ROOT"/src/providers/*.c "$ROOT/src/jsonutil.c" "$ROOT/src/jsonread.c" "$ROOT/src/translate.c" "$ROOT/src/sse.c" "$ROOT/src/retry.c" \
    "$ROOT/src/errors.c" -ljansson -lcurl /usr/lib/postgresql/15/lib/libpgcommon.a
"$BUILD/parse"
