/**
 * The host side of the guest agent protocol: a client for a unix socket (a QEMU chardev
 * socket or an agent's unix-listen socket) that resynchronises the way qga-reference.md §1.7
 * recommends, reads replies of any size in linear time and keeps big integers exact.
 *
 * @module
 */

import {
  QgaClientError,
  QgaConnectionError,
  QgaProtocolError,
  QgaReplyError,
  QgaTimeoutError,
} from "./errors.ts";
import { type JsonValue, parseJson, stringifyJson } from "./json.ts";
import { type ByteChannel, ReplyReader } from "./reply_reader.ts";

/** The byte qemu-ga puts before a `guest-sync-delimited` reply, and that resets its lexer. */
export const SENTINEL_BYTE = 0xff;
/** Largest `count` the agent accepts for `guest-file-read` (48 MiB, qga-reference.md §3.1). */
export const MAX_READ_CHUNK = 48 * 1024 * 1024;
/**
 * Largest chunk {@linkcode QgaClient.copyIn} sends in one `guest-file-write`: 48 MiB less
 * 192 bytes, so that the base64 text plus the request stays under the agent's 64 MiB JSON
 * token limit (qga-reference.md §1.2).
 */
export const MAX_WRITE_CHUNK = 48 * 1024 * 1024 - 192;
/** Default chunk size of the copy helpers (1 MiB, as Proxmox reads). */
export const DEFAULT_CHUNK = 1024 * 1024;

/** A reply object: `{"return": ...}` or `{"error": {"class", "desc"}}`, maybe with `"id"`. */
export type QgaReply = { [key: string]: JsonValue };

/** A reply and the exact line it came in (without the 0xFF prefix and the newline). */
export interface TextReply {
  /** The parsed reply object. */
  reply: QgaReply;
  /** The line as the agent wrote it. */
  line: string;
}

/** Options for {@linkcode QgaClient.connect}. */
export interface ConnectOptions {
  /** Default time to wait for a reply, in milliseconds. Default 10000. */
  timeoutMs?: number;
  /** Time one synchronisation attempt may take, in milliseconds. Default 5000. */
  syncTimeoutMs?: number;
  /** Synchronisation attempts before giving up. Default 3. */
  syncAttempts?: number;
  /**
   * Synchronise automatically before the first command and after any timeout or garbled
   * reply. Default true.
   */
  autoSync?: boolean;
  /** Longest accepted reply line, in bytes. Default 256 MiB. */
  maxReplyBytes?: number;
}

/** Options for one command. */
export interface ExecuteOptions {
  /** Time to wait for the reply, in milliseconds; overrides the client default. */
  timeoutMs?: number;
}

/** Options for {@linkcode QgaClient.executeNoReply}. */
export interface NoReplyOptions {
  /** How long an error reply may take to arrive, in milliseconds. Default 1000. */
  waitMs?: number;
}

/** Progress of a copy, passed to `onProgress`. */
export interface CopyProgress {
  /** Bytes copied so far. */
  bytes: number;
  /** Total size in bytes, when known. */
  total: number | undefined;
}

/** Options for {@linkcode QgaClient.copyIn} and {@linkcode QgaClient.copyOut}. */
export interface CopyOptions {
  /** Bytes per `guest-file-write` / `guest-file-read`. Default 1 MiB. */
  chunkSize?: number;
  /** Called before the first chunk and after every chunk. */
  onProgress?: (progress: CopyProgress) => void;
  /**
   * Time to wait for each chunk's reply, in milliseconds. Default: the client timeout plus one
   * second per MiB of chunk.
   */
  timeoutMs?: number;
}

/** Result of a copy. */
export interface CopyResult {
  /** Bytes copied. */
  bytes: number;
  /** Wall time in milliseconds. */
  elapsedMs: number;
}

