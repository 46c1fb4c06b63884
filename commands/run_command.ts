/**
 * qemu-ga 10.2's ga_run_command (qga-reference.md §4.6): how helper programs
 * (shutdown, hwclock, chpasswd, the fsfreeze hook) are run, by the privileged
 * helper from its fixed templates (helper/programs.ts), and how their failures
 * read: `child process has failed to <action>: <output>` (or `: exit status N`
 * when the program printed nothing), `child process has terminated abnormally[:
 * <output>]` for a signal, and, for a program that cannot be executed, the text
 * qemu-ga's child prints after execvp fails: `failed to exec '<argv0>': <errno>\n`.
 * A refusal by the agent's sandbox or the helper (a SandboxRefusal) is re-thrown as it is, for the
 * dispatcher to name.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { type ProgramRequest, SandboxRefusal, strerror, SysError } from "../system/mod.ts";
import { invocation } from "../helper/programs.ts";
import type { Context, RunResult } from "./types.ts";

/** Output as qemu-ga prints it: a C string, so it ends at the first NUL. */
function cString(bytes: Uint8Array): string {
  const text = new TextDecoder().decode(bytes);
  const nul = text.indexOf("\0");
  return nul >= 0 ? text.slice(0, nul) : text;
}

/** The program a request runs (argv[0] of its template), for execvp's failure text. */
export function programOf(ctx: Context, req: ProgramRequest): string {
  try {
    return invocation(req, {
      fsfreezeHook: ctx.options.fsfreezeHook ?? null,
      isMountPoint: () => true,
    }).argv[0];
  } catch {
    return "";
  }
}

/** What qemu-ga's child reports when execvp fails: the perror text, exit status 1. */
export function execFailure(program: string, e: SysError): RunResult {
  return {
    code: 1,
    signal: null,
    output: new TextEncoder().encode(`failed to exec '${program}': ${strerror(e.code)}\n`),
  };
}

/** Throws ga_run_command's error for a finished program that did not succeed. */
export function checkRunResult(r: RunResult, action: string): void {
  const output = cString(r.output);
  if (r.code === null) {
    throw new QgaError(
      output
        ? `child process has terminated abnormally: ${output}`
        : "child process has terminated abnormally",
    );
  }
  if (r.code !== 0) {
    throw new QgaError(
      output
        ? `child process has failed to ${action}: ${output}`
        : `child process has failed to ${action}: exit status ${r.code}`,
    );
  }
}

/** Runs a helper program as ga_run_command does; returns its merged output on success. */
export async function runGaCommand(
  ctx: Context,
  req: ProgramRequest,
  action: string,
): Promise<Uint8Array> {
  let r: RunResult;
  try {
    r = await ctx.sys.runProgram(req);
  } catch (e) {
    if (!(e instanceof SysError) || e instanceof SandboxRefusal) throw e;
    r = execFailure(programOf(ctx, req), e);
  }
  checkRunResult(r, action);
  return r.output;
}
