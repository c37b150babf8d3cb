#!/usr/bin/env bash
# Installs what the tests need, then runs the static checks and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "tests/run.sh: run as root (the end-to-end tests drive real LXC containers)" >&2
  exit 1
fi
. scripts/host-deps.sh
apt_install $OUTPOST_APT_PACKAGES $OUTPOST_TEST_APT_PACKAGES
ensure_incus_client
ensure_deno
ensure_modules .

"$DENO" task check
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
"$DENO" task test 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# A plain summary line any CI can read.
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
passed=$(echo "$summary" | sed -nE 's/.* ([0-9]+) passed.*/\1/p')
failed=$(echo "$summary" | sed -nE 's/.* ([0-9]+) failed.*/\1/p')
ignored=$(echo "$summary" | sed -nE 's/.* ([0-9]+) ignored.*/\1/p')
echo "${passed:-0} passed, ${failed:-0} failed, ${ignored:-0} skipped"
exit "$status"
