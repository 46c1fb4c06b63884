/**
 * Who and what the guest is: guest-get-host-name, guest-get-users,
 * guest-get-timezone and guest-get-osinfo (qga-reference.md §2.3 "Session / info").
 *
 * The parsers are exported as pure functions (utmp records and os-release here, the
 * time zone in commands/timezone.ts) so tests can feed them captured files; the handlers
 * only add where the bytes come from (ctx.sys, ctx.env, Deno.build.arch).
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { array, int, number, type Returned, str, struct } from "../protocol/types.ts";
import { SysError, type SystemAccess } from "../system/mod.ts";
import { localZone } from "./timezone.ts";
import { defineCommand } from "./types.ts";

// ---------------------------------------------------------------- host name

/** guest-get-host-name. */
export const guestGetHostName = defineCommand({
  name: "guest-get-host-name",
  since: "2.10",
  doc: "Return the guest's host name (gethostname)",
  differences:
    "Read from /proc/sys/kernel/hostname (the UTS node name gethostname returns) through the helper, so the agent needs no --allow-sys.",
  returns: struct("GuestHostName", { "host-name": str }),
  needs: { helper: ["read"] },
  async handler(_args, ctx) {
    try {
      const name = await ctx.sys.readTextFile("/proc/sys/kernel/hostname");
      return { "host-name": name.replace(/\n$/, "") };
    } catch (e) {
      throw new QgaError(`cannot get hostname: ${e instanceof SysError ? e.strerror : String(e)}`);
    }
  },
});

// ---------------------------------------------------------------- users (utmp)

/** glibc x86_64/aarch64 `struct utmp` size and the offsets qemu-ga's walk reads. */
const UTMP_SIZE = 384;
const UT_TYPE = 0;
const UT_USER = 44;
const UT_USER_LEN = 32;
const UT_TV_SEC = 340;
const UT_TV_USEC = 344;
const USER_PROCESS = 7;
/** _PATH_UTMP, the file getutxent() reads. */
export const UTMP_PATH = "/var/run/utmp";

/** GuestUser. */
export const GuestUser = struct("GuestUser", { user: str, "login-time": number, "*domain": str });

/**
 * Parses utmp records as qemu-ga's getutxent walk does: USER_PROCESS only, unique
 * by user in order of first appearance, the earliest login time kept; a partial
 * trailing record is ignored, as glibc does.
 */
export function parseUtmp(data: Uint8Array): Returned<typeof GuestUser>[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const users: Returned<typeof GuestUser>[] = [];
  const byName = new Map<string, Returned<typeof GuestUser>>();
  const decoder = new TextDecoder();
  for (let off = 0; off + UTMP_SIZE <= data.length; off += UTMP_SIZE) {
    if (view.getInt16(off + UT_TYPE, true) !== USER_PROCESS) continue;
    const field = data.subarray(off + UT_USER, off + UT_USER + UT_USER_LEN);
    const nul = field.indexOf(0);
    const user = decoder.decode(nul < 0 ? field : field.subarray(0, nul));
    const login = view.getInt32(off + UT_TV_SEC, true) +
      view.getInt32(off + UT_TV_USEC, true) / 1000000;
    const seen = byName.get(user);
    if (seen) {
      if (login < seen["login-time"]) seen["login-time"] = login;
      continue;
    }
    const entry = { user, "login-time": login };
    byName.set(user, entry);
    users.push(entry);
  }
  return users;
}

/** guest-get-users. */
export const guestGetUsers = defineCommand({
  name: "guest-get-users",
  since: "2.10",
  doc: "List the users logged in to the guest (utmp USER_PROCESS records)",
  differences:
    "utmp is parsed directly (glibc's 384-byte struct utmp of 64-bit Linux) instead of " +
    "through getutxent; a user name filling all 32 bytes is cut there (qemu-ga reads on into ut_host).",
  returns: array(GuestUser),
  needs: { read: [UTMP_PATH, "/run/utmp"] },
  async handler(_args, ctx) {
    let data: Uint8Array;
    try {
      data = await ctx.sys.readFile(UTMP_PATH);
    } catch {
      return [];
    }
    return parseUtmp(data);
  },
});

// ---------------------------------------------------------------- timezone

/** guest-get-timezone. */
export const guestGetTimezone = defineCommand({
  name: "guest-get-timezone",
  since: "2.10",
  doc: "Return the guest's time zone abbreviation and UTC offset in effect now",
  differences: "The zone is computed the way GLib does (TZ, TZif files with their footer rule, " +
    "POSIX TZ strings) by our own parser; exotic POSIX rules that GLib rejects partially " +
    "(e.g. a rule time beyond 24 h) may differ.",
  returns: struct("GuestTimezone", { "*zone": str, offset: int }),
  needs: { read: ["/etc/localtime", "/usr/share/zoneinfo"], env: ["TZ", "TZDIR"] },
  async handler(_args, ctx) {
    const now = Math.floor(Date.now() / 1000);
    const z = await localZone(ctx.sys, { tz: ctx.env.get("TZ"), tzdir: ctx.env.get("TZDIR") }, now);
    return { zone: z.zone, offset: z.offset };
  },
});

// ---------------------------------------------------------------- os info

/** GuestOSInfo; every member optional. */
export const GuestOSInfo = struct("GuestOSInfo", {
  "*kernel-release": str,
  "*kernel-version": str,
  "*machine": str,
  "*id": str,
  "*name": str,
  "*pretty-name": str,
  "*version": str,
  "*version-id": str,
  "*variant": str,
  "*variant-id": str,
});

type OsInfo = Returned<typeof GuestOSInfo>;

