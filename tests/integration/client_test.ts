/**
 * The host-side client against a real agent on a unix socket (qemu-ga by default; set
 * QGA_TEST_AGENT=deno-qga for this project's agent).
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-env=QGA_TEST_AGENT,QEMU_GA \
 *   --allow-read --allow-write --allow-net --allow-run tests/integration/client_test.ts
 */

import assert from "node:assert/strict";
import {
  MAX_READ_CHUNK,
  MAX_WRITE_CHUNK,
  QgaClient,
  QgaConnectionError,
  QgaReplyError,
  QgaTimeoutError,
} from "../../client/mod.ts";
import { type ClientIo, clientMain } from "../../client/cli.ts";
import { startAgent, type StartedAgent } from "../helpers/start_qemu_ga.ts";

const MIB = 1024 * 1024;

async function withAgent(body: (agent: StartedAgent) => Promise<void>): Promise<void> {
  const agent = await startAgent();
  try {
    await body(agent);
  } finally {
    await agent.stop();
  }
}

async function writeRandomFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(MIB);
  for (let done = 0; done < size; done += block.length) {
    const piece = block.subarray(0, Math.min(block.length, size - done));
    for (let at = 0; at < piece.length; at += 65536) {
      crypto.getRandomValues(piece.subarray(at, at + 65536));
    }
    let written = 0;
    while (written < piece.length) written += await file.write(piece.subarray(written));
  }
}

async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return new Uint8Array(digest).toHex();
}

/** Captures what clientMain prints. */
function captureIo(stdin = new Uint8Array(0)): ClientIo & { out(): string; err(): string } {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const text = (parts: Uint8Array[]) =>
    new TextDecoder().decode(new Uint8Array(parts.flatMap((p) => [...p])));
  return {
    stdout: (bytes) => Promise.resolve(void out.push(bytes.slice())),
    stderr: (bytes) => Promise.resolve(void err.push(bytes.slice())),
    stderrIsTerminal: false,
    readStdin: () => Promise.resolve(stdin),
    out: () => text(out),
    err: () => text(err),
  };
}

Deno.test("sync recovers from a partial request left behind by a previous client", async () => {
  await withAgent(async (agent) => {
    // qemu-ga keeps its parser state across connections (qga-reference.md §1.1): without the
    // 0xFF flush, this half request would swallow the next client's first bytes.
    const previous = await Deno.connect({ transport: "unix", path: agent.socket });
    await previous.write(new TextEncoder().encode('{"execute":"guest-sync","arguments":{"id":"'));
    previous.close();

    await using client = await QgaClient.connect(agent.socket, { autoSync: false });
    // One attempt must do: the leading 0xFF ends the half request at once.
    const id = await client.sync({ attempts: 1, timeoutMs: 3000 });
    assert.ok(Number.isSafeInteger(id) && id >= 0, `sync id ${id} is a safe integer`);
    assert.deepEqual(await client.execute("guest-ping"), {});
    assert.equal(await client.execute("guest-sync", { id: 12345 }), 12345);
  });
});

Deno.test("sync ids are random and each sync is answered with its own id", async () => {
  await withAgent(async (agent) => {
    await using client = await QgaClient.connect(agent.socket);
    const ids = new Set<number>();
    for (let i = 0; i < 5; i++) ids.add(await client.sync());
    assert.equal(ids.size, 5);
    for (const id of ids) assert.ok(id < 2 ** 53);
  });
});

Deno.test("execute returns values and keeps integers beyond 2^53 exact", async () => {
  await withAgent(async (agent) => {
    await using client = await QgaClient.connect(agent.socket);
    const time = await client.execute("guest-get-time");
    assert.equal(typeof time, "bigint");
    const skewNs = (time as bigint) - BigInt(Date.now()) * 1_000_000n;
    assert.ok(skewNs < 60_000_000_000n && skewNs > -60_000_000_000n, `clock skew ${skewNs} ns`);
    const big = 2n ** 62n + 1n;
    assert.equal(await client.execute("guest-sync", { id: big }), big);
    assert.equal(await client.execute("guest-sync", { id: -(2n ** 63n) }), -(2n ** 63n));
    const info = await client.execute("guest-info");
    assert.ok(typeof info === "object" && info !== null && "supported_commands" in info);
  });
});

