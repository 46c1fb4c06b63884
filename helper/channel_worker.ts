/**
 * Relays one channel device for the helper, in a Worker of its own so a write
 * that blocks (a virtio-serial port blocks writers while no host is connected,
 * as qemu-ga's busy-wait on EAGAIN does) never stalls the helper's other work.
 *
 * One FsFile serves both directions: at most one read is pending at a time,
 * and writes use `writeSync`, which is not queued behind the pending read
 * (an async `write` would be; deno-facts.md §2). A virtio port allows a single
 * open, so a second descriptor is not an option.
 *
 * Messages in: {@link WorkerRequest}; out: {@link WorkerReply}.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { errnoName } from "./errno.ts";
import type { ChannelMode } from "./protocol.ts";

/** Requests from the helper's main thread. */
export type WorkerRequest =
  | { kind: "open"; path: string; mode: ChannelMode }
  | { kind: "read"; id: number; max: number }
  | { kind: "write"; id: number; data: Uint8Array }
  | { kind: "close" };

/** Replies to the helper's main thread (`id` 0 for open and close). */
export type WorkerReply =
  | { kind: "opened" }
  | { kind: "data"; id: number; data: Uint8Array }
  | { kind: "eof"; id: number }
  | { kind: "ok"; id: number }
  | { kind: "error"; id: number; code: string; message: string }
  | { kind: "closed" };

function post(reply: WorkerReply, transfer: Transferable[] = []): void {
  self.postMessage(reply, transfer);
}

/** Bytes read ahead of the agent's requests before reading pauses. */
const READ_AHEAD = 1024 * 1024;

function serve(): void {
  let file: Deno.FsFile | undefined;
  // Read-ahead: one read is kept pending while there is room, and a ChannelRead
  // is answered with everything that has arrived (a virtio port hands over at
  // most a page per read), so the agent makes one round trip per batch, not per
  // page. EOF and errors are passed on in order, after the data before them.
  const queue: Uint8Array[] = [];
  let queued = 0;
  let ended: { kind: "eof" } | { kind: "error"; code: string; message: string } | undefined;
  let waiter: { id: number; max: number } | undefined;
  let pumping = false;

  const deliver = () => {
    if (!waiter) return;
    const { id, max } = waiter;
    if (queued > 0) {
      const n = Math.min(max, queued);
      const out = new Uint8Array(n);
      let off = 0;
      while (off < n) {
        const head = queue[0]!;
        const take = Math.min(head.length, n - off);
        out.set(head.subarray(0, take), off);
        off += take;
        if (take === head.length) queue.shift();
        else queue[0] = head.subarray(take);
      }
      queued -= n;
      waiter = undefined;
      post({ kind: "data", id, data: out }, [out.buffer]);
      if (!pumping && !ended && file) void pump();
      return;
    }
    if (ended) {
      const e = ended;
      ended = undefined;
      waiter = undefined;
      if (e.kind === "eof") post({ kind: "eof", id });
      else post({ kind: "error", id, code: e.code, message: e.message });
    }
  };

  const pump = async () => {
    pumping = true;
    try {
      while (file && !ended && queued < READ_AHEAD) {
        const buf = new Uint8Array(64 * 1024);
        let n: number | null;
        try {
          n = await file.read(buf);
        } catch (e) {
          ended = {
            kind: "error",
            code: errnoName(e),
            message: `channel read: ${(e as Error).message}`,
          };
          break;
        }
        if (n === null) {
          ended = { kind: "eof" };
          break;
        }
        queue.push(buf.subarray(0, n));
        queued += n;
        deliver();
      }
    } finally {
      pumping = false;
    }
    deliver();
  };

  self.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
    const req = ev.data;
    switch (req.kind) {
      case "open": {
        try {
          // Deno has no O_NOCTTY; none is needed: only a session leader acquires a
          // controlling terminal on open, and the helper (a child of the agent,
          // started without setsid) never is one.
          file = await Deno.open(req.path, { read: true, write: true });
          // qemu-ga puts an isa-serial tty in raw mode at 38400 baud (cfmakeraw:
          // VMIN=1, VTIME=0, no echo, no CR/LF mapping on input or output, no flow
          // control). Deno's setRaw keeps output processing (a reply would end in
          // \r\n) and sets no speed, so the helper runs stty, a fixed program with
          // fixed arguments, on the device it just opened. Deno has no tcflush.
          if (req.mode === "isa-serial" && file.isTerminal()) {
            file.setRaw(true);
            const stty = await new Deno.Command("/usr/bin/stty", {
              args: ["-F", req.path, "raw", "-echo", "-opost", "38400", "min", "1", "time", "0"],
              stdin: "null",
              stdout: "null",
              stderr: "piped",
              clearEnv: true,
            }).output();
            if (!stty.success) {
              throw new Error(`stty: ${new TextDecoder().decode(stty.stderr).trim()}`);
            }
          }
          post({ kind: "opened" });
        } catch (e) {
          file?.close();
          file = undefined;
          post({
            kind: "error",
            id: 0,
            code: errnoName(e),
            message: `open ${JSON.stringify(req.path)}: ${(e as Error).message}`,
          });
        }
        return;
      }
      case "read": {
        if (!file) {
          return post({ kind: "error", id: req.id, code: "EBADF", message: "channel is not open" });
        }
        if (waiter) {
          return post({
            kind: "error",
            id: req.id,
            code: "EBUSY",
            message: "a channel read is already pending",
          });
        }
        waiter = { id: req.id, max: req.max };
        deliver();
        if (!pumping) void pump();
        return;
      }
      case "write": {
        if (!file) {
          return post({ kind: "error", id: req.id, code: "EBADF", message: "channel is not open" });
        }
        try {
          let off = 0;
          while (off < req.data.length) off += file.writeSync(req.data.subarray(off));
          post({ kind: "ok", id: req.id });
        } catch (e) {
          post({
            kind: "error",
            id: req.id,
            code: errnoName(e),
            message: `channel write: ${(e as Error).message}`,
          });
        }
        return;
      }
      case "close": {
        try {
          file?.close();
        } catch {
          // already closed
        }
        file = undefined;
        post({ kind: "closed" });
        self.close();
        return;
      }
    }
  };
}

serve();
