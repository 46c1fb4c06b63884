/**
 * Side-by-side benchmark of deno-qga and the reference qemu-ga on unix sockets
 * on this machine. Both agents are driven by the same client code in the same
 * run; every figure is reported for both with the ratio deno-qga / qemu-ga.
 *
 * ```sh
 * npm run bench                       # everything, writes bench/results/latest.md
 * npm run bench -- --only=ping,read   # a subset (startup,memory,ping,read,write,exec,query,
 *                                     # burst,deployed)
 * npm run bench -- --profile          # deno-qga under --cpu-prof: 1 MiB and 48 MiB read/write
 * ```
 *
 * Options: `--repo=DIR` (the deno-qga checkout to run; default this one),
 * `--size=MiB` (file size, default 256), `--startup-runs=N` (default 10),
 * `--out=FILE` (default bench/results/latest.md; `-` for none), `--rounds=N` (default 3),
 * `--agents=qemu-ga,deno-qga`; with `--profile`: `--profile-dir=DIR` (default bench/profiles,
 * not committed) and `--profile-summary=FILE` (default bench/results/profile_summary.md).
 *
 * Reading /proc (memory of the agents' processes) needs `--allow-all` under Deno,
 * so the benchmark runs with `-A`; the agents themselves run as they would in
 * production (deno-qga with its `--print-permissions` line).
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  agentArgs,
  type AgentKind,
  type BenchAgent,
  connectRetry,
  denoQgaArgv,
  QEMU_GA,
  qemuGaVersion,
  setAgentDenoDir,
  spawnAgent,
  UNIT_ENV,
} from "./agents.ts";
import { BenchConn, request } from "./client.ts";
import {
  type MachineInfo,
  machineInfo,
  treeCpuSeconds,
  type TreeMemory,
  treeMemory,
} from "./proc.ts";
import { summariseFile } from "./profile_summary.ts";
import { type BurstResult, measureBurst } from "./burst.ts";
import {
  type Bounds,
  execTrue,
  fileRead,
  fileWrite,
  pingPipelined,
  pingSerial,
  query,
  type Rate,
  type Throughput,
  WriteRequest,
} from "./workloads.ts";

const MiB = 1024 * 1024;
const KiB = 1024;
const HERE = new URL("./", import.meta.url).pathname;
const REPO = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
/** The command line behind `npm run bench` (package.json "bench"). */
const COMMAND = "./node_modules/.bin/deno run -A bench/bench.ts";
const KINDS: readonly AgentKind[] = ["qemu-ga", "deno-qga"];

/** Chunk sizes per guest-file-read / guest-file-write call. */
const CHUNKS: readonly { label: string; read: number; write: number }[] = [
  { label: "64 KiB", read: 64 * KiB, write: 64 * KiB },
  { label: "1 MiB", read: MiB, write: MiB },
  { label: "16 MiB", read: 16 * MiB, write: 16 * MiB },
  // A 48 MiB write is 64 MiB of base64 plus its quotes: over the 64 MiB JSON
  // token limit of both agents (qga-reference.md §1.2). The largest write that
  // fits is just under it; 48 MiB - 1 KiB leaves room for the rest of the request.
  { label: "48 MiB", read: 48 * MiB, write: 48 * MiB - KiB },
];

/** How a figure is judged. */
interface Target {
  text: string;
  met(deno: number, qemu: number): boolean;
}

/** One row of the results table. */
interface Figure {
  label: string;
  unit: string;
  digits: number;
  values: Partial<Record<AgentKind, number>>;
  notes: Partial<Record<AgentKind, string>>;
  target?: Target;
}

/** Everything a run produced. */
interface Results {
  started: string;
  command: string;
  machine: MachineInfo;
  argv: Partial<Record<AgentKind, readonly string[]>>;
  figures: Figure[];
  /** Work per CPU-second of the agent's processes (calls or MiB), per measure. */
  efficiency: Figure[];
  memory: { phase: string; kind: AgentKind; mem: TreeMemory }[];
  /** An idle deno unix listener with no agent code (bench/idle.ts), for comparison. */
  denoFloor?: TreeMemory;
  startup: Partial<Record<AgentKind, number[]>>;
  /** Start to first reply of bench/idle.ts (the deno runtime's floor), ms per run. */
  floorStartup: number[];
  /** The same for `idle.ts --separated` (the floor of a privilege-separated agent). */
  floorSeparatedStartup: number[];
  /** Memory after a burst of fuzz cases and the quiet after it. */
  burst: Partial<Record<AgentKind, BurstResult>>;
  /** The deployed shape: the bundle on a stdio channel, as the systemd unit starts it. */
  deployed?: {
    argv: readonly string[];
    afterStart: TreeMemory;
    idle: TreeMemory;
    /** Spawn to the first guest-sync reply on stdio, ms per run. */
    startup: number[];
  };
  notes: string[];
  /** /proc/loadavg at the start and the end (other work on the machine skews the figures). */
  load: string[];
}

function ratioAtLeast(r: number): Target {
  return { text: `≥ ${r}× qemu-ga`, met: (d, q) => d / q >= r };
}

function below(limit: number, unit: string, stretch?: number): Target {
  return {
    text: `< ${limit} ${unit}${stretch !== undefined ? ` (stretch < ${stretch})` : ""}`,
    met: (d) => d < limit,
  };
}

