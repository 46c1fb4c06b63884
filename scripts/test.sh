#!/bin/sh
# The whole test suite: unit, integration, differential (against qemu-ga 7.2),
# fuzz and end-to-end (a real QEMU guest). The client integration tests run once
# against each agent. Ends with "N passed, N failed" on its own line.
#
# What counts: every Deno test and every test step (t.step) is one, so a test that
# checks several behaviours as steps counts each of them (and itself). From Deno's
# summary `ok | 3 passed (12 steps) | 1 failed (2 steps) (5s)` that is 15 passed and
# 3 failed. An ignored test counts as failed; a run whose summary line is missing, or
# that exits non-zero with no failure counted, counts as one failure.
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
failures=$(mktemp)
run() {
  log=$(mktemp)
  { env -u RUST_BACKTRACE "$@" 2>&1; echo "$?" >"$log.rc"; } | tee "$log"
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
  # Failed tests and steps, repeated just before the last line so that a log's tail names them:
  # each "name => file:line:col" of Deno's ERRORS section with the first line of its error, and
  # each ignored test. (A step's own "... FAILED" line can be split by Deno's "has been running"
  # notes, so the summary sections are read, not the progress lines.) If deno ended without an
  # ERRORS section, its progress lines are the fallback.
  sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '
    /^ ERRORS $/ { e = 1; seen = 1; next }
    /^ FAILURES $/ { e = 0; next }
    e && / => .*:[0-9]+:[0-9]+$/ { print $0; want = 1; next }
    e && want && /^error: / { print "    " substr($0, 1, 400); want = 0; next }
    /\.\.\. ignored/ { print $0 }
    /\.\.\. FAILED/ { progress[++n] = $0 }
    END { if (!seen) for (i = 1; i <= n; i++) print progress[i] }
  ' >>"$failures"
  rc=$(cat "$log.rc")
  rm -f "$log" "$log.rc"
  passed=$(count "$summary" passed)
  failed=$(count "$summary" failed)
  if [ -z "$passed" ] || [ -z "$failed" ]; then passed=0; failed=1; fi
  # An ignored test is a skipped check: it counts as failed.
  ignored=$(count "$summary" ignored)
  failed=$((failed + ${ignored:-0}))
  # deno test failed although its summary counts no failure: count one.
  if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
}
# count SUMMARY WORD: tests plus steps reported as "N WORD" or "N WORD (M step[s])".
count() {
  echo "$1" | awk -v word="$2" '{
    for (i = 2; i <= NF; i++) if ($i == word && $(i - 1) ~ /^[0-9]+$/) {
      n = $(i - 1)
      if ($(i + 1) ~ /^\([0-9]+$/ && $(i + 2) ~ /^steps?\)$/) n += substr($(i + 1), 2)
      print n
      exit
    }
  }'
}
if [ $# -gt 0 ]; then
  run "$DENO" test $FLAGS "$@"
else
  run "$DENO" test $FLAGS
  run env QGA_TEST_AGENT=deno-qga "$DENO" test $FLAGS tests/integration/client_test.ts
fi
if [ -s "$failures" ]; then
  echo "failed or ignored:"
  sed 's/^/  /' "$failures"
fi
rm -f "$failures"
echo "${total_passed} passed, ${total_failed} failed"
[ "$total_failed" = 0 ]
