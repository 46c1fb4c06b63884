/**
 * Starts the two agents for the benchmark on unix sockets: the reference
 * `/usr/sbin/qemu-ga -m unix-listen -p SOCK -t STATEDIR`, and deno-qga with the
 * exact least-privilege `deno run ...` line its `--print-permissions` prints for
 * the same options plus `--file-roots=DATADIR --exec-programs=/usr/bin/true`.
 *
 * The approach follows tests/helpers/agents.ts (shellSplit is reused from there);
 * this module adds what the benchmark needs: a configurable checkout, extra deno
 * flags (`--cpu-prof`), stderr drained into a small tail, and start without the
 * probing connect (the start-up measurement does its own connect-retry).
 *
 * @module
 */

import { shellSplit } from "../tests/helpers/agents.ts";

/** Which implementation. */
export type AgentKind = "qemu-ga" | "deno-qga";

/** Path of the reference binary. */
export const QEMU_GA = "/usr/sbin/qemu-ga";

/** Options of {@link spawnAgent}. */
export interface SpawnOptions {
  /** The deno-qga checkout (holds main.ts and node_modules/.bin/deno). */
  repo: string;
  /** Directory the file commands may use (deno-qga's --file-roots). */
  dataDir: string;
  /** Flags inserted after `deno run` (deno-qga only), e.g. `--cpu-prof`. */
  denoFlags?: readonly string[];
}

/** A running agent process. */
export interface BenchAgent extends AsyncDisposable {
  readonly kind: AgentKind;
  readonly pid: number;
  /** Its own dir: cwd, state dir, home of the socket. */
  readonly dir: string;
  readonly socketPath: string;
  readonly argv: readonly string[];
  /** Monotonic time (performance.now()) just before spawn. */
  readonly spawnedAt: number;
  /** The last 64 KiB of stderr. */
  stderr(): string;
  /** Status once exited. */
  exited(): Deno.CommandStatus | undefined;
  /** SIGTERM (repeated), SIGKILL after 10 s; removes the dir. Idempotent. */
  stop(): Promise<Deno.CommandStatus>;
}

/**
 * An agent's environment: this process's; for deno-qga plus the Environment= of its
 * systemd unit that changes how it uses memory (GLIBC_TUNABLES), so it is measured as
 * it is deployed (qemu-ga's unit sets nothing of the kind).
 */
function childEnv(kind?: AgentKind): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.RUST_BACKTRACE;
  if (kind !== "deno-qga") return env;
  return { ...env, ...UNIT_ENV, ...(agentDenoDir ? { DENO_DIR: agentDenoDir } : {}) };
}

let agentDenoDir: string | undefined;

/**
 * The DENO_DIR of the deno programs the bench starts (deno-qga and the floors), for the
 * run: Deno's caches (transpiled modules, V8 code cache) as in a guest that runs the
 * agent, which the untimed warm-up start fills. A developer's own DENO_DIR may hold
 * hundreds of MB of other programs' caches (here 280 MB, from the test suite), and each
 * module's lookup in it costs time: 20-30 ms more for main.ts's start (docs/performance.md).
 */
export function setAgentDenoDir(dir: string): void {
  agentDenoDir = dir;
}

/** GLIBC_TUNABLES from packaging/deno-qga.service.in (the deployed environment). */
export const UNIT_ENV: Readonly<Record<string, string>> = (() => {
  const unit = Deno.readTextFileSync(new URL("../packaging/deno-qga.service.in", import.meta.url));
  const m = /^Environment=GLIBC_TUNABLES=(\S+)$/m.exec(unit);
  if (!m) throw new Error("packaging/deno-qga.service.in sets no GLIBC_TUNABLES");
  return { GLIBC_TUNABLES: m[1]! };
})();

/** The deno binary of a checkout. */
export function denoOf(repo: string): string {
  return `${repo}/node_modules/.bin/deno`;
}

/**
 * The argv deno-qga prints with `--print-permissions` for these agent arguments,
 * with argv[0] replaced by the checkout's deno and `denoFlags` after `run`.
 * Refuses a line that grants everything.
 */