Deno.test("execute throws QgaReplyError with the class and desc of an error reply", async () => {
  await withAgent(async (agent) => {
    await using client = await QgaClient.connect(agent.socket);
    await assert.rejects(client.execute("guest-no-such-command"), (error: unknown) => {
      assert.ok(error instanceof QgaReplyError);
      assert.equal(error.errorClass, "CommandNotFound");
      assert.equal(error.desc, "The command guest-no-such-command has not been found");
      return true;
    });
    const missing = `${agent.dir}/does-not-exist`;
    await assert.rejects(client.execute("guest-file-open", { path: missing }), (error: unknown) => {
      assert.ok(error instanceof QgaReplyError);
      assert.equal(error.errorClass, "GenericError");
      assert.equal(
        error.desc,
        `failed to open file '${missing}' (mode: 'r'): No such file or directory`,
      );
      return true;
    });
    assert.deepEqual(await client.execute("guest-ping"), {});
  });
});

Deno.test("executeNoReply reports the error reply of a rejected shutdown", async () => {
  await withAgent(async (agent) => {
    await using client = await QgaClient.connect(agent.socket);
    // An invalid mode is rejected before anything happens, so this never shuts anything down.
    await assert.rejects(client.executeNoReply("guest-shutdown", { mode: "bogus" }), (e) => {
      assert.ok(e instanceof QgaReplyError);
      assert.match(e.desc, /^mode is invalid/);
      return true;
    });
    assert.deepEqual(await client.execute("guest-ping"), {});
  });
});

Deno.test("a reply that arrives after its timeout is discarded by the next sync", async () => {
  await withAgent(async (agent) => {
    const path = `${agent.dir}/48mib.bin`;
    await writeRandomFile(path, MAX_READ_CHUNK + 7);
    await using client = await QgaClient.connect(agent.socket);
    const handle = await client.execute<number>("guest-file-open", { path });
    await assert.rejects(
      client.execute("guest-file-read", { handle, count: MAX_READ_CHUNK }, { timeoutMs: 1 }),
      QgaTimeoutError,
    );
    // The 64 MiB reply is still on its way; the next command must not take it for its own.
    const rest = await client.execute("guest-file-read", { handle, count: 100 });
    assert.deepEqual(rest, { count: 7, "buf-b64": (await tail(path, 7)).toBase64(), eof: true });
    await client.execute("guest-file-close", { handle });
  });
});

async function tail(path: string, size: number): Promise<Uint8Array> {
  const bytes = await Deno.readFile(path);
  return bytes.subarray(bytes.length - size);
}

Deno.test("copyIn and copyOut move a 100 MiB file byte for byte", async () => {
  await withAgent(async (agent) => {
    const local = `${agent.dir}/local.bin`;
    const remote = `${agent.dir}/remote.bin`;
    const back = `${agent.dir}/back.bin`;
    const size = 100 * MIB;
    await writeRandomFile(local, size);
    await using client = await QgaClient.connect(agent.socket);

    const inProgress: number[] = [];
    const copied = await client.copyIn(local, remote, {
      onProgress: ({ bytes, total }) => {
        assert.equal(total, size);
        inProgress.push(bytes);
      },
    });
    assert.equal(copied.bytes, size);
    const outProgress: number[] = [];
    const fetched = await client.copyOut(remote, back, {
      chunkSize: 4 * MIB,
      onProgress: ({ bytes, total }) => {
        assert.equal(total, size);
        outProgress.push(bytes);
      },
    });
    assert.equal(fetched.bytes, size);

    const expected = await sha256(local);
    assert.equal(await sha256(remote), expected);
    assert.equal(await sha256(back), expected);
    assert.equal(inProgress.length, 101); // before the first chunk, then once per 1 MiB chunk
    assert.equal(outProgress.length, 26);
    for (const progress of [inProgress, outProgress]) {
      assert.equal(progress[0], 0);
      assert.equal(progress.at(-1), size);
      assert.ok(progress.every((bytes, i) => i === 0 || bytes > (progress[i - 1] ?? 0)));
    }
    console.log(
      `${agent.kind}: copy-in 100 MiB ${copied.elapsedMs.toFixed(0)} ms ` +
        `(${(100 / (copied.elapsedMs / 1000)).toFixed(1)} MiB/s), copy-out ` +
        `${fetched.elapsedMs.toFixed(0)} ms (${
          (100 / (fetched.elapsedMs / 1000)).toFixed(1)
        } MiB/s)`,
    );
  });
});

