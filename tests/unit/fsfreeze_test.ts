import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import {
  FSFREEZE,
  guestFsfreezeFreeze,
  guestFsfreezeFreezeList,
  guestFsfreezeStatus,
  guestFsfreezeThaw,
  MAX_THAW_REPEAT,
  thawAll,
} from "../../commands/fsfreeze.ts";
import type { RunResult } from "../../commands/types.ts";
import { QgaError } from "../../protocol/errors.ts";
import { FixtureSystem } from "../../system/fixture.ts";
import { SysError } from "../../system/mod.ts";
import { type FakeContext, fakeContext } from "../helpers/fake_context.ts";

const VM = fromFileUrl(new URL("../fixtures/mounts/vm", import.meta.url));
const NO_PROC = fromFileUrl(new URL("../fixtures/mounts/no-proc", import.meta.url));
/** The fixture's mount list, in mount order (bind mount and major-0 mounts dropped). */
const MOUNTS = ["/", "/boot", "/data", "/mnt/my disk"];
const HOOK = "/etc/qemu/fsfreeze-hook";
const enc = new TextEncoder();

function ok(output = ""): RunResult {
  return { code: 0, signal: null, output: enc.encode(output) };
}

function fail(output: string, code = 1): RunResult {
  return { code, signal: null, output: enc.encode(output) };
}

/** What the fake kernel does for each mount point. */
interface FakeKernelOptions {
  /** errno text FIFREEZE fails with, by mount point. */
  freezeErrors?: Record<string, string>;
  /** Mount points that cannot be opened (ENOENT). */
  missing?: string[];
  /** Already frozen (by someone else) before the test. */
  frozen?: string[];
  /** The hook's answer, by argument. */
  hook?: (arg: string) => RunResult | Promise<RunResult>;
}

/** A fake util-linux fsfreeze over a fake kernel freeze state, plus a hook. */
function fakeSystem(o: FakeKernelOptions = {}, root = VM) {
  const frozen = new Set(o.frozen ?? []);
  const frozenAtRun: boolean[] = [];
  const ref: { ctx?: FakeContext } = {};
  const run = (argv: string[]): RunResult | Promise<RunResult> => {
    frozenAtRun.push(ref.ctx!.frozen);
    if (argv[0] === HOOK) {
      return o.hook ? o.hook(argv[1]!) : ok();
    }
    assert.equal(argv[0], FSFREEZE);
    assert.equal(argv.length, 3);
    const [, action, dir] = argv as [string, string, string];
    if (o.missing?.includes(dir)) {
      return fail(`fsfreeze: cannot open ${dir}: No such file or directory\n`);
    }
    if (action === "--freeze") {
      const err = o.freezeErrors?.[dir] ?? (frozen.has(dir) ? "Device or resource busy" : "");
      if (err) return fail(`fsfreeze: ${dir}: freeze failed: ${err}\n`);
      frozen.add(dir);
      return ok();
    }
    assert.equal(action, "--unfreeze");
    if (!frozen.delete(dir)) return fail(`fsfreeze: ${dir}: unfreeze failed: Invalid argument\n`);
    return ok();
  };
  const ctx = fakeContext({
    sys: new FixtureSystem(root),
    run,
    options: o.hook ? { fsfreezeHook: HOOK } : {},
  });
  ref.ctx = ctx;
  return { ctx, frozen, frozenAtRun };
}

function argvs(ctx: FakeContext): string[] {
  return ctx.runs.map((r) => r.argv.join(" "));
}

Deno.test("fsfreeze-status reports thawed, then frozen after a freeze, then thawed after a thaw", async () => {
  const { ctx } = fakeSystem();
  assert.equal(await guestFsfreezeStatus.handler({}, ctx), "thawed");
  assert.equal(await guestFsfreezeFreeze.handler({}, ctx), 4);
  assert.equal(await guestFsfreezeStatus.handler({}, ctx), "frozen");
  assert.equal(await guestFsfreezeThaw.handler({}, ctx), 4);
  assert.equal(await guestFsfreezeStatus.handler({}, ctx), "thawed");
});