/** Options for {@linkcode QgaClient.exec}. */
export interface ExecOptions {
  /** Bytes (or text, sent as UTF-8) for the program's standard input. */
  input?: Uint8Array | string;
  /**
   * `capture-output`: true (stdout and stderr separately, the default), false, or one of the
   * 8.1+ modes `"none" | "stdout" | "stderr" | "separated" | "merged"`.
   */
  captureOutput?: boolean | string;
  /** Replacement environment, as `NAME=value` strings (replaces the whole environment). */
  env?: string[];
  /** Give up waiting after this many milliseconds (the program keeps running). */
  timeoutMs?: number;
  /** Longest pause between two `guest-exec-status` polls, in milliseconds. Default 200. */
  maxPollIntervalMs?: number;
}

/** What a program run by {@linkcode QgaClient.exec} did. */
export interface ExecResult {
  /** The guest pid. */
  pid: number;
  /** Exit code, or null if a signal ended the program. */
  exitcode: number | null;
  /** Signal number that ended the program, or null. */
  signal: number | null;
  /** Captured standard output (empty if nothing was captured). */
  stdout: Uint8Array;
  /** Captured standard error. */
  stderr: Uint8Array;
  /** The agent kept only the first 16 MiB of stdout. */
  stdoutTruncated: boolean;
  /** The agent kept only the first 16 MiB of stderr. */
  stderrTruncated: boolean;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function isRecord(value: unknown): value is { [key: string]: JsonValue } {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A random `guest-sync-delimited` id in [0, 2^53). */
function randomSyncId(): number {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((words[0] ?? 0) & 0x1fffff) * 2 ** 32 + (words[1] ?? 0);
}

function stripSentinels(line: Uint8Array): Uint8Array {
  let at = 0;
  while (at < line.length && line[at] === SENTINEL_BYTE) at++;
  return line.subarray(at);
}

function isBlank(line: Uint8Array): boolean {
  return line.every((byte) => byte === 0x20 || byte === 0x09 || byte === 0x0d);
}

function checkChunkSize(size: number, max: number): number {
  if (!Number.isSafeInteger(size) || size < 1 || size > max) {
    throw new RangeError(`Chunk size must be an integer from 1 to ${max}: received ${size}`);
  }
  return size;
}

function integerField(reply: JsonValue, name: string, command: string): number {
  const value = isRecord(reply) ? reply[name] : undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new QgaProtocolError(`Reply to ${command} lacks integer member "${name}"`);
  }
  return value;
}

function decodeOutput(value: JsonValue | undefined): Uint8Array {
  return typeof value === "string" ? Uint8Array.fromBase64(value) : new Uint8Array(0);
}

/** Reads until `buffer` is full or the file ends; resolves to the byte count. */
async function readFull(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const count = await file.read(buffer.subarray(filled));
    if (count === null) break;
    filled += count;
  }
  return filled;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A guest agent client over one stream connection. Commands run one at a time; concurrent
 * calls queue up.
 *
 * @example
 * ```ts
 * await using client = await QgaClient.connect("/run/qga.sock", { timeoutMs: 5000 });
 * const time = await client.execute("guest-get-time"); // bigint nanoseconds
 * await client.copyIn("./tool", "/usr/local/bin/tool");
 * const run = await client.exec("/bin/uname", ["-a"]);
 * ```
 */
export class QgaClient {
  #channel: ByteChannel;
  #reader: ReplyReader;
  #timeoutMs: number;
  #syncTimeoutMs: number;
  #syncAttempts: number;
  #autoSync: boolean;
  #needsSync = true;
  #closed = false;
  #queue: Promise<unknown> = Promise.resolve();

  /** Wraps an open byte channel; prefer {@linkcode QgaClient.connect}. */
  constructor(channel: ByteChannel, options: ConnectOptions = {}) {
    this.#channel = channel;
    this.#reader = new ReplyReader(
      channel,
      options.maxReplyBytes === undefined ? {} : { maxLineBytes: options.maxReplyBytes },
    );
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.#syncTimeoutMs = options.syncTimeoutMs ?? 5_000;
    this.#syncAttempts = options.syncAttempts ?? 3;
    this.#autoSync = options.autoSync ?? true;
  }

