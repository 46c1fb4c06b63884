/**
 * The agent's side of the privileged helper: starts helper/qga-helper, sends
 * requests (helper/protocol.ts) and matches the replies by id, so a channel
 * read waiting for the host never holds up a /proc read.
 *
 * The agent needs exactly one extra grant for this:
 * `--allow-run=<absolute path of helper/qga-helper>`. {@link startHelper} starts the
 * first helper and sends it Init (the fsfreeze hook and channel) before the agent reads
 * any host input. That helper records the settings for this agent process
 * (helper/init_record.ts); from then on the client may let an idle helper go (it closes
 * the helper's stdin after {@link HELPER_IDLE_MS} without a request, unless a channel is
 * relayed or the agent says to keep it, e.g. while filesystems are frozen) and starts a
 * new one at the next request, which takes the recorded settings and refuses any other.
 * When the helper cannot keep a record, the client keeps that one helper for good and
 * revokes its grant to start another, so code that later takes over the agent can
 * neither start a second helper nor re-initialise this one.
 *
 * @module
 */

import type { ProgramRequest } from "../helper/programs.ts";
import type { AuthKeysReply, AuthKeysRequest } from "../helper/authorized_keys.ts";
import type { NetSnapshot } from "../helper/net.ts";
import type { FsSnapshot, SnapshotRead } from "../helper/fs_snapshot.ts";
import {
  type ChannelMode,
  type ChannelOpenReply,
  channelPayload,
  channelReadPayload,
  channelWritePayload,
  encodeFrame,
  FrameDecoder,
  type InitReply,
  type InitRequest,
  jsonPayload,
  MAX_CHANNEL_READ,
  MAX_REPLY_PAYLOAD,
  MAX_REQUEST_PAYLOAD,
  Op,
  parseJsonPayload,
  Reply,
  type RunReply,
  textPayload,
  type WireDirEntry,
  type WireError,
  type WireStatfs,
} from "../helper/protocol.ts";
import { errnoName } from "../helper/errno.ts";
import { fromWireError, type ProgramResult, strerror, SysError } from "./mod.ts";

/** A reply frame as the client sees it. */
interface ReplyFrame {
  type: number;
  payload: Uint8Array;
}

/** A channel device relayed by the helper (virtio-serial or isa-serial). */
export interface HelperChannel {
  /** The device the helper opened (symlinks resolved), e.g. "/dev/vport2p1". */
  readonly device: string;
  /** Reads up to `p.length` bytes; null at EOF (virtio-serial: no host connected). */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes all of `p`. */
  write(p: Uint8Array): Promise<void>;
  /** Releases the device (the helper closes it). */
  close(): Promise<void>;
}

/** One helper process and its request/reply session. */
class HelperProcess {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending = new Map<number, (r: ReplyFrame) => void>();
  #nextId = 1;
  #dead: SysError | undefined;
  /** Resolves when the helper process has exited (for whatever reason). */
  readonly exited: Promise<Deno.CommandStatus>;

  constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#writer = child.stdin.getWriter();
    this.exited = child.status;
    void this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const decoder = new FrameDecoder(MAX_REPLY_PAYLOAD);
    try {
      for await (const chunk of this.#child.stdout) {
        for (const f of decoder.push(chunk)) {
          const done = this.#pending.get(f.id);
          this.#pending.delete(f.id);
          done?.({ type: f.type, payload: f.payload });
        }
      }
      this.#die("privileged helper exited");
    } catch (e) {
      this.#die(`privileged helper channel failed: ${(e as Error).message}`);
    }
  }

  #die(message: string): void {
    this.#dead ??= new SysError("EIO", strerror("EIO"), message);
    const err: ReplyFrame = {
      type: Reply.Error,
      payload: jsonPayload({ code: "EIO", message: this.#dead.message } satisfies WireError),
    };
    for (const done of this.#pending.values()) done(err);
    this.#pending.clear();
  }

  /** False once the helper has exited or was closed. */
  get alive(): boolean {
    return this.#dead === undefined;
  }

  /** Sends one request and waits for its reply; an Error reply throws. `written` is
   * called once the request is in the helper's stdin pipe. */
  async request(op: number, payload: Uint8Array, written?: () => void): Promise<ReplyFrame> {
    if (this.#dead) throw this.#dead;
    if (payload.length > MAX_REQUEST_PAYLOAD) {
      throw new SysError(
        "E2BIG",
        "Argument list too long",
        `helper request of ${payload.length} bytes is too large`,
      );
    }
    const id = this.#nextId;
    this.#nextId = this.#nextId >= 0xffff_ffff ? 1 : this.#nextId + 1;
    const reply = new Promise<ReplyFrame>((resolve) => this.#pending.set(id, resolve));
    try {
      await this.#writer.write(encodeFrame(op, id, payload));
      written?.();
    } catch (e) {
      this.#pending.delete(id);
      this.#die(`cannot write to the privileged helper: ${(e as Error).message}`);
      throw this.#dead;
    }
    const r = await reply;
    if (r.type === Reply.Error) throw errorOf(r.payload);
    return r;
  }

  /** Stops the helper: closes its stdin (it exits at EOF) and waits, killing it after 2 s. */
  async close(): Promise<void> {
    if (!this.#dead) this.#die("privileged helper closed");
    try {
      await this.#writer.close();
    } catch {
      // already gone
    }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // already exited
      }
    }, 2000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** How long the client keeps an idle helper before it lets it exit (when it may). */
export const HELPER_IDLE_MS = 30_000;

/** Options of {@link startHelper}. */
export interface HelperOptions {
  /** Idle time after which a helper with a record is let go; default {@link HELPER_IDLE_MS}. */
  idleMs?: number;
  /**
   * An argv prefix the launcher is started through (tests: a shell, so that each helper
   * has a parent process, and so an Init record, of its own; the agent never sets it).
   */
  spawnVia?: readonly string[];
  /**
   * Called once the first helper's Init frame is in its stdin pipe (or the helper could
   * not be started): the agent reads no host input before this, so the settings the first
   * helper records come from an agent no host byte has reached yet.
   */
  onInitSent?: () => void;
}

/**
 * The agent's privileged helper: one helper process at a time, started when needed.
 * Every method rejects with {@link SysError}: the helper's errno for failed operations,
 * EPERM (with the refused op and path in the message) for refusals, EIO when no helper
 * can be reached.
 */
export class HelperClient {
  readonly #path: string;
  readonly #init: InitRequest;
  readonly #idleMs: number;
  readonly #spawnVia: readonly string[];
  #onInitSent: (() => void) | undefined;
  #proc: HelperProcess | undefined;
  #starting: Promise<HelperProcess> | undefined;
  /** Whether the helpers of this agent keep a record of Init (set by the first one). */
  #recorded = false;
  #closed = false;
  #busy = 0;
  #channels = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** performance.now() when the helper was last used (a request or a channel ended). */
  #lastUse = 0;
  #keepAlive: () => boolean = () => false;
  #resolveExited!: () => void;
  /** Helper processes started so far (for tests and the log). */
  launches = 0;
  /** Resolves when a helper exits while it relays a channel (the agent then stops). */
  readonly exited: Promise<void>;

  /** Use {@link startHelper}. */
  constructor(path: string, init: InitRequest, o: HelperOptions = {}) {
    this.#path = path;
    this.#init = init;
    this.#idleMs = o.idleMs ?? HELPER_IDLE_MS;
    this.#spawnVia = o.spawnVia ?? [];
    this.#onInitSent = o.onInitSent;
    this.exited = new Promise((r) => (this.#resolveExited = r));
  }

  /** While `keep()` is true an idle helper is not let go (the agent is frozen, say). */
  setKeepAlive(keep: () => boolean): void {
    this.#keepAlive = keep;
  }

  /** True while a helper process runs. */
  get running(): boolean {
    return this.#proc?.alive === true;
  }

  /** Starts the first helper and sends Init; rejects when it cannot start. */
  async start(): Promise<void> {
    await this.#live();
  }

  async #launch(): Promise<HelperProcess> {
    const sent = () => {
      const f = this.#onInitSent;
      this.#onInitSent = undefined;
      f?.();
    };
    try {
      return await this.#spawnAndInit(sent);
    } finally {
      sent();
    }
  }

  async #spawnAndInit(sent: () => void): Promise<HelperProcess> {
    let child: Deno.ChildProcess;
    try {
      const [program, ...pre] = [...this.#spawnVia, this.#path];
      child = new Deno.Command(program!, {
        args: pre,
        clearEnv: true,
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
    } catch (e) {
      const code = errnoName(e);
      throw new SysError(
        code,
        strerror(code),
        `cannot start ${this.#path}: ${(e as Error).message}`,
      );
    }
    const first = this.launches++ === 0;
    const proc = new HelperProcess(child);
    try {
      const r = await proc.request(Op.Init, jsonPayload(this.#init), sent);
      const reply = (r.type === Reply.Json ? parseJsonPayload(r.payload) : null) as
        | Partial<InitReply>
        | null;
      if (first) {
        this.#recorded = reply?.recorded === true;
        // No record: this helper is the only one the agent will have.
        if (!this.#recorded) giveUpLauncher(this.#path);
      }
    } catch (e) {
      await proc.close();
      throw new SysError(
        "EIO",
        strerror("EIO"),
        `privileged helper ${this.#path} did not start: ${(e as Error).message}`,
      );
    }
    return proc;
  }

  /** The running helper, started (and given Init) when there is none. */
  async #live(): Promise<HelperProcess> {
    if (this.#closed) throw new SysError("EIO", strerror("EIO"), "privileged helper closed");
    if (this.#proc?.alive) return this.#proc;
    if (this.launches > 0 && !this.#recorded) {
      throw new SysError("EIO", strerror("EIO"), "privileged helper exited");
    }
    this.#starting ??= this.#launch().then(
      (p) => {
        this.#proc = p;
        this.#starting = undefined;
        if (this.#busy === 0) this.#scheduleIdle();
        return p;
      },
      (e) => {
        this.#starting = undefined;
        throw e;
      },
    );
    return await this.#starting;
  }

  /**
   * Notes the helper's last use and makes sure a timer will look at it. The timer is armed
   * once and re-armed for the rest of the idle time when it fires early, rather than reset at
   * every request (a clearTimeout and setTimeout per request cost more than the request).
   */
  #scheduleIdle(): void {
    this.#lastUse = performance.now();
    if (this.#idleTimer !== undefined || !this.#recorded || this.#closed) return;
    this.#armIdle(this.#idleMs);
  }

  #armIdle(ms: number): void {
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      const p = this.#proc;
      // A request or channel in flight arms the timer again when it ends.
      if (!p || this.#busy > 0 || this.#channels > 0 || this.#closed) return;
      if (this.#keepAlive()) return this.#armIdle(this.#idleMs);
      const idle = performance.now() - this.#lastUse;
      if (idle < this.#idleMs) return this.#armIdle(this.#idleMs - idle);
      this.#proc = undefined;
      void p.close();
    }, ms);
    Deno.unrefTimer(this.#idleTimer);
  }

  async #request(op: number, payload: Uint8Array): Promise<ReplyFrame> {
    this.#busy++;
    try {
      return await (await this.#live()).request(op, payload);
    } finally {
      this.#busy--;
      if (this.#busy === 0) this.#scheduleIdle();
    }
  }

  async #expect(op: number, payload: Uint8Array, type: number): Promise<Uint8Array> {
    const r = await this.#request(op, payload);
    if (r.type !== type) {
      throw new SysError("EIO", strerror("EIO"), `unexpected helper reply type ${r.type}`);
    }
    return r.payload;
  }

  /** Reads a whole allowlisted /proc or /sys file. */
  readFile(path: string): Promise<Uint8Array> {
    return this.#expect(Op.ReadFile, enc(path), Reply.Data);
  }

  /** Lists an allowlisted directory (readdir order). */
  async readDir(path: string): Promise<WireDirEntry[]> {
    return parseJsonPayload(
      await this.#expect(Op.ReadDir, enc(path), Reply.Json),
    ) as WireDirEntry[];
  }

  /** readlink(2) of an allowlisted path. */
  async readLink(path: string): Promise<string> {
    return textPayload(await this.#expect(Op.ReadLink, enc(path), Reply.Text));
  }

  /** realpath(3) of an allowlisted path. */
  async realPath(path: string): Promise<string> {
    return textPayload(await this.#expect(Op.RealPath, enc(path), Reply.Text));
  }

  /** True when the allowlisted path exists. */
  async exists(path: string): Promise<boolean> {
    return parseJsonPayload(await this.#expect(Op.Exists, enc(path), Reply.Json)) === true;
  }

  /** statvfs(3) of a current mount point. */
  async statfs(path: string): Promise<WireStatfs> {
    return parseJsonPayload(await this.#expect(Op.Statfs, enc(path), Reply.Json)) as WireStatfs;
  }

  /** Writes one of the allowed values to an allowlisted /sys file. */
  async writeFile(path: string, data: string): Promise<void> {
    await this.#expect(Op.WriteFile, jsonPayload({ path, data }), Reply.Ok);
  }

  /** Runs one of the helper's fixed programs; SysError with the errno when it cannot start. */
  async runProgram(req: ProgramRequest): Promise<ProgramResult> {
    const r = parseJsonPayload(
      await this.#expect(Op.Run, jsonPayload(req), Reply.Json),
    ) as RunReply;
    if ("spawnError" in r) {
      throw new SysError(r.spawnError, strerror(r.spawnError), r.message);
    }
    return { code: r.code, signal: r.signal, output: Uint8Array.fromBase64(r.output) };
  }

  /** One authorized_keys operation. */
  async authorizedKeys(req: AuthKeysRequest): Promise<AuthKeysReply> {
    return parseJsonPayload(
      await this.#expect(Op.AuthorizedKeys, jsonPayload(req), Reply.Json),
    ) as AuthKeysReply;
  }

  /** The network snapshot (links, addresses, /proc/net/dev). */
  async netSnapshot(): Promise<NetSnapshot> {
    return parseJsonPayload(
      await this.#expect(Op.NetSnapshot, new Uint8Array(), Reply.Json),
    ) as NetSnapshot;
  }

  /** The filesystem snapshot (mountinfo, statvfs, the answers to `reads`). */
  async fsSnapshot(reads: SnapshotRead[]): Promise<FsSnapshot> {
    return parseJsonPayload(
      await this.#expect(Op.FsSnapshot, jsonPayload({ reads }), Reply.Json),
    ) as FsSnapshot;
  }

  /**
   * Opens the channel device named in Init (raw mode for isa-serial). The helper that
   * relays it stays for as long as the channel is open; if it exits meanwhile,
   * {@link exited} resolves.
   */
  async openChannel(path: string, mode: ChannelMode): Promise<HelperChannel> {
    const proc = await this.#live();
    const expect = async (op: number, payload: Uint8Array, type: number) => {
      const r = await proc.request(op, payload);
      if (r.type !== type) {
        throw new SysError("EIO", strerror("EIO"), `unexpected helper reply type ${r.type}`);
      }
      return r;
    };
    const reply = parseJsonPayload(
      (await expect(Op.ChannelOpen, jsonPayload({ path, mode }), Reply.Json)).payload,
    ) as ChannelOpenReply;
    const n = reply.channel;
    let closed = false;
    this.#channels++;
    proc.exited.then(() => {
      if (!closed) this.#resolveExited();
    });
    const notOpen = () => new SysError("EBADF", strerror("EBADF"), "channel is closed");
    return {
      device: reply.device,
      read: async (p) => {
        if (closed) throw notOpen();
        const r = await proc.request(
          Op.ChannelRead,
          channelReadPayload(n, Math.min(p.length, MAX_CHANNEL_READ)),
        );
        if (r.type === Reply.Eof) return null;
        if (r.type !== Reply.Data) {
          throw new SysError("EIO", strerror("EIO"), `unexpected helper reply type ${r.type}`);
        }
        p.set(r.payload);
        return r.payload.length;
      },
      write: async (p) => {
        if (closed) throw notOpen();
        const chunk = MAX_REQUEST_PAYLOAD - 4;
        for (let off = 0; off < p.length; off += chunk) {
          await expect(
            Op.ChannelWrite,
            channelWritePayload(n, p.subarray(off, off + chunk)),
            Reply.Ok,
          );
        }
      },
      close: async () => {
        if (closed) return;
        closed = true;
        this.#channels--;
        this.#scheduleIdle();
        if (!proc.alive) return;
        await expect(Op.ChannelClose, channelPayload(n), Reply.Ok);
      },
    };
  }

  /** Stops the helper (it exits at stdin EOF; killed after 2 s) and starts no other. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    const p = this.#proc ?? await this.#starting?.catch(() => undefined);
    this.#proc = undefined;
    await p?.close();
  }
}

function enc(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function errorOf(payload: Uint8Array): SysError {
  let w: Partial<WireError> = {};
  try {
    w = parseJsonPayload(payload) as WireError;
  } catch {
    // keep defaults
  }
  return fromWireError(w);
}

/**
 * Starts the helper launcher at `path` (stdin/stdout piped, stderr inherited, an empty
 * environment) and sends Init. Resolves once the helper answered Init, so a launcher
 * that cannot start is reported here and not at first use. When the helper cannot
 * record Init, the permission to run the launcher again is given up (when the grant
 * names programs; under an unrestricted `--allow-run` there is nothing to give up).
 *
 * @example
 * ```ts
 * const helper = await startHelper("/opt/deno-qga/helper/qga-helper");
 * const stat = new TextDecoder().decode(await helper.readFile("/proc/stat"));
 * await helper.close();
 * ```
 */
export async function startHelper(
  path: string,
  init: InitRequest = { fsfreezeHook: null, channel: null },
  options: HelperOptions = {},
): Promise<HelperClient> {
  const client = new HelperClient(path, init, options);
  await client.start();
  return client;
}

/** Revokes `--allow-run=<launcher>` when the run grant is a list (no-op when unrestricted). */
function giveUpLauncher(path: string): void {
  try {
    if (Deno.permissions.querySync({ name: "run" }).state === "granted") return;
    Deno.permissions.revokeSync({ name: "run", command: path });
  } catch {
    // Nothing granted to give up.
  }
}
