/**
 * The end-to-end test: one real Linux guest under QEMU/TCG runs the reference qemu-ga and
 * deno-qga side by side; every libvirt, Proxmox VE and KubeVirt conversation must pass on
 * deno-qga, and on qemu-ga except the documented 7.2 limitations.
 *
 * ```sh
 * ./node_modules/.bin/deno test --no-prompt --allow-read --allow-write --allow-run \
 *   --allow-net --allow-env --allow-sys tests/e2e/
 * ```
 *
 * @module
 */

import assert from "node:assert/strict";
import { formatLogs, formatReport, runSuite } from "./suite.ts";

Deno.test("every client conversation passes on qemu-ga and deno-qga in one real guest", async () => {
  const result = await runSuite({ log: (line) => console.log(line) });
  console.log(formatReport(result));
  if (result.failures.length > 0) console.log(formatLogs(result));
  assert.equal(
    result.failures.length,
    0,
    `${result.failures.length} failing cells (table and details above)`,
  );
  assert.ok(result.totalMs < 5 * 60_000, `the run took ${result.totalMs} ms (limit 5 min)`);
});