Deno.test("freeze runs the hook first, enters the frozen state, then freezes in reverse mount order", async () => {
  const { ctx, frozen, frozenAtRun } = fakeSystem({ hook: () => ok() });
  assert.equal(await guestFsfreezeFreeze.handler({}, ctx), 4);
  assert.deepEqual(argvs(ctx), [
    `${HOOK} freeze`,
    `${FSFREEZE} --freeze /mnt/my disk`,
    `${FSFREEZE} --freeze /data`,
    `${FSFREEZE} --freeze /boot`,
    `${FSFREEZE} --freeze /`,
  ]);
  // The hook ran thawed; every fsfreeze ran with the agent already frozen.
  assert.deepEqual(frozenAtRun, [false, true, true, true, true]);
  assert.deepEqual([...frozen].sort(), [...MOUNTS].sort());
  assert.equal(ctx.frozen, true);
});

Deno.test("freeze skips filesystems that do not support freezing or are busy, without counting them", async () => {
  const { ctx, frozen } = fakeSystem({
    freezeErrors: { "/mnt/my disk": "Operation not supported", "/boot": "Device or resource busy" },
  });
  assert.equal(await guestFsfreezeFreeze.handler({}, ctx), 2);
  assert.deepEqual([...frozen].sort(), ["/", "/data"]);
  assert.equal(ctx.frozen, true);
});

Deno.test("freeze that freezes nothing leaves the frozen state at once and returns 0", async () => {
  const errors = Object.fromEntries(MOUNTS.map((m) => [m, "Operation not supported"]));
  const { ctx, frozenAtRun } = fakeSystem({ freezeErrors: errors });
  assert.equal(await guestFsfreezeFreeze.handler({}, ctx), 0);
  assert.equal(ctx.frozen, false);
  assert.deepEqual(frozenAtRun, [true, true, true, true]);
});

Deno.test("freeze-list freezes only exact matches, in reverse mount order, ignoring unknown paths", async () => {
  const { ctx, frozen } = fakeSystem();
  const n = await guestFsfreezeFreezeList.handler(
    { mountpoints: ["/", "/data", "/data/", "/nonexistent", "/srv/export"] },
    ctx,
  );
  assert.equal(n, 2);
  assert.deepEqual(argvs(ctx), [`${FSFREEZE} --freeze /data`, `${FSFREEZE} --freeze /`]);
  assert.deepEqual([...frozen].sort(), ["/", "/data"]);
});

Deno.test("freeze-list without mountpoints freezes everything and with an empty list nothing", async () => {
  const all = fakeSystem();
  assert.equal(await guestFsfreezeFreezeList.handler({}, all.ctx), 4);
  const none = fakeSystem();
  assert.equal(await guestFsfreezeFreezeList.handler({ mountpoints: [] }, none.ctx), 0);
  assert.equal(none.ctx.frozen, false);
  assert.deepEqual(none.ctx.runs, []);
});

Deno.test("a freeze failure reports the mount and errno, thaws everything and runs the thaw hook", async () => {
  const hookArgs: string[] = [];
  const { ctx, frozen } = fakeSystem({
    freezeErrors: { "/boot": "Input/output error" },
    hook: (arg) => {
      hookArgs.push(arg);
      return ok();
    },
  });
  await assert.rejects(
    async () => await guestFsfreezeFreeze.handler({}, ctx),
    new QgaError("failed to freeze /boot: Input/output error"),
  );
  assert.equal(frozen.size, 0, "the two filesystems frozen before the failure were thawed");
  assert.equal(ctx.frozen, false);
  assert.deepEqual(hookArgs, ["freeze", "thaw"]);
  assert.ok(argvs(ctx).includes(`${FSFREEZE} --unfreeze /data`));
});

Deno.test("a mount point that cannot be opened fails the freeze with qemu-ga's open error", async () => {
  const { ctx, frozen } = fakeSystem({ missing: ["/data"] });
  await assert.rejects(
    async () => await guestFsfreezeFreeze.handler({}, ctx),
    new QgaError("failed to open /data: No such file or directory"),
  );
  assert.equal(frozen.size, 0);
  assert.equal(ctx.frozen, false);
});

