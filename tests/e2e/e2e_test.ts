/**
 * The end-to-end test: one real Linux guest under QEMU/TCG runs the reference qemu-ga and
 * deno-qga side by side; every libvirt, Proxmox VE and KubeVirt conversation must pass on
 * deno-qga, and on qemu-ga except the documented 7.2 limitations. Each conversation is its
 * own test; the guest boots once (on the first test that needs it) and runs them all.
 *
 * ```sh
 * ./node_modules/.bin/deno test --no-prompt --allow-all tests/e2e/
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { CONVERSATIONS } from "./clients.ts";
import { formatLogs, formatReport, rowFailures, runSuite, type SuiteResult } from "./suite.ts";

let suite: Promise<SuiteResult> | undefined;

/** Boots the guest and runs every conversation once; later calls get the same result. */
function suiteRun(): Promise<SuiteResult> {
  suite ??= (async () => {
    const result = await runSuite({ log: (line) => console.log(line) });
    console.log(formatReport(result));
    if (result.failures.length > 0) console.log(formatLogs(result));
    return result;
  })();
  return suite;
}

Deno.test("the e2e conversations have unique names", () => {
  const names = CONVERSATIONS.map((c) => c.name);
  assert.equal(new Set(names).size, names.length);
});

for (const spec of CONVERSATIONS) {
  Deno.test(`e2e conversation passes on qemu-ga and deno-qga: ${spec.name}`, async () => {
    const result = await suiteRun();
    const row = result.rows.find((r) => r.name === spec.name);
    assert.ok(row, `the conversation did not run (table above)`);
    assert.deepEqual(rowFailures(row), [], "failing cells (table and details above)");
  });
}
