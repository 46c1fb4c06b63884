/**
 * A raw byte channel to one host-side agent socket (a QEMU chardev), as a host client sees
 * it: bytes in, bytes out, deadlines on every wait. No protocol knowledge here; the client
 * conversations in clients.ts decide what to send and how to read the answer.
 *
 * @module
 */

/** What a wait on the channel ended with. */
export type WaitEnd = "match" | "timeout" | "eof";

/** One connection to a unix socket, with a background reader filling a buffer. */
export class Channel {
  #conn: Deno.UnixConn;
  #buf = new Uint8Array(0);
  #eof = false;
  #readError: unknown = undefined;
  #changed: PromiseWithResolvers<void> = Promise.withResolvers<void>();
  #pump: Promise<void>;
  #closed = false;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#pump = this.#run();
  }

  /**
   * Connects to `path`, retrying until `timeoutMs` passes (QEMU accepts one client at a time;
   * the next connection is accepted once the previous one is gone).
   */
  static async connect(path: string, timeoutMs = 10_000): Promise<Channel> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return new Channel(await Deno.connect({ transport: "unix", path }));
      } catch (e) {
        if (Date.now() > deadline) {
          throw new Error(`Cannot connect to "${path}": ${(e as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async #run(): Promise<void> {
    const chunk = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        const next = new Uint8Array(this.#buf.length + n);
        next.set(this.#buf);
        next.set(chunk.subarray(0, n), this.#buf.length);
        this.#buf = next;
        this.#notify();
      }
    } catch (e) {
      if (!this.#closed) this.#readError = e;
    }
    this.#eof = true;
    this.#notify();
  }

  #notify(): void {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  /** True once the peer closed (or the read failed). */
  get eof(): boolean {
    return this.#eof;
  }

  /** The read error, if the connection failed rather than ended. */
  get readError(): unknown {
    return this.#readError;
  }

  /** Bytes received and not yet taken. */
  get buffered(): Uint8Array {
    return this.#buf;
  }

  /** Writes all of `data` (a string is sent as UTF-8). */
  async write(data: Uint8Array | string): Promise<void> {
    let bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    while (bytes.length > 0) {
      const n = await this.#conn.write(bytes);
      bytes = bytes.subarray(n);
    }
  }

  /**
   * Waits until `match(buffer)` returns an end offset ≥ 0, then removes and returns the bytes
   * up to that offset. Ends early on EOF or after `timeoutMs`.
   */
  async take(
    match: (buf: Uint8Array) => number,
    timeoutMs: number,
  ): Promise<{ end: WaitEnd; bytes: Uint8Array }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = match(this.#buf);
      if (at >= 0) {
        const bytes = this.#buf.slice(0, at);
        this.#buf = this.#buf.slice(at);
        return { end: "match", bytes };
      }
      if (this.#eof) return { end: "eof", bytes: new Uint8Array(0) };
      const left = deadline - Date.now();
      if (left <= 0) return { end: "timeout", bytes: new Uint8Array(0) };
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#changed.promise,
        new Promise<void>((r) => timer = setTimeout(r, left)),
      ]);
      clearTimeout(timer);
    }
  }

  /** Takes one line (without its `\n`), or says why none came. */
  async line(timeoutMs: number): Promise<Uint8Array | "timeout" | "eof"> {
    const r = await this.take((b) => {
      const i = b.indexOf(0x0a);
      return i < 0 ? -1 : i + 1;
    }, timeoutMs);
    if (r.end !== "match") return r.end;
    return r.bytes.subarray(0, r.bytes.length - 1);
  }

  /** Waits up to `ms` for more bytes or EOF; returns everything buffered then (and clears it). */
  async drain(ms: number): Promise<Uint8Array> {
    const deadline = Date.now() + ms;
    while (!this.#eof && Date.now() < deadline) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#changed.promise,
        new Promise<void>((r) => timer = setTimeout(r, deadline - Date.now())),
      ]);
      clearTimeout(timer);
    }
    const out = this.#buf;
    this.#buf = new Uint8Array(0);
    return out;
  }

  /** Closes the connection and waits for the reader to stop. Idempotent. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#conn.close();
      } catch {
        // already closed by the peer
      }
    }
    await this.#pump;
  }
}

/** Bytes as a one-char-per-byte string (0xFF stays `\xff`), for regexes over raw replies. */
export function latin1(bytes: Uint8Array): string {
  // (TextDecoder("latin1") is windows-1252 and would remap 0x80-0x9F)
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return out;
}

/** A short printable excerpt of raw bytes for failure messages. */
export function excerpt(bytes: Uint8Array | string, max = 300): string {
  const s = typeof bytes === "string" ? bytes : latin1(bytes);
  const shown = JSON.stringify(s.length > max ? s.slice(0, max) + "…" : s);
  return `${shown} (${s.length} bytes)`;
}
