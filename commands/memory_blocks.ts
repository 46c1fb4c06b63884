/**
 * guest-get-memory-blocks, guest-set-memory-blocks and guest-get-memory-block-info
 * (qga-reference.md §2.3 "CPUs / memory / stats"): the memory blocks under
 * /sys/devices/system/memory, read and written through ctx.sys (the helper); the only
 * write is a block's `state` file. Failures per block are reported as qemu-ga does, with
 * the Linux errno in `error-code`.
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
  type Returned,
  struct,
  uint64,
} from "../protocol/types.ts";
import { errnoNumber, type SystemAccess, toSysError } from "../system/mod.ts";
import { defineCommand } from "./types.ts";

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
