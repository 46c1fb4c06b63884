/**
 * guest-exec and guest-exec-status (qga-reference.md §2.3 "Process execution",
 * §3.2).
 *
 * Which programs may run is checked here first, against `--exec-programs`
 * (commands/exec_policy.ts); Deno's `--allow-run` grant is the second line. Children are
 * started by system/process.ts; `merged` capture gives the child one socket as both
 * stdout and stderr (system/shared_output.ts), so the writes keep their order as with
 * qemu-ga's dup2. Started processes live in a per-agent table (ctx.store) until a
 * guest-exec-status reports them finished.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { decodeQemuBase64, encodeBase64 } from "../protocol/base64.ts";
import {
  alternate,
  array,
  bool,
  enumType,
  type Infer,
  int,
  type Returned,
  str,
  struct,
} from "../protocol/types.ts";
import { SandboxRefusal, toSysError } from "../system/mod.ts";
import { type Child, type ChildExit, spawnChild } from "../system/process.ts";
import { openSharedOutput, type SharedOutput, sharedOutputPath } from "../system/shared_output.ts";
import { type Context, defineCommand } from "./types.ts";
import { programToSpawn, SYSTEM_BIN_DIRS } from "./exec_policy.ts";
import { dirname, resolve } from "../config/path.ts";

/** GUEST_EXEC_MAX_OUTPUT: captured bytes per stream. */
export const EXEC_MAX_OUTPUT = 16 * 1024 * 1024;
/** Our bound on tracked (running or unreported) processes; qemu-ga has none. */
export const EXEC_MAX_TRACKED = 1024;

const CAPTURE_MODES = ["none", "stdout", "stderr", "separated", "merged"] as const;
/** GuestExecCaptureOutputMode. */
export type CaptureMode = typeof CAPTURE_MODES[number];

/** guest-exec's arguments. */
const GuestExecArgs = struct("guest-exec-arg", {
  path: str,
  "*arg": array(str),
  "*env": array(str),
  "*input-data": str,
  "*capture-output": alternate("GuestExecCaptureOutput", {
    bool,
    str: enumType("GuestExecCaptureOutputMode", CAPTURE_MODES),
  }),
});

/** guest-exec arguments as the dispatcher hands them over. */
export type ExecArgs = Infer<typeof GuestExecArgs>;

/** GuestExecStatus. */
const GuestExecStatus = struct("GuestExecStatus", {
  exited: bool,
  "*exitcode": int,
  "*signal": int,
  "*out-data": str,
  "*err-data": str,
  "*out-truncated": bool,
  "*err-truncated": bool,
});

/** GuestExecStatus as returned (optional members omitted). */
export type ExecStatus = Returned<typeof GuestExecStatus>;

/** One captured stream: at most {@link EXEC_MAX_OUTPUT} bytes kept, the rest drained. */
class Capture {
  readonly #chunks: Uint8Array[] = [];
  #size = 0;
  #truncated = false;

  push(chunk: Uint8Array): void {
    const room = EXEC_MAX_OUTPUT - this.#size;
    if (chunk.length > room) {
      this.#truncated = true;
      if (room <= 0) return;
      chunk = chunk.subarray(0, room);
    }
    this.#chunks.push(chunk);
    this.#size += chunk.length;
  }

