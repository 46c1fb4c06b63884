/**
 * The sysfs topology walk behind guest-get-fsinfo and guest-get-disks: from a
 * block device's sysfs path to the GuestDiskAddress libvirt maps onto its own
 * disk definitions (qga-reference.md §2.3 "Filesystems"; qemu-ga's
 * build_guest_fsinfo_for_device and friends in qga/commands-linux.c).
 *
 * - Virtual devices (`/devices/virtual/block/`: dm, md, loop) recurse into
 *   `slaves/`; real ones give one address each, prepended.
 * - PCI paths are walked from the root port down to the first controller whose
 *   driver is known (ata_piix, sym53c8xx, virtio-pci, ahci, nvme, xhci_hcd,
 *   ehci-pci); CCW (s390x) and non-PCI virtio paths are handled too.
 * - `dev` is udev's devnode (`/dev/` + DEVNAME of the device's uevent file) and
 *   `serial` udev's ID_SERIAL, read from the udev database
 *   (`/run/udev/data/b<major>:<minor>`) as libudev does. Without a database (udev
 *   not running) there is no serial, exactly as with qemu-ga; the kernel's
 *   `serial` attribute is deliberately not used as a fallback, since qemu-ga on
 *   the same machine would not report it.
 *
 * Every address carries all of bus-type, bus, target, unit and
 * pci-controller{domain,bus,slot,function} (libvirt rejects partial ones); unknown
 * values keep qemu-ga's defaults (-1 for the PCI fields, `unknown`, 0).
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { enumType, int, type Returned, str, struct } from "../protocol/types.ts";
import { type SystemAccess, toSysError } from "../system/mod.ts";

/** GuestDiskBusType (2.2; `nvme` since 7.1). */
export const GuestDiskBusType = enumType("GuestDiskBusType", [
  "ide",
  "fdc",
  "scsi",
  "virtio",
  "xen",
  "usb",
  "uml",
  "sata",
  "sd",
  "unknown",
  "ieee1394",
  "ssa",
  "fibre",
  "raid",
  "iscsi",
  "sas",
  "mmc",
  "virtual",
  "file-backed-virtual",
  "nvme",
]);

/** GuestPCIAddress (2.2): -1 marks an unknown field. */
export const GuestPCIAddress = struct("GuestPCIAddress", {
  domain: int,
  bus: int,
  slot: int,
  function: int,
});

/** GuestCCWAddress (6.0). */
export const GuestCCWAddress = struct("GuestCCWAddress", {
  cssid: int,
  ssid: int,
  subchno: int,
  devno: int,
});

/** GuestDiskAddress (2.2; serial and dev 3.1; ccw-address 6.0). */
export const GuestDiskAddress = struct("GuestDiskAddress", {
  "pci-controller": GuestPCIAddress,
  "bus-type": GuestDiskBusType,
  bus: int,
  target: int,
  unit: int,
  "*serial": str,
  "*dev": str,
  "*ccw-address": GuestCCWAddress,
});

/** A GuestDiskAddress value. */
export type DiskAddress = Returned<typeof GuestDiskAddress>;

/**
 * What the walk accumulates for one filesystem (qemu-ga's GuestFilesystemInfo
 * while it is being built): the name of the first device met, the addresses
 * (prepended), and the first error, which does not stop the walk by itself.
 */
export interface DeviceWalk {
  name?: string;
  disk: DiskAddress[];
  error?: QgaError;
}

/** Drivers whose PCI function is the disk controller qemu-ga reports. */
const CONTROLLER_DRIVERS = new Set([
  "ata_piix",
  "sym53c8xx",
  "virtio-pci",
  "ahci",
  "nvme",
  "xhci_hcd",
  "ehci-pci",
]);

function basename(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1) || "/";
}

function fail(walk: DeviceWalk, desc: string): void {
  walk.error ??= new QgaError(desc);
}

/** `desc: strerror` as qemu's error_setg_errno builds it. */
function errnoText(desc: string, e: unknown): string {
  return `${desc}: ${toSysError(e).strerror}`;
}

