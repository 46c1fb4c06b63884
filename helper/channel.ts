/**
 * The channel relay's main-thread side: one {@link Channel} per open device,
 * each a Worker of its own (helper/channel_worker.ts) that owns the file
 * descriptor. The session (helper/main.ts) opens only the device named in Init
 * (the agent's `-p`), after the allowlist accepted it (Ops.channelPath); the
 * relay itself knows nothing but that device and its mode.
 *
 * @module
 */

import type { ChannelMode } from "./protocol.ts";
import type { WorkerReply, WorkerRequest } from "./channel_worker.ts";

/** Channels open at once (qemu-ga has one; a second allows reopen while one closes). */
export const MAX_CHANNELS = 2;

/** One relayed channel device. */
export class Channel {
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
