/**
 * The measured workloads. Each takes a connected {@link BenchConn} and returns a
 * rate; the same functions drive both agents. Request bytes are built before the
 * clock starts; replies are inspected only as far as needed.
 *
 * @module
 */

import {
  BenchConn,
  errorText,
  intReturn,
  isErrorLine,
  readReplyFields,
  ReplyError,
  request,
} from "./client.ts";

const encoder = new TextEncoder();
const MiB = 1024 * 1024;

/** Bounds of a rate measurement: stop at whichever comes first. */
export interface Bounds {
  maxCalls: number;
  maxMs: number;
}

/** A rate and what it was measured over. */
export interface Rate {
  /** Per second. */
  perSecond: number;
  calls: number;
  ms: number;
  /** Extra facts worth printing (e.g. polls per exec). */
  note?: string;
}

function rate(calls: number, ms: number, note?: string): Rate {
  return { perSecond: (calls * 1000) / ms, calls, ms, ...(note ? { note } : {}) };
}

function throwIfError(command: string, line: Uint8Array): void {
  if (isErrorLine(line)) {
    const m = /"class": "([^"]*)", "desc": "((?:[^"\\]|\\.)*)"/.exec(errorText(line)) ??
      /"desc": "((?:[^"\\]|\\.)*)", "class": "([^"]*)"/.exec(errorText(line));
    throw new ReplyError(command, m?.[1] ?? "?", m?.[2] ?? errorText(line));
  }
}

/** guest-ping one at a time: send, wait for the reply, repeat. */
export async function pingSerial(conn: BenchConn, bounds: Bounds): Promise<Rate> {
  const req = request("guest-ping");
  let calls = 0;
  const t0 = performance.now();
  const end = t0 + bounds.maxMs;
  while (calls < bounds.maxCalls) {
    await conn.send(req);
    throwIfError("guest-ping", await conn.line());
    calls++;
    if ((calls & 63) === 0 && performance.now() > end) break;
  }
  return rate(calls, performance.now() - t0);
}

/** guest-ping pipelined: `batch` requests in one write, then all replies; `rounds` times. */
export async function pingPipelined(conn: BenchConn, batch: number, rounds: number): Promise<Rate> {
  const one = request("guest-ping");
  const many = new Uint8Array(one.length * batch);
  for (let i = 0; i < batch; i++) many.set(one, i * one.length);
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    // Write and read concurrently: the replies must drain while the requests go out.
    const sent = conn.send(many);
    for (let i = 0; i < batch; i++) throwIfError("guest-ping", await conn.line());
    await sent;
  }
  return rate(batch * rounds, performance.now() - t0, `${batch} requests per write`);
}

/** Result of a file throughput run. */
export interface Throughput {
  mibPerSecond: number;
  bytes: number;
  ms: number;
  calls: number;
}

/** guest-file-open; returns the handle. */
async function open(conn: BenchConn, path: string, mode: string): Promise<number> {
  await conn.send(request("guest-file-open", { path, mode }));
  const line = await conn.line();
  throwIfError("guest-file-open", line);
  return intReturn(line);
}

async function close(conn: BenchConn, handle: number): Promise<void> {
  await conn.send(request("guest-file-close", { handle }));
  throwIfError("guest-file-close", await conn.line());
}

/**
 * Reads a whole file: open "r", guest-file-read with `count` until eof, close.
 * The clock covers all three.
 */
export async function fileRead(conn: BenchConn, path: string, count: number): Promise<Throughput> {
  const t0 = performance.now();
  const handle = await open(conn, path, "r");
  const req = request("guest-file-read", { handle, count });
  let bytes = 0;
  let calls = 0;
  for (;;) {
    await conn.send(req);
    const line = await conn.line();
    calls++;
    throwIfError("guest-file-read", line);
    const r = readReplyFields(line);
    bytes += r.count;
    if (r.eof) break;
  }
  await close(conn, handle);
  const ms = performance.now() - t0;
  return { mibPerSecond: bytes / MiB / (ms / 1000), bytes, ms, calls };
}

/**
 * guest-file-write requests for one chunk size, built once: the base64 sits in
 * one buffer with room after it for `,"handle":N}}\n`, filled in per handle.
 */
