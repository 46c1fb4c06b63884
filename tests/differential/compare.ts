/**
 * Runs corpus entries against agents and compares transcripts: bytes (after the entry's
 * masks), the 7.2/10.2 text equivalences, and the structural guest-info comparison.
 *
 * @module
 */

import {
  type AgentKind,
  DANGEROUS_COMMANDS,
  type RunningAgent,
  startAgent,
  type StartOptions,
} from "../helpers/agents.ts";
import { type Entry, MASKS, VERSION_EQUIVALENCES } from "./corpus.ts";
import { escapeBytes, MARKER_BASE, resync, runScript, type Segment } from "./harness.ts";

/** What one agent produced for one entry: segments, or the error that stopped the run. */
export type Transcript = { ok: true; segments: Segment[] } | { ok: false; error: string };

/** The transcripts of one entry, by agent. */
export interface Outcome {
  readonly entry: Entry;
  readonly transcripts: ReadonlyMap<AgentKind, Transcript>;
}

/** Marker ids of entry `i` start here; resyncs use ids above every script's range. */
function markerBase(i: number): number {
  return MARKER_BASE + i * 100;
}

function resyncId(i: number): number {
  return 9_900_000 + i;
}

function startOptions(entry: Entry): StartOptions {
  const s = entry.start ?? {};
  return { ...s, block: [...DANGEROUS_COMMANDS, ...(s.block ?? [])] };
}

async function playFresh(kind: AgentKind, entry: Entry, i: number): Promise<Transcript> {
  let agent: RunningAgent | undefined;
  try {
    agent = await startAgent(kind, startOptions(entry));
    const segments = await runScript(agent, entry.steps, { markerBase: markerBase(i) });
    await agent.stop();
    return { ok: true, segments };
  } catch (e) {
    await agent?.stop().catch(() => {});
    return { ok: false, error: String(e instanceof Error ? e.message : e) };
  }
}

async function playShared(agent: RunningAgent, entry: Entry, i: number): Promise<Transcript> {
  try {
    const segments = await runScript(agent, entry.steps, { markerBase: markerBase(i) });
    if (!(await resync(agent, resyncId(i)))) {
      return { ok: false, error: "no reply to the resync marker after the entry" };
    }
    return { ok: true, segments };
  } catch (e) {
    return { ok: false, error: String(e instanceof Error ? e.message : e) };
  }
}

/**
 * Plays every entry against every kind: shared entries one after the other on one
 * long-lived agent per kind (resynchronised after each entry); fresh entries on agents of
 * their own, up to `freshConcurrency` entries at a time, alongside the shared ones. The
 * kinds always run in parallel. Outcomes keep corpus order. `stopErrors` lists shared
 * agents that did not exit 0 on SIGTERM.
 */
export async function runCorpus(
  kinds: readonly AgentKind[],
  entries: readonly Entry[],
  options: { freshConcurrency?: number } = {},
): Promise<{ outcomes: Outcome[]; stopErrors: string[] }> {
  const shared = new Map<AgentKind, RunningAgent | Error>();
  await Promise.all(kinds.map(async (k) => {
    try {
      const agent = await startAgent(k, { block: DANGEROUS_COMMANDS });
      console.log(`${k} runs as: ${agent.argv.join(" ")}`);
      shared.set(k, agent);
    } catch (e) {
      shared.set(k, e instanceof Error ? e : new Error(String(e)));
    }
  }));
  const stopAll = async (): Promise<string[]> => {
    const errors: string[] = [];
    for (const a of shared.values()) {
      if (!(a instanceof Error)) await a.stop().catch((e) => errors.push(String(e)));
    }
    return errors;
  };
  const play = async (i: number): Promise<Outcome> => {
    const entry = entries[i]!;
    const results = await Promise.all(kinds.map((k): Promise<Transcript> => {
      if (entry.instance === "fresh") return playFresh(k, entry, i);
      const agent = shared.get(k)!;
      if (agent instanceof Error) {
        return Promise.resolve({ ok: false, error: `shared agent: ${agent.message}` });
      }
      return playShared(agent, entry, i);
    }));
    return { entry, transcripts: new Map(kinds.map((k, j) => [k, results[j]!])) };
  };
  const outcomes: Outcome[] = new Array(entries.length);
  const sharedIdx = [...entries.keys()].filter((i) => entries[i]!.instance === "shared");
  const freshIdx = [...entries.keys()].filter((i) => entries[i]!.instance === "fresh");
  const worker = async (queue: number[]) => {
    for (let i = queue.shift(); i !== undefined; i = queue.shift()) outcomes[i] = await play(i);
  };
  try {
    const workers = [worker(sharedIdx)];
    for (let n = 0; n < (options.freshConcurrency ?? 1); n++) workers.push(worker(freshIdx));
    await Promise.all(workers);
  } catch (e) {
    await stopAll();
    throw e;
  }
  return { outcomes, stopErrors: await stopAll() };
}

