/**
 * A seeded, repeatable fuzzer of the agent's input path (issue 8): random bytes,
 * mutated valid requests, deep nesting, huge strings and numbers, invalid UTF-8,
 * 0xFF in odd places, requests split at every byte, and wrong-typed arguments for
 * every command of the table. After each case the client resyncs with 0xFF +
 * guest-sync-delimited; the agent must answer it, so a crash or a hang is found
 * at the case that caused it.
 *
 * Safety: a case never runs a command that changes the machine. Stream cases are
 * built from read-only requests and run against agents started with every
 * dangerous command blocked; wrong-type cases are checked with the agent's own
 * validator before sending and only sent when validation must fail.
 *
 * @module
 */

import { COMMANDS } from "../../commands/mod.ts";
import { NO_ARGS, type StructDesc, type TypeDesc } from "../../protocol/types.ts";
import { validateArguments } from "../../protocol/validate.ts";
import { JsonStream } from "../../protocol/json_stream.ts";
import { isObject } from "../../protocol/value.ts";

const enc = new TextEncoder();

/** mulberry32: small, fast, seeded. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  next(): number {
    let t = (this.#s = (this.#s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
}

/** One fuzz case: the writes to send (split points included). */
export interface FuzzCase {
  kind: string;
  writes: Uint8Array[];
}

/** Read-only requests mutations start from. */
export const SEED_REQUESTS: readonly string[] = [
  '{"execute":"guest-ping"}',
  '{"execute":"guest-ping","id":"x"}',
  '{"execute":"guest-ping","id":{"a":[1,2.5,"c"],"b":null}}',
  '{"execute":"guest-sync","arguments":{"id":123}}',
  '{"execute":"guest-sync-delimited","arguments":{"id":-9}}',
  "{'execute':'guest-sync','arguments':{'id':18446744073709551615}}",
  '{"execute":"guest-ping","arguments":{}}',
  '{"execute":"guest-fsfreeze-status"}',
  '{"execute":"guest-sync","arguments":{"id":"\\u00e9\\ud83d\\ude00"}}',
  '{"execute":"guest-nope","id":[true,false,null]}',
  '{"execute":"guest-file-read","arguments":{"handle":1000,"count":12}}',
  '{"execute":"guest-file-seek","arguments":{"handle":1000,"offset":0,"whence":"set"}}',
  '{"execute":"guest-file-close","arguments":{"handle":99999}}',
];

const STRUCTURAL = [..."{}[]:,\"'\\ \t\n"].map((c) => c.charCodeAt(0));

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function mutate(rng: Rng, src: Uint8Array): Uint8Array {
  const b = [...src];
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(b.length + 1);
    switch (rng.int(7)) {
      case 0:
        if (b.length) b[rng.int(b.length)] = rng.int(256);
        break;
      case 1:
        b.splice(at, 0, rng.int(256));
        break;
      case 2:
        b.splice(at, 1 + rng.int(3));
        break;
      case 3:
        b.splice(at, 0, rng.pick(STRUCTURAL));
        break;
      case 4:
        b.splice(at, 0, 0xff);
        break;
      case 5: {
        const from = rng.int(b.length + 1);
        b.splice(at, 0, ...b.slice(from, from + 1 + rng.int(8)));
        break;
      }
      case 6:
        b.splice(
          at,
          0,
          ...rng.pick([[0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xc0, 0x80], [0xef, 0xbf, 0xbf], [
            0,
          ]]),
        );
        break;
    }
  }
  return new Uint8Array(b);
}

function splitRandom(rng: Rng, b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let i = 0;
  while (i < b.length) {
    const n = 1 + rng.int(Math.max(1, Math.min(64, b.length)));
    out.push(b.subarray(i, i + n));
    i += n;
  }
  return out;
}

