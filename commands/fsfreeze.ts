/**
 * guest-fsfreeze-status, -freeze, -freeze-list and -thaw (qga-reference.md
 * §2.3 "Filesystems", §1.10, §4.5), with qemu-ga 10.2's hook handling.
 *
 * Deno cannot issue ioctl(FIFREEZE/FITHAW), so each filesystem is frozen and
 * thawed by util-linux `fsfreeze --freeze|--unfreeze DIR`, which the privileged
 * helper runs (with LC_ALL=C, so its messages carry glibc's strerror texts) only
 * for a DIR that is a mount point at that moment; the hook is the one the helper
 * was given at start (helper/programs.ts). What qemu-ga learns from errno we
 * read from fsfreeze's message `fsfreeze: DIR: freeze failed: <strerror>`:
 * "Operation not supported" (EOPNOTSUPP) and "Device or resource busy" (EBUSY)
 * are skipped and not counted, `cannot open DIR: <strerror>` is qemu-ga's
 * `failed to open DIR: <strerror>`.
 *
 * Thaw: qemu-ga repeats FITHAW on each mount until it fails and counts the
 * mounts where at least one succeeded. We do the same with `fsfreeze
 * --unfreeze`: a frozen mount costs two runs (the thaw, then the failing
 * check), a thawed one a single run; the repeat is capped at
 * {@link MAX_THAW_REPEAT} runs per mount in case a program keeps succeeding.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { array, enumType, int, str, struct } from "../protocol/types.ts";
import { SandboxRefusal, strerror, SysError } from "../system/mod.ts";
import { buildMountList, type Mount } from "./mount_list.ts";
import { runGaCommand } from "./run_command.ts";
import { type Context, defineCommand, type RunResult } from "./types.ts";
import { PROGRAMS } from "../helper/programs.ts";

/** util-linux fsfreeze (Debian, Fedora and SUSE install it here; /sbin links to it). */
export const FSFREEZE = PROGRAMS.fsfreeze;
/** Upper bound of `fsfreeze --unfreeze` runs per mount during one thaw. */
export const MAX_THAW_REPEAT = 16;

/** GuestFsfreezeStatus. */
export const GuestFsfreezeStatus = enumType("GuestFsfreezeStatus", ["thawed", "frozen"]);

/** Hook argument. */
type HookArg = "freeze" | "thaw";

/** execute_fsfreeze_hook: nothing when no hook is configured. */
async function runHook(ctx: Context, arg: HookArg): Promise<void> {
  const hook = ctx.options.fsfreezeHook;
  if (!hook) return;
  ctx.log.debug(`executing fsfreeze hook with arg '${arg}'`);
  await runGaCommand(ctx, { program: "fsfreeze-hook", arg }, "execute fsfreeze hook");
}

/** One fsfreeze run; a program that cannot start reads as a failure with its reason. */
async function fsfreeze(ctx: Context, action: "--freeze" | "--unfreeze", dir: string): Promise<
  { ok: true } | { ok: false; open: boolean; reason: string }
> {
  let r: RunResult;
  try {
    r = await ctx.sys.runProgram({
      program: "fsfreeze",
      action: action === "--freeze" ? "freeze" : "unfreeze",
      mountpoint: dir,
    });
  } catch (e) {
    if (!(e instanceof SysError) || e instanceof SandboxRefusal) throw e;
    return { ok: false, open: false, reason: strerror(e.code) };
  }
  if (r.code === 0) return { ok: true };
  const text = new TextDecoder().decode(r.output).trim();
  const open = `cannot open ${dir}: `;
  const at = text.lastIndexOf(open);
  if (at >= 0) return { ok: false, open: true, reason: text.slice(at + open.length) };
  const verb = action === "--freeze" ? "freeze failed: " : "unfreeze failed: ";
  const v = text.lastIndexOf(verb);
  if (v >= 0) return { ok: false, open: false, reason: text.slice(v + verb.length) };
  if (text.endsWith("is not a directory")) {
    return { ok: false, open: false, reason: "Operation not supported" };
  }
  return { ok: false, open: false, reason: text || `exit status ${r.code ?? r.signal}` };
}

/** qmp_guest_fsfreeze_do_freeze_list: returns the count, throws after nothing else. */
async function doFreezeList(
  ctx: Context,
  mounts: Mount[],
  mountpoints: string[] | undefined,
): Promise<number> {
  let frozen = 0;
  for (const mount of [...mounts].reverse()) {
    if (mountpoints && !mountpoints.includes(mount.dir)) continue;
    const r = await fsfreeze(ctx, "--freeze", mount.dir);
    if (r.ok) {
      frozen++;
      continue;
    }
    if (r.open) throw new QgaError(`failed to open ${mount.dir}: ${r.reason}`);
    if (r.reason === "Operation not supported" || r.reason === "Device or resource busy") continue;
    throw new QgaError(`failed to freeze ${mount.dir}: ${r.reason}`);
  }
  return frozen;
}

