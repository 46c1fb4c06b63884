/**
 * QgaClient against a scripted in-memory agent: synchronisation, stale replies, timeouts,
 * split and huge replies, no-reply commands, exact integers.
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test tests/unit/client_protocol_test.ts
 */

import assert from "node:assert/strict";
import {
  type ByteChannel,
  parseJson,
  QgaClient,
  QgaConnectionError,
  QgaProtocolError,
  QgaReplyError,
  QgaTimeoutError,
  stringifyJson,
} from "../../client/mod.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const STRAY_FF =
  '{"error": {"class": "GenericError", "desc": "JSON parse error, stray \'\\uFFFD\'"}}';

type Request = { execute: string; arguments?: { [key: string]: unknown } };
/** Answers a request with reply lines (without newline); a leading "\xff" is the sentinel. */
type Behaviour = (request: Request) => string[] | "close";

/**
 * A minimal qemu-ga model behind a ByteChannel: every 0xFF gives the stray-byte error, each
 * newline-terminated request gets what `behaviour` answers, output is delivered in pieces of
 * random size.
 */
class FakeAgent implements ByteChannel {
  readonly requests: Request[] = [];
  #output: Uint8Array[] = [];
  #input = "";
  #waiter: (() => void) | null = null;
  #closed = false;
  #behaviour: Behaviour;
  #maxPiece: number;

  constructor(behaviour: Behaviour, options: { stale?: string; maxPiece?: number } = {}) {
    this.#behaviour = behaviour;
    this.#maxPiece = options.maxPiece ?? 7;
    if (options.stale !== undefined) this.#emit(options.stale);
  }

  #emit(text: string): void {
    // "\xff" stands for the single sentinel byte; everything else the agent writes is ASCII.
    const bytes = text.includes("\xff")
      ? Uint8Array.from(text, (char) => char.charCodeAt(0))
      : encoder.encode(text);
    this.#output.push(bytes);
    this.#waiter?.();
  }

  read(p: Uint8Array): Promise<number | null> {
    const next = this.#output[0];
    if (next !== undefined) {
      const size = Math.min(p.length, next.length, 1 + Math.floor(Math.random() * this.#maxPiece));
      p.set(next.subarray(0, size));
      if (size === next.length) this.#output.shift();
      else this.#output[0] = next.subarray(size);
      return Promise.resolve(size);
    }
    if (this.#closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.#waiter = () => {
        this.#waiter = null;
        resolve(this.read(p));
      };
    });
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#closed) return Promise.reject(new Error("Broken pipe"));
    for (const byte of p) {
      if (byte === 0xff) {
        this.#input = "";
        this.#emit(STRAY_FF + "\n");
      } else if (byte === 0x0a) {
        const line = this.#input;
        this.#input = "";
        this.#handle(parseJson(line) as Request);
      } else {
        this.#input += String.fromCharCode(byte);
      }
    }
    return Promise.resolve(p.length);
  }

  #handle(request: Request): void {
    this.requests.push(request);
    const answer = this.#behaviour(request);
    if (answer === "close") this.close();
    else for (const line of answer) this.#emit(line + "\n");
  }

  close(): void {
    this.#closed = true;
    this.#waiter?.();
  }
}

/** qemu-ga's answers to the few commands these tests use. */
function qemuGaLike(request: Request): string[] {
  const id = request.arguments?.id;
  switch (request.execute) {
    case "guest-sync-delimited":
      return [`\xff{"return": ${stringifyJson(id)}}`];
    case "guest-sync":
      return [`{"return": ${stringifyJson(id)}}`];
    case "guest-ping":
      return ['{"return": {}}'];
    case "guest-shutdown":
      return request.arguments?.mode === "bogus"
        ? ['{"error": {"class": "GenericError", "desc": "mode is invalid"}}']
        : [];
    default:
      return [
        `{"error": {"class": "CommandNotFound", "desc": "The command ${request.execute} has not been found"}}`,
      ];
  }
}

function syncIds(agent: FakeAgent): unknown[] {
  return agent.requests.filter((r) => r.execute === "guest-sync-delimited").map((r) =>
    r.arguments?.id
  );
}

