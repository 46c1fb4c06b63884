/**
 * The privileged helper: the only code of deno-qga that runs with --allow-all.
 * Started by helper/qga-helper on behalf of the agent, it serves the fixed list
 * of operations of helper/protocol.ts over its stdin/stdout and exits when the
 * agent goes away (stdin EOF). The operations live in their own files, each
 * readable on its own: helper/ops.ts (the /proc, /sys and /dev allowlist),
 * helper/programs.ts (the programs it runs), helper/authorized_keys.ts,
 * helper/net.ts, helper/fs_snapshot.ts and helper/channel.ts with helper/channel_worker.ts (the relay).
 *
 * The first request must be Init: it fixes the fsfreeze hook and the one channel
 * device for the helper's life. The agent sends it to its first helper before it reads
 * any host input; that helper records it (helper/init_record.ts), and a later helper of
 * the same agent process takes the recorded settings and refuses others, so the agent
 * may let an idle helper exit (by closing its stdin) and start another when needed.
 *
 * It accepts one flag, `--allow-pty-channels`, used by the tests to relay a
 * socat pty pair; the launcher never passes it (it ignores its own arguments).
 *
 * @module
 */

import { closeInspectorOnSigusr1, loadInspectorGuard } from "./inspector.ts";
import { errnoName } from "./errno.ts";
import { mountPoints, OpError, Ops, refusal } from "./ops.ts";
import { Channel, MAX_CHANNELS } from "./channel.ts";
import { checkHookPath, invocation, run } from "./programs.ts";
import { authorizedKeys, loadAuthorizedKeysFs } from "./authorized_keys.ts";
import { LinkCache, LIVE, netSnapshot } from "./net.ts";
import { FsSnapshotter } from "./fs_snapshot.ts";
import { identityOf, recordDir, settleInit } from "./init_record.ts";
import {
  type ChannelOpenRequest,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameTooLarge,
  type InitRequest,
  jsonPayload,
  MAX_CHANNEL_READ,
  MAX_REPLY_PAYLOAD,
  MAX_REQUEST_PAYLOAD,
  Op,
  parseJsonPayload,
  payloadU32,
  Reply,
  type RunReply,
  textPayload,
  type WireError,
  type WriteFileRequest,
} from "./protocol.ts";
import type { WorkerReply } from "./channel_worker.ts";

/** The helper's session with the agent. */
class Session {
  readonly #ops: Ops;
  readonly #fs: FsSnapshotter;
  readonly #links = new LinkCache();
  readonly #channels = new Map<number, Channel>();
  #nextChannel = 1;
  /** Requests being handled. */
  #inflight = 0;
  /** Requests seen so far (Init must be the first). */
  #requests = 0;
  /** What Init fixed; undefined until then. */
  #init: { fsfreezeHook: string | null; channel: ChannelOpenRequest | null } | undefined;

  constructor(ops: Ops) {
    this.#ops = ops;
    this.#fs = new FsSnapshotter(ops);
  }

  /** Writes one whole frame to stdout (synchronously, so frames never interleave). */
  send(type: number, id: number, payload?: Uint8Array): void {
    const frame = encodeFrame(type, id, payload);
    let off = 0;
    while (off < frame.length) off += Deno.stdout.writeSync(frame.subarray(off));
  }

