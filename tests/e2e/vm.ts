/**
 * Boots the e2e guest: the host's kernel under QEMU/TCG, the host's root over 9p read-only
 * with a tmpfs overlay, a writable 9p results share, two virtio-serial agent ports
 * (`org.qemu.guest_agent.0` for deno-qga, `.1` for the reference qemu-ga), two isa-serial
 * ports (guest ttyS1 for deno-qga, ttyS2 for qemu-ga), and an ext4 data disk on virtio-blk
 * with serial QGATEST0 (qemu-e2e.md). Every boot has a hard timeout; {@linkcode Vm.dispose}
 * kills QEMU and removes the temp dir.
 *
 * @module
 */

import { buildInitramfs, MOUNT_TAGS } from "./initramfs.ts";
import { GUEST_FACTS, guestScript, SHARE_FILES } from "./guest_script.ts";

/** What to install when a tool is missing. */
export const APT_PACKAGES =
  "apt-get install qemu-system-x86 linux-image-amd64 busybox-static e2fsprogs qemu-guest-agent";

const QEMU = "qemu-system-x86_64";
const BUSYBOX = "/bin/busybox";
const MKFS = "/sbin/mkfs.ext4";
const QEMU_GA = "/usr/sbin/qemu-ga";

/** Host-side sockets of the four agent channels. */
export interface VmSockets {
  /** virtio-serial `org.qemu.guest_agent.0`: deno-qga. */
  denoVirtio: string;
  /** virtio-serial `org.qemu.guest_agent.1`: reference qemu-ga. */
  refVirtio: string;
  /** isa-serial, guest ttyS1: deno-qga. */
  denoIsa: string;
  /** isa-serial, guest ttyS2: reference qemu-ga. */
  refIsa: string;
}

/** Options of {@linkcode startVm}. */
export interface VmOptions {
  /** The project checkout (default: this file's repository). */
  repo?: string;
  /** Hard limit on the VM's life; QEMU is killed after it (default 270 s). */
  timeoutMs?: number;
  /** Guest memory in MiB (default 2048). */
  memoryMiB?: number;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function which(name: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir !== "" && await exists(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return undefined;
}

/** True when the ELF file has no PT_INTERP header (statically linked). */
async function isStaticElf(path: string): Promise<boolean> {
  const f = await Deno.open(path);
  try {
    const head = new Uint8Array(65536);
    const n = (await f.read(head)) ?? 0;
    const view = new DataView(head.buffer, 0, n);
    if (n < 64 || view.getUint32(0) !== 0x7f454c46 || head[4] !== 2) return false;
    const phoff = Number(view.getBigUint64(32, true));
    const phentsize = view.getUint16(54, true);
    const phnum = view.getUint16(56, true);
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * phentsize;
      if (at + 4 > n) return false;
      if (view.getUint32(at, true) === 3) return false; // PT_INTERP
    }
    return true;
  } finally {
    f.close();
  }
}

/**
 * Finds everything the guest needs, or throws one error naming what is missing and the apt
 * packages that provide it. Returns the kernel version to boot.
 */
export async function requireTools(): Promise<{ kernelVersion: string; qemu: string }> {
  const missing: string[] = [];
  const qemu = await which(QEMU);
  if (!qemu) missing.push(QEMU);
  let kernelVersion: string | undefined;
  try {
    for await (const e of Deno.readDir("/lib/modules")) {
      if (
        await exists(`/boot/vmlinuz-${e.name}`) &&
        await exists(`/lib/modules/${e.name}/modules.dep`)
      ) {
        kernelVersion = e.name;
        break;
      }
    }
  } catch {
    // no /lib/modules
  }
  if (!kernelVersion) missing.push("a kernel (/boot/vmlinuz-<v> with /lib/modules/<v>)");
  if (!await exists(BUSYBOX) || !await isStaticElf(BUSYBOX)) {
    missing.push(`a static ${BUSYBOX}`);
  }
  if (!await exists(MKFS)) missing.push(MKFS);
  if (!await exists(QEMU_GA)) missing.push(QEMU_GA);
  if (missing.length > 0 || !qemu || !kernelVersion) {
    throw new Error(`The e2e guest cannot boot: missing ${missing.join(", ")}. ${APT_PACKAGES}`);
  }
  return { kernelVersion, qemu };
}

/** The QEMU command line (argv without the program). */
export function qemuArgs(
  dir: string,
  kernelVersion: string,
  memoryMiB: number,
): string[] {
  return [
    ...["-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", String(memoryMiB)],
    ...["-nodefaults", "-no-reboot", "-display", "none", "-serial", `file:${dir}/console.log`],
    ...["-kernel", `/boot/vmlinuz-${kernelVersion}`, "-initrd", `${dir}/initramfs.cpio`],
    ...["-append", "console=ttyS0 panic=-1 quiet"],
    "-virtfs",
    `local,path=/,mount_tag=${MOUNT_TAGS.hostRoot},security_model=none,readonly=on,multidevs=remap`,
    "-virtfs",
    `local,path=${dir}/share,mount_tag=${MOUNT_TAGS.share},security_model=none`,
    ...["-chardev", `socket,path=${dir}/qga0.sock,server=on,wait=off,id=qga0`],
    ...["-chardev", `socket,path=${dir}/qga1.sock,server=on,wait=off,id=qga1`],
    ...["-device", "virtio-serial-pci,id=vser0"],
    ...["-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0"],
    ...["-device", "virtserialport,bus=vser0.0,chardev=qga1,name=org.qemu.guest_agent.1"],
    ...["-chardev", `socket,path=${dir}/ser1.sock,server=on,wait=off,id=ser1`],
    ...["-device", "isa-serial,chardev=ser1,index=1"],
    ...["-chardev", `socket,path=${dir}/ser2.sock,server=on,wait=off,id=ser2`],
    ...["-device", "isa-serial,chardev=ser2,index=2"],
    ...["-drive", `file=${dir}/data.img,if=none,id=d0,format=raw`],
    "-device",
    `virtio-blk-pci,drive=d0,serial=${GUEST_FACTS.diskSerial},addr=0x${
      GUEST_FACTS.diskPciSlot.toString(16)
    }`,
  ];
}

/** A booted guest. */
export class Vm {
  /** Temp dir with the sockets, the disk image, the console log and the share. */
  readonly dir: string;
  /** Host side of the results share (guest `/e2e`). */
  readonly share: string;
  /** Host-side agent sockets. */
  readonly sockets: VmSockets;
  /** When QEMU was started (ms since epoch). */
  readonly startedAt: number;
  #child: Deno.ChildProcess;
  #status: Deno.CommandStatus | undefined;
  #statusPromise: Promise<Deno.CommandStatus>;
  #stderr = "";
  #drained: Promise<void>;
  #killTimer: ReturnType<typeof setTimeout>;
  #timedOut = false;
  #disposed: Promise<void> | undefined;

