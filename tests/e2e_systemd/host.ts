/**
 * The host's side of the systemd guest: the agent's virtio-serial chardev as a management
 * tool drives it ({@linkcode AgentLink}: qemu-ga's resync, then one request and one reply at
 * a time) and QEMU's machine monitor ({@linkcode Qmp}: device_del / device_add of the port).
 * Every wait has a deadline.
 *
 * @module
 */

import { Channel, excerpt } from "../e2e/channel.ts";

/** One reply of the agent. */
export interface AgentReply {
  return?: unknown;
  error?: { class: string; desc: string };
}

function parseReply(line: Uint8Array): AgentReply | undefined {
  let i = 0;
  while (i < line.length && line[i] === 0xff) i++;
  try {
    const v = JSON.parse(new TextDecoder().decode(line.subarray(i)));
    return v !== null && typeof v === "object" && !Array.isArray(v) ? v as AgentReply : undefined;
  } catch {
    return undefined;
  }
}

let lastId = 0;
function freshId(): number {
  lastId = Math.max(lastId + 1, Date.now() % 1_000_000_000_000);
  return lastId;
}

/** The agent's chardev socket, as libvirt or Proxmox use it. */
export class AgentLink {
  #ch: Channel;

  private constructor(ch: Channel) {
    this.#ch = ch;
  }

  /** Connects to the chardev socket (QEMU accepts the connection whether or not an agent runs). */
  static async open(path: string, timeoutMs = 20_000): Promise<AgentLink> {
    return new AgentLink(await Channel.connect(path, timeoutMs));
  }

  /**
   * qemu-ga's resync (0xFF, guest-sync-delimited), repeated with a fresh id every `everyMs`
   * until the agent answers one of them, and then once more, waiting for that id alone, so
   * that no stale reply is left to be read as the answer to the next request. Requests sent
   * while no agent reads stay queued in the port and are answered by the next agent.
   * Resolves to the time of the first answer (Date.now()); throws after `timeoutMs`.
   */
  async sync(timeoutMs: number, everyMs = 500): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    const sent = new Set<number>();
    let lastSent = 0;
    let answeredAt: number | undefined;
    while (answeredAt === undefined) {
      const now = Date.now();
      if (now >= deadline) {
        throw new Error(
          `no reply to guest-sync-delimited within ${timeoutMs} ms (${sent.size} attempts); ` +
            `buffered ${excerpt(this.#ch.buffered)}`,
        );
      }
      if (now - lastSent >= everyMs) {
        const id = freshId();
        sent.add(id);
        lastSent = now;
        // While no agent reads the port QEMU stops reading the socket, and once its buffer
        // is full a write waits: never past the deadline.
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<"late">((r) => {
          timer = setTimeout(() => r("late"), deadline - now);
        });
        const write = this.#sendSync(id);
        write.catch(() => {}); // A write given up on may fail later (QEMU gone): not ours.
        const wrote = await Promise.race([write, late]);
        clearTimeout(timer);
        if (wrote === "late") continue;
      }
      const line = await this.#ch.line(Math.min(100, Math.max(1, deadline - Date.now())));
      if (line === "eof") throw new Error("the chardev socket closed");
      if (line === "timeout") continue;
      const r = parseReply(line);
      if (typeof r?.return === "number" && sent.has(r.return)) answeredAt = Date.now();
    }
    const id = freshId();
    await this.#sendSync(id);
    const until = Math.max(deadline, Date.now() + 10_000);
    for (;;) {
      const line = await this.#ch.line(Math.max(1, until - Date.now()));
      if (typeof line === "string") {
        throw new Error(`the agent answered a sync, then not the next one (${line})`);
      }
      if (parseReply(line)?.return === id) return answeredAt;
    }
  }

  async #sendSync(id: number): Promise<void> {
    await this.#ch.write(
      Uint8Array.from([
        0xff,
        ...new TextEncoder().encode(
          `{"execute":"guest-sync-delimited","arguments":{"id":${id}}}\n`,
        ),
      ]),
    );
  }

  /** Sends one command and reads its reply (after a {@linkcode AgentLink.sync}). */
  async call(execute: string, args?: unknown, timeoutMs = 30_000): Promise<AgentReply> {
    await this.#ch.write(
      JSON.stringify(args === undefined ? { execute } : { execute, arguments: args }) + "\n",
    );
    const line = await this.#ch.line(timeoutMs);
    if (typeof line === "string") throw new Error(`${execute}: no reply (${line})`);
    const r = parseReply(line);
    if (!r) throw new Error(`${execute}: not a JSON object: ${excerpt(line)}`);
    return r;
  }

  /** Sends a command whose success has no reply (guest-shutdown). */
  async send(execute: string, args?: unknown): Promise<void> {
    await this.#ch.write(
      JSON.stringify(args === undefined ? { execute } : { execute, arguments: args }) + "\n",
    );
  }

  /** Like {@linkcode AgentLink.call}, but throws on an error reply; returns `return`. */
  async ok(execute: string, args?: unknown, timeoutMs = 30_000): Promise<unknown> {
    const r = await this.call(execute, args, timeoutMs);
    if (r.error || !("return" in r)) {
      throw new Error(`${execute}: ${JSON.stringify(r)}`);
    }
    return r.return;
  }

  close(): Promise<void> {
    return this.#ch.close();
  }
}

/** A QMP event. */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

/** QEMU's machine monitor (QMP) on a unix socket. */
export class Qmp {
  #ch: Channel;
  #events: QmpEvent[] = [];
  #id = 0;

  private constructor(ch: Channel) {
    this.#ch = ch;
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(path: string, timeoutMs = 20_000): Promise<Qmp> {
    const q = new Qmp(await Channel.connect(path, timeoutMs));
    const greeting = await q.#next(timeoutMs);
    if (!("QMP" in greeting)) throw new Error(`not a QMP greeting: ${JSON.stringify(greeting)}`);
    await q.execute("qmp_capabilities");
    return q;
  }

  async #next(timeoutMs: number): Promise<Record<string, unknown>> {
    const line = await this.#ch.line(timeoutMs);
    if (typeof line === "string") throw new Error(`QMP: no message (${line})`);
    return JSON.parse(new TextDecoder().decode(line));
  }

  /** Runs a command; resolves to its `return`, throws on `error`. Events are kept. */
  async execute(command: string, args?: Record<string, unknown>, timeoutMs = 20_000) {
    const id = `q${++this.#id}`;
    await this.#ch.write(JSON.stringify({ execute: command, arguments: args ?? {}, id }) + "\n");
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = await this.#next(Math.max(1, deadline - Date.now()));
      if ("event" in m) {
        this.#events.push(m as unknown as QmpEvent);
        continue;
      }
      if (m.id !== id) continue;
      if (m.error) throw new Error(`QMP ${command}: ${JSON.stringify(m.error)}`);
      return m.return;
    }
  }

  /** Waits for an event named `name` (one already received counts) and takes it. */
  async waitEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.#events.findIndex((e) => e.event === name);
      if (i >= 0) return this.#events.splice(i, 1)[0]!;
      const m = await this.#next(Math.max(1, deadline - Date.now()));
      if ("event" in m) this.#events.push(m as unknown as QmpEvent);
    }
  }

  close(): Promise<void> {
    return this.#ch.close();
  }
}
