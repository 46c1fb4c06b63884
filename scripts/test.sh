#!/bin/sh
# The whole test suite: unit, integration, differential (against qemu-ga 7.2) and
# end-to-end (a real QEMU guest). Ends with "N passed, N failed" on its own line.
set -u
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/deno ] || npm ci --no-audit --no-fund >/dev/null
sh scripts/test_deps.sh
DENO=./node_modules/.bin/deno
log=$(mktemp)
env -u RUST_BACKTRACE "$DENO" test --no-prompt --allow-read --allow-write --allow-run --allow-net \
  --allow-env --allow-sys "$@" 2>&1 | tee "$log"
status=$?
[ -f "$log" ] || exit 1
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
rm -f "$log"
passed=$(echo "$summary" | sed -n 's/.*| \([0-9]*\) passed.*/\1/p')
failed=$(echo "$summary" | sed -n 's/.*| \([0-9]*\) failed.*/\1/p')
if [ -z "$passed" ]; then
  echo "0 passed, 1 failed"
  exit 1
fi
echo "${passed} passed, ${failed:-0} failed"
[ "${failed:-0}" = 0 ] || exit 1
exit 0
