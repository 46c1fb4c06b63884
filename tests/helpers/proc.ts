/**
 * What the tests read about the agents they start, from /proc: the agent's pid, its
 * process tree (the helper, guest-exec children), resident memory and descriptors.
 * Needs a test process with --allow-all (Deno opens /proc for nothing less).
 *
 * @module
 */

import type { RunningAgent } from "./agents.ts";

/** The pid of the agent process serving `a` (found by its socket path on its command line). */
export function agentPid(a: RunningAgent): number {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (cmd.includes(a.socketPath) && !cmd.includes("--print-permissions")) return Number(e.name);
    } catch {
      // Gone.
    }
  }
  return 0;
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

/** Resident memory of a process in KiB; 0 when it is gone. */
export function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Open descriptors of a process; 0 when it is gone. */
export function fdCount(pid: number): number {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  } catch {
    return 0;
  }
}
