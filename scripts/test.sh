#!/bin/sh
# The whole test suite: unit, integration, differential (against qemu-ga 7.2),
# fuzz and end-to-end (a real QEMU guest). The client integration tests run once
# against each agent. Ends with "N passed, N failed" on its own line.
set -u
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/deno ] || npm ci --no-audit --no-fund >/dev/null
sh scripts/test_deps.sh
DENO=./node_modules/.bin/deno
# The test process itself gets every permission: it measures the agents it starts
# through /proc (RSS, descriptors, listening sockets) and drives pty pairs under
# /dev/pts, which Deno only opens for --allow-all. The agents it starts run with the
# scoped grants `main.ts --print-permissions` prints, never with --allow-all.
FLAGS="--no-prompt --allow-all"
total_passed=0
total_failed=0
run() {
  log=$(mktemp)
  env -u RUST_BACKTRACE "$@" 2>&1 | tee "$log"
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
  rm -f "$log"
  passed=$(echo "$summary" | sed -n 's/.*| \([0-9]*\) passed.*/\1/p')
  failed=$(echo "$summary" | sed -n 's/.*| \([0-9]*\) failed.*/\1/p')
  if [ -z "$passed" ]; then passed=0; failed=1; fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + ${failed:-0}))
}
if [ $# -gt 0 ]; then
  run "$DENO" test $FLAGS "$@"
else
  run "$DENO" test $FLAGS
  run env QGA_TEST_AGENT=deno-qga "$DENO" test $FLAGS tests/integration/client_test.ts
fi
echo "${total_passed} passed, ${total_failed} failed"
[ "$total_failed" = 0 ]