  /** Use {@linkcode startVm}. */
  constructor(dir: string, child: Deno.ChildProcess, timeoutMs: number) {
    this.dir = dir;
    this.share = `${dir}/share`;
    this.sockets = {
      denoVirtio: `${dir}/qga0.sock`,
      refVirtio: `${dir}/qga1.sock`,
      denoIsa: `${dir}/ser1.sock`,
      refIsa: `${dir}/ser2.sock`,
    };
    this.startedAt = Date.now();
    this.#child = child;
    this.#statusPromise = child.status.then((s) => {
      this.#status = s;
      clearTimeout(this.#killTimer);
      return s;
    });
    const decoder = new TextDecoder();
    this.#drained = (async () => {
      for await (const c of child.stderr) this.#stderr += decoder.decode(c, { stream: true });
    })();
    this.#killTimer = setTimeout(() => {
      this.#timedOut = true;
      this.#kill();
    }, timeoutMs);
  }

  #kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // already exited
    }
  }

  /** QEMU's exit status, once it has exited. */
  get status(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** True when the hard timeout killed QEMU. */
  get timedOut(): boolean {
    return this.#timedOut;
  }

  /** What QEMU wrote to stdout/stderr. */
  get qemuOutput(): string {
    return this.#stderr;
  }

  /** Waits up to `ms` for QEMU to exit; resolves to its status or undefined. */
  async waitExit(ms: number): Promise<Deno.CommandStatus | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      this.#statusPromise,
      new Promise<undefined>((res) => timer = setTimeout(() => res(undefined), ms)),
    ]);
    clearTimeout(timer);
    return r;
  }

  /** Reads a results-share file (empty string if it does not exist). */
  async shareText(name: string): Promise<string> {
    try {
      return await Deno.readTextFile(`${this.share}/${name}`);
    } catch {
      return "";
    }
  }

  /** The guest console (kernel messages, /init). */
  async console(): Promise<string> {
    try {
      return await Deno.readTextFile(`${this.dir}/console.log`);
    } catch {
      return "";
    }
  }

  /**
   * Waits until the guest script reports `ready` (agents started). Throws with the console
   * and guest log when QEMU exits first or `timeoutMs` passes.
   */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await this.shareText(SHARE_FILES.status)).includes("ready")) return;
      if (this.#status) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(
      `The guest did not get ready (${this.#status ? "QEMU exited" : "timeout"}).\n` +
        `QEMU: ${this.#stderr}\nconsole:\n${await this.console()}\nguest log:\n${await this
          .shareText(SHARE_FILES.guestLog)}`,
    );
  }

  /**
   * Runs a shell script in the guest out of band (not through any agent): the guest script's
   * runner picks up `<share>/probe/<id>.req` within 0.2 s. Returns a handle to wait on.
   */
  async guestRun(id: string, script: string): Promise<GuestRun> {
    const base = `${this.share}/${SHARE_FILES.probeDir}/${id}`;
    await Deno.writeTextFile(`${base}.tmp`, script);
    await Deno.rename(`${base}.tmp`, `${base}.req`);
    return new GuestRun(base);
  }

  /** Kills QEMU (if still running), waits for it, removes the temp dir. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      clearTimeout(this.#killTimer);
      if (!this.#status) this.#kill();
      await this.#statusPromise;
      await this.#drained;
      await Deno.remove(this.dir, { recursive: true }).catch(() => {});
    })();
    return this.#disposed;
  }

  /** Same as {@linkcode Vm.dispose}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/** An out-of-band guest script started by {@linkcode Vm.guestRun}. */
