/**
 * Boots the e2e guest once and runs every client conversation against the reference qemu-ga
 * (virtio-serial port `.1`, isa-serial ttyS2) and against deno-qga (port `.0`, ttyS1), in
 * that order per conversation, then formats the `conversation | qemu-ga | deno-qga` table.
 * Used by e2e_test.ts and run.ts.
 *
 * @module
 */

import { Channel } from "./channel.ts";
import {
  type AgentName,
  Conversation,
  CONVERSATIONS,
  type ConversationSpec,
  type Target,
} from "./clients.ts";
import { SHARE_FILES } from "./guest_script.ts";
import { resync } from "./sessions.ts";
import { startVm, type Vm } from "./vm.ts";

/** A table cell. `7.2 limit` and `n/a` do not count as failures. */
export type CellStatus = "pass" | "fail" | "not built" | "7.2 limit" | "n/a";

/** One agent's result for one conversation. */
export interface Cell {
  status: CellStatus;
  reasons: string[];
  ms: number;
}

/** One table row. */
export interface Row {
  name: string;
  limit72: string | undefined;
  ref: Cell;
  deno: Cell;
}

/** What {@linkcode runSuite} returns. */
export interface SuiteResult {
  rows: Row[];
  /** From starting QEMU to the guest script's `ready`. */
  bootMs: number;
  /** From starting QEMU to the end (QEMU gone, temp dir removed). */
  totalMs: number;
  /** Tails of the guest-side logs, for failure reports. */
  logs: Record<string, string>;
  /** Cells that make the suite fail, as `agent: row: reasons`. */
  failures: string[];
}

/** Options of {@linkcode runSuite}. */
export interface SuiteOptions {
  /** Only conversations whose name contains one of these strings (default all). */
  only?: string[];
  /** Progress output (default none). */
  log?: (line: string) => void;
  /** How long deno-qga may take to answer its first resync in the guest (default 60 s). */
  agentStartMs?: number;
}

/** Longest a single conversation may run against one agent. */
const CONVERSATION_LIMIT_MS = 120_000;