Deno.test("freeze fails when fsfreeze cannot be started and leaves nothing frozen", async () => {
  const ctx = fakeContext({
    sys: new FixtureSystem(VM),
    run: (argv) => {
      if (argv[1] === "--freeze") throw new SysError("ENOENT", "No such file or directory");
      return fail("fsfreeze: /: unfreeze failed: Invalid argument\n");
    },
  });
  await assert.rejects(
    async () => await guestFsfreezeFreeze.handler({}, ctx),
    new QgaError("failed to freeze /mnt/my disk: No such file or directory"),
  );
  assert.equal(ctx.frozen, false);
});

Deno.test("a failing freeze hook aborts the freeze before the mount list is read", async () => {
  const { ctx, frozen } = fakeSystem(
    { hook: () => fail("database refused to quiesce\n", 2) },
    NO_PROC,
  );
  await assert.rejects(
    async () => await guestFsfreezeFreeze.handler({}, ctx),
    new QgaError(
      "child process has failed to execute fsfreeze hook: database refused to quiesce\n",
    ),
  );
  assert.equal(frozen.size, 0);
  assert.equal(ctx.frozen, false);
  assert.deepEqual(argvs(ctx), [`${HOOK} freeze`]);
});

Deno.test("a silent failing hook reports its exit status and a missing hook the exec failure", async () => {
  const silent = fakeSystem({ hook: () => fail("", 7) });
  await assert.rejects(
    async () => await guestFsfreezeFreeze.handler({}, silent.ctx),
    new QgaError("child process has failed to execute fsfreeze hook: exit status 7"),
  );
  const missing = fakeSystem({
    hook: () => {
      throw new SysError("ENOENT", "No such file or directory");
    },
  });
  await assert.rejects(
    async () => await guestFsfreezeFreeze.handler({}, missing.ctx),
    new QgaError(
      `child process has failed to execute fsfreeze hook: failed to exec '${HOOK}': No such file or directory\n`,
    ),
  );
  const killed = fakeSystem({
    hook: () => ({ code: null, signal: "SIGKILL", output: new Uint8Array() }),
  });
  await assert.rejects(
    async () => await guestFsfreezeFreeze.handler({}, killed.ctx),
    new QgaError("child process has terminated abnormally"),
  );
});

Deno.test("thaw unfreezes in mount order, repeats until fsfreeze fails, counts and runs the thaw hook last", async () => {
  const { ctx, frozen } = fakeSystem({ hook: () => ok() });
  assert.equal(await guestFsfreezeFreezeList.handler({ mountpoints: ["/boot", "/data"] }, ctx), 2);
  ctx.runs.length = 0;
  assert.equal(await guestFsfreezeThaw.handler({}, ctx), 2);
  assert.deepEqual(argvs(ctx), [
    `${FSFREEZE} --unfreeze /`,
    `${FSFREEZE} --unfreeze /boot`,
    `${FSFREEZE} --unfreeze /boot`,
    `${FSFREEZE} --unfreeze /data`,
    `${FSFREEZE} --unfreeze /data`,
    `${FSFREEZE} --unfreeze /mnt/my disk`,
    `${HOOK} thaw`,
  ]);
  assert.equal(frozen.size, 0);
  assert.equal(ctx.frozen, false);
});

Deno.test("thaw counts filesystems frozen by someone else too, as FITHAW does", async () => {
  const { ctx } = fakeSystem({ frozen: ["/data"] });
  assert.equal(await guestFsfreezeThaw.handler({}, ctx), 1);
});

Deno.test("thawing when nothing is frozen returns 0 and still runs the thaw hook", async () => {
  const { ctx } = fakeSystem({ hook: () => ok() });
  assert.equal(await guestFsfreezeThaw.handler({}, ctx), 0);
  assert.equal(await guestFsfreezeThaw.handler({}, ctx), 0);
  assert.equal(argvs(ctx).filter((a) => a === `${HOOK} thaw`).length, 2);
  assert.equal(ctx.frozen, false);
});

