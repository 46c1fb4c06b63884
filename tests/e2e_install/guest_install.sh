#!/bin/sh
# The install test's guest side (tests/e2e_install/install_test.ts copies it to the
# results share as guest.sh; the e2e initramfs runs it chrooted into the host's root
# with a tmpfs overlay). It installs deno-qga for real, checks the unit and the udev
# rule, runs the unit's ExecStart= the way systemd would, lets the host talk to the
# agent, stops it like `systemctl stop`, uninstalls, and lists what is left.
#
# Results in /e2e: status (ready | fail <why> | done), guest.log, install.log,
# verify.log, udev.log, agent.log, uninstall.log, leftover.txt, before.txt, after.txt.
set -u
S=/e2e
REPO=${1:-/work/main}
PORT=/dev/virtio-ports/org.qemu.guest_agent.0
UNIT=/usr/local/lib/systemd/system/deno-qga.service
# The overlay's layers, seen from inside the chroot through init's root.
UPPER=/proc/1/root/mnt/upper/u
LOWER=/proc/1/root/mnt/host
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
exec >"$S/guest.log" 2>&1
cd /

step() { echo "== $(cut -d' ' -f1 /proc/uptime)s: $*"; }
status() { printf '%s\n' "$*" >"$S/status.tmp" && mv "$S/status.tmp" "$S/status"; }
fail() { echo "FAIL: $*"; status "fail $*"; exit 1; }
# What the guest changed: the overlay's upper layer, plus /run (a tmpfs of its own).
snapshot() {
  { (cd "$UPPER" && find . -mindepth 1 -printf '%y %p\n'); find /run -mindepth 1 -printf '%y %p\n'; } |
    sort >"$1"
}

[ -d "$UPPER" ] || fail "no overlay upper layer at $UPPER"
[ -e "$PORT" ] || fail "no $PORT"
# A deno-qga of the host's (a benchmark's cache, an install) is not the guest's: hidden (an
# overlay whiteout) before the snapshot, so that uninstall.sh removing it is not a leftover.
for p in /var/cache/deno-qga /usr/local/lib/deno-qga /usr/local/lib/systemd/system/deno-qga.service \
  /usr/local/lib/udev/rules.d/99-deno-qga.rules; do
  if [ -e "$LOWER$p" ]; then rm -rf "$p" || fail "cannot hide the host's $p"; fi
done
snapshot "$S/before.txt"

step install
sh "$REPO/scripts/install.sh" --dist "$S/dist" >"$S/install.log" 2>&1 || fail "install.sh failed"
[ -f "$UNIT" ] || fail "no $UNIT after install"

# The checking tools below keep state in /run/systemd and /run/udev (no systemd or udevd
# runs here); that is theirs, not the install's, so it is removed again afterwards.
fresh=
for d in /run/systemd /run/udev; do [ -e "$d" ] || fresh="$fresh $d"; done

step "systemd-analyze verify (the installed unit, real paths)"
systemd-analyze verify --man=no deno-qga.service >"$S/verify.log" 2>&1
echo "rc=$?" >>"$S/verify.log"

step "udevadm test (the installed rule on the real port)"
dev=$(basename "$(readlink -f "$PORT")")
udevadm test --action=add "/sys/class/virtio-ports/$dev" >"$S/udev.log" 2>&1
echo "rc=$?" >>"$S/udev.log"
# shellcheck disable=SC2086
[ -z "$fresh" ] || rm -rf $fresh

step "start the unit's ExecStart= as systemd would"
line=$(sed -n 's/^ExecStart=//p' "$UNIT")
case $line in
'' | *[\"\'\$%\\]*) fail "ExecStart= needs systemd unquoting, not emulated here: $line" ;;
esac
set -f
# shellcheck disable=SC2086
set -- $line
set +f
# RuntimeDirectory=deno-qga (0700) and CacheDirectory=deno-qga (0700), then the unit's
# Environment=, WorkingDirectory=/, and StandardInput=/StandardOutput=file:PORT: one
# descriptor opened read-write (<>) for stdin, duplicated to stdout.
mkdir -p -m 0700 /run/deno-qga /var/cache/deno-qga
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin \
  DENO_DIR=/var/cache/deno-qga DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 \
  "$@" <>"$PORT" >&0 2>"$S/agent.log" &
agent=$!
echo "agent pid $agent: $*"
sleep 1
kill -0 "$agent" 2>/dev/null || fail "the agent exited at once: $(cat "$S/agent.log")"
status ready

step "wait for the host"
i=0
while [ ! -e "$S/go-stop" ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i + 1)); done
[ -e "$S/go-stop" ] || echo "no go-stop from the host: stopping anyway"

step "stop (SIGTERM, as systemctl stop)"
kill -TERM "$agent"
wait "$agent"
echo "agent exit status $?" | tee "$S/agent.exit"
sleep 0.5
left=$(ps -eo pid=,args= | grep -F /usr/local/lib/deno-qga/ | grep -v grep || true)
printf '%s\n' "$left" >"$S/processes.txt"
[ -z "$left" ] || echo "processes left: $left"

step uninstall
sh "$REPO/scripts/uninstall.sh" >"$S/uninstall.log" 2>&1 || fail "uninstall.sh failed"
snapshot "$S/after.txt"
# Left behind: anything new in the upper layer or /run, except directories that were
# only copied up from the lower layer (overlayfs keeps those once a child was created).
comm -13 "$S/before.txt" "$S/after.txt" | while read -r type path; do
  case $path in ./*) p=${path#.} ;; *) p=$path ;; esac
  if [ "$type" = d ] && [ "${p#/run/}" = "$p" ] && [ -d "$LOWER$p" ]; then continue; fi
  echo "$type $p"
done >"$S/leftover.txt"
step done
status done
