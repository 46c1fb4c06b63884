/**
 * What the tests read about the agents they start, from /proc: the agent's pid, its
 * process tree (the helper, guest-exec children), resident memory and descriptors.
 * Needs a test process with --allow-all (Deno opens /proc for nothing less).
 *
 * Every reading of a process the test names throws when that process cannot be read:
 * a bound on memory or descriptors must never pass because the reading was 0.
 *
 * @module
 */

import type { RunningAgent } from "./agents.ts";

/**
 * The pid of the agent process serving `a` (found by its socket path on its command line).
 * Throws when no process, or more than one, has it.
 */
export function agentPid(a: RunningAgent): number {
  const found: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (argv.includes(a.socketPath) && !argv.includes("--print-permissions")) {
        found.push(Number(e.name));
      }
    } catch {
      // Gone.
    }
  }
  if (found.length !== 1) {
    throw new Error(
      `${a.kind} serving ${a.socketPath}: expected one process with that socket on its ` +
        `command line in /proc, found ${found.length} (${found.join(", ")})`,
    );
  }
  return found[0]!;
}

/** The process and its descendants (from /proc/PID/task/TID/children). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const t of Deno.readDirSync(`/proc/${out[i]}/task`)) {
        const kids = Deno.readTextFileSync(`/proc/${out[i]}/task/${t.name}/children`).trim();
        if (kids) out.push(...kids.split(/\s+/).map(Number));
      }
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

/** Resident memory of a process in KiB. Throws when the process is gone or a zombie. */
export function rssKb(pid: number): number {
  const kb = rssKbIfAlive(pid);
  if (kb === undefined) throw new Error(`process ${pid}: no VmRSS in /proc/${pid}/status`);
  return kb;
}

/** Open descriptors of a process. Throws when the process is gone. */
export function fdCount(pid: number): number {
  const n = fdCountIfAlive(pid);
  if (n === undefined) throw new Error(`process ${pid}: /proc/${pid}/fd cannot be listed`);
  return n;
}

function rssKbIfAlive(pid: number): number | undefined {
  if (!(pid > 0)) return undefined;
  try {
    const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

function fdCountIfAlive(pid: number): number | undefined {
  if (!(pid > 0)) return undefined;
  try {
    return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  } catch {
    return undefined;
  }
}

/** Memory and descriptors of a process tree. */
export interface TreeUsage {
  /** VmRSS of every process, KiB. */
  rssKb: number;
  fds: number;
  pids: number[];
}

/**
 * Sums memory and descriptors over `pid` and its descendants. `pid` itself must be
 * readable (else this throws); a descendant (a guest-exec child) that exits between the
 * listing and the read counts 0.
 */
export function treeUsage(pid: number): TreeUsage {
  const rootRss = rssKb(pid);
  const rootFds = fdCount(pid);
  const pids = processTree(pid);
  const rest = pids.slice(1);
  return {
    rssKb: rest.reduce((n, p) => n + (rssKbIfAlive(p) ?? 0), rootRss),
    fds: rest.reduce((n, p) => n + (fdCountIfAlive(p) ?? 0), rootFds),
    pids,
  };
}
