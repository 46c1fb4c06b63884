/**
 * A byte buffer reused from one request to the next, for the big transient buffers of the
 * file path (a guest-file-read's data, a reply's bytes). A fresh multi-MiB Uint8Array is a
 * fresh mmap under the unit's GLIBC_TUNABLES (mmap_threshold=128 KiB), so every call paid
 * the kernel's page faults and zeroing again: at 1 MiB per guest-file-read that was about
 * 1.5 ms of a 4 ms call (docs/performance.md, "guest-file-read at 1 MiB"). Reusing one
 * buffer pays them once.
 *
 * The buffer is let go after a quiet period, so an idle agent does not keep it (the
 * agent's idle collection, agent/agent.ts, then hands its pages back).
 *
 * @module
 */

/** Growth step, so replies whose length varies by a few bytes reuse one buffer. */
const STEP = 64 * 1024;

/** How a {@link Scratch} keeps its buffer. */
export interface ScratchOptions {
  /** Largest buffer kept; bigger requests get a fresh buffer that is not kept. */
  max: number;
  /** Quiet time after which the buffer is let go. */
  quietMs: number;
}

/** One reusable buffer (see the module doc). Not for two users at once. */
export class Scratch {
  readonly #max: number;
  readonly #quietMs: number;
  #buf: Uint8Array | undefined;
  #lastUse = 0;
  #armed = false;

  constructor(options: ScratchOptions) {
    this.#max = options.max;
    this.#quietMs = options.quietMs;
  }

  /** Bytes the kept buffer holds now (0 when none is kept). */
  get capacity(): number {
    return this.#buf?.length ?? 0;
  }

  /**
   * A buffer of exactly `size` bytes with unspecified contents, valid until the next
   * call of take(): the caller must be done with it by then.
   */
  take(size: number): Uint8Array {
    if (size > this.#max) return new Uint8Array(size);
    let buf = this.#buf;
    if (!buf || buf.length < size) {
      buf = new Uint8Array(Math.min(this.#max, Math.ceil(size / STEP) * STEP));
      this.#buf = buf;
    }
    this.#lastUse = performance.now();
    this.#arm();
    return buf.subarray(0, size);
  }

  /** Lets the buffer go now. */
  release(): void {
    this.#buf = undefined;
  }

  /**
   * One timer at a time, which looks at the last use when it fires. AbortSignal.timeout
   * rather than setTimeout (which loads Node's timers in Deno), and it does not keep the
   * process alive.
   */
  #arm(): void {
    if (this.#armed) return;
    this.#armed = true;
    const wait = (ms: number) =>
      AbortSignal.timeout(ms).addEventListener("abort", () => {
        const quiet = performance.now() - this.#lastUse;
        if (quiet < this.#quietMs) return wait(Math.ceil(this.#quietMs - quiet));
        this.#armed = false;
        this.#buf = undefined;
      }, { once: true });
    wait(this.#quietMs);
  }
}