  #fail(id: number, e: unknown): void {
    const err = e instanceof OpError ? e : new OpError("EIO", String((e as Error)?.message ?? e));
    const wire: WireError = { code: err.code, message: err.message };
    if (err.refused) wire.refused = true;
    this.send(Reply.Error, id, jsonPayload(wire));
  }

  #fromWorker(id: number, r: WorkerReply): void {
    switch (r.kind) {
      case "data":
        return this.send(Reply.Data, id, r.data);
      case "eof":
        return this.send(Reply.Eof, id);
      case "ok":
        return this.send(Reply.Ok, id);
      case "error":
        return this.#fail(id, new OpError(r.code, r.message));
      default:
        return this.#fail(id, new OpError("EIO", `unexpected worker reply ${r.kind}`));
    }
  }

  #channel(payload: Uint8Array): [number, Channel] {
    if (payload.length < 4) throw refusal("EINVAL", "channel op: short payload");
    const n = payloadU32(payload, 0);
    const ch = this.#channels.get(n);
    if (!ch) throw refusal("EBADF", `channel op: no open channel ${n}`);
    return [n, ch];
  }

  /**
   * Init: accepted once, as the first request; fixes the hook and the channel (the
   * agent's recorded ones when it has a record). Returns whether a record backs them.
   */
  #initialise(payload: Uint8Array, first: boolean): { recorded: boolean } {
    if (!first || this.#init) {
      throw refusal("EPERM", "init: only the first request may be Init");
    }
    const req = parseJsonPayload(payload) as Partial<InitRequest> | null;
    const fsfreezeHook = checkHookPath(req?.fsfreezeHook);
    let channel: ChannelOpenRequest | null = null;
    if (req?.channel !== null && req?.channel !== undefined) {
      const { path, mode } = req.channel as Partial<ChannelOpenRequest>;
      if (mode !== "virtio-serial" && mode !== "isa-serial") {
        throw refusal("EINVAL", `init: unknown mode ${JSON.stringify(mode)}`);
      }
      // Checked now so a bad name fails at start; checked again at each open.
      if (!this.#ops.match("/dev/pts/0", "channel")) {
        this.#ops.checkChannelName("init", path);
      }
      channel = { path: path as string, mode };
    }
    const { settings, recorded } = settleInit({ fsfreezeHook, channel }, {
      agent: identityOf(Deno.ppid),
      dir: recordDir(Deno.env.get("DENO_DIR")),
    });
    this.#init = settings;
    return { recorded };
  }

  async #run(payload: Uint8Array): Promise<RunReply> {
    const req = parseJsonPayload(payload) as { program?: unknown } | null;
    const program = req?.program;
    const table = program === "fsfreeze" || program === "fstrim"
      ? mountPoints(await Deno.readTextFile("/proc/self/mountinfo"))
      : new Set<string>();
    const inv = invocation(req, {
      fsfreezeHook: this.#init?.fsfreezeHook ?? null,
      isMountPoint: (p) => table.has(p),
    });
    try {
      const r = await run(inv);
      return { code: r.code, signal: r.signal, output: r.output.toBase64() };
    } catch (e) {
      return { spawnError: errnoName(e), message: String((e as Error)?.message ?? e) };
    }
  }

  /** True when no request is being handled and no channel is relayed. */
  get quiet(): boolean {
    return this.#inflight === 0 && this.#channels.size === 0;
  }

  /** Handles one request; always sends exactly one reply. */
  async handle(f: Frame): Promise<void> {
    this.#inflight++;
    try {
      await this.#handle(f);
    } finally {
      this.#inflight--;
    }
  }

  async #handle(f: Frame): Promise<void> {
    const ops = this.#ops;
    const first = this.#requests++ === 0;
    try {
      switch (f.type) {
        case Op.Init:
          return this.send(Reply.Json, f.id, jsonPayload(this.#initialise(f.payload, first)));
        case Op.Run:
          return this.send(Reply.Json, f.id, jsonPayload(await this.#run(f.payload)));
        case Op.AuthorizedKeys:
          await loadAuthorizedKeysFs();
          return this.send(
            Reply.Json,
            f.id,
            jsonPayload(authorizedKeys(parseJsonPayload(f.payload), { passwd: "/etc/passwd" })),
          );
        case Op.NetSnapshot:
          return this.send(Reply.Json, f.id, jsonPayload(await netSnapshot(LIVE, this.#links)));
        case Op.FsSnapshot: {
          const reply = jsonPayload(await this.#fs.take(parseJsonPayload(f.payload)));
          if (reply.length > MAX_REPLY_PAYLOAD) {
            throw new OpError("E2BIG", `fs snapshot: reply of ${reply.length} bytes`);
          }
          return this.send(Reply.Json, f.id, reply);
        }
        case Op.ReadFile:
          return this.send(Reply.Data, f.id, await ops.readFile(textPayload(f.payload)));
        case Op.ReadDir:
          return this.send(
            Reply.Json,
            f.id,
            jsonPayload(await ops.readDir(textPayload(f.payload))),
          );
        case Op.ReadLink:
          return this.send(
            Reply.Text,
            f.id,
            new TextEncoder().encode(await ops.readLink(textPayload(f.payload))),
          );
        case Op.RealPath:
          return this.send(
            Reply.Text,
            f.id,
            new TextEncoder().encode(await ops.realPath(textPayload(f.payload))),
          );
        case Op.Exists:
          return this.send(Reply.Json, f.id, jsonPayload(await ops.exists(textPayload(f.payload))));
        case Op.Statfs:
          return this.send(Reply.Json, f.id, jsonPayload(await ops.statfs(textPayload(f.payload))));
        case Op.WriteFile: {
          const req = parseJsonPayload(f.payload) as Partial<WriteFileRequest> | null;
          await ops.writeFile(req?.path as string, req?.data);
          return this.send(Reply.Ok, f.id);
        }
        case Op.ChannelOpen: {
          const req = parseJsonPayload(f.payload) as Partial<ChannelOpenRequest> | null;
          const mode = req?.mode;
          if (mode !== "virtio-serial" && mode !== "isa-serial") {
            throw refusal("EINVAL", `channel open: unknown mode ${JSON.stringify(mode)}`);
          }
          const named = this.#init?.channel;
          if (!named || named.path !== req?.path || named.mode !== mode) {
            throw refusal(
              "EPERM",
              `channel open of ${
                JSON.stringify(String(req?.path).slice(0, 200))
              }: not the channel named at start`,
            );
          }
          const device = await ops.channelPath(named.path);
          if (this.#channels.size >= MAX_CHANNELS) {
            throw refusal("EMFILE", "channel open: too many open channels");
          }
          const ch = new Channel();
          const r = await ch.open(device, mode);
          if (r.kind !== "opened") {
            await ch.close();
            if (r.kind === "error") throw new OpError(r.code, r.message);
            throw new OpError("EIO", "channel open failed");
          }
          const n = this.#nextChannel++;
          this.#channels.set(n, ch);
          return this.send(Reply.Json, f.id, jsonPayload({ channel: n, device }));
        }
        case Op.ChannelRead: {
          const [, ch] = this.#channel(f.payload);
          if (f.payload.length !== 8) {
            throw refusal("EINVAL", "channel read: bad payload");
          }
          const max = payloadU32(f.payload, 4);
          if (max < 1 || max > MAX_CHANNEL_READ) {
            throw refusal("EINVAL", `channel read of ${max} bytes`);
          }
          return this.#fromWorker(f.id, await ch.read(f.id, max));
        }
        case Op.ChannelWrite: {
          const [, ch] = this.#channel(f.payload);
          return this.#fromWorker(f.id, await ch.write(f.id, f.payload.slice(4)));
        }
        case Op.ChannelClose: {
          const [n, ch] = this.#channel(f.payload);
          this.#channels.delete(n);
          await ch.close();
          return this.send(Reply.Ok, f.id);
        }
        default:
          throw refusal("EOPNOTSUPP", `unknown operation ${f.type}`);
      }
    } catch (e) {
      if (e instanceof SyntaxError || e instanceof TypeError) {
        return this.#fail(
          f.id,
          refusal("EINVAL", `malformed request: ${e.message}`),
        );
      }
      this.#fail(f.id, e);
    }
  }
}

/**
 * Keeps Deno's SIGUSR1 inspector (127.0.0.1:9229, deno-facts.md §5) from ever
 * opening, here and in the agent: closeInspectorOnSigusr1 (helper/inspector.ts) makes
 * SIGUSR1 harmless to this process, and holding the port makes the inspector fail to
 * bind in every deno process on the guest while the helper runs. Connections to the
 * port are never answered: closed at once, or, while the helper waits idle in its blocking
 * read (main), at its next request. If another
 * program already holds the port, the inspector cannot bind either. Costs: port 9229 is
 * busy.
 */
function guardInspectorPort(): void {
  closeInspectorOnSigusr1();
  try {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 9229 });
    (async () => {
      for await (const conn of listener) conn.close();
    })().catch(() => {});
  } catch {
    // Held by someone else: the inspector cannot bind there either.
  }
}

async function main(): Promise<number> {
  guardInspectorPort();
  // The helper loads Node compatibility anyway (ops.ts): the guard is ready at once.
  await loadInspectorGuard();
  const ops = new Ops({ allowPtyChannels: Deno.args.includes("--allow-pty-channels") });
  const session = new Session(ops);
  const decoder = new FrameDecoder(MAX_REQUEST_PAYLOAD);
  const buf = new Uint8Array(MAX_REQUEST_PAYLOAD + 16);
  for (;;) {
    // With no request in flight and no channel relayed, nothing else needs the event loop:
    // wait in a blocking read, which costs a fraction of an asynchronous one (no hand-off
    // to and from a thread-pool thread per request). Idle exit is unchanged: the agent
    // closes stdin and either read returns null. SIGUSR1 meanwhile finds the inspector
    // port held (guardInspectorPort), and its listener runs at the next request.
    const n = session.quiet ? Deno.stdin.readSync(buf) : await Deno.stdin.read(buf);
    if (n === null) return 0; // the agent went away
    let frames: Frame[];
    try {
      frames = decoder.push(buf.subarray(0, n));
    } catch (e) {
      if (!(e instanceof FrameTooLarge)) throw e;
      // The stream cannot be trusted past a bad header: answer and end the session.
      session.send(
        Reply.Error,
        e.id,
        jsonPayload(
          {
            code: "E2BIG",
            message: `helper refused request: ${e.message}`,
            refused: true,
          } satisfies WireError,
        ),
      );
      return 2;
    }
    for (const f of frames) void session.handle(f);
    // Requests that need no asynchronous I/O (the snapshots) finish in a few microtasks.
    for (let i = 0; i < 64 && !session.quiet; i++) await Promise.resolve();
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
