/**
 * guest-network-get-interfaces and guest-network-get-route (qga-reference.md §2.3
 * "Network").
 *
 * qemu-ga walks getifaddrs(3). Deno has no getifaddrs, so the same list is put
 * together from a snapshot the privileged helper takes in one round trip
 * (helper/net.ts; the agent needs no --allow-sys):
 * - the links (getifaddrs' AF_PACKET entries, which come first, in ifindex order):
 *   /sys/class/net/<name>/ifindex;
 * - the addresses (the AF_INET then AF_INET6 entries, IPv4 alias labels such as
 *   `eth0:1` as their own names): Deno.networkInterfaces() in the helper, which is
 *   getifaddrs minus the links, in getifaddrs order;
 * - the MAC address (SIOCGIFHWADDR): /sys/class/net/<name>/address, the first six
 *   bytes, zero-padded (`00:00:00:00:00:00` for lo and address-less links; an
 *   alias label uses its base interface, as the kernel strips `:<label>` in the
 *   ioctl);
 * - the counters: /proc/net/dev.
 * Addresses are re-printed as glibc's inet_ntop prints them.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { intResult } from "../protocol/int64.ts";
import { array, enumType, int, type Returned, str, struct, uint64 } from "../protocol/types.ts";
import { type NetSnapshot, strerror, type SystemAccess, toSysError } from "../system/mod.ts";
import { defineCommand } from "./types.ts";

// ---------------------------------------------------------------------------------
// Address text

/** Parses a dotted-quad IPv4 address; null when malformed. */
export function parseIPv4(s: string): Uint8Array | null {
  const parts = s.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    return null;
  }
  return Uint8Array.from(parts, Number);
}

