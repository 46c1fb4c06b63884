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
import { MARKER_BASE, resync, runScript, type Segment, transcriptText } from "./harness.ts";

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

/** Applies the entry's masks to a transcript. */
export function masked(entry: Entry, t: Transcript): string {
  if (!t.ok) return `<error: ${t.error}>`;
  let text = transcriptText(t.segments);
  for (const name of entry.masks ?? []) {
    const m = MASKS[name];
    if (!m) throw new Error(`entry ${entry.name}: unknown mask ${name}`);
    text = text.replace(m.re, m.with);
  }
  return text;
}

function toV102(text: string): string {
  for (const e of VERSION_EQUIVALENCES) text = text.replace(e.re, e.with);
  return text;
}

/** Result of comparing one entry. */
export interface Verdict {
  readonly name: string;
  /** "same", "same (10.2 texts)", "same (structure)" or "DIFFERENT". */
  readonly verdict: string;
  readonly ok: boolean;
  /** Human-readable problems (empty when ok). */
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

/** Compares deno-qga's transcript of an entry with qemu-ga's. */
export function compareOutcome(outcome: Outcome): Verdict {
  const { entry } = outcome;
  const reference = masked(entry, outcome.transcripts.get("qemu-ga")!);
  const candidate = masked(entry, outcome.transcripts.get("deno-qga")!);
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
  if (reference === candidate) return { ...base, verdict: "same", ok: true, problems: [] };
  if (toV102(reference) === toV102(candidate)) {
    return { ...base, verdict: "same (10.2 texts)", ok: true, problems: [] };
  }
  if (entry.knownDifference) {
    return { ...base, verdict: "KNOWN", ok: true, problems: [entry.knownDifference] };
  }
  return { ...base, verdict: "DIFFERENT", ok: false, problems: ["bytes differ"] };
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