const OS_KEYS: [string, keyof OsInfo][] = [
  ["ID", "id"],
  ["NAME", "name"],
  ["PRETTY_NAME", "pretty-name"],
  ["VERSION", "version"],
  ["VERSION_ID", "version-id"],
  ["VARIANT", "variant"],
  ["VARIANT_ID", "variant-id"],
];

const KEY_NAME = /^[^[\]=]+(?:\[[\p{L}\p{N}\-_.@]*\])?$/u;

/**
 * Reads os-release bytes as qemu-ga does: GKeyFile after prepending `[os-release]`,
 * raw values of that group (a later duplicate wins). Null when the file is not
 * UTF-8 or GKeyFile would reject it.
 */
export function parseOsReleaseKeyFile(data: Uint8Array): Map<string, string> | null {
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(data);
  } catch {
    return null;
  }
  const nul = text.indexOf("\0");
  if (nul >= 0) text = text.slice(0, nul);
  const values = new Map<string, string>();
  let group = "os-release";
  const lines = text.split("\n");
  for (let raw of lines) {
    if (raw.endsWith("\r")) raw = raw.slice(0, -1);
    const line = raw.replace(/^[ \t\n\v\f\r]+/, "");
    if (line === "" || line.startsWith("#")) continue;
    const g = /^\[([^\]]*)\][ \t]*$/.exec(line);
    if (line.startsWith("[") && g) {
      const name = g[1]!;
      const bad = [...name].some((ch) => ch === "[" || ch === "]" || ch < " " || ch === "\x7f");
      if (name === "" || bad) return null;
      group = name;
      continue;
    }
    const eq = line.indexOf("=");
    if (eq <= 0) return null;
    const key = line.slice(0, eq).replace(/[ \t\n\v\f\r]+$/, "");
    if (!KEY_NAME.test(key) || key.startsWith(" ")) return null;
    const value = line.slice(eq + 1).replace(/^[ \t\n\v\f\r]+/, "");
    if (group === "os-release") values.set(key, value);
  }
  return values;
}

/**
 * ga_osrelease_replace_special, with the single-quote case fixed: an unquoted value
 * is cut at the first space, then at the first `;`; a value starting with `"` or
 * `'` runs to the next unescaped matching quote, with `\$ \' \" \\ \`` unescaped.
 * An unterminated quote keeps qemu-ga's in-place copy artefact (the tail repeats).
 */
export function osReleaseValue(value: string): string {
  const quote = value[0];
  if (quote !== '"' && quote !== "'") {
    let v = value;
    const sp = v.indexOf(" ");
    if (sp >= 0) v = v.slice(0, sp);
    const sc = v.indexOf(";");
    if (sc >= 0) v = v.slice(0, sc);
    return v;
  }
  let out = "";
  let p = 1;
  while (p < value.length) {
    let ch = value[p]!;
    if (ch === "\\") {
      const next = value[p + 1];
      if (next !== undefined && "$'\"\\`".includes(next)) {
        p++;
        ch = next;
      }
    } else if (ch === quote) {
      return out;
    }
    out += ch;
    p++;
  }
  return out + value.slice(out.length);
}

/** Kernel identity as uname(2) gives it. */
export interface Uname {
  release: string;
  version: string;
  machine: string;
}

/** Deno.build.arch → uname's machine names. */
export function unameMachine(arch: string): string {
  const map: Record<string, string> = {
    x86_64: "x86_64",
    aarch64: "aarch64",
    riscv64gc: "riscv64",
  };
  return map[arch] ?? arch;
}

/** Builds GuestOSInfo from uname and the os-release file qemu-ga would pick. */
export async function osInfo(
  sys: SystemAccess,
  opts: { uname: Uname; osReleaseEnv: string | undefined },
): Promise<OsInfo> {
  const info: OsInfo = {
    "kernel-release": opts.uname.release,
    "kernel-version": opts.uname.version,
    machine: opts.uname.machine,
  };
  const load = async (path: string) => {
    try {
      return parseOsReleaseKeyFile(await sys.readFile(path));
    } catch {
      return null;
    }
  };
  const keys = opts.osReleaseEnv !== undefined
    ? await load(opts.osReleaseEnv)
    : (await load("/etc/os-release")) ?? (await load("/usr/lib/os-release"));
  if (keys) {
    for (const [key, member] of OS_KEYS) {
      const v = keys.get(key);
      if (v !== undefined) info[member] = osReleaseValue(v);
    }
  }
  return info;
}

/** guest-get-osinfo. */
export const guestGetOsinfo = defineCommand({
  name: "guest-get-osinfo",
  since: "2.10",
  doc: "Return the guest's kernel and os-release identification",
  differences: "Single-quoted os-release values are unquoted (`VERSION='a b'` gives `a b`; " +
    "qemu-ga gives `'a`). kernel-version is read from /proc/sys/kernel/version (the same text " +
    "uname(2) reports) and machine is mapped from Deno.build.arch.",
  returns: GuestOSInfo,
  needs: {
    env: ["QGA_OS_RELEASE"],
    read: ["/etc/os-release", "/usr/lib/os-release"],
    helper: ["read"],
  },
  async handler(_args, ctx) {
    let version: string;
    let release: string;
    try {
      // uname(2)'s release and version, as the kernel exports them.
      version = (await ctx.sys.readTextFile("/proc/sys/kernel/version")).replace(/\n$/, "");
      release = (await ctx.sys.readTextFile("/proc/sys/kernel/osrelease")).replace(/\n$/, "");
    } catch (e) {
      throw new QgaError(`uname failed: ${e instanceof SysError ? e.strerror : String(e)}`);
    }
    const uname = { release, version, machine: unameMachine(Deno.build.arch) };
    return await osInfo(ctx.sys, { uname, osReleaseEnv: ctx.env.get("QGA_OS_RELEASE") });
  },
});
