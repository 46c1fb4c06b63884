import assert from "node:assert/strict";
import { agrees, fuzzProblems, runFuzz } from "./fuzz_run.ts";

const CASES = 10_000;

Deno.test({
  name: "deno-qga survives 10,000 fuzz cases and agrees with qemu-ga on every one compared",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const r = await runFuzz({ seed: 20261127, count: CASES, compare: true });
    console.log(
      `fuzz: ${r.cases} cases in ${r.seconds.toFixed(1)} s, ${r.compared} compared with ` +
        `qemu-ga; by kind ${JSON.stringify(r.byKind)}; RSS ${r.rssBeforeKb} -> ` +
        `${r.rssAfterKb} kB; qemu-ga failures ${r.qemuFailures.length}`,
    );
    // Every case answered by both and compared, no difference, no qemu-ga failure, and the
    // agent's memory bounded (+64 MiB over the second half of the run).
    assert.deepEqual(fuzzProblems(r, { count: CASES, compare: true }), []);
  },
});

Deno.test("a fuzz run that compared fewer cases than asked, or lost qemu-ga, fails", () => {
  const good = {
    cases: 10,
    compared: 10,
    seconds: 1,
    byKind: {},
    mismatches: [],
    qemuFailures: [],
    rssBeforeKb: 1000,
    rssAfterKb: 1100,
  };
  assert.deepEqual(fuzzProblems(good, { count: 10, compare: true }), []);
  assert.deepEqual(fuzzProblems({ ...good, compared: 0 }, { count: 10, compare: false }), []);
  assert.deepEqual(fuzzProblems({ ...good, compared: 7 }, { count: 10, compare: true }), [
    "only 7 of 10 cases were compared with qemu-ga",
  ]);
  assert.deepEqual(
    fuzzProblems({
      ...good,
      compared: 9,
      qemuFailures: [{ index: 3, kind: "mutated", error: "timed out" }],
    }, { count: 10, compare: true }),
    [
      "only 9 of 10 cases were compared with qemu-ga",
      "qemu-ga failed case #3 (mutated): timed out",
    ],
  );
  assert.deepEqual(
    fuzzProblems({ ...good, rssBeforeKb: 0, rssAfterKb: 0 }, {
      count: 10,
      compare: true,
    }),
    ["no RSS reading of deno-qga (0 -> 0 kB)"],
  );
  assert.deepEqual(fuzzProblems({ ...good, cases: 4, compared: 4 }, { count: 10, compare: true }), [
    "only 4 of 10 cases ran",
    "only 4 of 10 cases were compared with qemu-ga",
  ]);
});

Deno.test("a documented difference excuses its own reply line only", () => {
  const info7 = `{"return": {"version": "7.2.22", "supported_commands": []}}`;
  const info10 = `{"return": {"version": "10.2.2", "supported_commands": []}}`;
  const ping = `{"return": {}}`;
  const err = `{"error": {"class": "GenericError", "desc": "JSON parse error, stray 'x'"}}`;
  assert.ok(agrees(`${info10}\n${ping}\n`, `${info7}\n${ping}\n`));
  assert.ok(!agrees(`${info10}\n${err}\n`, `${info7}\n${ping}\n`));
  assert.ok(!agrees(`${info10}\n`, `${info7}\n${ping}\n`));
  assert.ok(!agrees(`${err}\n`, `${ping}\n`));
});
