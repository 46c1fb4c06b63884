/**
 * guest-shutdown (qga-reference.md §2.3 "Time / power", §1.8, §4.6), with
 * qemu-ga 10.2's behaviour: `/sbin/poweroff`, `/sbin/halt` or `/sbin/reboot`
 * when executable, else `/sbin/shutdown -h -P|-H|-r +0 "hypervisor initiated
 * shutdown"`, run as ga_run_command runs it (commands/run_command.ts).
 *
 * @module
 */

import { QgaError } from "../schema/errors.ts";
import { str, struct } from "../schema/types.ts";
import { SysError } from "../system/mod.ts";
import { checkRunResult, execFailure, isSandboxRefusal, runGaCommand } from "./run_command.ts";
import { type CommandDef, defineCommand, type RunResult } from "./types.ts";

/** The dedicated program of each mode and shutdown(8)'s flag for it. */
const MODES: ReadonlyMap<string, { program: string; flag: string }> = new Map([
  ["powerdown", { program: "/sbin/poweroff", flag: "-P" }],
  ["halt", { program: "/sbin/halt", flag: "-H" }],
  ["reboot", { program: "/sbin/reboot", flag: "-r" }],
]);

/** The fallback, as in qemu-ga 7.2 and 10.2 on Linux. */
const SHUTDOWN = "/sbin/shutdown";

/** Spawn errors that mean access(path, X_OK) would have failed. */
const NOT_EXECUTABLE = new Set(["ENOENT", "EACCES", "ENOTDIR", "ELOOP"]);

/** Arguments of guest-shutdown. */
export interface ShutdownArgs {
  mode?: string;
}

/** guest-shutdown. */
export const guestShutdown: CommandDef<ShutdownArgs, Record<string, never>> = defineCommand({
  name: "guest-shutdown",
  since: "0.15.0",
  doc: "Power down (default), halt or reboot the guest; no reply on success.",
  differences:
    "qemu-ga checks access(X_OK) and then runs the program; we run it and fall back to /sbin/shutdown when it cannot be executed (ENOENT, EACCES, ENOTDIR, ELOOP), which is the same decision.",
  args: struct("guest-shutdown-arg", { "*mode": str }),
  successResponse: false,
  needs: {
    run: ["/sbin/poweroff", "/sbin/halt", "/sbin/reboot", SHUTDOWN],
  },
  async handler(args, ctx) {
    const mode = args.mode ?? "powerdown";
    const m = MODES.get(mode);
    if (!m) throw new QgaError("mode is invalid (valid values are: halt|powerdown|reboot");
    ctx.log.debug(`guest-shutdown called, mode: ${args.mode ?? "(null)"}`);
    let r: RunResult;
    try {
      r = await ctx.run([m.program]);
    } catch (e) {
      if (!(e instanceof SysError) || isSandboxRefusal(e)) throw e;
      if (!NOT_EXECUTABLE.has(e.code)) {
        checkRunResult(execFailure(m.program, e), "shutdown");
      }
      await runGaCommand(
        ctx,
        [SHUTDOWN, "-h", m.flag, "+0", "hypervisor initiated shutdown"],
        "shutdown",
      );
      return {};
    }
    checkRunResult(r, "shutdown");
    return {};
  },
});