/**
 * A transcript cut into the pieces that are compared one by one: per recorded segment
 * (a mark, idle or files step), its replies (each up to and including its newline; a
 * trailing note such as `<EOF>` is a piece of its own), escaped, with the entry's masks
 * applied. A files snapshot is one piece.
 */
export type Pieces = { ok: true; segments: { label: string; replies: string[] }[] } | {
  ok: false;
  error: string;
};

function splitReplies(bytes: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let from = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x0a) {
      out.push(bytes.subarray(from, i + 1));
      from = i + 1;
    }
  }
  if (from < bytes.length) out.push(bytes.subarray(from));
  return out;
}

/** Cuts a transcript into pieces and applies the entry's masks to each. */
export function pieces(entry: Entry, t: Transcript): Pieces {
  if (!t.ok) return t;
  const mask = (text: string) => {
    for (const name of entry.masks ?? []) {
      const m = MASKS[name];
      if (!m) throw new Error(`entry ${entry.name}: unknown mask ${name}`);
      text = text.replace(m.re, m.with);
    }
    return text;
  };
  return {
    ok: true,
    segments: t.segments.map((s) => ({
      label: s.label,
      replies: (s.label === "files" ? [s.bytes] : splitReplies(s.bytes)).map((b) =>
        mask(escapeBytes(b))
      ),
    })),
  };
}

/** The pieces as one text: one line per segment, `label: escaped bytes` (as transcriptText). */
export function piecesText(p: Pieces): string {
  if (!p.ok) return `<error: ${p.error}>`;
  return p.segments.map((s) => `${s.label}: ${s.replies.join("")}`).join("\n");
}

function rewrite(text: string, side: "reference" | "candidate"): string {
  for (const e of VERSION_EQUIVALENCES) if (e.side === side) text = text.replace(e.re, e.with);
  return text;
}

/**
 * True when deno-qga's reply is qemu-ga 7.2's in the 10.2 form: qemu-ga's reply with the
 * 7.2 texts rewritten to 10.2's, deno-qga's without the members 10.2 added. Each side
 * is rewritten on its own, so two different 7.2 texts never become equal.
 */
export function sameIn102(reference: string, candidate: string): boolean {
  const c = rewrite(candidate, "candidate");
  return c === reference || c === rewrite(reference, "reference");
}

/** Result of comparing one entry. */
export interface Verdict {
  readonly name: string;
  /**
   * "same", "same (10.2 texts)", "same (structure)", "KNOWN" (only documented known
   * differences), "BAD REFERENCE" or "DIFFERENT".
   */
  readonly verdict: string;
  readonly ok: boolean;
  /** Human-readable problems (empty when ok), or the known differences that excused replies. */
  readonly problems: readonly string[];
  readonly reference: string;
  readonly candidate: string;
}

