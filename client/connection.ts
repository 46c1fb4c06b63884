/**
 * One connection to a guest agent (qemu-ga or deno-qga) over a unix socket (a QEMU chardev
 * socket or an agent's unix-listen socket): commands one at a time, resynchronisation the
 * way qga-reference.md §1.7 recommends, replies of any size read in linear time, big
 * integers kept exact. client/client.ts builds the file copy, exec and freeze helpers on it.
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
/** A reply object: `{"return": ...}` or `{"error": {"class", "desc"}}`, maybe with `"id"`. */
export type QgaReply = { [key: string]: JsonValue };

/** A reply and the exact line it came in (without the 0xFF prefix and the newline). */
export interface TextReply {
  /** The parsed reply object. */
  reply: QgaReply;
  /** The line as the agent wrote it. */
  line: string;
}

/** Options for {@linkcode QgaConnection.connect}. */
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

/** Options for {@linkcode QgaConnection.executeNoReply}. */
export interface NoReplyOptions {
  /** How long an error reply may take to arrive, in milliseconds. Default 1000. */
  waitMs?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** True for a JSON object. */
export function isRecord(value: unknown): value is { [key: string]: JsonValue } {
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

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * A connection to a guest agent. Commands run one at a time; concurrent calls queue up.
 *
 * @example
 * ```ts
 * await using agent = await QgaConnection.connect("/run/qga.sock", { timeoutMs: 5000 });
 * const time = await agent.execute("guest-get-time"); // bigint nanoseconds
 * ```
 */
export class QgaConnection {
  #channel: ByteChannel;
  #reader: ReplyReader;
  #timeoutMs: number;
  #syncTimeoutMs: number;
  #syncAttempts: number;
  #autoSync: boolean;
  #needsSync = true;
  #closed = false;
  #queue: Promise<unknown> = Promise.resolve();

  /** Wraps an open byte channel; prefer {@linkcode QgaConnection.connect}. */
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
   * `timeoutMs`). Nothing is sent until the first command. Needs `--allow-read`,
   * `--allow-write` and `--allow-net=unix:<path>` (or broader). Called on a subclass
   * (QgaClient), it makes one of those.
   */
  static async connect<T extends QgaConnection>(
    this: new (channel: ByteChannel, options: ConnectOptions) => T,
    path: string,
    options: ConnectOptions = {},
  ): Promise<T> {
    const deadline = performance.now() + (options.timeoutMs ?? 10_000);
    while (true) {
      try {
        return new this(await Deno.connect({ transport: "unix", path }), options);
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
