/**
 * The probe of tests/integration/inspector_test.ts, run inside a private network
 * namespace (`unshare -n`, loopback up) so that no other process on the machine (another
 * deno-qga's helper holds 127.0.0.1:9229 by design) can hold or answer on the port.
 * `inspector_probe.ts agent` or `inspector_probe.ts control` prints one JSON line: what the
 * probe saw. The assertions are in inspector_test.ts.
 *
 * Debugger port (issue 8 part 6, docs/robustness.md "Debugger port"): Deno opens a V8
 * inspector on 127.0.0.1:9229 when a process gets SIGUSR1. A root agent with a reachable
 * inspector would hand any local user the agent's privileges. The agent (and its
 * privileged helper, if it runs one) gets SIGUSR1; then, for 1.5 s, a tight loop connects
 * to 127.0.0.1:9229 and sends `GET /json/version`, and scans /proc/net/tcp{,6} for a
 * listening socket on port 9229 owned by the agent. The test fails if an inspector ever
 * answered or the agent ever held the listening socket. A socket held by the helper that
 * never answers (the planned "hold the port" mitigation) passes.
 *
 * A control test runs the same probe against a plain Deno process, which must show the
 * inspector: the probe can see what it looks for.
 *
 * Run (as root): unshare -n sh -c 'ip link set lo up && exec ./node_modules/.bin/deno run \
 *   --allow-all tests/integration/inspector_probe.ts agent'
 *
 * @module
 */

import { QgaClient } from "../../client/mod.ts";
import { startAgent } from "../helpers/agents.ts";
import { agentPid, processTree } from "../helpers/proc.ts";

const PORT = 9229;
const WINDOW_MS = 1500;
const ROUNDS = 3;
const enc = new TextEncoder();
const dec = new TextDecoder();

/** Inodes of the listening TCP sockets (IPv4 and IPv6) on `port`. */
function listeningInodes(port: number): Set<string> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, "0");
  const out = new Set<string>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode is field 9; LISTEN is state 0A.
      if (f.length > 9 && f[1]!.endsWith(`:${hexPort}`) && f[3] === "0A") out.add(f[9]!);
    }
  }
  return out;
}

/** Socket inodes among a process's descriptors. */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  try {
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`));
        if (m) out.add(m[1]!);
      } catch {
        // Closed meanwhile.
      }
    }
  } catch {
    // Exited.
  }
  return out;
}

function timeout<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** What the probe saw. */
interface Probe {
  attempts: number;
  /** Scans of /proc/net/tcp{,6}. */
  scans: number;
  /** TCP connections accepted by someone on 127.0.0.1:9229. */
  connected: number;
  /** Replies to GET /json/version (first 200 bytes each, at most 5 kept). */
  replies: string[];
  replyCount: number;
  /** Scans that found a listener owned by the watched (agent) process. */
  agentListener: number;
  /** Scans that found a listener owned by a helper process. */
  helperListener: number;
  /** Scans that found a new listener whose owner could not be found. */
  unknownListener: number;
}

/**
 * Sends SIGUSR1 to `agent` and `helpers`, then probes the port for {@link WINDOW_MS}.
 * `preexisting` listeners (there before the agent started) are ignored in the scan.
 */
async function probe(agent: number, helpers: number[], preexisting: Set<string>): Promise<Probe> {
  const p: Probe = {
    attempts: 0,
    scans: 0,
    connected: 0,
    replies: [],
    replyCount: 0,
    agentListener: 0,
    helperListener: 0,
    unknownListener: 0,
  };
  for (const pid of [agent, ...helpers]) Deno.kill(pid, "SIGUSR1");
  const end = performance.now() + WINDOW_MS;
  let lastScan = -Infinity;
  while (performance.now() < end) {
    p.attempts++;
    // Reading /proc/net/tcp{,6} takes ~10 ms here, a refused connect ~40 us: scan every
    // 25 ms, and connect as fast as possible in between.
    const now = performance.now();
    const fresh = now - lastScan < 25
      ? []
      : [...listeningInodes(PORT)].filter((i) => !preexisting.has(i));
    if (now - lastScan >= 25) {
      lastScan = now;
      p.scans++;
    }
    if (fresh.length > 0) {
      const mine = socketInodes(agent);
      const theirs = new Set(helpers.flatMap((h) => [...socketInodes(h)]));
      for (const inode of fresh) {
        if (mine.has(inode)) p.agentListener++;
        else if (theirs.has(inode)) p.helperListener++;
        else p.unknownListener++;
      }
    }
    const connecting = Deno.connect({ hostname: "127.0.0.1", port: PORT });
    let conn: Deno.TcpConn | "timeout";
    try {
      conn = await timeout(connecting, 200);
    } catch {
      continue; // ECONNREFUSED: nobody listens, the usual case.
    }
    if (conn === "timeout") {
      connecting.then((c) => c.close(), () => {});
      continue;
    }
    p.connected++;
    try {
      await conn.write(enc.encode("GET /json/version HTTP/1.0\r\n\r\n"));
      const buf = new Uint8Array(4096);
      const n = await timeout(conn.read(buf), 300).catch(() => null);
      if (typeof n === "number" && n > 0) {
        p.replyCount++;
        if (p.replies.length < 5) p.replies.push(dec.decode(buf.subarray(0, Math.min(n, 200))));
      }
    } catch {
      // Reset by the peer: no answer.
    } finally {
      try {
        conn.close();
      } catch {
        // Already closed.
      }
    }
  }
  return p;
}

/** What one scenario reports. */
export interface ScenarioResult {
  /** Listening sockets on the port before the scenario started. */
  preexisting: number;
  pid: number;
  helpers: number[];
  rounds: Probe[];
  /** Set when the agent stopped serving after a signal. */
  stoppedServing?: string;
}

async function agentScenario(): Promise<ScenarioResult> {
  const agent = await startAgent("deno-qga", { extraArgs: ["--exec-programs=/usr/bin/true"] });
  try {
    const pid = agentPid(agent);
    const c = await QgaClient.connect(agent.socketPath);
    await c.execute("guest-ping");
    // Listeners from before any signal (the agent and its helper hold the port by
    // design: a socket that never answers) are not an inspector; one that appears
    // after SIGUSR1 would be.
    const preexisting = listeningInodes(PORT);
    const out: ScenarioResult = { preexisting: preexisting.size, pid, helpers: [], rounds: [] };
    for (let round = 0; round < ROUNDS; round++) {
      out.helpers = processTree(pid).slice(1);
      out.rounds.push(await probe(pid, out.helpers, preexisting));
      // The agent (and so its helper) must still serve after every signal.
      try {
        await c.execute("guest-ping");
      } catch (e) {
        out.stoppedServing = `round ${round}: ${e}\nstderr: ${agent.stderr().slice(-1500)}`;
        break;
      }
    }
    await c.close();
    return out;
  } finally {
    await agent.stop().catch(() => {});
  }
}

async function controlScenario(): Promise<ScenarioResult> {
  const preexisting = listeningInodes(PORT);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "setInterval(() => {}, 1000)"],
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  try {
    await new Promise((r) => setTimeout(r, 1000)); // let it start its event loop
    const r = await probe(child.pid, [], preexisting);
    return { preexisting: preexisting.size, pid: child.pid, helpers: [], rounds: [r] };
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

if (import.meta.main) {
  const which = Deno.args[0];
  if (which !== "agent" && which !== "control") {
    console.error("usage: inspector_probe.ts agent|control");
    Deno.exit(2);
  }
  const result = which === "agent" ? await agentScenario() : await controlScenario();
  console.log(JSON.stringify(result));
  Deno.exit(0);
}
