#!/usr/bin/env bash
# The whole test suite on a throwaway cluster: pg_regress, TAP (crash and
# cancel), and the short fuzz runs.  Ends with "N passed, M failed".
# While working on one part: LLMGW_REGRESS="a b" (pg_regress files, "" for
# none), LLMGW_PROVE="test/t/x.pl" (TAP files, "" for none), LLMGW_QUICK=1
# (no conformance, no fuzz), LLMGW_KEEP=DIR (keep results/ and the TAP logs
# of tmp_check/ there), PGBIN=DIR (the bin directory of another PostgreSQL
# 15, such as a copy of /usr/lib/postgresql/15, /usr/share/postgresql/15 and
# /usr/include/postgresql/15 under one new prefix: two trees tested at once
# then install llmgw into different places).
set -uo pipefail

LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"

[ "$(id -u)" = 0 ] || { echo "run as root (it installs packages and switches to postgres)"; exit 2; }
# Debian's chromium renders the spend report (test/t/018_spend_report.pl);
# pgvector's vector columns take embeddings (test/t/030_enrich_embeddings.pl)
OPTIONAL_PACKAGES="chromium postgresql-15-pgvector"
llmgw_install_packages || { echo "package installation failed"; exit 2; }
llmgw_build || { echo "build failed"; exit 2; }

LLMGW_TMP=$(mktemp -d /tmp/llmgw-test.XXXXXX)
export LLMGW_TMP
cleanup() {
    llmgw_cluster_stop
    llmgw_mock_stop
    [ -n "${LLMGW_KEEP:-}" ] && cp -r "$TREE/results" "$TREE/tmp_check" "$LLMGW_KEEP/" 2>/dev/null
    rm -rf "$LLMGW_TMP"
}
trap cleanup EXIT

# A copy of the tree that postgres owns: pg_regress and TAP write into it
TREE="$LLMGW_TMP/tree"
mkdir -p "$TREE"
tar -C "$LLMGW_ROOT" --exclude=.git -cf - . | tar -C "$TREE" -xf -
chown -R postgres "$TREE" "$LLMGW_TMP"

# Secrets the tests pass by reference: env: (server environment) and file:
export LLMGW_TEST_KEY=sk-test-0123456789
echo "$LLMGW_TEST_KEY" >"$LLMGW_TMP/provider.key"
chown postgres "$LLMGW_TMP/provider.key"
chmod 600 "$LLMGW_TMP/provider.key"
export LLMGW_KEY_FILE="$LLMGW_TMP/provider.key"
# llmgw.secret_directory of the test cluster (lib.sh), holding the same key
mkdir -p "$LLMGW_TMP/secrets"
cp "$LLMGW_KEY_FILE" "$LLMGW_TMP/secrets/provider.key"
chown -R postgres "$LLMGW_TMP/secrets"
chmod 700 "$LLMGW_TMP/secrets"
chmod 600 "$LLMGW_TMP/secrets/provider.key"
export LLMGW_SECRET_DIR="$LLMGW_TMP/secrets"
LLMGW_SERVER_ENV="LLMGW_TEST_KEY=$LLMGW_TEST_KEY"

# the mock replays corpus cases for the conformance tests when the corpus is
# there; LLMGW_NO_CORPUS=1 runs the suite as a user's clone would, without it
if [ -n "${LLMGW_NO_CORPUS:-}" ]; then
    LLMGW_CORPUS=""
else
    LLMGW_CORPUS=$(cd "$LLMGW_ROOT/../shared/corpus" 2>/dev/null && pwd || true)
fi
export LLMGW_CORPUS
[ -n "$LLMGW_CORPUS" ] || echo "corpus not found: the corpus suites are skipped"
llmgw_mock_start --require-key "$LLMGW_TEST_KEY" ${LLMGW_CORPUS:+--corpus "$LLMGW_CORPUS"}
llmgw_cluster_start
# one initdb that every TAP node copies (test/t/LlmgwTest.pm, init)
runuser -u postgres -- $PGBIN/initdb -D "$LLMGW_TMP/initdb-template" -A trust -N >/dev/null ||
    { echo "initdb of the TAP template failed"; exit 2; }
export LLMGW_INITDB_TEMPLATE="$LLMGW_TMP/initdb-template"

passed=0
failed=0
as_postgres() {
    runuser -u postgres -- env PGHOST="$PGHOST" PGUSER=postgres \
        LLMGW_MOCK_URL="$LLMGW_MOCK_URL" LLMGW_MOCK_PORT="$LLMGW_MOCK_PORT" \
        LLMGW_TEST_KEY="$LLMGW_TEST_KEY" LLMGW_KEY_FILE="$LLMGW_KEY_FILE" \
        LLMGW_SECRET_DIR="$LLMGW_SECRET_DIR" LLMGW_INITDB_TEMPLATE="$LLMGW_INITDB_TEMPLATE" \
        LLMGW_CORPUS="$LLMGW_CORPUS" "$@"
}

