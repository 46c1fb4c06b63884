#!/bin/sh
# Starts deno-qga locally on a unix socket under the checkout (run/qga.sock), its
# state dir beside it (run/state), with the least-privilege permissions that
# `main.ts --print-permissions` computes for these options, and says how to talk
# to it. Extra arguments are passed to the agent (e.g. -v).
set -eu
cd "$(dirname "$0")/.."
[ -x node_modules/.bin/deno ] || npm ci --no-audit --no-fund
mkdir -p run/state run/files
SOCK="$PWD/run/qga.sock"
# This is your own machine, not a guest: commands that would power it off, freeze its
# filesystems or change its accounts are blocked, and guest-file-* is kept to run/files.
# DENO_QGA_LOCAL_FULL=1 starts it as a guest would run it.
SAFE=""
if [ "${DENO_QGA_LOCAL_FULL:-}" != 1 ]; then
  SAFE="-b guest-shutdown,guest-suspend-disk,guest-suspend-ram,guest-suspend-hybrid"
  SAFE="$SAFE,guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-fstrim,guest-set-time"
  SAFE="$SAFE,guest-set-user-password,guest-set-vcpus,guest-set-memory-blocks"
  SAFE="$SAFE,guest-ssh-add-authorized-keys,guest-ssh-remove-authorized-keys"
  SAFE="$SAFE --file-roots=$PWD/run/files"
fi
DENO=./node_modules/.bin/deno
CMD=$(env -u RUST_BACKTRACE "$DENO" run --no-prompt --allow-read --allow-env main.ts \
  --print-permissions -m unix-listen -p "$SOCK" -t "$PWD/run/state" $SAFE "$@")
cat >&2 <<MSG
deno-qga listening on $SOCK${SAFE:+ (machine-changing commands blocked, files in run/files;
  DENO_QGA_LOCAL_FULL=1 npm start runs it as in a guest)}
  talk to it:   socat - UNIX-CONNECT:$SOCK      then type {"execute":"guest-info"}
  or:           $DENO run --allow-read --allow-write --allow-net=unix:$SOCK main.ts client -s $SOCK info
  running:      $CMD
MSG
eval "exec env -u RUST_BACKTRACE $CMD"
