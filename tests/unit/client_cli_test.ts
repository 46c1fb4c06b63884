/**
 * The `client` CLI without a real agent: argument parsing, usage errors, progress output,
 * and freeze/thaw/status against a fake agent on a unix socket (filesystems are never
 * frozen on this machine).
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-read --allow-write \
 *   --allow-net tests/unit/client_cli_test.ts
 */

import assert from "node:assert/strict";
import { type ClientIo, clientMain } from "../../client/cli.ts";
import { CLIENT_USAGE, commandName, parseKeyValues, parseSize } from "../../client/cli_args.ts";
import { formatProgress, formatSummary, ProgressBar } from "../../client/progress.ts";
import { parseJson, stringifyJson } from "../../client/json.ts";

function captureIo(): ClientIo & { out(): string; err(): string } {
  let out = "";
  let err = "";
  const decoder = new TextDecoder();
  return {
    stdout: (bytes) => Promise.resolve(void (out += decoder.decode(bytes))),
    stderr: (bytes) => Promise.resolve(void (err += decoder.decode(bytes))),
    stderrIsTerminal: false,
    readStdin: () => Promise.resolve(new Uint8Array(0)),
    out: () => out,
    err: () => err,
  };
}

type Request = { execute: string; arguments?: { [key: string]: unknown } };

/**
 * A fake agent on a unix socket that answers guest-sync-delimited and keeps a model of
 * frozen mount points, so the CLI's freeze, thaw and status commands can run for real.
 */
class FakeFreezeAgent {
  readonly requests: Request[] = [];
  readonly socket: string;
  readonly #dir: string;
  readonly #listener: Deno.UnixListener;
  readonly #mounts: string[];
  #frozen: string[] = [];
  #served: Promise<void>;

  private constructor(dir: string, mounts: string[]) {
    this.#dir = dir;
    this.socket = `${dir}/fake.sock`;
    this.#mounts = mounts;
    this.#listener = Deno.listen({ transport: "unix", path: this.socket });
    this.#served = this.#serve();
  }

  static async start(mounts: string[]): Promise<FakeFreezeAgent> {
    return new FakeFreezeAgent(await Deno.makeTempDir({ prefix: "qga-cli-" }), mounts);
  }

