/**
 * How each real client talks to the agent's host socket, byte for byte (clients.md):
 * - {@linkcode LibvirtSession}: one connection, plain `guest-sync` with a millisecond id (note
 *   the space after the first comma), then compact commands without `arguments` when there are
 *   none; every line the agent writes must be one JSON object with return/error (W7).
 *   KubeVirt goes through the same libvirt path ({@linkcode LibvirtSession.raw}).
 * - {@linkcode pveCommand}: Proxmox VE, a new connection per command, sync-delimited and the
 *   command in one write, the reply cut out with QMPClient.pm's regex.
 * - {@linkcode resync}: the qemu-ga documented handshake (0xFF, sync-delimited).
 *
 * Every helper records failures in a {@linkcode Conversation} instead of throwing.
 *
 * @module
 */

import { Channel, excerpt, latin1 } from "./channel.ts";
import { Checker, compact, isObject, Num, parseRaw, type Raw, type RawObject } from "./raw_json.ts";

/** libvirt's limit on one reply line (QEMU_AGENT_MAX_RESPONSE). */
const MAX_LINE = 10 * 1024 * 1024;

/** State of one conversation run against one agent. */
export class Conversation extends Checker {
  /** Commands the agent answered with CommandNotFound "has not been found". */
  readonly notBuilt = new Set<string>();
  #lastId = 0;

  /** A strictly increasing millisecond-time id (libvirt's `virTimeMillisNow()`). */
  msId(): number {
    this.#lastId = Math.max(this.#lastId + 1, Date.now());
    return this.#lastId;
  }

  /** Notes a reply error; marks the command not built when the agent does not have it. */
  noteError(command: string, err: AgentError): void {
    if (err.class === "CommandNotFound" && /has not been found/.test(err.desc)) {
      this.notBuilt.add(command);
    }
  }
}

/** An `error` member as the agent sent it. */
export interface AgentError {
  class: string;
  desc: string;
}

/** One reply line. */
export interface Reply {
  /** The line as text (without `\n`). */
  text: string;
  /** The parsed object. */
  value: RawObject;
  /** `return`, when present. */
  ret: Raw | undefined;
  /** `error`, when present. */
  error: AgentError | undefined;
  /** Milliseconds from request to reply. */
  ms: number;
}

const STRICT_UTF8 = new TextDecoder("utf-8", { fatal: true });

function errorOf(v: RawObject): AgentError | undefined {
  const e = v.error;
  if (!isObject(e)) return undefined;
  return {
    class: typeof e.class === "string" ? e.class : String(e.class),
    desc: typeof e.desc === "string" ? e.desc : String(e.desc),
  };
}

/** Parses one reply line strictly (UTF-8, one JSON object); returns a reason on failure. */
export function parseLine(line: Uint8Array): { value: RawObject; text: string } | string {
  let text: string;
  try {
    text = STRICT_UTF8.decode(line);
  } catch {
    return `line is not valid UTF-8: ${excerpt(line)}`;
  }
  let value: Raw;
  try {
    value = parseRaw(text);
  } catch {
    return `line is not one JSON value: ${excerpt(text)}`;
  }
  if (!isObject(value)) return `line is not a JSON object: ${excerpt(text)}`;
  return { value, text };
}

/**
 * A libvirt connection to the agent (qemu_agent.c): syncs once with plain guest-sync, then
 * sends commands one at a time and waits for the reply line.
 */
export class LibvirtSession {
  #ch: Channel;
  #c: Conversation;
  #label: string;

  private constructor(ch: Channel, c: Conversation, label: string) {
    this.#ch = ch;
    this.#c = c;
    this.#label = label;
  }

  /**
   * Connects and performs libvirt's handshake (clients.md §1.2): `guest-sync` with the time in
   * ms; error replies, other ids and non-number returns are skipped; a non-JSON line during
   * the first sync makes libvirt send a second sync. Returns undefined (with a reason) when
   * the sync fails; libvirt would then report the agent unresponsive.
   */
  static async open(
    c: Conversation,
    path: string,
    label = "libvirt",
  ): Promise<LibvirtSession | undefined> {
    const ch = await Channel.connect(path);
    const s = new LibvirtSession(ch, c, label);
    if (await s.sync(true)) return s;
    await ch.close();
    return undefined;
  }

