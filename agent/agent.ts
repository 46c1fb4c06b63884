/**
 * The agent: owns all mutable state (the Context handed to handlers), reads bytes
 * from one host connection at a time, feeds the JSON stream, dispatches each
 * message in order and writes each reply before the next message is handled, as
 * qemu-ga does (qga-reference.md §1.1).
 *
 * @module
 */

import type { AgentOptions } from "../config/options.ts";
import type { Command, Context } from "../commands/types.ts";
import type { SystemAccess } from "../system/mod.ts";
import { type AgentEnvironment, fixedEnvironment } from "../system/environment.ts";
import { toSysError } from "../system/mod.ts";
import type { Connection, Transport } from "../transport/connection.ts";
import { JsonStream, type StreamEvent } from "../protocol/json_stream.ts";
import { Scratch } from "../system/scratch.ts";
import { errorReply, type ReplyText } from "../protocol/json_writer.ts";
import { describeError, dispatch, type DispatchOutcome } from "./dispatch.ts";
import { AgentLog } from "./log.ts";
import { Registry } from "./registry.ts";
import { StateDir } from "./state.ts";

/** Bytes read from the channel per read. Larger than qemu-ga's 4096 for throughput. */
const READ_SIZE = 1 << 20;
const SENTINEL = new Uint8Array([0xff]);
/** Quiet time after which an idle agent collects its garbage (see #armIdleGc). */
const IDLE_GC_MS = 5000;
/**
 * The reply bytes' buffer is reused up to this size (guest-file-read's 48 MiB of data is
 * 64 MiB of base64) and let go after this quiet time, before the idle collection.
 */
const SEND_SCRATCH = { max: 65 * 1024 * 1024, quietMs: 2000 };
const encoder = new TextEncoder();

/** What the agent is built from. */
export interface AgentInit {
  options: AgentOptions;
  commands: readonly Command[];
  sys: SystemAccess;
  /** The environment variables commands read; none when omitted (tests). */
  env?: AgentEnvironment;
  log: AgentLog;
  version: string;
  /** Commands the sandbox cannot serve, with the reason (reported as disabled). */
  sandboxDisabled?: Map<string, string>;
  /** Called after the agent leaves the frozen state (deferred log and pid file). */
  onThaw?: () => void;
  /**
   * Completes the agent's system access (waits for the privileged helper's start, begun
   * before the agent read anything, then {@link Agent.attach}); called once the first
   * reply is written, or by the first request that needs it, and may be called again (it
   * does the work once). Until it settles only guest-sync and guest-sync-delimited are
   * answered; every other request waits for it, in order.
   */
  ready?: () => Promise<void>;
}

/** Requests answered before {@link AgentInit.ready} settles: they touch nothing. */
export const ANSWERED_BEFORE_READY: ReadonlySet<string> = new Set([
  "guest-sync",
  "guest-sync-delimited",
]);

/** Summarises arguments for the audit trail, leaving out sensitive members. */
export function auditSummary(
  args: Record<string, unknown> | undefined,
  sensitive: readonly string[] = [],
) {
  if (!args) return undefined;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) {
    if (sensitive.includes(k)) {
      out[k] = typeof v === "string" ? `<${v.length} chars withheld>` : "<withheld>";
    } else if (typeof v === "string" && v.length > 256) {
      out[k] = `${v.slice(0, 64)}…<${v.length} chars>`;
    } else {
      out[k] = v;
    }
  }
  return out;
}

/** The guest agent. */
export class Agent {
  readonly options: AgentOptions;
  readonly log: AgentLog;
  readonly registry: Registry;
  readonly state: StateDir;
  readonly context: Context;
  readonly #stream: JsonStream;
  readonly #queue: StreamEvent[] = [];
  readonly #stores = new Map<string, unknown>();
  #frozen = false;
  #delimit = false;
  #stopping = false;
  #transport: Transport | undefined;
  #conn: Connection | undefined;
  readonly #onThaw: (() => void) | undefined;
  #ready: (() => Promise<void>) | undefined;
  #sys: SystemAccess;
  readonly #sendBuffer = new Scratch(SEND_SCRATCH);