export async function denoQgaArgv(
  repo: string,
  agentArgs: readonly string[],
  denoFlags: readonly string[] = [],
): Promise<string[]> {
  const out = await new Deno.Command(denoOf(repo), {
    args: [
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-env",
      `${repo}/main.ts`,
      "--print-permissions",
      ...agentArgs,
    ],
    cwd: repo,
    env: childEnv(),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim();
  if (!out.success || line === "" || line.includes("\n")) {
    throw new Error(`--print-permissions failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const argv = shellSplit(line);
  const runAt = argv.indexOf("run");
  if (runAt < 0 || argv.includes("-A") || argv.includes("--allow-all")) {
    throw new Error(`unexpected --print-permissions line: ${line}`);
  }
  return [denoOf(repo), "run", ...denoFlags, ...argv.slice(runAt + 1)];
}

/** The agent arguments for a socket and state dir. */
export function agentArgs(kind: AgentKind, dir: string, dataDir: string): string[] {
  const args = ["-m", "unix-listen", "-p", `${dir}/sock`, "-t", dir];
  if (kind === "deno-qga") args.push(`--file-roots=${dataDir}`, "--exec-programs=/usr/bin/true");
  return args;
}

/**
 * Spawns an agent in a fresh dir under `parent`. `argvFor` gives the full argv for
 * that dir (so the deno-qga line can be computed once per dir ahead of timing).
 */
export function spawnAgent(kind: AgentKind, dir: string, argv: readonly string[]): BenchAgent {
  // BENCH_AGENT_STDERR=1 passes the agents' stderr through (debugging).
  const passStderr = Deno.env.get("BENCH_AGENT_STDERR") === "1";
  const spawnedAt = performance.now();
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: dir,
    env: childEnv(kind),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let tail = "";
  const decoder = new TextDecoder();
  const drained = (async () => {
    for await (const chunk of child.stderr) {
      if (passStderr) Deno.stderr.writeSync(chunk);
      tail += decoder.decode(chunk, { stream: true });
      if (tail.length > 131072) tail = tail.slice(-65536);
    }
  })();
  let status: Deno.CommandStatus | undefined;
  const statusPromise = child.status.then((s) => (status = s));
  let stopping: Promise<Deno.CommandStatus> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      const kill = (sig: Deno.Signal) => {
        try {
          if (!status) child.kill(sig);
        } catch {
          // Already gone.
        }
      };
      kill("SIGTERM");
      let waited = 0;
      // qemu-ga ignores a SIGTERM that arrives before its main loop runs.
      const timer = setInterval(() => {
        waited += 250;
        kill(waited >= 10_000 ? "SIGKILL" : "SIGTERM");
      }, 250);
      const s = await statusPromise;
      clearInterval(timer);
      await drained;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      return s;
    })();
    return stopping;
  };
  return {
    kind,
    pid: child.pid,
    dir,
    socketPath: `${dir}/sock`,
    argv,
    spawnedAt,
    stderr: () => tail.slice(-65536),
    exited: () => status,
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
}

/**
 * Connects to a freshly spawned agent, retrying every millisecond until the
 * socket accepts (or `timeoutMs` passes, or the agent exits).
 */
export async function connectRetry(agent: BenchAgent, timeoutMs = 20_000): Promise<Deno.UnixConn> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await Deno.connect({ transport: "unix", path: agent.socketPath });
    } catch (e) {
      const s = agent.exited();
      if (s) {
        throw new Error(
          `${agent.kind} exited (code ${s.code}) before listening: ${agent.stderr()}`,
        );
      }
      if (performance.now() > deadline) {
        throw new Error(
          `${agent.kind} did not listen within ${timeoutMs} ms: ${(e as Error).message}`,
        );
      }
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

/** `qemu-ga -V` (first line). */
export async function qemuGaVersion(): Promise<string> {
  const out = await new Deno.Command(QEMU_GA, { args: ["-V"], stdout: "piped", stderr: "null" })
    .output();
  return new TextDecoder().decode(out.stdout).trim().split("\n")[0] ?? "unknown";
}
