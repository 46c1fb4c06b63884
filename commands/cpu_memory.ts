/**
 * CPUs, memory blocks and CPU statistics (qga-reference.md §2.3 "CPUs / memory /
 * stats"): guest-get-vcpus, guest-set-vcpus, guest-get-memory-blocks,
 * guest-set-memory-blocks, guest-get-memory-block-info, guest-get-cpustats and
 * guest-get-load. Every /sys and /proc access goes through ctx.sys; the only
 * writes are the `online` and `state` files of a CPU or memory block.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { INT64_MAX, intResult } from "../protocol/int64.ts";
import {
  array,
  bool,
  enumType,
  type Infer,
  int,
  number,
  type Returned,
  struct,
  uint64,
} from "../protocol/types.ts";
import { errnoNumber, type SystemAccess, toSysError } from "../system/mod.ts";
import { type Context, defineCommand } from "./types.ts";

function strerror(e: unknown): string {
  return toSysError(e).strerror;
}

/** The Linux errno of an error, for GuestMemoryBlockResponse's `error-code` (EIO if unknown). */
function errnoOf(e: unknown): number {
  return errnoNumber(toSysError(e).code) ?? errnoNumber("EIO")!;
}

const ENOENT = errnoNumber("ENOENT");

function isENOENT(e: unknown): boolean {
  return toSysError(e).code === "ENOENT";
}

// ---------------------------------------------------------------------------------
// vCPUs

/** GuestLogicalProcessor (1.5). */
export const GuestLogicalProcessor = struct("GuestLogicalProcessor", {
  "logical-id": int,
  online: bool,
  "*can-offline": bool,
});

/** A GuestLogicalProcessor as reported, and as requested. */
type LogicalProcessor = Returned<typeof GuestLogicalProcessor>;
type VcpuRequest = Infer<typeof GuestLogicalProcessor>;

const CPU_DIR = "/sys/devices/system/cpu";

/** Reads the first byte of `<dir>/online`; null when the file does not exist. */
async function readOnline(sys: SystemAccess, dir: string): Promise<string | null> {
  let text: string;
  try {
    text = await sys.readTextFile(`${dir.replace(/\/+$/, "")}/online`);
  } catch (e) {
    if (isENOENT(e)) return null;
    throw new QgaError(`open("${dir}/online"): ${strerror(e)}`);
  }
  if (text === "") throw new QgaError(`pread("${dir}/online"): unexpected EOF`);
  return text[0]!;
}

/** Lists the vCPUs in readdir order (entries `cpu<N>`). */
export async function getVcpus(sys: SystemAccess): Promise<LogicalProcessor[]> {
  let entries;
  try {
    entries = await sys.readDir(CPU_DIR);
  } catch (e) {
    throw new QgaError(`failed to list entries: ${CPU_DIR}: ${strerror(e)}`);
  }
  const out: LogicalProcessor[] = [];
  for (const entry of entries) {
    const m = /^cpu\s*([+-]?\d+)/.exec(entry.name);
    if (!m) continue;
    const id = BigInt.asIntN(64, BigInt(m[1]!));
    const dir = `${CPU_DIR}/cpu${id}/`;
    const status = await readOnline(sys, dir);
    out.push(
      status === null
        ? { "logical-id": intResult(id), online: true, "can-offline": false }
        : { "logical-id": intResult(id), online: status !== "0", "can-offline": true },
    );
  }
  return out;
}

/** guest-get-vcpus. */
export const guestGetVcpus = defineCommand({
  name: "guest-get-vcpus",
  since: "1.5",
  doc: "Lists the logical processors and whether each is online and can be offlined",
  returns: array(GuestLogicalProcessor),
  needs: { helper: ["read"] },
  handler: (_args, ctx) => getVcpus(ctx.sys),
});

/** Brings one vCPU to the requested state (transfer_vcpu, vcpu-to-system direction). */
async function setVcpu(sys: SystemAccess, vcpu: VcpuRequest): Promise<void> {
  const id = vcpu["logical-id"];
  const dir = `${CPU_DIR}/cpu${id}/`;
  try {
    await sys.readDir(dir);
  } catch (e) {
    throw new QgaError(`open("${dir}"): ${strerror(e)}`);
  }
  const status = await readOnline(sys, dir);
  if (status === null) {
    if (!vcpu.online) throw new QgaError(`logical processor #${id} can't be offlined`);
    return; // re-onlining a CPU without an online file: nothing to do
  }
  if (vcpu.online === (status !== "0")) return;
  try {
    await sys.writeFile(`${dir.replace(/\/+$/, "")}/online`, vcpu.online ? "1" : "0");
  } catch (e) {
    throw new QgaError(`pwrite("${dir}/online"): ${strerror(e)}`);
  }
}

