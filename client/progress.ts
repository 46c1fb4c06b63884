/**
 * Progress display for the `client copy-in` / `copy-out` commands: a bar redrawn on a
 * terminal, and one summary line at the end.
 *
 * @module
 */

import type { CopyProgress } from "./client.ts";

const MIB = 1024 * 1024;
const BAR_WIDTH = 30;

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

function rate(bytes: number, elapsedMs: number): string {
  return elapsedMs > 0 ? (bytes / MIB / (elapsedMs / 1000)).toFixed(1) : "-";
}

/**
 * One progress line (without `\r` or newline): bar, percent, MiB done / total and MiB/s.
 * Without a total there is no bar or percent.
 *
 * @example
 * ```ts
 * formatProgress({ bytes: 52428800, total: 104857600 }, 2000);
 * // "[###############...............]  50.0%  50.0/100.0 MiB  25.0 MiB/s"
 * ```
 */
export function formatProgress(progress: CopyProgress, elapsedMs: number): string {
  const speed = `${rate(progress.bytes, elapsedMs)} MiB/s`;
  if (progress.total === undefined) return `${mib(progress.bytes)} MiB  ${speed}`;
  const fraction = progress.total > 0 ? Math.min(progress.bytes / progress.total, 1) : 1;
  const filled = Math.round(fraction * BAR_WIDTH);
  const bar = "#".repeat(filled) + ".".repeat(BAR_WIDTH - filled);
  const percent = (fraction * 100).toFixed(1).padStart(5);
  return `[${bar}] ${percent}%  ${mib(progress.bytes)}/${mib(progress.total)} MiB  ${speed}`;
}

/**
 * The closing line of a copy, e.g. `copied 100.0 MiB (104857600 bytes) in 3.20 s (31.2 MiB/s)`.
 */
export function formatSummary(bytes: number, elapsedMs: number): string {
  return `copied ${mib(bytes)} MiB (${bytes} bytes) in ${(elapsedMs / 1000).toFixed(2)} s ` +
    `(${rate(bytes, elapsedMs)} MiB/s)`;
}

/** Options for {@linkcode ProgressBar}. */
export interface ProgressBarOptions {
  /** Minimum time between two redraws, in milliseconds. Default 100. */
  intervalMs?: number;
  /** Clock in milliseconds. Default `performance.now`. */
  now?: () => number;
}

/**
 * Redraws {@linkcode formatProgress} on one terminal line, at most every `intervalMs`
 * (the last update always draws).
 */
export class ProgressBar {
  #write: (text: string) => void;
  #intervalMs: number;
  #now: () => number;
  #started: number;
  #lastDraw = -Infinity;
  #drawn = false;

  /** `write` receives the text to print (it contains `\r`, no newline until `finish`). */
  constructor(write: (text: string) => void, options: ProgressBarOptions = {}) {
    this.#write = write;
    this.#intervalMs = options.intervalMs ?? 100;
    this.#now = options.now ?? (() => performance.now());
    this.#started = this.#now();
  }

  /** Shows `progress` unless the last redraw was too recent (a finished copy always draws). */
  update(progress: CopyProgress): void {
    const now = this.#now();
    const done = progress.total !== undefined && progress.bytes >= progress.total;
    if (!done && now - this.#lastDraw < this.#intervalMs) return;
    this.#lastDraw = now;
    this.#drawn = true;
    this.#write(`\r${formatProgress(progress, now - this.#started)}\x1b[K`);
  }

  /** Ends the bar's line, if one was drawn. */
  finish(): void {
    if (this.#drawn) this.#write("\n");
    this.#drawn = false;
  }
}