Deno.test("MAX_WRITE_CHUNK fits the agent's 64 MiB JSON limit and 48 MiB does not", async () => {
  await withAgent(async (agent) => {
    const local = `${agent.dir}/local.bin`;
    const remote = `${agent.dir}/remote.bin`;
    await writeRandomFile(local, 48 * MIB);
    await using client = await QgaClient.connect(agent.socket, { timeoutMs: 60_000 });
    await assert.rejects(
      client.copyIn(local, remote, { chunkSize: MAX_WRITE_CHUNK + 1 }),
      RangeError,
    );
    const copied = await client.copyIn(local, remote, { chunkSize: MAX_WRITE_CHUNK });
    assert.equal(copied.bytes, 48 * MIB); // two chunks: MAX_WRITE_CHUNK and 192 bytes
    assert.equal(await sha256(remote), await sha256(local));

    // One byte per base64 quartet more: the request breaks the token limit, the agent answers
    // with a lexer error (and re-lexes the rest of the text); the client resyncs after it.
    const handle = await client.execute<number>("guest-file-open", { path: remote, mode: "wb" });
    const tooBig = await Deno.readFile(local);
    assert.equal(tooBig.length, 48 * MIB);
    await assert.rejects(
      client.execute("guest-file-write", { handle, "buf-b64": tooBig.toBase64() }),
      (error: unknown) => {
        assert.ok(error instanceof QgaReplyError);
        assert.equal(error.desc, "JSON token size limit exceeded");
        return true;
      },
    );
    assert.deepEqual(await client.execute("guest-file-close", { handle }), {});
    assert.deepEqual(await client.execute("guest-ping"), {});
  });
});

Deno.test("copying an empty file in and out gives an empty file", async () => {
  await withAgent(async (agent) => {
    const local = `${agent.dir}/empty`;
    await Deno.writeFile(local, new Uint8Array(0));
    await Deno.writeTextFile(`${agent.dir}/back`, "old content");
    await using client = await QgaClient.connect(agent.socket);
    assert.equal((await client.copyIn(local, `${agent.dir}/remote`)).bytes, 0);
    assert.equal((await Deno.stat(`${agent.dir}/remote`)).size, 0);
    assert.equal((await client.copyOut(`${agent.dir}/remote`, `${agent.dir}/back`)).bytes, 0);
    assert.equal((await Deno.stat(`${agent.dir}/back`)).size, 0);
  });
});

Deno.test("copyOut of a missing guest file fails without creating the local file", async () => {
  await withAgent(async (agent) => {
    await using client = await QgaClient.connect(agent.socket);
    await assert.rejects(
      client.copyOut(`${agent.dir}/missing`, `${agent.dir}/local`),
      QgaReplyError,
    );
    await assert.rejects(Deno.stat(`${agent.dir}/local`), Deno.errors.NotFound);
  });
});

Deno.test("exec returns the exit code and both output streams", async () => {
  await withAgent(async (agent) => {
    await using client = await QgaClient.connect(agent.socket);
    const result = await client.exec("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"]);
    assert.equal(result.exitcode, 3);
    assert.equal(result.signal, null);
    assert.equal(new TextDecoder().decode(result.stdout), "out\n");
    assert.equal(new TextDecoder().decode(result.stderr), "err\n");
    assert.equal(result.stdoutTruncated, false);
    assert.equal(result.stderrTruncated, false);

    const echoed = await client.exec("/bin/cat", [], { input: "via stdin\n" });
    assert.equal(new TextDecoder().decode(echoed.stdout), "via stdin\n");
    assert.equal(echoed.exitcode, 0);

    const killed = await client.exec("/bin/sh", ["-c", "kill -9 $$"]);
    assert.equal(killed.signal, 9);
    assert.equal(killed.exitcode, null);

    await assert.rejects(
      client.exec("/bin/sleep", ["2"], { timeoutMs: 100 }),
      /still running after 100 ms/,
    );
  });
});

