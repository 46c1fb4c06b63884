/**
 * The mount list shared by guest-fsfreeze-*, guest-fstrim and guest-get-fsinfo,
 * built as qemu-ga's build_fs_mount_list does (qga-reference.md §2.3 "Filesystems"):
 * /proc/self/mountinfo, major 0 skipped except btrfs, first mount of a device wins;
 * /proc/self/mounts as the fallback.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import type { SystemAccess } from "../system/mod.ts";

/** One mounted filesystem. */
export interface Mount {
  /** Mount point, octal escapes decoded. */
  dir: string;
  /** Filesystem type, e.g. "ext4". */
  type: string;
  /** Device source, octal escapes decoded. */
  source: string;
  major: number;
  minor: number;
}

/** Decodes the `\NNN` and `\\` escapes of /proc mount tables, as decode_mntname does. */
export function decodeMountName(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c !== "\\") {
      out += c;
    } else if (s[i + 1] === "\\") {
      out += "\\";
      i++;
    } else if (/^[0-3][0-7][0-7]$/.test(s.slice(i + 1, i + 4))) {
      out += String.fromCharCode(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      out += c;
    }
  }
  // Escapes produce bytes; re-read them as UTF-8 where they form valid sequences.
  if (/[\x80-\xff]/.test(out)) {
    const bytes = Uint8Array.from(out, (ch) => ch.charCodeAt(0) & 0xff);
    const ascii = [...out].every((ch) => ch.charCodeAt(0) < 0x100);
    if (ascii) return new TextDecoder().decode(bytes);
  }
  return out;
}

/** major:minor of a block device path, through /sys/class/block (no stat of /dev needed). */
async function deviceNumbers(
  sys: SystemAccess,
  devPath: string,
): Promise<[number, number] | null> {
  try {
    const real = await sys.realPath(devPath);
    const name = real.slice(real.lastIndexOf("/") + 1);
    const dev = (await sys.readTextFile(`/sys/class/block/${name}/dev`)).trim();
    const m = /^(\d+):(\d+)$/.exec(dev);
    return m ? [Number(m[1]), Number(m[2])] : null;
  } catch {
    return null;
  }
}

/** Parses mountinfo text into mounts, qemu-ga's rules applied. */
export async function parseMountInfo(sys: SystemAccess, text: string): Promise<Mount[]> {
  const mounts: Mount[] = [];
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    if (fields.length < 5) continue;
    const m = /^(\d+):(\d+)$/.exec(fields[2]!);
    if (!m) continue;
    let major = Number(m[1]);
    let minor = Number(m[2]);
    const dash = fields.indexOf("-", 5);
    if (dash < 0 || dash + 1 >= fields.length) continue;
    const dir = decodeMountName(fields[4]!);
    const type = fields[dash + 1]!;
    const source = decodeMountName(fields[dash + 2] ?? "");
    if (major === 0) {
      if (type !== "btrfs") continue;
      const nums = await deviceNumbers(sys, source);
      if (!nums) continue;
      [major, minor] = nums;
    }
    const key = `${major}:${minor}`;
    if (seen.has(key)) continue;
    seen.add(key);
    mounts.push({ dir, type, source, major, minor });
  }
  return mounts;
}

/** Parses /proc/self/mounts (the fallback), qemu-ga's rules applied. */
export async function parseMounts(sys: SystemAccess, text: string): Promise<Mount[]> {
  const mounts: Mount[] = [];
  const seen = new Set<string>();
  for (const line of text.split("\n")) {
    const f = line.split(" ");
    if (f.length < 3) continue;
    const source = decodeMountName(f[0]!);
    const dir = decodeMountName(f[1]!);
    const type = f[2]!;
    if (!source.startsWith("/") || type === "smbfs" || type === "cifs") continue;
    const nums = await deviceNumbers(sys, source);
    if (!nums) continue;
    const key = `${nums[0]}:${nums[1]}`;
    if (seen.has(key)) continue;
    seen.add(key);
    mounts.push({ dir, type, source, major: nums[0], minor: nums[1] });
  }
  return mounts;
}

/** Builds the mount list in mount-table order. */
export async function buildMountList(sys: SystemAccess): Promise<Mount[]> {
  let text: string;
  try {
    text = await sys.readTextFile("/proc/self/mountinfo");
  } catch {
    try {
      text = await sys.readTextFile("/proc/self/mounts");
    } catch {
      throw new QgaError("failed to open mtab file: '/proc/self/mounts'");
    }
    return parseMounts(sys, text);
  }
  return parseMountInfo(sys, text);
}
