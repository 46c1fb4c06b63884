/**
 * The host side of the guest agent protocol for tools: a {@link QgaConnection}
 * (client/connection.ts) plus what hosts build on the commands: copying files in and out
 * (guest-file-*), running a program to completion (guest-exec, guest-exec-status) and
 * freezing filesystems.
 *
 * @module
 */

import { QgaConnectionError, QgaProtocolError, QgaReplyError, QgaTimeoutError } from "./errors.ts";
import type { JsonValue } from "./json.ts";
import { delay, type ExecuteOptions, isRecord, QgaConnection } from "./connection.ts";

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
export class QgaClient extends QgaConnection {
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

  #transferTimeout(chunkSize: number): number {
    return this.timeoutMs + Math.ceil(chunkSize / (1024 * 1024)) * 1000;
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
}

function expectCount(value: JsonValue, command: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new QgaProtocolError(`Reply to ${command} is not an integer`);
  }
  return value;
}