/** Parses an IPv6 address (with `::` and an optional dotted IPv4 tail); null when malformed. */
export function parseIPv6(s: string): Uint8Array | null {
  const pct = s.indexOf("%");
  if (pct >= 0) s = s.slice(0, pct);
  const halves = s.split("::");
  if (halves.length > 2) return null;
  const words = (part: string): number[] | null => {
    if (part === "") return [];
    const out: number[] = [];
    const groups = part.split(":");
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (i === groups.length - 1 && g.includes(".")) {
        const v4 = parseIPv4(g);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(g)) {
        out.push(parseInt(g, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  if (!head || !tail) return null;
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const all = [...head, ...new Array<number>(fill).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((w, i) => {
    bytes[2 * i] = w >> 8;
    bytes[2 * i + 1] = w & 0xff;
  });
  return bytes;
}

/**
 * Formats 16 bytes as glibc's inet_ntop(AF_INET6) does: lower-case hex, the first
 * longest run of two or more zero groups as `::`, and a dotted IPv4 tail only for
 * `::a.b.c.d` (six leading zero groups) and `::ffff:a.b.c.d`.
 */
export function formatIPv6(b: Uint8Array): string {
  const w = Array.from({ length: 8 }, (_, i) => (b[2 * i]! << 8) | b[2 * i + 1]!);
  let best = { base: -1, len: 0 };
  let cur = { base: -1, len: 0 };
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      if (cur.base < 0) cur = { base: i, len: 1 };
      else cur.len++;
    } else if (cur.base >= 0) {
      if (best.base < 0 || cur.len > best.len) best = cur;
      cur = { base: -1, len: 0 };
    }
  }
  if (cur.base >= 0 && (best.base < 0 || cur.len > best.len)) best = cur;
  if (best.base >= 0 && best.len < 2) best = { base: -1, len: 0 };
  let s = "";
  for (let i = 0; i < 8; i++) {
    if (best.base >= 0 && i >= best.base && i < best.base + best.len) {
      if (i === best.base) s += ":";
      continue;
    }
    if (i !== 0) s += ":";
    if (i === 6 && best.base === 0 && (best.len === 6 || (best.len === 5 && w[5] === 0xffff))) {
      s += `${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
      return s;
    }
    s += w[i]!.toString(16);
  }
  if (best.base >= 0 && best.base + best.len === 8) s += ":";
  return s;
}

function popcount(bytes: Uint8Array): number {
  let n = 0;
  for (let x of bytes) {
    for (; x; x &= x - 1) n++;
  }
  return n;
}

// ---------------------------------------------------------------------------------
// guest-network-get-interfaces

/** GuestIpAddressType (1.1). */
export const GuestIpAddressType = enumType("GuestIpAddressType", ["ipv4", "ipv6"]);

/** GuestIpAddress (1.1). */
export const GuestIpAddress = struct("GuestIpAddress", {
  "ip-address": str,
  "ip-address-type": GuestIpAddressType,
  prefix: int,
});

type IpAddress = Returned<typeof GuestIpAddress>;

/** GuestNetworkInterfaceStat (2.11). */
export const GuestNetworkInterfaceStat = struct("GuestNetworkInterfaceStat", {
  "rx-bytes": uint64,
  "rx-packets": uint64,
  "rx-errs": uint64,
  "rx-dropped": uint64,
  "tx-bytes": uint64,
  "tx-packets": uint64,
  "tx-errs": uint64,
  "tx-dropped": uint64,
});

/** GuestNetworkInterface (1.1; statistics 2.11). */
export const GuestNetworkInterface = struct("GuestNetworkInterface", {
  name: str,
  "*hardware-address": str,
  "*ip-addresses": array(GuestIpAddress),
  "*statistics": GuestNetworkInterfaceStat,
});

type NetworkInterface = Returned<typeof GuestNetworkInterface>;

/** The part of Deno.NetworkInterfaceInfo the command uses. */
export interface InterfaceAddress {
  family: "IPv4" | "IPv6";
  name: string;
  address: string;
  netmask: string;
}

type InterfaceStat = Returned<typeof GuestNetworkInterfaceStat>;

/**
 * The eight counters qemu-ga takes from a /proc/net/dev line: the line whose
 * text before the first `:` (after leading blanks) is exactly `name`, with all
 * sixteen numbers present. Null when there is none.
 */
export function netDevStats(text: string, name: string): InterfaceStat | null {
  return netDevTable(text).get(name) ?? null;
}

const DIGITS = /^\d+$/;

/**
 * {@link netDevStats} for every name at once: the first complete line of each name, its
 * counters converted when asked for.
 */
export function netDevTable(text: string): { get(name: string): InterfaceStat | undefined } {
  const lines = new Map<string, string[]>();
  for (const raw of text.split("\n")) {
    const line = raw.replace(/^\s+/, "");
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon);
    if (lines.has(name)) continue;
    const nums = line.slice(colon + 1).trim().split(/\s+/, 16);
    const v: string[] = [];
    for (const t of nums) {
      // strtoull's prefix: the usual all-digit token as is, else its leading number.
      const m = DIGITS.test(t) ? t : /^[+-]?\d+/.exec(t)?.[0];
      if (m === undefined) break;
      v.push(m);
    }
    if (v.length === 16) lines.set(name, v);
  }
  return {
    get(name) {
      const v = lines.get(name);
      if (v === undefined) return undefined;
      const at = (i: number) => intResult(BigInt.asUintN(64, BigInt(v[i]!)));
      return {
        "rx-bytes": at(0),
        "rx-packets": at(1),
        "rx-errs": at(2),
        "rx-dropped": at(3),
        "tx-bytes": at(8),
        "tx-packets": at(9),
        "tx-errs": at(10),
        "tx-dropped": at(11),
      };
    },
  };
}

/** SIOCGIFHWADDR's answer from sysfs: the first six bytes of `address`, zero-padded. */
function hardwareAddress(macs: Map<string, string | null>, name: string): string | undefined {
  const base = name.split(":")[0]!;
  const text = macs.get(base);
  if (text === null || text === undefined) return undefined;
  let mac = formattedMacs.get(text);
  if (mac === undefined) {
    const bytes = text === "" ? [] : text.split(":").map((h) => parseInt(h, 16) & 0xff);
    const six = Array.from({ length: 6 }, (_, i) => bytes[i] ?? 0);
    mac = six.map((b) => b.toString(16).padStart(2, "0")).join(":");
    if (formattedMacs.size >= 256) formattedMacs.clear();
    formattedMacs.set(text, mac);
  }
  return mac;
}

/** MAC address texts already formatted (the same few at every call), at most 256 kept. */
const formattedMacs = new Map<string, string>();

/** The links in getifaddrs' order (ifindex; an unreadable index sorts last). */
function links(snap: NetSnapshot): string[] {
  if (!snap.links) {
    throw new QgaError(`getifaddrs failed: ${strerror(snap.linksError ?? "EIO")}`);
  }
  return snap.links
    .map((l) => ({ name: l.name, index: l.ifindex ?? Number.MAX_SAFE_INTEGER }))
    .sort((a, b) => a.index - b.index)
    .map((l) => l.name);
}

/** Addresses already converted (the same few at every call), at most 256 kept. */
const converted = new Map<string, IpAddress>();

/** One GuestIpAddress: the address re-printed as inet_ntop does, the netmask's length. */
function ipAddress(a: InterfaceAddress): IpAddress {
  const key = `${a.family} ${a.address} ${a.netmask}`;
  const known = converted.get(key);
  if (known) return { ...known };
  const v4 = a.family === "IPv4";
  const bytes = v4 ? parseIPv4(a.address) : parseIPv6(a.address);
  if (!bytes) throw new QgaError(`inet_ntop failed: unexpected address "${a.address}"`);
  const mask = v4 ? parseIPv4(a.netmask) : parseIPv6(a.netmask);
  const ip: IpAddress = {
    "ip-address": v4 ? [...bytes].join(".") : formatIPv6(bytes),
    "ip-address-type": v4 ? "ipv4" : "ipv6",
    prefix: mask ? popcount(mask) : 0,
  };
  if (converted.size >= 256) converted.clear();
  converted.set(key, ip);
  return { ...ip };
}

/** Builds guest-network-get-interfaces' list from a snapshot (helper/net.ts). */
export function getInterfaces(snap: NetSnapshot): NetworkInterface[] {
  const addrs: readonly InterfaceAddress[] = snap.addresses;
  const names = links(snap);
  for (const a of addrs) if (!names.includes(a.name)) names.push(a.name);
  const stats = snap.netDev === null ? null : netDevTable(snap.netDev);
  // The first link of each name, as a search of the list finds it.
  const macs = new Map<string, string | null>();
  for (const l of snap.links ?? []) if (!macs.has(l.name)) macs.set(l.name, l.address);
  const out: NetworkInterface[] = [];
  for (const name of names) {
    const info: NetworkInterface = { name };
    const hw = hardwareAddress(macs, name);
    if (hw !== undefined) info["hardware-address"] = hw;
    const ips: IpAddress[] = [];
    for (const a of addrs) {
      if (a.name === name) ips.push(ipAddress(a));
    }
    if (ips.length > 0) {
      info["ip-addresses"] = ips;
      const st = stats?.get(name);
      if (st) info.statistics = st;
    }
    out.push(info);
  }
  return out;
}

/** guest-network-get-interfaces. */
export const guestNetworkGetInterfaces = defineCommand({
  name: "guest-network-get-interfaces",
  since: "1.1",
  doc: "Lists the network interfaces with their MAC and IP addresses and counters",
  differences:
    "Built from /sys/class/net and Deno.networkInterfaces() (both in the privileged helper) " +
    "instead of getifaddrs(3); the MAC address is read from sysfs instead of SIOCGIFHWADDR. One " +
    "request to the helper per call; it reuses a link's ifindex and MAC address for up to 10 s, " +
    "so a MAC address changed within the last 10 s may show its previous value.",
  returns: array(GuestNetworkInterface),
  needs: { helper: ["net"] },
  handler: async (_args, ctx) => getInterfaces(await ctx.sys.netSnapshot()),
});

// ---------------------------------------------------------------------------------
// guest-network-get-route

/** GuestNetworkRoute (9.1). */
export const GuestNetworkRoute = struct("GuestNetworkRoute", {
  iface: str,
  destination: str,
  metric: int,
  "*gateway": str,
  "*mask": str,
  "*irtt": int,
  "*flags": uint64,
  "*refcnt": int,
  "*use": int,
  "*window": int,
  "*mtu": int,
  "*desprefixlen": str,
  "*source": str,
  "*srcprefixlen": str,
  "*nexthop": str,
  version: int,
});

type NetworkRoute = Returned<typeof GuestNetworkRoute>;

/** `%x`/`%X` into an unsigned int: hex digits (optional 0x), wrapped to 32 bits. */
function hex32(t: string | undefined): number | null {
  const m = t === undefined ? null : /^([+-]?)(?:0[xX])?([0-9a-fA-F]+)/.exec(t);
  if (!m) return null;
  const v = BigInt.asUintN(32, BigInt(`0x${m[2]}`));
  return Number(m[1] === "-" ? BigInt.asUintN(32, -v) : v);
}

/** `%d` into an int: decimal, wrapped to 32 bits. */
function dec32(t: string | undefined): number | null {
  const m = t === undefined ? null : /^[+-]?\d+/.exec(t);
  return m ? Number(BigInt.asIntN(32, BigInt(m[0]))) : null;
}

/** The host-order int of /proc/net/route as a dotted quad (low byte first). */
function routeIPv4(v: number): string {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff].join(".");
}

/** 32 hex digits of /proc/net/ipv6_route as inet_ntop text; null when malformed. */
function routeIPv6(hex: string): string | null {
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const m = /^[0-9a-fA-F]{1,2}/.exec(hex.slice(i * 2, i * 2 + 2));
    if (!m) return null;
    bytes[i] = parseInt(m[0], 16);
  }
  return formatIPv6(bytes);
}

/** Parses /proc/net/route (its first line is the header). */
export function parseRouteV4(text: string): NetworkRoute[] {
  const out: NetworkRoute[] = [];
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  // The first line is the header.
  for (const line of lines.slice(1)) {
    const t = line.trim().split(/\s+/);
    const iface = t[0];
    const dest = hex32(t[1]), gw = hex32(t[2]), flags = hex32(t[3]);
    const refcnt = dec32(t[4]), use = dec32(t[5]), metric = dec32(t[6]);
    const mask = hex32(t[7]), mtu = dec32(t[8]), window = dec32(t[9]), irtt = dec32(t[10]);
    if (
      !iface || dest === null || gw === null || flags === null || refcnt === null || use === null ||
      metric === null || mask === null || mtu === null || window === null || irtt === null
    ) continue;
    out.push({
      iface,
      destination: routeIPv4(dest),
      metric,
      gateway: routeIPv4(gw),
      mask: routeIPv4(mask),
      irtt,
      flags,
      refcnt,
      use,
      window,
      mtu,
      version: 4,
    });
  }
  return out;
}

/** Parses /proc/net/ipv6_route (no header; every number hex). */
export function parseRouteV6(text: string): NetworkRoute[] {
  const out: NetworkRoute[] = [];
  for (const line of text.split("\n")) {
    const t = line.trim().split(/\s+/);
    if (t.length < 10 || t[0] === "") continue;
    const nums = [t[1], t[3], t[5], t[6], t[7], t[8]].map(hex32);
    if (nums.some((n) => n === null)) continue;
    const [desLen, srcLen, metric, refcnt, use, flags] = nums.map((n) => n! | 0) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const destination = routeIPv6(t[0]!.slice(0, 32));
    if (destination === null) continue;
    const route: NetworkRoute = { iface: t[9]!, destination, metric, version: 6 };
    route.flags = intResult(BigInt.asUintN(64, BigInt(flags)));
    route.refcnt = refcnt;
    route.use = use;
    route.desprefixlen = String(desLen);
    const source = routeIPv6(t[2]!.slice(0, 32));
    if (source !== null) route.source = source;
    route.srcprefixlen = String(srcLen);
    const nexthop = routeIPv6(t[4]!.slice(0, 32));
    if (nexthop !== null) route.nexthop = nexthop;
    out.push(route);
  }
  return out;
}

/**
 * Builds guest-network-get-route's list: IPv4 routes, then IPv6. A route file that
 * cannot be opened makes the command fail with `open("<file>"): <errno>` (qemu-ga
 * sets the error and goes on, so the reply is the error).
 */
export async function getRoutes(sys: SystemAccess): Promise<NetworkRoute[]> {
  const out: NetworkRoute[] = [];
  let error: QgaError | undefined;
  for (
    const [file, parse] of [["/proc/net/route", parseRouteV4], [
      "/proc/net/ipv6_route",
      parseRouteV6,
    ]] as const
  ) {
    let text: string;
    try {
      text = await sys.readTextFile(file);
    } catch (e) {
      error ??= new QgaError(`open("${file}"): ${toSysError(e).strerror}`);
      continue;
    }
    out.push(...parse(text));
  }
  if (error) throw error;
  return out;
}

/** guest-network-get-route. */
export const guestNetworkGetRoute = defineCommand({
  name: "guest-network-get-route",
  since: "9.1",
  doc: "Lists the IPv4 and IPv6 routing tables (/proc/net/route, /proc/net/ipv6_route)",
  differences:
    "When neither route file can be opened qemu-ga aborts (a second error_setg); this agent " +
    "reports the first error.",
  returns: array(GuestNetworkRoute),
  needs: { helper: ["read"] },
  handler: (_args, ctx) => getRoutes(ctx.sys),
});