Deno.test("sync skips stale replies, old sentinels and the error for its own 0xFF", async () => {
  const stale = '{"return": 5}\n\xff{"return": 99}\n{"return": {}}\n\xff{"return": 7}\n{"ret';
  const agent = new FakeAgent(qemuGaLike, { stale });
  const client = new QgaClient(agent, { autoSync: false });
  const id = await client.sync();
  assert.deepEqual(syncIds(agent), [id]);
  assert.deepEqual(await client.execute("guest-ping"), {});
  assert.equal(await client.execute("guest-sync", { id: 3 }), 3);
  await client.close();
});

Deno.test("sync repeats with a fresh id when the agent does not answer in time", async () => {
  let dropped = 0;
  const agent = new FakeAgent((request) => {
    if (request.execute === "guest-sync-delimited" && dropped < 2) {
      dropped++;
      return [];
    }
    return qemuGaLike(request);
  });
  const client = new QgaClient(agent, { syncTimeoutMs: 30 });
  const id = await client.sync();
  const ids = syncIds(agent);
  assert.equal(ids.length, 3);
  assert.equal(new Set(ids).size, 3);
  assert.equal(ids[2], id);
  for (const each of ids) assert.ok(Number.isSafeInteger(each) && (each as number) < 2 ** 53);
  await client.close();
});

Deno.test("sync gives up with QgaTimeoutError after the configured attempts", async () => {
  const agent = new FakeAgent(() => []);
  const client = new QgaClient(agent, { syncTimeoutMs: 20, syncAttempts: 4 });
  await assert.rejects(client.sync(), /did not answer guest-sync-delimited \(4 attempts\)/);
  assert.equal(syncIds(agent).length, 4);
  await client.close();
});

Deno.test("the first command syncs automatically and a late reply is skipped by the resync", async () => {
  let held: string[] = [];
  let delayed = false;
  const agent = new FakeAgent((request) => {
    if (request.execute === "guest-sync" && request.arguments?.id === 1 && !delayed) {
      delayed = true;
      held = qemuGaLike(request); // the agent is slow: this reply comes with the next one
      return [];
    }
    const late = held;
    held = [];
    return [...late, ...qemuGaLike(request)];
  });
  const client = new QgaClient(agent);
  await assert.rejects(client.execute("guest-sync", { id: 1 }, { timeoutMs: 20 }), QgaTimeoutError);
  assert.equal(syncIds(agent).length, 1);
  assert.equal(await client.execute("guest-sync", { id: 2 }), 2);
  assert.deepEqual(
    agent.requests.map((r) => r.execute),
    ["guest-sync-delimited", "guest-sync", "guest-sync-delimited", "guest-sync"],
  );
  await client.close();
});

Deno.test("an error reply throws QgaReplyError and leaves the client usable", async () => {
  const agent = new FakeAgent(qemuGaLike);
  const client = new QgaClient(agent);
  await assert.rejects(client.execute("guest-nope"), (error: unknown) => {
    assert.ok(error instanceof QgaReplyError);
    assert.equal(error.errorClass, "CommandNotFound");
    assert.equal(error.desc, "The command guest-nope has not been found");
    assert.equal(error.command, "guest-nope");
    return true;
  });
  assert.deepEqual(await client.execute("guest-ping"), {});
  assert.equal(syncIds(agent).length, 1);
  await client.close();
});

Deno.test("concurrent commands are sent one at a time and each gets its own reply", async () => {
  const agent = new FakeAgent(qemuGaLike, { maxPiece: 3 });
  const client = new QgaClient(agent);
  const ids = Array.from({ length: 40 }, (_, i) => i * 1000 + 1);
  const results = await Promise.all(ids.map((id) => client.execute("guest-sync", { id })));
  assert.deepEqual(results, ids);
  await client.close();
});

Deno.test("a reply bigger than 64 MiB split at random points is read intact", async () => {
  const payload = "A".repeat(70 * 1024 * 1024 - 3) + "xyz";
  const agent = new FakeAgent(
    (request) =>
      request.execute === "guest-big"
        ? [`{"return": {"data": "${payload}", "n": 18446744073709551615}}`]
        : qemuGaLike(request),
    { maxPiece: 300_000 },
  );
  const client = new QgaClient(agent);
  const started = performance.now();
  const reply = await client.execute("guest-big") as { data: string; n: bigint };
  const elapsed = performance.now() - started;
  assert.equal(reply.data.length, payload.length);
  assert.equal(reply.data, payload);
  assert.equal(reply.n, 18446744073709551615n);
  console.log(`70 MiB reply in ${elapsed.toFixed(0)} ms`);
  await client.close();
});

