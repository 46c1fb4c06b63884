/**
 * The benchmark's client: one unix-socket connection that writes request bytes
 * built in advance and reads replies as raw lines, looking at as little of each
 * reply as it needs. Both agents are driven by this same code.
 *
 * Every reply of qemu-ga (and deno-qga) is one JSON object followed by `\n`, and
 * no reply contains a raw newline, so a reply is "the bytes up to the next 0x0A".
 * A guest-file-read reply can be 64 MiB; it is received into one growing buffer
 * and only its first and last bytes are decoded.
 *
 * @module
 */

const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

/** Encodes a request object as one JSON line. */
export function request(execute: string, args?: Record<string, unknown>): Uint8Array {
  const msg = args ? { execute, arguments: args } : { execute };
  return encoder.encode(JSON.stringify(msg) + "\n");
}

/** A connection to an agent's unix socket. */
export class BenchConn implements Disposable {
  readonly #conn: Deno.UnixConn;
  #buf = new Uint8Array(1 << 20);
  /** Start of unconsumed data. */
  #start = 0;
  /** End of received data. */
  #end = 0;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  /** Wraps an already connected socket. */
  static from(conn: Deno.UnixConn): BenchConn {
    return new BenchConn(conn);
  }

  /** Connects once (no retry). */
  static async connect(path: string): Promise<BenchConn> {
    return new BenchConn(await Deno.connect({ transport: "unix", path }));
  }

  /** Writes all of `bytes`. */
  async send(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /**
   * The next reply line without its `\n`. The view is valid until the next call;
   * copy it to keep it.
   */
  async line(): Promise<Uint8Array> {
    let scan = this.#start;
    for (;;) {
      const nl = this.#buf.subarray(scan, this.#end).indexOf(0x0a);
      if (nl >= 0) {
        const at = scan + nl;
        const out = this.#buf.subarray(this.#start, at);
        this.#start = at + 1;
        if (this.#start === this.#end) this.#start = this.#end = 0;
        return out;
      }
      scan = this.#end;
      if (this.#end === this.#buf.length) {
        const used = this.#end - this.#start;
        if (this.#start > 0 && used < this.#buf.length / 2) {
          this.#buf.copyWithin(0, this.#start, this.#end);
        } else {
          const bigger = new Uint8Array(this.#buf.length * 2);
          bigger.set(this.#buf.subarray(this.#start, this.#end));
          this.#buf = bigger;
        }
        scan -= this.#start;
        this.#start = 0;
        this.#end = used;
      }
      const n = await this.#conn.read(this.#buf.subarray(this.#end));
      if (n === null) throw new Error("the agent closed the connection");
      this.#end += n;
    }
  }

  /** Sends one request and returns its reply as a string (small replies only). */
  async call(bytes: Uint8Array): Promise<string> {
    await this.send(bytes);
    return latin1.decode(await this.line());
  }

  /** Sends one request and returns the parsed `return` value; throws on an error reply. */
  async exec(execute: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = JSON.parse(await this.call(request(execute, args)));
    if ("error" in reply) throw new ReplyError(execute, reply.error.class, reply.error.desc);
    return reply.return;
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** An error reply. */
export class ReplyError extends Error {
  readonly errorClass: string;
  readonly desc: string;
  constructor(command: string, errorClass: string, desc: string) {
    super(`${command}: ${errorClass}: ${desc}`);
    this.errorClass = errorClass;
    this.desc = desc;
  }
}

/** True when a reply line is an error (`{"error": ...`; no ids are sent). */
export function isErrorLine(line: Uint8Array): boolean {
  return line[2] === 0x65; // 'e'
}

/** The error text of an error line (small lines). */
export function errorText(line: Uint8Array): string {
  return latin1.decode(line.subarray(0, 600));
}

/**
 * `count` and `eof` of a guest-file-read reply, decoded from its first and last
 * 160 bytes only (the base64 sits in between whatever the member order).
 */
export function readReplyFields(line: Uint8Array): { count: number; eof: boolean } {
  const text = line.length <= 320
    ? latin1.decode(line)
    : latin1.decode(line.subarray(0, 160)) + latin1.decode(line.subarray(line.length - 160));
  const count = /"count": (\d+)/.exec(text);
  const eof = /"eof": (true|false)/.exec(text);
  if (!count || !eof) throw new Error(`unexpected guest-file-read reply: ${errorText(line)}`);
  return { count: Number(count[1]), eof: eof[1] === "true" };
}

/** The integer `return` value of a small reply such as guest-file-open's. */
export function intReturn(line: Uint8Array): number {
  const m = /^\{"return": (\d+)/.exec(latin1.decode(line));
  if (!m) throw new Error(`unexpected reply: ${errorText(line)}`);
  return Number(m[1]);
}
