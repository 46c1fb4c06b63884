/**
 * The children the agent itself starts: guest-exec's programs (every other program runs
 * in the privileged helper, system/helper_client.ts). One Deno.Command per child, stdin
 * fed from memory, and the output the caller wants to capture handed back as streams;
 * `merged` output comes from one shared socket (system/shared_output.ts) or, without one,
 * from both pipes read in arrival order.
 *
 * @module
 */

import type { SharedOutput } from "./shared_output.ts";
import { toSysError } from "./mod.ts";

/** What to capture of a child's output (guest-exec's GuestExecCaptureOutputMode). */
export type OutputMode = "none" | "stdout" | "stderr" | "separated" | "merged";

/** How to start a child. */
export interface SpawnOptions {
  readonly args: readonly string[];
  /** The child's whole environment (nothing inherited); undefined: the agent's own. */
  readonly env?: Record<string, string>;
  /** Bytes written to its stdin, which is then closed; null: stdin is /dev/null. */
  readonly input: Uint8Array | null;
  readonly output: OutputMode;
  /**
   * For `merged`: the socket to give the child as stdout and stderr (its child end is
   * closed here once the child has it), or null to read the two pipes.
   */
  readonly shared: SharedOutput | null;
}

/** How a child ended: its exit code, or the number of the signal that killed it. */
export type ChildExit = { code: number; signal: null } | { code: null; signal: number };

/** A started child. */
export interface Child {
  readonly pid: number;
  /** Resolves once the child has been reaped. */
  readonly exit: Promise<ChildExit>;
  /**
   * The streams of the stdout capture, in the order they were opened: stdout; for
   * `merged`, the shared socket, or stdout and stderr when there is none.
   */
  readonly out: readonly ReadableStream<Uint8Array>[];
  /** The stderr capture (`stderr`, `separated`), else null. */
  readonly err: ReadableStream<Uint8Array> | null;
}

/**
 * Starts `program`. Throws a SysError (system/mod.ts) when it cannot be started: a
 * SandboxRefusal when Deno's `--allow-run` refuses it (the message says why), else the
 * spawn's errno.
 */
export function spawnChild(program: string, o: SpawnOptions): Child {
  const wantOut = o.output === "stdout" || o.output === "separated" || o.output === "merged";
  const wantErr = o.output === "stderr" || o.output === "separated" || o.output === "merged";
  const options: Deno.CommandOptions = {
    args: [...o.args],
    stdin: o.input ? "piped" : "null",
    stdout: wantOut ? "piped" : "null",
    stderr: wantErr ? "piped" : "null",
  };
  const shared = o.output === "merged" ? o.shared : null;
  if (shared) {
    // Deno.Command takes a raw descriptor here (see system/shared_output.ts).
    options.stdout = shared.childFd as unknown as "piped";
    options.stderr = shared.childFd as unknown as "piped";
  }
  if (o.env !== undefined) {
    options.env = o.env;
    options.clearEnv = true;
  }
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(program, options).spawn();
  } catch (e) {
    shared?.close();
    throw toSysError(e);
  }
  shared?.closeChildEnd();
  if (o.input) {
    const writer = child.stdin.getWriter();
    writer.write(o.input).then(() => writer.close()).catch(() => writer.abort().catch(() => {}));
  }
  let out: ReadableStream<Uint8Array>[] = [];
  if (shared) out = [shared.reader.readable];
  else if (o.output === "merged") out = [child.stdout, child.stderr];
  else if (wantOut) out = [child.stdout];
  const err = o.output === "stderr" || o.output === "separated" ? child.stderr : null;
  const exit = child.status.then(async (s): Promise<ChildExit> => {
    if (s.signal === null) return { code: s.code, signal: null };
    // The signal's number: node:os is loaded on first use (the agent starts without
    // Node compatibility).
    const { constants } = await import("node:os");
    return { code: null, signal: (constants.signals as Record<string, number>)[s.signal] ?? 0 };
  });
  return { pid: child.pid, exit, out, err };
}