echo "== pg_regress"
# the corpus_* files need ../shared/corpus
regress=""
for f in $(ls "$LLMGW_ROOT"/test/sql/*.sql | sort); do
    t=$(basename "$f" .sql)
    if [ -z "$LLMGW_CORPUS" ] && [ "${t#corpus_}" != "$t" ]; then
        echo "skip $t (no corpus)"
        continue
    fi
    regress="$regress $t"
done
regress=${LLMGW_REGRESS-$regress}
as_postgres make -s -C "$TREE" PG_CONFIG=$PGBIN/pg_config TAP_TESTS= REGRESS="$regress" \
    installcheck >"$LLMGW_TMP/regress.out" 2>&1
grep -E '\.\.\. ' "$LLMGW_TMP/regress.out" || true
total=$(echo $regress | wc -w)
p=$(grep -cE '\.\.\. ok' "$LLMGW_TMP/regress.out")
f=$((total - p))
passed=$((passed + p)); failed=$((failed + f))
[ "$f" -gt 0 ] && head -300 "$TREE/regression.diffs" 2>/dev/null

echo "== TAP"
prove_tests=${LLMGW_PROVE-$(ls "$LLMGW_ROOT"/test/t/*.pl | sed "s#^$LLMGW_ROOT/##" | tr '\n' ' ')}
[ -n "${prove_tests// }" ] || prove_tests=none
[ "$prove_tests" = none ] || as_postgres make -s -C "$TREE" PG_CONFIG=$PGBIN/pg_config REGRESS= installcheck \
    PROVE_TESTS="$prove_tests" PROVE_FLAGS="--verbose --timer" >"$LLMGW_TMP/tap.out" 2>&1
[ "$prove_tests" = none ] && echo "Result: PASS" >"$LLMGW_TMP/tap.out"
grep -E '^(ok|not ok) [0-9]|^# figures:' "$LLMGW_TMP/tap.out"
# (--timer ends each file with "ok   1234 ms", which is no test)
p=$(grep -cE '^ok [0-9]+( |$)' "$LLMGW_TMP/tap.out")
# a TODO test (a known bug, its reproduction in the test) fails without failing the suite
f=$(grep -E '^not ok ' "$LLMGW_TMP/tap.out" | grep -vc '# TODO')
todo=$(grep -E '^not ok ' "$LLMGW_TMP/tap.out" | grep -c '# TODO')
if ! grep -q '^Result: PASS' "$LLMGW_TMP/tap.out"; then
    tail -40 "$LLMGW_TMP/tap.out"
    [ "$f" -eq 0 ] && f=1
fi
passed=$((passed + p)); failed=$((failed + f))

[ "$todo" -gt 0 ] && echo "$todo TAP tests marked TODO fail: known bugs, each described in its test"
# the slowest TAP files: the suite has to stay under ten minutes on two cores
awk '/^\[[0-9:]+\] test\/t\// {f = $2} /^ok +[0-9]+ ms/ {print $2, f}' "$LLMGW_TMP/tap.out" |
    sort -rn | head -5 | awk '{printf "# slowest: %5.1f s %s\n", $1 / 1000, $2}'
echo "# suite so far: $SECONDS s"

if [ -n "${LLMGW_QUICK:-}" ]; then
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
fi

echo "== conformance (wire-format parsers against ../shared/corpus)"
bash "$LLMGW_ROOT/test/conformance/run.sh" >"$LLMGW_TMP/conformance.out" 2>&1
grep -E '^(not ok|skip|corpus)' "$LLMGW_TMP/conformance.out" || true
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LLMGW_TMP/conformance.out" || true)
if [ -n "$line" ]; then
    echo "$line"
    passed=$((passed + $(echo "$line" | awk '{print $1}')))
    failed=$((failed + $(echo "$line" | awk '{print $3}')))
elif ! grep -q '^corpus not found' "$LLMGW_TMP/conformance.out"; then
    failed=$((failed + 1)); tail -30 "$LLMGW_TMP/conformance.out"
fi

echo "== fuzz (short runs)"
if bash "$LLMGW_ROOT/test/fuzz/run.sh" --short >"$LLMGW_TMP/fuzz.out" 2>&1; then
    passed=$((passed + 1)); echo "ok fuzz"
else
    failed=$((failed + 1)); echo "not ok fuzz"; tail -30 "$LLMGW_TMP/fuzz.out"
fi

if [ "$failed" -gt 0 ]; then
    echo "== server log (tail)"
    tail -30 "$LLMGW_TMP/server.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
