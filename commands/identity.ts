/**
 * Who and what the guest is: guest-get-host-name, guest-get-users,
 * guest-get-timezone and guest-get-osinfo (qga-reference.md §2.3 "Session / info").
 *
 * The parsers are exported as pure functions (utmp records, TZif files, POSIX TZ
 * rules, os-release) so tests can feed them captured files; the handlers only add
 * where the bytes come from (ctx.sys, ctx.env, Deno.hostname, Deno.osRelease).
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { array, int, number, type Returned, str, struct } from "../protocol/types.ts";
import type { SystemAccess } from "../system/mod.ts";
import { SysError } from "../system/mod.ts";
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

/** The zone in effect at an instant. */
export interface ZoneAt {
  /** Abbreviation ("EST", "IST", "+0330"). */
  zone: string;
  /** Seconds east of UTC. */
  offset: number;
}

const UTC: ZoneAt = { zone: "UTC", offset: 0 };

/** A parsed POSIX TZ rule (`std offset [dst [offset] ,start[/time],end[/time]]`). */
interface PosixTz {
  std: ZoneAt;
  dst?: { zone: ZoneAt; start: TzDate; end: TzDate };
}

/** A rule date plus the local time of day (seconds) the change happens. */
interface TzDate {
  kind: "J" | "n" | "M";
  /** J: 1..365; n: 0..365; M: month 1..12. */
  a: number;
  /** M: week 1..5. */
  w: number;
  /** M: weekday 0..6 (Sunday = 0). */
  d: number;
  time: number;
}

class Cursor {
  pos = 0;
  constructor(readonly s: string) {}
  peek(): string {
    return this.s[this.pos] ?? "";
  }
  eof(): boolean {
    return this.pos >= this.s.length;
  }
}

function parseTzName(c: Cursor): string | null {
  if (c.peek() === "<") {
    const end = c.s.indexOf(">", c.pos);
    if (end < 0) return null;
    const name = c.s.slice(c.pos + 1, end);
    if (!/^[A-Za-z0-9+-]{3,}$/.test(name)) return null;
    c.pos = end + 1;
    return name;
  }
  const m = /^[A-Za-z]{3,}/.exec(c.s.slice(c.pos));
  if (!m) return null;
  c.pos += m[0].length;
  return m[0];
}

/** `[+-]hh[:mm[:ss]]` as seconds; `maxHours` bounds hh. */
function parseHms(c: Cursor, maxHours: number): number | null {
  const m = /^([+-]?)(\d{1,3})(?::(\d{1,2})(?::(\d{1,2}))?)?/.exec(c.s.slice(c.pos));
  if (!m) return null;
  const h = Number(m[2]);
  const mi = Number(m[3] ?? 0);
  const se = Number(m[4] ?? 0);
  if (h > maxHours || mi > 59 || se > 59) return null;
  c.pos += m[0].length;
  const v = h * 3600 + mi * 60 + se;
  return m[1] === "-" ? 0 - v : v;
}

