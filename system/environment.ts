/**
 * The few environment variables the agent reads (qemu-ga reads them with getenv):
 * `QGA_CONF` and `POSIXLY_CORRECT` (command line), `QGA_OS_RELEASE`
 * (guest-get-osinfo), `TZ` and `TZDIR` (guest-get-timezone, guest-set-time) and
 * `PATH` (guest-exec's program lookup). They are read once at start-up: a process's
 * environment does not change under it.
 *
 * Deno reads a variable only with `--allow-env` naming it. The least-privilege line
 * grants these names. The card's line (`--allow-read --allow-write --allow-run`) grants
 * none, but it grants every program, so the agent then reads its own environment from
 * `/usr/bin/env -0` started once (the child inherits it unchanged); a variable that can be
 * read neither way is reported in `unreadable`, and the caller says so (an operator's
 * `QGA_CONF` must never be dropped without a word).
 *
 * @module
 */

/** The variables the agent reads. */
export const AGENT_ENV_NAMES = [
  "QGA_CONF",
  "POSIXLY_CORRECT",
  "QGA_OS_RELEASE",
  "TZ",
  "TZDIR",
  "PATH",
] as const;

/** One of {@link AGENT_ENV_NAMES}. */
export type AgentEnvName = typeof AGENT_ENV_NAMES[number];

/** The agent's view of its environment. */
export interface AgentEnvironment {
  /** The variable's value; undefined when unset (or unreadable: see `unreadable`). */
  get(name: AgentEnvName): string | undefined;
  /** Names that could not be read at all (no grant and no way around it). */
  readonly unreadable: readonly AgentEnvName[];
}

/** An environment from a plain map (tests, and the result of reading). */
export function fixedEnvironment(
  values: Partial<Record<AgentEnvName, string>>,
  unreadable: readonly AgentEnvName[] = [],
): AgentEnvironment {
  const copy = { ...values };
  return { get: (name) => copy[name], unreadable: [...unreadable] };
}

/** The program that prints the inherited environment, NUL-separated. */
export const ENV_PROGRAM = "/usr/bin/env";

/** Parses `env -0` output: `NAME=value\0` entries; the first of duplicates wins (getenv). */
export function parseEnvZero(bytes: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  for (const entry of new TextDecoder().decode(bytes).split("\0")) {
    const eq = entry.indexOf("=");
    if (eq <= 0) continue;
    const name = entry.slice(0, eq);
    if (!out.has(name)) out.set(name, entry.slice(eq + 1));
  }
  return out;
}

function runGrantedForAll(): boolean {
  try {
    return Deno.permissions.querySync({ name: "run" }).state === "granted";
  } catch {
    return false;
  }
}

/** Reads the variables once: by name where granted, else from `env -0` where allowed. */
export async function readAgentEnvironment(): Promise<AgentEnvironment> {
  const values: Partial<Record<AgentEnvName, string>> = {};
  const missing: AgentEnvName[] = [];
  for (const name of AGENT_ENV_NAMES) {
    try {
      const v = Deno.env.get(name);
      if (v !== undefined) values[name] = v;
    } catch (e) {
      if (!(e instanceof Error && e.name === "NotCapable")) throw e;
      missing.push(name);
    }
  }
  if (missing.length === 0 || !runGrantedForAll()) return fixedEnvironment(values, missing);
  try {
    const out = await new Deno.Command(ENV_PROGRAM, {
      args: ["-0"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return fixedEnvironment(values, missing);
    const env = parseEnvZero(out.stdout);
    for (const name of missing) {
      const v = env.get(name);
      if (v !== undefined) values[name] = v;
    }
    return fixedEnvironment(values);
  } catch {
    return fixedEnvironment(values, missing);
  }
}
