/**
 * Differential suite: every corpus sequence is played against qemu-ga (the reference,
 * /usr/sbin/qemu-ga) and deno-qga in the same run, and the reply bytes must match. Each
 * sequence is its own test; the corpus is played once (on the first test that needs it),
 * and every test then checks its own sequence's verdict.
 *
 * Run: ./node_modules/.bin/deno test --no-prompt --allow-all tests/differential/
 * Set QGADIFF_FILTER=<substring> to play (and register) only the entries whose name
 * contains it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { requireQemuGa } from "../helpers/agents.ts";
import { compareOutcome, runCorpus, showDifference, type Verdict } from "./compare.ts";
import { CORPUS, type Entry, MASKS } from "./corpus.ts";
import { escapeBytes, raw, transcriptText } from "./harness.ts";

Deno.test("the corpus has at least 130 distinct, uniquely named sequences", () => {
  const names = new Set(CORPUS.map((e) => e.name));
  assert.equal(names.size, CORPUS.length, "entry names must be unique");
  const shapes = new Set(
    CORPUS.map((e) => JSON.stringify({ steps: e.steps.map(describeStep), start: e.start ?? null })),
  );
  assert.ok(shapes.size >= 130, `only ${shapes.size} distinct sequences`);
});

Deno.test("every mask an entry names exists and states a reason", () => {
  for (const e of CORPUS) {
    for (const m of e.masks ?? []) {
      assert.ok(MASKS[m], `${e.name}: unknown mask ${m}`);
      assert.ok(MASKS[m]!.reason.length > 10, `mask ${m} needs a reason`);
    }
  }
});

Deno.test("every known difference names one recorded reply, deno-qga's text and a reason", () => {
  for (const e of CORPUS) {
    const recorded = e.steps.filter((s) => ["mark", "idle", "files"].includes(s.op)).length;
    for (const k of e.known ?? []) {
      assert.ok(k.segment >= 0 && k.segment < recorded, `${e.name}: segment ${k.segment}`);
      assert.ok(k.reply >= 0, `${e.name}: reply ${k.reply}`);
      assert.ok(k.deno.length > 0, `${e.name}: deno-qga's reply must be stated`);
      assert.ok(k.reason.length > 10, `${e.name}: a known difference needs a reason`);
    }
  }
});

Deno.test("transcripts escape every non-printable byte", () => {
  assert.equal(escapeBytes(raw('\xff{"a": "\\\\"}\n\x00')), '\\xff{"a": "\\\\\\\\"}\\n\\x00');
  assert.equal(
    transcriptText([{ label: "c0 mark", bytes: raw("\x7f") }]),
    "c0 mark: \\x7f",
  );
});

/** A verdict for one entry from the reply bytes each agent gave (one mark segment each). */
function judge(entry: Partial<Entry>, qemu: string[], deno: string[]): Verdict {
  const e: Entry = { name: "t", steps: [], instance: "shared", ...entry };
  const segs = (texts: string[]) => ({
    ok: true as const,
    segments: texts.map((t) => ({ label: "c0 mark", bytes: raw(t) })),
  });
  return compareOutcome({
    entry: e,
    transcripts: new Map([["qemu-ga", segs(qemu)], ["deno-qga", segs(deno)]]),
  });
}

const FROZEN = `{"error": {"class": "CommandNotFound", "desc": "Command guest-get-time has been ` +
  `disabled: the agent is in frozen state"}}\n`;
const BLOCKED = `{"error": {"class": "CommandNotFound", "desc": "Command guest-get-time has been ` +
  `disabled"}}\n`;
const NOT_ALLOWED = `{"error": {"class": "CommandNotFound", "desc": "Command guest-get-time has ` +
  `been disabled: the command is not allowed"}}\n`;
const PING = `{"return": {}}\n`;

