#!/bin/sh
# deno-qga privileged helper launcher for the bundles (installed as
# <libdir>/helper/qga-helper: mode 0755, owned by root; bundle.sh puts it in
# dist/helper/). The bundled counterpart of the repository's helper/qga-helper.
#
# The sandboxed agent starts this file (its one --allow-run grant for the helper) and
# talks to the helper over stdin/stdout. It runs qga-helper.js, one directory up, with
# --allow-all under the deno binary beside it. It ignores its arguments and the
# caller's environment, so a compromised agent cannot steer what runs with
# --allow-all (DENO_*, NODE_OPTIONS, LD_*, PATH): always that deno, that file, these
# flags. --no-config: no deno.json or package.json of a parent directory applies.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset IFS
export PATH
here=$(cd -P -- "$(dirname -- "$0")" && pwd -P) || exit 127
lib=${here%/helper}
[ "$lib/helper" = "$here" ] || { echo "qga-helper: not inside a helper/ directory: $here" >&2; exit 127; }
# Deno's cache: the unit's CacheDirectory= (root-made, so not the agent's choice). Without
# it (a run outside the unit) Deno runs uncached: a path that cannot be created.
cache=/var/cache/deno-qga
[ -d "$cache" ] || cache=/dev/null/uncached
cd / || exit 127
exec /usr/bin/env -i \
  PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 \
  DENO_DIR="$cache" \
  DENO_NO_UPDATE_CHECK=1 \
  NO_COLOR=1 \
  "$lib/deno" run \
  --allow-all --no-prompt --no-config --no-lock --no-remote --no-npm \
  "$lib/qga-helper.js"
