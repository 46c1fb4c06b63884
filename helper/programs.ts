/**
 * The programs the helper runs for the agent. Each is a fixed argv template:
 * the program is an absolute path written here, and the few variable parts are
 * typed values checked here, never text the agent chooses. There is no way to
 * name another program, add an option or change the environment.
 *
 * | program               | argv                                                      | checked                  |
 * |-----------------------|-----------------------------------------------------------|--------------------------|
 * | set-clock             | /usr/bin/date -u -s @SECONDS.MICROSECONDS                 | both integers            |
 * | hwclock               | /sbin/hwclock -w \| -s                                    | enum                     |
 * | chpasswd              | /usr/sbin/chpasswd [-e], stdin `USER:PASSWORD\n`           | one line, no `:` in USER |
 * | fsfreeze              | /usr/sbin/fsfreeze --freeze \| --unfreeze MOUNTPOINT      | a current mount point    |
 * | fstrim                | /usr/sbin/fstrim -v -m MINIMUM MOUNTPOINT                 | uint64, mount point      |
 * | power-program         | /sbin/poweroff \| /sbin/halt \| /sbin/reboot              | enum                     |
 * | shutdown              | /sbin/shutdown -h -P\|-H\|-r +0 "hypervisor initiated shutdown" | enum               |
 * | suspend-check-systemd | /usr/bin/systemctl status systemd-{hibernate,suspend,hybrid-sleep} | enum            |
 * | suspend-systemd       | /usr/bin/systemctl hibernate \| suspend \| hybrid-sleep   | enum                     |
 * | suspend-check-pm      | /usr/bin/pm-is-supported --hibernate \| --suspend \| --suspend-hybrid | enum         |
 * | suspend-pm            | /usr/sbin/pm-hibernate \| pm-suspend \| pm-suspend-hybrid | enum                     |
 * | fsfreeze-hook         | HOOK freeze \| thaw                                       | HOOK fixed by Init       |
 *
 * Children get an empty environment plus a fixed PATH (and LC_ALL=C where the
 * agent parses the output), stdin from /dev/null unless the template feeds it,
 * and their stdout and stderr merged, as qemu-ga's ga_run_command does.
 *
 * @module
 */

import { refusal } from "./protocol.ts";

/** The programs, by absolute path. */
export const PROGRAMS = {
  date: "/usr/bin/date",
  hwclock: "/sbin/hwclock",
  chpasswd: "/usr/sbin/chpasswd",
  fsfreeze: "/usr/sbin/fsfreeze",
  fstrim: "/usr/sbin/fstrim",
  poweroff: "/sbin/poweroff",
  halt: "/sbin/halt",
  reboot: "/sbin/reboot",
  shutdown: "/sbin/shutdown",
  systemctl: "/usr/bin/systemctl",
  pmIsSupported: "/usr/bin/pm-is-supported",
  pmHibernate: "/usr/sbin/pm-hibernate",
  pmSuspend: "/usr/sbin/pm-suspend",
  pmSuspendHybrid: "/usr/sbin/pm-suspend-hybrid",
} as const;

/** guest-shutdown's modes. */
export type PowerMode = "powerdown" | "halt" | "reboot";
/** The guest-suspend-* modes. */
export type SuspendMode = "disk" | "ram" | "hybrid";

/** What the agent may ask the helper to run (the Run payload). */
export type ProgramRequest =
  | { program: "set-clock"; seconds: number; microseconds: number }
  | { program: "hwclock"; direction: "to-hardware" | "from-hardware" }
  | { program: "chpasswd"; crypted: boolean; username: string; password: string }
  | { program: "fsfreeze"; action: "freeze" | "unfreeze"; mountpoint: string }
  | { program: "fstrim"; minimum: string; mountpoint: string }
  | { program: "power-program"; mode: PowerMode }
  | { program: "shutdown"; mode: PowerMode }
  | { program: "suspend-check-systemd"; mode: SuspendMode }
  | { program: "suspend-systemd"; mode: SuspendMode }
  | { program: "suspend-check-pm"; mode: SuspendMode }
  | { program: "suspend-pm"; mode: SuspendMode }
  | { program: "fsfreeze-hook"; arg: "freeze" | "thaw" };

