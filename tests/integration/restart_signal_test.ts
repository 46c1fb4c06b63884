/**
 * SIGUSR2, the unit's RestartKillSignal= (docs/deploy.md "Restart policy"): the agent exits 0
 * as on SIGTERM, but leaves a frozen guest frozen, so the next agent starts frozen. The agent
 * here starts frozen from the state dir's marker (as after a restart), so nothing is really
 * frozen on this machine; with the marker kept after SIGUSR2, no thaw ran either. The same
 * through systemd, with a real freeze, is tests/e2e_systemd/ ("frozen state survives
 * systemctl restart deno-qga").
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all \
 *   tests/integration/restart_signal_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { QgaClient } from "../../client/mod.ts";
import { startAgent } from "../helpers/agents.ts";
import { agentPid } from "../helpers/proc.ts";

const MARKER = "qga.state.isfrozen";

function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

Deno.test({
  name: "SIGUSR2 (a restart): the agent exits and a frozen state stays for the next agent",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const agent = await startAgent("deno-qga", { files: { [MARKER]: "" } });
    let passed = false;
    let pid = 0;
    try {
      pid = agentPid(agent);
      assert.ok(pid > 0, "agent pid not found");
      const c = await QgaClient.connect(agent.socketPath);
      assert.equal(await c.execute("guest-fsfreeze-status"), "frozen");
      await c.close();
      Deno.kill(pid, "SIGUSR2");
      const deadline = Date.now() + 20_000;
      while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(!alive(pid), `the agent still runs 20 s after SIGUSR2: ${agent.stderr()}`);
      // The marker stays: the next agent starts frozen, and the host's thaw still works.
      await Deno.lstat(`${agent.dir}/${MARKER}`);
      assert.doesNotMatch(agent.stderr(), /thaw/i, agent.stderr());
      passed = true;
    } finally {
      // stop() asserts the exit status 0 (a SIGUSR2 not handled would end it by the signal).
      if (passed) await agent.stop();
      else {
        // Not SIGTERM first: a frozen agent thaws on it, which runs fsfreeze on this machine.
        if (pid > 0 && alive(pid)) Deno.kill(pid, "SIGKILL");
        await agent.stop().catch(() => {});
      }
    }
  },
});
