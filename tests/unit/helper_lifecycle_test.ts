/**
 * The helper's life (issue 14): the client lets an idle helper exit and starts another
 * at the next request; every helper of one agent process takes the settings the first
 * one recorded (helper/init_record.ts) and refuses others, so letting helpers go gives
 * a compromised agent no way to change the fsfreeze hook or the channel.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startHelper } from "../../system/helper_client.ts";
import { type InitSettings, settleInit, startTimeOf } from "../../helper/init_record.ts";
import { SPAWN_VIA_SHELL } from "../helpers/helper_spawn.ts";

const LAUNCHER = fileURLToPath(new URL("../../helper/qga-helper", import.meta.url));
const HOOK: InitSettings = { fsfreezeHook: "/etc/qemu/fsfreeze-hook", channel: null };
const NONE: InitSettings = { fsfreezeHook: null, channel: null };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

Deno.test("an idle helper is let go and the next request starts another", async () => {
  const h = await startHelper(LAUNCHER, NONE, { idleMs: 300, spawnVia: SPAWN_VIA_SHELL });
  try {
    assert.equal(h.launches, 1);
    assert.ok((await h.readFile("/proc/loadavg")).length > 0);
    assert.equal(h.running, true);
    await sleep(900);
    assert.equal(h.running, false, "the idle helper still runs");
    assert.ok((await h.readFile("/proc/loadavg")).length > 0);
    assert.equal(h.launches, 2);
    assert.equal(h.running, true);
  } finally {
    await h.close();
  }
});

Deno.test("a helper the agent says to keep (frozen) is not let go", async () => {
  const h = await startHelper(LAUNCHER, NONE, { idleMs: 200, spawnVia: SPAWN_VIA_SHELL });
  try {
    let frozen = true;
    h.setKeepAlive(() => frozen);
    await h.readFile("/proc/loadavg");
    await sleep(700);
    assert.equal(h.running, true);
    assert.equal(h.launches, 1);
    frozen = false;
    await sleep(700);
    assert.equal(h.running, false);
  } finally {
    await h.close();
  }
});

Deno.test("every helper of one agent takes the first one's settings and refuses others", async () => {
  // A process of its own plays the agent: its first helper records the hook.
  const dir = await Deno.makeTempDir({ prefix: "qga-lifecycle-" });
  try {
    const script = `${dir}/agent.ts`;
    const client = JSON.stringify(new URL("../../system/helper_client.ts", import.meta.url).href);
    await Deno.writeTextFile(
      script,
      `import { startHelper } from ${client};
const out: string[] = [];
const first = await startHelper(${JSON.stringify(LAUNCHER)}, ${JSON.stringify(HOOK)});
out.push("first ok");
for (const init of [${JSON.stringify(NONE)}, ${JSON.stringify(HOOK)}]) {
  try {
    const again = await startHelper(${JSON.stringify(LAUNCHER)}, init);
    out.push("again ok " + init.fsfreezeHook);
    await again.close();
  } catch (e) {
    out.push("again refused " + init.fsfreezeHook + ": " + (e as Error).message);
  }
}
await first.close();
console.log(JSON.stringify(out));
`,
    );
    const o = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-config", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(o.code, 0, new TextDecoder().decode(o.stderr));
    const out = JSON.parse(new TextDecoder().decode(o.stdout)) as string[];
    assert.equal(out[0], "first ok");
    assert.match(
      out[1]!,
      /^again refused null: .*this agent started its helper with other settings/,
    );
    assert.equal(out[2], `again ok ${HOOK.fsfreezeHook}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("settleInit records the first settings, refuses others, and keeps none without a directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qga-init-record-" });
  try {
    const agent = { bootId: "0f0f0f0f-0000-0000-0000-000000000000", pid: 4242, startTime: "77" };
    assert.deepEqual(settleInit(HOOK, { agent, dir }), { settings: HOOK, recorded: true });
    assert.deepEqual(settleInit(HOOK, { agent, dir }), { settings: HOOK, recorded: true });
    assert.throws(() => settleInit(NONE, { agent, dir }), /with other settings/);
    // another agent process (a restart: same pid, another start) records its own
    const restarted = { ...agent, startTime: "99" };
    assert.deepEqual(settleInit(NONE, { agent: restarted, dir }), {
      settings: NONE,
      recorded: true,
    });
    // the dead agent's record was pruned when the new one was written
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [
      "0f0f0f0f-0000-0000-0000-000000000000.4242.99.json",
    ]);
    assert.deepEqual(settleInit(HOOK, { agent, dir: undefined }), {
      settings: HOOK,
      recorded: false,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a process's start time is field 22 of its stat line, whatever its name", () => {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3)); // fields 3.. as numbers
  fields[0] = "S";
  assert.equal(startTimeOf(`123 (a b) c) ${fields.join(" ")}`), "22");
  assert.equal(
    startTimeOf(Deno.readTextFileSync("/proc/self/stat"))?.match(/^\d+$/)?.[0] !== undefined,
    true,
  );
});

Deno.test("a helper that never gets a request after its start is let go too", async () => {
  const h = await startHelper(LAUNCHER, NONE, { idleMs: 300, spawnVia: SPAWN_VIA_SHELL });
  try {
    assert.equal(h.running, true);
    await sleep(900);
    assert.equal(h.running, false);
  } finally {
    await h.close();
  }
});
