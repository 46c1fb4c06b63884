/**
 * Starts a guest agent on a unix socket in a fresh temporary directory, for tests that talk
 * to a real agent. `QGA_TEST_AGENT` chooses which: `qemu-ga` (the default, the reference
 * binary from `apt-get install qemu-guest-agent`) or `deno-qga` (this project's main.ts).
 *
 * Permissions: `--allow-env=QGA_TEST_AGENT,QEMU_GA` for qemu-ga (deno-qga, started through
 * tests/helpers/agents.ts, needs all of `--allow-env`), `--allow-read`, `--allow-write` (the
 * temp directory and the socket), `--allow-net` (unix socket) and `--allow-run`.
 *
 * @module
 */

import { startAgent as startProjectAgent } from "./agents.ts";

/** A running agent. */
export interface StartedAgent {
  /** Which agent runs: "qemu-ga" or "deno-qga". */
  kind: AgentKind;
  /** The temporary directory holding everything below; removed by `stop()`. */
  dir: string;
  /** The agent's unix-listen socket. */
  socket: string;
  /** The agent's state directory (`-t`). */
  statedir: string;
  /** The agent's log file (`-l`), for qemu-ga; deno-qga's stderr is kept by agents.ts. */
  logfile: string | undefined;
  /** Stops the agent (SIGTERM every 100 ms, SIGKILL after 1 s) and removes `dir`. */
  stop(): Promise<void>;
}

/** The agents a test can run against. */
export type AgentKind = "qemu-ga" | "deno-qga";

/** Options for {@linkcode startAgent}. */
export interface StartAgentOptions {
  /** Extra command-line arguments for the agent (e.g. `["-b", "guest-ping"]`). */
  extraArgs?: string[];
  /** How long to wait for the socket, in milliseconds. Default 10000. */
  readyTimeoutMs?: number;
}

/** Default location of the reference agent; `QEMU_GA` overrides it. */
export const QEMU_GA_PATH = "/usr/sbin/qemu-ga";

/** The agent chosen by `QGA_TEST_AGENT` (default `qemu-ga`). */
export function selectedAgent(): AgentKind {
  const value = Deno.env.get("QGA_TEST_AGENT") ?? "qemu-ga";
  if (value !== "qemu-ga" && value !== "deno-qga") {
    throw new Error(`QGA_TEST_AGENT must be "qemu-ga" or "deno-qga": received "${value}"`);
  }
  return value;
}

/** Resolves to the qemu-ga binary, or throws saying how to install it. */
export async function findQemuGa(): Promise<string> {
  const path = Deno.env.get("QEMU_GA") ?? QEMU_GA_PATH;
  try {
    const info = await Deno.stat(path);
    if (info.isFile) return path;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  throw new Error(
    `qemu-ga not found at "${path}": install it with "apt-get install qemu-guest-agent" ` +
      `(or set QEMU_GA to its path)`,
  );
}

async function canConnect(socket: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path: socket });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function readLog(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch {
    return "(no log)";
  }
}

/**
 * Starts the agent chosen by `QGA_TEST_AGENT` (see {@linkcode startQemuGa}).
 *
 * @example
 * ```ts
 * const agent = await startAgent();
 * try {
 *   await using client = await QgaClient.connect(agent.socket);
 *   await client.ping();
 * } finally {
 *   await agent.stop();
 * }
 * ```
 */
export function startAgent(options: StartAgentOptions = {}): Promise<StartedAgent> {
  return startKind(selectedAgent(), options);
}

/** Starts qemu-ga (`-m unix-listen -p SOCK -t STATEDIR -l LOG`) in a fresh temp directory. */
export function startQemuGa(options: StartAgentOptions = {}): Promise<StartedAgent> {
  return startKind("qemu-ga", options);
}

/**
 * deno-qga is started the way the differential tests start it (tests/helpers/agents.ts:
 * least-privilege permissions from `main.ts --print-permissions`), so there is one recipe.
 */
async function startDenoQga(options: StartAgentOptions): Promise<StartedAgent> {
  // agents.ts names the programs tests run with --exec-programs.
  const agent = await startProjectAgent("deno-qga", { extraArgs: options.extraArgs ?? [] });
  return {
    kind: "deno-qga",
    dir: agent.dir,
    socket: agent.socketPath,
    statedir: agent.dir,
    logfile: undefined,
    stop: () => agent.stop(),
  };
}

async function startKind(kind: AgentKind, options: StartAgentOptions): Promise<StartedAgent> {
  if (kind === "deno-qga") return await startDenoQga(options);
  const dir = await Deno.makeTempDir({ prefix: "qga-test-" });
  const socket = `${dir}/qga.sock`;
  const statedir = `${dir}/state`;
  const logfile = `${dir}/agent.log`;
  await Deno.mkdir(statedir);
  const agentArgs = [
    "-m",
    "unix-listen",
    "-p",
    socket,
    "-t",
    statedir,
    "-l",
    logfile,
    ...(options.extraArgs ?? []),
  ];
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(await findQemuGa(), {
      args: agentArgs,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
  let exited = false;
  const status = child.status.then((result) => {
    exited = true;
    return result;
  });
  const stop = async () => {
    if (!exited) {
      // qemu-ga 7.2 sometimes does not exit on SIGTERM (2 stops in 200 here hung until
      // SIGKILL, even with the signal repeated): repeat it every 100 ms, SIGKILL after 1 s.
      const started = performance.now();
      const signal = () => {
        if (exited) return;
        try {
          child.kill(performance.now() - started > 1000 ? "SIGKILL" : "SIGTERM");
        } catch {
          // It exited between the check and the kill.
        }
      };
      signal();
      const timer = setInterval(signal, 100);
      await status;
      clearInterval(timer);
    }
    await Deno.remove(dir, { recursive: true }).catch(() => undefined);
  };
  const deadline = performance.now() + (options.readyTimeoutMs ?? 10_000);
  while (!(await canConnect(socket))) {
    if (exited || performance.now() > deadline) {
      const why = exited
        ? `exited with ${JSON.stringify(await status)}`
        : "did not open its socket in time";
      const log = await readLog(logfile);
      await stop();
      throw new Error(`${kind} ${why}; log:\n${log}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { kind, dir, socket, statedir, logfile, stop };
}
