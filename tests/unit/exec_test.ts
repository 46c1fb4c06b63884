import assert from "node:assert/strict";
import {
  EXEC_MAX_OUTPUT,
  EXEC_MAX_TRACKED,
  type ExecArgs,
  type ExecStatus,
  guestExec,
  guestExecStatus,
} from "../../commands/exec.ts";
import type { Context } from "../../commands/types.ts";
import { QgaError } from "../../protocol/errors.ts";
import { fakeContext } from "../helpers/fake_context.ts";

const b64 = (s: string) => new TextEncoder().encode(s).toBase64();
const unb64 = (s: string | undefined) => new TextDecoder().decode(Uint8Array.fromBase64(s ?? ""));

async function exec(ctx: Context, args: ExecArgs): Promise<number> {
  return (await guestExec.handler(args, ctx)).pid;
}

async function waitFor(ctx: Context, pid: number): Promise<ExecStatus> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const st = await guestExecStatus.handler({ pid: BigInt(pid) }, ctx);
    if (st.exited) return st;
    if (Date.now() > deadline) throw new Error(`pid ${pid} did not finish`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function qgaError(desc: string | RegExp) {
  return (e: unknown) =>
    e instanceof QgaError && (typeof desc === "string" ? e.message === desc : desc.test(e.message));
}

Deno.test("guest-exec captures stdout and reports exit code 0", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, {
    path: "/bin/sh",
    arg: ["-c", "printf hi"],
    "capture-output": true,
  });
  assert.ok(pid > 0);
  assert.deepEqual(await waitFor(ctx, pid), {
    exited: true,
    exitcode: 0,
    "out-data": "aGk=",
    "out-truncated": false,
  });
});

Deno.test("guest-exec separates stdout and stderr and keeps the exit code", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, {
    path: "/bin/sh",
    arg: ["-c", "echo out; echo err >&2; exit 3"],
    "capture-output": "separated",
  });
  assert.deepEqual(await waitFor(ctx, pid), {
    exited: true,
    exitcode: 3,
    "out-data": "b3V0Cg==",
    "err-data": "ZXJyCg==",
    "out-truncated": false,
    "err-truncated": false,
  });
});

Deno.test("guest-exec reports the signal number of a killed child", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, { path: "/bin/sh", arg: ["-c", "kill -9 $$"] });
  assert.deepEqual(await waitFor(ctx, pid), { exited: true, signal: 9 });
});

Deno.test("guest-exec-status says exited false while the child runs", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, { path: "/bin/sleep", arg: ["0.3"] });
  assert.deepEqual(await guestExecStatus.handler({ pid: BigInt(pid) }, ctx), { exited: false });
  assert.deepEqual(await waitFor(ctx, pid), { exited: true, exitcode: 0 });
});

Deno.test("guest-exec without capture reports no data members", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, { path: "/bin/echo", arg: ["ignored"] });
  assert.deepEqual(await waitFor(ctx, pid), { exited: true, exitcode: 0 });
});

Deno.test("guest-exec-status forgets a finished process after reporting it", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, { path: "/bin/true" });
  await waitFor(ctx, pid);
  assert.throws(
    () => guestExecStatus.handler({ pid: BigInt(pid) }, ctx),
    qgaError("PID ld does not exist"),
  );
});

Deno.test("guest-exec-status of a pid never started gives 10.2's error text", () => {
  const ctx = fakeContext();
  assert.throws(
    () => guestExecStatus.handler({ pid: 123456789n }, ctx),
    qgaError("PID ld does not exist"),
  );
  assert.throws(
    () => guestExecStatus.handler({ pid: -1n }, ctx),
    qgaError("PID ld does not exist"),
  );
});

Deno.test("guest-exec of a missing program gives GLib's spawn message", async () => {
  const ctx = fakeContext();
  await assert.rejects(
    async () => await exec(ctx, { path: "/bin/invalid-cmd42" }),
    qgaError(
      "Failed to execute child process \u201C/bin/invalid-cmd42\u201D (No such file or directory)",
    ),
  );
  await assert.rejects(
    async () => await exec(ctx, { path: "invalid-cmd42" }),
    qgaError(
      "Failed to execute child process \u201Cinvalid-cmd42\u201D (No such file or directory)",
    ),
  );
});

Deno.test("guest-exec of a directory fails with Permission denied", async () => {
  const ctx = fakeContext();
  await assert.rejects(
    async () => await exec(ctx, { path: "/tmp" }),
    qgaError("Failed to execute child process \u201C/tmp\u201D (Permission denied)"),
  );
});

Deno.test("guest-exec env replaces the whole environment", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, {
    path: "/usr/bin/env",
    env: ["FOO=bar", "EMPTY=", "FOO=second"],
    "capture-output": "stdout",
  });
  const st = await waitFor(ctx, pid);
  // Deno passes the environment sorted by name; qemu-ga keeps the given order
  assert.deepEqual(unb64(st["out-data"]).split("\n").sort(), ["", "EMPTY=", "FOO=bar"]);
});

