/**
 * guest-get-fsinfo, guest-fstrim, guest-get-disks and guest-get-diskstats
 * (qga-reference.md §2.3 "Filesystems" and "CPUs / memory / stats").
 *
 * Everything under /proc, /sys and /run/udev is read through ctx.sys; statvfs(3)
 * comes from ctx.sys.statfs. FITRIM needs an ioctl Deno cannot issue, so
 * guest-fstrim has the privileged helper run util-linux fstrim(8) once per
 * mount point (helper/programs.ts: only a current mount point, an integer minimum).
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { intResult } from "../protocol/int64.ts";
import {
  array,
  bool,
  int,
  type Returned,
  str,
  struct,
  type TypeDesc,
  uint64,
} from "../protocol/types.ts";
import type { SysDirEntry, SystemAccess } from "../system/mod.ts";
import { SandboxRefusal, toSysError } from "../system/mod.ts";
import { type Memo, withFsSnapshot } from "../system/snapshot.ts";
import { buildMountList } from "./mount_list.ts";
import { defineCommand } from "./types.ts";
import { PROGRAMS } from "../helper/programs.ts";
import {
  type DeviceWalk,
  diskAddress,
  GuestDiskAddress,
  GuestDiskBusType,
  isDiskVirtual,
  udevDevice,
  walkDevice,
} from "./disk_address.ts";

// ---------------------------------------------------------------------------------
// guest-get-fsinfo

/** GuestFilesystemInfo (2.2; sizes 3.0; total-bytes-privileged 9.1). */
export const GuestFilesystemInfo = struct("GuestFilesystemInfo", {
  name: str,
  mountpoint: str,
  type: str,
  "*used-bytes": uint64,
  "*total-bytes": uint64,
  "*total-bytes-privileged": uint64,
  disk: array(GuestDiskAddress),
});

type FilesystemInfo = Returned<typeof GuestFilesystemInfo>;

/**
 * Builds guest-get-fsinfo's list: one entry per mount, in reverse mount order. Served
 * from one filesystem snapshot (system/snapshot.ts): one helper round trip per call.
 */
export function getFsinfo(sys: SystemAccess): Promise<FilesystemInfo[]> {
  return withFsSnapshot(sys, fsinfoOf);
}

/** What guest-get-fsinfo reports of a mount besides its sizes. */
interface FsTopology {
  name: string;
  mountpoint: string;
  type: string;
  disk: FilesystemInfo["disk"];
}

/** The mount list and the disks under each mount, in mount order. */
async function topology(sys: SystemAccess): Promise<FsTopology[]> {
  const out: FsTopology[] = [];
  for (const mount of await buildMountList(sys)) {
    const walk: DeviceWalk = { disk: [] };
    const devpath = `/sys/dev/block/${mount.major}:${mount.minor}`;
    await walkDevice(sys, devpath, walk);
    if (walk.error) throw walk.error;
    out.push({
      name: walk.name ?? devpath.slice(devpath.lastIndexOf("/") + 1),
      mountpoint: mount.dir,
      type: mount.type,
      disk: walk.disk,
    });
  }
  return out;
}

async function fsinfoOf(sys: SystemAccess, memo: Memo): Promise<FilesystemInfo[]> {
  // Derived from mountinfo and sysfs only: reused while the snapshot's answers are.
  const mounts = await memo("fsinfo topology", () => topology(sys));
  const out: FilesystemInfo[] = [];
  for (const mount of mounts) {
    const fs: FilesystemInfo = {
      name: mount.name,
      mountpoint: mount.mountpoint,
      type: mount.type,
      disk: structuredClone(mount.disk),
    };
    try {
      const st = await sys.statfs(mount.mountpoint);
      const frsize = BigInt(st.frsize);
      const used = BigInt.asUintN(64, BigInt(st.blocks) - BigInt(st.bfree));
      const nonrootTotal = BigInt.asUintN(64, used + BigInt(st.bavail));
      fs["used-bytes"] = intResult(BigInt.asUintN(64, used * frsize));
      fs["total-bytes"] = intResult(BigInt.asUintN(64, nonrootTotal * frsize));
      fs["total-bytes-privileged"] = intResult(BigInt.asUintN(64, BigInt(st.blocks) * frsize));
    } catch {
      // statvfs failed: qemu-ga leaves the sizes out.
    }
    out.unshift(fs);
  }
  return out;
}