/** The quiet period after which the agent counts as idle: past the helper's 30-s idle exit. */
const IDLE_WAIT_MS = 35_000;
/** 60 MB and 45 MB, in MiB. */
const MEMORY_GOAL_MIB = 60e6 / MiB;
const MEMORY_STRETCH_MIB = 45e6 / MiB;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A pseudo-random source file of `size` bytes (random 1 MiB blocks). */
async function makeSource(path: string, size: number): Promise<Uint8Array> {
  const data = new Uint8Array(size);
  const block = new Uint8Array(65536);
  for (let off = 0; off < size; off += block.length) {
    crypto.getRandomValues(block);
    data.set(block.subarray(0, Math.min(block.length, size - off)), off);
  }
  await Deno.writeFile(path, data);
  return data;
}

/** Work dir, data dir and the argv for each agent started in a fresh dir. */
class Lab {
  readonly work: string;
  readonly dataDir: string;
  readonly repo: string;
  #serial = 0;

  constructor(work: string, repo: string) {
    this.work = work;
    this.dataDir = `${work}/data`;
    this.repo = repo;
  }

  /** A fresh dir and the argv to start `kind` in it. */
  async prepare(
    kind: AgentKind,
    denoFlags: readonly string[] = [],
  ): Promise<{ dir: string; argv: string[] }> {
    const dir = `${this.work}/${kind}.${++this.#serial}`;
    await Deno.mkdir(dir);
    const args = agentArgs(kind, dir, this.dataDir);
    const argv = kind === "qemu-ga"
      ? [QEMU_GA, ...args]
      : await denoQgaArgv(this.repo, args, denoFlags);
    return { dir, argv };
  }

  /** Starts `kind`, connects and waits for the first guest-sync reply. */
  async start(
    kind: AgentKind,
    denoFlags: readonly string[] = [],
  ): Promise<{ agent: BenchAgent; conn: BenchConn; ms: number }> {
    const { dir, argv } = await this.prepare(kind, denoFlags);
    const agent = spawnAgent(kind, dir, argv);
    try {
      const conn = BenchConn.from(await connectRetry(agent));
      const id = 4242 + this.#serial;
      const reply = await conn.call(request("guest-sync", { id }));
      const ms = performance.now() - agent.spawnedAt;
      if (reply !== `{"return": ${id}}`) throw new Error(`unexpected guest-sync reply: ${reply}`);
      return { agent, conn, ms };
    } catch (e) {
      await agent.stop();
      throw e;
    }
  }
}

/** Stops an agent and checks it exited 0 on SIGTERM. */
async function stopChecked(
  agent: BenchAgent,
  conn: BenchConn | undefined,
  notes: string[],
): Promise<void> {
  conn?.close();
  const s = await agent.stop();
  if (s.code !== 0) {
    notes.push(`${agent.kind} exited with code ${s.code} (signal ${s.signal}) on SIGTERM`);
  }
}

/**
 * Start to first guest-sync reply, `runs` times per agent and for the deno runtime's floor
 * (bench/idle.ts: `deno run` of a script that only answers guest-sync), alternating, one
 * warm-up each first.
 */
async function measureStartup(lab: Lab, runs: number, res: Results): Promise<void> {
  for (let i = -1; i < runs; i++) {
    for (const kind of i % 2 ? KINDS : [...KINDS].reverse()) {
      const { agent, conn, ms } = await lab.start(kind);
      await stopChecked(agent, conn, res.notes);
      if (i >= 0) (res.startup[kind] ??= []).push(ms);
      await sleep(50);
    }
    for (const separated of [false, true]) {
      const floor = await startFloor(lab, separated);
      const conn = BenchConn.from(await connectRetry(floor));
      const reply = await conn.call(request("guest-sync", { id: 77 }));
      const ms = performance.now() - floor.spawnedAt;
      conn.close();
      await floor.stop();
      if (reply !== `{"return": 77}`) throw new Error(`floor answered ${reply}`);
      if (i >= 0) (separated ? res.floorSeparatedStartup : res.floorStartup).push(ms);
      await sleep(50);
    }
  }
}

/** A workload run against one agent. */
interface Case {
  group: string;
  label: string;
  unit: string;
  digits: number;
  target?: Target;
  /** What `work` counts, for the work-per-CPU-second table (e.g. "MiB"). */
  workUnit?: string;
  /** Runs once against a connection; returns the value to report, the work done and a note. */
  run(conn: BenchConn, kind: AgentKind): Promise<{ value: number; work?: number; note?: string }>;
}

function fromRate(r: Rate): { value: number; work: number; note?: string } {
  return { value: r.perSecond, work: r.calls, ...(r.note ? { note: r.note } : {}) };
}

function fromThroughput(t: Throughput): { value: number; work: number; note: string } {
  return {
    value: t.mibPerSecond,
    work: t.bytes / MiB,
    note: `${t.calls} calls, ${(t.ms / 1000).toFixed(2)} s`,
  };
}

