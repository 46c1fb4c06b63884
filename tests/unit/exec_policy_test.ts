/**
 * guest-exec's own program check (commands/exec_policy.ts, issue 13 finding 1): a program
 * Deno's --allow-run would allow but --exec-programs does not list is refused before
 * anything is spawned; bare names and symlinked spellings are found and compared as
 * qemu-ga's g_spawn and realpath see them.
 */

import assert from "node:assert/strict";
import { findProgram, notListedMessage, programToSpawn } from "../../commands/exec_policy.ts";
import { guestExec, guestExecStatus } from "../../commands/exec.ts";
import { QgaError } from "../../protocol/errors.ts";
import { fakeContext } from "../helpers/fake_context.ts";

function refusedWith(desc: string) {
  return (e: unknown) => e instanceof QgaError && e.message === desc;
}

async function withBinDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qga-exec-policy-" });
  try {
    await Deno.writeTextFile(`${dir}/tool`, '#!/bin/sh\necho tool "$0"\n', { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/plain`, "not executable\n", { mode: 0o644 });
    await Deno.symlink(`${dir}/tool`, `${dir}/alias`);
    await Deno.writeTextFile(`${dir}/other`, "#!/bin/sh\necho other\n", { mode: 0o755 });
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("findProgram looks a bare name up in PATH and skips files without an execute bit", async () => {
  await withBinDir((dir) => {
    assert.equal(findProgram("tool", `/nonexistent:${dir}`), `${dir}/tool`);
    assert.equal(findProgram("plain", dir), null);
    assert.equal(findProgram("missing", dir), null);
    assert.equal(findProgram(`${dir}/plain`, "/usr/bin"), `${dir}/plain`); // a path is taken as is
  });
});

Deno.test("without --exec-programs every program is spawned as requested", () => {
  assert.equal(
    programToSpawn("/usr/bin/date", { listed: [], agentPath: "/usr/bin" }),
    "/usr/bin/date",
  );
});

Deno.test("a granted-but-not-listed program is refused with a message naming the option", async () => {
  await withBinDir((dir) => {
    assert.throws(
      () => programToSpawn(`${dir}/other`, { listed: [`${dir}/tool`], agentPath: dir }),
      refusedWith(notListedMessage(`${dir}/other`)),
    );
    assert.throws(
      () => programToSpawn("/usr/bin/date", { listed: ["/bin/echo"], agentPath: "/usr/bin:/bin" }),
      refusedWith(notListedMessage("/usr/bin/date")),
    );
  });
});

Deno.test("a bare listed name and a bare requested name resolve through PATH", async () => {
  await withBinDir((dir) => {
    assert.equal(programToSpawn("tool", { listed: ["tool"], agentPath: dir }), `${dir}/tool`);
    // the host's env PATH is searched first, as g_spawn's SEARCH_PATH_FROM_ENVP
    assert.equal(
      programToSpawn("tool", {
        listed: [`${dir}/tool`],
        agentPath: "/usr/bin",
        env: [`PATH=${dir}`],
      }),
      `${dir}/tool`,
    );
  });
});

Deno.test("a symlinked spelling of a listed program spawns the listed spelling", async () => {
  await withBinDir((dir) => {
    assert.equal(
      programToSpawn(`${dir}/alias`, { listed: [`${dir}/tool`], agentPath: dir }),
      `${dir}/tool`,
    );
    assert.equal(
      programToSpawn(`${dir}/tool`, { listed: [`${dir}/alias`], agentPath: dir }),
      `${dir}/alias`,
    );
  });
});

Deno.test("a missing program gives GLib's spawn error, as qemu-ga does", () => {
  assert.throws(
    () => programToSpawn("/bin/invalid-cmd42", { listed: ["/bin/echo"], agentPath: "/bin" }),
    refusedWith(
      "Failed to execute child process \u201C/bin/invalid-cmd42\u201D (No such file or directory)",
    ),
  );
});

Deno.test("guest-exec of date -f /etc/shadow under --exec-programs=/bin/echo is refused and spawns nothing", async () => {
  const ctx = fakeContext({ options: { execPrograms: ["/bin/echo"] } });
  await assert.rejects(
    async () =>
      await guestExec.handler(
        { path: "/usr/bin/date", arg: ["-f", "/etc/shadow"], "capture-output": true },
        ctx,
      ),
    refusedWith(notListedMessage("/usr/bin/date")),
  );
  // nothing was started: the exec table has no entry, not even a failed one
  assert.equal(ctx.store<{ size: number }>("exec", () => ({ size: -1 })).size, 0);
  const listed = await guestExec.handler({
    path: "echo",
    arg: ["-n", "ok"],
    "capture-output": true,
  }, ctx);
  for (let i = 0; i < 500; i++) {
    const st = await guestExecStatus.handler({ pid: BigInt(listed.pid) }, ctx);
    if (st.exited) {
      assert.equal(new TextDecoder().decode(Uint8Array.fromBase64(st["out-data"] ?? "")), "ok");
      return;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail("echo did not finish");
});