/** A JSON text of a value of the wrong type for `t` (any value when `t` is undefined). */
function wrongValue(rng: Rng, t: TypeDesc | undefined): string {
  const all = [
    "1",
    "-1",
    "1.5",
    "1e400",
    "18446744073709551616",
    '"s"',
    "true",
    "null",
    "[]",
    "{}",
    '["a",1]',
    '{"x":1}',
  ];
  const bad = all.filter((v) => {
    switch (t?.kind) {
      case "int":
        return !/^-?\d+$/.test(v) || v === "18446744073709551616";
      case "uint64":
        return !/^-?\d+$/.test(v) || v === "18446744073709551616";
      case "number":
        return !/^-?[\d.e]+$/.test(v);
      case "bool":
        return v !== "true";
      case "str":
      case "enum":
        return !v.startsWith('"');
      case "array":
        return !v.startsWith("[");
      case "struct":
        return !v.startsWith("{");
      default:
        return true;
    }
  });
  return rng.pick(bad.length ? bad : all);
}

function validValue(rng: Rng, t: TypeDesc): string {
  switch (t.kind) {
    case "int":
    case "uint64":
      return String(rng.int(2000));
    case "number":
      return "1.5";
    case "bool":
      return rng.next() < 0.5 ? "true" : "false";
    case "str":
      return '"/nonexistent/fuzz"';
    case "enum":
      return JSON.stringify(t.values[0] ?? "");
    case "array":
      return `[${validValue(rng, t.of)}]`;
    case "struct":
      return `{${
        t.members.filter((m) => !m.optional).map((m) => `"${m.name}":${validValue(rng, m.type)}`)
          .join(",")
      }}`;
    case "alternate":
      return t.num ? "0" : t.str ? validValue(rng, t.str) : "true";
    default:
      return "null";
  }
}

/** True when the agent's validator rejects these arguments (so no handler runs). */
export function failsValidation(argsJson: string, desc: StructDesc): boolean {
  let value: unknown;
  new JsonStream((e) => (value = e.value ?? value)).feed(enc.encode(argsJson + " "));
  if (!isObject(value as never)) return true;
  try {
    validateArguments(value as never, desc);
    return false;
  } catch {
    return true;
  }
}

/** A request for `cmd` with at least one wrong-typed or unexpected argument, or undefined. */
export function wrongTypeRequest(rng: Rng, name: string, desc: StructDesc): string | undefined {
  const members = desc.members;
  const parts: string[] = [];
  const wrongAt = members.length ? rng.int(members.length + 1) : members.length;
  members.forEach((m, i) => {
    if (i === wrongAt) parts.push(`"${m.name}":${wrongValue(rng, m.type)}`);
    else if (!m.optional || rng.next() < 0.5) parts.push(`"${m.name}":${validValue(rng, m.type)}`);
  });
  if (wrongAt === members.length) {
    parts.push(`"fuzz${rng.int(10)}":${wrongValue(rng, undefined)}`);
  }
  const args = `{${parts.join(",")}}`;
  if (!failsValidation(args, desc)) return undefined;
  return `{"execute":"${name}","arguments":${args}}`;
}

