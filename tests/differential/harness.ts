/**
 * Byte-level harness for the differential suite: plays a script of writes, pauses,
 * connects and disconnects against one agent and records the exact reply bytes. A
 * script is agent-independent, so the same script is played against qemu-ga and deno-qga
 * and the two transcripts are compared byte for byte (after the masks an entry names).
 *
 * Quiescence: `mark` appends `{"execute":"guest-sync-delimited","arguments":{"id":N}}`
 * and reads until `\xff{"return": N}\n`; since qemu-ga answers strictly in order, every
 * earlier reply has arrived by then. `idle` reads until nothing arrives for a while (for
 * input that must not be answered, or that leaves the parser mid-token).
 *
 * @module
 */

import type { RunningAgent } from "../helpers/agents.ts";

/** Captured values (e.g. a file handle) usable by later writes of the same script. */
export type Vars = Readonly<Record<string, string>>;

/** Bytes to send: a string is sent as UTF-8; use {@link raw} for arbitrary bytes. */
export type Data = string | Uint8Array | ((vars: Vars) => string | Uint8Array);

/** One step of a script. `conn` defaults to 0; connection 0 opens on first use. */
export type Step =
  | { op: "connect"; conn: number }
  | { op: "write"; conn?: number; data: Data }
  | { op: "bytewise"; conn?: number; data: Data; pauseMs?: number }
  | { op: "pause"; ms: number }
  | { op: "mark"; conn?: number; capture?: string }
  | { op: "idle"; conn?: number; ms?: number }
  | { op: "close"; conn?: number }
  | { op: "files" };

/** A recorded piece of output. */
export interface Segment {
  /** Which step produced it, e.g. `c0 mark` or `c1 idle`. */
  readonly label: string;
  readonly bytes: Uint8Array;
}

/** Default idle time: no reply byte for this long means the agent is done. */
export const IDLE_MS = 300;
/** Longest wait for a marker reply. */
export const MARK_TIMEOUT_MS = 5000;
/** First marker id; markers count up from here within one script. */
export const MARKER_BASE = 7_700_000;

const encoder = new TextEncoder();

/** Bytes from a string whose char codes are bytes 0..255 (`raw("\xff{")`). */
export function raw(latin1: string): Uint8Array {
  const out = new Uint8Array(latin1.length);
  for (let i = 0; i < latin1.length; i++) {
    const c = latin1.charCodeAt(i);
    if (c > 0xff) throw new RangeError(`raw(): char code ${c} at ${i} is not a byte`);
    out[i] = c;
  }
  return out;
}

