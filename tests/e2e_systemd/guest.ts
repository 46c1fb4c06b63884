/**
 * The systemd guest: the same QEMU/TCG machine recipe as tests/e2e (the host's kernel, the
 * host's root over 9p read-only under an overlay), but /init hands over to systemd as PID 1
 * (switch_root) instead of running a script, and the overlay's upper layer lives on a
 * virtio-blk "state disk" (ext4, serial {@linkcode STATE_SERIAL}), so that what the guest
 * installs and its journal (/var/log/journal) survive a reboot: the next QEMU boots the same
 * disk. The host is never changed: every guest write lands on that disk image in a temp dir.
 *
 * Before the first boot the host lays out the upper layer with mkfs.ext4 -d: Debian's own
 * qemu-guest-agent (installed on the shared root) masked, both its unit (one agent owns the
 * port) and its udev rule (so that the guest is one without qemu-guest-agent, and only the
 * package's own rule wants a unit for the port); an /etc/fstab with only the data disk
 * (LABEL=qgadata at /data, the filesystem fsfreeze freezes); a fresh machine-id; no
 * policy-rc.d (the host's container image has one that forbids starting services); and an
 * out-of-band probe runner unit
 * (`<share>/probe/N.req`, the protocol of tests/e2e/vm.ts {@linkcode Vm.guestRun}).
 *
 * The port `org.qemu.guest_agent.0` has the QEMU id {@linkcode PORT_ID}, so QMP can unplug and
 * replug it (device_del / device_add).
 *
 * @module
 */

import { buildInitramfs, GUEST_SHARE, MOUNT_TAGS } from "../e2e/initramfs.ts";
import { SHARE_FILES } from "../e2e/guest_script.ts";
import { makeDataDisk, requireTools, Vm } from "../e2e/vm.ts";

/** Serial of the state disk (the overlay's upper layer). */
export const STATE_SERIAL = "QGASTATE0";
/** Serial of the data disk (ext4 label qgadata, mounted at /data). */
export const DATA_SERIAL = "QGATEST0";
/** The guest's host name. */
export const GUEST_HOSTNAME = "qga-systemd-guest";
/** QEMU ids of the virtio-serial bus and of the agent's port on it. */
export const PORT_ID = "qgaport0";
export const SERIAL_BUS = "vser0";
/** The port's name (guest /dev/virtio-ports/<name>). */
export const PORT_NAME = "org.qemu.guest_agent.0";

/**
 * Units masked in the guest. qemu-guest-agent: one agent per port. The others are the host's
 * enabled services and timers that have nothing to do with the guest agent and would only
 * slow a TCG boot down (a database server, daily maintenance jobs).
 */
export const MASKED_UNITS: readonly string[] = [
  "qemu-guest-agent.service",
  "postgresql.service",
  "apt-daily.timer",
  "apt-daily-upgrade.timer",
  "man-db.timer",
  "dpkg-db-backup.timer",
  "e2scrub_all.timer",
  "fstrim.timer",
];

/** udev rules masked in the guest: qemu-guest-agent's (it tags the same port). */
export const MASKED_UDEV_RULES: readonly string[] = ["60-qemu-guest-agent.rules"];

/**
 * Files of the host's root that the guest does not have (see {@linkcode makeStateDisk}):
 * a container image's policy-rc.d (it forbids starting services) and /.dockerenv, from which
 * systemd concludes that it runs in a container and then skips syncing the disks before it
 * powers off (the last files written before a guest-shutdown were then found empty at the
 * next boot); and a deno-qga of the host's (a benchmark's cache, an install), which would
 * otherwise be the guest's before the package is installed. Real paths only: a whiteout's
 * parent directories are made in the upper layer, where a directory would hide a symlink of
 * the host's (/lib).
 */