function buildCases(lab: Lab, source: Uint8Array, size: number): Case[] {
  const src = `${lab.dataDir}/source.bin`;
  const serial: Bounds = { maxCalls: 50_000, maxMs: 3000 };
  const slow: Bounds = { maxCalls: 1000, maxMs: 3000 };
  const cases: Case[] = [
    {
      group: "ping",
      label: "guest-ping, one at a time",
      unit: "calls/s",
      workUnit: "calls",
      digits: 0,
      target: ratioAtLeast(1),
      run: async (c) => fromRate(await pingSerial(c, serial)),
    },
    {
      group: "ping",
      label: "guest-ping, pipelined (2,000 per write, 10 writes)",
      unit: "replies/s",
      workUnit: "replies",
      digits: 0,
      target: ratioAtLeast(1),
      run: async (c) => fromRate(await pingPipelined(c, 2000, 10)),
    },
  ];
  for (const ch of CHUNKS) {
    cases.push({
      group: "read",
      label: `guest-file-read, ${ch.label} per call, ${size} MiB file`,
      unit: "MiB/s",
      workUnit: "MiB",
      digits: 1,
      ...(ch.read >= MiB ? { target: ratioAtLeast(2.5) } : {}),
      run: async (c) => {
        const t = await fileRead(c, src, ch.read);
        if (t.bytes !== size * MiB) {
          throw new Error(`read ${t.bytes} bytes, expected ${size * MiB}`);
        }
        return fromThroughput(t);
      },
    });
  }
  for (const ch of CHUNKS) {
    let reqs: { full: WriteRequest; tail: WriteRequest | undefined } | undefined;
    const total = size * MiB;
    cases.push({
      group: "write",
      label: `guest-file-write, ${ch.label}${
        ch.write !== ch.read ? " − 1 KiB" : ""
      } per call, ${size} MiB file`,
      unit: "MiB/s",
      workUnit: "MiB",
      digits: 1,
      ...(ch.write >= MiB ? { target: ratioAtLeast(2.5) } : {}),
      run: async (c, kind) => {
        const chunk = Math.min(ch.write, total);
        reqs ??= {
          full: new WriteRequest(source.subarray(0, chunk)),
          tail: total % chunk ? new WriteRequest(source.subarray(0, total % chunk)) : undefined,
        };
        const out = `${lab.dataDir}/out.${kind}.bin`;
        await Deno.remove(out).catch(() => {});
        const t = await fileWrite(c, out, total, reqs.full, reqs.tail);
        const st = await Deno.stat(out);
        if (st.size !== total) throw new Error(`wrote a ${st.size}-byte file, expected ${total}`);
        const head = new Uint8Array(Math.min(chunk, 4096));
        using f = await Deno.open(out);
        await f.read(head);
        if (!head.every((b, i) => b === source[i])) {
          throw new Error("written data differs from the source");
        }
        await Deno.remove(out);
        return fromThroughput(t);
      },
    });
  }
  cases.push(
    {
      group: "exec",
      label: "guest-exec /usr/bin/true + guest-exec-status until exited",
      unit: "calls/s",
      workUnit: "calls",
      digits: 1,
      run: async (c) => fromRate(await execTrue(c, slow)),
    },
    {
      group: "query",
      label: "guest-get-fsinfo",
      unit: "calls/s",
      workUnit: "calls",
      digits: 1,
      target: ratioAtLeast(0.5),
      run: async (c) => fromRate(await query(c, "guest-get-fsinfo", slow)),
    },
    {
      group: "query",
      label: "guest-network-get-interfaces",
      unit: "calls/s",
      workUnit: "calls",
      digits: 1,
      target: ratioAtLeast(0.5),
      run: async (c) => fromRate(await query(c, "guest-network-get-interfaces", slow)),
    },
  );
  return cases;
}

/** Checks once, untimed, that a read returns the file's bytes. */
async function checkRead(
  conn: BenchConn,
  path: string,
  source: Uint8Array,
): Promise<string | undefined> {
  try {
    const h = await conn.exec("guest-file-open", { path, mode: "r" }) as number;
    const r = await conn.exec("guest-file-read", { handle: h, count: 65536 }) as {
      "buf-b64": string;
    };
    await conn.exec("guest-file-close", { handle: h });
    const got = Uint8Array.fromBase64(r["buf-b64"]);
    return got.every((b, i) => b === source[i]) && got.length === 65536
      ? undefined
      : "read data differs";
  } catch (e) {
    return (e as Error).message;
  }
}

function loadavg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