/** guest-get-fsinfo. */
export const guestGetFsinfo = defineCommand({
  name: "guest-get-fsinfo",
  since: "2.2",
  doc: "Lists the mounted filesystems with their sizes and the disks under them",
  differences:
    "Reports total-bytes-privileged (9.1) like qemu-ga 10.2; 7.2 lacks it. The disk serial is " +
    "udev's ID_SERIAL from /run/udev/data, as libudev reads it. One request to the privileged " +
    "helper per call returns mountinfo, statvfs and the sysfs reads the previous call made; the " +
    "helper reuses its answers to those sysfs reads for up to 10 s while mountinfo is unchanged, " +
    "so a disk's address or a device's slaves changed without a mount change may show for 10 s.",
  returns: array(GuestFilesystemInfo),
  needs: { helper: ["read"], read: ["/run/udev/data"] },
  handler: (_args, ctx) => getFsinfo(ctx.sys),
});

// ---------------------------------------------------------------------------------
// guest-fstrim

/** The fstrim(8) executable guest-fstrim runs. */
export const FSTRIM = PROGRAMS.fstrim;

/** GuestFilesystemTrimResult (2.4). */
export const GuestFilesystemTrimResult = struct("GuestFilesystemTrimResult", {
  path: str,
  "*trimmed": int,
  "*minimum": int,
  "*error": str,
});

type TrimResult = Returned<typeof GuestFilesystemTrimResult>;

/** GuestFilesystemTrimResponse (2.4). */
export const GuestFilesystemTrimResponse = struct("GuestFilesystemTrimResponse", {
  paths: array(GuestFilesystemTrimResult),
});

/**
 * Reads one fstrim(8) run (LC_ALL=C, `-v`) as qemu-ga reads its FITRIM ioctl.
 * fstrim prints `<path>: <size> (<n> bytes) trimmed` on success; on failure
 * `fstrim: cannot open <path>: <strerror>`, `fstrim: <path>: FITRIM ioctl failed:
 * <strerror>` or `fstrim: <path>: the discard operation is not supported`.
 */
export function parseFstrim(
  path: string,
  code: number | null,
  output: string,
): { trimmed: bigint } | { error: string } {
  const ok = /\((\d+) bytes\) trimmed/.exec(output);
  if (code === 0 && ok) return { trimmed: BigInt.asUintN(64, BigInt(ok[1]!)) };
  const open = output.indexOf(`cannot open ${path}: `);
  if (open >= 0) {
    const text = output.slice(open + `cannot open ${path}: `.length).split("\n")[0]!;
    return { error: `failed to open: ${text}` };
  }
  if (
    output.includes("the discard operation is not supported") ||
    output.includes(": not a directory")
  ) {
    return { error: "trim not supported" };
  }
  const ioctl = output.indexOf("FITRIM ioctl failed: ");
  if (ioctl >= 0) {
    const text = output.slice(ioctl + "FITRIM ioctl failed: ".length).split("\n")[0]!;
    return { error: `failed to trim: ${text}` };
  }
  const last = output.trim().split("\n").pop() ?? "";
  return { error: `failed to trim: ${last || `fstrim exited with status ${code}`}` };
}

/** guest-fstrim. */
export const guestFstrim = defineCommand({
  name: "guest-fstrim",
  since: "1.2",
  doc: "Discards unused blocks of every mounted filesystem",
  differences:
    "The privileged helper runs util-linux fstrim(8) per mount point (Deno cannot issue FITRIM). `minimum` is the " +
    "requested minimum, where qemu-ga reports the value the kernel wrote back.",
  args: struct("", { "*minimum": int }),
  returns: GuestFilesystemTrimResponse,
  needs: { helper: ["read", "run"] },
  async handler(args, ctx) {
    ctx.log.info("guest-fstrim called");
    const mounts = await buildMountList(ctx.sys);
    const minimum = BigInt.asUintN(64, args.minimum ?? 0n);
    const paths: TrimResult[] = [];
    for (const mount of mounts) {
      const result: TrimResult = { path: mount.dir };
      paths.unshift(result);
      let run;
      try {
        run = await ctx.sys.runProgram({
          program: "fstrim",
          minimum: String(minimum),
          mountpoint: mount.dir,
        });
      } catch (e) {
        if (e instanceof SandboxRefusal) throw e;
        result.error = `failed to trim: ${toSysError(e).strerror}`;
        continue;
      }
      const parsed = parseFstrim(mount.dir, run.code, new TextDecoder().decode(run.output));
      if ("error" in parsed) {
        result.error = parsed.error;
      } else {
        result.minimum = intResult(BigInt.asIntN(64, minimum));
        result.trimmed = intResult(BigInt.asIntN(64, parsed.trimmed));
      }
    }
    return { paths };
  },
});

// ---------------------------------------------------------------------------------
// guest-get-disks