/** Problems with the reference transcript itself (a corpus or harness mistake). */
export function referenceProblems(entry: Entry, reference: string): string[] {
  const out: string[] = [];
  if (reference.startsWith("<error:")) out.push(`qemu-ga run failed: ${reference}`);
  if (reference.includes("<no marker reply")) out.push("qemu-ga did not answer a marker");
  for (const e of entry.expect ?? []) {
    if (!reference.includes(e)) out.push(`qemu-ga transcript lacks ${JSON.stringify(e)}`);
  }
  return out;
}

const INFO_ENTRY =
  /\{"enabled": (?:true|false), "name": "[a-z0-9-]+", "success-response": (?:true|false)\}/.source;
const INFO_LINE = new RegExp(
  `^\\{"return": \\{"version": "(\\d+\\.\\d+\\.\\d+)", "supported_commands": \\[(?:${INFO_ENTRY}(?:, ${INFO_ENTRY})*)?\\]\\}\\}$`,
);
/** Commands 10.2 has and 7.2 lacks (qga-reference.md §2.1). */
const ONLY_10_2 = ["guest-get-load", "guest-network-get-route"];
/** Commands 7.2 registers that a 10.2 Linux build does not (§2.1). */
const ONLY_7_2 = ["guest-get-devices"];

interface InfoCommand {
  enabled: boolean;
  name: string;
  "success-response": boolean;
}

/**
 * guest-info differs by design (version, command set): require the exact serialized
 * shape from both (member order included), the same enabled and success-response flags
 * for every common command, the same relative order of common commands, and the 10.2
 * command set from deno-qga. Everything outside the guest-info reply line is compared
 * byte for byte.
 */
function compareGuestInfo(reference: string, candidate: string): string[] {
  const problems: string[] = [];
  const pick = (text: string) => {
    const m = /(\{"return": \{"version": .*?\]\}\})\\n/.exec(text);
    return m ? { line: m[1]!, rest: text.replace(m[1]!, "<guest-info>") } : undefined;
  };
  const r = pick(reference);
  const c = pick(candidate);
  if (!r) return ["qemu-ga transcript has no guest-info reply"];
  if (!c) return ["deno-qga transcript has no guest-info reply"];
  if (r.rest !== c.rest) problems.push("bytes outside the guest-info reply differ");
  for (const [who, x] of [["qemu-ga", r], ["deno-qga", c]] as const) {
    if (!INFO_LINE.test(x.line)) {
      problems.push(`${who}: guest-info reply is not in the exact shape`);
    }
  }
  if (problems.length > 0) return problems;
  const rc = JSON.parse(r.line).return.supported_commands as InfoCommand[];
  const cc = JSON.parse(c.line).return.supported_commands as InfoCommand[];
  const rNames = new Set(rc.map((x) => x.name));
  const cNames = new Set(cc.map((x) => x.name));
  for (const n of ONLY_10_2) {
    if (!cNames.has(n)) problems.push(`deno-qga lacks ${n} (10.2 command)`);
  }
  for (const n of rNames) {
    if (!cNames.has(n) && !ONLY_7_2.includes(n)) problems.push(`deno-qga lacks ${n}`);
  }
  for (const n of cNames) {
    if (!rNames.has(n) && !ONLY_10_2.includes(n)) problems.push(`deno-qga has extra ${n}`);
  }
  const common = (list: InfoCommand[], other: Set<string>) => list.filter((x) => other.has(x.name));
  const rCommon = common(rc, cNames);
  const cCommon = common(cc, rNames);
  const order = (l: InfoCommand[]) => l.map((x) => x.name).join(",");
  if (order(rCommon) !== order(cCommon)) {
    problems.push("common commands are listed in another order");
  }
  const byName = new Map(rCommon.map((x) => [x.name, x]));
  for (const x of cCommon) {
    const y = byName.get(x.name)!;
    if (x.enabled !== y.enabled) {
      problems.push(`${x.name}: enabled ${x.enabled} vs qemu-ga ${y.enabled}`);
    }
    if (x["success-response"] !== y["success-response"]) {
      problems.push(`${x.name}: success-response differs`);
    }
  }
  return problems;
}