Deno.test("a reply longer than maxReplyBytes is refused and the client resyncs", async () => {
  const agent = new FakeAgent(
    (request) =>
      request.execute === "guest-big" ? [`{"return": "${"B".repeat(4096)}"}`] : qemuGaLike(request),
    { maxPiece: 1000 },
  );
  const client = new QgaClient(agent, { maxReplyBytes: 1024 });
  await assert.rejects(client.execute("guest-big"), QgaProtocolError);
  assert.deepEqual(await client.execute("guest-ping"), {});
  assert.equal(syncIds(agent).length, 2);
  await client.close();
});

Deno.test("a line that is not a reply object is a QgaProtocolError", async () => {
  const agent = new FakeAgent((request) =>
    request.execute === "guest-odd" ? ["[1, 2]"] : qemuGaLike(request)
  );
  const client = new QgaClient(agent);
  await assert.rejects(client.execute("guest-odd"), /is not a reply object: \[1, 2\]/);
  await client.close();
});

Deno.test("executeNoReply succeeds when no reply comes and fails on an error reply", async () => {
  const agent = new FakeAgent(qemuGaLike);
  const client = new QgaClient(agent);
  const started = performance.now();
  await client.executeNoReply("guest-shutdown", undefined, { waitMs: 50 });
  assert.ok(performance.now() - started >= 45);
  await assert.rejects(
    client.executeNoReply("guest-shutdown", { mode: "bogus" }),
    /mode is invalid/,
  );
  assert.deepEqual(
    agent.requests.filter((r) => r.execute === "guest-shutdown").map((r) => r.arguments),
    [undefined, { mode: "bogus" }],
  );
  await client.close();
});

Deno.test("executeNoReply succeeds when the agent closes the connection", async () => {
  const agent = new FakeAgent((request) =>
    request.execute === "guest-suspend-ram" ? "close" : qemuGaLike(request)
  );
  const client = new QgaClient(agent);
  await client.executeNoReply("guest-suspend-ram", undefined, { waitMs: 5000 });
  await assert.rejects(client.execute("guest-ping"), QgaConnectionError);
  await client.close();
});

Deno.test("a closed client refuses further commands", async () => {
  const agent = new FakeAgent(qemuGaLike);
  const client = new QgaClient(agent);
  await client.ping();
  await client.close();
  await client.close();
  await assert.rejects(client.ping(), /The client is closed/);
});

Deno.test("executeText returns the exact reply line and the parsed reply", async () => {
  const agent = new FakeAgent(qemuGaLike);
  const client = new QgaClient(agent);
  const { reply, line } = await client.executeText(
    '  {"execute":"guest-sync","arguments":{"id":9223372036854775807}}  ',
  );
  assert.equal(line, '{"return": 9223372036854775807}');
  assert.deepEqual(reply, { return: 9223372036854775807n });
  await client.close();
});

Deno.test("parseJson turns only unsafe integer literals into bigint", () => {
  const text = '{"a": 9007199254740991, "b": 9007199254740993, "c": -9223372036854775808, ' +
    '"d": 1.5, "e": 1e300, "f": 18446744073709551615, "g": [0, -0, 12345678901234567890.0]}';
  assert.deepEqual(parseJson(text), {
    a: 9007199254740991,
    b: 9007199254740993n,
    c: -9223372036854775808n,
    d: 1.5,
    e: 1e300,
    f: 18446744073709551615n,
    g: [0, -0, 12345678901234567890],
  });
});

Deno.test("stringifyJson writes bigint values as integer literals", () => {
  assert.equal(
    stringifyJson({ id: 18446744073709551615n, list: [-(2n ** 63n), 1] }),
    '{"id":18446744073709551615,"list":[-9223372036854775808,1]}',
  );
  assert.equal(stringifyJson({ a: 1n }, 2), '{\n  "a": 1\n}');
  assert.throws(() => stringifyJson(undefined), TypeError);
  assert.equal(decoder.decode(encoder.encode(stringifyJson("é"))), '"é"');
});
