import assert from "node:assert/strict";
import { runFuzz } from "./fuzz_run.ts";

Deno.test({
  name: "deno-qga survives 10,000 fuzz cases and agrees with qemu-ga wherever both answer",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const r = await runFuzz({ seed: 20261127, count: 10_000, compare: true });
    console.log(
      `fuzz: ${r.cases} cases in ${r.seconds.toFixed(1)} s; by kind ${JSON.stringify(r.byKind)}; ` +
        `RSS ${r.rssBeforeKb} -> ${r.rssAfterKb} kB; qemu-ga failures ${r.qemuFailures.length}`,
    );
    assert.equal(r.cases, 10_000);
    assert.deepEqual(
      r.mismatches.map((m) => `#${m.index} ${m.kind}\n  deno: ${m.deno}\n  qemu: ${m.qemu}`),
      [],
    );
    // Memory stays bounded: the whole run may not grow the agent by more than 64 MB.
    assert.ok(
      r.rssAfterKb - r.rssBeforeKb < 64 * 1024,
      `RSS grew ${r.rssBeforeKb} -> ${r.rssAfterKb} kB`,
    );
  },
});