export class GuestRun {
  #base: string;
  /** Use {@linkcode Vm.guestRun}. */
  constructor(base: string) {
    this.#base = base;
  }

  async #read(ext: string): Promise<string | undefined> {
    try {
      return await Deno.readTextFile(`${this.#base}.${ext}`);
    } catch {
      return undefined;
    }
  }

  async #poll(ext: string, ms: number): Promise<string | undefined> {
    const deadline = Date.now() + ms;
    for (;;) {
      const t = await this.#read(ext);
      if (t !== undefined || Date.now() >= deadline) return t;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** True once the guest started the script (within `ms`). */
  async started(ms: number): Promise<boolean> {
    return (await this.#poll("start", ms)) !== undefined;
  }

  /** The exit status and output once the script finished within `ms`, else undefined. */
  async finished(ms: number): Promise<{ rc: number; out: string } | undefined> {
    const rc = await this.#poll("rc", ms);
    if (rc === undefined || rc.trim() === "") return undefined;
    return { rc: Number(rc.trim()), out: (await this.#read("out")) ?? "" };
  }
}

/** Creates the guest's 64 MiB ext4 data disk (label qgadata) at `path`. */
export async function makeDataDisk(path: string): Promise<void> {
  const disk = await Deno.open(path, { write: true, create: true });
  await disk.truncate(64 * 1024 * 1024);
  disk.close();
  const mkfs = await new Deno.Command(MKFS, {
    args: ["-q", "-F", "-L", "qgadata", path],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!mkfs.success) {
    throw new Error(`mkfs.ext4 failed: ${new TextDecoder().decode(mkfs.stderr)}`);
  }
}

/**
 * Builds the initramfs, the data disk and the guest script in a fresh temp dir and starts
 * QEMU. The caller must `dispose()` the result (or use `await using`).
 *
 * @example
 * ```ts
 * await using vm = await startVm();
 * await vm.waitReady(90_000);
 * ```
 */
export async function startVm(options: VmOptions = {}): Promise<Vm> {
  const { kernelVersion, qemu } = await requireTools();
  const repo = options.repo ?? new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
  const dir = await Deno.makeTempDir({ prefix: "qga-e2e." });
  try {
    await Deno.mkdir(`${dir}/share/${SHARE_FILES.probeDir}`, { recursive: true });
    await buildInitramfs(`${dir}/initramfs.cpio`, { kernelVersion, busybox: BUSYBOX });
    await makeDataDisk(`${dir}/data.img`);
    await Deno.writeTextFile(`${dir}/share/guest.sh`, guestScript(repo));
    const child = new Deno.Command(qemu, {
      args: qemuArgs(dir, kernelVersion, options.memoryMiB ?? 2048),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    return new Vm(dir, child, options.timeoutMs ?? 270_000);
  } catch (e) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }
}
