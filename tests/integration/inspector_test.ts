/**
 * Debugger port (issue 8 part 6, docs/robustness.md "Debugger port"): Deno opens a V8
 * inspector on 127.0.0.1:9229 when a process gets SIGUSR1. A root agent with a reachable
 * inspector would hand any local user the agent's privileges. The probe
 * (tests/integration/inspector_probe.ts) signals the agent and its helper, then connects
 * to 127.0.0.1:9229 and scans /proc/net/tcp{,6} for 1.5 s; the test fails if an inspector
 * ever answered or the agent ever held the listening socket. A control scenario runs the
 * same probe against a plain Deno process, which must show the inspector: the probe can
 * see what it looks for.
 *
 * Each scenario runs in a network namespace of its own (`unshare -n`, as root), so the
 * result does not depend on what else runs on the machine: every running deno-qga's helper
 * holds 127.0.0.1:9229 of the namespace it lives in.
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import type { ScenarioResult } from "./inspector_probe.ts";

const PROBE = fileURLToPath(new URL("./inspector_probe.ts", import.meta.url));

/** Runs one probe scenario in a fresh network namespace with loopback up. */
async function inOwnNetns(which: "agent" | "control"): Promise<ScenarioResult> {
  assert.equal(Deno.uid(), 0, "the inspector test needs root for its own network namespace");
  const script = `ip link set lo up && exec "$0" run --allow-all --no-prompt "$1" "$2"`;
  const out = await new Deno.Command("unshare", {
    args: ["-n", "sh", "-c", script, Deno.execPath(), PROBE, which],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(
    out.code,
    0,
    `probe ${which} failed (${out.code}):\n${stdout}\n${stderr.slice(-3000)}`,
  );
  const line = stdout.trim().split("\n").at(-1) ?? "";
  return JSON.parse(line) as ScenarioResult;
}

Deno.test({
  name:
    "after SIGUSR1 no client reaches an inspector of the agent and no new listener appears on 9229",
  async fn() {
    const r = await inOwnNetns("agent");
    console.log(`inspector probe (agent ${r.pid}, helpers ${JSON.stringify(r.helpers)}):`);
    for (const p of r.rounds) console.log(`  ${JSON.stringify(p)}`);
    // The agent holds the port from its start (a socket that never answers).
    assert.ok(r.preexisting >= 1, "nothing held 127.0.0.1:9229 before the signal");
    assert.ok(r.pid > 0, "agent pid not found");
    assert.ok(r.helpers.length > 0, "the agent's helper was not found");
    assert.equal(r.stoppedServing, undefined, `the agent stopped serving: ${r.stoppedServing}`);
    assert.equal(r.rounds.length, 3);
    for (const p of r.rounds) {
      assert.equal(p.replyCount, 0, `an inspector answered: ${JSON.stringify(p.replies)}`);
      assert.equal(p.agentListener, 0, "a new listener of the agent appeared on port 9229");
      assert.equal(p.unknownListener, 0, "a new listener on 9229 appeared, owner not found");
      assert.ok(
        p.attempts > 20 && p.scans > 20,
        `only ${p.attempts} probes and ${p.scans} scans in the window`,
      );
    }
  },
});

Deno.test({
  name: "the probe sees the inspector of a Deno process that does not close it",
  async fn() {
    const r = await inOwnNetns("control");
    const p = r.rounds[0]!;
    console.log(`control (plain deno ${r.pid}): ${JSON.stringify(p)}`);
    assert.equal(r.preexisting, 0, "a fresh network namespace had a listener on 9229");
    assert.ok(p.replyCount > 0, "no inspector reply from a plain Deno process after SIGUSR1");
    assert.match(p.replies[0]!, /V8-Version|Browser/);
    assert.ok(p.agentListener > 0, "the listener was not attributed to the process");
  },
});
