/**
 * The privileged helper: the only code of deno-qga that runs with --allow-all.
 * Started by helper/qga-helper on behalf of the agent, it serves the fixed list
 * of operations of helper/protocol.ts over its stdin/stdout, each checked by
 * helper/ops.ts, and exits when the agent goes away (stdin EOF).
 *
 * It accepts one flag, `--allow-pty-channels`, used by the tests to relay a
 * socat pty pair; the launcher never passes it (it ignores its own arguments).
 *
 * @module
 */

import inspector from "node:inspector";
import { OpError, Ops } from "./ops.ts";
import {
  type ChannelMode,
  type ChannelOpenRequest,
  encodeFrame,
  type Frame,
  FrameDecoder,
  FrameTooLarge,
  jsonPayload,
  MAX_CHANNEL_READ,
  MAX_REQUEST_PAYLOAD,
  Op,
  parseJsonPayload,
  payloadU32,
  Reply,
  textPayload,
  type WriteFileRequest,
} from "./protocol.ts";
import type { WorkerReply, WorkerRequest } from "./channel_worker.ts";

/** Channels open at once (qemu-ga has one; a second allows reopen while one closes). */
const MAX_CHANNELS = 2;

/** One relayed channel device. */
class Channel {
  readonly #worker: Worker;
  readonly #pending = new Map<number, (r: WorkerReply) => void>();
  #onClosed: (() => void) | undefined;

  constructor() {
    this.#worker = new Worker(new URL("./channel_worker.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = (ev: MessageEvent<WorkerReply>) => {
      const r = ev.data;
      if (r.kind === "closed") {
        this.#onClosed?.();
        return;
      }
      const id = r.kind === "opened" ? 0 : r.id;
      const done = this.#pending.get(id);
      this.#pending.delete(id);
      done?.(r);
    };
  }

  #ask(id: number, req: WorkerRequest, transfer: Transferable[] = []): Promise<WorkerReply> {
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.#worker.postMessage(req, transfer);
    });
  }

  open(path: string, mode: ChannelMode): Promise<WorkerReply> {
    return this.#ask(0, { kind: "open", path, mode });
  }

  read(id: number, max: number): Promise<WorkerReply> {
    return this.#ask(id, { kind: "read", id, max });
  }

  write(id: number, data: Uint8Array): Promise<WorkerReply> {
    return this.#ask(id, { kind: "write", id, data }, [data.buffer as ArrayBuffer]);
  }

  /** Closes the device; terminates the worker if it does not answer (a blocked write). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(finish, 200);
      const worker = this.#worker;
      const pending = this.#pending;
      function finish() {
        clearTimeout(timer);
        worker.terminate();
        for (const [id, done] of pending) {
          done({ kind: "error", id, code: "EBADF", message: "channel closed" });
        }
        pending.clear();
        resolve();
      }
      this.#onClosed = finish;
      this.#worker.postMessage({ kind: "close" } satisfies WorkerRequest);
    });
  }
}

/** The helper's session with the agent. */
class Session {
  readonly #ops: Ops;
  readonly #channels = new Map<number, Channel>();
  #nextChannel = 1;

  constructor(ops: Ops) {
    this.#ops = ops;
  }

  /** Writes one whole frame to stdout (synchronously, so frames never interleave). */
  send(type: number, id: number, payload?: Uint8Array): void {
    const frame = encodeFrame(type, id, payload);
    let off = 0;
    while (off < frame.length) off += Deno.stdout.writeSync(frame.subarray(off));
  }

  #fail(id: number, e: unknown): void {
    const err = e instanceof OpError ? e : new OpError("EIO", String((e as Error)?.message ?? e));
    this.send(Reply.Error, id, jsonPayload({ code: err.code, message: err.message }));
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
    if (payload.length < 4) throw new OpError("EINVAL", "helper refused channel op: short payload");
    const n = payloadU32(payload, 0);
    const ch = this.#channels.get(n);
    if (!ch) throw new OpError("EBADF", `helper refused channel op: no open channel ${n}`);
    return [n, ch];
  }

  /** Handles one request; always sends exactly one reply. */
  async handle(f: Frame): Promise<void> {
    const ops = this.#ops;
    try {
      switch (f.type) {
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
            throw new OpError(
              "EINVAL",
              `helper refused channel open: unknown mode ${JSON.stringify(mode)}`,
            );
          }
          const device = await ops.channelPath(req?.path as string);
          if (this.#channels.size >= MAX_CHANNELS) {
            throw new OpError("EMFILE", "helper refused channel open: too many open channels");
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
            throw new OpError("EINVAL", "helper refused channel read: bad payload");
          }
          const max = payloadU32(f.payload, 4);
          if (max < 1 || max > MAX_CHANNEL_READ) {
            throw new OpError("EINVAL", `helper refused channel read of ${max} bytes`);
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
          throw new OpError("EOPNOTSUPP", `helper refused unknown operation ${f.type}`);
      }
    } catch (e) {
      if (e instanceof SyntaxError || e instanceof TypeError) {
        return this.#fail(
          f.id,
          new OpError("EINVAL", `helper refused malformed request: ${e.message}`),
        );
      }
      this.#fail(f.id, e);
    }
  }
}

/**
 * Keeps Deno's SIGUSR1 inspector (127.0.0.1:9229, deno-facts.md §5) from ever
 * opening, here and in the agent: a listener makes SIGUSR1 harmless to this
 * process, and holding the port makes the inspector fail to bind in every deno
 * process on the guest while the helper runs. Connections to the port are closed
 * at once, so nobody can speak the inspector protocol. If another program already
 * holds the port, the inspector cannot bind either. Costs: port 9229 is busy.
 */
function guardInspectorPort(): void {
  Deno.addSignalListener("SIGUSR1", () => {
    setTimeout(() => inspector.close(), 0);
  });
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
  const ops = new Ops({ allowPtyChannels: Deno.args.includes("--allow-pty-channels") });
  const session = new Session(ops);
  const decoder = new FrameDecoder(MAX_REQUEST_PAYLOAD);
  const buf = new Uint8Array(MAX_REQUEST_PAYLOAD + 16);
  for (;;) {
    const n = await Deno.stdin.read(buf);
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
        jsonPayload({ code: "E2BIG", message: `helper refused request: ${e.message}` }),
      );
      return 2;
    }
    for (const f of frames) void session.handle(f);
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
