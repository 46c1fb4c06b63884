/**
 * The agent's side of the privileged helper: starts helper/qga-helper, sends
 * requests (helper/protocol.ts) and matches the replies by id, so a channel
 * read waiting for the host never holds up a /proc read.
 *
 * The agent needs exactly one extra grant for this:
 * `--allow-run=<absolute path of helper/qga-helper>`, and uses it once:
 * {@link startHelper} sends Init (the fsfreeze hook and channel, fixed for the
 * helper's life) and then revokes the grant, so code that later takes over the
 * agent can neither start a second helper nor re-initialise this one.
 *
 * @module
 */

import type { ProgramRequest } from "../helper/programs.ts";
import type { AuthKeysReply, AuthKeysRequest } from "../helper/authorized_keys.ts";
import type { NetSnapshot } from "../helper/net.ts";
import {
  type ChannelMode,
  type ChannelOpenReply,
  channelPayload,
  channelReadPayload,
  channelWritePayload,
  encodeFrame,
  FrameDecoder,
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
import { type ProgramResult, SandboxRefusal, strerror, SysError } from "./mod.ts";

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

/**
 * A running helper. Every method rejects with {@link SysError}: the helper's
 * errno for failed operations, EPERM (with the refused op and path in the
 * message) for refusals, EIO once the helper has gone away.
 */
export class HelperClient {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #pending = new Map<number, (r: ReplyFrame) => void>();
  #nextId = 1;
  #dead: SysError | undefined;
  /** Resolves when the helper process has exited (for whatever reason). */
  readonly exited: Promise<Deno.CommandStatus>;

  /** Use {@link startHelper}. */
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

  async #request(op: number, payload: Uint8Array): Promise<ReplyFrame> {
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
    } catch (e) {
      this.#pending.delete(id);
      this.#die(`cannot write to the privileged helper: ${(e as Error).message}`);
      throw this.#dead;
    }
    const r = await reply;
    if (r.type === Reply.Error) throw errorOf(r.payload);
    return r;
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

  /** Init: the fsfreeze hook and the channel, fixed for the helper's life (first request only). */
  async init(req: InitRequest): Promise<void> {
    await this.#expect(Op.Init, jsonPayload(req), Reply.Ok);
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

  /** Opens the channel device named in Init (raw mode for isa-serial). */
  async openChannel(path: string, mode: ChannelMode): Promise<HelperChannel> {
    const reply = parseJsonPayload(
      await this.#expect(Op.ChannelOpen, jsonPayload({ path, mode }), Reply.Json),
    ) as ChannelOpenReply;
    const n = reply.channel;
    let closed = false;
    const notOpen = () => new SysError("EBADF", strerror("EBADF"), "channel is closed");
    return {
      device: reply.device,
      read: async (p) => {
        if (closed) throw notOpen();
        const r = await this.#request(
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
          await this.#expect(
            Op.ChannelWrite,
            channelWritePayload(n, p.subarray(off, off + chunk)),
            Reply.Ok,
          );
        }
      },
      close: async () => {
        if (closed) return;
        closed = true;
        if (this.#dead) return;
        await this.#expect(Op.ChannelClose, channelPayload(n), Reply.Ok);
      },
    };
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
  const code = typeof w.code === "string" ? w.code : "EIO";
  const message = typeof w.message === "string" ? w.message : "helper error";
  return w.refused === true
    ? new SandboxRefusal(code, message)
    : new SysError(code, strerror(code), message);
}

/**
 * Starts the helper launcher at `path` (stdin/stdout piped, stderr inherited,
 * an empty environment), sends Init, and gives up the permission to run the
 * launcher again when the grant names programs (under an unrestricted
 * `--allow-run` there is nothing to give up: any program may run anyway).
 * Resolves once the helper answered, so a launcher that cannot start is
 * reported here and not at first use.
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
): Promise<HelperClient> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(path, {
      args: [],
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    const code = errnoName(e);
    throw new SysError(code, strerror(code), `cannot start ${path}: ${(e as Error).message}`);
  }
  giveUpLauncher(path);
  const client = new HelperClient(child);
  try {
    await client.init(init);
    // A cheap round trip proves the helper runs and speaks the protocol.
    await client.exists("/sys");
  } catch (e) {
    await client.close();
    throw new SysError(
      "EIO",
      strerror("EIO"),
      `privileged helper ${path} did not start: ${(e as Error).message}`,
    );
  }
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
