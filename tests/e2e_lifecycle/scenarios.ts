/**
 * The lifecycle e2e scenarios, in one boot of the lifecycle guest (guest.ts):
 * 1. frozen-state safety: SIGTERM, SIGINT and SIGHUP on a frozen agent thaw /data before it
 *    exits; after `kill -9` the restarted agent starts frozen from the marker and
 *    guest-fsfreeze-thaw recovers (qga-reference.md §1.10, §4.7);
 * 2. the card's command line serves over virtio-serial and isa-serial, and `ps` shows
 *    `--allow-all` only on the privileged helper;
 * 3. W10 (clients.md §5.1): the guest closes and reopens the port under a host that keeps its
 *    socket; 20 host disconnect/reconnect rounds;
 * 4. the sysfs/proc fixture capture (tests/fixtures/capture_sysfs.sh).
 *
 * Every check lands in a {@linkcode Report}; nothing throws on a failed check.
 *
 * @module
 */

import { Channel, excerpt } from "../e2e/channel.ts";
import { GUEST_FACTS, GUEST_PORTS, SHARE_FILES } from "../e2e/guest_script.ts";
import { Num, type Raw } from "../e2e/raw_json.ts";
import { Conversation, type Reply, request, resync } from "../e2e/sessions.ts";
import type { Vm } from "../e2e/vm.ts";
import {
  afterThawScript,
  CARD_LINE,
  EXTRA_FILES,
  EXTRA_HOSTNAME,
  EXTRA_VIRTIO_PORTS,
  extraPort,
  FIXTURE_NAME,
  freezeCaseScript,
  leastStateDir,
  PS_SCRIPT,
  reopenScript,
  startExtraVm,
  stopScript,
} from "./guest.ts";

/** One check of the table. */
export interface Check {
  group: string;
  name: string;
  ok: boolean;
  detail: string;
  /** Seconds since QEMU was started. */
  at: number;
}

/** Checks and a log, in order. */
export class Report {
  readonly checks: Check[] = [];
  readonly log: string[] = [];
  readonly t0 = Date.now();
  #echo: (line: string) => void;

  /** `echo` gets every check and log line as it happens. */
  constructor(echo: (line: string) => void = () => {}) {
    this.#echo = echo;
  }

  /** Records a check; returns `ok`. */
  check(group: string, name: string, ok: boolean, detail = ""): boolean {
    const at = (Date.now() - this.t0) / 1000;
    this.checks.push({ group, name, ok, detail, at });
    this.#echo(
      `${at.toFixed(1).padStart(6)} s ${ok ? "pass" : "FAIL"} ${group}: ${name} ${detail}`,
    );
    return ok;
  }

  /** Records a log line. */
  note(line: string): void {
    this.log.push(line);
    this.#echo(`${((Date.now() - this.t0) / 1000).toFixed(1).padStart(6)} s       ${line}`);
  }

  /** The failing checks. */
  get failures(): Check[] {
    return this.checks.filter((c) => !c.ok);
  }
}