  /**
   * Connects to the unix socket at `path`, retrying while the listen backlog is full (until
   * `timeoutMs`). Nothing is sent until the first command. Needs `--allow-read`, `--allow-write` and `--allow-net=unix:<path>` (or broader).
   */
  static async connect(path: string, options: ConnectOptions = {}): Promise<QgaClient> {
    const deadline = performance.now() + (options.timeoutMs ?? 10_000);
    while (true) {
      try {
        return new QgaClient(await Deno.connect({ transport: "unix", path }), options);
      } catch (error) {
        // EAGAIN: the listen backlog (1 for qemu-ga) is full while the agent finishes with the
        // previous client; it accepts again shortly.
        if (error instanceof Deno.errors.WouldBlock && performance.now() < deadline) {
          await delay(10);
          continue;
        }
        throw new QgaConnectionError(
          `Cannot connect to "${path}": ${error instanceof Error ? error.message : error}`,
          { cause: error },
        );
      }
    }
  }

  /** The default reply timeout in milliseconds. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /**
   * Synchronises with the agent (qga-reference.md §1.7): sends 0xFF and
   * `guest-sync-delimited` with a random id, discards input through the 0xFF sentinel, then
   * reads replies until one returns the id. Repeats with a new id after a timeout.
   * Resolves to the id that was echoed.
   */
  sync(options: { timeoutMs?: number; attempts?: number } = {}): Promise<number> {
    return this.#exclusive(() => this.#sync(options.timeoutMs, options.attempts));
  }