function parseTzDate(c: Cursor): TzDate | null {
  const rest = c.s.slice(c.pos);
  let date: TzDate;
  let m: RegExpExecArray | null;
  if ((m = /^J(\d{1,3})/.exec(rest))) {
    const n = Number(m[1]);
    if (n < 1 || n > 365) return null;
    date = { kind: "J", a: n, w: 0, d: 0, time: 7200 };
  } else if ((m = /^M(\d{1,2})\.(\d)\.(\d)/.exec(rest))) {
    const [mo, w, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (mo < 1 || mo > 12 || w < 1 || w > 5 || d > 6) return null;
    date = { kind: "M", a: mo, w, d, time: 7200 };
  } else if ((m = /^(\d{1,3})/.exec(rest))) {
    const n = Number(m[1]);
    if (n > 365) return null;
    date = { kind: "n", a: n, w: 0, d: 0, time: 7200 };
  } else {
    return null;
  }
  c.pos += m[0].length;
  if (c.peek() === "/") {
    c.pos++;
    const t = parseHms(c, 24);
    if (t === null) return null;
    date.time = t;
  }
  return date;
}

/** Parses a POSIX TZ rule string as GLib accepts it (DST needs explicit rules). */
export function parsePosixTz(s: string): PosixTz | null {
  const c = new Cursor(s);
  const std = parseTzName(c);
  if (!std) return null;
  const stdOff = parseHms(c, 24);
  if (stdOff === null) return null;
  const out: PosixTz = { std: { zone: std, offset: 0 - stdOff } };
  if (c.eof()) return out;
  const dst = parseTzName(c);
  if (!dst) return null;
  let dstOffset = 3600 - stdOff;
  if (c.peek() !== ",") {
    const o = parseHms(c, 24);
    if (o === null) return null;
    dstOffset = 0 - o;
  }
  if (c.peek() !== ",") return null;
  c.pos++;
  const start = parseTzDate(c);
  if (!start || c.peek() !== ",") return null;
  c.pos++;
  const end = parseTzDate(c);
  if (!end || !c.eof()) return null;
  out.dst = { zone: { zone: dst, offset: dstOffset }, start, end };
  return out;
}

const DAY = 86400;

function isLeap(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** Seconds from the epoch to local midnight of the rule's day in `year` (as if UTC). */
function ruleDay(year: number, r: TzDate): number {
  const jan1 = Date.UTC(year, 0, 1) / 1000;
  switch (r.kind) {
    case "J": {
      const leapShift = isLeap(year) && r.a >= 60 ? 1 : 0;
      return jan1 + (r.a - 1 + leapShift) * DAY;
    }
    case "n":
      return jan1 + r.a * DAY;
    case "M": {
      const first = Date.UTC(year, r.a - 1, 1) / 1000;
      const firstDow = new Date(first * 1000).getUTCDay();
      let day = 1 + ((r.d - firstDow + 7) % 7) + (r.w - 1) * 7;
      const monthLen = new Date(Date.UTC(year, r.a, 0)).getUTCDate();
      while (day > monthLen) day -= 7;
      return first + (day - 1) * DAY;
    }
  }
}

/** The zone a POSIX rule gives at `now` (seconds since the epoch). */
export function zoneFromPosixTz(tz: PosixTz, now: number): ZoneAt {
  if (!tz.dst) return tz.std;
  const { start, end, zone } = tz.dst;
  const year = new Date((now + tz.std.offset) * 1000).getUTCFullYear();
  const startUtc = ruleDay(year, start) + start.time - tz.std.offset;
  const endUtc = ruleDay(year, end) + end.time - zone.offset;
  const inDst = startUtc < endUtc
    ? now >= startUtc && now < endUtc
    : !(now >= endUtc && now < startUtc);
  return inDst ? zone : tz.std;
}

/**
 * The zone a TZif file (RFC 8536, v1 to v4) gives at `now`: the 64-bit data when
 * present, the footer's POSIX rule after the last transition. Null when the bytes
 * are not a TZif file.
 */
export function zoneFromTzif(data: Uint8Array, now: number): ZoneAt | null {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const magic = (o: number) =>
    o + 44 <= data.length && String.fromCharCode(...data.subarray(o, o + 4)) === "TZif";
  if (!magic(0)) return null;
  const counts = (o: number) => {
    const c = [0, 0, 0, 0, 0, 0].map((_, i) => view.getUint32(o + 20 + i * 4));
    return { isut: c[0]!, isstd: c[1]!, leap: c[2]!, time: c[3]!, type: c[4]!, char: c[5]! };
  };
  let o = 0;
  let c = counts(0);
  let timeSize = 4;
  const version = data[4]!;
  if (version >= 0x32) {
    const v1len = c.time * 5 + c.type * 6 + c.char + c.leap * 8 + c.isstd + c.isut;
    o = 44 + v1len;
    if (!magic(o)) return null;
    c = counts(o);
    timeSize = 8;
  }
  let p = o + 44;
  const end = p + c.time * timeSize + c.time + c.type * 6 + c.char + c.leap * (timeSize + 4) +
    c.isstd + c.isut;
  if (end > data.length || c.type === 0) return null;
  const times: number[] = [];
  for (let i = 0; i < c.time; i++) {
    times.push(timeSize === 8 ? Number(view.getBigInt64(p + i * 8)) : view.getInt32(p + i * 4));
  }
  p += c.time * timeSize;
  const idx = data.subarray(p, p + c.time);
  p += c.time;
  const typesAt = p;
  p += c.type * 6;
  const chars = data.subarray(p, p + c.char);
  const typeAt = (t: number): ZoneAt => {
    const q = typesAt + t * 6;
    const di = data[q + 5]!;
    const nul = chars.indexOf(0, di);
    const abbr = new TextDecoder().decode(chars.subarray(di, nul < 0 ? chars.length : nul));
    return { zone: abbr, offset: view.getInt32(q) };
  };
  if (timeSize === 8 && times.length > 0 && now >= times[times.length - 1]!) {
    const nl = data.indexOf(0x0a, end);
    const nl2 = nl >= 0 ? data.indexOf(0x0a, nl + 1) : -1;
    if (nl === end && nl2 > nl + 1) {
      const rule = parsePosixTz(new TextDecoder().decode(data.subarray(nl + 1, nl2)));
      if (rule) return zoneFromPosixTz(rule, now);
    }
  }
  if (times.length === 0 || now < times[0]!) return typeAt(0);
  let lo = 0;
  let hi = times.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (times[mid]! <= now) lo = mid;
    else hi = mid - 1;
  }
  return typeAt(idx[lo]!);
}

/** Where the local zone comes from: qemu-ga uses GLib's local zone (TZ, else /etc/localtime). */
export interface ZoneSource {
  /** The TZ variable; undefined when unset. */
  tz: string | undefined;
  /** TZDIR; undefined when unset. */
  tzdir?: string | undefined;
}

/**
 * GLib's g_time_zone_new_local at `now`: TZ unset → /etc/localtime; `:` prefix
 * dropped; an absolute path or a name under TZDIR (/usr/share/zoneinfo) read as
 * TZif; otherwise a POSIX rule; anything unusable (an empty TZ included) → UTC.
 */
export async function localZone(sys: SystemAccess, src: ZoneSource, now: number): Promise<ZoneAt> {
  const readZone = async (path: string) => {
    try {
      return zoneFromTzif(await sys.readFile(path), now);
    } catch {
      return null;
    }
  };
  if (src.tz === undefined) return (await readZone("/etc/localtime")) ?? UTC;
  const id = src.tz.startsWith(":") ? src.tz.slice(1) : src.tz;
  if (id === "") return UTC;
  const file = id.startsWith("/") ? id : `${src.tzdir || "/usr/share/zoneinfo"}/${id}`;
  const fromFile = await readZone(file);
  if (fromFile) return fromFile;
  const rule = parsePosixTz(id);
  return rule ? zoneFromPosixTz(rule, now) : UTC;
}

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