/** A checked request: exactly what will run. */
export interface Invocation {
  argv: [string, ...string[]];
  env: Record<string, string>;
  /** Bytes for the child's stdin (else /dev/null). */
  stdin?: Uint8Array;
}

/** What {@link invocation} needs besides the request. */
export interface InvocationContext {
  /** The hook fixed at start (Init); null when none is configured. */
  fsfreezeHook: string | null;
  /** True when `path` is a mount point right now. */
  isMountPoint(path: string): boolean;
}

const PATH = "/usr/sbin:/usr/bin:/sbin:/bin";
const POWER = {
  powerdown: ["poweroff", "-P"],
  halt: ["halt", "-H"],
  reboot: ["reboot", "-r"],
} as const;
const SUSPEND = {
  disk: { unit: "systemd-hibernate", verb: "hibernate", pm: "--hibernate", run: "pmHibernate" },
  ram: { unit: "systemd-suspend", verb: "suspend", pm: "--suspend", run: "pmSuspend" },
  hybrid: {
    unit: "systemd-hybrid-sleep",
    verb: "hybrid-sleep",
    pm: "--suspend-hybrid",
    run: "pmSuspendHybrid",
  },
} as const;

function refuse(what: string): never {
  throw refusal("EINVAL", `run: ${what}`);
}

function oneOf<T extends string>(v: unknown, allowed: readonly T[], what: string): T {
  if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) {
    refuse(`${what} must be one of ${allowed.join(", ")}`);
  }
  return v as T;
}

function mountpoint(v: unknown, ctx: InvocationContext): string {
  if (typeof v !== "string" || !v.startsWith("/") || v.includes("\0")) {
    refuse("the mount point must be an absolute path");
  }
  if (!ctx.isMountPoint(v)) refuse(`${JSON.stringify(v.slice(0, 200))} is not a mount point`);
  return v;
}

/** The one stdin line chpasswd reads: `USER:PASSWORD\n`, checked so it stays one line. */
function chpasswdLine(username: unknown, password: unknown): Uint8Array {
  if (typeof username !== "string") refuse("bad user name");
  if (/[:\n\0]/.test(username)) refuse("forbidden characters in the user name");
  if (typeof password !== "string") refuse("the password must be base64 text");
  let raw: Uint8Array;
  try {
    raw = Uint8Array.fromBase64(password);
  } catch {
    refuse("the password must be base64 text");
  }
  if (raw.includes(0x0a) || raw.includes(0)) refuse("forbidden characters in the password");
  const name = new TextEncoder().encode(`${username}:`);
  const line = new Uint8Array(name.length + raw.length + 1);
  line.set(name);
  line.set(raw, name.length);
  line[line.length - 1] = 0x0a;
  return line;
}

/**
 * Checks a Run request and builds what it runs. Throws OpError (EINVAL) for
 * anything that is not exactly one of the templates.
 */