/** Generates `count` cases from `seed`. */
export function* generateCases(seed: number, count: number): Generator<FuzzCase> {
  const rng = new Rng(seed);
  for (let i = 0; i < count; i++) {
    const kind = rng.int(100);
    if (kind < 30) {
      const src = enc.encode(rng.pick(SEED_REQUESTS));
      const m = mutate(rng, src);
      yield { kind: "mutated", writes: rng.next() < 0.3 ? splitRandom(rng, m) : [m] };
    } else if (kind < 45) {
      yield { kind: "random-bytes", writes: [rng.bytes(1 + rng.int(200))] };
    } else if (kind < 70) {
      const cmd = rng.pick(COMMANDS);
      const req = wrongTypeRequest(rng, cmd.name, cmd.args ?? NO_ARGS);
      if (req) yield { kind: "wrong-type", writes: [enc.encode(req)] };
      else yield { kind: "ping", writes: [enc.encode('{"execute":"guest-ping"}')] };
    } else if (kind < 78) {
      const src = enc.encode(rng.pick(SEED_REQUESTS));
      yield { kind: "split-every-byte", writes: [...src].map((x) => new Uint8Array([x])) };
    } else if (kind < 84) {
      const open = rng.pick(["[", '{"a":']);
      const depth = rng.pick([1023, 1024, 1025, 2000]);
      yield { kind: "deep-nesting", writes: [enc.encode(open.repeat(depth))] };
    } else if (kind < 90) {
      const len = rng.pick([1000, 65536, 1 << 20]);
      const body = rng.next() < 0.5 ? "a".repeat(len) : "\\u00e9".repeat(len / 6);
      yield {
        kind: "huge-string",
        writes: [enc.encode(`{"execute":"guest-ping","id":"${body}"}`)],
      };
    } else if (kind < 94) {
      const digits = "9".repeat(1 + rng.int(400));
      yield {
        kind: "huge-number",
        writes: [
          enc.encode(
            `{"execute":"guest-sync","arguments":{"id":${rng.next() < 0.5 ? "-" : ""}${digits}}}`,
          ),
        ],
      };
    } else if (kind < 97) {
      const src = enc.encode(rng.pick(SEED_REQUESTS));
      const at = rng.int(src.length);
      yield {
        kind: "ff-inside",
        writes: [concat([src.subarray(0, at), new Uint8Array([0xff]), src.subarray(at)])],
      };
    } else {
      const bad = rng.pick([[0xc3, 0x28], [0xa0, 0xa1], [0xe2, 0x28, 0xa1], [
        0xf0,
        0x90,
        0x28,
        0xbc,
      ], [0xed, 0xa0, 0x80]]);
      yield {
        kind: "invalid-utf8",
        writes: [
          concat([
            enc.encode('{"execute":"guest-ping","id":"'),
            new Uint8Array(bad),
            enc.encode('"}'),
          ]),
        ],
      };
    }
  }
}

/** A client that runs cases and resyncs after each. */
export class FuzzClient {
  readonly #conn: Deno.UnixConn;
  #buf = new Uint8Array(0);
  #id = 1;

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  static async connect(path: string): Promise<FuzzClient> {
    return new FuzzClient(await Deno.connect({ transport: "unix", path }));
  }

  async #writeAll(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) off += await this.#conn.write(b.subarray(off));
  }

  /**
   * Sends the case, then 0xFF + guest-sync-delimited; returns every byte the agent
   * wrote before the sync reply. Throws on timeout (a hang) or EOF (a crash).
   */
  async run(c: FuzzCase, timeoutMs = 10_000): Promise<Uint8Array> {
    const id = this.#id++;
    for (const w of c.writes) await this.#writeAll(w);
    const sync = enc.encode(`{"execute":"guest-sync-delimited","arguments":{"id":${id}}}`);
    await this.#writeAll(concat([new Uint8Array([0xff]), sync]));
    return await this.#readUntil(enc.encode(`{"return": ${id}}\n`), timeoutMs);
  }

  async #readUntil(marker: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const full = new Uint8Array(marker.length + 1);
    full[0] = 0xff;
    full.set(marker, 1);
    const deadline = Date.now() + timeoutMs;
    const chunk = new Uint8Array(1 << 16);
    for (;;) {
      const at = indexOf(this.#buf, full);
      if (at >= 0) {
        const before = this.#buf.slice(0, at);
        this.#buf = this.#buf.slice(at + full.length);
        return before;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timed out waiting for the sync reply (agent hung?)");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const n = await Promise.race([
        this.#conn.read(chunk),
        new Promise<"timeout">((r) => (timer = setTimeout(() => r("timeout"), left))),
      ]);
      clearTimeout(timer);
      if (n === "timeout") throw new Error("timed out waiting for the sync reply (agent hung?)");
      if (n === null) throw new Error("agent closed the connection (crashed?)");
      const b = new Uint8Array(this.#buf.length + n);
      b.set(this.#buf);
      b.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = b;
    }
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
