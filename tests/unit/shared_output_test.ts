/**
 * guest-exec `merged` capture (issue 12 defect 1): the child gets one socket as both
 * stdout and stderr (system/shared_output.ts), so the host sees the writes in the order
 * the child made them, as with qemu-ga's dup2. Also guards the two Deno details the
 * mechanism relies on (a raw descriptor accepted by Deno.Command, node:net's
 * `_handle.fd`): a Deno upgrade that changes either fails here.
 */

import assert from "node:assert/strict";
import { type ExecStatus, guestExec, guestExecStatus } from "../../commands/exec.ts";
import type { Context } from "../../commands/types.ts";
import { openSharedOutput, sharedOutputPath } from "../../system/shared_output.ts";
import { type FakeContext, fakeContext } from "../helpers/fake_context.ts";

const dec = new TextDecoder();
/** test-qga's /qga/guest-exec-merged script: no sleeps between the writes. */
const QEMU_SCRIPT =
  "for i in $(seq 4); do if (( $i % 2 )); then echo stdout; else echo stderr 1>&2; fi; done;";

async function withStateDir(fn: (ctx: FakeContext, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qga-merged-" });
  try {
    await fn(fakeContext({ options: { statedir: dir } }), dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function finished(ctx: Context, pid: number): Promise<ExecStatus> {
  for (let i = 0; i < 1000; i++) {
    const st = await guestExecStatus.handler({ pid: BigInt(pid) }, ctx);
    if (st.exited) return st;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`pid ${pid} did not finish`);
}

Deno.test("Deno.Command gives a raw descriptor to the child as stdout and stderr", async () => {
  await withStateDir(async (_ctx, dir) => {
    const shared = await openSharedOutput(sharedOutputPath(dir));
    const child = new Deno.Command("/bin/sh", {
      args: ["-c", "readlink /proc/self/fd/1 /proc/self/fd/2"],
      stdin: "null",
      stdout: shared.childFd as unknown as "piped",
      stderr: shared.childFd as unknown as "piped",
    }).spawn();
    shared.closeChildEnd();
    const text = dec.decode(await new Response(shared.reader.readable).arrayBuffer());
    const [one, two] = text.trim().split("\n");
    assert.match(one ?? "", /^socket:\[\d+\]$/);
    assert.equal(two, one, "descriptors 1 and 2 are one socket");
    assert.equal((await child.status).code, 0);
    // the listener was unlinked at once: the state directory is left as it was
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("merged capture keeps qemu's test script in write order, 20 runs out of 20", async () => {
  await withStateDir(async (ctx) => {
    for (let run = 0; run < 20; run++) {
      const { pid } = await guestExec.handler(
        { path: "/bin/bash", arg: ["-c", QEMU_SCRIPT], "capture-output": "merged" },
        ctx,
      );
      const st = await finished(ctx, pid);
      assert.equal(
        dec.decode(Uint8Array.fromBase64(st["out-data"] ?? "")),
        "stdout\nstderr\nstdout\nstderr\n",
        `run ${run}`,
      );
      assert.equal(st["err-data"], undefined);
      assert.equal(st.exitcode, 0);
    }
    assert.deepEqual(ctx.logs.filter((l) => l.level === "warn"), []);
  });
});

Deno.test("a merged child that runs on does not hold back another one's end of output", async () => {
  await withStateDir(async (ctx) => {
    const slow = await guestExec.handler(
      { path: "/bin/sh", arg: ["-c", "sleep 3; echo slow"], "capture-output": "merged" },
      ctx,
    );
    const started = Date.now();
    const quick = await guestExec.handler(
      { path: "/bin/sh", arg: ["-c", "echo quick >&2"], "capture-output": "merged" },
      ctx,
    );
    const st = await finished(ctx, quick.pid);
    assert.equal(dec.decode(Uint8Array.fromBase64(st["out-data"] ?? "")), "quick\n");
    assert.ok(Date.now() - started < 2500, "the quick child waited for the slow one's descriptors");
    await finished(ctx, slow.pid);
  });
});

Deno.test("without a shared socket merged output falls back to two pipes and says so", async () => {
  const ctx = fakeContext({ options: { statedir: "/nonexistent/state" } });
  const { pid } = await guestExec.handler(
    {
      path: "/bin/sh",
      arg: ["-c", "echo one; sleep 0.1; echo two >&2"],
      "capture-output": "merged",
    },
    ctx,
  );
  const st = await finished(ctx, pid);
  assert.equal(dec.decode(Uint8Array.fromBase64(st["out-data"] ?? "")), "one\ntwo\n");
  const warns = ctx.logs.filter((l) => l.level === "warn").map((l) => l.msg);
  assert.equal(warns.length, 1);
  assert.match(warns[0]!, /merged output is read from two pipes/);
});
