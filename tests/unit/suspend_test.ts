import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  guestSuspend,
  guestSuspendDisk,
  guestSuspendHybrid,
  guestSuspendRam,
  SUSPEND_PROGRAMS as P,
} from "../../commands/suspend.ts";
import type { RunResult } from "../../commands/types.ts";
import { QgaError } from "../../protocol/errors.ts";
import { FixtureSystem } from "../../system/fixture.ts";
import { SysError } from "../../system/mod.ts";
import { fakeContext } from "../helpers/fake_context.ts";

// The captured /sys/power/state of the test VM is empty (its kernel has no suspend
// states). Tests that need a capable kernel copy the tree and put in the line a
// standard kernel prints (kernel/power/main.c state_show): "freeze mem disk".
const ROOT = fileURLToPath(new URL("../fixtures/identity/", import.meta.url));

async function tree(state: string | null): Promise<{ sys: FixtureSystem; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "qga-suspend-" });
  await Deno.mkdir(`${dir}/sys/power`, { recursive: true });
  const captured = Deno.readTextFileSync(`${ROOT}sys/power/state`);
  await Deno.writeTextFile(`${dir}/sys/power/state`, state ?? captured);
  return { sys: new FixtureSystem(dir), dir };
}

type Script = Record<string, number | "ENOENT" | "EACCES">;
const runner = (script: Script) => (argv: string[]): RunResult => {
  const r = script[argv.join(" ")] ?? "ENOENT";
  if (r === "ENOENT") throw new SysError("ENOENT", "No such file or directory");
  if (r === "EACCES") throw new SysError("EACCES", "Permission denied");
  return { code: r, signal: null, output: new Uint8Array() };
};
const qgaError = (desc: string) => (e: unknown) => e instanceof QgaError && e.message === desc;

Deno.test("suspend commands send no reply on success", () => {
  for (const c of [guestSuspendDisk, guestSuspendRam, guestSuspendHybrid]) {
    assert.equal(c.successResponse, false);
  }
});

Deno.test("suspend-ram uses systemd when systemctl status exits 1..3", async () => {
  for (const status of [1, 2, 3]) {
    const ctx = fakeContext({
      run: runner({
        [`${P.systemctl} status systemd-suspend`]: status,
        [`${P.systemctl} suspend`]: 0,
      }),
    });
    await guestSuspend(ctx, "ram");
    assert.deepEqual(ctx.runs.map((r) => r.argv), [[P.systemctl, "status", "systemd-suspend"], [
      P.systemctl,
      "suspend",
    ]]);
  }
});

Deno.test("suspend-disk falls to pm-utils when systemd does not know the unit (status 4)", async () => {
  const ctx = fakeContext({
    run: runner({
      [`${P.systemctl} status systemd-hibernate`]: 4,
      [`${P.pmIsSupported} --hibernate`]: 0,
      [P.pmHibernate]: 0,
    }),
  });
  await guestSuspendDisk.handler({}, ctx);
  assert.deepEqual(ctx.runs.map((r) => r.argv), [
    [P.systemctl, "status", "systemd-hibernate"],
    [P.pmIsSupported, "--hibernate"],
    [P.pmHibernate],
  ]);
});

Deno.test("suspend-ram writes mem to /sys/power/state when nothing else is there", async () => {
  const { sys, dir } = await tree("freeze mem disk\n");
  try {
    const ctx = fakeContext({ sys, run: runner({}) });
    await guestSuspendRam.handler({}, ctx);
    assert.equal(Deno.readTextFileSync(`${dir}/sys/power/state`), "mem");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("suspend on the captured VM (empty /sys/power/state, no helpers) is not supported", async () => {
  const { sys, dir } = await tree(null);
  try {
    for (const c of [guestSuspendDisk, guestSuspendRam, guestSuspendHybrid]) {
      const ctx = fakeContext({ sys, run: runner({}) });
      await assert.rejects(
        async () => await c.handler({}, ctx),
        qgaError("the requested suspend mode is not supported by the guest"),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a failing pm-suspend is forgotten when sysfs then succeeds, as in qemu-ga", async () => {
  const { sys, dir } = await tree("freeze mem disk\n");
  try {
    const ctx = fakeContext({
      sys,
      run: runner({ [`${P.pmIsSupported} --suspend`]: 0, [P.pmSuspend]: 5 }),
    });
    await guestSuspend(ctx, "ram");
    assert.equal(Deno.readTextFileSync(`${dir}/sys/power/state`), "mem");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hybrid after a failed systemd hybrid-sleep reports the unknown sysfs mode", async () => {
  const ctx = fakeContext({
    run: runner({
      [`${P.systemctl} status systemd-hybrid-sleep`]: 3,
      [`${P.systemctl} hybrid-sleep`]: 1,
    }),
  });
  await assert.rejects(
    async () => await guestSuspend(ctx, "hybrid"),
    qgaError("unknown guest suspend mode"),
  );
});

Deno.test("pm-is-supported with an unexpected status and no sysfs support is not supported", async () => {
  const { sys, dir } = await tree(null);
  try {
    const ctx = fakeContext({ sys, run: runner({ [`${P.pmIsSupported} --suspend`]: 7 }) });
    await assert.rejects(
      async () => await guestSuspend(ctx, "ram"),
      qgaError("the requested suspend mode is not supported by the guest"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a sysfs write failure is reported with qemu-ga's text", async () => {
  const { dir } = await tree("freeze mem disk\n");
  try {
    const sys = new FixtureSystem(dir);
    sys.writeFile = () => Promise.reject(new SysError("EBUSY", "Device or resource busy"));
    const ctx = fakeContext({ sys, run: runner({}) });
    await assert.rejects(
      async () => await guestSuspend(ctx, "disk"),
      qgaError("suspend: cannot write to '/sys/power/state': Device or resource busy"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a systemctl that cannot be spawned is skipped like qemu-ga's freed error", async () => {
  const { sys, dir } = await tree("freeze mem disk\n");
  try {
    const ctx = fakeContext({
      sys,
      run: runner({ [`${P.systemctl} status systemd-suspend`]: "EACCES" }),
    });
    await guestSuspend(ctx, "ram");
    assert.equal(Deno.readTextFileSync(`${dir}/sys/power/state`), "mem");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
