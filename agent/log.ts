/**
 * The agent's log: qemu-ga's line format (`<sec>.<usec>: <level>: <message>`,
 * qga-reference.md §4.7) or JSON lines, to stderr or the -l file. Only error and
 * critical lines are written unless -v, as qemu-ga does; the command audit trail
 * is always written. While filesystems are frozen nothing is written (the log file
 * could live on a frozen filesystem): lines are held in memory, bounded, and
 * written after the thaw.
 *
 * @module
 */

import type { Logger } from "../commands/types.ts";

/** Log levels, most severe first (GLib's names). */
export type Level = "error" | "critical" | "warning" | "message" | "info" | "debug" | "audit";

const encoder = new TextEncoder();
const MAX_HELD = 1000;
/** Longest an audit line waits before it is written. */
const AUDIT_FLUSH_MS = 20;

/** JSON for log fields: bigints as numbers when safe, else as strings. */
function stringify(v: unknown): string {
  return JSON.stringify(v, (_k, x) => {
    if (typeof x !== "bigint") return x;
    return Number.isSafeInteger(Number(x)) ? Number(x) : x.toString();
  });
}

/**
 * qemu-ga's log line (`ga_log`, 10.x): `<secs>.<usecs>: <level>: <message>\n`, the time
 * given in microseconds since the epoch. The agent's text log and cli/'s early messages
 * both use it.
 */
export function qemuLogLine(level: string, message: string, micros: bigint): string {
  const sec = micros / 1000000n;
  const usec = String(micros % 1000000n).padStart(6, "0");
  return `${sec}.${usec}: ${level}: ${message}\n`;
}

/** Where log lines go. */
export interface LogSink {
  writeSync(p: Uint8Array): number;
}

/** Options of {@link AgentLog}. */
export interface AgentLogOptions {
  verbose: boolean;
  json: boolean;
  sink: LogSink;
  /** Clock in microseconds since the epoch (injectable for tests). */
  nowMicros?: () => bigint;
}

/** The agent's logger. */
export class AgentLog implements Logger {
  #verbose: boolean;
  readonly #json: boolean;
  #sink: LogSink;
  readonly #now: () => bigint;
  #held: string[] | undefined;
  #dropped = 0;
  /** Audit lines not yet written (batched: one write per AUDIT_FLUSH_MS or 64 KiB). */
  #pending = "";
  /** Counts flushes: a flush timer armed before the last flush does nothing. */
  #flushes = 0;
  #flushArmed = false;

  constructor(o: AgentLogOptions) {
    this.#verbose = o.verbose;
    this.#json = o.json;
    this.#sink = o.sink;
    this.#now = o.nowMicros ??
      (() => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)));
  }

  /** Replaces the sink (after the log file is opened). */
  setSink(sink: LogSink): void {
    this.#sink = sink;
  }

  /** Stops writing (entering the frozen state). */
  hold(): void {
    this.flush();
    this.#held ??= [];
  }

  /** Writes what was held and resumes (leaving the frozen state). */
  release(): void {
    const held = this.#held;
    this.#held = undefined;
    if (!held) return;
    for (const line of held) this.#write(line);
    if (this.#dropped) {
      this.#emit("warning", `${this.#dropped} log lines were dropped while frozen`);
      this.#dropped = 0;
    }
  }

  /** Writes batched audit lines now (before exit, before any other line, and before a hold). */
  flush(): void {
    this.#flushes++;
    this.#flushArmed = false;
    if (this.#pending === "") return;
    const text = this.#pending;
    this.#pending = "";
    this.#write(text);
  }

  #queueAudit(line: string): void {
    this.#pending += line;
    if (this.#pending.length >= 65536) this.flush();
    else if (!this.#flushArmed) {
      // Not setTimeout: Deno's returns Node's Timeout and loads Node's timers on first
      // use, which the agent's first reply would wait for (docs/performance.md).
      // AbortSignal.timeout does not keep the process alive; exit paths flush.
      this.#flushArmed = true;
      const armedAt = this.#flushes;
      AbortSignal.timeout(AUDIT_FLUSH_MS).addEventListener("abort", () => {
        if (this.#flushes === armedAt) this.flush();
      }, { once: true });
    }
  }

  #write(line: string): void {
    try {
      this.#sink.writeSync(encoder.encode(line));
    } catch {
      // A log that cannot be written must never stop the agent.
    }
  }

  #emit(level: Level, msg: string, fields?: Record<string, unknown>): void {
    const verboseOnly = level === "warning" || level === "message" || level === "info" ||
      level === "debug";
    if (verboseOnly && !this.#verbose) return;
    const t = this.#now();
    let line: string;
    try {
      if (this.#json) {
        const record = { time: new Date(Number(t / 1000n)).toISOString(), level, msg, ...fields };
        line = stringify(record) + "\n";
      } else {
        const extra = fields && Object.keys(fields).length ? ` ${stringify(fields)}` : "";
        line = qemuLogLine(level, msg + extra, t);
      }
    } catch {
      line = `${level}: ${msg} (its fields could not be written)\n`;
    }
    if (this.#held) {
      if (this.#held.length < MAX_HELD) this.#held.push(line);
      else this.#dropped++;
      return;
    }
    if (level === "audit") {
      this.#queueAudit(line);
      return;
    }
    this.flush();
    this.#write(line);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.#emit("debug", msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.#emit("info", msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.#emit("warning", msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.#emit("critical", msg, fields);
  }
  /** One audit record of the command trail (always written). */
  audit(msg: string, fields: Record<string, unknown>): void {
    this.#emit("audit", msg, fields);
  }
}
