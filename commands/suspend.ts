/**
 * guest-suspend-disk, guest-suspend-ram and guest-suspend-hybrid
 * (qga-reference.md §2.3 "Time / power"): systemd, then pm-utils, then
 * /sys/power/state, with qemu-ga's support checks, fall-through and error texts.
 * The programs are run by the privileged helper from fixed templates
 * (helper/programs.ts). None of them answers on success.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { type ProgramRequest, SandboxRefusal, SysError } from "../system/mod.ts";
import { type Context, defineCommand } from "./types.ts";
import { PROGRAMS } from "../helper/programs.ts";
import { programOf } from "./run_command.ts";

/** Helper programs, by absolute path (helper/programs.ts runs them). */
export const SUSPEND_PROGRAMS = {
  systemctl: PROGRAMS.systemctl,
  pmIsSupported: PROGRAMS.pmIsSupported,
  pmHibernate: PROGRAMS.pmHibernate,
  pmSuspend: PROGRAMS.pmSuspend,
  pmSuspendHybrid: PROGRAMS.pmSuspendHybrid,
} as const;

const STATE_FILE = "/sys/power/state";

/** The three suspend modes and what each strategy calls them. */
const MODES = {
  disk: {
    verb: "hibernate",
    pm: "pmHibernate",
    sysfs: "disk",
  },
  ram: {
    verb: "suspend",
    pm: "pmSuspend",
    sysfs: "mem",
  },
  hybrid: {
    verb: "hybrid-sleep",
    pm: "pmSuspendHybrid",
    sysfs: null,
  },
} as const;

/** A suspend mode. */
export type SuspendMode = keyof typeof MODES;

/**
 * run_process_child: the exit status (WEXITSTATUS, so 0 for a signal), -1 when the
 * program does not exist; other spawn failures are errors.
 */
async function runChild(ctx: Context, req: ProgramRequest): Promise<number> {
  try {
    const res = await ctx.sys.runProgram(req);
    return res.code ?? 0;
  } catch (e) {
    if (e instanceof SysError && e.code === "ENOENT") return -1;
    if (e instanceof SysError && !(e instanceof SandboxRefusal)) {
      const program = programOf(ctx, req);
      const name = program.slice(program.lastIndexOf("/") + 1);
      throw new QgaError(
        `failed to create child process, error 'Failed to execute child process \u201C${name}\u201D (${e.strerror})'`,
      );
    }
    throw e;
  }
}

/** Runs a strategy step, turning its QgaError into a value (qemu-ga's local_err). */
async function attempt<T>(f: () => Promise<T>): Promise<{ value?: T; error?: QgaError }> {
  try {
    return { value: await f() };
  } catch (e) {
    if (e instanceof QgaError) return { error: e };
    throw e;
  }
}

/** guest_suspend: the three strategies in qemu-ga's order. */
export async function guestSuspend(ctx: Context, mode: SuspendMode): Promise<void> {
  const m = MODES[mode];
  const P = SUSPEND_PROGRAMS;
  let supported = false;

  const sd = await attempt(async () => {
    const st = await runChild(ctx, { program: "suspend-check-systemd", mode });
    return st > 0 && st < 4;
  });
  if (sd.value) {
    supported = true;
    const run = await attempt(async () => {
      const st = await runChild(ctx, { program: "suspend-systemd", mode });
      if (st === 0) return;
      if (st === -1) throw new QgaError(`the helper program 'systemctl ${m.verb}' was not found`);
      throw new QgaError(
        `the helper program 'systemctl ${m.verb}' returned an unexpected exit status code (${st})`,
      );
    });
    if (!run.error) return;
  }

  const pm = await attempt(async () => {
    const st = await runChild(ctx, { program: "suspend-check-pm", mode });
    if (st === 0) return true;
    if (st === -1) return false;
    throw new QgaError(
      `the helper program 'pm-is-supported' returned an unexpected exit status code (${st})`,
    );
  });
  if (pm.value) {
    supported = true;
    const name = P[m.pm].slice(P[m.pm].lastIndexOf("/") + 1);
    const run = await attempt(async () => {
      const st = await runChild(ctx, { program: "suspend-pm", mode });
      if (st === 0) return;
      if (st === -1) throw new QgaError(`the helper program '${name}' was not found`);
      throw new QgaError(
        `the helper program '${name}' returned an unexpected exit status code (${st})`,
      );
    });
    if (!run.error) return;
  }

  let error: QgaError | undefined;
  if (m.sysfs === null) {
    error = new QgaError("unknown guest suspend mode");
  } else {
    let state = "";
    try {
      state = (await ctx.sys.readTextFile(STATE_FILE)).slice(0, 31);
    } catch {
      state = "";
    }
    if (state.includes(m.sysfs)) {
      supported = true;
      try {
        await ctx.sys.writeFile(STATE_FILE, m.sysfs);
      } catch (e) {
        const reason = e instanceof SysError ? e.strerror : String(e);
        error = new QgaError(`suspend: cannot write to '${STATE_FILE}': ${reason}`);
      }
    }
  }
  if (!supported) throw new QgaError("the requested suspend mode is not supported by the guest");
  // as in qemu-ga: a supported strategy that failed earlier is forgotten here; only
  // the sysfs step's error (or none) is reported
  if (error) throw error;
}

const NEEDS = { helper: ["read", "write", "run"] };

const DIFFERENCES = "systemctl and the pm-utils programs are run by the privileged helper by " +
  "absolute path " +
  "(/usr/bin/systemctl, /usr/bin/pm-is-supported, /usr/sbin/pm-*), not through PATH.";

/** guest-suspend-disk. */
export const guestSuspendDisk = defineCommand({
  name: "guest-suspend-disk",
  since: "1.1",
  doc: "Suspend the guest to disk (hibernate); no reply on success",
  differences: DIFFERENCES,
  successResponse: false,
  needs: NEEDS,
  async handler(_args, ctx) {
    await guestSuspend(ctx, "disk");
  },
});

/** guest-suspend-ram. */
export const guestSuspendRam = defineCommand({
  name: "guest-suspend-ram",
  since: "1.1",
  doc: "Suspend the guest to RAM; no reply on success",
  differences: DIFFERENCES,
  successResponse: false,
  needs: NEEDS,
  async handler(_args, ctx) {
    await guestSuspend(ctx, "ram");
  },
});

/** guest-suspend-hybrid. */
export const guestSuspendHybrid = defineCommand({
  name: "guest-suspend-hybrid",
  since: "1.1",
  doc: "Save the guest to disk and suspend it to RAM; no reply on success",
  differences: DIFFERENCES,
  successResponse: false,
  needs: NEEDS,
  async handler(_args, ctx) {
    await guestSuspend(ctx, "hybrid");
  },
});