/**
 * Compares deno-qga's transcript of an entry with qemu-ga's, reply by reply: each reply
 * must be byte-identical, or the same in 10.2's texts ({@link sameIn102}), or be the one
 * reply a known difference of the entry names, answered exactly as documented there.
 */
export function compareOutcome(outcome: Outcome): Verdict {
  const { entry } = outcome;
  const ref = pieces(entry, outcome.transcripts.get("qemu-ga")!);
  const cand = pieces(entry, outcome.transcripts.get("deno-qga")!);
  const reference = piecesText(ref);
  const candidate = piecesText(cand);
  const base = { name: entry.name, reference, candidate };
  const refProblems = referenceProblems(entry, reference);
  if (refProblems.length > 0) {
    return { ...base, verdict: "BAD REFERENCE", ok: false, problems: refProblems };
  }
  if (entry.compare === "guest-info") {
    const problems = compareGuestInfo(reference, candidate);
    return {
      ...base,
      verdict: problems.length ? "DIFFERENT" : "same (structure)",
      ok: !problems.length,
      problems,
    };
  }
  const different = (problems: string[]) => ({
    ...base,
    verdict: "DIFFERENT",
    ok: false,
    problems,
  });
  if (!ref.ok) return different([`qemu-ga run failed: ${ref.error}`]);
  if (!cand.ok) return different([`deno-qga run failed: ${cand.error}`]);
  if (ref.segments.length !== cand.segments.length) {
    return different([
      `${cand.segments.length} recorded segments, qemu-ga ${ref.segments.length}`,
    ]);
  }
  const problems: string[] = [];
  const excused: string[] = [];
  let in102 = false;
  for (const [s, r] of ref.segments.entries()) {
    const c = cand.segments[s]!;
    const where = (i: number) => `segment ${s} (${r.label}) reply ${i}`;
    if (r.replies.length !== c.replies.length) {
      problems.push(
        `segment ${s} (${r.label}): ${c.replies.length} replies, qemu-ga ${r.replies.length}`,
      );
      continue;
    }
    for (const [i, q] of r.replies.entries()) {
      const d = c.replies[i]!;
      if (d === q) continue;
      if (sameIn102(q, d)) {
        in102 = true;
        continue;
      }
      const known = entry.known?.find((k) => k.segment === s && k.reply === i);
      if (!known) {
        problems.push(`${where(i)} differs\n    qemu-ga:  ${q}\n    deno-qga: ${d}`);
      } else if (d !== known.deno) {
        problems.push(
          `${where(i)} is a known difference, but deno-qga's reply is not the documented one` +
            `\n    documented: ${known.deno}\n    deno-qga:   ${d}`,
        );
      } else {
        excused.push(`${where(i)}: ${known.reason}`);
      }
    }
  }
  for (const k of entry.known ?? []) {
    if (ref.segments[k.segment]?.replies[k.reply] === undefined) {
      problems.push(`known difference at segment ${k.segment} reply ${k.reply}: no such reply`);
    }
  }
  if (problems.length > 0) return different(problems);
  if (excused.length > 0) return { ...base, verdict: "KNOWN", ok: true, problems: excused };
  return { ...base, verdict: in102 ? "same (10.2 texts)" : "same", ok: true, problems: [] };
}

/** Both texts around their first difference (whole texts when short). */
export function showDifference(a: string, b: string, context = 300): string {
  let at = 0;
  while (at < a.length && at < b.length && a[at] === b[at]) at++;
  const cut = (s: string) => {
    if (s.length <= 2 * context + 200 || s.startsWith("<error:")) return s;
    const from = Math.max(0, at - context);
    return `${from > 0 ? "…" : ""}${s.slice(from, at + context)}${
      at + context < s.length ? "…" : ""
    }`;
  };
  const indent = (s: string) => s.replaceAll("\n", "\n            ");
  return `first difference at char ${at}\n  qemu-ga:  ${indent(cut(a))}\n  deno-qga: ${
    indent(cut(b))
  }`;
}
