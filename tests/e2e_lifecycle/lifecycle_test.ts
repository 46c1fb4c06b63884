/**
 * The agent's life in a real guest, end to end: one boot (tests/e2e_lifecycle/guest.ts) checks
 * what the main e2e suite does not: signals and kill -9 on a frozen agent, the card's command line
 * over virtio-serial and isa-serial with `ps`, W10 port reopen and 20 reconnects, and the
 * sysfs/proc fixture capture. Prints the check table; each check is a step of the test (and
 * counts as a test in scripts/test.sh's summary); the test fails if any check fails or
 * fewer than 40 ran.
 *
 * ```sh
 * env -u RUST_BACKTRACE ./node_modules/.bin/deno test --no-prompt --allow-read --allow-write \
 *   --allow-run --allow-net --allow-env --allow-sys tests/e2e_lifecycle/
 * ```
 *
 * With `QGA_E2E_WRITE_FIXTURE=1` the guest also runs tests/fixtures/capture_sysfs.sh, the
 * capture is checked (vda, ID_SERIAL=QGATEST0 in the udev database, qemu-ga's replies) and
 * copied to tests/fixtures/sysfs/e2e-guest/ (replacing it); that run takes up to ~4 min.
 *
 * @module
 */

import assert from "node:assert/strict";
import { formatChecks, runExtra } from "./scenarios.ts";

Deno.test("frozen-state signals, the card's command line, W10 and the fixture capture in one real guest", async (t) => {
  const repo = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
  const write = Deno.env.get("QGA_E2E_WRITE_FIXTURE") === "1";
  const result = await runExtra({
    echo: (line) => console.log(line),
    ...(write ? { fixtureOut: `${repo}/tests/fixtures/sysfs/e2e-guest` } : {}),
  });
  const { report } = result;
  console.log("\nguest `ps -eo pid,args` and port holders are in the log above");
  console.log(formatChecks(report));
  console.log(
    `boot to ready ${(result.bootMs / 1000).toFixed(1)} s, whole run ${
      (result.totalMs / 1000).toFixed(1)
    } s`,
  );
  if (report.failures.length > 0) {
    for (const [k, v] of Object.entries(result.logs)) console.log(`--- ${k} ---\n${v}`);
  }
  for (const [i, c] of report.checks.entries()) {
    await t.step(`#${i + 1} ${c.group}: ${c.name}`, () => {
      assert.ok(c.ok, c.detail);
    });
  }
  assert.ok(report.checks.length >= 40, `only ${report.checks.length} checks ran`);
  assert.equal(
    report.failures.length,
    0,
    `failing checks: ${report.failures.map((c) => `${c.group}: ${c.name}`).join("; ")}`,
  );
});