export const REMOVED_FILES: readonly string[] = [
  "/usr/sbin/policy-rc.d",
  "/.dockerenv",
  "/var/cache/deno-qga",
  "/usr/lib/deno-qga",
  "/usr/lib/systemd/system/deno-qga.service",
  "/usr/lib/udev/rules.d/99-deno-qga.rules",
  "/usr/share/doc/deno-qga",
];

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Files of the results share (host `<share>/<name>`, guest `/e2e/<name>`). */
export const SYSTEMD_FILES = {
  /** The probe runner, started by qga-e2e-runner.service. */
  runner: "runner.sh",
  runnerLog: "runner.log",
  /** PID of the process /init leaves behind, whose root still sees the upper layer. */
  upperPid: "upper.pid",
  /** `systemctl is-system-running --wait` and `systemd-analyze` once booted. */
  systemState: "system-state.txt",
} as const;

/** Busybox applets the systemd /init needs besides tests/e2e's. */
const APPLETS = ["switch_root"];

/**
 * The `/init` of the systemd guest: the state disk as the overlay's upper layer, tmpfs on /tmp
 * and /var/tmp (systemd-tmpfiles would otherwise crawl the host's /tmp over 9p), the results
 * share at /e2e, then switch_root to systemd. A `sleep` is left behind in the initramfs: the
 * upper layer is reachable through its root (`/proc/<pid>/root/mnt/upper/u`) but is not a
 * mount the guest (or fsfreeze) sees.
 */
export function systemdInitScript(modules: readonly string[]): string {
  const s = GUEST_SHARE;
  return `#!/bin/sh
# deno-qga systemd guest /init (generated by tests/e2e_systemd/guest.ts)
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${modules.join(" ")}; do
  insmod /lib/mods/$m.ko || echo "e2e-init: insmod $m failed"
done
fail() { echo "e2e-init: $*"; poweroff -f; }
state=
i=0
while [ -z "$state" ] && [ $i -lt 100 ]; do
  for b in /sys/block/vd*; do
    [ "$(cat "$b/serial" 2>/dev/null)" = ${STATE_SERIAL} ] && state=/dev/\${b##*/}
  done
  [ -n "$state" ] || { sleep 0.1; i=$((i + 1)); }
done
[ -n "$state" ] || fail "no state disk (serial ${STATE_SERIAL})"
mount -t ext4 "$state" /mnt/upper || fail "state disk mount failed"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose ${MOUNT_TAGS.hostRoot} /mnt/host || fail "9p root mount failed"
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/upper/u,workdir=/mnt/upper/w /mnt/root || fail "overlay mount failed"
mount -t tmpfs -o mode=1777 tmpfs /mnt/root/tmp
mount -t tmpfs -o mode=1777 tmpfs /mnt/root/var/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 ${MOUNT_TAGS.share} /mnt/root${s} || fail "9p share mount failed"
sleep 2147483647 &
echo $! > /mnt/root${s}/${SYSTEMD_FILES.upperPid}
echo "e2e-init: switch_root to systemd"
exec switch_root /mnt/root /lib/systemd/systemd
fail "switch_root failed"
`;
}

/** The probe runner (busybox-free: it runs under the guest's own /bin/sh). */
export function runnerScript(): string {
  const s = GUEST_SHARE;
  return `#!/bin/sh
# deno-qga systemd guest probe runner (generated by tests/e2e_systemd/guest.ts)
exec >> ${s}/${SYSTEMD_FILES.runnerLog} 2>&1
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 TZ=UTC
status() { echo "$1 $(cut -d' ' -f1 /proc/uptime)" >> ${s}/${SHARE_FILES.status}; }
status "runner started"
(
  systemctl is-system-running --wait > ${s}/${SYSTEMD_FILES.systemState} 2>&1
  systemd-analyze >> ${s}/${SYSTEMD_FILES.systemState} 2>&1
  status ready
) &
while :; do
  for r in ${s}/${SHARE_FILES.probeDir}/*.req; do
    [ -e "$r" ] || continue
    n=\${r%.req}
    mv "$r" "$n.run"
    (
      echo start > "$n.start"
      sh "$n.run" > "$n.out" 2>&1 < /dev/null
      echo $? > "$n.rc.tmp"
      mv "$n.rc.tmp" "$n.rc"
    ) &
  done
  sleep 0.2
done
`;
}

