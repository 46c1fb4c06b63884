import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { DATE_PATH, guestGetTime, guestSetTime, HWCLOCK_PATH } from "../../commands/time.ts";
import { QgaError } from "../../protocol/errors.ts";
import { FixtureSystem } from "../../system/fixture.ts";
import { fakeContext } from "../helpers/fake_context.ts";
import type { RunResult } from "../../commands/types.ts";

const ROOT = fileURLToPath(new URL("../fixtures/identity/", import.meta.url));
const sys = new FixtureSystem(ROOT);
const ok = (): RunResult => ({ code: 0, signal: null, output: new Uint8Array() });
const failed = (text: string, code = 1): RunResult => ({
  code,
  signal: null,
  output: new TextEncoder().encode(text),
});
const qgaError = (desc: string) => (e: unknown) => e instanceof QgaError && e.message === desc;

Deno.test("guest-get-time is wall-clock nanoseconds with microsecond resolution", async () => {
  const before = BigInt(Date.now()) * 1_000_000n;
  const t = await guestGetTime.handler({}, fakeContext());
  const after = BigInt(Date.now() + 1) * 1_000_000n;
  assert.equal(typeof t, "bigint");
  assert.equal(t % 1000n, 0n);
  assert.ok(t >= before - 1_000_000n && t <= after, `${before} <= ${t} <= ${after}`);
});

Deno.test("guest-set-time with a time sets the clock via date, then the RTC with hwclock -w", async () => {
  const ctx = fakeContext({ sys, run: ok });
  assert.equal(await guestSetTime.handler({ time: 1700000000123456789n }, ctx), undefined);
  assert.deepEqual(ctx.runs, [
    { argv: [DATE_PATH, "-u", "-s", "@1700000000.123456"] },
    { argv: [HWCLOCK_PATH, "-w"] },
  ]);
});

Deno.test("guest-set-time pads the microseconds", async () => {
  const ctx = fakeContext({ sys, run: ok });
  await guestSetTime.handler({ time: 1700000000000001000n }, ctx);
  assert.deepEqual(ctx.runs[0]!.argv, [DATE_PATH, "-u", "-s", "@1700000000.000001"]);
});

Deno.test("guest-set-time without a time sets the clock from the RTC", async () => {
  const ctx = fakeContext({ sys, run: ok });
  await guestSetTime.handler({}, ctx);
  assert.deepEqual(ctx.runs, [{ argv: [HWCLOCK_PATH, "-s"] }]);
});

Deno.test("guest-set-time refuses years outside 1970..2069 without running anything", async () => {
  for (const time of [-1_000_000_000n, 3155760000n * 1_000_000_000n, 9223372036854775807n]) {
    const ctx = fakeContext({ sys, run: ok });
    await assert.rejects(
      async () => await guestSetTime.handler({ time }, ctx),
      qgaError("Invalid time: Success"),
    );
    assert.deepEqual(ctx.runs, []);
  }
});

Deno.test("guest-set-time reports date's errno text as qemu-ga's settimeofday failure", async () => {
  const ctx = fakeContext({
    sys,
    run: () => failed("date: cannot set date: Operation not permitted\n"),
  });
  await assert.rejects(
    async () => await guestSetTime.handler({ time: 1700000000000000000n }, ctx),
    qgaError("Failed to set time to guest: Operation not permitted"),
  );
  assert.equal(ctx.runs.length, 1);
});

Deno.test("guest-set-time reports a failing hwclock with ga_run_command's text", async () => {
  const ctx = fakeContext({
    sys,
    run: (argv) =>
      argv[0] === HWCLOCK_PATH ? failed("hwclock: Cannot access the Hardware Clock\n") : ok(),
  });
  await assert.rejects(
    async () => await guestSetTime.handler({}, ctx),
    qgaError(
      "child process has failed to set hardware clock to system time: hwclock: Cannot access the Hardware Clock\n",
    ),
  );
});