async function answersResync(
  path: string,
  id: () => number,
  ms: number,
  gone: () => Promise<boolean>,
): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !await gone()) {
    const ch = await Channel.connect(path).catch(() => undefined);
    if (ch) {
      const ok = await resync(new Conversation(), ch, id(), Math.min(5000, ms));
      await ch.close();
      if (ok) return true;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return false;
}

async function runOne(spec: ConversationSpec, t: Target): Promise<Cell> {
  const c = new Conversation();
  const t0 = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const limit = new Promise<"limit">((r) =>
      timer = setTimeout(() => r("limit"), CONVERSATION_LIMIT_MS)
    );
    const end = await Promise.race([spec.run(c, t).then(() => "done" as const), limit]);
    if (end === "limit") {
      c.fail(`the conversation did not finish within ${CONVERSATION_LIMIT_MS} ms`);
    }
  } catch (e) {
    c.fail(`exception: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  } finally {
    clearTimeout(timer);
  }
  const ms = Date.now() - t0;
  if (c.reasons.length === 0 && c.notBuilt.size === 0) return { status: "pass", reasons: [], ms };
  if (c.notBuilt.size > 0) {
    return {
      status: "not built",
      reasons: [`not built: ${[...c.notBuilt].join(", ")}`, ...c.reasons],
      ms,
    };
  }
  return { status: "fail", reasons: c.reasons, ms };
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

/**
 * Boots the guest, runs the conversations, shuts everything down.
 *
 * @example
 * ```ts
 * const result = await runSuite({ log: console.log });
 * console.log(formatReport(result));
 * ```
 */
export async function runSuite(options: SuiteOptions = {}): Promise<SuiteResult> {
  const log = options.log ?? (() => {});
  const t0 = Date.now();
  const specs = CONVERSATIONS.filter((s) =>
    !options.only || options.only.some((o) => s.name.includes(o))
  );
  const rows: Row[] = [];
  let bootMs = 0;
  const logs: Record<string, string> = {};
  let vm: Vm | undefined;
  try {
    vm = await startVm();
    await vm.waitReady(120_000);
    bootMs = Date.now() - t0;
    log(`guest ready after ${(bootMs / 1000).toFixed(1)} s`);
    let seq = 0;
    const pveId = () => Number(`${Deno.pid}0${++seq}`);
    const targets: Record<AgentName, Target> = {
      "qemu-ga": {
        agent: "qemu-ga",
        virtio: vm.sockets.refVirtio,
        isa: vm.sockets.refIsa,
        vm,
        pveId,
      },
      "deno-qga": {
        agent: "deno-qga",
        virtio: vm.sockets.denoVirtio,
        isa: vm.sockets.denoIsa,
        commandFile: SHARE_FILES.denoCommand,
        vm,
        pveId,
      },
    };
    const ready: Record<AgentName, boolean> = {
      "qemu-ga": await answersResync(
        vm.sockets.refVirtio,
        pveId,
        30_000,
        async () => /\bcritical\b/.test(await vm!.shareText(SHARE_FILES.refLog)),
      ),
      "deno-qga": await answersResync(
        vm.sockets.denoVirtio,
        pveId,
        options.agentStartMs ?? 60_000,
        async () => /exited with status/.test(await vm!.shareText(SHARE_FILES.denoLog)),
      ),
    };
    log(
      `agents answering: qemu-ga ${ready["qemu-ga"]}, deno-qga ${ready["deno-qga"]} ` +
        `(${((Date.now() - t0) / 1000).toFixed(1)} s)`,
    );
    const notAnswering = async (agent: AgentName): Promise<Cell> => ({
      status: "fail",
      reasons: [
        `${agent} did not answer a resync on its virtio-serial port after start (last log ` +
        `line: ${
          tail(
            await vm!.shareText(agent === "qemu-ga" ? SHARE_FILES.refLog : SHARE_FILES.denoLog),
            1,
          )
        })`,
      ],
      ms: 0,
    });
    for (const spec of specs) {
      const cell = async (agent: AgentName): Promise<Cell> => {
        if (vm!.status && !(spec === specs.at(-1) && agent === "deno-qga")) {
          return { status: "fail", reasons: ["QEMU exited before this conversation"], ms: 0 };
        }
        const usesVirtio = !spec.name.startsWith("guest: isa-serial") && !spec.denoOnly;
        if (usesVirtio && !ready[agent]) return await notAnswering(agent);
        return await runOne(spec, targets[agent]);
      };
      let ref: Cell = spec.denoOnly ? { status: "n/a", reasons: [], ms: 0 } : await cell("qemu-ga");
      const limit = spec.limit72;
      if (
        limit && (ref.status === "fail" || ref.status === "not built") &&
        ref.reasons.some((r) => limit.evidence.test(r))
      ) {
        ref = { ...ref, status: "7.2 limit", reasons: [limit.why, ...ref.reasons] };
      }
      const deno = await cell("deno-qga");
      rows.push({ name: spec.name, limit72: spec.limit72?.why, ref, deno });
      log(`${ref.status.padEnd(9)} ${deno.status.padEnd(9)} ${spec.name}`);
    }
  } finally {
    if (vm) {
      for (
        const [k, f] of Object.entries({
          "guest script": SHARE_FILES.guestLog,
          "qemu-ga": SHARE_FILES.refLog,
          "qemu-ga (isa-serial)": SHARE_FILES.refIsaLog,
          "deno-qga": SHARE_FILES.denoLog,
          "deno-qga (isa-serial)": SHARE_FILES.denoIsaLog,
        })
      ) logs[k] = tail(await vm.shareText(f), 25);
      logs["console"] = tail(await vm.console(), 25);
      if (vm.timedOut) logs["qemu"] = "QEMU was killed by the hard timeout";
      await vm.dispose();
    }
  }
  const failures = rows.flatMap(rowFailures);
  return { rows, bootMs, totalMs: Date.now() - t0, logs, failures };
}

/**
 * The cells of a row that make the suite fail, as `agent: row: reasons`: a qemu-ga cell
 * that failed or was not built (a documented 7.2 limit does not count), a deno-qga cell
 * that did not pass.
 */
export function rowFailures(r: Row): string[] {
  const out: string[] = [];
  if (r.ref.status === "fail" || r.ref.status === "not built") {
    out.push(`qemu-ga: ${r.name}: ${r.ref.reasons.join("; ")}`);
  }
  if (r.deno.status !== "pass" && r.deno.status !== "n/a") {
    out.push(`deno-qga: ${r.name}: ${r.deno.reasons.join("; ")}`);
  }
  return out;
}

/** The result table, the reasons of every cell that is not a pass, and the timings. */
export function formatReport(r: SuiteResult): string {
  const w = Math.max(12, ...r.rows.map((x) => x.name.length));
  const cell = (c: Cell) => `${c.status} (${(c.ms / 1000).toFixed(1)} s)`.padEnd(18);
  const out = [
    `${"conversation".padEnd(w)} | ${"qemu-ga".padEnd(18)} | deno-qga`,
    `${"-".repeat(w)}-|-${"-".repeat(18)}-|-${"-".repeat(18)}`,
    ...r.rows.map((x) => `${x.name.padEnd(w)} | ${cell(x.ref)} | ${cell(x.deno)}`),
    "",
  ];
  const notes = r.rows.flatMap((x) => [
    ...(x.ref.status !== "pass" && x.ref.status !== "n/a"
      ? [`qemu-ga ${x.ref.status}: ${x.name}\n  - ${x.ref.reasons.join("\n  - ")}`]
      : []),
    ...(x.deno.status !== "pass" && x.deno.status !== "n/a"
      ? [`deno-qga ${x.deno.status}: ${x.name}\n  - ${x.deno.reasons.join("\n  - ")}`]
      : []),
  ]);
  if (notes.length > 0) out.push("Details:", ...notes, "");
  const count = (agent: "ref" | "deno", s: CellStatus) =>
    r.rows.filter((x) => x[agent].status === s).length;
  out.push(
    `qemu-ga: ${count("ref", "pass")} pass, ${count("ref", "7.2 limit")} 7.2 limit, ` +
      `${count("ref", "fail") + count("ref", "not built")} failing; ` +
      `deno-qga: ${count("deno", "pass")} pass, ${count("deno", "not built")} not built, ` +
      `${count("deno", "fail")} fail`,
    `boot to ready ${(r.bootMs / 1000).toFixed(1)} s, whole run ${(r.totalMs / 1000).toFixed(1)} s`,
  );
  return out.join("\n");
}

/** The guest-side logs, for a failing run. */
export function formatLogs(r: SuiteResult): string {
  return Object.entries(r.logs).map(([k, v]) => `--- ${k} ---\n${v}`).join("\n");
}