const RUNNER_UNIT = `[Unit]
Description=deno-qga e2e probe runner (tests/e2e_systemd)
RequiresMountsFor=${GUEST_SHARE}

[Service]
ExecStart=/bin/sh ${GUEST_SHARE}/${SYSTEMD_FILES.runner}

[Install]
WantedBy=multi-user.target
`;

async function run(cmd: string, args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  if (!o.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${d.decode(o.stdout)}${d.decode(o.stderr)}`);
  }
  return d.decode(o.stdout);
}

/**
 * Creates the state disk at `path` (1 GiB, sparse): an ext4 filesystem holding the overlay's
 * upper layer `u/` (the guest's changes, laid out as described in the module doc) and its
 * work dir `w/`.
 */
export async function makeStateDisk(path: string): Promise<void> {
  const tree = await Deno.makeTempDir({ prefix: "qga-systemd-state." });
  try {
    const u = `${tree}/u`;
    const sys = `${u}/etc/systemd/system`;
    await Deno.mkdir(`${tree}/w`);
    await Deno.mkdir(`${sys}/multi-user.target.wants`, { recursive: true });
    await Deno.mkdir(`${u}${GUEST_SHARE}`);
    await Deno.mkdir(`${u}/data`);
    await Deno.writeTextFile(`${u}/etc/hostname`, `${GUEST_HOSTNAME}\n`);
    await Deno.writeTextFile(`${u}/etc/machine-id`, `${crypto.randomUUID().replaceAll("-", "")}\n`);
    await Deno.writeTextFile(
      `${u}/etc/fstab`,
      "# deno-qga systemd guest (tests/e2e_systemd/guest.ts)\n" +
        "LABEL=qgadata /data ext4 defaults,nofail 0 0\n",
    );
    for (const unit of MASKED_UNITS) await Deno.symlink("/dev/null", `${sys}/${unit}`);
    await Deno.mkdir(`${u}/etc/udev/rules.d`, { recursive: true });
    for (const rule of MASKED_UDEV_RULES) {
      await Deno.symlink("/dev/null", `${u}/etc/udev/rules.d/${rule}`);
    }
    await Deno.writeTextFile(`${sys}/qga-e2e-runner.service`, RUNNER_UNIT);
    await Deno.symlink(
      "../qga-e2e-runner.service",
      `${sys}/multi-user.target.wants/qga-e2e-runner.service`,
    );
    // Removed from the guest (an overlay whiteout): the host's container files (REMOVED_FILES),
    // which a guest does not have.
    for (const file of REMOVED_FILES) {
      if (!await exists(file)) continue;
      await Deno.mkdir(`${u}${file.slice(0, file.lastIndexOf("/"))}`, { recursive: true });
      await run("mknod", [`${u}${file}`, "c", "0", "0"]);
    }
    const disk = await Deno.open(path, { write: true, create: true, truncate: true });
    await disk.truncate(1024 * 1024 * 1024);
    disk.close();
    await run("/sbin/mkfs.ext4", ["-q", "-F", "-L", "qgastate", "-d", tree, path]);
  } finally {
    await Deno.remove(tree, { recursive: true });
  }
}

/** The disks one test's boots share. */
export interface GuestDisks {
  /** The state disk (overlay upper layer). */
  state: string;
  /** The data disk (ext4, label qgadata). */
  data: string;
}

/** Creates both disks in `dir`. */
export async function makeDisks(dir: string): Promise<GuestDisks> {
  const disks = { state: `${dir}/state.img`, data: `${dir}/data.img` };
  await makeStateDisk(disks.state);
  await makeDataDisk(disks.data);
  return disks;
}

/** The virtserialport's QEMU properties (also what QMP device_add re-creates). */
export const PORT_DEVICE = {
  driver: "virtserialport",
  bus: `${SERIAL_BUS}.0`,
  chardev: "qga0",
  name: PORT_NAME,
  id: PORT_ID,
} as const;

/** The guest's CPU model (see {@linkcode systemdQemuArgs}). */
export const CPU_MODEL = "Westmere";

/** The QEMU command line of the systemd guest (argv without the program). */
export function systemdQemuArgs(dir: string, kernelVersion: string, disks: GuestDisks): string[] {
  const port = Object.entries(PORT_DEVICE).map(([k, v]) => k === "driver" ? v : `${k}=${v}`);
  return [
    // Not -cpu max: V8 uses AVX/AVX-512 when CPUID offers them, which TCG emulates slowly;
    // Deno starts about twice as fast on a model without them (measured: deno-qga.js -V
    // 5.0-6.8 s with max, 2.0-2.6 s with Westmere).
    ...["-accel", "tcg,thread=multi", "-cpu", CPU_MODEL, "-smp", "2", "-m", "1536"],
    ...["-nodefaults", "-no-reboot", "-display", "none", "-serial", `file:${dir}/console.log`],
    ...["-kernel", `/boot/vmlinuz-${kernelVersion}`, "-initrd", `${dir}/initramfs.cpio`],
    ...["-append", "console=ttyS0 panic=-1 systemd.unit=multi-user.target"],
    "-virtfs",
    `local,path=/,mount_tag=${MOUNT_TAGS.hostRoot},security_model=none,readonly=on,multidevs=remap`,
    "-virtfs",
    `local,path=${dir}/share,mount_tag=${MOUNT_TAGS.share},security_model=none`,
    ...["-chardev", `socket,path=${dir}/qga0.sock,server=on,wait=off,id=qga0`],
    ...["-device", `virtio-serial-pci,id=${SERIAL_BUS}`],
    ...["-device", port.join(",")],
    ...["-drive", `file=${disks.state},if=none,id=d0,format=raw`],
    ...["-device", `virtio-blk-pci,drive=d0,serial=${STATE_SERIAL}`],
    ...["-drive", `file=${disks.data},if=none,id=d1,format=raw`],
    ...["-device", `virtio-blk-pci,drive=d1,serial=${DATA_SERIAL}`],
    ...["-qmp", `unix:${dir}/qmp.sock,server=on,wait=off`],
  ];
}

/** Host path of the QMP socket of a systemd guest started by {@linkcode startSystemdVm}. */
export function qmpSocket(vm: Vm): string {
  return `${vm.dir}/qmp.sock`;
}

/**
 * Boots the systemd guest on `disks` in a fresh temp dir (sockets, console, results share).
 * `files` are written to the share before boot. The caller must `dispose()` the result.
 */
export async function startSystemdVm(
  disks: GuestDisks,
  options: { timeoutMs: number; files?: Record<string, string | Uint8Array> },
): Promise<Vm> {
  const { kernelVersion, qemu } = await requireTools();
  const dir = await Deno.makeTempDir({ prefix: "qga-e2e-systemd." });
  try {
    await Deno.mkdir(`${dir}/share/${SHARE_FILES.probeDir}`, { recursive: true });
    await buildInitramfs(`${dir}/initramfs.cpio`, {
      kernelVersion,
      busybox: "/bin/busybox",
      init: systemdInitScript,
      applets: APPLETS,
    });
    await Deno.writeTextFile(`${dir}/share/${SYSTEMD_FILES.runner}`, runnerScript());
    for (const [name, data] of Object.entries(options.files ?? {})) {
      if (typeof data === "string") await Deno.writeTextFile(`${dir}/share/${name}`, data);
      else await Deno.writeFile(`${dir}/share/${name}`, data);
    }
    const child = new Deno.Command(qemu, {
      args: systemdQemuArgs(dir, kernelVersion, disks),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    return new Vm(dir, child, options.timeoutMs);
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}
