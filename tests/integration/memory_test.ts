/**
 * The memory ceiling (issue 14), as a bound on memory, not on time: an agent started
 * as deployed (least-privilege line, the systemd unit's GLIBC_TUNABLES) takes a fixed
 * burst of fuzz cases (tests/fuzz/fuzz_lib.ts: huge strings, deep nesting, random
 * bytes, wrong-typed arguments; nothing that changes the machine) and is then left
 * alone. After the quiet period its RSS (its own process: the helper comes and goes)
 * must be back under 1.5x what it was before the burst, and never over a fixed cap.
 * `npm run bench -- --only=burst` measures the same with the full 24,000-case burst.
 */

import assert from "node:assert/strict";
import { FuzzClient, generateCases } from "../fuzz/fuzz_lib.ts";
import { startAgent } from "../helpers/agents.ts";
import { agentPid, rssKb } from "../helpers/proc.ts";
import { UNIT_ENV } from "../../bench/agents.ts";

/** Cases in the burst, quiet time after it (the agent collects after 5 s idle). */
const CASES = 4000;
const QUIET_MS = 12_000;
/** No reading may pass this, burst or not (the limits bound a request at 64 MiB tokens). */
const CAP_KB = 400 * 1024;

Deno.test("after a burst of fuzz cases and a quiet period the agent is back near its idle size", async () => {
  await using agent = await startAgent("deno-qga", { env: UNIT_ENV });
  const pid = agentPid(agent);
  const client = await FuzzClient.connect(agent.socketPath);
  try {
    // Settle: a few requests, then quiet, so "before" is the idle size after a collection.
    for (const c of generateCases(1, 50)) await client.run(c);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    const before = rssKb(pid);
    let peak = before;
    let n = 0;
    for (const c of generateCases(20261206, CASES)) {
      await client.run(c);
      if (++n % 250 === 0) peak = Math.max(peak, rssKb(pid));
    }
    const after = rssKb(pid);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    const settled = rssKb(pid);
    console.log(
      `memory: idle ${before} kB, peak seen ${
        Math.max(peak, after)
      } kB, right after ${after} kB, ` +
        `after ${QUIET_MS / 1000} s of quiet ${settled} kB`,
    );
    assert.ok(Math.max(peak, after, settled) < CAP_KB, `RSS passed ${CAP_KB} kB`);
    assert.ok(
      settled < 1.5 * before,
      `RSS did not come back: ${before} kB idle, ${settled} kB after the quiet period`,
    );
  } finally {
    client.close();
  }
});
