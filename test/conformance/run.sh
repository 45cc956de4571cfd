#!/usr/bin/env bash
# Parser conformance (no server needed): builds parse_cases with
# AddressSanitizer and runs its built-in cases, then every supported case of
# ../shared/corpus when it is there.  The sources compile as many at once as
# there are cores.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# an LLMGW_CORPUS set but empty means: no corpus
CORPUS="${LLMGW_CORPUS-$ROOT/../shared/corpus}"
OBJ="$ROOT/test/fuzz/build/conformance"
rm -rf "$OBJ"
mkdir -p "$OBJ"
PGINC=$(/usr/lib/postgresql/15/bin/pg_config --includedir-server)
CFLAGS="-w -g -O1 -fsanitize=address,undefined -I$PGINC -I$ROOT/src -I$ROOT/test/fuzz"
SOURCES="$HERE/parse_cases.c $ROOT/test/fuzz/pg_stubs.c $ROOT/src/provider.c $(ls "$ROOT"/src/providers/*.c)
    $ROOT/src/jsonutil.c $ROOT/src/jsonread.c $ROOT/src/translate.c $ROOT/src/sse.c $ROOT/src/retry.c $ROOT/src/errors.c"
# shellcheck disable=SC2086
printf '%s\n' $SOURCES | xargs -P "$(nproc)" -I{} sh -c 'clang '"$CFLAGS"' -c -o "'"$OBJ"'/$(basename {} .c).o" {}'
clang -fsanitize=address,undefined -o "$OBJ/parse_cases" "$OBJ"/*.o \
    -ljansson -lcurl -lm /usr/lib/postgresql/15/lib/libpgcommon.a
"$OBJ/parse_cases" "$CORPUS"