Deno.test("7.2 texts are accepted in their 10.2 form, but two 7.2 texts never become equal", () => {
  assert.equal(judge({}, [FROZEN + PING], [FROZEN + PING]).verdict, "same");
  assert.equal(judge({}, [FROZEN + PING], [NOT_ALLOWED + PING]).verdict, "same (10.2 texts)");
  assert.equal(judge({}, [BLOCKED], [NOT_ALLOWED]).verdict, "same (10.2 texts)");
  // The frozen reason dropped, or given where qemu-ga gives none: both differ.
  assert.equal(judge({}, [FROZEN + PING], [BLOCKED + PING]).verdict, "DIFFERENT");
  assert.equal(judge({}, [BLOCKED], [FROZEN]).verdict, "DIFFERENT");
  // A 10.2-only member is dropped from deno-qga's reply only.
  const fs7 = `{"return": [{"name": "vda1", "total-bytes": 9}]}\n`;
  const fs10 = `{"return": [{"name": "vda1", "total-bytes-privileged": 1, "total-bytes": 9}]}\n`;
  assert.equal(judge({}, [fs7], [fs10]).verdict, "same (10.2 texts)");
  assert.equal(judge({}, [fs10], [fs7]).verdict, "DIFFERENT");
});

Deno.test("a known difference excuses its one reply, answered as documented, and nothing else", () => {
  const known = [{ segment: 1, reply: 0, deno: "B\\n", reason: "documented as B here" }];
  assert.equal(judge({ known }, ["x\n", "A\nz\n"], ["x\n", "B\nz\n"]).verdict, "KNOWN");
  assert.equal(judge({ known }, ["x\n", "A\nz\n"], ["x\n", "A\nz\n"]).verdict, "same");
  // Another reply of the same segment, or of another segment, still has to match.
  assert.equal(judge({ known }, ["x\n", "A\nz\n"], ["x\n", "B\ny\n"]).verdict, "DIFFERENT");
  assert.equal(judge({ known }, ["x\n", "A\nz\n"], ["y\n", "B\nz\n"]).verdict, "DIFFERENT");
  // The excused reply must be the documented one.
  assert.equal(judge({ known }, ["x\n", "A\nz\n"], ["x\n", "C\nz\n"]).verdict, "DIFFERENT");
  // A reply more or less is a difference wherever it is.
  assert.equal(judge({ known }, ["x\n", "A\nz\n"], ["x\n", "B\n"]).verdict, "DIFFERENT");
});

const FILTER = Deno.env.get("QGADIFF_FILTER") ?? "";
const ENTRIES: readonly Entry[] = CORPUS.filter((e) => e.name.includes(FILTER));

interface CorpusRun {
  verdicts: ReadonlyMap<string, Verdict>;
  stopErrors: readonly string[];
}

let played: Promise<CorpusRun> | undefined;

/** Plays the (filtered) corpus once against both agents; later calls get the same run. */
function corpusRun(): Promise<CorpusRun> {
  played ??= (async () => {
    await requireQemuGa();
    const started = Date.now();
    const { outcomes, stopErrors } = await runCorpus(["qemu-ga", "deno-qga"], ENTRIES, {
      freshConcurrency: 3,
    });
    const verdicts = outcomes.map(compareOutcome);
    const width = Math.max(...verdicts.map((v) => v.verdict.length));
    console.log(verdicts.map((v) => `${v.verdict.padEnd(width)}  ${v.name}`).join("\n"));
    console.log(
      `${verdicts.filter((v) => v.ok).length} of ${verdicts.length} sequences match ` +
        `(${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
    return { verdicts: new Map(verdicts.map((v) => [v.name, v])), stopErrors };
  })();
  return played;
}

Deno.test("QGADIFF_FILTER leaves at least one corpus sequence", () => {
  assert.ok(ENTRIES.length > 0, `no entry matches QGADIFF_FILTER=${FILTER}`);
});

for (const entry of ENTRIES) {
  Deno.test(`deno-qga answers like qemu-ga: ${entry.name}`, async () => {
    const v = (await corpusRun()).verdicts.get(entry.name);
    assert.ok(v, `no verdict for ${entry.name}`);
    if (!v.ok) {
      assert.fail(
        `${v.verdict}: ${v.problems.join("\n  ")}\n${showDifference(v.reference, v.candidate)}`,
      );
    }
  });
}

Deno.test("the shared agents exit 0 on SIGTERM after the corpus", async () => {
  const { stopErrors } = await corpusRun();
  assert.deepEqual(stopErrors, [], "a shared agent did not exit 0 on SIGTERM");
});

function describeStep(s: unknown): unknown {
  if (typeof s !== "object" || s === null) return s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    out[k] = v instanceof Uint8Array ? escapeBytes(v) : typeof v === "function" ? v.toString() : v;
  }
  return out;
}
