/**
 * guest-get-time and guest-set-time (qga-reference.md §2.3 "Time / power").
 *
 * Deno cannot call settimeofday(2), so guest-set-time has the privileged helper
 * run `/usr/bin/date -u -s @SECONDS.MICROSECONDS` (clock_settime with qemu-ga's
 * microsecond precision; the helper takes the two integers, never text), then
 * `/sbin/hwclock -w`, as qemu-ga 10.2 does; without a time it runs
 * `/sbin/hwclock -s` (helper/programs.ts).
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { int, struct } from "../protocol/types.ts";
import { defineCommand } from "./types.ts";
import { SandboxRefusal } from "../system/mod.ts";
import { runGaCommand } from "./run_command.ts";
import { localZone } from "./timezone.ts";
import { PROGRAMS } from "../helper/programs.ts";

/** The programs guest-set-time runs. */
export const DATE_PATH = PROGRAMS.date;
/** qemu-ga's hwclock path. */
export const HWCLOCK_PATH = PROGRAMS.hwclock;

/** Nanoseconds since the epoch with microsecond resolution, as g_get_real_time() * 1000. */
export function realTimeNs(): bigint {
  const ns = Temporal.Now.instant().epochNanoseconds;
  return (ns / 1000n) * 1000n;
}

/** guest-get-time. */
export const guestGetTime = defineCommand({
  name: "guest-get-time",
  since: "1.5",
  doc: "Return the guest's wall-clock time in nanoseconds since the epoch (microsecond resolution)",
  returns: int,
  needs: {},
  handler() {
    return realTimeNs();
  },
});

/** guest-set-time. */
export const guestSetTime = defineCommand({
  name: "guest-set-time",
  since: "1.5",
  doc: "Set the guest's clock to a time (then the RTC from it), or the clock from the RTC",
  differences: "The clock is set by the privileged helper running /usr/bin/date -u -s " +
    "@S.UUUUUU (Deno cannot call settimeofday); its failure is reported as qemu-ga's `Failed to set time to guest: <errno>` " +
    "with the errno text date printed. `Invalid time` carries `Success` where qemu-ga appends a " +
    "stale errno. `Time <ns> is too large` cannot happen with a 64-bit time_t, as in qemu-ga.",
  args: struct("guest-set-time-arg", { "*time": int }),
  needs: {
    helper: ["run"],
    read: ["/etc/localtime", "/usr/share/zoneinfo"],
    env: ["TZ", "TZDIR"],
  },
  async handler(args, ctx) {
    if (args.time !== undefined) {
      const ns = args.time;
      const sec = ns / 1_000_000_000n; // C division truncates toward zero
      const usec = (ns % 1_000_000_000n) / 1000n;
      // GDate's year, from localtime(): qemu-ga accepts 1970 <= year < 2070 only
      const secNum = Number(sec);
      const zone = await localZone(
        ctx.sys,
        { tz: ctx.env.get("TZ"), tzdir: ctx.env.get("TZDIR") },
        secNum,
      );
      const year = new Date((secNum + zone.offset) * 1000).getUTCFullYear();
      if (!(year >= 1970 && year < 2070)) throw new QgaError("Invalid time: Success");
      if (usec < 0n) throw new QgaError("Failed to set time to guest: Invalid argument");
      let res;
      try {
        res = await ctx.sys.runProgram({
          program: "set-clock",
          seconds: secNum,
          microseconds: Number(usec),
        });
      } catch (e) {
        if (e instanceof SandboxRefusal) throw e;
        const reason = e instanceof Error && "strerror" in e ? String(e.strerror) : String(e);
        throw new QgaError(`Failed to set time to guest: ${reason}`);
      }
      if (res.code !== 0) {
        const out = new TextDecoder().decode(res.output).trim();
        const m = /cannot set date: (.*)$/m.exec(out);
        throw new QgaError(
          `Failed to set time to guest: ${m?.[1] ?? (out || "Operation not permitted")}`,
        );
      }
    }
    await runGaCommand(
      ctx,
      { program: "hwclock", direction: args.time !== undefined ? "to-hardware" : "from-hardware" },
      "set hardware clock to system time",
    );
  },
});