Deno.test("thaw stops repeating a mount after a bounded number of successful unfreezes", async () => {
  const ctx = fakeContext({ sys: new FixtureSystem(VM), run: () => ok() });
  assert.equal(await guestFsfreezeThaw.handler({}, ctx), 4);
  assert.equal(ctx.runs.length, 4 * MAX_THAW_REPEAT);
});

Deno.test("a failing thaw hook turns the reply into the hook's error although everything is thawed", async () => {
  const { ctx, frozen } = fakeSystem({ hook: (arg) => (arg === "thaw" ? fail("", 7) : ok()) });
  assert.equal(await guestFsfreezeFreeze.handler({}, ctx), 4);
  await assert.rejects(
    async () => await guestFsfreezeThaw.handler({}, ctx),
    new QgaError("child process has failed to execute fsfreeze hook: exit status 7"),
  );
  assert.equal(frozen.size, 0);
  assert.equal(ctx.frozen, false);
});

Deno.test("freeze and thaw report a missing mount table with qemu-ga's mtab error", async () => {
  const { ctx } = fakeSystem({}, NO_PROC);
  const mtab = new QgaError("failed to open mtab file: '/proc/self/mounts'");
  await assert.rejects(async () => await guestFsfreezeFreeze.handler({}, ctx), mtab);
  assert.equal(ctx.frozen, false);
  await assert.rejects(async () => await guestFsfreezeThaw.handler({}, ctx), mtab);
});

Deno.test("freezing twice is refused while frozen, and only status and thaw are allowed while frozen", async () => {
  const { ctx } = fakeSystem();
  assert.equal(await guestFsfreezeFreeze.handler({}, ctx), 4);
  const runs = ctx.runs.length;
  for (const cmd of [guestFsfreezeFreeze, guestFsfreezeFreezeList]) {
    await assert.rejects(
      async () => await cmd.handler({}, ctx),
      (e: unknown) =>
        e instanceof QgaError && e.errorClass === "CommandNotFound" &&
        e.message === `Command ${cmd.name} has been disabled: the command is not allowed`,
    );
  }
  assert.equal(ctx.runs.length, runs, "nothing ran for the refused freezes");
  assert.equal(guestFsfreezeStatus.allowedWhileFrozen, true);
  assert.equal(guestFsfreezeThaw.allowedWhileFrozen, true);
  assert.notEqual(guestFsfreezeFreeze.allowedWhileFrozen, true);
  assert.notEqual(guestFsfreezeFreezeList.allowedWhileFrozen, true);
});

Deno.test("thawAll thaws a frozen agent, does nothing when thawed and never throws", async () => {
  const thawed = fakeSystem();
  assert.equal(await thawAll(thawed.ctx), 0);
  assert.deepEqual(thawed.ctx.runs, []);

  const frozen = fakeSystem();
  await guestFsfreezeFreeze.handler({}, frozen.ctx);
  assert.equal(await thawAll(frozen.ctx), 4);
  assert.equal(frozen.ctx.frozen, false);
  assert.equal(frozen.frozen.size, 0);

  const broken = fakeSystem({ hook: (arg) => (arg === "thaw" ? fail("boom\n") : ok()) });
  await guestFsfreezeFreeze.handler({}, broken.ctx);
  assert.equal(await thawAll(broken.ctx), 0);
  assert.equal(broken.ctx.frozen, false);
  assert.ok(broken.ctx.logs.some((l) => l.msg.startsWith("failed to clean up frozen filesystems")));
});

Deno.test("the freeze commands run fsfreeze and the hook through the helper, not the agent's sandbox", () => {
  for (const cmd of [guestFsfreezeFreeze, guestFsfreezeFreezeList, guestFsfreezeThaw]) {
    const needs = cmd.needs;
    assert.equal(typeof needs, "object");
    if (typeof needs !== "object") return;
    assert.equal(needs.run, undefined);
    assert.deepEqual(needs.helper, ["read", "run"]);
  }
});