/** Parses a `KEY=VALUE` per line file (uevent) into a map. */
export function parseUevent(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const eq = line.indexOf("=");
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

/** Parses a udev database file: the `E:KEY=VALUE` lines are the properties. */
export function parseUdevDb(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("E:")) continue;
    const eq = line.indexOf("=");
    if (eq > 2) out.set(line.slice(2, eq), line.slice(eq + 1));
  }
  return out;
}

/** What libudev knows about a block device: its devnode and properties. */
export interface UdevDevice {
  /** `/dev/<DEVNAME>`, absent when the uevent file names no node. */
  devnode?: string;
  /** uevent properties overlaid with the udev database's. */
  properties: Map<string, string>;
}

/**
 * Looks a block device up as udev_device_new_from_syspath does: null when the
 * sysfs path has no uevent file (libudev then fails too).
 */
export async function udevDevice(sys: SystemAccess, syspath: string): Promise<UdevDevice | null> {
  let uevent: Map<string, string>;
  try {
    uevent = parseUevent(await sys.readTextFile(`${syspath}/uevent`));
  } catch {
    return null;
  }
  const properties = new Map(uevent);
  const major = uevent.get("MAJOR");
  const minor = uevent.get("MINOR");
  if (major !== undefined && minor !== undefined) {
    try {
      const db = parseUdevDb(await sys.readTextFile(`/run/udev/data/b${major}:${minor}`));
      for (const [k, v] of db) properties.set(k, v);
    } catch {
      // No database entry: udev is not running or has not seen the device.
    }
  }
  const devname = uevent.get("DEVNAME");
  const device: UdevDevice = { properties };
  if (devname) device.devnode = devname.startsWith("/") ? devname : `/dev/${devname}`;
  return device;
}

/** A fresh address with qemu-ga's defaults. */
function defaultAddress(): DiskAddress {
  return {
    "pci-controller": { domain: -1, bus: -1, slot: -1, function: -1 },
    "bus-type": "unknown",
    bus: 0,
    target: 0,
    unit: 0,
  };
}

const HEX = "[0-9a-fA-F]+";
const PCI_ROOT = new RegExp(`^${HEX}:${HEX}/(${HEX}):(${HEX}):(${HEX})\\.(${HEX})`);
const PCI_NEXT = new RegExp(`^/(${HEX}):(${HEX}):(${HEX})\\.(${HEX})`);
const SCSI_TARGET = /^\d+:\d+:\d+\/\d+:(\d+):(\d+):(\d+)/;
const CCW = new RegExp(`^${HEX}/(${HEX})\\.(${HEX})\\.(${HEX})/${HEX}\\.${HEX}\\.(${HEX})/`);

function hexFields(m: RegExpExecArray): number[] {
  return [m[1]!, m[2]!, m[3]!, m[4]!].map((h) => parseInt(h, 16) >>> 0);
}