/**
 * Applies the requested states in order and returns how many were processed.
 * The first failure stops the walk; it is the reply only when nothing was done.
 */
export async function setVcpus(sys: SystemAccess, vcpus: readonly VcpuRequest[]): Promise<number> {
  let processed = 0;
  for (const vcpu of vcpus) {
    try {
      await setVcpu(sys, vcpu);
    } catch (e) {
      if (processed === 0) throw e;
      break;
    }
    processed++;
  }
  return processed;
}

/** guest-set-vcpus. */
export const guestSetVcpus = defineCommand({
  name: "guest-set-vcpus",
  since: "1.5",
  doc: "Brings logical processors online or offline; returns how many requests were processed",
  args: struct("", { vcpus: array(GuestLogicalProcessor) }),
  returns: int,
  needs: { helper: ["read", "write"] },
  handler: (args, ctx) => setVcpus(ctx.sys, args.vcpus),
});

// ---------------------------------------------------------------------------------
// Memory blocks

/** GuestMemoryBlock (2.3). */
export const GuestMemoryBlock = struct("GuestMemoryBlock", {
  "phys-index": uint64,
  online: bool,
  "*can-offline": bool,
});

/** GuestMemoryBlockResponseType (2.3). */
export const GuestMemoryBlockResponseType = enumType("GuestMemoryBlockResponseType", [
  "success",
  "not-found",
  "operation-not-supported",
  "operation-failed",
]);

/** GuestMemoryBlockResponse (2.3). */
export const GuestMemoryBlockResponse = struct("GuestMemoryBlockResponse", {
  "phys-index": uint64,
  response: GuestMemoryBlockResponseType,
  "*error-code": int,
});

type MemoryBlock = Returned<typeof GuestMemoryBlock>;
type MemoryBlockRequest = Infer<typeof GuestMemoryBlock>;
type MemoryBlockResponse = Returned<typeof GuestMemoryBlockResponse>;

/** GuestMemoryBlockInfo (2.3). */
export const GuestMemoryBlockInfo = struct("GuestMemoryBlockInfo", { size: uint64 });

const MEMORY_DIR = "/sys/devices/system/memory/";

/** ga_read_sysfs_file: the first `size` bytes of a sysfs attribute; throws with qemu-ga's texts. */
async function readSysfs(
  sys: SystemAccess,
  dir: string,
  name: string,
  size: number,
): Promise<string> {
  let text: string;
  try {
    text = await sys.readTextFile(`${dir}${name}`);
  } catch (e) {
    throw Object.assign(new QgaError(`open sysfs file "${name}": ${strerror(e)}`), {
      errno: errnoOf(e),
    });
  }
  if (text === "") {
    throw Object.assign(new QgaError(`pread sysfs file "${name}": unexpected EOF`), { errno: 0 });
  }
  return text.slice(0, size);
}

function errnoFrom(e: unknown): number {
  return (e as { errno?: number }).errno ?? 0;
}

/** strtoul(s, NULL, 10): leading decimal digits, 0 when there are none. */
function strtoul10(s: string): bigint {
  const m = /^\s*\+?(\d+)/.exec(s);
  return m ? BigInt.asUintN(64, BigInt(m[1]!)) : 0n;
}

/** Lists the memory blocks in readdir order. */
export async function getMemoryBlocks(sys: SystemAccess): Promise<MemoryBlock[]> {
  let entries;
  try {
    entries = await sys.readDir(MEMORY_DIR);
  } catch (e) {
    if (isENOENT(e)) return [];
    throw new QgaError(`Can't open directory"${MEMORY_DIR}": ${strerror(e)}`);
  }
  const out: MemoryBlock[] = [];
  for (const entry of entries) {
    if (!entry.name.startsWith("memory") || !entry.isDirectory) continue;
    const index = strtoul10(entry.name.slice(6));
    const dir = `${MEMORY_DIR}memory${index}/`;
    const block: MemoryBlock = {
      "phys-index": intResult(index),
      online: true,
      "can-offline": false,
    };
    let state: string | null;
    try {
      state = await readSysfs(sys, dir, "state", 10);
    } catch (e) {
      if (errnoFrom(e) !== ENOENT) throw e;
      state = null; // no state file in old kernels: online, not removable
    }
    if (state !== null) {
      block.online = state.startsWith("online");
      try {
        block["can-offline"] = (await readSysfs(sys, dir, "removable", 1)) !== "0";
      } catch (e) {
        if (errnoFrom(e) !== ENOENT) throw e;
        block["can-offline"] = false;
      }
    }
    out.push(block);
  }
  if (out.length === 0) throw new QgaError("guest reported zero memory blocks!");
  return out;
}

