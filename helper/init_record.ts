/**
 * The helper's memory of what its agent said at start-up, so that the agent can let an
 * idle helper exit and start another one later (issue 14) without a compromised agent
 * being able to change the settings on the way.
 *
 * Init (the fsfreeze hook and the channel) is trusted only when the agent sends it
 * before it has read any host input, which is when it starts its first helper. That
 * helper records it in a file of its own, named after the agent process: the boot, the
 * agent's pid and the agent's start time (`/proc/<agent>/stat` field 22), none of which
 * the agent can change. A later helper of the same agent process takes the recorded
 * settings and refuses an Init that differs; a new agent process (a restart) writes its
 * own record. Records live in `<DENO_DIR>/qga-helper-init/`, the helper's cache, which
 * the agent may not write (no grant with file roots; `--deny-write` in the default
 * mode, where Deno also refuses to create symlinks under a path-scoped grant). Records
 * of agent processes that no longer exist are removed when a new one is written.
 *
 * When no record can be kept (no usable DENO_DIR), the helper says so in its Init reply,
 * and the agent keeps that one helper for its life and gives up its grant to start
 * another (the one-launch rule), as it did before helpers could exit.
 *
 * @module
 */

import { OpError } from "./ops.ts";
import type { InitRequest } from "./protocol.ts";

/** The settings Init fixes. */
export type InitSettings = InitRequest;

/** A process as the kernel names it across its life. */
export interface ProcessIdentity {
  bootId: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat: clock ticks after boot when the process started. */
  startTime: string;
}

/** Field 22 of a /proc/<pid>/stat text (the command name may hold spaces and parentheses). */
export function startTimeOf(stat: string): string | undefined {
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const v = rest[19]; // rest[0] is field 3 (state)
  return v !== undefined && /^\d+$/.test(v) ? v : undefined;
}

/** The identity of process `pid`, or undefined when it cannot be read (gone). */
export function identityOf(pid: number): ProcessIdentity | undefined {
  try {
    const bootId = Deno.readTextFileSync("/proc/sys/kernel/random/boot_id").trim();
    const startTime = startTimeOf(Deno.readTextFileSync(`/proc/${pid}/stat`));
    return startTime === undefined ? undefined : { bootId, pid, startTime };
  } catch {
    return undefined;
  }
}

/** The record directory for a cache directory; undefined when there is none to use. */
export function recordDir(denoDir: string | undefined): string | undefined {
  if (!denoDir || !denoDir.startsWith("/") || denoDir.startsWith("/dev/")) return undefined;
  return `${denoDir.replace(/\/+$/, "")}/qga-helper-init`;
}

function recordName(id: ProcessIdentity): string {
  return `${id.bootId.replace(/[^0-9a-f-]/g, "")}.${id.pid}.${id.startTime}.json`;
}

function sameSettings(a: InitSettings, b: InitSettings): boolean {
  return JSON.stringify([a.fsfreezeHook, a.channel?.path ?? null, a.channel?.mode ?? null]) ===
    JSON.stringify([b.fsfreezeHook, b.channel?.path ?? null, b.channel?.mode ?? null]);
}

function readRecord(path: string): InitSettings | undefined {
  try {
    const v = JSON.parse(Deno.readTextFileSync(path)) as InitSettings;
    return { fsfreezeHook: v.fsfreezeHook ?? null, channel: v.channel ?? null };
  } catch {
    return undefined;
  }
}

/** Removes the records of agent processes that are gone (another boot, pid, or start). */
function prune(dir: string, keep: string): void {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(dir)];
  } catch {
    return;
  }
  for (const e of entries) {
    const m = /^([0-9a-f-]+)\.(\d+)\.(\d+)\.json$/.exec(e.name);
    if (!m || e.name === keep) continue;
    const id = identityOf(Number(m[2]));
    if (id && recordName(id) === e.name) continue; // that agent still runs
    try {
      Deno.removeSync(`${dir}/${e.name}`);
    } catch {
      // Removed meanwhile.
    }
  }
}

/**
 * Settles Init for the agent `agent`: the recorded settings when this agent process has
 * a record (a different `requested` is refused), else `requested`, recorded. Returns
 * the settings to use and whether a record backs them.
 */
export function settleInit(
  requested: InitSettings,
  o: { agent: ProcessIdentity | undefined; dir: string | undefined },
): { settings: InitSettings; recorded: boolean } {
  if (!o.agent || !o.dir) return { settings: requested, recorded: false };
  const name = recordName(o.agent);
  const path = `${o.dir}/${name}`;
  const existing = readRecord(path);
  if (existing) {
    if (!sameSettings(existing, requested)) {
      throw new OpError(
        "EPERM",
        "helper refused init: this agent started its helper with other settings",
      );
    }
    return { settings: existing, recorded: true };
  }
  try {
    Deno.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
    Deno.writeTextFileSync(path, JSON.stringify(requested), { createNew: true, mode: 0o600 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return settleInit(requested, o); // raced
    return { settings: requested, recorded: false };
  }
  prune(o.dir, name);
  return { settings: requested, recorded: true };
}