  get size(): number {
    return this.#size;
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.#size);
    let o = 0;
    for (const c of this.#chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/** A process started by guest-exec. */
class ExecProcess {
  readonly pid: number;
  readonly out: Capture | null;
  readonly err: Capture | null;
  #exit: ChildExit | null = null;
  #finished = false;

  /** Captures what the child's streams carry (`merged`: both into `out`, in arrival order). */
  constructor(child: Child) {
    this.pid = child.pid;
    this.out = child.out.length > 0 ? new Capture() : null;
    this.err = child.err ? new Capture() : null;
    const drains: Promise<void>[] = [];
    for (const stream of child.out) drains.push(drain(stream, this.out!));
    if (child.err) drains.push(drain(child.err, this.err!));
    const exit = child.exit.then((s) => {
      this.#exit = s;
    });
    Promise.all([exit, ...drains]).then(() => {
      this.#finished = true;
    });
  }

  /** exited: reaped AND every capture pipe at EOF (qemu's condition). */
  get finished(): boolean {
    return this.#finished;
  }

  status(): ExecStatus {
    if (!this.#finished || !this.#exit) return { exited: false };
    const st: ExecStatus = { exited: true };
    if (this.#exit.signal !== null) st.signal = this.#exit.signal;
    else st.exitcode = this.#exit.code;
    if (this.out && this.out.size > 0) {
      st["out-data"] = encodeBase64(this.out.bytes());
      st["out-truncated"] = this.out.truncated;
    }
    if (this.err && this.err.size > 0) {
      st["err-data"] = encodeBase64(this.err.bytes());
      st["err-truncated"] = this.err.truncated;
    }
    return st;
  }
}

async function drain(stream: ReadableStream<Uint8Array>, into: Capture): Promise<void> {
  try {
    for await (const chunk of stream) into.push(chunk);
  } catch {
    // a read error ends the capture, as a HUP does in qemu-ga
  }
}

/** The exec table kept in ctx.store. */
class ExecTable {
  readonly #procs = new Map<number, ExecProcess>();

  get size(): number {
    return this.#procs.size;
  }

  add(p: ExecProcess): void {
    this.#procs.set(p.pid, p);
  }

  get(pid: number): ExecProcess | undefined {
    return this.#procs.get(pid);
  }

  delete(pid: number): void {
    this.#procs.delete(pid);
  }
}

function execTable(ctx: Context): ExecTable {
  return ctx.store("exec", () => new ExecTable());
}

/** A C string: what qemu-ga sees of a JSON string with an embedded NUL. */
function cString(s: string): string {
  const i = s.indexOf("\0");
  return i < 0 ? s : s.slice(0, i);
}

/** Normalises capture-output (absent, bool or enum) to a mode. */
export function captureMode(v: boolean | CaptureMode | undefined): CaptureMode {
  if (v === undefined || v === false) return "none";
  if (v === true) return "separated";
  return v;
}

/** Builds the child's environment from `K=V` strings; the first of duplicates wins (getenv). */
function envFromList(list: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of list) {
    const entry = cString(raw);
    const eq = entry.indexOf("=");
    if (eq <= 0) continue; // not representable for Deno.Command
    const key = entry.slice(0, eq);
    if (!(key in env)) env[key] = entry.slice(eq + 1);
  }
  return env;
}

/** Turns a spawn failure into qemu-ga's (10.2) GLib message, or the sandbox's. */
function spawnError(e: unknown, path: string): QgaError {
  const err = toSysError(e);
  if (err instanceof SandboxRefusal) {
    if (/environment variable/.test(err.message)) {
      return new QgaError(
        `guest-exec: program '${path}' cannot be started with LD_PRELOAD or LD_LIBRARY_PATH ` +
          `set: the agent's sandbox (--allow-run) refuses it`,
      );
    }
    return new QgaError(
      `guest-exec: program '${path}' is not permitted by the agent's sandbox (--allow-run)`,
    );
  }
  return new QgaError(`Failed to execute child process \u201C${path}\u201D (${err.strerror})`);
}

/**
 * The shared stdout/stderr socket for a `merged` capture, or null when the sandbox cannot
 * make one (the card's line grants no --allow-net): the two streams are then read from
 * two pipes and appended in arrival order, and the log says so once.
 */
async function sharedOutput(ctx: Context): Promise<SharedOutput | null> {
  try {
    return await openSharedOutput(sharedOutputPath(ctx.options.statedir));
  } catch (e) {
    ctx.store("exec-merged-warned", () => {
      ctx.log.warn(
        `guest-exec: merged output is read from two pipes, in arrival order ` +
          `(no shared socket: ${(e as Error).message})`,
      );
      return true;
    });
    return null;
  }
}

/** guest-exec: starts a program in the background and returns its pid. */
export const guestExec = defineCommand({
  name: "guest-exec",
  since: "2.5",
  doc: "Execute a command in the guest; poll guest-exec-status for its result",
  differences: "With `--exec-programs` (our extension) the agent itself checks the program " +
    "before spawning anything: it is found as g_spawn finds it (a bare name through `env`'s " +
    "PATH, else the agent's), compared with the listed programs canonicalised (symlinks " +
    "resolved), and a program not listed gets `guest-exec: program '<path>' is not allowed: " +
    "it is not listed in the agent's --exec-programs (exec-programs= in the configuration)`; " +
    "the listed spelling is what runs (argv[0] is the listed path). `merged` capture gives the " +
    "child one socket as stdout and stderr (qemu-ga: one pipe, dup2), so the order of the " +
    "writes is kept; without a net grant for it (the card's line) both pipes are read and " +
    "appended in arrival order, and the log says so. Deno's --allow-run is the second line: " +
    "a program it refuses gives `guest-exec: program '<path>' is not permitted by the agent's " +
    "sandbox (--allow-run)`. At most " +
    `${EXEC_MAX_TRACKED} processes are tracked until their status is collected. env entries ` +
    "without `=` are dropped (Deno cannot pass them); for duplicated names the first wins, as " +
    "getenv sees it; the child's environment is ordered by name (Deno sorts it). A script without #! is run the way the kernel and Deno allow (GLib would " +
    "retry it with /bin/sh).",
  args: GuestExecArgs,
  returns: struct("GuestExec", { pid: int }),
  sensitive: ["input-data", "env"],
  needs: (options) => {
    const shared = sharedOutputPath(resolve(options.statedir));
    const merged = { read: [shared], write: [shared], net: [`unix:${shared}`] };
    if (options.execPrograms.length === 0) return { run: ["*"], ...merged };
    // The policy finds programs through PATH and canonicalises them (exec_policy.ts).
    const dirs = options.execPrograms.filter((p) => p.startsWith("/")).map((p) => dirname(p));
    return {
      run: [...options.execPrograms],
      env: ["PATH"],
      net: merged.net,
      read: [...new Set([...SYSTEM_BIN_DIRS, ...dirs, shared])],
      write: merged.write,
    };
  },
  async handler(args, ctx) {
    const input = args["input-data"] !== undefined ? decodeQemuBase64(args["input-data"]) : null;
    const path = cString(args.path);
    const argv = (args.arg ?? []).map(cString);
    ctx.log.info(`guest-exec called: "${[path, ...argv].join(" ")}"`);
    const table = execTable(ctx);
    if (table.size >= EXEC_MAX_TRACKED) {
      throw new QgaError(
        `guest-exec: too many processes (${EXEC_MAX_TRACKED}) are tracked; ` +
          `collect finished ones with guest-exec-status first`,
      );
    }
    const program = programToSpawn(path, {
      listed: ctx.options.execPrograms,
      agentPath: ctx.env.get("PATH"),
      ...(args.env !== undefined ? { env: args.env.map(cString) } : {}),
    });
    const mode = captureMode(args["capture-output"]);
    const shared = mode === "merged" ? await sharedOutput(ctx) : null;
    let child: Child;
    try {
      child = spawnChild(program, {
        args: argv,
        ...(args.env !== undefined ? { env: envFromList(args.env) } : {}),
        input,
        output: mode,
        shared,
      });
    } catch (e) {
      throw spawnError(e, path);
    }
    const proc = new ExecProcess(child);
    table.add(proc);
    return { pid: proc.pid };
  },
});

/** guest-exec-status: reports a guest-exec process; a finished one is then forgotten. */
export const guestExecStatus = defineCommand({
  name: "guest-exec-status",
  since: "2.5",
  doc: "Get the status of a process started by guest-exec, its output once it has finished",
  differences: "An unknown pid gives qemu-ga 10.2's text `PID ld does not exist` byte for byte " +
    "(a format-string bug upstream since 8.2; 7.2 says `Invalid parameter 'pid'`): clients only " +
    "test for an error, and the differential suite compares against 10.2.",
  args: struct("guest-exec-status-arg", { pid: int }),
  returns: GuestExecStatus,
  needs: {},
  handler(args, ctx) {
    const table = execTable(ctx);
    const pid = args.pid >= 0n && args.pid <= BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(args.pid)
      : -1;
    const proc = table.get(pid);
    if (!proc) throw new QgaError("PID ld does not exist");
    const st = proc.status();
    if (st.exited) table.delete(pid);
    return st;
  },
});
