/**
 * The helper's program templates (helper/programs.ts): every request a
 * compromised agent could send is either exactly one of the fixed command lines
 * or refused, and the helper itself (raw frames, as a compromised agent would
 * speak) refuses the hostile ones before anything runs. No test here runs a
 * program that changes the machine: the only accepted request that is executed
 * is the fsfreeze hook, pointed at a script in a temporary directory.
 *
 * Run: deno test -A tests/unit/helper_programs_test.ts
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { checkHookPath, invocation, type InvocationContext } from "../../helper/programs.ts";
import { OpError } from "../../helper/ops.ts";
import {
  encodeFrame,
  type Frame,
  FrameDecoder,
  jsonPayload,
  MAX_REPLY_PAYLOAD,
  Op,
  parseJsonPayload,
  Reply,
} from "../../helper/protocol.ts";

const CTX: InvocationContext = {
  fsfreezeHook: "/etc/qemu/fsfreeze-hook",
  isMountPoint: (p) => p === "/" || p === "/data",
};

const refused = (code = "EINVAL") => (e: unknown) =>
  e instanceof OpError && e.code === code && e.message.startsWith("helper refused");

Deno.test("each program is one fixed command line", () => {
  const argv = (req: unknown) => invocation(req, CTX).argv;
  assert.deepEqual(argv({ program: "set-clock", seconds: 1700000000, microseconds: 42 }), [
    "/usr/bin/date",
    "-u",
    "-s",
    "@1700000000.000042",
  ]);
  assert.deepEqual(argv({ program: "set-clock", seconds: -3600, microseconds: 0 }), [
    "/usr/bin/date",
    "-u",
    "-s",
    "@-3600.000000",
  ]);
  assert.deepEqual(argv({ program: "hwclock", direction: "to-hardware" }), ["/sbin/hwclock", "-w"]);
  assert.deepEqual(argv({ program: "hwclock", direction: "from-hardware" }), [
    "/sbin/hwclock",
    "-s",
  ]);
  assert.deepEqual(argv({ program: "fsfreeze", action: "freeze", mountpoint: "/data" }), [
    "/usr/sbin/fsfreeze",
    "--freeze",
    "/data",
  ]);
  assert.deepEqual(argv({ program: "fstrim", minimum: "18446744073709551615", mountpoint: "/" }), [
    "/usr/sbin/fstrim",
    "-v",
    "-m",
    "18446744073709551615",
    "/",
  ]);
  assert.deepEqual(argv({ program: "power-program", mode: "halt" }), ["/sbin/halt"]);
  assert.deepEqual(argv({ program: "shutdown", mode: "reboot" }), [
    "/sbin/shutdown",
    "-h",
    "-r",
    "+0",
    "hypervisor initiated shutdown",
  ]);
  assert.deepEqual(argv({ program: "suspend-check-systemd", mode: "hybrid" }), [
    "/usr/bin/systemctl",
    "status",
    "systemd-hybrid-sleep",
  ]);
  assert.deepEqual(argv({ program: "suspend-pm", mode: "disk" }), ["/usr/sbin/pm-hibernate"]);
  assert.deepEqual(argv({ program: "fsfreeze-hook", arg: "thaw" }), [
    "/etc/qemu/fsfreeze-hook",
    "thaw",
  ]);
  const chpasswd = invocation({
    program: "chpasswd",
    crypted: true,
    username: "alice",
    password: new TextEncoder().encode("$6$x$y").toBase64(),
  }, CTX);
  assert.deepEqual(chpasswd.argv, ["/usr/sbin/chpasswd", "-e"]);
  assert.equal(new TextDecoder().decode(chpasswd.stdin), "alice:$6$x$y\n");
  assert.deepEqual(chpasswd.env, { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" });
});

Deno.test("option-looking or non-integer values never reach a command line", () => {
  const bad: unknown[] = [
    // date -f FILE reads any file: the time is two integers, nothing else
    { program: "set-clock", seconds: "-f /etc/shadow", microseconds: 0 },
    { program: "set-clock", seconds: 1.5, microseconds: 0 },
    { program: "set-clock", seconds: 1, microseconds: 1_000_000 },
    { program: "set-clock", seconds: 1, microseconds: -1 },
    { program: "set-clock", seconds: 2 ** 60, microseconds: 0 },
    { program: "hwclock", direction: "--hctosys" },
    // fsfreeze and fstrim: only a current mount point
    { program: "fsfreeze", action: "freeze", mountpoint: "-R" },
    { program: "fsfreeze", action: "freeze", mountpoint: "/etc" },
    { program: "fsfreeze", action: "--freeze", mountpoint: "/" },
    { program: "fsfreeze", action: "freeze", mountpoint: "/data\0" },
    { program: "fstrim", minimum: "-1", mountpoint: "/" },
    { program: "fstrim", minimum: "18446744073709551616", mountpoint: "/" },
    { program: "fstrim", minimum: "0", mountpoint: "--fstab" },
    { program: "shutdown", mode: "-k" },
    { program: "suspend-systemd", mode: "poweroff" },
    { program: "fsfreeze-hook", arg: "--help" },
    // chpasswd -R DIR: no option can be added, and the input stays one line
    { program: "chpasswd", crypted: false, username: "a:b", password: "eA==" },
    { program: "chpasswd", crypted: false, username: "a\nroot", password: "eA==" },
    { program: "chpasswd", crypted: false, username: "a", password: "eAp5" }, // "x\ny"
    { program: "chpasswd", crypted: "-R /tmp", username: "a", password: "eA==" },
    { program: "chpasswd", crypted: false, username: "a", password: "not base64!" },
    { program: "sh" },
    { program: "/bin/sh" },
    { argv: ["/bin/sh", "-c", "id"] },
    null,
    "set-clock",
  ];
  for (const req of bad) {
    assert.throws(() => invocation(req, CTX), refused(), JSON.stringify(req));
  }
});

Deno.test("the fsfreeze hook runs only when one was given at start", () => {
  assert.throws(
    () => invocation({ program: "fsfreeze-hook", arg: "freeze" }, { ...CTX, fsfreezeHook: null }),
    refused("EPERM"),
  );
  assert.equal(checkHookPath(null), null);
  assert.equal(checkHookPath("/etc/qemu/fsfreeze-hook"), "/etc/qemu/fsfreeze-hook");
  for (const bad of ["", "-x", "/a\0b", 7]) {
    assert.throws(() => checkHookPath(bad), refused(), JSON.stringify(bad));
  }
});

// ---------------------------------------------------------------------------------
// The helper process itself, in raw frames.

const MAIN = fileURLToPath(new URL("../../helper/main.ts", import.meta.url));
import { SPAWN_VIA_SHELL } from "../helpers/helper_spawn.ts";

const LAUNCHER = fileURLToPath(new URL("../../helper/qga-helper", import.meta.url));

class Raw {
  readonly child: Deno.ChildProcess;
  readonly #w: WritableStreamDefaultWriter<Uint8Array>;
  readonly #r: ReadableStreamDefaultReader<Uint8Array>;
  readonly #d = new FrameDecoder(MAX_REPLY_PAYLOAD);
  readonly #q: Frame[] = [];
  #id = 1;
  constructor(argv: string[]) {
    const [program, ...args] = [...SPAWN_VIA_SHELL, ...argv];
    this.child = new Deno.Command(program!, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#w = this.child.stdin.getWriter();
    this.#r = this.child.stdout.getReader();
  }
  async ask(op: number, payload: unknown): Promise<{ type: number; value: unknown }> {
    const id = this.#id++;
    await this.#w.write(encodeFrame(op, id, jsonPayload(payload)));
    while (this.#q.length === 0) {
      const { value, done } = await this.#r.read();
      if (done) throw new Error("helper closed its stdout");
      this.#q.push(...this.#d.push(value));
    }
    const f = this.#q.shift()!;
    assert.equal(f.id, id);
    return { type: f.type, value: f.payload.length ? parseJsonPayload(f.payload) : null };
  }
  async close(): Promise<void> {
    await this.#w.close().catch(() => {});
    this.#r.releaseLock();
    await this.child.stdout.cancel();
    await this.child.status;
  }
}

Deno.test("Init is accepted once, as the first request; a later one is refused and changes nothing", async () => {
  const dir = await Deno.makeTempDir();
  const h = new Raw([LAUNCHER]);
  try {
    const hook = `${dir}/hook`;
    await Deno.writeTextFile(
      hook,
      "#!/bin/sh\necho \"hook $1 $PWD $(env | sort | tr '\\n' ' ')\"\n",
    );
    await Deno.chmod(hook, 0o755);
    const init = await h.ask(Op.Init, { fsfreezeHook: hook, channel: null });
    assert.equal(init.type, Reply.Json);
    const again = await h.ask(Op.Init, { fsfreezeHook: "/bin/sh", channel: null });
    assert.equal(again.type, Reply.Error);
    assert.match((again.value as { message: string }).message, /only the first request/);
    const r = await h.ask(Op.Run, { program: "fsfreeze-hook", arg: "freeze" });
    assert.equal(r.type, Reply.Json);
    const ran = r.value as { code: number; output: string };
    assert.equal(ran.code, 0);
    // The hook given first, cwd /, an empty environment apart from PATH (dash adds PWD).
    assert.equal(
      new TextDecoder().decode(Uint8Array.fromBase64(ran.output)),
      "hook freeze / PATH=/usr/sbin:/usr/bin:/sbin:/bin PWD=/ \n",
    );
  } finally {
    await h.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the helper refuses hostile Run requests before anything runs", async () => {
  const h = new Raw([Deno.execPath(), "run", "-A", "--no-config", MAIN]);
  try {
    assert.equal((await h.ask(Op.Init, { fsfreezeHook: null, channel: null })).type, Reply.Json);
    for (
      const req of [
        { program: "set-clock", seconds: "-f /etc/shadow", microseconds: 0 },
        { program: "fsfreeze", action: "freeze", mountpoint: "/etc" },
        { program: "fstrim", minimum: "0", mountpoint: "-o" },
        { program: "fsfreeze-hook", arg: "freeze" },
        { program: "chpasswd", crypted: false, username: "x\nroot", password: "eA==" },
        { program: "exec", path: "/bin/sh" },
      ]
    ) {
      const r = await h.ask(Op.Run, req);
      assert.equal(r.type, Reply.Error, JSON.stringify(req));
      assert.match((r.value as { message: string }).message, /^helper refused run/);
    }
  } finally {
    await h.close();
  }
});

Deno.test("a hook that cannot be executed is a spawn error with its errno", async () => {
  const h = new Raw([LAUNCHER]);
  try {
    const hook = "/nonexistent/qga-hook";
    assert.equal((await h.ask(Op.Init, { fsfreezeHook: hook, channel: null })).type, Reply.Json);
    const r = await h.ask(Op.Run, { program: "fsfreeze-hook", arg: "thaw" });
    assert.equal(r.type, Reply.Json);
    assert.equal((r.value as { spawnError: string }).spawnError, "ENOENT");
  } finally {
    await h.close();
  }
});