export class WriteRequest {
  readonly chunk: number;
  readonly #buf: Uint8Array;
  readonly #fixed: number;
  /** Length of the base64 text. */
  readonly base64Length: number;

  constructor(data: Uint8Array) {
    this.chunk = data.length;
    const head = encoder.encode('{"execute":"guest-file-write","arguments":{"buf-b64":"');
    const b64 = data.toBase64();
    this.#buf = new Uint8Array(head.length + b64.length + 64);
    this.#buf.set(head);
    const { written } = encoder.encodeInto(b64, this.#buf.subarray(head.length));
    this.#fixed = head.length + written;
    this.base64Length = written;
  }

  /** The request bytes for `handle` (a view into the shared buffer). */
  forHandle(handle: number): Uint8Array {
    const { written } = encoder.encodeInto(
      `","handle":${handle}}}\n`,
      this.#buf.subarray(this.#fixed),
    );
    return this.#buf.subarray(0, this.#fixed + written);
  }
}

/**
 * Writes `total` bytes: open "w", guest-file-write of `full.chunk` bytes each
 * (the last one `tail`, when given), close. The clock covers all of it.
 */
export async function fileWrite(
  conn: BenchConn,
  path: string,
  total: number,
  full: WriteRequest,
  tail: WriteRequest | undefined,
): Promise<Throughput> {
  const t0 = performance.now();
  const handle = await open(conn, path, "w");
  let bytes = 0;
  let calls = 0;
  const fullReq = full.forHandle(handle);
  while (bytes + full.chunk <= total) {
    await conn.send(fullReq);
    throwIfError("guest-file-write", await conn.line());
    bytes += full.chunk;
    calls++;
  }
  if (bytes < total) {
    if (!tail || tail.chunk !== total - bytes) throw new Error("no tail request for the remainder");
    await conn.send(tail.forHandle(handle));
    throwIfError("guest-file-write", await conn.line());
    bytes += tail.chunk;
    calls++;
  }
  await close(conn, handle);
  const ms = performance.now() - t0;
  return { mibPerSecond: bytes / MiB / (ms / 1000), bytes, ms, calls };
}

/**
 * guest-exec of /usr/bin/true, then guest-exec-status polled back to back until
 * `exited`; completed calls per second.
 */
export async function execTrue(conn: BenchConn, bounds: Bounds): Promise<Rate> {
  const execReq = request("guest-exec", { path: "/usr/bin/true" });
  let calls = 0;
  let polls = 0;
  const t0 = performance.now();
  const end = t0 + bounds.maxMs;
  while (calls < bounds.maxCalls && performance.now() < end) {
    await conn.send(execReq);
    const line = await conn.line();
    throwIfError("guest-exec", line);
    const pid = /"pid": (\d+)/.exec(new TextDecoder().decode(line))?.[1];
    if (!pid) throw new Error(`unexpected guest-exec reply: ${errorText(line)}`);
    const statusReq = encoder.encode(
      `{"execute":"guest-exec-status","arguments":{"pid":${pid}}}\n`,
    );
    for (;;) {
      await conn.send(statusReq);
      const st = await conn.line();
      polls++;
      throwIfError("guest-exec-status", st);
      const text = new TextDecoder().decode(st);
      if (text.includes('"exited": true')) {
        if (!text.includes('"exitcode": 0')) throw new Error(`/usr/bin/true failed: ${text}`);
        break;
      }
    }
    calls++;
  }
  const ms = performance.now() - t0;
  return rate(calls, ms, `${(polls / Math.max(calls, 1)).toFixed(1)} status polls per call`);
}

/** One query command (no arguments) one at a time. */
export async function query(conn: BenchConn, execute: string, bounds: Bounds): Promise<Rate> {
  const req = request(execute);
  let calls = 0;
  let bytes = 0;
  const t0 = performance.now();
  const end = t0 + bounds.maxMs;
  while (calls < bounds.maxCalls && (calls === 0 || performance.now() < end)) {
    await conn.send(req);
    const line = await conn.line();
    throwIfError(execute, line);
    bytes = line.length;
    calls++;
  }
  return rate(calls, performance.now() - t0, `reply ${bytes} bytes`);
}
