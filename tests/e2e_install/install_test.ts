/**
 * The installed service in a real QEMU guest: the host builds the bundles, boots its own
 * kernel with its root over 9p (read-only, tmpfs overlay: tests/e2e/initramfs.ts), and
 * the guest (guest_install.sh) runs scripts/install.sh for real, checks the unit with
 * systemd-analyze and the udev rule with udevadm, starts the unit's ExecStart= with the
 * port as one read-write stdin/stdout (what systemd does), and waits. The host then
 * talks to the agent through the virtio-serial socket as libvirt would
 * (guest-sync-delimited, guest-info), the guest stops it with SIGTERM, uninstalls, and
 * reports everything the install left behind.
 *
 * Needs qemu-system-x86_64, a kernel in /boot with its modules, a static busybox
 * (apt-get install qemu-system-x86 linux-image-amd64 busybox-static). Hard timeout 150 s.
 *
 * QGA_E2E_KEEP=1 keeps the temp dir (console, guest logs, file lists) for a look.
 *
 * Run: deno test --allow-read --allow-write --allow-run --allow-env --allow-net tests/e2e_install/
 *
 * @module
 */

import assert from "node:assert/strict";
import { buildInitramfs, GUEST_SHARE, MOUNT_TAGS } from "../e2e/initramfs.ts";

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const QEMU = "qemu-system-x86_64";
const BUSYBOX = "/bin/busybox";
const APT = "apt-get install qemu-system-x86 linux-image-amd64 busybox-static";
const VM_TIMEOUT_MS = 150_000;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function findQemu(): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir !== "" && await exists(`${dir}/${QEMU}`)) return `${dir}/${QEMU}`;
  }
  return undefined;
}

async function kernelVersion(): Promise<string | undefined> {
  try {
    for await (const e of Deno.readDir("/lib/modules")) {
      if (
        await exists(`/boot/vmlinuz-${e.name}`) &&
        await exists(`/lib/modules/${e.name}/modules.dep`)
      ) return e.name;
    }
  } catch {
    // no /lib/modules
  }
  return undefined;
}

/** Runs a command; returns its status and output. */
async function run(cmd: string, args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { code: o.code, out: d.decode(o.stdout) + d.decode(o.stderr) };
}

async function readText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The host side of the virtio-serial channel, as a management tool sees it. */
class HostChannel {
  readonly #conn: Deno.UnixConn;
  #buf = new Uint8Array(0);
  #reading: Promise<void>;
  #closed = false;

  constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#reading = (async () => {
      const chunk = new Uint8Array(4096);
      try {
        for (;;) {
          const n = await conn.read(chunk);
          if (n === null) break;
          const next = new Uint8Array(this.#buf.length + n);
          next.set(this.#buf);
          next.set(chunk.subarray(0, n), this.#buf.length);
          this.#buf = next;
        }
      } catch {
        // closed
      }
    })();
  }

