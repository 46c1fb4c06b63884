/**
 * Soak (issue 8 part 3, docs/robustness.md "Soak"): 1,000 host connect/disconnect cycles
 * (some of them closing in the middle of a request or before reading the reply), 10,000
 * open/write/seek/read/close rounds on files, and 1,000 guest-exec runs of /usr/bin/true
 * polled to completion. The agent's resident memory and open descriptors (and its
 * helper's, when it has started one) must come back to within a small bound of the
 * figures taken after a warm-up.
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all \
 *   tests/integration/soak_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { QgaClient } from "../../client/mod.ts";
import { type RunningAgent, startAgent } from "../helpers/agents.ts";
import { agentPid, treeUsage } from "../helpers/proc.ts";

/** Allowed RSS growth over the whole soak, in KiB (see docs/robustness.md for the figures). */
const RSS_BOUND_KB = 96 * 1024;
/** Allowed growth of the open-descriptor count. */
const FD_BOUND = 2;

const CONNECT_CYCLES = 1_000;
const FILE_ROUNDS = 10_000;
const EXEC_RUNS = 1_000;

const enc = new TextEncoder();

async function rawSend(path: string, text: string, readReply: boolean): Promise<void> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(enc.encode(text));
    if (readReply) await conn.read(new Uint8Array(256));
  } finally {
    conn.close();
  }
}

/** connect, guest-ping, close; every 10th closes mid-request, every 10th+5 without reading. */
async function connectCycles(agent: RunningAgent, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    if (i % 10 === 3) {
      await rawSend(agent.socketPath, '{"execute":"guest-pi', false);
    } else if (i % 10 === 7) {
      await rawSend(agent.socketPath, '\xff{"execute":"guest-ping"}', false);
    } else {
      // QgaClient resyncs first (0xFF + guest-sync-delimited), which discards a request
      // left half-sent by the previous cycle.
      const c = await QgaClient.connect(agent.socketPath);
      assert.deepEqual(await c.execute("guest-ping"), {});
      await c.close();
    }
  }
}

/** open, write, seek, read, close; the data read must be what was written. */
async function fileRounds(c: QgaClient, dir: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const data = `round ${i} `.repeat(8);
    const b64 = enc.encode(data).toBase64();
    const h = await c.execute<number>("guest-file-open", {
      path: `${dir}/soak${i % 16}`,
      mode: "w+",
    });
    const w = await c.execute<{ count: number }>("guest-file-write", { handle: h, "buf-b64": b64 });
    assert.equal(w.count, data.length);
    await c.execute("guest-file-seek", { handle: h, offset: 0, whence: "set" });
    const r = await c.execute<{ "buf-b64": string }>("guest-file-read", { handle: h });
    assert.equal(r["buf-b64"], b64);
    await c.execute("guest-file-close", { handle: h });
  }
}

async function execRuns(c: QgaClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await c.exec("/usr/bin/true", [], { maxPollIntervalMs: 5 });
    assert.equal(r.exitcode, 0);
  }
}

Deno.test({
  name:
    "after 1,000 connections, 10,000 file rounds and 1,000 execs the agent's memory and descriptors are back within bounds",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const files = await Deno.makeTempDir({ prefix: "qga-soak." });
    try {
      await using agent = await startAgent("deno-qga", {
        extraArgs: [`--file-roots=${files}`, "--exec-programs=/usr/bin/true"],
      });
      const pid = agentPid(agent);

      // Warm-up: JIT, V8 heap and the kernel's per-process structures settle first.
      await connectCycles(agent, 100);
      {
        await using c = await QgaClient.connect(agent.socketPath);
        await fileRounds(c, files, 1_000);
        await execRuns(c, 100);
      }
      const before = treeUsage(pid);
      const t0 = performance.now();

      await connectCycles(agent, CONNECT_CYCLES);
      const afterConnect = treeUsage(pid);
      const t1 = performance.now();
      await using c = await QgaClient.connect(agent.socketPath);
      await fileRounds(c, files, FILE_ROUNDS);
      const afterFiles = treeUsage(pid);
      const t2 = performance.now();
      await execRuns(c, EXEC_RUNS);
      await c.sync();
      const t3 = performance.now();
      const after = treeUsage(pid);

      const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
      console.log(
        `soak: processes ${JSON.stringify(before.pids)} -> ${JSON.stringify(after.pids)}\n` +
          `  baseline          RSS ${before.rssKb} kB, fds ${before.fds}\n` +
          `  ${CONNECT_CYCLES} connections   RSS ${afterConnect.rssKb} kB, fds ${afterConnect.fds} (${
            s(t1 - t0)
          })\n` +
          `  ${FILE_ROUNDS} file rounds RSS ${afterFiles.rssKb} kB, fds ${afterFiles.fds} (${
            s(t2 - t1)
          })\n` +
          `  ${EXEC_RUNS} execs         RSS ${after.rssKb} kB, fds ${after.fds} (${s(t3 - t2)})`,
      );
      for (
        const [what, u] of [["connections", afterConnect], ["files", afterFiles], [
          "execs",
          after,
        ]] as const
      ) {
        assert.ok(
          u.rssKb - before.rssKb < RSS_BOUND_KB,
          `RSS after ${what}: ${before.rssKb} -> ${u.rssKb} kB (bound +${RSS_BOUND_KB} kB)`,
        );
        assert.ok(
          u.fds - before.fds <= FD_BOUND,
          `descriptors after ${what}: ${before.fds} -> ${u.fds} (bound +${FD_BOUND})`,
        );
      }
      // Nothing is left behind: no guest-exec child, no open guest file. (The helper may
      // have been let go meanwhile: no request of this soak needs it.)
      assert.equal(after.pids[0], pid);
      assert.deepEqual(
        after.pids.filter((p) => !before.pids.includes(p)),
        [],
        `new processes: ${JSON.stringify(after.pids)} (before ${JSON.stringify(before.pids)})`,
      );
    } finally {
      await Deno.remove(files, { recursive: true });
    }
  },
});