/** guest-get-memory-blocks. */
export const guestGetMemoryBlocks = defineCommand({
  name: "guest-get-memory-blocks",
  since: "2.3",
  doc: "Lists the memory blocks and whether each is online and can be offlined",
  returns: array(GuestMemoryBlock),
  needs: { helper: ["read"] },
  handler: (_args, ctx) => getMemoryBlocks(ctx.sys),
});

/** Brings one memory block to the requested state (transfer_memory_block, block-to-system). */
async function setMemoryBlock(
  sys: SystemAccess,
  block: MemoryBlockRequest,
  memoryDirError: unknown,
): Promise<MemoryBlockResponse> {
  const result: MemoryBlockResponse = {
    "phys-index": intResult(block["phys-index"]),
    response: "success",
  };
  if (memoryDirError !== undefined) {
    // No memory directory: the VM cannot hot-(un)plug memory.
    if (isENOENT(memoryDirError)) result.response = "operation-not-supported";
    result["error-code"] = errnoOf(memoryDirError);
    return result;
  }
  const dir = `${MEMORY_DIR}memory${block["phys-index"]}/`;
  try {
    await sys.readDir(dir);
  } catch (e) {
    result.response = isENOENT(e) ? "not-found" : "operation-failed";
    result["error-code"] = errnoOf(e);
    return result;
  }
  let state: string;
  try {
    state = await readSysfs(sys, dir, "state", 10);
  } catch (e) {
    const errno = errnoFrom(e);
    if (errno === ENOENT) {
      if (!block.online) result.response = "operation-not-supported";
    } else {
      result.response = "operation-failed";
    }
    result["error-code"] = errno;
    return result;
  }
  if (block.online !== state.startsWith("online")) {
    try {
      await sys.writeFile(`${dir}state`, block.online ? "online" : "offline");
    } catch (e) {
      result.response = "operation-failed";
      result["error-code"] = errnoOf(e);
    }
  }
  return result;
}

/** Applies the requested states, one response per request, in order. */
export async function setMemoryBlocks(
  sys: SystemAccess,
  blocks: readonly MemoryBlockRequest[],
): Promise<MemoryBlockResponse[]> {
  let memoryDirError: unknown;
  if (blocks.length > 0) {
    try {
      await sys.readDir(MEMORY_DIR);
    } catch (e) {
      memoryDirError = e;
    }
  }
  const out: MemoryBlockResponse[] = [];
  for (const block of blocks) out.push(await setMemoryBlock(sys, block, memoryDirError));
  return out;
}

/** guest-set-memory-blocks. */
export const guestSetMemoryBlocks = defineCommand({
  name: "guest-set-memory-blocks",
  since: "2.3",
  doc: "Brings memory blocks online or offline; one response per requested block",
  differences:
    "The memory directory is checked once per request rather than once per block; a state " +
    "file is written with write(2) at offset 0, as qemu-ga's pwrite does.",
  args: struct("", { "mem-blks": array(GuestMemoryBlock) }),
  returns: array(GuestMemoryBlockResponse),
  needs: { helper: ["read", "write"] },
  handler: (args, ctx) => setMemoryBlocks(ctx.sys, args["mem-blks"]),
});

/** strtol(s, NULL, 16) of the first 20 bytes, as qemu-ga parses block_size_bytes. */
export function parseHexSize(s: string): number | bigint {
  const m = /^\s*([+-]?)(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)/.exec(s.slice(0, 20));
  if (!m) return 0;
  let v = BigInt(`0x${m[2]}`);
  if (v > INT64_MAX) v = m[1] === "-" ? INT64_MAX + 1n : INT64_MAX;
  if (m[1] === "-") v = -v;
  // strtol's long becomes the uint64 `size`.
  return intResult(BigInt.asUintN(64, v));
}

/** Reads the memory block size. */
export async function getMemoryBlockInfo(sys: SystemAccess): Promise<{ size: number | bigint }> {
  try {
    await sys.readDir(MEMORY_DIR);
  } catch (e) {
    throw new QgaError(`open("${MEMORY_DIR}"): ${strerror(e)}`);
  }
  const text = await readSysfs(sys, MEMORY_DIR, "block_size_bytes", 20);
  return { size: parseHexSize(text) };
}

/** guest-get-memory-block-info. */
export const guestGetMemoryBlockInfo = defineCommand({
  name: "guest-get-memory-block-info",
  since: "2.3",
  doc: "Reports the size of a memory block in bytes",
  returns: GuestMemoryBlockInfo,
  needs: { helper: ["read"] },
  handler: (_args, ctx) => getMemoryBlockInfo(ctx.sys),
});

// ---------------------------------------------------------------------------------
// guest-get-cpustats

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
  return await ctx.store("cpu_memory.clk_tck", async () => {
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