  /** The underlying channel. */
  get channel(): Channel {
    return this.#ch;
  }

  /** One guest-sync round (W1). `first`: garbage is tolerated once (W6). */
  async sync(first: boolean, timeoutMs = 5000): Promise<boolean> {
    for (let attempt = 0; attempt < (first ? 2 : 1); attempt++) {
      const id = this.#c.msId();
      await this.#ch.write(`{"execute":"guest-sync", "arguments":{"id":${id}}}\n`);
      const deadline = Date.now() + timeoutMs;
      let garbage = false;
      while (!garbage) {
        const line = await this.#ch.line(deadline - Date.now());
        if (line === "timeout") {
          this.#c.fail(`${this.#label}: no guest-sync reply within ${timeoutMs} ms`);
          return false;
        }
        if (line === "eof") {
          this.#c.fail(`${this.#label}: connection closed during guest-sync`);
          return false;
        }
        const parsed = parseLine(line);
        if (typeof parsed === "string") {
          // "receiving garbage on first sync is regular situation"
          garbage = true;
          if (attempt === 1 || !first) {
            this.#c.fail(`${this.#label}: guest-sync: ${parsed}`);
            return false;
          }
          continue;
        }
        const ret = parsed.value.return;
        if (!(ret instanceof Num)) continue; // error replies and non-numbers are skipped
        if (ret.source !== String(id)) continue; // "Ignoring delayed reply on sync"
        this.#c.expect(
          !line.includes(0xff),
          `${this.#label}: guest-sync reply contains 0xFF: ${excerpt(line)}`,
        );
        return true;
      }
    }
    return false;
  }

  /**
   * Sends a command as libvirt does (`{"execute":name}` or with `arguments`) and waits for the
   * reply. Every line read is checked against W7. Returns undefined (with a reason) when no
   * reply came.
   */
  async run(
    execute: string,
    args?: Record<string, unknown>,
    timeoutMs = 30_000,
  ): Promise<Reply | undefined> {
    const request = args === undefined
      ? JSON.stringify({ execute })
      : JSON.stringify({ execute, arguments: args });
    return await this.send(execute, request + "\n", timeoutMs);
  }

  /** Sends raw request bytes and waits for the reply to `command`. */
  async send(command: string, request: string, timeoutMs: number): Promise<Reply | undefined> {
    const t0 = Date.now();
    await this.#ch.write(request);
    const deadline = t0 + timeoutMs;
    for (;;) {
      const line = await this.#ch.line(deadline - Date.now());
      if (line === "timeout") {
        this.#c.fail(`${this.#label}: ${command}: no reply within ${timeoutMs} ms`);
        return undefined;
      }
      if (line === "eof") {
        this.#c.fail(`${this.#label}: ${command}: agent disappeared while executing command`);
        return undefined;
      }
      const parsed = this.#w7(command, line);
      if (!parsed) return undefined;
      const v = parsed.value;
      if ("QMP" in v || "event" in v) continue;
      const reply: Reply = {
        text: parsed.text,
        value: v,
        ret: v.return,
        error: errorOf(v),
        ms: Date.now() - t0,
      };
      if (reply.error) this.#c.noteError(command, reply.error);
      return reply;
    }
  }

  /**
   * KubeVirt's raw path: `virsh qemu-agent-command`-style (libvirt re-serialises the request
   * and the reply compactly, 5 s limit). Returns the compact reply text libvirt hands back.
   */
  async raw(
    execute: string,
    args?: Record<string, unknown>,
    timeoutMs = 5000,
  ): Promise<{ reply: Reply; compact: string } | undefined> {
    const reply = await this.run(execute, args, timeoutMs);
    if (!reply) return undefined;
    return { reply, compact: compact(reply.value) };
  }

  #w7(command: string, line: Uint8Array): { value: RawObject; text: string } | undefined {
    const p = `${this.#label}: ${command}: W7`;
    if (line.length > MAX_LINE) {
      this.#c.fail(`${p}: reply line of ${line.length} bytes exceeds 10 MiB`);
      return undefined;
    }
    if (line.includes(0xff)) {
      this.#c.fail(`${p}: 0xFF in a line to libvirt: ${excerpt(line)}`);
      return undefined;
    }
    const parsed = parseLine(line);
    if (typeof parsed === "string") {
      this.#c.fail(`${p}: ${parsed} (libvirt marks the agent broken)`);
      return undefined;
    }
    const v = parsed.value;
    if (!("return" in v || "error" in v || "QMP" in v || "event" in v)) {
      this.#c.fail(`${p}: "Unknown JSON reply" ${excerpt(parsed.text)}`);
      return undefined;
    }
    if ("event" in v && typeof v.event !== "string") {
      this.#c.fail(`${p}: event without a string name`);
      return undefined;
    }
    return parsed;
  }

  /**
   * Checks the agent sent nothing more (W7: no unsolicited output), then closes.
   * `quietMs`: how long to listen for stray bytes.
   */
  async close(quietMs = 300): Promise<void> {
    const extra = await this.#ch.drain(quietMs);
    this.#c.expect(
      extra.length === 0,
      `${this.#label}: unsolicited output after the last reply: ${excerpt(extra)}`,
    );
    await this.#ch.close();
  }
}

