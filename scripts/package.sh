#!/bin/sh
# Builds the Debian package of deno-qga with dpkg-deb (docs/deploy.md, "The Debian
# package"): <out>/deno-qga_<version>_<arch>.deb, version from agent/version.ts.
#
#   /usr/lib/deno-qga/             everything scripts/bundle.sh builds (the pinned deno
#                                  binary, the agent and helper bundles, the helper
#                                  launcher helper/qga-helper), plus render-unit
#                                  (packaging/render-unit.sh) and deno-qga.service.in
#   /lib/udev/rules.d/99-deno-qga.rules
#   /etc/qemu/qemu-ga.conf         the example config, a conffile
#   /usr/share/doc/deno-qga/       README.md and docs/*.md
#   DEBIAN/postinst, prerm, postrm packaging/debian/: postinst renders
#                                  /lib/systemd/system/deno-qga.service with render-unit
#                                  and starts the agent when the port exists
#
# Usage: sh scripts/package.sh [--out DIR] [--version VERSION] [--compress TYPE]
#   --out       where the .deb goes (default: dist)
#   --version   the package version (default: VERSION in agent/version.ts)
#   --compress  dpkg-deb's -Z: gzip (default: any dpkg installs it, fast to build), xz,
#               zstd (dpkg >= 1.21.18) or none
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd -P)
out=dist
version=
compress=gzip
die() { echo "package.sh: $*" >&2; exit 1; }
need_arg() { [ "$2" -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
  case $1 in
  --out) need_arg "$1" $#; out=$2; shift 2 ;;
  --out=*) out=${1#*=}; shift ;;
  --version) need_arg "$1" $#; version=$2; shift 2 ;;
  --version=*) version=${1#*=}; shift ;;
  --compress) need_arg "$1" $#; compress=$2; shift 2 ;;
  --compress=*) compress=${1#*=}; shift ;;
  -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown argument '$1' (try --help)" ;;
  esac
done
[ -x node_modules/.bin/deno ] || npm ci --no-audit --no-fund >&2
for t in dpkg-deb dpkg-shlibdeps; do
  command -v "$t" >/dev/null 2>&1 || die "$t is missing (apt-get install dpkg-dev)"
done
[ -n "$version" ] ||
  version=$(sed -n 's/^export const VERSION = "\([^"]*\)";$/\1/p' agent/version.ts)
case $version in
[0-9]*) ;;
*) die "no usable version (agent/version.ts VERSION or --version): '$version'" ;;
esac
case $version in *[!A-Za-z0-9.+~-]*) die "'$version' is not a Debian version" ;; esac
case $compress in gzip | xz | zstd | none) ;; *) die "unknown --compress '$compress'" ;; esac

stage=$(mktemp -d "${TMPDIR:-/tmp}/deno-qga-package.XXXXXX")
trap 'rm -rf "$stage"' EXIT
trap 'exit 1' INT TERM
root=$stage/root
LIB=/usr/lib/deno-qga
DOC=/usr/share/doc/deno-qga

# Everything the bundles need is what bundle.sh builds: take its whole output tree, so
# the package follows bundle.sh when files are added to it.
sh scripts/bundle.sh --out "$stage/bundle" >&2
mkdir -p "$root$LIB"
cp -RL "$stage/bundle/." "$root$LIB/"
find "$root$LIB" -type d -exec chmod 0755 {} +
find "$root$LIB" -type f -perm /111 -exec chmod 0755 {} +
find "$root$LIB" -type f ! -perm /111 -exec chmod 0644 {} +
for f in deno deno-qga.js helper/qga-helper; do
  [ -f "$root$LIB/$f" ] || die "bundle.sh did not build $f"
done
install -m 0755 packaging/render-unit.sh "$root$LIB/render-unit"
install -m 0644 packaging/deno-qga.service.in "$root$LIB/deno-qga.service.in"
install -D -m 0644 packaging/99-deno-qga.rules "$root/lib/udev/rules.d/99-deno-qga.rules"
install -D -m 0644 packaging/deno-qga.conf.example "$root/etc/qemu/qemu-ga.conf"
install -d -m 0755 "$root$DOC"
install -m 0644 README.md docs/*.md "$root$DOC/"

# The architecture of the deno binary (ELF e_machine).
case $(od -An -tx1 -j18 -N2 "$root$LIB/deno" | tr -d ' \n') in
3e00) arch=amd64 ;;
b700) arch=arm64 ;;
*) die "$LIB/deno is neither an x86-64 nor an aarch64 ELF binary" ;;
esac

# Depends: the shared libraries of the deno binary, as dpkg-shlibdeps computes them from
# this machine's packages (it wants a debian/control to read).
mkdir -p "$stage/src/debian"
printf 'Source: deno-qga\n\nPackage: deno-qga\nArchitecture: any\n' >"$stage/src/debian/control"
shlibs=$(cd "$stage/src" && dpkg-shlibdeps -O "-e$root$LIB/deno" 2>"$stage/shlibdeps.err") ||
  die "dpkg-shlibdeps failed: $(cat "$stage/shlibdeps.err")"
shlibs=${shlibs#shlibs:Depends=}
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no dependencies"

install -d -m 0755 "$root/DEBIAN"
for s in postinst prerm postrm; do install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"; done
echo /etc/qemu/qemu-ga.conf >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: deno-qga
Version: $version
Architecture: $arch
Maintainer: deno-qga maintainers <deno-qga@localhost.invalid>
Installed-Size: $size
Depends: $shlibs, mawk | awk
Section: admin
Priority: optional
Description: QEMU guest agent in TypeScript on Deno, sandboxed
 deno-qga answers the host's guest agent protocol on the virtio-serial port
 org.qemu.guest_agent.0, wire-compatible with qemu-ga: libvirt, Proxmox VE,
 KubeVirt and OpenStack Nova talk to it unchanged. The agent runs with the
 least Deno permissions its enabled commands need; only a small privileged
 helper runs with full access.
 .
 The service starts when the port appears. Its unit conflicts with
 qemu-guest-agent.service: mask that one (one agent per port).
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
  xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$(CDPATH='' cd -- "$out" && pwd -P)/deno-qga_${version}_${arch}.deb"
# File times from the last commit, for a reproducible package.
if [ -z "${SOURCE_DATE_EPOCH:-}" ] && git -C "$repo" rev-parse HEAD >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi
dpkg-deb --root-owner-group "-Z$compress" --build "$root" "$deb.tmp" >/dev/null
mv -f "$deb.tmp" "$deb"
echo "package.sh: built $deb"