const NVME_COUNTERS = [
  "data-units-read",
  "data-units-written",
  "host-read-commands",
  "host-write-commands",
  "controller-busy-time",
  "power-cycles",
  "power-on-hours",
  "unsafe-shutdowns",
  "media-errors",
  "number-of-error-log-entries",
];

/**
 * GuestDiskSmart (7.1), a flat union on `type` whose `nvme` branch carries the
 * GuestNVMeSmart members (optional here, as they belong to that branch only).
 * Never produced: reading NVMe SMART data needs an NVMe admin ioctl.
 */
export const GuestDiskSmart = struct("GuestDiskSmart", {
  type: GuestDiskBusType,
  "*critical-warning": int,
  "*temperature": int,
  "*available-spare": int,
  "*available-spare-threshold": int,
  "*percentage-used": int,
  ...Object.fromEntries(
    NVME_COUNTERS.flatMap((
      c,
    ): [string, TypeDesc][] => [[`*${c}-lo`, uint64], [`*${c}-hi`, uint64]]),
  ),
});

/** GuestDiskInfo (5.2; smart 7.1). */
export const GuestDiskInfo = struct("GuestDiskInfo", {
  name: str,
  partition: bool,
  "*dependencies": array(str),
  "*address": GuestDiskAddress,
  "*alias": str,
  "*smart": GuestDiskSmart,
});

type DiskInfo = Returned<typeof GuestDiskInfo>;

/** Partition sub-directories: `<disk><digit>…` or `<disk>p<digit>…`. */
function isPartitionOf(disk: string, entry: string): boolean {
  if (!entry.startsWith(disk)) return false;
  const rest = entry.slice(disk.length);
  return /^p[0-9]/.test(rest) || /^[0-9]/.test(rest);
}

/** Builds guest-get-disks' list, in qemu-ga's (reverse discovery) order. */
export async function getDisks(sys: SystemAccess): Promise<DiskInfo[]> {
  let entries;
  try {
    entries = await sys.readDir("/sys/block");
  } catch (e) {
    throw new QgaError(`Can't open directory "/sys/block": ${toSysError(e).strerror}`);
  }
  const out: DiskInfo[] = [];
  for (const entry of entries) {
    if (!entry.isSymlink) continue;
    let size: string;
    try {
      size = await sys.readTextFile(`/sys/block/${entry.name}/size`);
    } catch {
      continue;
    }
    if (size === "0\n") continue;
    const diskDir = `/sys/block/${entry.name}`;
    const udev = await udevDevice(sys, diskDir);
    const devName = udev?.devnode;
    if (devName === undefined) continue;
    const disk: DiskInfo = { name: devName, partition: false };
    const alias = udev?.properties.get("DM_NAME");
    if (alias) disk.alias = alias;
    out.unshift(disk);

    let virtual: boolean;
    try {
      virtual = await isDiskVirtual(sys, diskDir);
    } catch {
      virtual = true;
    }
    if (!virtual) {
      const { address } = await diskAddress(sys, diskDir);
      if (address) disk.address = address;
    }

    // Dependencies: the devnodes of slaves/, present (maybe empty) when the dir exists.
    try {
      const slaves = await sys.readDir(`${diskDir}/slaves`);
      const deps: string[] = [];
      for (const s of slaves) {
        const node = (await udevDevice(sys, `${diskDir}/slaves/${s.name}`))?.devnode;
        if (node !== undefined) deps.unshift(node);
      }
      disk.dependencies = deps;
    } catch {
      // No slaves directory: no dependencies member.
    }

    // Partitions, each depending on its disk.
    let subdirs: SysDirEntry[];
    try {
      subdirs = await sys.readDir(diskDir);
    } catch {
      subdirs = [];
    }
    for (const sub of subdirs) {
      if (!sub.isDirectory || !isPartitionOf(entry.name, sub.name)) continue;
      const node = (await udevDevice(sys, `${diskDir}/${sub.name}`))?.devnode;
      if (node === undefined) continue;
      out.unshift({ name: node, partition: true, dependencies: [devName] });
    }
  }
  return out;
}

/** guest-get-disks. */
export const guestGetDisks = defineCommand({
  name: "guest-get-disks",
  since: "5.2",
  doc: "Lists the block devices and partitions with their dependencies and addresses",
  differences: "NVMe SMART data (`smart`) is never reported: reading it needs an NVMe admin ioctl.",
  returns: array(GuestDiskInfo),
  needs: { helper: ["read"], read: ["/run/udev/data"] },
  handler: (_args, ctx) => getDisks(ctx.sys),
});