  /**
   * Runs a command and resolves to its `return` value. Throws {@linkcode QgaReplyError} for
   * an error reply, {@linkcode QgaTimeoutError}, {@linkcode QgaConnectionError} or
   * {@linkcode QgaProtocolError}.
   */
  execute<T = JsonValue>(
    name: string,
    args?: { [key: string]: unknown },
    options: ExecuteOptions = {},
  ): Promise<T> {
    const request = args === undefined ? { execute: name } : { execute: name, arguments: args };
    return this.#exclusive(async () => {
      const reply = await this.#roundTrip(stringifyJson(request), name, options.timeoutMs);
      return unwrapReply(reply, name) as T;
    });
  }

  /**
   * Sends a request given as JSON text (no validation) and resolves to the whole reply
   * object, error replies included, with the line as received.
   */
  executeText(request: string, options: ExecuteOptions = {}): Promise<TextReply> {
    return this.#exclusive(async () => {
      await this.#prepare();
      await this.#send(encoder.encode(request.trim() + "\n"));
      const deadline = performance.now() + (options.timeoutMs ?? this.#timeoutMs);
      return await this.#readReplyText("request", deadline);
    });
  }

  /**
   * Runs a command that sends no reply on success (`guest-shutdown`, `guest-suspend-*`).
   * Succeeds when no reply arrives within `waitMs` or the connection closes; throws
   * {@linkcode QgaReplyError} when the agent answers with an error.
   */
  executeNoReply(
    name: string,
    args?: { [key: string]: unknown },
    options: NoReplyOptions = {},
  ): Promise<void> {
    const request = args === undefined ? { execute: name } : { execute: name, arguments: args };
    return this.#exclusive(async () => {
      await this.#prepare();
      await this.#send(encoder.encode(stringifyJson(request) + "\n"));
      let reply: QgaReply;
      try {
        reply = await this.#readReply(name, performance.now() + (options.waitMs ?? 1000));
      } catch (error) {
        if (error instanceof QgaTimeoutError) {
          this.#needsSync = true;
          return;
        }
        if (error instanceof QgaConnectionError) return;
        throw error;
      }
      unwrapReply(reply, name);
    });
  }

  /** `guest-ping`. */
  async ping(options: ExecuteOptions = {}): Promise<void> {
    await this.execute("guest-ping", undefined, options);
  }

  /**
   * Copies the local file `local` to `remote` in the guest (`guest-file-open` mode "wb",
   * `guest-file-write` per chunk, `guest-file-close`).
   */
  async copyIn(local: string, remote: string, options: CopyOptions = {}): Promise<CopyResult> {
    const chunkSize = checkChunkSize(options.chunkSize ?? DEFAULT_CHUNK, MAX_WRITE_CHUNK);
    const timeoutMs = options.timeoutMs ?? this.#transferTimeout(chunkSize);
    const started = performance.now();
    using file = await Deno.open(local, { read: true });
    const total = (await file.stat()).size;
    const handle = await this.execute<number>("guest-file-open", { path: remote, mode: "wb" });
    let bytes = 0;
    await this.#withHandle(handle, async () => {
      const buffer = new Uint8Array(Math.min(chunkSize, Math.max(total, 1)));
      options.onProgress?.({ bytes, total });
      while (true) {
        const count = await readFull(file, buffer);
        if (count === 0) break;
        const reply = await this.execute("guest-file-write", {
          handle,
          "buf-b64": buffer.subarray(0, count).toBase64(),
        }, { timeoutMs });
        const written = integerField(reply, "count", "guest-file-write");
        if (written !== count) {
          throw new QgaProtocolError(`guest-file-write wrote ${written} of ${count} bytes`);
        }
        bytes += count;
        options.onProgress?.({ bytes, total });
        if (count < buffer.length) break;
      }
    });
    return { bytes, elapsedMs: performance.now() - started };
  }

  /**
   * Copies `remote` in the guest to the local file `local` (`guest-file-open` mode "r",
   * `guest-file-read` with `count` until `eof`, as Proxmox does, then `guest-file-close`).
   * The total for progress comes from a `guest-file-seek` to the end, when the file can seek.
   */
  async copyOut(remote: string, local: string, options: CopyOptions = {}): Promise<CopyResult> {
    const chunkSize = checkChunkSize(options.chunkSize ?? DEFAULT_CHUNK, MAX_READ_CHUNK);
    const timeoutMs = options.timeoutMs ?? this.#transferTimeout(chunkSize);
    const started = performance.now();
    const handle = await this.execute<number>("guest-file-open", { path: remote, mode: "r" });
    let bytes = 0;
    await this.#withHandle(handle, async () => {
      const total = await this.#remoteSize(handle);
      using file = await Deno.open(local, { write: true, create: true, truncate: true });
      const buffer = new Uint8Array(chunkSize);
      options.onProgress?.({ bytes, total });
      while (true) {
        const reply = await this.execute("guest-file-read", { handle, count: chunkSize }, {
          timeoutMs,
        });
        const count = integerField(reply, "count", "guest-file-read");
        const data = isRecord(reply) ? reply["buf-b64"] : undefined;
        if (count > 0) {
          if (typeof data !== "string") {
            throw new QgaProtocolError(`Reply to guest-file-read lacks "buf-b64"`);
          }
          const { written } = buffer.setFromBase64(data);
          if (written !== count) {
            throw new QgaProtocolError(
              `guest-file-read reported ${count} bytes but sent ${written}`,
            );
          }
          await writeAll(file, buffer.subarray(0, count));
          bytes += count;
          options.onProgress?.({ bytes, total });
        }
        if ((isRecord(reply) && reply.eof === true) || count === 0) break;
      }
    });
    return { bytes, elapsedMs: performance.now() - started };
  }

  /**
   * Runs `path` with `args` in the guest (`guest-exec`) and polls `guest-exec-status` until it
   * exits. Throws {@linkcode QgaTimeoutError} after `timeoutMs` (the program keeps running).
   */
  async exec(path: string, args: string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    const request: { [key: string]: unknown } = {
      path,
      arg: args,
      "capture-output": options.captureOutput ?? true,
    };
    if (options.env !== undefined) request.env = options.env;
    if (options.input !== undefined) {
      const input = typeof options.input === "string"
        ? encoder.encode(options.input)
        : options.input;
      request["input-data"] = input.toBase64();
    }
    const started = await this.execute("guest-exec", request);
    const pid = integerField(started, "pid", "guest-exec");
    const deadline = options.timeoutMs === undefined
      ? Infinity
      : performance.now() + options.timeoutMs;
    const maxPause = options.maxPollIntervalMs ?? 200;
    let pause = 2;
    while (true) {
      const status = await this.execute("guest-exec-status", { pid });
      if (!isRecord(status)) {
        throw new QgaProtocolError("Reply to guest-exec-status is not an object");
      }
      if (status.exited === true) {
        return {
          pid,
          exitcode: typeof status.exitcode === "number" ? status.exitcode : null,
          signal: typeof status.signal === "number" ? status.signal : null,
          stdout: decodeOutput(status["out-data"]),
          stderr: decodeOutput(status["err-data"]),
          stdoutTruncated: status["out-truncated"] === true,
          stderrTruncated: status["err-truncated"] === true,
        };
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new QgaTimeoutError(
          `Process ${pid} is still running after ${options.timeoutMs} ms`,
        );
      }
      await delay(Math.min(pause, left));
      pause = Math.min(pause * 2, maxPause);
    }
  }

  /**
   * Freezes guest filesystems: all of them (`guest-fsfreeze-freeze`) or the given mount
   * points (`guest-fsfreeze-freeze-list`). Resolves to the number frozen. The default
   * timeout is 10 minutes, as Proxmox allows.
   */
  async freeze(mountpoints?: string[], options: ExecuteOptions = {}): Promise<number> {
    const timeout = { timeoutMs: options.timeoutMs ?? 600_000 };
    const count = mountpoints === undefined
      ? await this.execute("guest-fsfreeze-freeze", undefined, timeout)
      : await this.execute("guest-fsfreeze-freeze-list", { mountpoints }, timeout);
    return expectCount(count, "guest-fsfreeze-freeze");
  }

  /** Thaws guest filesystems (`guest-fsfreeze-thaw`); resolves to the number thawed. */
  async thaw(options: ExecuteOptions = {}): Promise<number> {
    const count = await this.execute("guest-fsfreeze-thaw", undefined, {
      timeoutMs: options.timeoutMs ?? 180_000,
    });
    return expectCount(count, "guest-fsfreeze-thaw");
  }

  /** `guest-fsfreeze-status`: `"thawed"` or `"frozen"`. */
  async fsfreezeStatus(options: ExecuteOptions = {}): Promise<string> {
    const status = await this.execute("guest-fsfreeze-status", undefined, options);
    if (typeof status !== "string") {
      throw new QgaProtocolError("Reply to guest-fsfreeze-status is not a string");
    }
    return status;
  }

  /** Closes the connection and waits for the outstanding read to end. Safe to call twice. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.#channel.close();
      } catch {
        // Already closed by the peer; nothing left to release.
      }
    }
    await this.#reader.settle();
  }

  /** Same as {@linkcode close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #transferTimeout(chunkSize: number): number {
    return this.#timeoutMs + Math.ceil(chunkSize / (1024 * 1024)) * 1000;
  }

  async #remoteSize(handle: number): Promise<number | undefined> {
    let end: JsonValue;
    try {
      end = await this.execute("guest-file-seek", { handle, offset: 0, whence: "end" });
    } catch (error) {
      if (error instanceof QgaReplyError) return undefined; // a pipe or device: size unknown
      throw error;
    }
    await this.execute("guest-file-seek", { handle, offset: 0, whence: "set" });
    return integerField(end, "position", "guest-file-seek");
  }

  /** Runs `body`, then closes the guest handle; a close failure after a body failure is dropped. */
  async #withHandle(handle: number, body: () => Promise<void>): Promise<void> {
    try {
      await body();
    } catch (error) {
      if (!(error instanceof QgaConnectionError)) {
        await this.execute("guest-file-close", { handle }).catch(() => undefined);
      }
      throw error;
    }
    await this.execute("guest-file-close", { handle });
  }

  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(() => {
      if (this.#closed) throw new QgaConnectionError("The client is closed");
      return task();
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #prepare(): Promise<void> {
    if (this.#reader.ended) throw new QgaConnectionError("The agent closed the connection");
    if (this.#autoSync && this.#needsSync) await this.#sync(undefined, undefined);
  }

  async #roundTrip(request: string, name: string, timeoutMs: number | undefined) {
    await this.#prepare();
    await this.#send(encoder.encode(request + "\n"));
    return await this.#readReply(name, performance.now() + (timeoutMs ?? this.#timeoutMs));
  }

  async #sync(timeoutMs: number | undefined, attempts: number | undefined): Promise<number> {
    const tries = attempts ?? this.#syncAttempts;
    for (let attempt = 1;; attempt++) {
      const id = randomSyncId();
      const body = encoder.encode(
        stringifyJson({ execute: "guest-sync-delimited", arguments: { id } }) + "\n",
      );
      const request = new Uint8Array(1 + body.length);
      request[0] = SENTINEL_BYTE;
      request.set(body, 1);
      await this.#send(request);
      const deadline = performance.now() + (timeoutMs ?? this.#syncTimeoutMs);
      try {
        await this.#reader.discardThrough(SENTINEL_BYTE, deadline);
        while (true) {
          const line = stripSentinels(await this.#reader.readLine(deadline));
          let value: JsonValue;
          try {
            value = parseJson(decoder.decode(line));
          } catch {
            continue; // garbage or a line cut short by an earlier failure
          }
          if (isRecord(value) && value.return === id) {
            this.#needsSync = false;
            return id;
          }
        }
      } catch (error) {
        if (!(error instanceof QgaTimeoutError) || attempt >= tries) {
          this.#needsSync = true;
          if (error instanceof QgaTimeoutError) {
            throw new QgaTimeoutError(
              `The agent did not answer guest-sync-delimited (${attempt} attempts)`,
            );
          }
          throw error;
        }
      }
    }
  }

  async #send(bytes: Uint8Array): Promise<void> {
    let sent = 0;
    try {
      while (sent < bytes.length) sent += await this.#channel.write(bytes.subarray(sent));
    } catch (error) {
      throw new QgaConnectionError(
        `Cannot write to the agent: ${error instanceof Error ? error.message : error}`,
        { cause: error },
      );
    }
  }

  async #readReply(name: string, deadline: number): Promise<QgaReply> {
    return (await this.#readReplyText(name, deadline)).reply;
  }

  async #readReplyText(name: string, deadline: number): Promise<TextReply> {
    try {
      while (true) {
        const line = stripSentinels(await this.#reader.readLine(deadline));
        if (isBlank(line)) continue;
        const text = decoder.decode(line);
        let value: JsonValue;
        try {
          value = parseJson(text);
        } catch (error) {
          throw new QgaProtocolError(`Reply to ${name} is not JSON: ${text.slice(0, 200)}`, {
            cause: error,
          });
        }
        if (!isRecord(value) || !("return" in value || "error" in value)) {
          throw new QgaProtocolError(
            `Reply to ${name} is not a reply object: ${text.slice(0, 200)}`,
          );
        }
        if (isLexerError(value)) this.#needsSync = true; // more error lines may follow
        return { reply: value, line: text };
      }
    } catch (error) {
      if (error instanceof QgaClientError && !(error instanceof QgaReplyError)) {
        this.#needsSync = true;
      }
      throw error;
    }
  }
}

function isLexerError(reply: QgaReply): boolean {
  const error = reply.error;
  return isRecord(error) && typeof error.desc === "string" && error.desc.startsWith("JSON ");
}

/** Returns the `return` member of `reply`, or throws {@linkcode QgaReplyError}. */
export function unwrapReply(reply: QgaReply, command: string): JsonValue {
  if ("return" in reply) return reply.return as JsonValue;
  const error = reply.error;
  if (isRecord(error) && typeof error.class === "string" && typeof error.desc === "string") {
    throw new QgaReplyError(error.class, error.desc, command);
  }
  throw new QgaProtocolError(`Malformed error reply to ${command}: ${stringifyJson(reply)}`);
}

function expectCount(value: JsonValue, command: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new QgaProtocolError(`Reply to ${command} is not an integer`);
  }
  return value;
}