/** Result of {@linkcode pveCommand}. */
export interface PveReply {
  /** The whole byte stream received. */
  bytes: Uint8Array;
  /** The command reply (undefined when the agent closed or stayed silent, as allowed). */
  reply: Reply | undefined;
  /** True when the connection ended (EOF) before a command reply. */
  eof: boolean;
  /** Milliseconds from the write to the match (or EOF). */
  ms: number;
}

/** Options of {@linkcode pveCommand}. */
export interface PveOptions {
  /** Proxmox's limit for this command (cmd(): 3 s ping, 5 s default). */
  timeoutMs?: number;
  /**
   * guest-shutdown / guest-suspend-*: EOF or silence after the sync reply is fine
   * (`$qga_allow_close_cmds`); `silenceMs` is how long to wait for a command reply.
   */
  allowNoReply?: { silenceMs: number };
}

const PVE_REPLY = /^[\s\S]*\xff([^\n]+}\r?\n[^\n]+})\r?\n([\s\S]*)$/;
const PVE_SYNC_ONLY = /^[\s\S]*\xff([^\n]+})\r?\n?$/;

/** Perl's `encode_base64($bytes)`: a `\n` after every 76 characters and at the end. */
export function perlBase64(bytes: Uint8Array): string {
  const b = bytes.toBase64();
  let out = "";
  for (let i = 0; i < b.length; i += 76) out += b.slice(i, i + 76) + "\n";
  return out;
}

/**
 * One Proxmox VE agent command (QMPClient.pm): a new connection; the sync-delimited request
 * and the command (always with `arguments`) in one write; the stream must match
 * `^.*\xff([^\n]+}\r?\n[^\n]+})\r?\n(.*)$` with the sync reply's return equal to the id.
 */
export async function pveCommand(
  c: Conversation,
  path: string,
  id: number,
  command: string,
  args: Record<string, unknown> = {},
  options: PveOptions = {},
): Promise<PveReply | undefined> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const ch = await Channel.connect(path);
  const tag = `Proxmox VE: ${command}`;
  try {
    const t0 = Date.now();
    await ch.write(
      `{"execute":"guest-sync-delimited","arguments":{"id":${id}}}\n` +
        JSON.stringify({ execute: command, arguments: args }) + "\n",
    );
    const waitMs = options.allowNoReply ? options.allowNoReply.silenceMs : timeoutMs;
    const r = await ch.take((b) => PVE_REPLY.test(latin1(b)) ? b.length : -1, waitMs);
    const ms = Date.now() - t0;
    const syncCheck = (line: string): boolean => {
      const parsed = parseLine(Uint8Array.from(line, (ch) => ch.charCodeAt(0)));
      if (typeof parsed === "string") {
        c.fail(`${tag}: sync reply: ${parsed}`);
        return false;
      }
      const ret = parsed.value.return;
      if (!(ret instanceof Num) || ret.source !== String(id)) {
        c.fail(`${tag}: got wrong command id in ${excerpt(line)} (expected ${id})`);
        return false;
      }
      return true;
    };
    if (r.end !== "match") {
      const bytes = ch.buffered;
      const m = PVE_SYNC_ONLY.exec(latin1(bytes));
      if (options.allowNoReply && m && syncCheck(m[1]!)) {
        return { bytes, reply: undefined, eof: r.end === "eof", ms };
      }
      c.fail(
        `${tag}: ${
          r.end === "eof" ? "connection closed" : `no reply within ${waitMs} ms`
        }; received ${excerpt(bytes)}`,
      );
      return undefined;
    }
    const m = PVE_REPLY.exec(latin1(r.bytes))!;
    const [syncLine, cmdLine] = m[1]!.split("\n").map((l) => l.replace(/\r$/, ""));
    if (!syncCheck(syncLine!)) return undefined;
    const parsed = parseLine(Uint8Array.from(cmdLine!, (ch) => ch.charCodeAt(0)));
    if (typeof parsed === "string") {
      c.fail(`${tag}: reply: ${parsed}`);
      return undefined;
    }
    const reply: Reply = {
      text: parsed.text,
      value: parsed.value,
      ret: parsed.value.return,
      error: errorOf(parsed.value),
      ms,
    };
    if (reply.error) c.noteError(command, reply.error);
    return { bytes: r.bytes, reply, eof: false, ms };
  } finally {
    await ch.close();
  }
}

