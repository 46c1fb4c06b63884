/**
 * The thaw on exit (agent/run.ts): an agent that stops while frozen thaws the guest first
 * (SIGTERM, SIGINT, SIGHUP, the channel closing), except when it exits for a restart
 * (SIGUSR2), where the frozen state is left for the next agent. runAgent runs in a child
 * process (its shutdown ends the process) with every dependency faked: a transport that
 * never gets a client, no helper, and a thawAll that reports itself on stdout. The child
 * starts frozen from the state dir's marker, as after a restart, so nothing on this
 * machine is frozen or thawed. It runs in a network namespace of its own (`unshare -n`) so
 * the agent's hold on 127.0.0.1:9229 (agent/run.ts holdInspectorPort) takes nothing from
 * the machine. Needs root (unshare).
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all tests/unit/run_shutdown_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");
const MARKER = "qga.state.isfrozen";

/** The child: runAgent with fakes; prints "serving" once it waits for a client. */
const PROBE = `
import { runAgent } from ${JSON.stringify(`${REPO}/agent/run.ts`)};
import { COMMANDS } from ${JSON.stringify(`${REPO}/commands/mod.ts`)};
import { defaultOptions } from ${JSON.stringify(`${REPO}/config/options.ts`)};
import { fixedEnvironment } from ${JSON.stringify(`${REPO}/system/environment.ts`)};
import { createSystemAccess } from ${JSON.stringify(`${REPO}/system/real.ts`)};
const say = (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s + "\\n"));
const dir = Deno.args[0]!;
let closeTransport = () => {};
const code = await runAgent({
  options: defaultOptions({ method: "unix-listen", path: dir + "/sock", statedir: dir }),
  commands: COMMANDS,
  version: "test",
  environment: fixedEnvironment({}),
  startHelper: () => Promise.reject(new Error("no helper in this test")),
  createSystem: createSystemAccess,
  openTransport: () => Promise.resolve({
    accept: () => {
      say("serving");
      return new Promise((resolve) => (closeTransport = () => resolve(null)));
    },
    close: () => closeTransport(),
  }),
  thawAll: (agent) => {
    say("thawAll frozen=" + agent.frozen);
    return Promise.resolve(0);
  },
});
say("runAgent returned " + code);
`;

interface Ended {
  stdout: string;
  stderr: string;
  status: Deno.CommandStatus;
}

/** Starts the probe (frozen when `frozen`), sends `signal` once it serves, waits for its end. */
async function stopWith(signal: Deno.Signal, frozen: boolean): Promise<Ended> {
  const dir = await Deno.makeTempDir({ prefix: "qga-run-shutdown-" });
  try {
    await Deno.writeTextFile(`${dir}/probe.ts`, PROBE);
    if (frozen) await Deno.writeTextFile(`${dir}/${MARKER}`, "");
    const child = new Deno.Command("unshare", {
      args: ["-n", Deno.execPath(), "run", "-A", "--no-config", `${dir}/probe.ts`, dir],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderrText = new Response(child.stderr).text();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let stdout = "";
    const deadline = setTimeout(() => child.kill("SIGKILL"), 30_000);
    try {
      while (!stdout.includes("serving\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        stdout += value;
      }
      if (!stdout.includes("serving\n")) {
        assert.fail(`the probe never served: ${await stderrText}`);
      }
      // unshare execs deno: the child's pid is the agent's.
      child.kill(signal);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        stdout += value;
      }
      const status = await child.status;
      return { stdout, stderr: await stderrText, status };
    } finally {
      clearTimeout(deadline);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
  Deno.test(`${signal} while frozen: the agent thaws, then exits 0`, async () => {
    const r = await stopWith(signal, true);
    assert.equal(r.status.signal, null, `ended by ${r.status.signal}: ${r.stderr}`);
    assert.equal(r.status.code, 0, r.stderr);
    assert.match(r.stdout, /^serving\nthawAll frozen=true\n$/, r.stderr);
  });
}

Deno.test("SIGTERM while not frozen: the agent exits 0 without a thaw", async () => {
  const r = await stopWith("SIGTERM", false);
  assert.equal(r.status.code, 0, r.stderr);
  assert.equal(r.stdout, "serving\n", r.stderr);
});

Deno.test("SIGUSR2 (a restart) while frozen: the agent exits 0 and leaves the guest frozen", async () => {
  const r = await stopWith("SIGUSR2", true);
  assert.equal(r.status.code, 0, r.stderr);
  assert.equal(r.stdout, "serving\n", r.stderr);
});