  constructor(init: AgentInit) {
    this.#ready = init.ready;
    this.#sys = init.sys;
    this.options = init.options;
    this.log = init.log;
    this.state = new StateDir(init.options.statedir);
    this.registry = new Registry(init.commands, {
      allow: init.options.allowRpcs,
      block: init.options.blockRpcs,
      ...(init.sandboxDisabled ? { sandbox: init.sandboxDisabled } : {}),
    });
    this.#stream = new JsonStream((e) => this.#queue.push(e));
    this.#onThaw = init.onThaw;
    const isFrozen = () => this.#frozen;
    const sys = () => this.#sys;
    this.context = {
      get sys() {
        return sys();
      },
      options: init.options,
      env: init.env ?? fixedEnvironment({}),
      log: init.log,
      version: init.version,
      store: <T>(key: string, create: () => T): T => {
        if (!this.#stores.has(key)) this.#stores.set(key, create());
        return this.#stores.get(key) as T;
      },
      registry: () => this.registry.entries(),
      delimitNextReply: () => {
        this.#delimit = true;
      },
      get frozen() {
        return isFrozen();
      },
      setFrozen: (f: boolean) => this.setFrozen(f),
      allocateHandle: () => Promise.resolve(this.state.allocate()),
    };
  }

  /**
   * Completes the agent's system access once its privileged helper has started (or
   * failed to): the system commands use from now on, the commands the sandbox
   * disables and, when the agent started with part of the table, the whole command
   * table. Called before {@link AgentInit.ready} settles.
   */
  attach(
    sys: SystemAccess,
    sandboxDisabled: Map<string, string>,
    commands?: readonly Command[],
  ): void {
    this.#sys = sys;
    if (commands) this.registry.setCommands(commands);
    this.registry.setSandbox(sandboxDisabled);
  }

  /** True while frozen. */
  get frozen(): boolean {
    return this.#frozen;
  }

  /**
   * Prepares the state dir. Returns true when the agent starts frozen because a
   * previous instance left the marker (qga-reference.md §1.10).
   */
  start(): boolean {
    if (this.state.markerExists()) {
      this.log.warn(
        `previous instance appears to have exited with frozen filesystems. deferring logging/pidfile creation and disabling non-fsfreeze-safe commands until guest-fsfreeze-thaw is issued, or filesystems are manually unfrozen and the file ${this.state.frozenMarker} is removed`,
      );
      this.#frozen = true;
      this.registry.setFrozen(true);
      this.log.hold();
      this.state.load(false);
      return true;
    }
    this.state.load(true);
    return false;
  }

  /** Enters or leaves the frozen state (ga_set_frozen / ga_unset_frozen). */
  setFrozen(frozen: boolean): Promise<void> {
    if (frozen === this.#frozen) return Promise.resolve();
    if (frozen) {
      this.log.warn("disabling logging due to filesystem freeze");
      this.state.setMarker(true);
      this.#frozen = true;
      this.registry.setFrozen(true);
      this.log.hold();
    } else {
      this.log.release();
      this.log.warn("logging re-enabled due to filesystem unfreeze");
      this.state.setMarker(false);
      this.#frozen = false;
      this.registry.setFrozen(false);
      this.#onThaw?.();
    }
    return Promise.resolve();
  }

  /** Serves clients from the transport until stopped. */
  async serve(transport: Transport): Promise<void> {
    this.#transport = transport;
    this.log.debug(`listening on ${transport.description}`);
    while (!this.#stopping) {
      const conn = await transport.accept();
      if (!conn) break;
      this.#conn = conn;
      try {
        await this.#serveConnection(conn);
      } finally {
        this.#conn = undefined;
        try {
          conn.close();
        } catch {
          // Already closed.
        }
      }
    }
  }

  /** Stops accepting and closes the current client. */
  stop(): void {
    this.#stopping = true;
    this.#transport?.close();
    try {
      this.#conn?.close();
    } catch {
      // Already closed.
    }
  }

  async #serveConnection(conn: Connection): Promise<void> {
    const buf = new Uint8Array(READ_SIZE);
    while (!this.#stopping) {
      let n: number | null;
      try {
        n = await conn.read(buf);
      } catch (e) {
        if (this.#stopping) return;
        const err = toSysError(e);
        // EAGAIN/EINTR: try again; any other read error ends this channel, which the
        // transport reopens with --retry-path (qemu-ga restarts its main loop).
        if (err.code === "EAGAIN" || err.code === "EINTR") {
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        this.log.error(`error reading channel: ${err.strerror}`);
        return;
      }
      if (n === null) {
        if (conn.kind === "device") {
          // virtio-serial with no host attached: back off and keep the port (§1.1).
          await new Promise((r) => setTimeout(r, 100));
          continue;
        }
        return;
      }
      if (this.options.verbose) this.log.debug(`read data, count: ${n}`);
      this.#stream.feed(buf.subarray(0, n));
      await this.processQueued(conn);
    }
  }

  /** Feeds bytes directly (tests and the fuzzer); the replies are written to `conn`. */
  async feed(bytes: Uint8Array, conn: Connection): Promise<void> {
    this.#stream.feed(bytes);
    await this.processQueued(conn);
  }

  /** When the last request was served (performance.now()). */
  #lastActivity = 0;
  #gcArmed = false;

  /**
   * After a burst, V8 keeps the heap it grew to. When no request has come for
   * {@link IDLE_GC_MS}, a full collection (when the process runs with
   * `--v8-flags=--expose-gc`, as the least-privilege line does) hands the garbage's
   * pages back, so an idle agent returns to its idle size. (What the C library keeps of
   * freed buffers is the unit's GLIBC_TUNABLES' job: packaging/deno-qga.service.in.)
   * One timer at a time, which looks at the last request when it fires. Not setTimeout:
   * Deno's loads Node's timers (memory, and time the first reply would wait for);
   * AbortSignal.timeout does not keep the process alive, as an unref'd timer.
   */
  #armIdleGc(): void {
    const gc = (globalThis as { gc?: (o?: unknown) => void }).gc;
    if (typeof gc !== "function") return;
    this.#lastActivity = performance.now();
    if (this.#gcArmed) return;
    this.#gcArmed = true;
    const wait = (ms: number) =>
      AbortSignal.timeout(ms).addEventListener("abort", () => {
        const quiet = performance.now() - this.#lastActivity;
        if (quiet < IDLE_GC_MS) return wait(Math.ceil(IDLE_GC_MS - quiet));
        this.#gcArmed = false;
        // "last-resort": V8's full collection that also compacts and gives free pages
        // back (a plain gc() leaves the heap at its grown size).
        gc({ type: "major", execution: "sync", flavor: "last-resort" });
      }, { once: true });
    wait(IDLE_GC_MS);
  }

  /** Dispatches every queued message in order, writing each reply before the next. */
  async processQueued(conn: Connection): Promise<void> {
    while (this.#queue.length) {
      const ev = this.#queue.shift()!;
      let text: ReplyText | undefined;
      // The request's audit record, written after its reply (the reply waits for nothing).
      let audit: [string, Record<string, unknown>] | undefined;
      if (ev.error !== undefined) {
        text = errorReply("GenericError", ev.error, undefined);
        audit = ["request", { error: "GenericError", desc: ev.error }];
      } else {
        if (this.#ready && !ANSWERED_BEFORE_READY.has(executeOf(ev.value))) {
          await this.#ready();
          this.#ready = undefined;
        }
        const started = performance.now();
        let outcome: DispatchOutcome;
        try {
          outcome = await dispatch(ev.value, this.registry, this.context);
        } catch (e) {
          const [cls, desc] = describeError(e);
          outcome = { reply: errorReply(cls, desc, undefined), errorClass: cls };
          this.log.error(`internal error while dispatching: ${desc}`);
        }
        text = outcome.reply;
        try {
          const cmd = outcome.command ? this.registry.get(outcome.command) : undefined;
          audit = [outcome.command ?? "request", {
            ...(outcome.args ? { args: auditSummary(outcome.args, cmd?.sensitive) } : {}),
            result: outcome.errorClass ?? (text === undefined ? "no-reply" : "ok"),
            ms: Math.round((performance.now() - started) * 1000) / 1000,
          }];
        } catch {
          // The audit trail must never cost a reply.
        }
      }
      if (text !== undefined) await this.#send(conn, text);
      if (audit) {
        try {
          this.log.audit(audit[0], audit[1]);
        } catch {
          // The audit trail must never cost a reply.
        }
      }
      if (text === undefined) continue;
      // The host has its first reply: complete the system access without waiting for a
      // request that needs it.
      if (this.#ready) void this.#ready();
    }
    this.#armIdleGc();
  }

  async #send(conn: Connection, text: ReplyText): Promise<void> {
    const delimit = this.#delimit;
    this.#delimit = false;
    // Reply text is 7-bit ASCII: one byte per character. Pieces are encoded one
    // after the other, so a big reply is never flattened into one string first.
    const parts = typeof text === "string" ? [text] : text;
    let length = 0;
    for (const p of parts) length += p.length;
    // Reused from reply to reply: conn.write is done with it when it resolves.
    const buf = this.#sendBuffer.take(length + 1 + (delimit ? 1 : 0));
    let off = 0;
    if (delimit) buf.set(SENTINEL, off++);
    for (const p of parts) off += encoder.encodeInto(p, buf.subarray(off)).written;
    // Up to what was encoded (all of it for ASCII), never a byte of an earlier reply.
    const bytes = buf.subarray(0, off + 1);
    bytes[off] = 0x0a;
    if (this.options.verbose) this.log.debug(`sending data, count: ${bytes.length}`);
    try {
      await conn.write(bytes);
    } catch (e) {
      this.log.warn(`error writing to channel: ${toSysError(e).strerror}`);
    }
  }
}

/** The `execute` member of a request (a JSON object is a Map), "" when there is none. */
function executeOf(value: unknown): string {
  const name = value instanceof Map ? value.get("execute") : undefined;
  return typeof name === "string" ? name : "";
}