/**
 * qemu-ga's documented resync on a raw channel (qga-reference.md §1.7): 0xFF, then
 * guest-sync-delimited; discard up to the 0xFF and read lines until `return` equals the id.
 */
export async function resync(
  c: Conversation,
  ch: Channel,
  id: number,
  timeoutMs = 5000,
  label = "resync",
): Promise<boolean> {
  await ch.write(
    Uint8Array.from([
      0xff,
      ...new TextEncoder().encode(
        `{"execute":"guest-sync-delimited","arguments":{"id":${id}}}\n`,
      ),
    ]),
  );
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await ch.take((b) => {
      const i = b.indexOf(0xff);
      return i < 0 ? -1 : i + 1;
    }, deadline - Date.now());
    if (r.end !== "match") {
      c.fail(`${label}: no 0xFF within ${timeoutMs} ms (${r.end}); got ${excerpt(ch.buffered)}`);
      return false;
    }
    for (;;) {
      const line = await ch.line(deadline - Date.now());
      if (typeof line === "string") {
        c.fail(`${label}: no sync reply after 0xFF (${line}); got ${excerpt(ch.buffered)}`);
        return false;
      }
      const parsed = parseLine(line);
      if (typeof parsed !== "string") {
        const ret = parsed.value.return;
        if (ret instanceof Num && ret.source === String(id)) return true;
      }
      // a stale reply; if another 0xFF is pending, restart from it
      if (ch.buffered.includes(0xff)) break;
    }
  }
}

/** Sends one raw request line on a synced channel and reads one reply line. */
export async function request(
  c: Conversation,
  ch: Channel,
  command: string,
  text: string,
  timeoutMs = 10_000,
): Promise<Reply | undefined> {
  const t0 = Date.now();
  await ch.write(text.endsWith("\n") ? text : text + "\n");
  const line = await ch.line(timeoutMs);
  if (typeof line === "string") {
    c.fail(`${command}: no reply (${line} after ${timeoutMs} ms)`);
    return undefined;
  }
  const parsed = parseLine(line);
  if (typeof parsed === "string") {
    c.fail(`${command}: ${parsed}`);
    return undefined;
  }
  const reply: Reply = {
    text: parsed.text,
    value: parsed.value,
    ret: parsed.value.return,
    error: errorOf(parsed.value),
    ms: Date.now() - t0,
  };
  if (reply.error) c.noteError(command, reply.error);
  return reply;
}

/** Records a failure when the reply is an error (or missing); returns `return` otherwise. */
export function okReturn(c: Conversation, what: string, reply: Reply | undefined): Raw | undefined {
  if (!reply) return undefined;
  if (reply.error) {
    c.fail(`${what}: error ${reply.error.class}: ${reply.error.desc}`);
    return undefined;
  }
  if (!("return" in reply.value)) {
    c.fail(`${what}: reply has neither return nor error: ${excerpt(reply.text)}`);
    return undefined;
  }
  return reply.ret;
}
