#!/bin/sh
# Makes sure the tools the test suite drives are installed: the reference qemu-ga
# (differential tests), socat, strace and useradd (attack tests), and QEMU with a
# kernel and busybox (end-to-end tests in a real guest). Installs them with apt-get when run as root; otherwise
# says what to install. Missing tools make the tests that need them fail.
set -u
missing=""
need() { [ -e "$1" ] || missing="$missing $2"; }
need /usr/sbin/qemu-ga qemu-guest-agent
need /usr/bin/socat socat
need /usr/bin/qemu-system-x86_64 qemu-system-x86
need /bin/busybox busybox-static
need /sbin/mkfs.ext4 e2fsprogs
need /usr/sbin/fsfreeze util-linux
need /usr/bin/systemd-analyze systemd
need /usr/sbin/ip iproute2
need /usr/bin/strace strace
need /usr/sbin/useradd passwd
need /usr/bin/dpkg-shlibdeps dpkg-dev
ls /boot/vmlinuz-* >/dev/null 2>&1 || missing="$missing linux-image-amd64"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing test dependencies:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null || {
    echo "apt-get install$missing failed" >&2; exit 1; }
else
  echo "the test suite needs:$missing (apt-get install$missing); the tests that need them will fail" >&2
fi