// ---------------------------------------------------------------------------------
// guest-get-diskstats

/** GuestDiskStats (7.1). */
export const GuestDiskStats = struct("GuestDiskStats", {
  "*read-sectors": uint64,
  "*read-ios": uint64,
  "*read-merges": uint64,
  "*write-sectors": uint64,
  "*write-ios": uint64,
  "*write-merges": uint64,
  "*discard-sectors": uint64,
  "*discard-ios": uint64,
  "*discard-merges": uint64,
  "*flush-ios": uint64,
  "*read-ticks": uint64,
  "*write-ticks": uint64,
  "*discard-ticks": uint64,
  "*flush-ticks": uint64,
  "*ios-pgr": uint64,
  "*total-ticks": uint64,
  "*weight-ticks": uint64,
});

/** GuestDiskStatsInfo (7.1). */
export const GuestDiskStatsInfo = struct("GuestDiskStatsInfo", {
  name: str,
  major: uint64,
  minor: uint64,
  stats: GuestDiskStats,
});

type DiskStatsInfo = Returned<typeof GuestDiskStatsInfo>;

/** strtoul-style: a decimal token (optional sign), saturated at 2^64-1; null when not a number. */
function ulong(token: string | undefined): bigint | null {
  const m = token === undefined ? null : /^([+-]?)(\d+)/.exec(token);
  if (!m) return null;
  let v = BigInt(m[2]!);
  if (v > 0xffffffffffffffffn) v = 0xffffffffffffffffn;
  return m[1] === "-" ? BigInt.asUintN(64, -v) : v;
}

/**
 * Parses /proc/diskstats as qemu-ga's sscanf does: the number of fields converted
 * decides which members appear (7: old partition format; ≥14: the classic 11;
 * ≥18: discard; ≥20: flush). Fields scanned with `%u` wrap at 32 bits.
 */
export function parseDiskstats(text: string): DiskStatsInfo[] {
  // Conversion widths of "%u %u %s %lu×7 %u×4 %lu×3 %u %lu %u".
  const widths = [32, 32, 0, 64, 64, 64, 64, 64, 64, 64, 32, 32, 32, 32, 64, 64, 64, 32, 64, 32];
  const out: DiskStatsInfo[] = [];
  for (const line of text.split("\n")) {
    const tokens = line.trim().split(/\s+/).filter((t) => t !== "");
    const v: bigint[] = [];
    let name = "";
    let n = 0;
    for (; n < widths.length; n++) {
      if (n === 2) {
        if (tokens[2] === undefined) break;
        name = tokens[2];
        v.push(0n);
        continue;
      }
      const x = ulong(tokens[n]);
      if (x === null) break;
      v.push(widths[n] === 32 ? BigInt.asUintN(32, x) : x);
    }
    if (n < 7) continue;
    const at = (i: number) => intResult(v[i]!);
    const stats: Record<string, number | bigint> = {};
    if (n === 7) {
      stats["read-ios"] = at(3);
      stats["read-sectors"] = at(4);
      stats["write-ios"] = at(5);
      stats["write-sectors"] = at(6);
    }
    if (n >= 14) {
      stats["read-ios"] = at(3);
      stats["read-merges"] = at(4);
      stats["read-sectors"] = at(5);
      stats["read-ticks"] = at(6);
      stats["write-ios"] = at(7);
      stats["write-merges"] = at(8);
      stats["write-sectors"] = at(9);
      stats["write-ticks"] = at(10);
      stats["ios-pgr"] = at(11);
      stats["total-ticks"] = at(12);
      stats["weight-ticks"] = at(13);
    }
    if (n >= 18) {
      stats["discard-ios"] = at(14);
      stats["discard-merges"] = at(15);
      stats["discard-sectors"] = at(16);
      stats["discard-ticks"] = at(17);
    }
    if (n >= 20) {
      stats["flush-ios"] = at(18);
      stats["flush-ticks"] = at(19);
    }
    out.push({ name, major: Number(v[0]!), minor: Number(v[1]!), stats });
  }
  return out;
}

/** guest-get-diskstats. */
export const guestGetDiskstats = defineCommand({
  name: "guest-get-diskstats",
  since: "7.1",
  doc: "Reports the I/O counters of every block device (/proc/diskstats)",
  returns: array(GuestDiskStatsInfo),
  needs: { helper: ["read"] },
  async handler(_args, ctx) {
    let text: string;
    try {
      text = await ctx.sys.readTextFile("/proc/diskstats");
    } catch (e) {
      throw new QgaError(`open("/proc/diskstats"): ${toSysError(e).strerror}`);
    }
    return parseDiskstats(text);
  },
});