/** qmp_guest_fsfreeze_do_thaw: thaws every mount, counts those that were frozen. */
async function doThaw(ctx: Context): Promise<number> {
  const mounts = await buildMountList(ctx.sys);
  let thawed = 0;
  for (const mount of mounts) {
    for (let i = 0; i < MAX_THAW_REPEAT; i++) {
      const r = await fsfreeze(ctx, "--unfreeze", mount.dir);
      if (!r.ok) break;
      if (i === 0) thawed++;
    }
  }
  return thawed;
}

/**
 * qmp_guest_fsfreeze_thaw: thaw, leave the frozen state and run the thaw hook.
 * A failure to build the mount list is reported and the count is 0 (the state
 * is then left as it was, as in qemu-ga).
 */
async function thaw(ctx: Context): Promise<number> {
  const count = await doThaw(ctx);
  await ctx.setFrozen(false);
  ctx.log.debug("guest-fsthaw called");
  await runHook(ctx, "thaw");
  return count;
}

/** Refuses a freeze while frozen; the dispatcher normally refuses it first (§1.10). */
function refuseWhileFrozen(ctx: Context, name: string): void {
  if (ctx.frozen) {
    throw new QgaError(
      `Command ${name} has been disabled: the command is not allowed`,
      "CommandNotFound",
    );
  }
}

/** qmp_guest_fsfreeze_freeze_list. */
async function freezeList(
  ctx: Context,
  name: string,
  mountpoints: string[] | undefined,
): Promise<number> {
  refuseWhileFrozen(ctx, name);
  ctx.log.debug("guest-fsfreeze called");
  await runHook(ctx, "freeze");
  const mounts = await buildMountList(ctx.sys);
  // Cannot risk the agent blocking itself on a write once something is frozen.
  await ctx.setFrozen(true);
  let count: number;
  try {
    count = await doFreezeList(ctx, mounts, mountpoints);
  } catch (e) {
    try {
      await thaw(ctx);
    } catch (cleanup) {
      ctx.log.warn(`failed to thaw after a failed freeze: ${(cleanup as Error).message}`);
    }
    throw e;
  }
  if (count === 0) await ctx.setFrozen(false);
  return count;
}

const HOOK_DIFFERENCE = "The privileged helper runs fsfreeze and the hook; the hook is the one " +
  "the agent was started with (the helper takes it once, at start), run with cwd / and an empty " +
  "environment apart from PATH.";

/** Needs of the freeze and thaw commands: the mount table, fsfreeze and the hook (helper). */
const freezeNeeds = { helper: ["read", "run"] };

/** guest-fsfreeze-status. */
export const guestFsfreezeStatus = defineCommand({
  name: "guest-fsfreeze-status",
  since: "0.15.0",
  doc: "Report whether the agent has frozen the guest's filesystems (its own flag).",
  returns: GuestFsfreezeStatus,
  allowedWhileFrozen: true,
  needs: {},
  handler(_args, ctx) {
    return ctx.frozen ? "frozen" : "thawed";
  },
});

/** guest-fsfreeze-freeze. */
export const guestFsfreezeFreeze = defineCommand({
  name: "guest-fsfreeze-freeze",
  since: "0.15.0",
  doc: "Freeze every freezable mounted filesystem (in reverse mount order); returns the count.",
  differences:
    "Freezes through util-linux fsfreeze instead of ioctl(FIFREEZE); a mount point that is not a directory is skipped like an unsupported filesystem. " +
    HOOK_DIFFERENCE,
  returns: int,
  needs: freezeNeeds,
  handler(_args, ctx) {
    return freezeList(ctx, "guest-fsfreeze-freeze", undefined);
  },
});

/** guest-fsfreeze-freeze-list. */
export const guestFsfreezeFreezeList = defineCommand({
  name: "guest-fsfreeze-freeze-list",
  since: "2.2",
  doc: "Freeze the listed mount points (all when omitted); returns the count.",
  differences: "Freezes through util-linux fsfreeze instead of ioctl(FIFREEZE). " + HOOK_DIFFERENCE,
  args: struct("guest-fsfreeze-freeze-list-arg", { "*mountpoints": array(str) }),
  returns: int,
  needs: freezeNeeds,
  handler(args, ctx) {
    return freezeList(ctx, "guest-fsfreeze-freeze-list", args.mountpoints);
  },
});

/** guest-fsfreeze-thaw. */
export const guestFsfreezeThaw = defineCommand({
  name: "guest-fsfreeze-thaw",
  since: "0.15.0",
  doc: "Thaw every frozen filesystem, then run the thaw hook; returns the number thawed.",
  differences: "Thaws through util-linux fsfreeze --unfreeze instead of ioctl(FITHAW). " +
    HOOK_DIFFERENCE,
  returns: int,
  allowedWhileFrozen: true,
  needs: freezeNeeds,
  handler(_args, ctx) {
    return thaw(ctx);
  },
});

/**
 * Thaws on agent exit when frozen (guest_fsfreeze_cleanup); never throws.
 * Returns the number of filesystems thawed, or 0 when nothing was frozen.
 */
export async function thawAll(ctx: Context): Promise<number> {
  if (!ctx.frozen) return 0;
  try {
    return await thaw(ctx);
  } catch (e) {
    ctx.log.error(`failed to clean up frozen filesystems: ${(e as Error).message}`);
    return 0;
  }
}