Deno.test("the client reports a closed connection", async () => {
  await withAgent(async (agent) => {
    const client = await QgaClient.connect(agent.socket);
    await client.ping();
    await agent.stop();
    await assert.rejects(client.ping(), QgaConnectionError);
    await client.close();
  });
});

Deno.test("the client CLI runs commands, prints errors and exec results", async () => {
  await withAgent(async (agent) => {
    const time = captureIo();
    assert.equal(await clientMain(["-s", agent.socket, "get-time"], time), 0);
    assert.match(time.out(), /^[0-9]{19}\n$/);

    const sync = captureIo();
    assert.equal(
      await clientMain(["-s", agent.socket, "guest-sync", "id=18446744073709551615"], sync),
      1,
    );
    assert.equal(
      sync.err(),
      "error: GenericError: Invalid parameter type for 'id', expected: integer\n",
    );

    const raw = captureIo();
    const request = '{"execute":"guest-sync","arguments":{"id":9223372036854775807}}';
    assert.equal(await clientMain(["-s", agent.socket, "--raw", request], raw), 0);
    assert.equal(raw.out(), '{"return": 9223372036854775807}\n');

    const missing = captureIo();
    assert.equal(await clientMain(["-s", agent.socket, "no-such-thing"], missing), 1);
    assert.equal(
      missing.err(),
      "error: CommandNotFound: The command guest-no-such-thing has not been found\n",
    );

    const exec = captureIo();
    const script = "echo out; echo err >&2; exit 3";
    assert.equal(
      await clientMain(["-s", agent.socket, "exec", "--", "/bin/sh", "-c", script], exec),
      3,
    );
    assert.equal(exec.out(), "out\n");
    assert.equal(exec.err(), "err\n");

    const piped = captureIo(new TextEncoder().encode("from stdin"));
    assert.equal(
      await clientMain(["-s", agent.socket, "exec", "--input", "-", "--", "/bin/cat"], piped),
      0,
    );
    assert.equal(piped.out(), "from stdin");

    const info = captureIo();
    assert.equal(await clientMain(["-s", agent.socket, "info"], info), 0);
    assert.match(info.out(), /^guest-sync-delimited +yes +yes$/m);
    assert.match(info.out(), /^guest-shutdown +yes +no$/m);
  });
});

Deno.test("the client CLI copies files and prints a summary line", async () => {
  await withAgent(async (agent) => {
    const local = `${agent.dir}/local.bin`;
    await writeRandomFile(local, 3 * MIB + 5);
    const copyIn = captureIo();
    const remote = `${agent.dir}/remote.bin`;
    assert.equal(
      await clientMain(
        ["-s", agent.socket, "copy-in", "--chunk-size", "1M", local, remote],
        copyIn,
      ),
      0,
    );
    assert.match(
      copyIn.err(),
      /^copied 3\.0 MiB \(3145733 bytes\) in [0-9.]+ s \([0-9.]+ MiB\/s\)\n$/,
    );
    const copyOut = captureIo();
    const back = `${agent.dir}/back.bin`;
    assert.equal(await clientMain(["-s", agent.socket, "copy-out", remote, back], copyOut), 0);
    assert.match(copyOut.err(), /^copied 3\.0 MiB \(3145733 bytes\)/);
    assert.equal(await sha256(back), await sha256(local));

    const missing = captureIo();
    assert.equal(
      await clientMain(["-s", agent.socket, "copy-in", `${agent.dir}/nope`, remote], missing),
      1,
    );
    assert.match(missing.err(), /^error: .*No such file or directory/);
  });
});