export function invocation(req: unknown, ctx: InvocationContext): Invocation {
  if (typeof req !== "object" || req === null) refuse("the request is not an object");
  const r = req as Record<string, unknown>;
  const env = { PATH };
  switch (r.program) {
    case "set-clock": {
      const s = r.seconds;
      const us = r.microseconds;
      if (!Number.isSafeInteger(s) || !Number.isSafeInteger(us)) {
        refuse("the time must be two integers");
      }
      if ((us as number) < 0 || (us as number) > 999_999) refuse("microseconds out of range");
      const stamp = `@${s}.${String(us).padStart(6, "0")}`;
      return { argv: [PROGRAMS.date, "-u", "-s", stamp], env };
    }
    case "hwclock": {
      const d = oneOf(r.direction, ["to-hardware", "from-hardware"], "direction");
      return { argv: [PROGRAMS.hwclock, d === "to-hardware" ? "-w" : "-s"], env };
    }
    case "chpasswd": {
      if (typeof r.crypted !== "boolean") refuse("crypted must be a boolean");
      const stdin = chpasswdLine(r.username, r.password);
      const argv: [string, ...string[]] = r.crypted
        ? [PROGRAMS.chpasswd, "-e"]
        : [PROGRAMS.chpasswd];
      return { argv, env, stdin };
    }
    case "fsfreeze": {
      const action = oneOf(r.action, ["freeze", "unfreeze"], "action");
      const dir = mountpoint(r.mountpoint, ctx);
      return { argv: [PROGRAMS.fsfreeze, `--${action}`, dir], env: { PATH, LC_ALL: "C" } };
    }
    case "fstrim": {
      const m = r.minimum;
      if (typeof m !== "string" || !/^[0-9]{1,20}$/.test(m) || BigInt(m) >= 1n << 64n) {
        refuse("minimum must be an unsigned 64-bit decimal");
      }
      const dir = mountpoint(r.mountpoint, ctx);
      return { argv: [PROGRAMS.fstrim, "-v", "-m", m, dir], env: { PATH, LC_ALL: "C" } };
    }
    case "power-program":
    case "shutdown": {
      const mode = oneOf(r.mode, ["powerdown", "halt", "reboot"], "mode");
      const [program, flag] = POWER[mode];
      if (r.program === "power-program") return { argv: [PROGRAMS[program]], env };
      return {
        argv: [PROGRAMS.shutdown, "-h", flag, "+0", "hypervisor initiated shutdown"],
        env,
      };
    }
    case "suspend-check-systemd":
    case "suspend-systemd":
    case "suspend-check-pm":
    case "suspend-pm": {
      const m = SUSPEND[oneOf(r.mode, ["disk", "ram", "hybrid"], "mode")];
      const argv: [string, ...string[]] = r.program === "suspend-check-systemd"
        ? [PROGRAMS.systemctl, "status", m.unit]
        : r.program === "suspend-systemd"
        ? [PROGRAMS.systemctl, m.verb]
        : r.program === "suspend-check-pm"
        ? [PROGRAMS.pmIsSupported, m.pm]
        : [PROGRAMS[m.run]];
      return { argv, env };
    }
    case "fsfreeze-hook": {
      const arg = oneOf(r.arg, ["freeze", "thaw"], "arg");
      if (ctx.fsfreezeHook === null) {
        throw refusal("EPERM", "run: no fsfreeze hook was configured at start");
      }
      return { argv: [ctx.fsfreezeHook, arg], env };
    }
    default:
      refuse(`unknown program ${JSON.stringify(String(r.program).slice(0, 40))}`);
  }
}

/** Checks an fsfreeze hook path given at Init (run with execvp semantics, as qemu-ga). */
export function checkHookPath(hook: unknown): string | null {
  if (hook === null || hook === undefined) return null;
  if (typeof hook !== "string" || hook === "" || hook.length >= 4096 || hook.includes("\0")) {
    throw refusal("EINVAL", "init: bad fsfreeze hook path");
  }
  if (hook.startsWith("-")) {
    throw refusal("EINVAL", "init: the fsfreeze hook looks like an option");
  }
  return hook;
}

/** Largest output kept from a program (qemu-ga keeps all; error texts need little). */
export const MAX_OUTPUT = 1024 * 1024;

/** How a program ended, with its merged output. */
export interface Ran {
  code: number | null;
  signal: string | null;
  output: Uint8Array;
}

/**
 * Runs an {@link Invocation}: cwd `/`, stdin as given or /dev/null, stdout and stderr read together and merged in arrival order.
 * Throws when the program cannot be started (the spawn error, with its errno).
 */
export async function run(inv: Invocation): Promise<Ran> {
  const [program, ...args] = inv.argv;
  const child = new Deno.Command(program, {
    args,
    clearEnv: true,
    env: inv.env,
    cwd: "/",
    stdin: inv.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const chunks: Uint8Array[] = [];
  let kept = 0;
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const c of stream) {
      if (kept >= MAX_OUTPUT) continue;
      const part = c.subarray(0, MAX_OUTPUT - kept);
      chunks.push(part);
      kept += part.length;
    }
  };
  const feed = async () => {
    if (!inv.stdin) return;
    const w = child.stdin.getWriter();
    try {
      await w.write(inv.stdin);
      await w.close();
    } catch {
      // The program exited without reading its input.
    }
  };
  const [, , , status] = await Promise.all([
    feed(),
    drain(child.stdout),
    drain(child.stderr),
    child.status,
  ]);
  const output = new Uint8Array(kept);
  let off = 0;
  for (const c of chunks) {
    output.set(c, off);
    off += c.length;
  }
  return { code: status.signal ? null : status.code, signal: status.signal, output };
}
