/**
 * Framing under arbitrary splits: each sequence is sent to qemu-ga once, unsplit (the
 * reference), and to deno-qga unsplit, split in two at every byte boundary, and one byte
 * per write. Every deno-qga transcript must equal qemu-ga's bytes. (qemu-ga is not
 * exercised at every split: its framing is the reference and the runs would be slow.)
 *
 * @module
 */

import assert from "node:assert/strict";
import { DANGEROUS_COMMANDS, requireQemuGa, startAgent } from "../helpers/agents.ts";
import {
  cat,
  escapeBytes,
  MARKER_BASE,
  raw,
  resync,
  runScript,
  type Step,
  transcriptText,
} from "./harness.ts";

/** Sequences chosen to cut through every token kind, multi-byte UTF-8 and recovery. */
const SEQUENCES: readonly { name: string; bytes: Uint8Array }[] = [
  { name: "sync request", bytes: cat('{"execute":"guest-sync","arguments":{"id":12345}}') },
  {
    name: "single quotes and escapes",
    bytes: cat(`{'execute':'guest-ping','id':"\\u00e9\\ud83d\\ude00\\n\\'"}`),
  },
  { name: "raw multi-byte UTF-8 in an id", bytes: cat('{"execute":"guest-ping","id":"é€😀"}') },
  { name: "number id with exponent", bytes: cat('{"execute":"guest-ping","id":-1.0e-3}') },
  {
    name: "0xFF reset then sync-delimited",
    bytes: cat(raw("\xff"), '{"execute":"guest-sync-delimited","arguments":{"id":7}}'),
  },
  {
    name: "garbage then recovery",
    bytes: cat('{"execute":guest-ping}{"execute":"guest-ping","id":1}'),
  },
  { name: "scalars and a bad pair", bytes: cat('[1,2] 42 true {"a" 1}{"execute":"guest-ping"}}') },
  { name: "leading zero number", bytes: cat('{"execute":"guest-sync","arguments":{"id":01}}') },
  {
    name: "invalid UTF-8 in a string",
    bytes: cat('{"execute":"guest-ping","id":"a', raw("\xc3\x28"), '"}'),
  },
  { name: "0xFF after a number", bytes: cat('{"id":5', raw("\xff"), '{"execute":"guest-ping"}') },
];

const PAUSE_MS = 2;

function splitAt(bytes: Uint8Array, k: number): Step[] {
  return [
    { op: "write", data: bytes.slice(0, k) },
    { op: "pause", ms: PAUSE_MS },
    { op: "write", data: bytes.slice(k) },
    { op: "mark" },
  ];
}

Deno.test("deno-qga replies to a sequence split at any byte as qemu-ga does unsplit", async (t) => {
  await requireQemuGa();
  await using qemu = await startAgent("qemu-ga", { block: DANGEROUS_COMMANDS });
  await using deno = await startAgent("deno-qga", { block: DANGEROUS_COMMANDS });
  let resyncId = 9_800_000;
  for (const seq of SEQUENCES) {
    await t.step(seq.name, async () => {
      const whole: Step[] = [{ op: "write", data: seq.bytes }, { op: "mark" }];
      const reference = transcriptText(await runScript(qemu, whole));
      assert.ok(await resync(qemu, resyncId++), "qemu-ga resync");
      assert.ok(reference.includes(`{"return": ${MARKER_BASE}}`), `qemu-ga answered ${reference}`);

      const mismatches: string[] = [];
      const check = async (label: string, steps: Step[]) => {
        const got = transcriptText(await runScript(deno, steps));
        if (!(await resync(deno, resyncId++))) mismatches.push(`${label}: no reply to the resync`);
        if (got !== reference) mismatches.push(`${label}:\n  deno-qga: ${got}`);
      };
      await check("unsplit", whole);
      for (let k = 1; k < seq.bytes.length; k++) {
        await check(`split at ${k}`, splitAt(seq.bytes, k));
      }
      await check("one byte per write", [
        { op: "bytewise", data: seq.bytes, pauseMs: PAUSE_MS },
        { op: "mark" },
      ]);
      assert.deepEqual(
        mismatches,
        [],
        `input ${escapeBytes(seq.bytes)}\n  qemu-ga:  ${reference}\n${mismatches.join("\n")}`,
      );
    });
  }
});