Deno.test("guest-exec searches a bare name in env's PATH", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/qga-test-prog`, "#!/bin/sh\necho found-in-env-path\n", {
      mode: 0o755,
    });
    const ctx = fakeContext();
    const pid = await exec(ctx, {
      path: "qga-test-prog",
      env: [`PATH=${dir}`],
      "capture-output": true,
    });
    assert.equal(unb64((await waitFor(ctx, pid))["out-data"]), "found-in-env-path\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("guest-exec feeds input-data to the child's stdin", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, {
    path: "/bin/cat",
    "input-data": b64("hello via stdin\n"),
    "capture-output": true,
  });
  assert.equal(unb64((await waitFor(ctx, pid))["out-data"]), "hello via stdin\n");
});

Deno.test("guest-exec gives the child /dev/null as stdin without input-data", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, { path: "/bin/cat", "capture-output": true });
  assert.deepEqual(await waitFor(ctx, pid), { exited: true, exitcode: 0 });
});

Deno.test("guest-exec refuses bad base64 input-data before starting anything", async () => {
  const ctx = fakeContext();
  await assert.rejects(
    async () => await exec(ctx, { path: "/bin/invalid-cmd42", "input-data": "!!!" }),
    qgaError("Base64 data contains invalid characters"),
  );
});

Deno.test("guest-exec capture stdout drops stderr and capture stderr drops stdout", async () => {
  const ctx = fakeContext();
  const script = ["-c", "echo out; echo err >&2"];
  const a = await waitFor(
    ctx,
    await exec(ctx, { path: "/bin/sh", arg: script, "capture-output": "stdout" }),
  );
  assert.deepEqual(a, {
    exited: true,
    exitcode: 0,
    "out-data": b64("out\n"),
    "out-truncated": false,
  });
  const b = await waitFor(
    ctx,
    await exec(ctx, { path: "/bin/sh", arg: script, "capture-output": "stderr" }),
  );
  assert.deepEqual(b, {
    exited: true,
    exitcode: 0,
    "err-data": b64("err\n"),
    "err-truncated": false,
  });
  const c = await waitFor(
    ctx,
    await exec(ctx, { path: "/bin/sh", arg: script, "capture-output": "none" }),
  );
  assert.deepEqual(c, { exited: true, exitcode: 0 });
});

Deno.test("guest-exec merged capture puts stderr into out-data", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, {
    path: "/bin/sh",
    arg: ["-c", "echo one; sleep 0.05; echo two >&2; sleep 0.05; echo three"],
    "capture-output": "merged",
  });
  assert.deepEqual(await waitFor(ctx, pid), {
    exited: true,
    exitcode: 0,
    "out-data": b64("one\ntwo\nthree\n"),
    "out-truncated": false,
  });
});

Deno.test("guest-exec keeps 16 MiB of output and flags the rest as truncated", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, {
    path: "/usr/bin/head",
    arg: ["-c", "17000000", "/dev/zero"],
    "capture-output": true,
  });
  const st = await waitFor(ctx, pid);
  assert.equal(Uint8Array.fromBase64(st["out-data"] ?? "").length, EXEC_MAX_OUTPUT);
  assert.equal(st["out-truncated"], true);
  assert.equal(st.exitcode, 0);
});

Deno.test("guest-exec reports exited only after a grandchild closes the pipe", async () => {
  const ctx = fakeContext();
  const pid = await exec(ctx, {
    path: "/bin/sh",
    arg: ["-c", "(sleep 0.4; echo late) & echo early"],
    "capture-output": true,
  });
  await new Promise((r) => setTimeout(r, 150));
  assert.deepEqual(await guestExecStatus.handler({ pid: BigInt(pid) }, ctx), { exited: false });
  assert.equal(unb64((await waitFor(ctx, pid))["out-data"]), "early\nlate\n");
});

Deno.test({
  name: "guest-exec names the program the sandbox refuses",
  permissions: { run: ["/usr/bin/true"] },
  async fn() {
    const ctx = fakeContext();
    await assert.rejects(
      async () => await exec(ctx, { path: "/bin/echo" }),
      qgaError(
        "guest-exec: program '/bin/echo' is not permitted by the agent's sandbox (--allow-run)",
      ),
    );
    const pid = await exec(ctx, { path: "/usr/bin/true" });
    assert.deepEqual(await waitFor(ctx, pid), { exited: true, exitcode: 0 });
  },
});

Deno.test("guest-exec needs the exec programs as its run grant", () => {
  const needs = guestExec.needs;
  assert.ok(typeof needs === "function");
  const opts = fakeContext({
    options: { execPrograms: ["/usr/bin/uptime"], statedir: "/run/st" },
  }).options;
  const n = needs(opts);
  assert.deepEqual(n.run, ["/usr/bin/uptime"]);
  // the merged-output socket in the state dir, and PATH for the program lookup
  assert.deepEqual(n.net, ["unix:/run/st/qga-exec.sock"]);
  assert.deepEqual(n.env, ["PATH"]);
  assert.ok(n.read?.includes("/usr/bin") && n.read.includes("/run/st/qga-exec.sock"));
});

Deno.test("guest-exec refuses to track more than the bound of processes", async () => {
  const ctx = fakeContext();
  const pids: number[] = [];
  for (let i = 0; i < EXEC_MAX_TRACKED; i++) pids.push(await exec(ctx, { path: "/bin/true" }));
  await assert.rejects(
    async () => await exec(ctx, { path: "/bin/true" }),
    qgaError(/too many processes/),
  );
  for (const pid of pids) await waitFor(ctx, pid);
  assert.ok((await exec(ctx, { path: "/bin/true" })) > 0);
});
