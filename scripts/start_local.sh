#!/bin/sh
# Starts deno-qga locally on a unix socket under the checkout (run/qga.sock), its
# state dir beside it (run/state), with the least-privilege permissions that
# `main.ts --print-permissions` computes for these options, and says how to talk
# to it. Extra arguments are passed to the agent (e.g. -v).
set -eu
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/deno ] || npm ci --no-audit --no-fund
mkdir -p run/state
SOCK="$PWD/run/qga.sock"
DENO=./node_modules/.bin/deno
CMD=$(env -u RUST_BACKTRACE "$DENO" run --no-prompt --allow-read --allow-env main.ts \
  --print-permissions -m unix-listen -p "$SOCK" -t "$PWD/run/state" "$@")
cat >&2 <<MSG
deno-qga listening on $SOCK
  talk to it:   socat - UNIX-CONNECT:$SOCK      then type {"execute":"guest-info"}
  or:           $DENO run --allow-read --allow-write --allow-net=unix:$SOCK main.ts client -s $SOCK info
  running:      $CMD
MSG
eval "exec env -u RUST_BACKTRACE $CMD"
