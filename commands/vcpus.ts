/**
 * guest-get-vcpus and guest-set-vcpus (qga-reference.md §2.3 "CPUs / memory / stats"):
 * the logical processors under /sys/devices/system/cpu, read and written through ctx.sys
 * (the helper); the only write is a CPU's `online` file.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { intResult } from "../protocol/int64.ts";
import { array, bool, type Infer, int, type Returned, struct } from "../protocol/types.ts";
import { type SystemAccess, toSysError } from "../system/mod.ts";
import { defineCommand } from "./types.ts";

function strerror(e: unknown): string {
  return toSysError(e).strerror;
}

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
    if (toSysError(e).code === "ENOENT") return null;
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