  async #serve(): Promise<void> {
    for await (const conn of this.#listener) {
      await this.#session(conn);
    }
  }

  async #session(conn: Deno.Conn): Promise<void> {
    const buffer = new Uint8Array(65536);
    let pending: number[] = [];
    while (true) {
      const count = await conn.read(buffer).catch(() => null);
      if (count === null) break;
      for (const byte of buffer.subarray(0, count)) {
        if (byte === 0xff) {
          pending = [];
          await this.#reply(conn, '{"error": {"class": "GenericError", "desc": "stray"}}\n');
        } else if (byte === 0x0a) {
          const request = parseJson(new TextDecoder().decode(new Uint8Array(pending))) as Request;
          pending = [];
          this.requests.push(request);
          await this.#reply(conn, this.#answer(request) + "\n");
        } else {
          pending.push(byte);
        }
      }
    }
    conn.close();
  }

  async #reply(conn: Deno.Conn, text: string): Promise<void> {
    const bytes = Uint8Array.from(text, (char) => char.charCodeAt(0));
    let written = 0;
    while (written < bytes.length) written += await conn.write(bytes.subarray(written));
  }

  #answer(request: Request): string {
    const ok = (value: unknown) => `{"return": ${stringifyJson(value)}}`;
    switch (request.execute) {
      case "guest-sync-delimited":
        return "\xff" + ok(request.arguments?.id);
      case "guest-fsfreeze-status":
        return ok(this.#frozen.length > 0 ? "frozen" : "thawed");
      case "guest-fsfreeze-freeze":
        this.#frozen = [...this.#mounts];
        return ok(this.#frozen.length);
      case "guest-fsfreeze-freeze-list": {
        const wanted = request.arguments?.mountpoints as string[];
        const unknown = wanted.find((mount) => !this.#mounts.includes(mount));
        if (unknown !== undefined) {
          return `{"error": {"class": "GenericError", "desc": "Invalid parameter '${unknown}'"}}`;
        }
        this.#frozen = [...wanted];
        return ok(wanted.length);
      }
      case "guest-fsfreeze-thaw": {
        const count = this.#frozen.length;
        this.#frozen = [];
        return ok(count);
      }
      default:
        return `{"error": {"class": "CommandNotFound", "desc": "The command ${request.execute} has not been found"}}`;
    }
  }

  async stop(): Promise<void> {
    this.#listener.close();
    await this.#served.catch(() => undefined);
    await Deno.remove(this.#dir, { recursive: true });
  }
}

Deno.test("freeze, status and thaw send the fsfreeze commands and print the counts", async () => {
  const agent = await FakeFreezeAgent.start(["/", "/boot", "/srv"]);
  try {
    const run = async (...words: string[]) => {
      const io = captureIo();
      const status = await clientMain(["-s", agent.socket, ...words], io);
      return { status, out: io.out(), err: io.err() };
    };
    assert.deepEqual(await run("status"), { status: 0, out: "thawed\n", err: "" });
    assert.deepEqual(await run("freeze"), { status: 0, out: "frozen 3 filesystems\n", err: "" });
    assert.deepEqual(await run("status"), { status: 0, out: "frozen\n", err: "" });
    assert.deepEqual(await run("thaw"), { status: 0, out: "thawed 3 filesystems\n", err: "" });
    assert.deepEqual(await run("freeze", "/boot"), {
      status: 0,
      out: "frozen 1 filesystem\n",
      err: "",
    });
    assert.deepEqual(await run("thaw"), { status: 0, out: "thawed 1 filesystem\n", err: "" });
    assert.deepEqual(await run("freeze", "/nope"), {
      status: 1,
      out: "",
      err: "error: GenericError: Invalid parameter '/nope'\n",
    });
    assert.deepEqual(
      agent.requests.filter((r) => r.execute !== "guest-sync-delimited"),
      [
        { execute: "guest-fsfreeze-status" },
        { execute: "guest-fsfreeze-freeze" },
        { execute: "guest-fsfreeze-status" },
        { execute: "guest-fsfreeze-thaw" },
        { execute: "guest-fsfreeze-freeze-list", arguments: { mountpoints: ["/boot"] } },
        { execute: "guest-fsfreeze-thaw" },
        { execute: "guest-fsfreeze-freeze-list", arguments: { mountpoints: ["/nope"] } },
      ],
    );
    // Every CLI run is its own connection, and each one synchronised first.
    assert.equal(agent.requests.filter((r) => r.execute === "guest-sync-delimited").length, 7);
  } finally {
    await agent.stop();
  }
});

Deno.test("thaw and status refuse extra arguments without connecting", async () => {
  for (const words of [["thaw", "/"], ["status", "x"], ["ping", "x"], ["info", "x"]]) {
    const io = captureIo();
    assert.equal(await clientMain(["-s", "/nonexistent/socket", ...words], io), 2);
    assert.match(io.err(), /^error: \w+ takes no arguments\nTry "deno-qga client --help"\.\n$/);
  }
});

Deno.test("usage mistakes exit with status 2 and point to --help", async () => {
  const cases: [string[], RegExp][] = [
    [["ping"], /Missing -s SOCKET/],
    [["-s", "/x"], /Missing COMMAND/],
    [["-s", "/x", "--bogus", "ping"], /Unknown option '--bogus'/],
    [["-s", "/x", "--timeout", "0", "ping"], /--timeout must be a positive number/],
    [["-s", "/x", "exec"], /exec needs a program/],
    [["-s", "/x", "exec", "--max-time", "soon", "--", "/bin/true"], /--max-time must be/],
    [["-s", "/x", "copy-in", "only-one"], /Usage: copy-in LOCAL REMOTE/],
    [["-s", "/x", "copy-out", "a", "b", "c"], /Usage: copy-out REMOTE LOCAL/],
    [["-s", "/x", "copy-in", "--chunk-size", "lots", "a", "b"], /Invalid size "lots"/],
    [["-s", "/x", "copy-in", "--chunk-size", "0", "a", "b"], /at least 1 byte/],
    [["-s", "/x", "file-open", "path"], /Expected KEY=VALUE: received "path"/],
    [["-s", "/x", "{not json"], /The request is not valid JSON/],
  ];
  for (const [args, message] of cases) {
    const io = captureIo();
    assert.equal(await clientMain(args, io), 2, args.join(" "));
    assert.match(io.err(), message);
    assert.match(io.err(), /Try "deno-qga client --help"/);
    assert.equal(io.out(), "");
  }
});

Deno.test("--help prints the usage, which documents every subcommand", async () => {
  const io = captureIo();
  assert.equal(await clientMain(["--help"], io), 0);
  assert.equal(io.out(), CLIENT_USAGE);
  for (const word of ["ping", "info", "status", "freeze", "thaw", "exec", "copy-in", "copy-out"]) {
    assert.match(CLIENT_USAGE, new RegExp(`^  ${word}\\b`, "m"), word);
  }
  for (const option of ["--socket", "--timeout", "--raw", "--input", "--chunk-size"]) {
    assert.ok(CLIENT_USAGE.includes(option), option);
  }
});

Deno.test("a missing socket is reported as an error with status 1", async () => {
  const io = captureIo();
  assert.equal(await clientMain(["-s", "/nonexistent/qga.sock", "ping"], io), 1);
  assert.match(io.err(), /^error: Cannot connect to "\/nonexistent\/qga.sock"/);
});

Deno.test("KEY=VALUE words become JSON arguments, with dotted keys nesting", () => {
  assert.deepEqual(
    parseKeyValues([
      "path=/etc/hostname",
      "count=4096",
      "id=18446744073709551615",
      "crypted=false",
      'arg=["-c","true"]',
      "a.b.c=1",
      "a.b.d=x y",
      'text="42"',
      "empty=",
    ]),
    {
      path: "/etc/hostname",
      count: 4096,
      id: 18446744073709551615n,
      crypted: false,
      arg: ["-c", "true"],
      a: { b: { c: 1, d: "x y" } },
      text: "42",
      empty: "",
    },
  );
  assert.throws(() => parseKeyValues(["a=1", "a=2"]), /given twice/);
  assert.throws(() => parseKeyValues(["a=1", "a.b=2"]), /"a" is not an object/);
  assert.throws(() => parseKeyValues(["=1"]), /Expected KEY=VALUE/);
  assert.throws(() => parseKeyValues(["a..b=1"]), /Empty key/);
});

Deno.test("command words get the guest- prefix unless they have it", () => {
  assert.equal(commandName("get-time"), "guest-get-time");
  assert.equal(commandName("guest-get-time"), "guest-get-time");
});

Deno.test("sizes accept bytes and K or M suffixes", () => {
  assert.equal(parseSize("4096"), 4096);
  assert.equal(parseSize("64K"), 65536);
  assert.equal(parseSize("4M"), 4194304);
  assert.equal(parseSize("2MiB"), 2097152);
  assert.throws(() => parseSize("1.5M"), /Invalid size/);
  assert.throws(() => parseSize("-1"), /Invalid size/);
});

Deno.test("progress lines show bar, percent, MiB and speed", () => {
  const mib = 1024 * 1024;
  assert.equal(
    formatProgress({ bytes: 50 * mib, total: 100 * mib }, 2000),
    "[###############...............]  50.0%  50.0/100.0 MiB  25.0 MiB/s",
  );
  assert.equal(formatProgress({ bytes: 3 * mib, total: undefined }, 1000), "3.0 MiB  3.0 MiB/s");
  assert.equal(
    formatProgress({ bytes: 0, total: 0 }, 0),
    `[${"#".repeat(30)}] 100.0%  0.0/0.0 MiB  - MiB/s`,
  );
  assert.equal(
    formatSummary(100 * mib, 3200),
    "copied 100.0 MiB (104857600 bytes) in 3.20 s (31.3 MiB/s)",
  );
});

Deno.test("the progress bar redraws at most once per interval but always at the end", () => {
  let now = 0;
  const drawn: string[] = [];
  const bar = new ProgressBar((text) => drawn.push(text), { intervalMs: 100, now: () => now });
  const total = 10;
  for (let bytes = 0; bytes <= total; bytes++) {
    now += 30;
    bar.update({ bytes, total });
  }
  bar.finish();
  bar.finish();
  // Updates at 30..330 ms: drawn at 30, 150, 270 ms and at completion, then one newline.
  assert.equal(drawn.length, 5);
  assert.ok(drawn.slice(0, 4).every((line) => line.startsWith("\r[") && line.endsWith("\x1b[K")));
  assert.match(drawn[3] ?? "", /100\.0%/);
  assert.equal(drawn[4], "\n");
});
