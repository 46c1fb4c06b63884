/**
 * The agent side of privilege separation: system/real.ts and
 * system/helper_client.ts under scoped permissions, and the device transports
 * relayed by the helper over a socat pty pair (bytes both ways, hang-up, reopen).
 *
 * Run: deno test -A tests/unit/system_real_test.ts
 * (the scoped-permission checks run in a subprocess without --allow-all;
 * the pty tests need socat: apt-get install socat)
 */

import assert from "node:assert/strict";
import { SPAWN_VIA_SHELL } from "../helpers/helper_spawn.ts";
import { fileURLToPath } from "node:url";
import { type AgentOptions, DEFAULTS } from "../../config/options.ts";
import { helperInit } from "../../agent/run.ts";
import { startHelper } from "../../system/helper_client.ts";
import { createSystemAccess, isSpecialPath } from "../../system/real.ts";
import { SysError } from "../../system/mod.ts";
import type { Connection, Transport } from "../../transport/connection.ts";
import { openIsaSerialTransport } from "../../transport/isa_serial.ts";
import { openVirtioSerialTransport } from "../../transport/virtio_serial.ts";
import { parseVsockAddress } from "../../transport/vsock_listen.ts";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const LAUNCHER = here("../../helper/qga-helper");
const HELPER_MAIN = here("../../helper/main.ts");

function options(path: string, over: Partial<AgentOptions> = {}): AgentOptions {
  return {
    daemonize: false,
    method: "isa-serial",
    path,
    logfile: undefined,
    pidfile: DEFAULTS.pidfile,
    fsfreezeHook: undefined,
    statedir: "/tmp",
    verbose: false,
    retryPath: false,
    blockRpcs: [],
    allowRpcs: [],
    configPath: undefined,
    fileRoots: [],
    fileReadRoots: [],
    execPrograms: [],
    helper: LAUNCHER,
    printPermissions: false,
    ...over,
  };
}

