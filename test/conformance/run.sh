#!/usr/bin/env bash
# Parser conformance (no server needed): builds parse_cases with
# AddressSanitizer and runs its built-in cases, then every supported case of
# ../shared/corpus when it is there.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# an LLMGW_CORPUS set but empty means: no corpus
CORPUS="${LLMGW_CORPUS-$ROOT/../shared/corpus}"
BUILD="$ROOT/test/fuzz/build"
mkdir -p "$BUILD"
PGINC=$(/usr/lib/postgresql/15/bin/pg_config --includedir-server)
clang -w -g -O1 -fsanitize=address,undefined -I"$PGINC" -I"$ROOT/src" -I"$ROOT/test/fuzz" \
    -o "$BUILD/parse_cases" "$HERE/parse_cases.c" "$ROOT/test/fuzz/pg_stubs.c" \
    "$ROOT"/src/provider.c "$ROOT"/src/providers/*.c "$ROOT/src/jsonutil.c" "$ROOT/src/translate.c" "$ROOT/src/sse.c" "$ROOT/src/retry.c" "$ROOT/src/errors.c" \
    -ljansson -lcurl -lm /usr/lib/postgresql/15/lib/libpgcommon.a
"$BUILD/parse_cases" "$CORPUS"
