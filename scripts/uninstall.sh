#!/bin/sh
# Removes exactly what scripts/install.sh laid out, as listed in its manifest
# (<prefix>/lib/deno-qga/install-manifest): the files, the directories it created (when
# empty), and /etc/qemu/qemu-ga.conf if install.sh created it and it is unchanged
# (--purge: also when changed). Also removes what the unit creates at run time:
# /run/deno-qga (state) and /var/cache/deno-qga (Deno's cache).
#
# Usage: sh scripts/uninstall.sh [--prefix DIR] [--destdir DIR] [--purge]
#   (the same --prefix and --destdir as the install)
set -eu
prefix=/usr/local
destdir=${DESTDIR:-}
purge=0
die() { echo "uninstall.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case $1 in
  --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; prefix=$2; shift 2 ;;
  --prefix=*) prefix=${1#*=}; shift ;;
  --destdir) [ $# -ge 2 ] || die "--destdir needs a value"; destdir=$2; shift 2 ;;
  --destdir=*) destdir=${1#*=}; shift ;;
  --purge) purge=1; shift ;;
  -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
  esac
done
case $prefix in /*) ;; *) die "--prefix must be an absolute path" ;; esac
prefix=${prefix%/}
case $destdir in "" | /*) ;; *) destdir=$(pwd -P)/$destdir ;; esac
D=${destdir%/}
manifest=$prefix/lib/deno-qga/install-manifest
[ -f "$D$manifest" ] || die "no manifest at $D$manifest: nothing installed with this prefix"

if [ -z "$D" ] && [ -d /run/systemd/system ]; then
  systemctl stop deno-qga.service 2>/dev/null || true
fi

status=0
dirs=$(mktemp "${TMPDIR:-/tmp}/deno-qga-uninstall.XXXXXX")
trap 'rm -f "$dirs"' EXIT INT TERM
while IFS= read -r entry; do
  kind=${entry%% *}
  rest=${entry#* }
  case $kind in
  f) [ "$rest" = "$manifest" ] || rm -f -- "$D$rest" ;;
  c)
    sum=${rest%% *}
    path=${rest#* }
    if [ -f "$D$path" ]; then
      now=$(sha256sum "$D$path" | cut -d' ' -f1)
      if [ "$now" = "$sum" ] || [ "$purge" = 1 ]; then
        rm -f -- "$D$path"
      else
        echo "uninstall.sh: keeping $path: changed since install (--purge removes it)" >&2
      fi
    fi
    ;;
  d) printf '%s\n' "$rest" >>"$dirs" ;;
  *) echo "uninstall.sh: ignoring manifest line '$entry'" >&2 ;;
  esac
done <"$D$manifest"
rm -f -- "$D$manifest"

# Run-time directories of the unit (RuntimeDirectory=, CacheDirectory=, DENO_DIR).
rm -rf -- "$D/run/deno-qga" "$D/var/cache/deno-qga"

# Directories install.sh created, only when empty, deepest first
# (reverse order puts every directory before its parent).
sort -r "$dirs" | while IFS= read -r d; do
  if [ -d "$D$d" ] && ! rmdir -- "$D$d" 2>/dev/null; then
    echo "uninstall.sh: keeping $d: not empty" >&2
  fi
done

if [ -z "$D" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload || status=1
  udevadm control --reload 2>/dev/null || true
fi
echo "uninstall.sh: removed deno-qga from ${D:-/} (prefix $prefix)"
exit $status