function fmt(v: number | undefined, digits: number): string {
  if (v === undefined) return "n/a";
  return v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function kib(v: number): string {
  return `${(v / 1024).toFixed(1)} MiB`;
}

/** The results as markdown. */
function markdown(res: Results): string {
  const m = res.machine;
  const out: string[] = [];
  out.push("# deno-qga vs qemu-ga: benchmark results", "");
  out.push(
    `Run ${res.started}, command (from the repository root):`,
    "",
    "```sh",
    res.command,
    "```",
    "",
  );
  out.push(
    `Machine: ${m.nproc} CPUs (${m.cpuModel}), Linux ${m.kernel}, ${m.memTotalMiB} MiB RAM; ` +
      `deno ${m.deno}; reference ${m.qemuGa}. Load average (1, 5, 15 min) at the start ${
        res.load[0]
      }, ` +
      `at the end ${res.load[1] ?? "?"}: other work on the machine skews the figures.`,
    "",
  );
  out.push("| measure | qemu-ga | deno-qga | deno-qga / qemu-ga | target | met |");
  out.push("|---|---:|---:|---:|---|---|");
  for (const f of res.figures) {
    const q = f.values["qemu-ga"];
    const d = f.values["deno-qga"];
    const ratio = q !== undefined && d !== undefined && q !== 0 ? `${(d / q).toFixed(2)}×` : "n/a";
    // A row of deno-qga alone (the deployed shape) is judged on its own value.
    const met = f.target && d !== undefined && (q !== undefined || !("qemu-ga" in f.values))
      ? (f.target.met(d, q ?? NaN) ? "yes" : "**no**")
      : "";
    out.push(
      `| ${f.label} (${f.unit}) | ${fmt(q, f.digits)} | ${fmt(d, f.digits)} | ${ratio} | ${
        f.target?.text ?? ""
      } | ${met} |`,
    );
  }
  if (res.efficiency.length) {
    out.push(
      "",
      "Work per CPU-second of the agent's own processes (utime + stime of the agent, its helper and " +
        "reaped children, from /proc/<pid>/stat): less sensitive than wall-clock rates to other load " +
        "on the machine, and blind to time spent waiting.",
      "",
      "| measure | qemu-ga | deno-qga | deno-qga / qemu-ga |",
      "|---|---:|---:|---:|",
    );
    for (const f of res.efficiency) {
      const q = f.values["qemu-ga"];
      const d = f.values["deno-qga"];
      const ratio = q !== undefined && d !== undefined && q !== 0
        ? `${(d / q).toFixed(2)}×`
        : "n/a";
      out.push(
        `| ${f.label} (${f.unit} per CPU-s) | ${fmt(q, f.digits)} | ${
          fmt(d, f.digits)
        } | ${ratio} |`,
      );
    }
  }
  out.push("", "Notes per measure:", "");
  for (const f of res.figures) {
    const parts = KINDS.filter((k) => f.notes[k]).map((k) => `${k}: ${f.notes[k]}`);
    if (parts.length) out.push(`- ${f.label}: ${parts.join("; ")}`);
  }
  if (res.startup["qemu-ga"] || res.startup["deno-qga"]) {
    out.push("", "Start to first reply, every run (ms):", "");
    for (const k of KINDS) {
      const xs = res.startup[k];
      if (xs) {
        out.push(
          `- ${k}: ${xs.map((x) => x.toFixed(1)).join(", ")} (min ${
            Math.min(...xs).toFixed(1)
          }, max ${Math.max(...xs).toFixed(1)})`,
        );
      }
    }
    for (
      const [name, xs] of [
        ["deno runtime floor (idle.ts)", res.floorStartup],
        ["privilege-separated floor (idle.ts --separated)", res.floorSeparatedStartup],
      ] as const
    ) {
      if (xs.length) out.push(`- ${name}: ${xs.map((x) => x.toFixed(1)).join(", ")}`);
    }
  }
  if (res.memory.length) {
    out.push(
      "",
      "Memory per process (VmRSS = RssAnon + RssFile + RssShmem; PSS from smaps_rollup):",
      "",
    );
    out.push(
      "| phase | agent | process | pid | VmRSS | RssAnon | RssFile | PSS | peak VmHWM | threads |",
    );
    out.push("|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    const rows = [...res.memory];
    if (res.denoFloor) {
      rows.push({ phase: "idle", kind: "deno runtime floor" as AgentKind, mem: res.denoFloor });
    }
    for (const { phase, kind, mem } of rows) {
      for (const p of mem.processes) {
        out.push(
          `| ${phase} | ${kind} | ${p.name} | ${p.pid} | ${kib(p.vmRss)} | ${kib(p.rssAnon)} | ${
            kib(p.rssFile)
          } | ${p.pss === undefined ? "n/a" : kib(p.pss)} | ${kib(p.vmHwm)} | ${p.threads} |`,
        );
      }
    }
  }
  out.push("", "Agent command lines:", "");
  for (const k of KINDS) if (res.argv[k]) out.push(`- ${k}: \`${res.argv[k]!.join(" ")}\``);
  if (res.notes.length) {
    out.push("", "Run notes:", "");
    for (const n of res.notes) out.push(`- ${n}`);
  }
  out.push("");
  return out.join("\n");
}

/** The start-up and memory rows for the table. */
function startupAndMemoryFigures(res: Results): void {
  const q = res.startup["qemu-ga"];
  const d = res.startup["deno-qga"];
  if (q && d) {
    const floor = res.floorStartup.length ? median(res.floorStartup) : undefined;
    res.figures.push({
      label: `start to first guest-sync reply, main.ts, median of ${d.length}`,
      unit: "ms",
      digits: 1,
      values: { "qemu-ga": median(q), "deno-qga": median(d) },
      notes: floor === undefined ? {} : {
        "deno-qga":
          `main.ts, the development entry point (its TypeScript modules loaded one by one); issue 14's start-up goal is judged on the deployed shape below, the bundle the package and install.sh run in every guest. The deno runtime's floor (bench/idle.ts answering guest-sync): ${
            floor.toFixed(1)
          } ms median (2× is ${(2 * floor).toFixed(1)} ms); main.ts is ${
            (median(d) / floor).toFixed(2)
          }× the floor` +
          (res.floorSeparatedStartup.length
            ? `. The floor of a privilege-separated agent (bench/idle.ts --separated: it spawns a second deno process with piped stdin and stdout and writes it one line before its first read, as deno-qga does with its helper): ${
              median(res.floorSeparatedStartup).toFixed(1)
            } ms median; deno-qga is ${
              (median(d) / median(res.floorSeparatedStartup)).toFixed(2)
            }× that`
            : ""),
      },
    });
  }
  const byPhase = (phase: string, kind: AgentKind) =>
    res.memory.find((m) => m.phase === phase && m.kind === kind)?.mem;
  const phases: [string, string, ((mem: TreeMemory) => number), Target | undefined][] = [
    [
      "start",
      "memory 1 s after start, VmRSS summed over all agent processes",
      (m) => m.vmRss,
      undefined,
    ],
    [
      "idle",
      `memory idle (${
        IDLE_WAIT_MS / 1000
      } s without a request), VmRSS summed over all agent processes`,
      (m) => m.vmRss,
      below(
        Number(MEMORY_GOAL_MIB.toFixed(1)),
        "MiB (60 MB)",
        Number(MEMORY_STRETCH_MIB.toFixed(1)),
      ),
    ],
    [
      "idle",
      `memory idle (${
        IDLE_WAIT_MS / 1000
      } s without a request), PSS summed over all agent processes`,
      (m) => m.pss,
      undefined,
    ],
    ["after", "memory after the throughput runs, VmRSS summed", (m) => m.vmRss, undefined],
    ["after", "peak memory during the runs, VmHWM summed", (m) => m.vmHwm, undefined],
  ];
  for (const [phase, label, pick, target] of phases) {
    const q = byPhase(phase, "qemu-ga");
    const d = byPhase(phase, "deno-qga");
    if (!q && !d) continue;
    const procs = (m: TreeMemory | undefined) =>
      m
        ? `${m.processes.length} process(es): ${m.processes.map((p) => p.name).join(", ")}`
        : undefined;
    res.figures.push({
      label,
      unit: "MiB",
      digits: 1,
      values: {
        ...(q ? { "qemu-ga": pick(q) / 1024 } : {}),
        ...(d ? { "deno-qga": pick(d) / 1024 } : {}),
      },
      notes: { ...(q ? { "qemu-ga": procs(q)! } : {}), ...(d ? { "deno-qga": procs(d)! } : {}) },
      ...(target ? { target } : {}),
    });
  }
}

let floorSerial = 0;

/**
 * Starts bench/idle.ts (the deno runtime's floor) in a fresh dir; `separated`: with
 * `--separated` (a second deno process spawned and written to before the first read).
 */
async function startFloor(lab: Lab, separated = false): Promise<BenchAgent> {
  const dir = `${lab.work}/floor.${++floorSerial}`;
  await Deno.mkdir(dir);
  const sock = `${dir}/sock`;
  const deno = `${lab.repo}/node_modules/.bin/deno`;
  const real = await Deno.realPath(deno);
  const argv = [
    deno,
    "run",
    "--no-prompt",
    "--no-config",
    `--allow-read=${dir}`,
    `--allow-write=${dir}`,
    `--allow-net=unix:${sock}`,
    ...(separated ? [`--allow-run=${real}`] : []),
    `${HERE}idle.ts`,
    sock,
    ...(separated ? [`--separated=${real}`] : []),
  ];
  return spawnAgent("deno-qga", dir, argv);
}

/** The burst and deployed-shape rows. */
function burstAndDeployedFigures(res: Results): void {
  const bq = res.burst["qemu-ga"];
  const bd = res.burst["deno-qga"];
  if (bq || bd) {
    const mib = (kb: number | undefined) => kb === undefined ? undefined : kb / 1024;
    const row = (label: string, pick: (b: BurstResult) => number, target?: Target) =>
      res.figures.push({
        label,
        unit: "MiB",
        digits: 1,
        values: {
          ...(bq ? { "qemu-ga": mib(pick(bq))! } : {}),
          ...(bd ? { "deno-qga": mib(pick(bd))! } : {}),
        },
        notes: Object.fromEntries(
          ([["qemu-ga", bq], ["deno-qga", bd]] as const).filter(([, b]) => b).map(([k, b]) => [
            k,
            `${b!.cases} cases in ${b!.seconds.toFixed(1)} s; idle ${
              mib(b!.beforeKb)!.toFixed(1)
            } MiB, ` +
            `right after ${mib(b!.afterKb)!.toFixed(1)} MiB, then every 5 s: ${
              b!.series.map(([, kb]) => mib(kb)!.toFixed(0)).join(", ")
            } MiB`,
          ]),
        ),
        ...(target ? { target } : {}),
      });
    row(
      `RSS right after a burst of ${BURST_CASES.toLocaleString("en-US")} fuzz cases`,
      (b) => b.afterKb,
    );
    row(
      "RSS after 60 s of quiet following the burst",
      (b) => b.settledKb,
      bd
        ? {
          text: `< 1.5× deno-qga's idle before the burst (${
            (1.5 * bd.beforeKb / 1024).toFixed(1)
          } MiB)`,
          met: (dv: number) => dv < 1.5 * bd.beforeKb / 1024,
        }
        : undefined,
    );
  }
  const dep = res.deployed;
  if (dep) {
    const procs = (m: TreeMemory) =>
      `${m.processes.length} process(es): ${m.processes.map((p) => p.name).join(", ")}`;
    const floor = res.floorStartup.length ? median(res.floorStartup) : undefined;
    res.figures.push({
      label:
        `deployed shape (bundle, stdio channel), start to first guest-sync reply, median of ${dep.startup.length}`,
      unit: "ms",
      digits: 1,
      values: { "deno-qga": median(dep.startup) },
      notes: {
        "deno-qga": `every run: ${dep.startup.map((x) => x.toFixed(1)).join(", ")} ms` +
          (floor === undefined
            ? ""
            : `; ${
              (median(dep.startup) / floor).toFixed(2)
            }× the deno floor measured on a unix socket (${floor.toFixed(1)} ms)`),
      },
      ...(floor === undefined ? {} : {
        target: {
          text: `≤ 2× the deno floor (${(2 * floor).toFixed(0)} ms; stretch 1.5×)`,
          met: (dv: number) => dv <= 2 * floor,
        },
      }),
    }, {
      label: "deployed shape (bundle, stdio channel), VmRSS 1 s after start",
      unit: "MiB",
      digits: 1,
      values: { "deno-qga": dep.afterStart.vmRss / 1024 },
      notes: { "deno-qga": procs(dep.afterStart) },
    }, {
      label: `deployed shape (bundle, stdio channel), VmRSS idle (${IDLE_WAIT_MS / 1000} s)`,
      unit: "MiB",
      digits: 1,
      values: { "deno-qga": dep.idle.vmRss / 1024 },
      notes: { "deno-qga": procs(dep.idle) },
      target: below(
        Number(MEMORY_GOAL_MIB.toFixed(1)),
        "MiB (60 MB)",
        Number(MEMORY_STRETCH_MIB.toFixed(1)),
      ),
    });
  }
}

/** Memory of bench/idle.ts (an idle deno unix listener) 1 s after it listens. */
async function denoFloor(lab: Lab): Promise<TreeMemory | undefined> {
  const agent = await startFloor(lab);
  try {
    (await connectRetry(agent)).close();
    await sleep(1000);
    return treeMemory(agent.pid);
  } catch {
    return undefined;
  } finally {
    await agent.stop();
  }
}

/** Untimed traffic before the measurements. */
async function warmUp(
  conn: BenchConn,
  lab: Lab,
  source: Uint8Array,
  kind: AgentKind,
): Promise<void> {
  await pingSerial(conn, { maxCalls: 3000, maxMs: 500 });
  await pingPipelined(conn, 2000, 1);
  const path = `${lab.dataDir}/warm.${kind}.bin`;
  const chunk = Math.min(MiB, source.length);
  try {
    await fileWrite(conn, path, chunk * 8, new WriteRequest(source.subarray(0, chunk)), undefined);
    await fileRead(conn, path, chunk);
  } catch {
    // The file commands may be absent; the measurement reports that.
  }
  await Deno.remove(path).catch(() => {});
}

async function runAll(
  lab: Lab,
  opts: {
    size: number;
    startupRuns: number;
    rounds: number;
    only: Set<string>;
    kinds: readonly AgentKind[];
  },
  res: Results,
): Promise<void> {
  const kinds = opts.kinds;
  const want = (g: string) => opts.only.size === 0 || opts.only.has(g);
  const source = await makeSource(`${lab.dataDir}/source.bin`, opts.size * MiB);
  if (want("startup")) await measureStartup(lab, opts.startupRuns, res);

  const running = new Map<AgentKind, { agent: BenchAgent; conn: BenchConn }>();
  try {
    for (const kind of kinds) {
      const { agent, conn } = await lab.start(kind);
      running.set(kind, { agent, conn });
      res.argv[kind] = agent.argv;
    }
    const started = performance.now();
    await sleep(1000);
    for (const kind of kinds) {
      res.memory.push({ phase: "start", kind, mem: treeMemory(running.get(kind)!.agent.pid) });
    }
    const floor = await denoFloor(lab);
    if (floor) res.denoFloor = floor;
    if (want("memory")) {
      await sleep(started + IDLE_WAIT_MS - performance.now());
      for (const kind of kinds) {
        res.memory.push({ phase: "idle", kind, mem: treeMemory(running.get(kind)!.agent.pid) });
      }
    }

    for (const kind of kinds) {
      const problem = await checkRead(running.get(kind)!.conn, `${lab.dataDir}/source.bin`, source);
      if (problem) res.notes.push(`${kind}: read check failed: ${problem}`);
    }

    // Warm-up, untimed: the client's JIT and deno-qga's hot paths (qemu-ga gets the same traffic).
    for (const kind of kinds) await warmUp(running.get(kind)!.conn, lab, source, kind);

    const cases = buildCases(lab, source, opts.size).filter((c) => want(c.group));
    for (const c of cases) {
      const fig: Figure = {
        label: c.label,
        unit: c.unit,
        digits: c.digits,
        values: {},
        notes: {},
        ...(c.target ? { target: c.target } : {}),
      };
      const got: Record<AgentKind, number[]> = { "qemu-ga": [], "deno-qga": [] };
      const notes: Partial<Record<AgentKind, string>> = {};
      const work: Record<AgentKind, number[]> = { "qemu-ga": [], "deno-qga": [] };
      for (let round = 0; round < opts.rounds; round++) {
        // Alternate which agent goes first.
        for (const kind of round % 2 ? [...kinds].reverse() : kinds) {
          if (notes[kind]?.startsWith("not measured")) continue;
          const { conn } = running.get(kind)!;
          try {
            const cpu0 = treeCpuSeconds(running.get(kind)!.agent.pid);
            const r = await c.run(conn, kind);
            const cpu = treeCpuSeconds(running.get(kind)!.agent.pid) - cpu0;
            if (r.work !== undefined && cpu > 0) work[kind].push(r.work / cpu);
            got[kind].push(r.value);
            if (r.note) notes[kind] = r.note;
            console.error(
              `${c.label} [${kind}] round ${round + 1}: ${fmt(r.value, c.digits)} ${c.unit} ${
                r.note ?? ""
              }`,
            );
          } catch (e) {
            notes[kind] = `not measured: ${(e as Error).message}`;
            console.error(`${c.label} [${kind}]: ${notes[kind]}`);
          }
        }
      }
      for (const kind of kinds) {
        const xs = got[kind];
        if (xs.length) fig.values[kind] = median(xs);
        const spread = xs.length > 1
          ? `median of ${xs.length} rounds (${xs.map((x) => fmt(x, c.digits)).join(", ")})`
          : "";
        const note = [spread, notes[kind]].filter((x) => x).join("; last round ");
        if (note) fig.notes[kind] = note;
      }
      res.figures.push(fig);
      if (c.workUnit) {
        res.efficiency.push({
          label: c.label,
          unit: c.workUnit,
          digits: c.digits,
          values: Object.fromEntries(
            kinds.filter((k) => work[k].length).map((k) => [k, median(work[k])]),
          ),
          notes: {},
        });
      }
    }
    await sleep(1000);
    for (const kind of kinds) {
      res.memory.push({ phase: "after", kind, mem: treeMemory(running.get(kind)!.agent.pid) });
    }
  } finally {
    for (const { agent, conn } of running.values()) await stopChecked(agent, conn, res.notes);
  }
  if (want("burst")) {
    for (const kind of kinds) {
      // A fresh agent per kind, idle first, so the burst starts from the idle figure.
      const { agent, conn } = await lab.start(kind);
      try {
        conn.close();
        await sleep(IDLE_WAIT_MS);
        res.burst[kind] = await measureBurst(agent.socketPath, agent.pid, {
          count: BURST_CASES,
          seed: BURST_SEED,
          quietMs: 60_000,
        });
        console.error(`burst [${kind}]: ${JSON.stringify(res.burst[kind])}`);
      } catch (e) {
        res.notes.push(`${kind}: burst not measured: ${(e as Error).message}`);
      } finally {
        await stopChecked(agent, undefined, res.notes);
      }
    }
  }
  if (want("deployed") && kinds.includes("deno-qga")) {
    try {
      res.deployed = await deployedIdle(lab, opts.startupRuns);
    } catch (e) {
      res.notes.push(`deployed shape not measured: ${(e as Error).message}`);
    }
  }
  startupAndMemoryFigures(res);
  burstAndDeployedFigures(res);
}

/** The burst of issue 14: 24,000 fuzz cases. */
const BURST_CASES = 24_000;
const BURST_SEED = 20261206;

/**
 * The deployed shape: the bundle (scripts/bundle.sh) started with the line its
 * `--print-permissions` prints for `-m stdio`, its stdin and stdout one pipe pair as the
 * systemd unit hands it the port, its helper launched as in the package (with the
 * unit's CacheDirectory, /var/cache/deno-qga, which is made for the run when missing).
 */
async function deployedIdle(
  lab: Lab,
  startupRuns: number,
): Promise<NonNullable<Results["deployed"]>> {
  const out = `${lab.work}/bundle`;
  const b = await new Deno.Command("sh", {
    args: ["scripts/bundle.sh", "--out", out],
    cwd: lab.repo,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!b.success) throw new Error(`bundle.sh failed: ${new TextDecoder().decode(b.stderr)}`);
  const state = `${lab.work}/deployed`;
  await Deno.mkdir(state);
  const cache = "/var/cache/deno-qga";
  const madeCache = await Deno.stat(cache).then(() => false, async () => {
    await Deno.mkdir(cache, { mode: 0o700 });
    return true;
  });
  const deno = `${out}/deno`;
  const agentJs = `${out}/deno-qga.js`;
  const printed = await new Deno.Command(deno, {
    args: [
      "run",
      "--no-prompt",
      "--no-config",
      "--allow-read",
      "--allow-env",
      agentJs,
      "--print-permissions",
      "-m",
      "stdio",
      "-t",
      state,
    ],
    stdout: "piped",
  }).output();
  const argv = new TextDecoder().decode(printed.stdout).trim().split(" ");
  if (!argv.includes("run") || argv.includes("--allow-all")) {
    throw new Error(`unexpected --print-permissions line: ${argv.join(" ")}`);
  }
  const spawn = () =>
    new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      cwd: "/",
      // The unit's environment (packaging/deno-qga.service.in), nothing else.
      clearEnv: true,
      env: {
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        DENO_DIR: cache,
        DENO_NO_UPDATE_CHECK: "1",
        NO_COLOR: "1",
        ...UNIT_ENV,
      },
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn();
  /** Spawns, sends guest-sync at once (it waits in the pipe), reads the reply: ms. */
  const synced = async (
    child: Deno.ChildProcess,
    w: WritableStreamDefaultWriter<Uint8Array>,
    r: ReadableStreamDefaultReader<Uint8Array>,
    spawnedAt: number,
  ) => {
    await w.write(new TextEncoder().encode('{"execute":"guest-sync","arguments":{"id":5}}\n'));
    const { value } = await r.read();
    if (!new TextDecoder().decode(value).includes('"return": 5')) {
      throw new Error(`the deployed agent (pid ${child.pid}) did not answer guest-sync`);
    }
    return performance.now() - spawnedAt;
  };
  // Start-up: one warm-up, then `startupRuns` runs, each stopped after its reply.
  const startup: number[] = [];
  for (let i = -1; i < startupRuns; i++) {
    const t = performance.now();
    const c = spawn();
    try {
      const ms = await synced(c, c.stdin.getWriter(), c.stdout.getReader(), t);
      if (i >= 0) startup.push(ms);
    } finally {
      c.kill("SIGTERM");
      await c.status;
    }
    await sleep(50);
  }
  const child = spawn();
  try {
    const w = child.stdin.getWriter();
    const r = child.stdout.getReader();
    await synced(child, w, r, performance.now());
    const t0 = performance.now();
    await sleep(1000);
    const afterStart = treeMemory(child.pid);
    await sleep(t0 + IDLE_WAIT_MS - performance.now());
    const idle = treeMemory(child.pid);
    await w.close();
    r.releaseLock();
    return { argv, afterStart, idle, startup };
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // exited
    }
    await child.status;
    if (madeCache) await Deno.remove(cache, { recursive: true }).catch(() => {});
  }
}

/** deno-qga under --cpu-prof for the 1 MiB and 48 MiB read and write cases. */
async function runProfiles(lab: Lab, size: number, profDir: string): Promise<string> {
  const source = await makeSource(`${lab.dataDir}/source.bin`, size * MiB);
  const all = buildCases(lab, source, size);
  const picked = all.filter((c) =>
    ((c.group === "read" || c.group === "write") && /, (1|48) MiB/.test(c.label)) ||
    c.label === "guest-ping, one at a time" || c.group === "query"
  );
  await Deno.mkdir(profDir, { recursive: true });
  const sections: string[] = [];
  for (const c of picked) {
    const chunk = /, (1|48) MiB/.exec(c.label)?.[1];
    const name = chunk
      ? `${c.group}-${chunk}MiB`
      : c.group === "query"
      ? c.label.replace(/^guest-/, "")
      : `${c.group}-serial`;
    const dir = `${lab.work}/prof.${name}`;
    await Deno.mkdir(dir);
    const { agent, conn } = await lab.start("deno-qga", ["--cpu-prof", `--cpu-prof-dir=${dir}`]);
    let value: number;
    try {
      value = (await c.run(conn, "deno-qga")).value;
    } finally {
      conn.close();
      await agent.stop();
    }
    const files = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".cpuprofile"));
    if (files.length !== 1) {
      throw new Error(`expected one profile in ${dir}, found ${files.length}`);
    }
    const target = `${profDir}/${name}.cpuprofile`;
    await Deno.rename(`${dir}/${files[0]!.name}`, target);
    console.error(`${c.label}: ${value.toFixed(1)} ${c.unit} under --cpu-prof -> ${target}`);
    sections.push(`${c.label}: ${value.toFixed(1)} ${c.unit} while profiled.\n`);
    sections.push(await summariseFile(target, lab.repo));
  }
  return sections.join("\n");
}