/** Concatenates strings (UTF-8) and byte arrays. */
export function cat(...parts: (string | Uint8Array)[]): Uint8Array {
  const bufs = parts.map((p) => typeof p === "string" ? encoder.encode(p) : p);
  const out = new Uint8Array(bufs.reduce((n, b) => n + b.length, 0));
  let at = 0;
  for (const b of bufs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

/** Bytes as a latin1 string (one char per byte), for searching. */
export function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

/** Printable escaped form: ASCII 0x20..0x7E as is (`\` doubled), `\n`, else `\xHH`. */
export function escapeBytes(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) {
    if (b === 0x5c) s += "\\\\";
    else if (b === 0x0a) s += "\\n";
    else if (b >= 0x20 && b < 0x7f) s += String.fromCharCode(b);
    else s += `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return s;
}

/** The marker request for id `n`. */
export function markerRequest(n: number): string {
  return `{"execute":"guest-sync-delimited","arguments":{"id":${n}}}`;
}

/** The exact marker reply for id `n`. */
export function markerReply(n: number): string {
  return `\xff{"return": ${n}}\n`;
}

/**
 * Connects to a unix socket. A refused or would-block connect is retried for up to 2 s:
 * qemu-ga listens with a backlog of 1, so a connect racing with its accept of the previous
 * client can be refused although the agent is fine.
 */
export async function connectUnix(path: string): Promise<Deno.UnixConn> {
  const deadline = Date.now() + 2000;
  for (;;) {
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch (e) {
      const retry = e instanceof Deno.errors.ConnectionRefused ||
        e instanceof Deno.errors.WouldBlock;
      if (!retry || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** A connection with a background reader that buffers everything received. */
class Client {
  #conn: Deno.UnixConn;
  #chunks: Uint8Array[] = [];
  #size = 0;
  #eof = false;
  #lastByteAt = Date.now();
  #wake: (() => void) | undefined;
  #loop: Promise<void>;

  constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
    this.#loop = this.#readLoop();
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(65536);
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) break;
        this.#chunks.push(buf.slice(0, n));
        this.#size += n;
        this.#lastByteAt = Date.now();
        this.#wake?.();
      }
    } catch {
      // closed by us, or reset by the agent: both end the stream
    }
    this.#eof = true;
    this.#wake?.();
  }

  /** Everything buffered so far (not consumed). */
  peek(): Uint8Array {
    if (this.#chunks.length !== 1) {
      const all = cat(...this.#chunks);
      this.#chunks = all.length > 0 ? [all] : [];
    }
    return this.#chunks[0] ?? new Uint8Array();
  }

  /** Removes and returns the first `n` buffered bytes. */
  take(n: number): Uint8Array {
    const all = this.peek();
    const head = all.slice(0, n);
    const rest = all.slice(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#size = rest.length;
    return head;
  }

  get size(): number {
    return this.#size;
  }

  get eof(): boolean {
    return this.#eof;
  }

  get lastByteAt(): number {
    return this.#lastByteAt;
  }

  /** Resolves on new bytes, EOF or after `ms`. */
  waitChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }

  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.length) at += await this.#conn.write(bytes.subarray(at));
  }

  async close(): Promise<void> {
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    await this.#loop;
    this.#wake = undefined;
  }
}

function toBytes(data: Data, vars: Vars): Uint8Array {
  const d = typeof data === "function" ? data(vars) : data;
  return typeof d === "string" ? encoder.encode(d) : d;
}

/** Reads until `needle` (latin1) is buffered; returns the bytes through it, or a note. */
async function readUntil(client: Client, needle: string, timeoutMs: number): Promise<Uint8Array> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const at = latin1(client.peek()).indexOf(needle);
    if (at >= 0) return client.take(at + needle.length);
    const left = deadline - Date.now();
    if (client.eof || left <= 0) {
      const got = client.take(client.size);
      const why = client.eof ? "<EOF before marker reply>" : `<no marker reply in ${timeoutMs} ms>`;
      return cat(got, why);
    }
    await client.waitChange(left);
  }
}

/** Reads until nothing arrives for `ms`; returns what arrived (plus `<EOF>` if closed). */
async function readIdle(client: Client, ms: number): Promise<Uint8Array> {
  const start = Date.now();
  for (;;) {
    const quietFor = Date.now() - Math.max(client.lastByteAt, start);
    if (client.eof) {
      return cat(client.take(client.size), "<EOF>");
    }
    if (quietFor >= ms) return client.take(client.size);
    await client.waitChange(ms - quietFor);
  }
}

/** Options of {@link runScript}. */
export interface RunOptions {
  /** First marker id (so that resyncs on a shared agent never reuse an id). */
  markerBase?: number;
}

/** Plays `steps` against `agent`; returns the recorded segments. Closes every connection. */
export async function runScript(
  agent: RunningAgent,
  steps: readonly Step[],
  options: RunOptions = {},
): Promise<Segment[]> {
  const clients = new Map<number, Client>();
  const vars: Record<string, string> = {};
  const segments: Segment[] = [];
  let marker = options.markerBase ?? MARKER_BASE;

  async function client(n: number | undefined): Promise<Client> {
    const key = n ?? 0;
    let c = clients.get(key);
    if (!c) {
      c = new Client(await connectUnix(agent.socketPath));
      clients.set(key, c);
    }
    return c;
  }

  try {
    for (const step of steps) {
      switch (step.op) {
        case "connect":
          await client(step.conn);
          break;
        case "write":
          await (await client(step.conn)).write(toBytes(step.data, vars));
          break;
        case "bytewise": {
          const c = await client(step.conn);
          const bytes = toBytes(step.data, vars);
          for (let i = 0; i < bytes.length; i++) {
            await c.write(bytes.subarray(i, i + 1));
            await new Promise((r) => setTimeout(r, step.pauseMs ?? 2));
          }
          break;
        }
        case "pause":
          await new Promise((r) => setTimeout(r, step.ms));
          break;
        case "mark": {
          const c = await client(step.conn);
          const id = marker++;
          await c.write(encoder.encode(markerRequest(id)));
          const bytes = await readUntil(c, markerReply(id), MARK_TIMEOUT_MS);
          segments.push({ label: `c${step.conn ?? 0} mark`, bytes });
          if (step.capture) {
            // The first reply that is not a 0xFF-prefixed marker reply.
            const m = /(?<!\xff)\{"return": (?:\{"pid": )?(-?\d+)[,}]/.exec(latin1(bytes));
            vars[step.capture] = m?.[1] ?? "null";
          }
          break;
        }
        case "idle": {
          const c = await client(step.conn);
          segments.push({
            label: `c${step.conn ?? 0} idle`,
            bytes: await readIdle(c, step.ms ?? IDLE_MS),
          });
          break;
        }
        case "close": {
          const key = step.conn ?? 0;
          await clients.get(key)?.close();
          clients.delete(key);
          break;
        }
        case "files":
          segments.push({ label: "files", bytes: await filesSnapshot(agent.dir) });
          break;
      }
    }
  } finally {
    for (const c of clients.values()) await c.close();
  }
  return segments;
}

/** Regular files of a dir (not sockets), sorted: `name(octal mode)=<bytes>;` each. */
async function filesSnapshot(dir: string): Promise<Uint8Array> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.isFile) names.push(e.name);
  names.sort();
  const parts: (string | Uint8Array)[] = [];
  for (const n of names) {
    const mode = ((await Deno.stat(`${dir}/${n}`)).mode ?? 0) & 0o7777;
    parts.push(`${n}(${mode.toString(8)})=<`, await Deno.readFile(`${dir}/${n}`), ">;");
  }
  return cat(...parts);
}

/**
 * Puts a shared agent's parser back into the start state after a script: a new
 * connection sends 0xFF plus a marker and discards everything up to the marker reply.
 * Returns false if the marker reply did not come.
 */
export async function resync(agent: RunningAgent, id: number): Promise<boolean> {
  const c = new Client(await connectUnix(agent.socketPath));
  try {
    await c.write(cat(raw("\xff"), markerRequest(id)));
    const got = await readUntil(c, markerReply(id), MARK_TIMEOUT_MS);
    return latin1(got).endsWith(markerReply(id));
  } finally {
    await c.close();
  }
}

/** A transcript as text: one line per segment, `label: escaped bytes`. */
export function transcriptText(segments: readonly Segment[]): string {
  return segments.map((s) => `${s.label}: ${escapeBytes(s.bytes)}`).join("\n");
}