/** `<prefix>/target<h>:<c>:<t>/<h>:<c>:<t>:<l>` → the last three numbers. */
function scsiTarget(syspath: string): number[] | null {
  const at = syspath.indexOf("/target");
  if (at < 0) return null;
  const m = SCSI_TARGET.exec(syspath.slice(at + 7));
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

async function driverOf(sys: SystemAccess, devicePath: string): Promise<string | null> {
  try {
    return basename(await sys.readLink(`${devicePath}/driver`));
  } catch {
    return null;
  }
}

/** Sorted numbers of the `ata<N>` or `host<N>` entries of a controller directory (at most 8). */
async function listHosts(
  sys: SystemAccess,
  dir: string,
  ata: boolean,
  walk: DeviceWalk,
): Promise<number[] | null> {
  let entries;
  try {
    entries = await sys.readDir(dir);
  } catch (e) {
    fail(walk, errnoText(`opendir("${dir}")`, e));
    return null;
  }
  const re = ata ? /^ata([+-]?\d+)/ : /^host([+-]?\d+)/;
  const hosts: number[] = [];
  for (const e of entries) {
    if (hosts.length >= 8) break;
    const m = re.exec(e.name);
    if (m) hosts.push(Number(m[1]));
  }
  // qsort with an unsigned comparison.
  return hosts.sort((a, b) => (a >>> 0) - (b >>> 0));
}

/** build_guest_fsinfo_for_pci_dev: true when the controller was recognised. */
async function pciAddress(
  sys: SystemAccess,
  syspath: string,
  disk: DiskAddress,
  walk: DeviceWalk,
): Promise<boolean> {
  const root = syspath.indexOf("/devices/pci");
  if (root < 0) return false;
  let pos = root + 12;
  const first = PCI_ROOT.exec(syspath.slice(pos));
  if (!first) return false;
  let pci = hexFields(first);
  pos += first[0].length;
  let driver: string | null;
  for (;;) {
    driver = await driverOf(sys, syspath.slice(0, pos));
    if (driver !== null && CONTROLLER_DRIVERS.has(driver)) break;
    const next = PCI_NEXT.exec(syspath.slice(pos));
    if (!next) return false;
    pci = hexFields(next);
    pos += next[0].length;
  }

  const tgt = scsiTarget(syspath);
  let hostAt = syspath.indexOf("/ata");
  let ata = true;
  let offset = 4;
  if (hostAt < 0) {
    hostAt = syspath.indexOf("/host");
    ata = false;
    offset = 5;
  }
  let host: number | null = null;
  let hosts: number[] = [];
  if (hostAt >= 0) {
    const m = /^\s*\+?(\d+)/.exec(syspath.slice(hostAt + offset));
    if (m) {
      host = Number(m[1]);
      const listed = await listHosts(sys, syspath.slice(0, hostAt), ata, walk);
      if (listed === null) return false;
      hosts = listed;
    }
  }

  const [domain, bus, slot, fn] = pci as [number, number, number, number];
  disk["pci-controller"] = { domain, bus, slot, function: fn };

  switch (driver) {
    case "ata_piix": {
      // One host per IDE bus; target*:0:<unit>:0.
      if (host === null || !tgt) return false;
      const i = hosts.indexOf(host);
      if (i < 0) return false;
      disk["bus-type"] = "ide";
      disk.bus = i;
      disk.unit = tgt[1]!;
      return true;
    }
    case "sym53c8xx":
      // LSI Logic SCSI: target*:0:<unit>:0.
      if (!tgt) return false;
      disk["bus-type"] = "scsi";
      disk.unit = tgt[1]!;
      return true;
    case "virtio-pci":
      if (tgt) {
        // virtio-scsi: target*:0:0:<unit>.
        disk["bus-type"] = "scsi";
        disk.unit = tgt[2]!;
      } else {
        // virtio-blk: one disk per PCI function.
        disk["bus-type"] = "virtio";
      }
      return true;
    case "ahci": {
      // One host per unit.
      if (host === null || !tgt) return false;
      const i = hosts.indexOf(host);
      if (i < 0) return false;
      disk.unit = i;
      disk["bus-type"] = "sata";
      return true;
    }
    case "nvme":
      disk["bus-type"] = "nvme";
      return true;
    default:
      // ehci-pci, xhci_hcd
      disk["bus-type"] = "usb";
      return true;
  }
}

/** build_guest_fsinfo_for_nonpci_virtio. */
function nonPciVirtioAddress(syspath: string, disk: DiskAddress): boolean {
  if (!syspath.includes("/virtio") || !syspath.includes("/block")) return false;
  const tgt = scsiTarget(syspath);
  if (tgt) {
    disk["bus-type"] = "scsi";
    disk.bus = tgt[0]!;
    disk.target = tgt[1]!;
    disk.unit = tgt[2]!;
  } else {
    disk["bus-type"] = "virtio";
  }
  return true;
}

/** build_guest_fsinfo_for_ccw_dev (s390x channel I/O). */
function ccwAddress(syspath: string, disk: DiskAddress): boolean {
  const at = syspath.indexOf("/devices/css");
  const m = at < 0 ? null : CCW.exec(syspath.slice(at + 12));
  if (!m) return false;
  const [cssid, ssid, subchno, devno] = hexFields(m) as [number, number, number, number];
  disk["ccw-address"] = { cssid, ssid, subchno, devno };
  if (syspath.slice(at).includes("/virtio")) nonPciVirtioAddress(syspath, disk);
  return true;
}

/** build_guest_fsinfo_for_real_device: one address for a real block device, prepended. */
async function realDevice(sys: SystemAccess, syspath: string, walk: DeviceWalk): Promise<void> {
  const disk = defaultAddress();
  const udev = await udevDevice(sys, syspath);
  if (udev) {
    if (udev.devnode !== undefined) disk.dev = udev.devnode;
    const serial = udev.properties.get("ID_SERIAL");
    if (serial) disk.serial = serial;
  }
  let known: boolean;
  if (syspath.includes("/devices/pci")) {
    known = await pciAddress(sys, syspath, disk, walk);
  } else if (syspath.includes("/devices/css")) {
    known = ccwAddress(syspath, disk);
  } else if (syspath.includes("/virtio")) {
    known = nonPciVirtioAddress(syspath, disk);
  } else {
    known = false;
  }
  if (known || disk.dev !== undefined || disk.serial !== undefined) walk.disk.unshift(disk);
}

/** build_guest_fsinfo_for_virtual_device: the slaves of a dm/md/loop device. */
async function virtualDevice(sys: SystemAccess, syspath: string, walk: DeviceWalk): Promise<void> {
  const dir = `${syspath}/slaves`;
  let entries;
  try {
    entries = await sys.readDir(dir);
  } catch (e) {
    if (toSysError(e).code !== "ENOENT") fail(walk, errnoText(`opendir("${dir}")`, e));
    return;
  }
  for (const entry of entries) {
    if (!entry.isSymlink) continue;
    await walkDevice(sys, `${syspath}/slaves/${entry.name}`, walk);
    if (walk.error) break;
  }
}

/**
 * True when the device's canonical sysfs path is under `/devices/virtual/block/`.
 * Throws QgaError `realpath("<path>"): <errno>` when the path cannot be resolved.
 */
export async function isDiskVirtual(sys: SystemAccess, devpath: string): Promise<boolean> {
  let real: string;
  try {
    real = await sys.realPath(devpath);
  } catch (e) {
    throw new QgaError(errnoText(`realpath("${devpath}")`, e));
  }
  return real.includes("/devices/virtual/block/");
}

/**
 * build_guest_fsinfo_for_device: resolves `devpath` (e.g. `/sys/dev/block/254:0`),
 * names the walk after the first device met and collects the addresses below it.
 * Errors are recorded in `walk.error` (the first one wins), as qemu-ga's errp.
 */
export async function walkDevice(
  sys: SystemAccess,
  devpath: string,
  walk: DeviceWalk,
): Promise<void> {
  let syspath: string;
  try {
    syspath = await sys.realPath(devpath);
  } catch (e) {
    const err = toSysError(e);
    if (err.code !== "ENOENT") {
      fail(walk, `realpath("${devpath}"): ${err.strerror}`);
      return;
    }
    // The device may be missing from sysfs in a container.
    walk.name ??= basename(devpath);
    return;
  }
  walk.name ??= basename(syspath);
  let virtual: boolean;
  try {
    virtual = await isDiskVirtual(sys, syspath);
  } catch (e) {
    walk.error ??= e instanceof QgaError ? e : new QgaError(String(e));
    return;
  }
  if (virtual) await virtualDevice(sys, syspath, walk);
  else await realDevice(sys, syspath, walk);
}

/**
 * get_disk_address: the address of one real disk, as guest-get-disks reports it
 * (the first address found; null when none). Errors are returned beside it,
 * since guest-get-disks only logs them.
 */
export async function diskAddress(
  sys: SystemAccess,
  syspath: string,
): Promise<{ address: DiskAddress | null; error?: QgaError }> {
  const walk: DeviceWalk = { disk: [] };
  await walkDevice(sys, syspath, walk);
  const out: { address: DiskAddress | null; error?: QgaError } = { address: walk.disk[0] ?? null };
  if (walk.error) out.error = walk.error;
  return out;
}
