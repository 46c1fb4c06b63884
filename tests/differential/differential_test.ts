/**
 * Differential suite: every corpus sequence is played against qemu-ga (the reference,
 * /usr/sbin/qemu-ga) and deno-qga in the same run, and the reply bytes must match.
 *
 * Run: ./node_modules/.bin/deno test --no-prompt --allow-read --allow-write --allow-run
 *      --allow-net --allow-env tests/differential/
 * Set QGADIFF_FILTER=<substring> to run only the entries whose name contains it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { requireQemuGa } from "../helpers/agents.ts";
import { compareOutcome, runCorpus, showDifference } from "./compare.ts";
import { CORPUS, MASKS } from "./corpus.ts";
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

Deno.test("transcripts escape every non-printable byte", () => {
  assert.equal(escapeBytes(raw('\xff{"a": "\\\\"}\n\x00')), '\\xff{"a": "\\\\\\\\"}\\n\\x00');
  assert.equal(
    transcriptText([{ label: "c0 mark", bytes: raw("\x7f") }]),
    "c0 mark: \\x7f",
  );
});

Deno.test("deno-qga answers every corpus sequence with the same bytes as qemu-ga", async () => {
  await requireQemuGa();
  const filter = Deno.env.get("QGADIFF_FILTER") ?? "";
  const entries = CORPUS.filter((e) => e.name.includes(filter));
  assert.ok(entries.length > 0, `no entry matches QGADIFF_FILTER=${filter}`);
  const started = Date.now();
  const { outcomes, stopErrors } = await runCorpus(["qemu-ga", "deno-qga"], entries, {
    freshConcurrency: 3,
  });
  const verdicts = outcomes.map(compareOutcome);
  const width = Math.max(...verdicts.map((v) => v.verdict.length));
  console.log(verdicts.map((v) => `${v.verdict.padEnd(width)}  ${v.name}`).join("\n"));
  const bad = verdicts.filter((v) => !v.ok);
  console.log(
    `${verdicts.length - bad.length} of ${verdicts.length} sequences match ` +
      `(${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  if (bad.length > 0 || stopErrors.length > 0) {
    assert.fail(
      `${bad.length} of ${verdicts.length} sequences differ from qemu-ga:\n\n` +
        bad.map((v) =>
          `--- ${v.name}: ${v.problems.join("; ")}\n${showDifference(v.reference, v.candidate)}`
        ).join("\n\n") +
        stopErrors.map((e) => `\n\n--- a shared agent did not exit 0 on SIGTERM: ${e}`).join(""),
    );
  }
});

function describeStep(s: unknown): unknown {
  if (typeof s !== "object" || s === null) return s;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) {
    out[k] = v instanceof Uint8Array ? escapeBytes(v) : typeof v === "function" ? v.toString() : v;
  }
  return out;
}
