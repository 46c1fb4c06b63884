import assert from "node:assert/strict";
import { guestShutdown } from "../../commands/power.ts";
import type { RunResult } from "../../commands/types.ts";
import { QgaError } from "../../protocol/errors.ts";
import { SysError } from "../../system/mod.ts";
import { fakeContext } from "../helpers/fake_context.ts";

const enc = new TextEncoder();
const SUCCESS: RunResult = { code: 0, signal: null, output: new Uint8Array() };
const FALLBACK_TAIL = ["+0", "hypervisor initiated shutdown"];

/** A machine where the given programs exist; running them answers `answer`. */
function machine(present: string[], answer: (argv: string[]) => RunResult = () => SUCCESS) {
  return fakeContext({
    run: (argv) => {
      if (!present.includes(argv[0]!)) throw new SysError("ENOENT", "No such file or directory");
      return answer(argv);
    },
  });
}

const ALL = ["/sbin/poweroff", "/sbin/halt", "/sbin/reboot", "/sbin/shutdown"];

Deno.test("guest-shutdown sends no reply on success and powers down by default", async () => {
  assert.equal(guestShutdown.successResponse, false);
  const ctx = machine(ALL);
  assert.equal(await guestShutdown.handler({}, ctx), undefined);
  assert.deepEqual(ctx.runs.map((r) => r.argv), [["/sbin/poweroff"]]);
});

Deno.test("each mode runs its own program with no arguments when it is executable", async () => {
  for (
    const [mode, program] of [
      ["powerdown", "/sbin/poweroff"],
      ["halt", "/sbin/halt"],
      ["reboot", "/sbin/reboot"],
    ] as const
  ) {
    const ctx = machine(ALL);
    await guestShutdown.handler({ mode }, ctx);
    assert.deepEqual(ctx.runs.map((r) => r.argv), [[program]], mode);
  }
});

Deno.test("without the dedicated program each mode falls back to shutdown -h with its flag", async () => {
  for (
    const [mode, flag] of [
      [undefined, "-P"],
      ["powerdown", "-P"],
      ["halt", "-H"],
      ["reboot", "-r"],
    ] as const
  ) {
    const ctx = machine(["/sbin/shutdown"]);
    await guestShutdown.handler(mode ? { mode } : {}, ctx);
    const last = ctx.runs.at(-1)!.argv;
    assert.deepEqual(last, ["/sbin/shutdown", "-h", flag, ...FALLBACK_TAIL], String(mode));
    assert.equal(ctx.runs.length, 2);
  }
});

Deno.test("a program that is present but not executable also falls back to shutdown", async () => {
  const ctx = fakeContext({
    run: (argv) => {
      if (argv[0] === "/sbin/reboot") throw new SysError("EACCES", "Permission denied");
      return SUCCESS;
    },
  });
  await guestShutdown.handler({ mode: "reboot" }, ctx);
  assert.deepEqual(ctx.runs.at(-1)!.argv, ["/sbin/shutdown", "-h", "-r", ...FALLBACK_TAIL]);
});

Deno.test("an invalid mode is refused with qemu-ga's text and runs nothing", async () => {
  for (const mode of ["poweroff", "", "HALT", "toString", "__proto__"]) {
    const ctx = machine(ALL);
    await assert.rejects(
      async () => await guestShutdown.handler({ mode }, ctx),
      new QgaError("mode is invalid (valid values are: halt|powerdown|reboot"),
    );
    assert.deepEqual(ctx.runs, []);
  }
});

Deno.test("a failing program reports its output, or its exit status when it printed nothing", async () => {
  const noisy = machine(ALL, () => ({
    code: 1,
    signal: null,
    output: enc.encode("Failed to connect to bus\n"),
  }));
  await assert.rejects(
    async () => await guestShutdown.handler({}, noisy),
    new QgaError("child process has failed to shutdown: Failed to connect to bus\n"),
  );
  const silent = machine(ALL, () => ({ code: 3, signal: null, output: new Uint8Array() }));
  await assert.rejects(
    async () => await guestShutdown.handler({ mode: "halt" }, silent),
    new QgaError("child process has failed to shutdown: exit status 3"),
  );
  const killed = machine(ALL, () => ({ code: null, signal: "SIGTERM", output: enc.encode("bye") }));
  await assert.rejects(
    async () => await guestShutdown.handler({}, killed),
    new QgaError("child process has terminated abnormally: bye"),
  );
});

Deno.test("a failing fallback reports the shutdown error, and a missing shutdown the exec failure", async () => {
  const failing = machine(["/sbin/shutdown"], () => ({
    code: 1,
    signal: null,
    output: enc.encode("shutdown: not permitted\n"),
  }));
  await assert.rejects(
    async () => await guestShutdown.handler({}, failing),
    new QgaError("child process has failed to shutdown: shutdown: not permitted\n"),
  );
  const nothing = machine([]);
  await assert.rejects(
    async () => await guestShutdown.handler({ mode: "reboot" }, nothing),
    new QgaError(
      "child process has failed to shutdown: failed to exec '/sbin/shutdown': No such file or directory\n",
    ),
  );
});

Deno.test("a sandbox refusal to run the program is an error, not a reason to fall back", async () => {
  const ctx = fakeContext({
    run: () => {
      throw new SysError("EPERM", "Operation not permitted");
    },
  });
  await assert.rejects(
    async () => await guestShutdown.handler({}, ctx),
    new QgaError(
      "child process has failed to shutdown: failed to exec '/sbin/poweroff': Operation not permitted\n",
    ),
  );
  assert.equal(ctx.runs.length, 1);
});

Deno.test("guest-shutdown runs its programs through the helper and asks the agent's sandbox for none", () => {
  const needs = guestShutdown.needs;
  assert.ok(typeof needs === "object");
  assert.equal(needs.run, undefined);
  assert.deepEqual(needs.helper, ["run"]);
});

Deno.test("the helper's templates are the four programs guest-shutdown may run", async () => {
  const ctx = fakeContext({ run: () => SUCCESS });
  for (const mode of ["powerdown", "halt", "reboot"] as const) {
    await ctx.sys.runProgram({ program: "power-program", mode });
    await ctx.sys.runProgram({ program: "shutdown", mode });
  }
  assert.deepEqual([...new Set(ctx.runs.map((r) => r.argv[0]))].sort(), [...ALL].sort());
});
