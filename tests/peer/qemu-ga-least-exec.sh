#!/bin/sh
# Stand-in for <qemu build>/qga/qemu-ga used by scripts/test_qga.sh: deno-qga with the
# least-privilege grants `main.ts --print-permissions` prints for test-qga's arguments plus
# `--exec-programs=echo,bash` (the programs test-qga's guest-exec tests run: an operator
# names the programs guest-exec may start). Never -A.
# run.sh (../shared/tools/peer) copies this file to <shadow>/qga/qemu-ga and replaces
# @DENO_QGA@ with the checkout path: test-qga may start the agent with an environment
# holding only QGA_OS_RELEASE, so nothing here comes from the environment.
P="${DENO_QGA_DIR:-@DENO_QGA@}"
D="$P/node_modules/.bin/deno"
PP="run --no-prompt --no-config --allow-read --allow-env"
line=$("$D" $PP "$P/main.ts" --print-permissions "$@" --exec-programs=echo,bash) || exit $?
case "$line" in
  *" run --no-prompt --no-config "*" $P/main.ts"*)
    eval "set -- $line"
    exec "$@" ;;
  *)
    # -D, -V, -h print and exit before a command line is printed.
    exec "$D" $PP "$P/main.ts" "$@" ;;
esac