  static async connect(path: string, deadline: number): Promise<HostChannel> {
    for (;;) {
      try {
        return new HostChannel(await Deno.connect({ transport: "unix", path }));
      } catch (e) {
        const retry = e instanceof Deno.errors.NotFound ||
          e instanceof Deno.errors.ConnectionRefused;
        if (!retry || Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
  }

  async send(bytes: Uint8Array | string): Promise<void> {
    let b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    while (b.length > 0) b = b.subarray(await this.#conn.write(b));
  }

  /** Waits for a complete line after byte index `from` (and after a 0xFF when `afterFF`). */
  async line(ms: number, afterFF: boolean): Promise<string | undefined> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      let start = 0;
      if (afterFF) {
        start = this.#buf.lastIndexOf(0xff) + 1;
        if (start === 0) {
          await sleep(50);
          continue;
        }
      }
      const nl = this.#buf.indexOf(0x0a, start);
      if (nl >= 0) {
        const text = new TextDecoder().decode(this.#buf.subarray(start, nl));
        this.#buf = this.#buf.slice(nl + 1);
        return text;
      }
      await sleep(50);
    }
    return undefined;
  }

  /**
   * qemu-ga's resync (qga-reference.md §1.7): 0xFF, guest-sync-delimited, then read
   * until the reply carries this attempt's id. Attempts made while no agent was
   * reading stay queued in the port and are all answered later, so every attempt
   * uses its own id and only the newest is accepted: anything older arrives before
   * it and is discarded.
   */
  async sync(id: number, ms: number): Promise<unknown> {
    const deadline = Date.now() + ms;
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      const want = id + attempt;
      await this.send(new Uint8Array([0xff]));
      await this.send(`{"execute":"guest-sync-delimited","arguments":{"id":${want}}}\n`);
      const until = Math.min(deadline, Date.now() + 3000);
      while (Date.now() < until) {
        const text = await this.line(until - Date.now(), true);
        if (text === undefined) break;
        const reply = JSON.parse(text) as { return?: unknown };
        if (reply.return === want) return { return: id };
      }
    }
    throw new Error("No reply to guest-sync-delimited");
  }

  async request(json: string, ms: number): Promise<unknown> {
    await this.send(json + "\n");
    const text = await this.line(ms, false);
    if (text === undefined) throw new Error(`No reply to ${json}`);
    return JSON.parse(text);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#reading;
  }
}

Deno.test({
  name: "scripts/install.sh installs a service that answers the host in a QEMU guest, " +
    "and uninstall.sh leaves nothing behind",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const qemu = await findQemu();
    const kver = await kernelVersion();
    const missing = [
      ...(qemu ? [] : [QEMU]),
      ...(kver ? [] : ["a kernel (/boot/vmlinuz-<v> with /lib/modules/<v>)"]),
      ...(await exists(BUSYBOX) ? [] : [BUSYBOX]),
    ];
    assert.deepEqual(missing, [], `The install test cannot boot a guest: ${APT}`);

    const dir = await Deno.makeTempDir({ prefix: "qga-e2e-install." });
    const share = `${dir}/share`;
    let child: Deno.ChildProcess | undefined;
    let channel: HostChannel | undefined;
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Deno.mkdir(share);
      const bundle = await run("sh", [`${REPO}/scripts/bundle.sh`, "--out", `${share}/dist`]);
      assert.equal(bundle.code, 0, `scripts/bundle.sh failed:\n${bundle.out}`);
      await Deno.copyFile(
        `${REPO}/tests/e2e_install/guest_install.sh`,
        `${share}/guest_install.sh`,
      );
      await Deno.writeTextFile(
        `${share}/guest.sh`,
        `exec sh ${GUEST_SHARE}/guest_install.sh '${REPO.replaceAll("'", `'\\''`)}'\n`,
      );
      await buildInitramfs(`${dir}/initramfs.cpio`, { kernelVersion: kver!, busybox: BUSYBOX });
      const started = Date.now();
      child = new Deno.Command(qemu!, {
        args: [
          ...["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "1024"],
          ...["-nodefaults", "-no-reboot", "-display", "none"],
          ...["-serial", `file:${dir}/console.log`],
          ...["-kernel", `/boot/vmlinuz-${kver}`, "-initrd", `${dir}/initramfs.cpio`],
          ...["-append", "console=ttyS0 panic=-1 quiet"],
          "-virtfs",
          `local,path=/,mount_tag=${MOUNT_TAGS.hostRoot},security_model=none,readonly=on,multidevs=remap`,
          ...["-virtfs", `local,path=${share},mount_tag=${MOUNT_TAGS.share},security_model=none`],
          ...["-chardev", `socket,path=${dir}/qga.sock,server=on,wait=off,id=qga0`],
          ...["-device", "virtio-serial-pci,id=vser0"],
          ...["-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"],
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const qemuChild = child;
      killTimer = setTimeout(() => qemuChild.kill("SIGKILL"), VM_TIMEOUT_MS);
      const exited = qemuChild.status;
      const stderrText = new Response(qemuChild.stderr).text();
      const diagnostics = async () =>
        `QEMU: ${await Promise.race([stderrText, sleep(100).then(() => "")])}\n` +
        `console:\n${(await readText(`${dir}/console.log`)).slice(-3000)}\n` +
        `guest log:\n${await readText(`${share}/guest.log`)}\n` +
        `install.log:\n${await readText(`${share}/install.log`)}\n` +
        `agent.log:\n${await readText(`${share}/agent.log`)}`;

      // Connect first: the port then has a host when the agent starts.
      channel = await HostChannel.connect(`${dir}/qga.sock`, Date.now() + 10_000);
      let state = "";
      let qemuDone = false;
      exited.then(() => qemuDone = true);
      while (Date.now() - started < 100_000 && !qemuDone) {
        state = (await readText(`${share}/status`)).trim();
        if (state !== "") break;
        await sleep(200);
      }
      assert.equal(state, "ready", `The guest did not start the agent.\n${await diagnostics()}`);

      let sync: unknown;
      try {
        sync = await channel.sync(4242, 20_000);
      } catch (e) {
        await Deno.writeTextFile(`${share}/go-stop`, "");
        await Promise.race([exited, sleep(20_000)]);
        throw new Error(`${(e as Error).message}\n${await diagnostics()}`);
      }
      assert.deepEqual(sync, { return: 4242 });
      const info = await channel.request('{"execute":"guest-info"}', 10_000) as {
        return: { version: string; supported_commands: { name: string; enabled: boolean }[] };
      };
      assert.match(info.return.version, /^\d+\.\d+\.\d+/);
      const names = info.return.supported_commands.map((c) => c.name);
      assert.ok(names.includes("guest-sync-delimited"), JSON.stringify(names));
      assert.ok(names.includes("guest-info"));

      await Deno.writeTextFile(`${share}/go-stop`, "");
      const status = await Promise.race([exited, sleep(60_000).then(() => undefined)]);
      assert.ok(status, `The guest did not power off.\n${await diagnostics()}`);
      const elapsed = Date.now() - started;

      const final = (await readText(`${share}/status`)).trim();
      assert.equal(final, "done", `The guest script failed.\n${await diagnostics()}`);
      const verify = await readText(`${share}/verify.log`);
      assert.equal(verify.trim(), "rc=0", `systemd-analyze verify in the guest:\n${verify}`);
      const udev = await readText(`${share}/udev.log`);
      assert.match(udev, /^SYSTEMD_WANTS=.*\bdeno-qga\.service\b/m, udev.slice(-2000));
      assert.match(udev, /^(CURRENT_)?TAGS=.*:systemd:/m, udev.slice(-2000));
      assert.match(udev, /99-deno-qga\.rules/, "udevadm did not read the installed rule");
      assert.equal(
        (await readText(`${share}/agent.exit`)).trim(),
        "agent exit status 0",
        `The agent did not stop cleanly on SIGTERM:\n${await readText(`${share}/agent.log`)}`,
      );
      assert.equal((await readText(`${share}/processes.txt`)).trim(), "", "processes left");
      const leftover = (await readText(`${share}/leftover.txt`)).trim();
      assert.equal(leftover, "", `uninstall.sh left these behind:\n${leftover}`);
      // A figure, not a bound: it measures TCG on this machine. The hard timeout
      // (VM_TIMEOUT_MS) is what stops a hung guest.
      console.log(`the guest run took ${(elapsed / 1000).toFixed(1)} s`);
    } finally {
      clearTimeout(killTimer);
      await channel?.close();
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch {
          // already exited
        }
        await child.status;
      }
      if (Deno.env.get("QGA_E2E_KEEP")) console.error(`kept ${dir}`);
      else await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
