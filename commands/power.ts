/**
 * guest-shutdown (qga-reference.md §2.3 "Time / power", §1.8, §4.6), with
 * qemu-ga 10.2's behaviour: `/sbin/poweroff`, `/sbin/halt` or `/sbin/reboot`
 * when executable, else `/sbin/shutdown -h -P|-H|-r +0 "hypervisor initiated
 * shutdown"`, run as ga_run_command runs it (commands/run_command.ts) by the
 * privileged helper, which knows only these fixed command lines (helper/programs.ts).
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { str, struct } from "../protocol/types.ts";
import { SandboxRefusal, SysError } from "../system/mod.ts";
import { checkRunResult, execFailure, programOf, runGaCommand } from "./run_command.ts";
import { defineCommand, type RunResult } from "./types.ts";
import type { PowerMode } from "../helper/programs.ts";

const MODES: readonly PowerMode[] = ["powerdown", "halt", "reboot"];

/** Spawn errors that mean access(path, X_OK) would have failed. */
const NOT_EXECUTABLE = new Set(["ENOENT", "EACCES", "ENOTDIR", "ELOOP"]);

/** guest-shutdown. */
export const guestShutdown = defineCommand({
  name: "guest-shutdown",
  since: "0.15.0",
  doc: "Power down (default), halt or reboot the guest; no reply on success.",
  differences:
    "qemu-ga checks access(X_OK) and then runs the program; we run it and fall back to /sbin/shutdown when it cannot be executed (ENOENT, EACCES, ENOTDIR, ELOOP), which is the same decision.",
  args: struct("guest-shutdown-arg", { "*mode": str }),
  successResponse: false,
  needs: { helper: ["run"] },
  async handler(args, ctx) {
    const mode = (args.mode ?? "powerdown") as PowerMode;
    if (!MODES.includes(mode)) {
      throw new QgaError("mode is invalid (valid values are: halt|powerdown|reboot");
    }
    ctx.log.debug(`guest-shutdown called, mode: ${args.mode ?? "(null)"}`);
    let r: RunResult;
    const own = { program: "power-program", mode } as const;
    try {
      r = await ctx.sys.runProgram(own);
    } catch (e) {
      if (!(e instanceof SysError) || e instanceof SandboxRefusal) throw e;
      if (!NOT_EXECUTABLE.has(e.code)) {
        checkRunResult(execFailure(programOf(ctx, own), e), "shutdown");
      }
      await runGaCommand(ctx, { program: "shutdown", mode }, "shutdown");
      return;
    }
    checkRunResult(r, "shutdown");
  },
});
