/**
 * The /proc readings the limits, soak, fuzz and inspector tests bound (tests/helpers/proc.ts)
 * fail when their process is not there, so no bound passes on a reading of 0.
 */

import assert from "node:assert/strict";
import type { RunningAgent } from "../helpers/agents.ts";
import { agentPid, fdCount, rssKb, treeUsage } from "../helpers/proc.ts";

/** A pid no process has: above the kernel's pid_max. */
function unusedPid(): number {
  return Number(Deno.readTextFileSync("/proc/sys/kernel/pid_max").trim()) + 1;
}

Deno.test("an agent whose process is not in /proc has no pid: agentPid throws", () => {
  const agent = {
    kind: "deno-qga",
    socketPath: "/nonexistent/qga-proc-test/sock",
  } as unknown as RunningAgent;
  assert.throws(() => agentPid(agent), /found 0/);
});

Deno.test("memory and descriptor readings of a missing process throw instead of giving 0", () => {
  for (const pid of [0, -1, unusedPid()]) {
    assert.throws(() => rssKb(pid), /VmRSS/, `rssKb(${pid})`);
    assert.throws(() => fdCount(pid), /fd/, `fdCount(${pid})`);
    assert.throws(() => treeUsage(pid), `treeUsage(${pid})`);
  }
});

Deno.test("the test process itself reads as alive, with memory and descriptors", () => {
  assert.ok(rssKb(Deno.pid) > 0);
  assert.ok(fdCount(Deno.pid) > 0);
  const u = treeUsage(Deno.pid);
  assert.equal(u.pids[0], Deno.pid);
  assert.ok(u.rssKb > 0 && u.fds > 0);
});
