/**
 * The privileged helper on its own: launched through helper/qga-helper and
 * spoken to in raw frames, so hostile requests (traversal, symlinks out of the
 * allowlist, unknown ops, oversized or malformed frames, bad write values) can
 * be sent exactly as a compromised agent would. No test writes a value the
 * helper would accept: every write here must be refused.
 *
 * Run: deno test -A tests/unit/helper_test.ts
 */

import assert from "node:assert/strict";
import { SPAWN_VIA_SHELL } from "../helpers/helper_spawn.ts";
import { fileURLToPath as fromFileUrl } from "node:url";
import {
  channelReadPayload,
  encodeFrame,
  type Frame,
  FrameDecoder,
  jsonPayload,
  MAX_REPLY_PAYLOAD,
  MAX_REQUEST_PAYLOAD,
  Op,
  parseJsonPayload,
  Reply,
  textPayload,
} from "../../helper/protocol.ts";
import { checkShape, compilePattern, filterAuxv, mountPoints, Ops } from "../../helper/ops.ts";

const LAUNCHER = fromFileUrl(new URL("../../helper/qga-helper", import.meta.url));

/** helper/main.ts started directly, with the test-only pty channel rule. */
function testHelperCommand(): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    "--no-config",
    fromFileUrl(new URL("../../helper/main.ts", import.meta.url)),
    "--allow-pty-channels",
  ];
}

/** A raw-frame session with a freshly launched helper. */
class Raw {
  readonly child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new FrameDecoder(MAX_REPLY_PAYLOAD);
  readonly #queue: Frame[] = [];
  #id = 1;

