#!/bin/sh
# Renders deno-qga.service from its template (packaging/deno-qga.service.in) with the
# agent's own least-privilege ExecStart=: the output of
#
#   LIB/deno run --no-prompt --no-config --allow-read --allow-env LIB/deno-qga.js
#     --print-permissions -m stdio -t /run/deno-qga --helper=LIB/helper/qga-helper
#
# run by the installed deno on the installed bundle, for the config file CONF as it is
# now, re-quoted for systemd. One renderer for both ways of installing: scripts/install.sh
# runs it from the checkout, and the Debian package (scripts/package.sh) ships it as
# /usr/lib/deno-qga/render-unit for its postinst (docs/deploy.md).
#
# Writes the unit to OUT (the caller installs it) and prints the ExecStart= value.
# With --destdir, the files are read below DESTDIR and the DESTDIR prefix is stripped
# from the printed paths (staged installs).
#
# Usage: sh render-unit.sh --lib LIB --template FILE --out FILE [--conf FILE]
#                          [--docdir DIR] [--unitdir DIR] [--destdir DIR]
set -eu
lib=
template=
out=
conf=/etc/qemu/qemu-ga.conf
doc=
unitdir=
D=
die() { echo "render-unit: $*" >&2; exit 1; }
need_arg() { [ "$2" -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case $1 in
  --lib) need_arg "$1" $#; lib=$2; shift 2 ;;
  --template) need_arg "$1" $#; template=$2; shift 2 ;;
  --out) need_arg "$1" $#; out=$2; shift 2 ;;
  --conf) need_arg "$1" $#; conf=$2; shift 2 ;;
  --docdir) need_arg "$1" $#; doc=$2; shift 2 ;;
  --unitdir) need_arg "$1" $#; unitdir=$2; shift 2 ;;
  --destdir) need_arg "$1" $#; D=${2%/}; shift 2 ;;
  -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[ -n "$lib" ] && [ -n "$template" ] && [ -n "$out" ] || die "--lib, --template and --out are required"
: "${doc:=$lib}" "${unitdir:=/lib/systemd/system}"
[ -f "$template" ] || die "no template at $template"
[ -x "$D$lib/deno" ] || die "no deno binary at $D$lib/deno"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/deno-qga-render.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

# The installed bundle under the installed deno, with a clean environment and a throwaway
# Deno cache. QGA_CONF points it at the config to compute the grants from.
helper=$lib/helper/qga-helper
line=$(cd / && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DENO_DIR="$tmp/deno_dir" \
  NO_COLOR=1 DENO_NO_UPDATE_CHECK=1 QGA_CONF="$D$conf" \
  "$D$lib/deno" run --no-prompt --no-config --allow-read --allow-env "$D$lib/deno-qga.js" \
  --print-permissions -m stdio -t /run/deno-qga "--helper=$helper") ||
  die "$D$lib/deno-qga.js --print-permissions failed (is $D$conf valid?)"
if [ -n "$D" ]; then
  line=$(printf '%s\n' "$line" | awk -v d="$D/" '{
    out = ""
    while ((i = index($0, d)) > 0) { out = out substr($0, 1, i - 1) "/"; $0 = substr($0, i + length(d)) }
    print out $0 }')
fi
# Back to an argument vector (the line is shellQuote()d by the agent itself).
eval "set -- $line"
[ "${1:-}" = "$lib/deno" ] || die "unexpected --print-permissions output: $line"
# systemd's quoting: bare words when safe, else "..." with \ and " escaped and % doubled
# (specifiers), and $ doubled in arguments (variable expansion; not in the program path).
sdquote() {
  case $1 in
  '' | *[!A-Za-z0-9_/.,:=@+-]*)
    if [ "$2" = arg ]; then dollar='s/\$/$$/g'; else dollar='s/^//'; fi
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' \
      -e 's/%/%%/g' -e "$dollar")" ;;
  *) printf '%s' "$1" ;;
  esac
}
exec_start=
seen_main=0
for a in "$@"; do
  # main.ts derives its own path from its directory; bundled, that is deno-qga.js.
  [ "$a" = "$lib/main.ts" ] && a=$lib/deno-qga.js
  [ "$a" = "$lib/deno-qga.js" ] && seen_main=$((seen_main + 1))
  if [ -z "$exec_start" ]; then
    exec_start=$(sdquote "$a" path)
  else
    exec_start="$exec_start $(sdquote "$a" arg)"
  fi
done
[ "$seen_main" = 1 ] || die "the generated command does not run $lib/deno-qga.js: $line"

# @NAME@ -> value, literally.
EXEC_START=$exec_start LIBDIR=$lib DOCDIR=$doc UNITDIR=$unitdir awk '
  function sub_all(s, k, v,   out, i) {
    out = ""
    while ((i = index(s, k)) > 0) { out = out substr(s, 1, i - 1) v; s = substr(s, i + length(k)) }
    return out s
  }
  { s = $0
    s = sub_all(s, "@EXEC_START@", ENVIRON["EXEC_START"])
    s = sub_all(s, "@LIBDIR@", ENVIRON["LIBDIR"])
    s = sub_all(s, "@DOCDIR@", ENVIRON["DOCDIR"])
    s = sub_all(s, "@UNITDIR@", ENVIRON["UNITDIR"])
    print s }' "$template" >"$tmp/deno-qga.service"
if grep -n '@[A-Z_]*@' "$tmp/deno-qga.service" >&2; then die "unrendered placeholder"; fi
cat "$tmp/deno-qga.service" >"$out"
printf '%s\n' "$exec_start"