/** A launcher for a helper that also accepts /dev/pts channels (tests only). */
async function testLauncher(dir: string): Promise<string> {
  const path = `${dir}/test-helper`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh\nexec '${Deno.execPath()}' run -A --no-config '${HELPER_MAIN}' --allow-pty-channels\n`,
  );
  await Deno.chmod(path, 0o755);
  return path;
}

/** socat pty pair: `a` is the agent's end, `b` the test's ("host") end. */
class PtyPair {
  readonly proc: Deno.ChildProcess;
  constructor(readonly a: string, readonly b: string) {
    try {
      this.proc = new Deno.Command("socat", {
        args: ["-d", "-d", `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`],
        stdout: "null",
        stderr: "null",
      }).spawn();
    } catch (e) {
      throw new Error(`this test needs socat (apt-get install socat): ${(e as Error).message}`);
    }
  }

  async ready(): Promise<void> {
    for (let i = 0; i < 200; i++) {
      try {
        await Deno.lstat(this.a);
        await Deno.lstat(this.b);
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 10));
      }
    }
    throw new Error("socat did not create the pty links");
  }

  async kill(): Promise<void> {
    try {
      this.proc.kill("SIGTERM");
    } catch {
      // already gone
    }
    await this.proc.status;
  }
}

async function readExactly(f: Deno.FsFile | Connection, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let got = 0;
  while (got < n) {
    const buf = new Uint8Array(n - got);
    const r = await f.read(buf);
    if (r === null) throw new Error(`EOF after ${got} of ${n} bytes`);
    out.set(buf.subarray(0, r), got);
    got += r;
  }
  return out;
}

function pattern(n: number, seed: number): Uint8Array {
  const p = new Uint8Array(n);
  for (let i = 0; i < n; i++) p[i] = (i * 31 + seed) & 0xff;
  return p;
}

Deno.test("special paths are recognised after normalisation", () => {
  assert.ok(isSpecialPath("/proc/stat"));
  assert.ok(isSpecialPath("/sys"));
  assert.ok(isSpecialPath("/tmp/../dev/null"));
  assert.ok(!isSpecialPath("/procx/stat"));
  assert.ok(!isSpecialPath("/etc/os-release"));
});

Deno.test("an agent without --allow-all reads /proc through the helper while Deno refuses it directly", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/agent_side.ts`;
    await Deno.writeTextFile(
      script,
      `
import { startHelper } from ${
        JSON.stringify(new URL("../../system/helper_client.ts", import.meta.url).href)
      };
import { createSystemAccess } from ${
        JSON.stringify(new URL("../../system/real.ts", import.meta.url).href)
      };
const out: Record<string, unknown> = {};
const err = (e: unknown) => { const x = e as { name: string; code?: string; message: string }; return [x.name, x.code ?? null, x.message]; };
try { await Deno.readFile("/proc/stat"); out.direct = "read"; } catch (e) { out.direct = err(e); }
const helper = await startHelper(${JSON.stringify(LAUNCHER)});
const sys = createSystemAccess(helper);
out.stat = (await sys.readTextFile("/proc/stat")).split("\\n")[0];
out.mountinfo = (await sys.readTextFile("/proc/self/mountinfo")).length > 0;
out.cpus = (await sys.readDir("/sys/devices/system/cpu")).some((e) => e.name === "cpu0");
out.statfs = await sys.statfs("/");
try { await sys.readTextFile("/proc/../etc/shadow"); out.traversal = "read"; } catch (e) { out.traversal = err(e); }
try { await sys.readTextFile("/proc/kcore"); out.kcore = "read"; } catch (e) { out.kcore = err(e); }
try { await sys.readTextFile("/proc/self/root/etc/shadow"); out.procRoot = "read"; } catch (e) { out.procRoot = err(e); }
try { await sys.readTextFile("/etc/shadow"); out.shadow = "read"; } catch (e) { out.shadow = err(e); }
try { await sys.writeFile("/sys/power/state", "reboot"); out.write = "written"; } catch (e) { out.write = err(e); }
await helper.close();
try { await sys.readTextFile("/proc/stat"); out.afterClose = "read"; } catch (e) { out.afterClose = err(e); }
console.log(JSON.stringify(out));
`,
    );
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--no-config",
        `--allow-run=${LAUNCHER}`,
        `--allow-read=${dir},/proc,/sys`,
        script,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(o.stderr);
    assert.equal(o.code, 0, stderr);
    const out = JSON.parse(new TextDecoder().decode(o.stdout));
    assert.equal(out.direct[0], "NotCapable");
    assert.match(out.direct[2], /Requires all access to "\/proc\/stat"/);
    assert.match(out.stat, /^cpu\s+\d+/);
    assert.equal(out.mountinfo, true);
    assert.equal(out.cpus, true);
    assert.ok(out.statfs.blocks > 0 && out.statfs.frsize > 0);
    assert.deepEqual(out.traversal.slice(0, 2), ["SandboxRefusal", "EPERM"]);
    // "/proc/../etc/shadow" is /etc/shadow: not special, so Deno itself refuses it.
    assert.match(out.traversal[2], /sandbox refused: Requires read access to "\/etc\/shadow"/);
    assert.deepEqual(out.procRoot.slice(0, 2), ["SandboxRefusal", "EPERM"]);
    assert.match(out.procRoot[2], /helper refused read of "\/proc\/self\/root\/etc\/shadow"/);
    assert.deepEqual(out.kcore.slice(0, 2), ["SandboxRefusal", "EPERM"]);
    assert.match(out.kcore[2], /"\/proc\/kcore": not in the allowlist/);
    assert.deepEqual(out.shadow.slice(0, 2), ["SandboxRefusal", "EPERM"]);
    assert.match(out.shadow[2], /sandbox refused/);
    assert.deepEqual(out.write.slice(0, 2), ["SandboxRefusal", "EINVAL"]);
    assert.deepEqual(out.afterClose.slice(0, 2), ["SysError", "EIO"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("startHelper reports a launcher that cannot run", async () => {
  await assert.rejects(startHelper("/nonexistent/qga-helper"), (e: unknown) => {
    assert.ok(e instanceof SysError);
    assert.equal(e.code, "ENOENT");
    return true;
  });
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/bad`, "#!/bin/sh\necho garbage\nexit 3\n");
    await Deno.chmod(`${dir}/bad`, 0o755);
    await assert.rejects(startHelper(`${dir}/bad`), /did not start/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("createSystemAccess without a helper refuses special paths with EPERM", async () => {
  const sys = createSystemAccess(undefined);
  await assert.rejects(sys.readFile("/proc/stat"), (e: unknown) => {
    assert.ok(e instanceof SysError);
    assert.equal(e.code, "EPERM");
    assert.match(e.message, /privileged helper is not running/);
    return true;
  });
});

async function withPty(
  fn: (ctx: { dir: string; launcher: string; pty: PtyPair }) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  const launcher = await testLauncher(dir);
  const pty = new PtyPair(`${dir}/A`, `${dir}/B`);
  try {
    await pty.ready();
    await fn({ dir, launcher, pty });
  } finally {
    await pty.kill();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("isa-serial relays bytes both ways, sees the hang-up and reopens with --retry-path", async () => {
  await withPty(async ({ dir, launcher, pty }) => {
    const opts = options(pty.a, { retryPath: true });
    const helper = await startHelper(launcher, helperInit(opts), { spawnVia: SPAWN_VIA_SHELL });
    let transport: Transport | undefined;
    try {
      const logs: string[] = [];
      transport = await openIsaSerialTransport(opts, helper, {
        retryDelayMs: 50,
        log: (_level, m) => logs.push(m),
      });
      const conn = await transport.accept();
      assert.ok(conn);
      assert.equal(conn.kind, "socket");
      using host = await Deno.open(pty.b, { read: true, write: true });

      // host -> agent, then agent -> host, including 0xFF and a large reply
      host.writeSync(
        new Uint8Array([0xff, ...new TextEncoder().encode('{"execute":"guest-ping"}\r\n')]),
      );
      const got = await readExactly(conn, 27);
      assert.equal(got[0], 0xff);
      assert.equal(new TextDecoder().decode(got.subarray(1)), '{"execute":"guest-ping"}\r\n');
      const big = pattern(200_000, 7);
      const [received] = await Promise.all([readExactly(host, big.length), conn.write(big)]);
      assert.deepEqual(received, big);

      // A pending channel read holds up neither a /proc read nor a write.
      const pending = conn.read(new Uint8Array(4096));
      const stat = new TextDecoder().decode(await helper.readFile("/proc/stat"));
      assert.match(stat, /^cpu /);
      await conn.write(new TextEncoder().encode("pong\n"));
      assert.equal(new TextDecoder().decode(await readExactly(host, 5)), "pong\n");
      host.writeSync(new TextEncoder().encode("x"));
      assert.equal(await pending, 1);

      // Hang-up: the far side goes away; the read ends with EOF (or EIO).
      host.close();
      await pty.kill();
      const end = await conn.read(new Uint8Array(16)).catch((e) => e);
      assert.ok(end === null || (end instanceof SysError && end.code === "EIO"), String(end));
      conn.close();

      // --retry-path: accept() reopens once the device is back.
      const next = transport.accept();
      await new Promise((r) => setTimeout(r, 150));
      const pty2 = new PtyPair(`${dir}/A`, `${dir}/B`);
      try {
        await pty2.ready();
        const conn2 = await next;
        assert.ok(conn2);
        using host2 = await Deno.open(pty2.b, { read: true, write: true });
        host2.writeSync(new TextEncoder().encode("again"));
        assert.equal(new TextDecoder().decode(await readExactly(conn2, 5)), "again");
        await conn2.write(new TextEncoder().encode("ok"));
        assert.equal(new TextDecoder().decode(await readExactly(host2, 2)), "ok");
        conn2.close();
      } finally {
        await pty2.kill();
      }
      assert.ok(logs.some((m) => m.startsWith("waiting for channel path")), logs.join("\n"));
    } finally {
      transport?.close();
      await helper.close();
    }
  });
});

Deno.test("isa-serial puts the tty in raw mode: CR, LF and control bytes pass unchanged", async () => {
  await withPty(async ({ launcher, pty }) => {
    const helper = await startHelper(launcher, helperInit(options(pty.a)), {
      spawnVia: SPAWN_VIA_SHELL,
    });
    const transport = await openIsaSerialTransport(options(pty.a), helper);
    try {
      const conn = await transport.accept();
      assert.ok(conn);
      using host = await Deno.open(pty.b, { read: true, write: true });
      const all = new Uint8Array(256).map((_, i) => i);
      host.writeSync(all);
      assert.deepEqual(await readExactly(conn, 256), all);
      await conn.write(all);
      assert.deepEqual(await readExactly(host, 256), all);
      conn.close();
    } finally {
      transport.close();
      await helper.close();
    }
  });
});

Deno.test("the relay hands over every byte in order when the agent reads less than has arrived", async () => {
  await withPty(async ({ launcher, pty }) => {
    const helper = await startHelper(launcher, helperInit(options(pty.a)), {
      spawnVia: SPAWN_VIA_SHELL,
    });
    const transport = await openIsaSerialTransport(options(pty.a), helper);
    try {
      const conn = await transport.accept();
      assert.ok(conn);
      using host = await Deno.open(pty.b, { read: true, write: true });
      // The relay reads up to 64 KiB at a time; the agent asks for 1000 bytes, so most
      // reads leave part of a chunk queued for the next one.
      const sent = pattern(150_000, 3);
      const write = (async () => {
        for (let off = 0; off < sent.length;) off += await host.write(sent.subarray(off));
      })();
      const got = new Uint8Array(sent.length);
      let n = 0;
      while (n < sent.length) {
        const buf = new Uint8Array(1000);
        let timer: ReturnType<typeof setTimeout> | undefined;
        const r: number | null | "stalled" = await Promise.race([
          conn.read(buf),
          new Promise<"stalled">((res) => timer = setTimeout(() => res("stalled"), 10_000)),
        ]);
        clearTimeout(timer);
        assert.ok(r !== "stalled" && r !== null, `the relay stopped after ${n} bytes: ${r}`);
        got.set(buf.subarray(0, Math.min(r, sent.length - n)), n);
        n += r;
      }
      await write;
      assert.equal(n, sent.length);
      assert.deepEqual(got, sent);
      conn.close();
    } finally {
      transport.close();
      await helper.close();
    }
  });
});

Deno.test("virtio-serial over the helper is a device connection and relays both ways", async () => {
  await withPty(async ({ launcher, pty }) => {
    const opts = options(pty.a, { method: "virtio-serial" });
    const helper = await startHelper(launcher, helperInit(opts), { spawnVia: SPAWN_VIA_SHELL });
    const transport = await openVirtioSerialTransport(opts, helper);
    try {
      assert.equal(transport.description, `virtio-serial ${pty.a}`);
      const conn = await transport.accept();
      assert.ok(conn);
      assert.equal(conn.kind, "device");
      using host = await Deno.open(pty.b, { read: true, write: true });
      host.writeSync(new TextEncoder().encode("ping"));
      assert.equal(new TextDecoder().decode(await readExactly(conn, 4)), "ping");
      await conn.write(new TextEncoder().encode("{}\n"));
      assert.equal(new TextDecoder().decode(await readExactly(host, 3)), "{}\n");
      conn.close();
      // Without --retry-path, a closed device is not reopened: the agent stops.
      assert.equal(await transport.accept(), null);
    } finally {
      transport.close();
      await helper.close();
    }
  });
});

Deno.test("a missing channel fails at once without --retry-path and is awaited with it", async () => {
  const dir = await Deno.makeTempDir();
  const launcher = await testLauncher(dir);
  const virtio = options(`${dir}/A`, { method: "virtio-serial" });
  const first = await startHelper(launcher, helperInit(virtio), { spawnVia: SPAWN_VIA_SHELL });
  try {
    await assert.rejects(openVirtioSerialTransport(virtio, first), (e: unknown) => {
      assert.ok(e instanceof SysError);
      assert.equal(e.code, "ENOENT");
      assert.equal(e.message, "No such file or directory");
      return true;
    });
  } finally {
    await first.close();
  }
  const isa = options(`${dir}/A`, { retryPath: true });
  const helper = await startHelper(launcher, helperInit(isa));
  try {
    const logs: string[] = [];
    const t = await openIsaSerialTransport(isa, helper, {
      retryDelayMs: 50,
      log: (level, m) => logs.push(`${level}: ${m}`),
    });
    assert.match(
      logs[0] ?? "",
      /^critical: error opening channel '.*\/A': No such file or directory$/,
    );
    const accepted = t.accept();
    await new Promise((r) => setTimeout(r, 120));
    const pty = new PtyPair(`${dir}/A`, `${dir}/B`);
    try {
      await pty.ready();
      const conn = await accepted;
      assert.ok(conn);
      conn.close();
    } finally {
      t.close();
      await pty.kill();
    }
    // A closed transport's accept resolves null.
    assert.equal(await t.accept(), null);
  } finally {
    await helper.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the production helper refuses a channel outside the allowlist at start, and any channel but the one named", async () => {
  await assert.rejects(
    startHelper(LAUNCHER, helperInit(options("/etc/passwd"))),
    /did not start: helper refused channel init of "\/etc\/passwd": not in the allowlist/,
  );
  const helper = await startHelper(LAUNCHER, helperInit(options("/dev/ttyS0")));
  try {
    await assert.rejects(openIsaSerialTransport(options("/etc/passwd"), helper), (e: unknown) => {
      assert.ok(e instanceof SysError);
      assert.equal(e.code, "EPERM");
      assert.match(e.message, /refused channel open of "\/etc\/passwd": not the channel named/);
      return true;
    });
  } finally {
    await helper.close();
  }
});

Deno.test("stdio serves a pipe as a socket-like client and /dev/null as a device", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/echo.ts`;
    await Deno.writeTextFile(
      script,
      `
import { openStdioTransport } from ${
        JSON.stringify(new URL("../../transport/stdio.ts", import.meta.url).href)
      };
const t = await openStdioTransport();
const conn = (await t.accept())!;
const buf = new Uint8Array(4096);
let total = 0;
for (;;) {
  const n = await conn.read(buf);
  if (n === null) break;
  total += n;
  await conn.write(buf.subarray(0, n).map((b) => b >= 97 && b <= 122 ? b - 32 : b));
}
conn.close();
Deno.stderr.writeSync(new TextEncoder().encode(conn.kind + " " + total + " " + String(await t.accept())));
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--no-config", script],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode('{"execute":"guest-ping"}\n'));
    await w.close();
    const o = await child.output();
    assert.equal(new TextDecoder().decode(o.stdout), '{"EXECUTE":"GUEST-PING"}\n');
    assert.equal(new TextDecoder().decode(o.stderr), "socket 25 null");

    const o2 = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { stdioKind } from ${
          JSON.stringify(new URL("../../transport/stdio.ts", import.meta.url).href)
        }; console.log(await stdioKind());`,
      ],
      stdin: "null",
      stdout: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(o2.stdout).trim(), "device");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vsock addresses are parsed as qemu does", () => {
  assert.deepEqual(parseVsockAddress("3:1234"), { cid: 3, port: 1234 });
  assert.deepEqual(parseVsockAddress("4294967295:5"), { cid: 4294967295, port: 5 });
  for (const bad of ["3", "-1:5", "3:x", ":5", "3:5:", "4294967296:1", " 3:5"]) {
    assert.throws(() => parseVsockAddress(bad), { message: `error parsing address '${bad}'` });
  }
});
