/**
 * Splits the agent's output into reply lines. The agent writes one JSON object per line
 * (qga-reference.md §1.1); `guest-sync-delimited` replies are prefixed by a 0xFF byte.
 *
 * Bytes are read straight into one growable buffer that doubles when a line does not fit,
 * and is compacted once at least half of it has been consumed, so a 64 MiB `guest-file-read`
 * reply costs a linear number of copies. At most one read is outstanding: a read that
 * outlives a timeout is kept and consumed by the next call, so no byte is ever lost.
 *
 * @module
 */

import { QgaConnectionError, QgaProtocolError, QgaTimeoutError } from "./errors.ts";

/** The byte stream the reader consumes; `Deno.Conn` satisfies it. */
export interface ByteChannel {
  /** Reads into `p`; resolves to the byte count, or null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves to the number of bytes written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the channel; a pending read then rejects or resolves to null. */
  close(): void;
}

/** Options for {@linkcode ReplyReader}. */
export interface ReplyReaderOptions {
  /** Longest accepted line in bytes, without the newline. Default 256 MiB. */
  maxLineBytes?: number;
  /** Initial buffer size in bytes. Default 1 MiB. */
  initialBufferBytes?: number;
}

type ReadOutcome = { bytes: number | null } | { error: unknown };

const TIMED_OUT = Symbol("timed out");
const NEWLINE = 0x0a;
/** Smallest free space offered to a read. */
const MIN_READ_BYTES = 64 * 1024;

/** Resolves to the promise's value, or to TIMED_OUT at `deadline` (a `performance.now()` time). */
function beforeDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | typeof TIMED_OUT> {
  if (deadline === Infinity) return promise;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, deadline - performance.now()));
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Reads lines and sentinel bytes from a {@linkcode ByteChannel}.
 *
 * @example
 * ```ts
 * const reader = new ReplyReader(conn);
 * const line = await reader.readLine(performance.now() + 5000);
 * ```
 */
export class ReplyReader {
  #channel: ByteChannel;
  #maxLineBytes: number;
  #buffer: Uint8Array;
  /** First unconsumed byte. */
  #start = 0;
  /** End of the valid bytes. */
  #end = 0;
  /** Bytes in [#start, #scanned) are known to hold no newline. */
  #scanned = 0;
  #pending: Promise<ReadOutcome> | null = null;
  #ended = false;
  #endCause: unknown = undefined;

  /** Wraps `channel`; nothing is read until a method asks for bytes. */
  constructor(channel: ByteChannel, options: ReplyReaderOptions = {}) {
    this.#channel = channel;
    this.#maxLineBytes = options.maxLineBytes ?? 256 * 1024 * 1024;
    this.#buffer = new Uint8Array(
      Math.max(options.initialBufferBytes ?? 1024 * 1024, 2 * MIN_READ_BYTES),
    );
  }

  /** True once the channel reported end of stream or failed. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Number of buffered bytes not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /**
   * Resolves to the next line without its `\n`. The returned view is only valid until the
   * next call. Throws {@linkcode QgaTimeoutError} at `deadline` (keeping what was read),
   * {@linkcode QgaConnectionError} at end of stream and {@linkcode QgaProtocolError} when the
   * line exceeds the limit (the partial line is dropped).
   */
  async readLine(deadline: number): Promise<Uint8Array> {
    while (true) {
      const at = this.#buffer.subarray(0, this.#end).indexOf(NEWLINE, this.#scanned);
      if (at >= 0) {
        const line = this.#buffer.subarray(this.#start, at);
        this.#start = at + 1;
        this.#scanned = this.#start;
        return line;
      }
      this.#scanned = this.#end;
      if (this.#end - this.#start > this.#maxLineBytes) {
        const size = this.#end - this.#start;
        this.#start = this.#end = this.#scanned = 0;
        throw new QgaProtocolError(
          `Reply line exceeds ${this.#maxLineBytes} bytes (already ${size} bytes without a newline)`,
        );
      }
      await this.#fill(deadline);
    }
  }

  /**
   * Discards input up to and including the next `byte` (the 0xFF sync sentinel).
   * Throws like {@linkcode readLine}.
   */
  async discardThrough(byte: number, deadline: number): Promise<void> {
    while (true) {
      const at = this.#buffer.subarray(0, this.#end).indexOf(byte, this.#start);
      if (at >= 0) {
        this.#start = this.#scanned = at + 1;
        return;
      }
      this.#start = this.#scanned = this.#end;
      await this.#fill(deadline);
    }
  }

  /** Waits for an outstanding read to settle (call after closing the channel). */
  async settle(): Promise<void> {
    if (this.#pending !== null) await this.#pending;
  }

  async #fill(deadline: number): Promise<void> {
    if (this.#ended) {
      throw new QgaConnectionError("The agent closed the connection", { cause: this.#endCause });
    }
    if (this.#pending === null) {
      this.#makeRoom();
      this.#pending = this.#channel.read(this.#buffer.subarray(this.#end)).then(
        (bytes) => ({ bytes }),
        (error: unknown) => ({ error }),
      );
    }
    const outcome = await beforeDeadline(this.#pending, deadline);
    if (outcome === TIMED_OUT) throw new QgaTimeoutError("Timed out waiting for the agent");
    this.#pending = null;
    if ("error" in outcome || outcome.bytes === null) {
      this.#ended = true;
      this.#endCause = "error" in outcome ? outcome.error : undefined;
      throw new QgaConnectionError("The agent closed the connection", { cause: this.#endCause });
    }
    this.#end += outcome.bytes;
  }

  /** Ensures at least MIN_READ_BYTES of free space after #end. Only called with no read pending. */
  #makeRoom(): void {
    if (this.#start === this.#end) {
      this.#start = this.#end = this.#scanned = 0;
    }
    if (this.#buffer.length - this.#end >= MIN_READ_BYTES) return;
    const kept = this.#end - this.#start;
    if (this.#start >= this.#buffer.length / 2) {
      this.#buffer.copyWithin(0, this.#start, this.#end);
    } else {
      const bigger = new Uint8Array(Math.max(this.#buffer.length * 2, kept + MIN_READ_BYTES));
      bigger.set(this.#buffer.subarray(this.#start, this.#end));
      this.#buffer = bigger;
    }
    this.#scanned -= this.#start;
    this.#start = 0;
    this.#end = kept;
  }
}