let nextId = 7_000_000;
function newId(): number {
  return ++nextId;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function secs(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** `key=value` lines of a guest case script (the value is the rest of the line). */
export function parseKv(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split("\n")) {
    const i = line.indexOf("=");
    if (i > 0 && /^\w+$/.test(line.slice(0, i))) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

/** The guest as the host drives it through the out-of-band runner. */
class Guest {
  #vm: Vm;
  #seq = 0;
  constructor(vm: Vm) {
    this.#vm = vm;
  }

  /** Runs `script` in the guest; its result, or undefined when it did not finish in `ms`. */
  async sh(label: string, script: string, ms = 30_000) {
    if (this.#vm.status) return undefined;
    const run = await this.#vm.guestRun(`${++this.#seq}-${label}`, script);
    const deadline = Date.now() + ms;
    for (;;) {
      const r = await run.finished(Math.min(1000, Math.max(0, deadline - Date.now())));
      if (r || this.#vm.status || Date.now() >= deadline) return r;
    }
  }

  /** Runs a `key=value` case script; the map (with `rc`), or undefined. */
  async kv(label: string, script: string, ms = 60_000): Promise<Map<string, string> | undefined> {
    const r = await this.sh(label, script, ms);
    if (!r) return undefined;
    const m = parseKv(r.out);
    m.set("rc", String(r.rc));
    m.set("out", r.out.trim().replaceAll("\n", " | "));
    return m;
  }

  /** Starts agent `name` with the launcher (guest.ts agentLauncher); its pid, or a reason. */
  async startAgent(
    name: string,
    mode: "least" | "card",
    method: "virtio-serial" | "isa-serial",
    port: string,
  ): Promise<number | string> {
    const r = await this.sh(
      `start-${name}`,
      `sh /e2e/${EXTRA_FILES.launcher} ${name} ${mode} ${method} ${port}\n`,
      120_000,
    );
    if (!r) return "the launcher did not finish";
    const pid = Number(r.out.trim().split("\n").at(-1));
    if (r.rc !== 0 || !Number.isInteger(pid) || pid <= 0) {
      return `the launcher failed (rc ${r.rc}): ${r.out.trim()}`;
    }
    return pid;
  }

  /** True once agent `name` has exited. */
  async exited(name: string): Promise<boolean> {
    return (await this.#vm.shareText(`${EXTRA_FILES.agentsDir}/${name}.exit`)).trim() !== "";
  }

  /** The agent's command line as launched. */
  async commandOf(name: string): Promise<string> {
    return (await this.#vm.shareText(`${EXTRA_FILES.agentsDir}/${name}.command`)).trim();
  }

  /** The tail of the agent's stderr. */
  async logOf(name: string, lines = 8): Promise<string> {
    const t = await this.#vm.shareText(`${EXTRA_FILES.agentsDir}/${name}.log`);
    return t.trimEnd().split("\n").slice(-lines).join("\n");
  }

  /** True when `path` exists in the guest. */
  async exists(path: string): Promise<boolean | undefined> {
    const r = await this.sh("exists", `test -e ${path}\n`);
    return r ? r.rc === 0 : undefined;
  }

  /** QEMU is gone. */
  get dead(): boolean {
    return this.#vm.status !== undefined;
  }
}

/** A host client on one agent socket. */
class Host {
  readonly ch: Channel;
  constructor(ch: Channel) {
    this.ch = ch;
  }

  /**
   * Connects to `path` and resyncs until the agent answers, at most `ms`; gives up early when
   * agent `name` exits or QEMU is gone. Keeps one connection unless the peer closes it.
   */
  static async answering(
    guest: Guest,
    path: string,
    name: string,
    ms: number,
  ): Promise<Host | string> {
    const deadline = Date.now() + ms;
    let ch: Channel | undefined;
    while (Date.now() < deadline && !guest.dead) {
      if (await guest.exited(name)) {
        await ch?.close();
        return `the agent exited: ${await guest.logOf(name, 3)}`;
      }
      if (!ch || ch.eof) {
        await ch?.close();
        ch = await Channel.connect(path, 5000).catch(() => undefined);
        if (!ch) continue;
      }
      const host = new Host(ch);
      if (await host.resync(Math.min(5000, Math.max(500, deadline - Date.now())))) return host;
    }
    await ch?.close();
    return guest.dead ? "QEMU is gone" : `no resync answer within ${secs(ms)}`;
  }

  /** qemu-ga's resync (0xFF + guest-sync-delimited) with a fresh id. */
  async resync(ms: number): Promise<boolean> {
    return await resync(new Conversation(), this.ch, newId(), ms);
  }

  /** One command; the reply, or the reason there is none (`why` is the raw line as JSON). */
  async cmd(
    execute: string,
    args?: Record<string, unknown>,
    ms = 30_000,
  ): Promise<{ reply: Reply | undefined; why: string }> {
    const c = new Conversation();
    const text = JSON.stringify(args ? { execute, arguments: args } : { execute });
    const reply = await request(c, this.ch, execute, text, ms);
    return { reply, why: reply ? JSON.stringify(reply.text) : c.reasons.join("; ") };
  }

  async close(): Promise<void> {
    await this.ch.close();
  }
}

function intReturn(r: { reply: Reply | undefined }): bigint | undefined {
  const v: Raw | undefined = r.reply?.ret;
  return v instanceof Num && /^-?\d+$/.test(v.source) ? BigInt(v.source) : undefined;
}

function member(v: Raw | undefined, key: string): Raw | undefined {
  return v && typeof v === "object" && !Array.isArray(v) && !(v instanceof Num)
    ? v[key]
    : undefined;
}

/** A port: guest device and host socket. */
interface Port {
  guest: string;
  host: string;
}

/** Time an agent may take to answer after its launch under TCG. */
const AGENT_START_MS = 100_000;
const PING = '{"return": {}}';

/** Freezes /data through `host`: the count and the status. */
async function freeze(r: Report, group: string, host: Host): Promise<void> {
  const fr = await host.cmd("guest-fsfreeze-freeze", undefined, 60_000);
  const count = intReturn(fr);
  r.check(
    group,
    "guest-fsfreeze-freeze returns a count >= 1",
    count !== undefined && count >= 1n,
    fr.why,
  );
  const st = await host.cmd("guest-fsfreeze-status");
  r.check(group, 'guest-fsfreeze-status is "frozen"', st.reply?.ret === "frozen", st.why);
}

/** Thaws /data directly in the guest when a case left it frozen (keeps later cases valid). */
async function safetyThaw(r: Report, guest: Guest): Promise<void> {
  const t = await guest.sh("safety-thaw", `fsfreeze --unfreeze ${GUEST_FACTS.dataMount}\n`);
  if (t?.rc === 0) r.note(`safety thaw: ${GUEST_FACTS.dataMount} was still frozen; thawed it`);
}

/** Awaits a launch and the agent's first resync answer; the host client or undefined. */
async function launchedAndAnswering(
  r: Report,
  group: string,
  guest: Guest,
  what: string,
  name: string,
  port: Port,
  launched: Promise<number | string>,
  t0: number,
): Promise<Host | undefined> {
  const pid = await launched;
  if (!r.check(group, `${what}: launched`, typeof pid === "number", String(pid))) return undefined;
  const host = await Host.answering(guest, port.host, name, AGENT_START_MS);
  r.check(
    group,
    `${what}: answers a resync on ${port.guest}`,
    typeof host !== "string",
    typeof host === "string" ? host : `${secs(Date.now() - t0)} after the launch request`,
  );
  r.note(`${name}: ${await guest.commandOf(name)}`);
  return typeof host === "string" ? undefined : host;
}

/** SIGTERM/SIGINT/SIGHUP on a frozen agent: the write completes, the agent and helper exit. */
async function signalCase(
  r: Report,
  guest: Guest,
  sig: "TERM" | "INT" | "HUP",
  port: Port,
  launched: Promise<number | string>,
  t0: number,
  onAnswer?: () => void,
): Promise<void> {
  const group = `frozen + SIG${sig}`;
  const name = `sig${sig.toLowerCase()}`;
  const host = await launchedAndAnswering(
    r,
    group,
    guest,
    "least-privilege agent",
    name,
    port,
    launched,
    t0,
  );
  onAnswer?.();
  if (!host) return;
  await freeze(r, group, host);
  const kv = await guest.kv(`case-${name}`, freezeCaseScript(name, sig, leastStateDir(name)));
  await host.close();
  if (
    !r.check(
      group,
      "the guest case script ran",
      kv?.get("rc") === "0",
      kv?.get("out") ?? "no answer",
    )
  ) {
    await safetyThaw(r, guest);
    return;
  }
  const v = (k: string) => kv!.get(k) ?? "";
  r.check(
    group,
    "the frozen marker is in the state dir",
    v("marker") === "yes",
    leastStateDir(name),
  );
  r.check(
    group,
    `a write to ${GUEST_FACTS.dataMount} is blocked 1.5 s later`,
    v("blocked") === "yes",
  );
  r.check(group, `kill -${sig} <agent pid> in the guest`, v("kill") === "ok");
  r.check(
    group,
    `the blocked write completes after SIG${sig} (thawed)`,
    v("write_rc") === "0",
    `rc ${v("write_rc")}, ${v("write_s") || "-"} s after the signal`,
  );
  r.check(
    group,
    `the agent exits with status 0`,
    v("exit") === "0",
    `status ${v("exit")}, ${v("exit_s") || "-"} s after the signal`,
  );
  r.check(
    group,
    "its helper exits too",
    v("kids") !== "" && v("kids_left") === "",
    `children ${v("kids") || "none"}, left ${v("kids_left") || "none"}`,
  );
  r.check(group, "the frozen marker is removed", v("marker_after") === "no");
  if (v("write_rc") !== "0") await safetyThaw(r, guest);
}

/** kill -9 mid-freeze, then qemu-ga's recovery path: restart frozen from the marker, thaw. */
async function kill9Case(
  r: Report,
  guest: Guest,
  port: Port,
  launched: Promise<number | string>,
  t0: number,
): Promise<void> {
  const group = "frozen + SIGKILL";
  const name = "sigkill";
  const host = await launchedAndAnswering(
    r,
    group,
    guest,
    "least-privilege agent",
    name,
    port,
    launched,
    t0,
  );
  if (!host) return;
  await freeze(r, group, host);
  const t1 = Date.now();
  const kv = await guest.kv(
    `case-${name}`,
    freezeCaseScript(name, "KILL", leastStateDir(name)),
    120_000,
  );
  await host.close();
  if (
    !r.check(
      group,
      "the guest case script ran",
      kv?.get("rc") === "0",
      kv?.get("out") ?? "no answer",
    )
  ) {
    await safetyThaw(r, guest);
    return;
  }
  const v = (k: string) => kv!.get(k) ?? "";
  r.check(
    group,
    "the frozen marker is in the state dir",
    v("marker") === "yes",
    leastStateDir(name),
  );
  r.check(
    group,
    `a write to ${GUEST_FACTS.dataMount} is blocked 1.5 s later`,
    v("blocked") === "yes",
  );
  r.check(group, "kill -9 <agent pid> in the guest", v("kill") === "ok");
  r.check(group, "the agent dies with status 137", v("exit") === "137", `status ${v("exit")}`);
  r.check(
    group,
    "its helper exits (the port is free for a restart)",
    v("kids") !== "" && v("kids_left") === "",
    `children ${v("kids") || "none"}, left ${v("kids_left") || "none"}`,
  );
  r.check(
    group,
    "nothing thawed: the write is still blocked 2 s after kill -9",
    v("still_blocked") === "yes",
  );
  r.check(group, "the frozen marker survives kill -9", v("marker_after") === "yes");
  const restart = `${name}-restart`;
  const host2 = await launchedAndAnswering(
    r,
    group,
    guest,
    "restart with the same line and state dir",
    restart,
    port,
    Promise.resolve(
      /^\d+$/.test(v("restart_pid")) ? Number(v("restart_pid")) : v("restart_pid") || "no pid",
    ),
    t1,
  );
  if (!host2) {
    await safetyThaw(r, guest);
    return;
  }
  const st = await host2.cmd("guest-fsfreeze-status");
  r.check(
    group,
    'restarted: guest-fsfreeze-status is "frozen"',
    st.reply?.ret === "frozen",
    st.why,
  );
  const gt = await host2.cmd("guest-get-time");
  r.check(
    group,
    "restarted: guest-get-time is disabled (CommandNotFound)",
    gt.reply?.error?.class === "CommandNotFound",
    gt.why,
  );
  const ping = await host2.cmd("guest-ping");
  r.check(group, "restarted: guest-ping answers", ping.reply?.text === PING, ping.why);
  const th = await host2.cmd("guest-fsfreeze-thaw", undefined, 60_000);
  r.check(group, "guest-fsfreeze-thaw returns a count", intReturn(th) !== undefined, th.why);
  const after = await guest.kv(`after-thaw-${name}`, afterThawScript(name, leastStateDir(name)));
  r.check(
    group,
    "the blocked write completes after guest-fsfreeze-thaw",
    after?.get("write_rc") === "0",
    after
      ? `rc ${after.get("write_rc")}, ${after.get("write_s") ?? "-"} s after the thaw reply`
      : "no answer",
  );
  r.check(group, "the frozen marker is removed", after?.get("marker_after") === "no");
  const st2 = await host2.cmd("guest-fsfreeze-status");
  r.check(group, 'then guest-fsfreeze-status is "thawed"', st2.reply?.ret === "thawed", st2.why);
  const gt2 = await host2.cmd("guest-get-time");
  const ns = intReturn(gt2);
  r.check(group, "then guest-get-time answers again", ns !== undefined && ns > 0n, gt2.why);
  await host2.close();
  const stop = await guest.kv(`stop-${restart}`, stopScript(restart));
  r.check(
    group,
    "the restarted agent and its helper stop on SIGTERM (status 0)",
    stop?.get("exit") === "0" && stop.get("kids") !== "" && stop.get("kids_left") === "",
    stop?.get("out") ?? "no answer",
  );
  if (after?.get("write_rc") !== "0") await safetyThaw(r, guest);
}

/** Checks that a card-line agent serves the host on `host`. */
async function servesHost(r: Report, group: string, host: Host, what: string): Promise<void> {
  const ping = await host.cmd("guest-ping");
  r.check(
    group,
    `${what}: guest-ping, exact bytes ${JSON.stringify(PING + "\n")}`,
    ping.reply?.text === PING,
    ping.why,
  );
  const info = await host.cmd("guest-info");
  r.check(
    group,
    `${what}: guest-info has a version`,
    typeof member(info.reply?.ret, "version") === "string",
    excerpt(info.why, 60),
  );
  const cmds = member(info.reply?.ret, "supported_commands");
  const list = Array.isArray(cmds) ? cmds : [];
  const off = list.filter((c) => member(c, "enabled") !== true).map((c) => member(c, "name"));
  r.check(
    group,
    `${what}: guest-info lists all 43 commands enabled (no env or sys grant is missed)`,
    list.length === 43 && off.length === 0,
    `${list.length} commands; disabled: ${off.join(", ")}`,
  );
  for (const cmd of ["guest-get-osinfo", "guest-get-timezone", "guest-network-get-interfaces"]) {
    const res = await host.cmd(cmd);
    r.check(group, `${what}: ${cmd} answers`, res.reply?.ret !== undefined, excerpt(res.why, 80));
  }
  const hn = await host.cmd("guest-get-host-name");
  r.check(
    group,
    `${what}: guest-get-host-name is "${EXTRA_HOSTNAME}"`,
    member(hn.reply?.ret, "host-name") === EXTRA_HOSTNAME,
    hn.why,
  );
}

/** `ps -eo pid,args` in the guest: --allow-all only on the helper, never on an agent. */
async function psCheck(r: Report, guest: Guest): Promise<void> {
  const group = "ps: least privilege";
  const ps = await guest.sh("ps", PS_SCRIPT);
  if (!r.check(group, "ps -eo pid,args runs in the guest", ps?.rc === 0, ps ? "" : "no answer")) {
    return;
  }
  const [psOut = "", fdOut = ""] = ps!.out.split("---fds---\n");
  r.note("guest `ps -eo pid,args`:");
  for (const l of psOut.trimEnd().split("\n")) r.note(`  ${l}`);
  const rows = psOut.trim().split("\n").slice(1).map((l) => {
    const m = /^\s*(\d+)\s+(.*)$/.exec(l);
    return { pid: Number(m?.[1]), args: m?.[2] ?? "" };
  });
  const allowAll = (a: string) => /(^|\s)(--allow-all|-A)(\s|$)/.test(a);
  const isHelper = (a: string) => /\/helper\/main\.ts(\s|$)/.test(a);
  const isAgent = (a: string) =>
    /(^|\s|\/)main\.ts(\s|$)/.test(a) && !isHelper(a) && /\s-p\s/.test(a);
  const agents = rows.filter((x) => isAgent(x.args));
  const helpers = rows.filter((x) => isHelper(x.args));
  const privileged = rows.filter((x) => allowAll(x.args));
  const fds = fdOut.trim().split("\n").filter((l) => l !== "").map((l) => {
    const [pid, dev] = l.split(" ");
    return { pid: Number(pid), dev: dev ?? "" };
  });
  r.note("open agent port devices (pid device holder):");
  for (const f of fds) {
    const who = agents.some((a) => a.pid === f.pid)
      ? "agent"
      : helpers.some((h) => h.pid === f.pid)
      ? "helper"
      : "other";
    r.note(`  ${f.pid} ${f.dev} ${who}`);
  }
  r.check(
    group,
    "both card-line agents are running",
    agents.some((a) => a.args === `${CARD_LINE} -p ${GUEST_PORTS.denoVirtio}`) &&
      agents.some((a) => a.args === `${CARD_LINE} -m isa-serial -p ${GUEST_PORTS.denoIsa}`),
    `${agents.length} agent processes, ${helpers.length} helpers`,
  );
  r.check(
    group,
    "no agent process runs with --allow-all",
    agents.length > 0 && agents.every((a) => !allowAll(a.args)),
    agents.filter((a) => allowAll(a.args)).map((a) => a.pid).join(","),
  );
  r.check(
    group,
    "every --allow-all process is a helper (helper/main.ts)",
    privileged.length > 0 && privileged.every((p) => isHelper(p.args)),
    `${privileged.length} --allow-all processes${
      privileged.filter((p) => !isHelper(p.args)).map((p) => `; ${p.pid} ${p.args}`).join("")
    }`,
  );
  r.check(
    group,
    "the port devices are open in helper processes only",
    fds.length >= 2 && fds.every((f) => helpers.some((h) => h.pid === f.pid)),
    fds.map((f) => `${f.pid}:${f.dev}`).join(" "),
  );
}

/** The card line over isa-serial. */
async function cardIsa(
  r: Report,
  guest: Guest,
  port: Port,
  launched: Promise<number | string>,
  t0: number,
): Promise<void> {
  const group = "card line";
  const host = await launchedAndAnswering(
    r,
    group,
    guest,
    `${CARD_LINE} -m isa-serial -p ${port.guest}`,
    "card-isa",
    port,
    launched,
    t0,
  );
  if (!host) return;
  await servesHost(r, group, host, "isa-serial");
  await host.close();
}

/** The card line over virtio-serial, ps, W10 and 20 reconnects. */
async function cardVirtio(
  r: Report,
  guest: Guest,
  port: Port,
  launched: Promise<number | string>,
  isaDone: Promise<void>,
  t0: number,
): Promise<void> {
  const group = "card line";
  const w10 = "W10 port reopen";
  const host = await launchedAndAnswering(
    r,
    group,
    guest,
    `${CARD_LINE} -p ${port.guest}`,
    "card-virtio",
    port,
    launched,
    t0,
  );
  if (!host) return;
  await servesHost(r, group, host, "virtio-serial");
  r.check(
    group,
    "no -t needed: the default state dir /var/run is used",
    await guest.exists("/var/run/qga.state") === true,
    "/var/run/qga.state exists",
  );
  await isaDone;
  await psCheck(r, guest);

  // W10: the guest closes the port (agent stops) and reopens it (new agent); the host keeps
  // its socket and resyncs, as libvirt does after processSerialChangedEvent.
  const t1 = Date.now();
  const kv = await guest.kv("reopen", reopenScript("card-virtio", "card-virtio-2", port.guest));
  r.check(
    w10,
    "the guest closes the port: SIGTERM, agent and helper exit (status 0)",
    kv?.get("exit") === "0" && kv.get("kids") !== "" && kv.get("kids_left") === "",
    kv?.get("out") ?? "no answer",
  );
  r.check(
    w10,
    "the guest reopens the port: the card line starts again",
    /^\d+$/.test(kv?.get("next_pid") ?? ""),
    kv?.get("next_pid") ?? "",
  );
  let synced = false;
  const deadline = Date.now() + AGENT_START_MS;
  while (!synced && !host.ch.eof && !guest.dead && Date.now() < deadline) {
    synced = await host.resync(5000);
  }
  r.check(
    w10,
    "the host kept its socket (no EOF while the port was closed)",
    !host.ch.eof,
    host.ch.readError ? String(host.ch.readError) : "",
  );
  r.check(
    w10,
    "the new agent answers a resync on the kept socket",
    synced,
    `${secs(Date.now() - t1)} after the stop request`,
  );
  if (synced) {
    const id = Date.now();
    await host.ch.write(`{"execute":"guest-sync", "arguments":{"id":${id}}}\n`);
    const line = await host.ch.line(5000);
    const text = typeof line === "string" ? line : new TextDecoder().decode(line);
    r.check(
      w10,
      "libvirt's plain guest-sync gets exactly its id",
      text === `{"return": ${id}}`,
      JSON.stringify(text),
    );
    const ping = await host.cmd("guest-ping");
    r.check(w10, "guest-ping on the kept socket", ping.reply?.text === PING, ping.why);
  }
  await host.close();
  if (!synced) return;

  // 20 host disconnect/reconnect rounds against the card line.
  const rounds: number[] = [];
  const bad: string[] = [];
  for (let i = 1; i <= 20 && !guest.dead; i++) {
    const t = Date.now();
    const ch = await Channel.connect(port.host, 10_000).catch((e) => e as Error);
    if (ch instanceof Error) {
      bad.push(`#${i}: ${ch.message}`);
      continue;
    }
    const h = new Host(ch);
    const ok = await h.resync(10_000);
    const ping = ok ? await h.cmd("guest-ping", undefined, 10_000) : undefined;
    await h.close();
    if (!ok) bad.push(`#${i}: no resync answer`);
    else if (ping?.reply?.text !== PING) bad.push(`#${i}: guest-ping ${ping?.why}`);
    else rounds.push(Date.now() - t);
  }
  const mean = rounds.reduce((a, b) => a + b, 0) / Math.max(1, rounds.length);
  r.check(
    w10,
    "20 host disconnect/reconnect rounds: resync + guest-ping each",
    rounds.length === 20,
    `${rounds.length}/20 ok, mean ${mean.toFixed(0)} ms, max ${Math.max(0, ...rounds)} ms${
      bad.length ? `; ${bad.join("; ")}` : ""
    }`,
  );
}

/** Checks the fixture capture; copies it to `copyTo` when given. */
async function captureCheck(r: Report, vm: Vm, copyTo: string | undefined): Promise<void> {
  const group = "sysfs fixture capture";
  const deadline = Date.now() + 200_000;
  let rc = "";
  while (
    (rc = (await vm.shareText(EXTRA_FILES.captureRc)).trim()) === "" && Date.now() < deadline &&
    !vm.status
  ) {
    await sleep(250);
  }
  const log = (await vm.shareText(EXTRA_FILES.captureLog)).trim();
  if (
    !r.check(
      group,
      "capture_sysfs.sh e2e-guest <qemu-ga socket> exits 0",
      rc === "0",
      `rc ${rc || "none"}: ${log.split("\n").at(-1)}`,
    )
  ) return;
  const root = `${vm.share}/${EXTRA_FILES.fixtureDir}/${FIXTURE_NAME}`;
  const read = (p: string) => Deno.readTextFile(`${root}/${p}`).catch(() => "");
  const devs = (await Array.fromAsync(Deno.readDir(`${root}/sys/dev/block`)).catch(() => []))
    .map((e) => e.name);
  let vda = "";
  for (const mm of devs) {
    const target = await Deno.readLink(`${root}/sys/dev/block/${mm}`).catch(() => "");
    if (target.endsWith("/vda")) vda = mm;
  }
  r.check(group, "sys/dev/block links the virtio disk vda", vda !== "", devs.join(" "));
  const udev = vda ? await read(`run/udev/data/b${vda}`) : "";
  r.check(
    group,
    `run/udev/data/b${vda || "?"} (vda) has E:ID_SERIAL=${GUEST_FACTS.diskSerial}`,
    udev.split("\n").includes(`E:ID_SERIAL=${GUEST_FACTS.diskSerial}`),
    excerpt(udev, 60),
  );
  const mountinfo = await read("proc/self/mountinfo");
  r.check(
    group,
    `proc/self/mountinfo mounts /dev/vda (ext4) on ${GUEST_FACTS.dataMount}`,
    new RegExp(` ${GUEST_FACTS.dataMount} .* - ext4 /dev/vda `).test(mountinfo),
  );
  const disks = await read("qemu-ga/guest-get-disks.json");
  r.check(
    group,
    `qemu-ga's guest-get-disks reply has serial ${GUEST_FACTS.diskSerial}`,
    disks.includes(`"serial": "${GUEST_FACTS.diskSerial}"`),
    excerpt(disks, 60),
  );
  const fsinfo = await read("qemu-ga/guest-get-fsinfo.json");
  r.check(
    group,
    `qemu-ga's guest-get-fsinfo reply has ${GUEST_FACTS.dataMount} on /dev/vda`,
    fsinfo.includes(`"mountpoint": "${GUEST_FACTS.dataMount}"`) &&
      fsinfo.includes(`"dev": "/dev/vda"`),
    excerpt(fsinfo, 60),
  );
  r.note(`capture: ${log.split("\n").at(-1)}`);
  if (copyTo) {
    await Deno.remove(copyTo, { recursive: true }).catch(() => {});
    const out = await new Deno.Command("cp", { args: ["-a", root, copyTo], stderr: "piped" })
      .output();
    r.check(group, `copied to ${copyTo}`, out.success, new TextDecoder().decode(out.stderr));
  }
}

/** Options of {@linkcode runExtra}. */
export interface ExtraOptions {
  /** Progress output. */
  echo?: (line: string) => void;
  /**
   * Run the fixture capture and copy it there (e.g. tests/fixtures/sysfs/e2e-guest); no capture
   * by default (it takes 1-3 min under TCG next to the agents).
   */
  fixtureOut?: string;
}

/** What {@linkcode runExtra} returns. */
export interface ExtraResult {
  report: Report;
  bootMs: number;
  totalMs: number;
  /** Tails of the guest-side logs. */
  logs: Record<string, string>;
}

/**
 * Boots the lifecycle guest, runs every scenario, disposes of the VM. Three lanes run at once:
 * the frozen-state cases (one after the other: one /data), the card-line/ps/W10 checks, and
 * the fixture capture; every agent is launched right after boot.
 *
 * @example
 * ```ts
 * const { report } = await runExtra({ echo: console.log });
 * console.log(formatChecks(report));
 * ```
 */
export async function runExtra(options: ExtraOptions = {}): Promise<ExtraResult> {
  const r = new Report(options.echo);
  const t0 = Date.now();
  let bootMs = 0;
  const logs: Record<string, string> = {};
  const vm = await startExtraVm({ timeoutMs: 240_000 });
  try {
    if (options.fixtureOut) await Deno.writeTextFile(`${vm.share}/capture-wanted`, "");
    await vm.waitReady(90_000);
    bootMs = Date.now() - t0;
    r.note(`guest ready after ${secs(bootMs)}`);
    const g = new Guest(vm);
    const extra = (i: number): Port => ({
      guest: extraPort(EXTRA_VIRTIO_PORTS[i]!),
      host: `${vm.dir}/qga${EXTRA_VIRTIO_PORTS[i]}.sock`,
    });
    const [pTerm, pInt, pHup, pKill] = [extra(0), extra(1), extra(2), extra(3)];
    const p0: Port = { guest: GUEST_PORTS.denoVirtio, host: vm.sockets.denoVirtio };
    const s1: Port = { guest: GUEST_PORTS.denoIsa, host: vm.sockets.denoIsa };

    // Agents start slowly under TCG: each is launched one case ahead of its use.
    const tl = Date.now();
    const least = (name: string, p: Port) => g.startAgent(name, "least", "virtio-serial", p.guest);
    const term = least("sigterm", pTerm);
    const int = least("sigint", pInt);
    const cardV = g.startAgent("card-virtio", "card", "virtio-serial", p0.guest);
    const cardI = g.startAgent("card-isa", "card", "isa-serial", s1.guest);
    const frozenLane = (async () => {
      let hup: Promise<number | string> | undefined;
      let kill: Promise<number | string> | undefined;
      await signalCase(r, g, "TERM", pTerm, term, tl, () => hup = least("sighup", pHup));
      await signalCase(r, g, "INT", pInt, int, tl, () => kill = least("sigkill", pKill));
      await signalCase(r, g, "HUP", pHup, hup ?? least("sighup", pHup), tl);
      await kill9Case(r, g, pKill, kill ?? least("sigkill", pKill), tl);
    })();
    const isaDone = cardIsa(r, g, s1, cardI, tl);
    const cardLane = cardVirtio(r, g, p0, cardV, isaDone, tl);
    await Promise.all([
      frozenLane,
      isaDone,
      cardLane,
      options.fixtureOut ? captureCheck(r, vm, options.fixtureOut) : undefined,
    ]);
  } finally {
    const tail = (t: string, n: number) => t.trimEnd().split("\n").slice(-n).join("\n");
    logs["guest script"] = tail(await vm.shareText(SHARE_FILES.guestLog), 20);
    const entries = await Array.fromAsync(Deno.readDir(`${vm.share}/${EXTRA_FILES.agentsDir}`))
      .catch(() => []);
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.endsWith(".log")) {
        logs[e.name] = tail(await vm.shareText(`${EXTRA_FILES.agentsDir}/${e.name}`), 10);
      }
    }
    logs["console"] = tail(await vm.console(), 15);
    if (vm.timedOut) logs["qemu"] = "QEMU was killed by the hard timeout";
    await vm.dispose();
  }
  return { report: r, bootMs, totalMs: Date.now() - t0, logs };
}

/** The check table. */
export function formatChecks(r: Report): string {
  const gw = Math.max(5, ...r.checks.map((c) => c.group.length));
  const nw = Math.max(5, ...r.checks.map((c) => c.name.length));
  const lines = [
    `${"#".padStart(2)} | ${"group".padEnd(gw)} | ${
      "check".padEnd(nw)
    } | result |      at | detail`,
    `${"-".repeat(2)}-|-${"-".repeat(gw)}-|-${"-".repeat(nw)}-|--------|---------|-------`,
    ...r.checks.map((c, i) =>
      `${String(i + 1).padStart(2)} | ${c.group.padEnd(gw)} | ${c.name.padEnd(nw)} | ${
        (c.ok ? "pass" : "FAIL").padEnd(6)
      } | ${c.at.toFixed(1).padStart(5)} s | ${c.detail.replaceAll("\n", " ").slice(0, 120)}`
    ),
  ];
  const failed = r.failures.length;
  lines.push("", `${r.checks.length - failed} pass, ${failed} fail`);
  return lines.join("\n");
}