/** Runs `deno fmt` on a written file so the repository's `deno fmt --check` stays clean. */
export async function formatMarkdown(path: string): Promise<void> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", path],
    cwd: REPO,
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) console.error(`deno fmt ${path}: ${new TextDecoder().decode(out.stderr)}`);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      repo: { type: "string", default: REPO },
      size: { type: "string", default: "256" },
      "startup-runs": { type: "string", default: "10" },
      rounds: { type: "string", default: "3" },
      agents: { type: "string", default: KINDS.join(",") },
      only: { type: "string", default: "" },
      out: { type: "string", default: `${HERE}results/latest.md` },
      profile: { type: "boolean", default: false },
      "profile-dir": { type: "string", default: `${HERE}profiles` },
      "profile-summary": { type: "string", default: `${HERE}results/profile_summary.md` },
    },
  });
  const size = Number(values.size);
  const work = await Deno.makeTempDir({ prefix: "qga-bench." });
  await Deno.mkdir(`${work}/data`);
  const lab = new Lab(work, values.repo.replace(/\/$/, ""));
  setAgentDenoDir(`${work}/deno_dir`);
  try {
    if (values.profile) {
      const md = await runProfiles(lab, size, values["profile-dir"]);
      // bench/profiles/ (the .cpuprofile files) is not committed; the summary is.
      const path = values["profile-summary"];
      await Deno.writeTextFile(
        path,
        `# CPU profile summary (deno-qga, ${size} MiB file)\n\nCommand: \`${COMMAND} ${
          Deno.args.join(" ")
        }\`\n\n${md}`,
      );
      await formatMarkdown(path);
      console.log(md);
      console.error(`wrote ${path}`);
      return 0;
    }
    const res: Results = {
      started: new Date().toISOString(),
      command: `${COMMAND}${Deno.args.length ? " " + Deno.args.join(" ") : ""}`,
      machine: machineInfo(await qemuGaVersion()),
      argv: {},
      figures: [],
      efficiency: [],
      memory: [],
      startup: {},
      floorStartup: [],
      floorSeparatedStartup: [],
      burst: {},
      notes: [],
      load: [loadavg()],
    };
    if (lab.repo !== REPO) res.notes.push(`deno-qga run from the checkout ${lab.repo}`);
    const only = new Set(values.only.split(",").filter((s) => s !== ""));
    await runAll(lab, {
      size,
      startupRuns: Number(values["startup-runs"]),
      rounds: Number(values.rounds),
      only,
      kinds: KINDS.filter((k) => values.agents.split(",").includes(k)),
    }, res);
    res.load.push(loadavg());
    const md = markdown(res);
    console.log(md);
    if (values.out !== "-") {
      await Deno.mkdir(values.out.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeTextFile(values.out, md);
      await Deno.writeTextFile(
        values.out.replace(/\.md$/, ".json"),
        JSON.stringify(res, (_k, v) => (typeof v === "function" ? undefined : v), 2) + "\n",
      );
      await formatMarkdown(values.out);
      console.error(`wrote ${values.out}`);
    }
    return 0;
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) Deno.exit(await main());
