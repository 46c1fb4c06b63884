/**
 * The local time zone as GLib's g_time_zone_new_local computes it, for guest-get-timezone
 * (commands/identity.ts) and guest-set-time's year check (commands/time.ts): TZ or
 * /etc/localtime, TZif files (RFC 8536, v1 to v4, with their footer rule) and POSIX TZ
 * rules. One algorithm: a TZif reader and a POSIX TZ rule parser and evaluator. Pure
 * functions over bytes and strings, plus {@link localZone}, which reads the file through
 * ctx.sys.
 *
 * @module
 */

import type { SystemAccess } from "../system/mod.ts";

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
