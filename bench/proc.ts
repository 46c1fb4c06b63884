/**
 * What /proc says about the machine and about an agent's processes: the process
 * tree under a pid (the agent, its privileged helper and the helper's children)
 * and the resident memory of each, summed. Reading /proc needs `--allow-all`
 * under Deno (deno-facts.md §1), so the benchmark runs with `-A`.
 *
 * @module
 */

/** Memory of one process, in KiB, from /proc/<pid>/status and smaps_rollup. */
export interface ProcMemory {
  pid: number;
  /** The process name (`Name:` in status), with the script it runs when it is deno. */
  name: string;
  vmRss: number;
  /** Peak resident set size (VmHWM). */
  vmHwm: number;
  rssAnon: number;
  rssFile: number;
  rssShmem: number;
  /** Proportional set size; undefined when smaps_rollup is unreadable. */
  pss: number | undefined;
  threads: number;
}

/** Memory of a whole agent: every process of its tree, and the sums. */
export interface TreeMemory {
  processes: ProcMemory[];
  /** Sum of VmRSS over the tree, KiB. */
  vmRss: number;
  /** Sum of PSS over the tree, KiB (processes without PSS count their RSS). */
  pss: number;
  /** Sum of VmHWM (peak RSS) over the tree, KiB. */
  vmHwm: number;
}

function statusField(text: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

/** Parent pid of every live process (field 4 of /proc/<pid>/stat, after the comm). */
export function parentMap(): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(Number(e.name), Number(rest[1]));
    } catch {
      // The process exited while we looked.
    }
  }
  return out;
}

/** `root` and all its descendants, root first. */
export function processTree(root: number): number[] {
  const parents = parentMap();
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, ppid] of parents) {
      if (ppid === tree[i] && !tree.includes(pid)) tree.push(pid);
    }
  }
  return tree;
}

/** Memory of one process; undefined when it is gone. */
export function processMemory(pid: number): ProcMemory | undefined {
  let status: string;
  try {
    status = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  let pss: number | undefined;
  try {
    pss = statusField(Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`), "Pss");
  } catch {
    pss = undefined;
  }
  let name = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? "?";
  try {
    const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
    const script = argv.find((a) => a.endsWith(".ts") || a.endsWith(".js"));
    if (script) name += ` ${script.split("/").slice(-2).join("/")}`;
  } catch {
    // Gone, or unreadable: the bare name will do.
  }
  return {
    pid,
    name,
    vmRss: statusField(status, "VmRSS"),
    vmHwm: statusField(status, "VmHWM"),
    rssAnon: statusField(status, "RssAnon"),
    rssFile: statusField(status, "RssFile"),
    rssShmem: statusField(status, "RssShmem"),
    pss,
    threads: statusField(status, "Threads"),
  };
}

/** Memory of `root` and every descendant, summed. */
export function treeMemory(root: number): TreeMemory {
  const processes = processTree(root).map(processMemory).filter((m): m is ProcMemory => !!m);
  return {
    processes,
    vmRss: processes.reduce((a, p) => a + p.vmRss, 0),
    pss: processes.reduce((a, p) => a + (p.pss ?? p.vmRss), 0),
    vmHwm: processes.reduce((a, p) => a + p.vmHwm, 0),
  };
}

/**
 * CPU time used so far by `root` and its descendants, in seconds: utime + stime
 * of each live process plus cutime + cstime (its reaped children, such as the
 * programs guest-exec ran), from /proc/<pid>/stat in clock ticks of 1/100 s.
 */
export function treeCpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of processTree(root)) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // Fields 14-17 (utime, stime, cutime, cstime) are f[11..14] after the comm.
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // Exited meanwhile.
    }
  }
  return ticks / 100;
}

/** The machine a run happened on. */
export interface MachineInfo {
  nproc: number;
  cpuModel: string;
  kernel: string;
  memTotalMiB: number;
  deno: string;
  qemuGa: string;
}

/** Reads nproc, CPU model, kernel and memory; `qemuGaVersion` comes from `qemu-ga -V`. */
export function machineInfo(qemuGaVersion: string): MachineInfo {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const meminfo = Deno.readTextFileSync("/proc/meminfo");
  const procs = cpuinfo.match(/^processor\s*:/gm)?.length ?? navigator.hardwareConcurrency;
  return {
    nproc: procs,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown",
    kernel: Deno.osRelease(),
    memTotalMiB: Math.round(statusField(meminfo, "MemTotal") / 1024),
    deno: Deno.version.deno,
    qemuGa: qemuGaVersion,
  };
}
