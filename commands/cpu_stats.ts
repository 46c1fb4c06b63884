/**
 * guest-get-cpustats and guest-get-load (qga-reference.md §2.3 "CPUs / memory / stats"):
 * /proc/stat and /proc/loadavg, read through ctx.sys (the helper) and parsed as glibc and
 * qemu-ga do.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { intResult } from "../protocol/int64.ts";
import { array, enumType, int, number, type Returned, struct, uint64 } from "../protocol/types.ts";
import { toSysError } from "../system/mod.ts";
import { type Context, defineCommand } from "./types.ts";

function strerror(e: unknown): string {
  return toSysError(e).strerror;
}

/** GuestCpuStatsType (7.1). */
export const GuestCpuStatsType = enumType("GuestCpuStatsType", ["linux"]);

/** GuestCpuStats (7.1): flat union on `type`; `linux` carries GuestLinuxCpuStats. */
export const GuestCpuStats = struct("GuestCpuStats", {
  type: GuestCpuStatsType,
  cpu: int,
  user: uint64,
  nice: uint64,
  system: uint64,
  idle: uint64,
  "*iowait": uint64,
  "*irq": uint64,
  "*softirq": uint64,
  "*steal": uint64,
  "*guest": uint64,
  "*guestnice": uint64,
});

type CpuStats = Returned<typeof GuestCpuStats>;

/** AT_CLKTCK, the auxiliary vector entry carrying sysconf(_SC_CLK_TCK). */
const AT_CLKTCK = 17n;

/**
 * sysconf(_SC_CLK_TCK) as glibc answers it: the AT_CLKTCK entry of the auxiliary
 * vector (/proc/self/auxv: pairs of native 64-bit words; Deno runs on 64-bit
 * little-endian Linux only), else glibc's fallback of 100.
 */
export function clockTicks(auxv: Uint8Array): number {
  const view = new DataView(auxv.buffer, auxv.byteOffset, auxv.byteLength);
  for (let off = 0; off + 16 <= auxv.byteLength; off += 16) {
    const type = view.getBigUint64(off, true);
    if (type === 0n) break;
    if (type === AT_CLKTCK) {
      const v = Number(view.getBigUint64(off + 8, true));
      if (v > 0) return v;
    }
  }
  return 100;
}

/** atoi(3). */
function atoi(s: string): number {
  const m = /^\s*([+-]?\d+)/.exec(s);
  return m ? Number(BigInt.asIntN(32, BigInt(m[1]!))) : 0;
}

/**
 * Parses /proc/stat's `cpu<N>` lines as qemu-ga does: ticks become milliseconds
 * (`ticks * 1000 / clk_tck`), and the optional members follow the column count.
 * A `cpu<N>` line with fewer than four numbers ends the list.
 */
export function parseCpuStats(text: string, clkTck: number): CpuStats[] {
  const out: CpuStats[] = [];
  const tck = BigInt(clkTck);
  for (const line of text.split("\n")) {
    const tokens = line.trim().split(/\s+/).filter((t) => t !== "");
    if (tokens.length === 0) continue; // sscanf gives EOF
    const name = tokens[0]!;
    if (!name.startsWith("cpu") || name.length === 3) continue;
    const v: bigint[] = [];
    for (const t of tokens.slice(1, 11)) {
      const m = /^([+-]?)(\d+)/.exec(t);
      if (!m) break;
      const x = BigInt(m[2]!);
      v.push(BigInt.asUintN(64, m[1] === "-" ? -x : x));
    }
    const i = v.length + 1; // sscanf's count includes the name
    if (i < 5) break;
    const ms = (k: number) => intResult(BigInt.asUintN(64, v[k]! * 1000n) / tck);
    const stat: CpuStats = {
      type: "linux",
      cpu: atoi(name.slice(3)),
      user: ms(0),
      nice: ms(1),
      system: ms(2),
      idle: ms(3),
    };
    if (i > 5) stat.iowait = ms(4);
    if (i > 6) {
      stat.irq = ms(5);
      stat.softirq = v.length > 6 ? ms(6) : 0;
    }
    if (i > 8) stat.steal = ms(7);
    if (i > 9) stat.guest = ms(8);
    if (i > 10) stat.guestnice = ms(9);
    out.push(stat);
  }
  return out;
}

async function clkTck(ctx: Context): Promise<number> {
  return await ctx.store("cpu_stats.clk_tck", async () => {
    try {
      return clockTicks(await ctx.sys.readFile("/proc/self/auxv"));
    } catch {
      return 100;
    }
  });
}

/** guest-get-cpustats. */
export const guestGetCpustats = defineCommand({
  name: "guest-get-cpustats",
  since: "7.1",
  doc: "Reports the time each CPU spent in each state, in milliseconds (/proc/stat)",
  returns: array(GuestCpuStats),
  needs: { helper: ["read"] },
  async handler(_args, ctx) {
    let text: string;
    try {
      text = await ctx.sys.readTextFile("/proc/stat");
    } catch (e) {
      throw new QgaError(`open("/proc/stat"): ${strerror(e)}`);
    }
    return parseCpuStats(text, await clkTck(ctx));
  },
});

// ---------------------------------------------------------------------------------
// guest-get-load

/** GuestLoadAverage (10.0). */
export const GuestLoadAverage = struct("GuestLoadAverage", {
  load1m: number,
  load5m: number,
  load15m: number,
});

type LoadAverage = Returned<typeof GuestLoadAverage>;

/**
 * getloadavg(3) as glibc implements it on Linux: the first three numbers of
 * /proc/loadavg, parsed with strtod. (Deno.loadavg() uses sysinfo(2) and gives
 * more digits than qemu-ga reports, e.g. 0.18505859375 for 0.18.)
 */
export function parseLoadavg(text: string): LoadAverage | null {
  const m = /^\s*(\S+)\s+(\S+)\s+(\S+)/.exec(text);
  if (!m) return null;
  const values = [m[1]!, m[2]!, m[3]!].map((t) => {
    const n = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(t);
    return n ? Number(n[0]) : NaN;
  });
  if (values.some((v) => Number.isNaN(v))) return null;
  const [load1m, load5m, load15m] = values as [number, number, number];
  return { load1m, load5m, load15m };
}

/** guest-get-load. */
export const guestGetLoad = defineCommand({
  name: "guest-get-load",
  since: "10.0",
  doc: "Reports the 1, 5 and 15 minute load averages",
  differences: "Reads /proc/loadavg as glibc's getloadavg(3) does.",
  returns: GuestLoadAverage,
  needs: { helper: ["read"] },
  async handler(_args, ctx) {
    let text: string;
    try {
      text = await ctx.sys.readTextFile("/proc/loadavg");
    } catch (e) {
      throw new QgaError(`cannot query load average: ${strerror(e)}`);
    }
    const load = parseLoadavg(text);
    if (!load) throw new QgaError("cannot query load average: Invalid argument");
    return load;
  },
});