  constructor(
    args: string[] = [],
    env: Record<string, string> = {},
    command: string[] = [LAUNCHER],
  ) {
    const [program, ...pre] = [...SPAWN_VIA_SHELL, ...command] as [string, ...string[]];
    this.child = new Deno.Command(program, {
      args: [...pre, ...args],
      env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.child.stdin.getWriter();
    this.#reader = this.child.stdout.getReader();
  }

  async sendRaw(bytes: Uint8Array): Promise<void> {
    await this.#writer.write(bytes);
  }

  async next(): Promise<Frame | undefined> {
    while (this.#queue.length === 0) {
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#queue.push(...this.#decoder.push(value));
    }
    return this.#queue.shift();
  }

  async ask(op: number, payload: Uint8Array | string): Promise<Frame> {
    const id = this.#id++;
    const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
    await this.sendRaw(encodeFrame(op, id, bytes));
    const f = await this.next();
    assert.ok(f, "helper closed its stdout");
    assert.equal(f.id, id);
    return f;
  }

  async close(): Promise<Deno.CommandStatus> {
    try {
      await this.#writer.close();
    } catch {
      // already closed
    }
    const [status] = await Promise.all([this.child.status, this.child.stderr.cancel()]);
    this.#reader.releaseLock();
    await this.child.stdout.cancel();
    return status;
  }
}

function errorOf(f: Frame): { code: string; message: string } {
  assert.equal(
    f.type,
    Reply.Error,
    `expected an error reply, got type ${f.type}: ${textPayload(f.payload)}`,
  );
  return parseJsonPayload(f.payload) as { code: string; message: string };
}

async function withHelper(fn: (h: Raw) => Promise<void>, args: string[] = []): Promise<void> {
  const h = new Raw(args);
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

Deno.test("the helper reads /proc/self/mountinfo and /proc/stat", async () => {
  await withHelper(async (h) => {
    const mi = await h.ask(Op.ReadFile, "/proc/self/mountinfo");
    assert.equal(mi.type, Reply.Data);
    assert.match(textPayload(mi.payload), /^\d+ \d+ \d+:\d+ \S+ \/ /m);
    const stat = await h.ask(Op.ReadFile, "/proc/stat");
    assert.equal(stat.type, Reply.Data);
    assert.match(textPayload(stat.payload), /^cpu0 \d+/m);
    const net = await h.ask(Op.ReadFile, "/proc/net/dev");
    assert.match(textPayload(net.payload), /\blo:/);
  });
});

Deno.test("the helper refuses /etc/shadow, naming the op and the path", async () => {
  await withHelper(async (h) => {
    const e = errorOf(await h.ask(Op.ReadFile, "/etc/shadow"));
    assert.equal(e.code, "EPERM");
    assert.match(e.message, /refused read of "\/etc\/shadow": not in the allowlist/);
  });
});

Deno.test("the helper refuses '..', '.', empty segments, relative paths and NUL", async () => {
  await withHelper(async (h) => {
    for (
      const p of [
        "/proc/../etc/shadow",
        "/sys/class/net/lo/../../../../etc/passwd/address",
        "/proc/./stat",
        "/proc//stat",
        "proc/stat",
        "/proc/stat\0",
        "",
      ]
    ) {
      const e = errorOf(await h.ask(Op.ReadFile, p));
      assert.ok(
        ["EPERM", "EINVAL", "ENAMETOOLONG"].includes(e.code),
        `${JSON.stringify(p)}: ${e.code}`,
      );
      assert.match(e.message, /helper refused/);
    }
  });
});

Deno.test("the helper refuses a symlink that resolves outside the allowlist", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.symlink("/etc/shadow", `${dir}/shadow`);
    await Deno.symlink("/dev/null", `${dir}/null`);
    for (const [link, target] of [["shadow", "/etc/shadow"], ["null", "/dev/null"]]) {
      // A test-mode helper accepts channel paths through any symlink, but only when
      // the target is a pty: the check after resolving symlinks is what refuses these.
      const h = new Raw([], {}, testHelperCommand());
      try {
        const channel = { path: `${dir}/${link}`, mode: "isa-serial" };
        const init = await h.ask(Op.Init, jsonPayload({ fsfreezeHook: null, channel }));
        assert.equal(init.type, Reply.Json);
        const e = errorOf(await h.ask(Op.ChannelOpen, jsonPayload(channel)));
        assert.equal(e.code, "EPERM");
        assert.ok(e.message.includes(`"${target}" (after resolving symlinks)`), e.message);
        // /sys/class/net/lo is a symlink that stays inside the allowlist.
        const ok = await h.ask(Op.RealPath, "/sys/class/net/lo");
        assert.equal(textPayload(ok.payload), "/sys/devices/virtual/net/lo");
        // /dev/stdin resolves into /proc/self/fd: refused before and after resolving.
        assert.equal(errorOf(await h.ask(Op.RealPath, "/dev/stdin")).code, "EPERM");
      } finally {
        await h.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/**
 * The launched helper in a mount namespace of its own where a tmpfs covers /sys/class,
 * with `links` (name under /sys/class -> target) planted there: paths the allowlist
 * grants as requested, leading wherever the links point. Needs root (unshare -m, mount).
 */
function helperWithPlantedLinks(links: Record<string, string>): Raw {
  const plant = Object.entries(links).map(([name, target]) =>
    `mkdir -p "$(dirname /sys/class/${name})" && ln -s '${target}' /sys/class/${name}`
  ).join(" && ");
  const script = `mount -t tmpfs qga-test /sys/class && ${plant} && exec "$0"`;
  return new Raw([], {}, [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    script,
    LAUNCHER,
  ]);
}

Deno.test("an allowlisted path whose symlink leads outside the allowlist is refused after resolving", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qga-helper-escape-" });
  // World-readable, so only the allowlist check on the resolved path can refuse it.
  const secret = `${dir}/secret`;
  await Deno.writeTextFile(secret, "outside the allowlist\n");
  await Deno.chmod(secret, 0o644);
  await Deno.chmod(dir, 0o755);
  const h = helperWithPlantedLinks({
    "evil/uevent": secret, // /sys/{class}/{path}/uevent: a read rule
    "evil-dir": dir, // /sys/{class}/{path}: a list rule
    "inside": "/sys/devices/system/cpu", // stays inside: served
  });
  try {
    // The helper sees the planted tree (the test is not vacuous).
    const listed = parseJsonPayload((await h.ask(Op.ReadDir, "/sys/class")).payload) as {
      name: string;
    }[];
    assert.deepEqual(listed.map((e) => e.name).sort(), ["evil", "evil-dir", "inside"]);
    for (
      const [op, path, target] of [
        [Op.ReadFile, "/sys/class/evil/uevent", secret],
        [Op.RealPath, "/sys/class/evil/uevent", secret],
        [Op.RealPath, "/sys/class/evil-dir", dir],
        [Op.ReadDir, "/sys/class/evil-dir", dir],
      ] as const
    ) {
      const e = errorOf(await h.ask(op, path));
      assert.equal(e.code, "EPERM", `${op} ${path}: ${e.message}`);
      assert.ok(e.message.includes(`"${target}" (after resolving symlinks)`), e.message);
    }
    const inside = await h.ask(Op.RealPath, "/sys/class/inside");
    assert.equal(textPayload(inside.payload), "/sys/devices/system/cpu");
    const cpus = parseJsonPayload((await h.ask(Op.ReadDir, "/sys/class/inside")).payload) as {
      name: string;
    }[];
    assert.ok(cpus.some((e) => e.name === "cpu0"));
  } finally {
    const status = await h.close();
    await Deno.remove(dir, { recursive: true });
    assert.equal(status.code, 0, "the helper in its namespace did not exit 0");
  }
});

Deno.test("the launcher ignores its arguments and environment", async () => {
  // --allow-pty-channels would enable /dev/pts channels if it reached main.ts.
  const h = new Raw(["--allow-pty-channels"], {
    DENO_DIR: "/nonexistent",
    DENO_V8_FLAGS: "--bogus",
  });
  try {
    const channel = { path: "/dev/pts/0", mode: "isa-serial" };
    const e = errorOf(await h.ask(Op.Init, jsonPayload({ fsfreezeHook: null, channel })));
    assert.equal(e.code, "EPERM");
    assert.match(e.message, /channel init of "\/dev\/pts\/0": not in the allowlist/);
    const e1 = errorOf(await h.ask(Op.ChannelOpen, jsonPayload(channel)));
    assert.equal(e1.code, "EPERM");
    assert.match(e1.message, /not the channel named at start/);
    const e2 = errorOf(
      await h.ask(Op.ChannelOpen, jsonPayload({ path: "/dev/ttyS0", mode: "telnet" })),
    );
    assert.match(e2.message, /unknown mode/);
  } finally {
    await h.close();
  }
});

Deno.test("the helper answers unknown operations with EOPNOTSUPP and keeps serving", async () => {
  await withHelper(async (h) => {
    const e = errorOf(await h.ask(99, "/proc/stat"));
    assert.equal(e.code, "EOPNOTSUPP");
    assert.match(e.message, /unknown operation 99/);
    const f = await h.ask(Op.Exists, "/sys/devices/system/cpu");
    assert.equal(parseJsonPayload(f.payload), true);
  });
});

Deno.test("the helper rejects malformed JSON and non-string values", async () => {
  await withHelper(async (h) => {
    assert.equal(errorOf(await h.ask(Op.WriteFile, "{not json")).code, "EINVAL");
    assert.equal(errorOf(await h.ask(Op.WriteFile, "null")).code, "EINVAL");
    const e = errorOf(
      await h.ask(
        Op.WriteFile,
        jsonPayload({ path: "/sys/devices/system/cpu/cpu1/online", data: 1 }),
      ),
    );
    assert.equal(e.code, "EINVAL");
    assert.equal(
      errorOf(await h.ask(Op.ReadFile, new Uint8Array([0x2f, 0xff, 0xfe]))).code,
      "EINVAL",
    );
  });
});

Deno.test("the helper refuses write values and files outside the write allowlist", async () => {
  await withHelper(async (h) => {
    const cases: [string, string, string][] = [
      ["/sys/devices/system/cpu/cpu1/online", "2", "EINVAL"],
      ["/sys/devices/system/cpu/cpu1/online", "1; reboot", "EINVAL"],
      ["/sys/devices/system/memory/memory0/state", "poweroff", "EINVAL"],
      ["/sys/power/state", "reboot", "EINVAL"],
      ["/sys/power/disk", "platform", "EPERM"],
      ["/etc/passwd", "mem", "EPERM"],
      ["/proc/sys/kernel/sysrq", "1", "EPERM"],
      ["/sys/devices/system/cpu/../cpu/cpu1/online", "1", "EPERM"],
    ];
    for (const [path, data, code] of cases) {
      const e = errorOf(await h.ask(Op.WriteFile, jsonPayload({ path, data })));
      assert.equal(e.code, code, `${path} <- ${data}: ${e.message}`);
    }
  });
});

Deno.test("the helper ends the session on an oversized frame", async () => {
  const h = new Raw();
  const header = encodeFrame(Op.ReadFile, 7, new Uint8Array(0));
  new DataView(header.buffer).setUint32(5, MAX_REQUEST_PAYLOAD + 1);
  await h.sendRaw(header);
  const f = await h.next();
  assert.ok(f);
  assert.equal(f.id, 7);
  assert.equal(errorOf(f).code, "E2BIG");
  const status = await h.close();
  assert.equal(status.code, 2);
});

Deno.test("the helper exits 0 when the agent closes its stdin", async () => {
  const h = new Raw();
  const f = await h.ask(Op.Exists, "/sys");
  assert.equal(parseJsonPayload(f.payload), true);
  const status = await h.close();
  assert.equal(status.code, 0);
});

Deno.test("the helper lists, links and statfs's only what it should", async () => {
  await withHelper(async (h) => {
    const cpus = parseJsonPayload((await h.ask(Op.ReadDir, "/sys/devices/system/cpu")).payload) as {
      name: string;
    }[];
    assert.ok(cpus.some((e) => e.name === "cpu0"));
    assert.equal(errorOf(await h.ask(Op.ReadDir, "/proc")).code, "EPERM");
    assert.equal(errorOf(await h.ask(Op.ReadDir, "/dev/shm")).code, "EPERM");
    const link = await h.ask(Op.ReadLink, "/sys/class/net/lo");
    assert.equal(textPayload(link.payload), "../../devices/virtual/net/lo");
    const st = parseJsonPayload((await h.ask(Op.Statfs, "/")).payload) as Record<string, number>;
    assert.ok(st.blocks! > 0 && st.frsize! > 0 && st.bfree! <= st.blocks!);
    const notMount = errorOf(await h.ask(Op.Statfs, "/etc"));
    assert.match(notMount.message, /not a mount point/);
    assert.equal(parseJsonPayload((await h.ask(Op.Exists, "/sys/devices/nope")).payload), false);
  });
});

Deno.test("the helper serves /proc/self/auxv with only the page size and clock tick", async () => {
  await withHelper(async (h) => {
    const f = await h.ask(Op.ReadFile, "/proc/self/auxv");
    assert.equal(f.type, Reply.Data);
    const view = new DataView(f.payload.buffer, f.payload.byteOffset, f.payload.byteLength);
    const types: bigint[] = [];
    for (let off = 0; off < f.payload.length; off += 16) types.push(view.getBigUint64(off, true));
    assert.deepEqual(types, [6n, 17n, 0n]);
  });
});

Deno.test("a channel read on an unknown channel number is refused", async () => {
  await withHelper(async (h) => {
    const e = errorOf(await h.ask(Op.ChannelRead, channelReadPayload(42, 4096)));
    assert.equal(e.code, "EBADF");
  });
});

Deno.test("allowlist patterns compile to anchored expressions", () => {
  const re = compilePattern("/dev/{vport{n}p{n}|ttyS{n}}");
  assert.ok(re.test("/dev/vport2p1"));
  assert.ok(re.test("/dev/ttyS0"));
  assert.ok(!re.test("/dev/ttyS0x"));
  assert.ok(!re.test("/x/dev/ttyS0"));
  assert.ok(!compilePattern("/proc/{diskstats|stat}").test("/proc/statx"));
  assert.ok(!compilePattern("/a.b").test("/aXb"));
});

Deno.test("the allowlist grants each access only where listed", () => {
  const ops = new Ops();
  assert.ok(ops.match("/sys/devices/system/cpu/cpu3/online", "write"));
  assert.ok(!ops.match("/sys/devices/system/cpu/cpu3/online/x", "write"));
  assert.ok(ops.match("/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda/serial", "read"));
  assert.ok(!ops.match("/sys/devices/virtual/dmi/id/product_serial", "read"));
  assert.ok(!ops.match("/sys/kernel/debug/x", "list"));
  assert.ok(!ops.match("/dev/pts/0", "channel"));
  assert.ok(new Ops({ allowPtyChannels: true }).match("/dev/pts/0", "channel"));
  assert.throws(() => checkShape("read", "/a/../b"), /"\." , "\.\." or empty segment/);
});

Deno.test("mount points are decoded from mountinfo octal escapes", () => {
  const mi =
    "36 35 98:0 /mnt1 /mnt\\040one rw - ext3 /dev/root rw\n37 35 0:1 / / rw - ext4 /dev/vda rw\n";
  assert.deepEqual([...mountPoints(mi)], ["/mnt one", "/"]);
});

Deno.test("auxv filtering drops everything but AT_PAGESZ and AT_CLKTCK", () => {
  const src = new Uint8Array(16 * 4);
  const v = new DataView(src.buffer);
  [[33n, 0x7fff0000n], [6n, 4096n], [17n, 100n], [0n, 0n]].forEach(([t, val], i) => {
    v.setBigUint64(i * 16, t!, true);
    v.setBigUint64(i * 16 + 8, val!, true);
  });
  const out = filterAuxv(src);
  const ov = new DataView(out.buffer);
  assert.equal(out.length, 48);
  assert.equal(ov.getBigUint64(0, true), 6n);
  assert.equal(ov.getBigUint64(24, true), 100n);
});
