#!/bin/sh
# Builds deno-qga's deployable artifact with the pinned deno (package.json), as far as it
# can be built here (`deno compile` needs a download: docs/deploy.md):
#
#   <out>/deno-qga.js          the agent: main.ts and what it loads at start-up
#   <out>/<name>-<hash>.js     the rest of the agent, in chunks it imports when needed
#                              (the command table, after the first reply); listed, one
#                              per line, in <out>/deno-qga.chunks
#   <out>/qga-helper.js        the privileged helper: helper/main.ts, one file
#   <out>/channel_worker.ts    the helper's channel worker, bundled (JavaScript): the
#                              helper starts it as new URL("./channel_worker.ts",
#                              import.meta.url), which a bundler does not follow
#   <out>/helper/qga-helper    the helper launcher (packaging/qga-helper.sh): runs
#                              ../qga-helper.js with --allow-all under ../deno
#   <out>/deno                 symlink to the pinned deno binary (install.sh copies it)
#
# `deno run <flags> <out>/deno-qga.js` then finds its helper at its default place,
# <out>/helper/qga-helper. Usage: sh scripts/bundle.sh [--out DIR]   (default: dist)
set -eu
cd "$(dirname "$0")/.."
out=dist
while [ $# -gt 0 ]; do
  case $1 in
  --out) [ $# -ge 2 ] || { echo "bundle.sh: --out needs a directory" >&2; exit 2; }
    out=$2; shift 2 ;;
  --out=*) out=${1#--out=}; shift ;;
  -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "bundle.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

DENO=./node_modules/.bin/deno
[ -x "$DENO" ] || { echo "bundle.sh: $DENO is missing: run npm ci" >&2; exit 1; }
want=$(sed -n 's/^ *"deno": *"\([0-9][0-9.]*\)".*/\1/p' package.json | head -n 1)
have=$(env -u RUST_BACKTRACE "$DENO" --version | sed -n '1s/^deno \([0-9][0-9.]*\) .*/\1/p')
if [ -z "$want" ] || [ "$want" != "$have" ]; then
  echo "bundle.sh: package.json pins deno '$want' but $DENO is '$have': run npm ci" >&2
  exit 1
fi
for f in main.ts helper/main.ts helper/channel_worker.ts packaging/qga-helper.sh; do
  [ -f "$f" ] || { echo "bundle.sh: $f is missing" >&2; exit 1; }
done

mkdir -p "$out/helper"
out=$(CDPATH='' cd -- "$out" && pwd -P)
# deno bundle is experimental in 2.9 and downloads @esbuild/linux-x64 from the npm
# registry on first use (then works offline from DENO_DIR).
# --minify: V8 compiles a function lazily, at its first call, at every start (Deno's code
# cache holds what ran while the module was evaluated), so the text of what runs before
# the first reply is scanned and parsed each time: the minified agent answers its first
# guest-sync 10-15 ms sooner (docs/performance.md, "Start-up"). Nothing reads a
# function's or class's .name, so renaming is safe; a stack trace names minified
# functions at a line and column of these files.
bundle() {
  env -u RUST_BACKTRACE "$DENO" bundle --quiet --platform deno --minify -o "$1" "$2"
}
# The agent is split (--code-splitting) where main.ts imports dynamically: its start-up
# code is deno-qga.js, and the command table (loaded after the first reply, main.ts), the
# client and code they share are chunks beside it. Deno reads and compiles at start only
# what deno-qga.js and its static imports hold: the first reply comes 5-6 ms sooner than
# with everything in one file (docs/performance.md, "Start-up").
split=$out/.agent.tmp
rm -rf "$split"
env -u RUST_BACKTRACE "$DENO" bundle --quiet --platform deno --minify --code-splitting \
  --outdir "$split" main.ts
[ -f "$split/main.js" ] || { echo "bundle.sh: deno bundle wrote no $split/main.js" >&2; exit 1; }
mv -f "$split/main.js" "$out/deno-qga.js.tmp"
# The previous build's chunks go; this build's are listed in deno-qga.chunks.
if [ -f "$out/deno-qga.chunks" ]; then
  while IFS= read -r c; do
    case $c in */* | '' | .*) ;; *) rm -f "$out/$c" ;; esac
  done <"$out/deno-qga.chunks"
fi
: >"$out/deno-qga.chunks.tmp"
for f in "$split"/*.js; do
  [ -e "$f" ] || continue
  c=${f##*/}
  mv -f "$f" "$out/$c"
  printf '%s\n' "$c" >>"$out/deno-qga.chunks.tmp"
done
rmdir "$split" 2>/dev/null || { echo "bundle.sh: unexpected files in $split" >&2; exit 1; }
mv -f "$out/deno-qga.chunks.tmp" "$out/deno-qga.chunks"
bundle "$out/qga-helper.js.tmp" helper/main.ts
bundle "$out/channel_worker.js.tmp" helper/channel_worker.ts
mv -f "$out/deno-qga.js.tmp" "$out/deno-qga.js"
mv -f "$out/channel_worker.js.tmp" "$out/channel_worker.ts"
mv -f "$out/qga-helper.js.tmp" "$out/qga-helper.js"
cp packaging/qga-helper.sh "$out/helper/qga-helper.tmp"
chmod 0755 "$out/helper/qga-helper.tmp"
mv -f "$out/helper/qga-helper.tmp" "$out/helper/qga-helper"
real=$(readlink -f "$DENO")
ln -sfn "$real" "$out/deno"

# The bundle must start on its own: no deno.json, no node_modules.
(cd / && "$out/deno" run --no-prompt --no-config --allow-read --allow-env "$out/deno-qga.js" -V) \
  >/dev/null || {
  echo "bundle.sh: $out/deno-qga.js does not start (deno run --no-config ... -V)" >&2
  exit 1
}
echo "bundle.sh: built $out/deno-qga.js (and $(wc -l <"$out/deno-qga.chunks") chunks), $out/qga-helper.js, $out/helper/qga-helper (deno $have)"
