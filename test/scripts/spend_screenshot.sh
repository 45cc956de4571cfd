#!/usr/bin/env bash
# The screenshot of docs/spend_report.md (docs/spend-report.png): a
# throwaway cluster whose clock runs behind (libfaketime) so that it is the
# 20th of a month at 15:00 UTC there and the budgets are well into their
# periods, the month of test/scripts/spend_history.sql, and the report of its
# last 30 days rendered by headless Chromium.  As root, from the repository:
#   bash test/scripts/spend_screenshot.sh [out.png]      (LLMGW_SPEND_REPORT=file keeps the page)
set -euo pipefail

LLMGW_ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export LLMGW_ROOT
. "$LLMGW_ROOT/test/scripts/lib.sh"

[ "$(id -u)" = 0 ] || { echo "run as root (it installs packages and switches to postgres)"; exit 2; }
PACKAGES="$PACKAGES faketime"
OPTIONAL_PACKAGES=""
PACKAGES="$PACKAGES chromium"
llmgw_install_packages
llmgw_build
OUT=${1:-$LLMGW_ROOT/docs/spend-report.png}
FAKETIME_LIB=$(dpkg -L libfaketime | grep '/libfaketime\.so\.1$')

LLMGW_TMP=$(mktemp -d /tmp/llmgw-shot.XXXXXX)
export LLMGW_TMP
trap 'llmgw_cluster_stop; rm -rf "$LLMGW_TMP"' EXIT

# the server's clock: the latest 20th at 15:00 UTC that has passed
if [ "$(date -u +%-d%H)" -ge 2015 ]; then
    day=$(date -u +%Y-%m-20)
else
    day=$(date -u -d "$(date -u +%Y-%m-01) -1 day" +%Y-%m-20)
fi
behind=$(( $(date -u +%s) - $(date -u -d "$day 15:00" +%s) ))
LLMGW_SERVER_ENV="LD_PRELOAD=$FAKETIME_LIB FAKETIME=-$behind"
llmgw_cluster_start

psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION llmgw' \
    -f "$LLMGW_ROOT/test/scripts/spend_history.sql" >/dev/null
psql -X -At -v ON_ERROR_STOP=1 -o "$LLMGW_TMP/report.html" \
    -c "SELECT llmgw.spend_report(now() - interval '30 days', now())"
[ -n "${LLMGW_SPEND_REPORT:-}" ] && cp "$LLMGW_TMP/report.html" "$LLMGW_SPEND_REPORT"

mkdir "$LLMGW_TMP/profile"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$LLMGW_TMP/profile" --hide-scrollbars --window-size=1200,${LLMGW_SHOT_HEIGHT:-2440} \
    --screenshot="$LLMGW_TMP/report.png" "file://$LLMGW_TMP/report.html" >/dev/null 2>&1
cp "$LLMGW_TMP/report.png" "$OUT"
echo "the spend report of $day (server time 15:00 UTC) is in $OUT"
