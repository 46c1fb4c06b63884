import assert from "node:assert/strict";
import { join } from "node:path";
import { decodeQemuBase64 } from "../../protocol/base64.ts";
import {
  guestFileClose,
  guestFileFlush,
  guestFileOpen,
  guestFileRead,
  guestFileSeek,
  guestFileWrite,
  READ_COUNT_MAX,
} from "../../commands/file.ts";
import type { Context } from "../../commands/types.ts";
import { QgaError } from "../../protocol/errors.ts";
import { fakeContext } from "../helpers/fake_context.ts";

const te = new TextEncoder();
const b64 = (s: string) => te.encode(s).toBase64();

// Handlers may throw synchronously; these wrappers turn every failure into a rejection.
async function open(ctx: Context, path: string, mode?: string): Promise<bigint> {
  return await guestFileOpen.handler(mode === undefined ? { path } : { path, mode }, ctx);
}

async function read(ctx: Context, handle: bigint, count?: bigint) {
  return await guestFileRead.handler(count === undefined ? { handle } : { handle, count }, ctx);
}

async function write(ctx: Context, handle: bigint, data: string, count?: bigint) {
  const args = { handle, "buf-b64": data };
  return await guestFileWrite.handler(count === undefined ? args : { ...args, count }, ctx);
}

async function seek(
  ctx: Context,
  handle: bigint,
  offset: bigint,
  whence: bigint | "set" | "cur" | "end",
) {
  return await guestFileSeek.handler({ handle, offset, whence }, ctx);
}

async function close(ctx: Context, handle: bigint) {
  return await guestFileClose.handler({ handle }, ctx);
}

function err(desc: string): QgaError {
  return new QgaError(desc);
}

/** Runs `f` in a fresh temporary directory, removed afterwards. */
async function inTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qga-file-test-" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function mkfifo(path: string): Promise<void> {
  const r = await new Deno.Command("mkfifo", { args: [path] }).output();
  assert.equal(r.code, 0);
}

Deno.test("reading exactly the remaining bytes says eof false; the next read returns 0 bytes and eof true", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    await Deno.writeTextFile(join(dir, "hello"), "Hello World!\n");
    const h = await open(ctx, join(dir, "hello"));
    assert.deepEqual(await read(ctx, h, 13n), {
      count: 13,
      "buf-b64": "SGVsbG8gV29ybGQhCg==",
      eof: false,
    });
    assert.deepEqual(await read(ctx, h, 13n), { count: 0, "buf-b64": "", eof: true });
    assert.deepEqual(await read(ctx, h, 0n), { count: 0, "buf-b64": "", eof: false });
    assert.deepEqual(await read(ctx, h), { count: 0, "buf-b64": "", eof: true });
  });
});

Deno.test("a read without count reads up to 4096 bytes and reports the end it hit", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    await Deno.writeTextFile(join(dir, "hello"), "Hello World!\n");
    const h = await open(ctx, join(dir, "hello"));
    assert.deepEqual(await read(ctx, h), {
      count: 13,
      "buf-b64": "SGVsbG8gV29ybGQhCg==",
      eof: true,
    });
    await Deno.writeFile(join(dir, "big"), new Uint8Array(5000).fill(97));
    const b = await open(ctx, join(dir, "big"));
    const first = await read(ctx, b);
    assert.equal(first.count, 4096);
    assert.equal(first.eof, false);
    const second = await read(ctx, b);
    assert.equal(second.count, 904);
    assert.equal(second.eof, true);
  });
});

Deno.test("handles start at 1000, grow, are never reused, and a failed open consumes none", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "f");
    await Deno.writeTextFile(p, "x");
    const a = await open(ctx, p);
    assert.equal(a, 1000n);
    await close(ctx, a);
    await assert.rejects(() => open(ctx, join(dir, "missing")));
    await assert.rejects(() => open(ctx, p, "rw"));
    assert.equal(await open(ctx, p), 1001n);
    assert.equal(await open(ctx, p), 1002n);
  });
});

Deno.test("every command refuses an unknown or closed handle, and read checks the handle before count", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "f");
    await Deno.writeTextFile(p, "x");
    const h = await open(ctx, p);
    await close(ctx, h);
    const gone = err("handle '1000' has not been found");
    await assert.rejects(() => read(ctx, h), gone);
    await assert.rejects(() => read(ctx, h, -1n), gone);
    await assert.rejects(() => write(ctx, h, "!!!"), gone);
    await assert.rejects(() => write(ctx, h, "QQ==", -5n), gone);
    await assert.rejects(() => seek(ctx, h, 0n, 0n), gone);
    await assert.rejects(() => seek(ctx, h, 0n, 7n), gone);
    await assert.rejects(async () => await guestFileFlush.handler({ handle: h }, ctx), gone);
    await assert.rejects(() => close(ctx, h), gone);
    await assert.rejects(() => read(ctx, 999n), err("handle '999' has not been found"));
    await assert.rejects(
      () => read(ctx, -9223372036854775808n),
      err("handle '-9223372036854775808' has not been found"),
    );
  });
});

Deno.test("read refuses a negative count or one above 48 MiB and accepts exactly 48 MiB", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "f");
    await Deno.writeTextFile(p, "0123456789");
    const h = await open(ctx, p);
    await assert.rejects(() => read(ctx, h, -1n), err("value '-1' is invalid for argument count"));
    await assert.rejects(
      () => read(ctx, h, 50331649n),
      err("value '50331649' is invalid for argument count"),
    );
    await assert.rejects(
      () => read(ctx, h, 9223372036854775807n),
      err("value '9223372036854775807' is invalid for argument count"),
    );
    assert.deepEqual(await read(ctx, h, READ_COUNT_MAX), {
      count: 10,
      "buf-b64": b64("0123456789"),
      eof: true,
    });
  });
});

Deno.test("only the fifteen fopen spellings are accepted as modes", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "f");
    await Deno.writeTextFile(p, "x");
    for (const mode of ["x", "rw", "rt", "r+t", "wx", "", "R", "r ", "a+x", "rb+b"]) {
      await assert.rejects(() => open(ctx, p, mode), err(`invalid file open mode '${mode}'`));
    }
    const good = ["r", "rb", "w", "wb", "a", "ab", "r+", "rb+", "r+b", "w+", "wb+", "w+b", "a+"];
    for (const mode of [...good, "ab+", "a+b"]) {
      const h = await open(ctx, p, mode);
      await close(ctx, h);
    }
  });
});

Deno.test("open errors carry the path, the mode and strerror", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const missing = join(dir, "nonexist");
    await assert.rejects(
      () => open(ctx, missing),
      err(`failed to open file '${missing}' (mode: 'r'): No such file or directory`),
    );
    await assert.rejects(
      () => open(ctx, join(missing, "x"), "w"),
      err(`failed to open file '${join(missing, "x")}' (mode: 'w'): No such file or directory`),
    );
    await assert.rejects(
      () => open(ctx, dir, "w"),
      err(`failed to open file '${dir}' (mode: 'w'): Is a directory`),
    );
    const file = join(dir, "plain");
    await Deno.writeTextFile(file, "x");
    await assert.rejects(
      () => open(ctx, join(file, "below"), "r"),
      err(`failed to open file '${join(file, "below")}' (mode: 'r'): Not a directory`),
    );
  });
});

Deno.test("a directory opens, reading it fails with Is a directory, count 0 succeeds", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const h = await open(ctx, dir);
    await assert.rejects(() => read(ctx, h), err("failed to read file: Is a directory"));
    assert.deepEqual(await read(ctx, h, 0n), { count: 0, "buf-b64": "", eof: false });
    assert.deepEqual(await seek(ctx, h, 5n, "set"), { position: 5n, eof: false });
    assert.deepEqual(await seek(ctx, h, 0n, "end"), {
      position: 9223372036854775807n,
      eof: false,
    });
    await assert.rejects(
      () => write(ctx, h, "QQ=="),
      err("failed to write to file: Bad file descriptor"),
    );
  });
});

Deno.test("created files are 0666 whatever the umask; existing files keep their mode", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "new");
    const h = await open(ctx, p, "w");
    await close(ctx, h);
    assert.equal((await Deno.stat(p)).mode! & 0o777, 0o666);
    const q = join(dir, "old");
    await Deno.writeTextFile(q, "keep", { mode: 0o600 });
    await Deno.chmod(q, 0o600);
    await close(ctx, await open(ctx, q, "a"));
    assert.equal((await Deno.stat(q)).mode! & 0o777, 0o600);
    assert.equal(await Deno.readTextFile(q), "keep");
  });
});

Deno.test("w truncates, a appends and stands at the end after writing, a+ reads from the start", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "ten");
    await Deno.writeTextFile(p, "0123456789");
    // "a": ftell says 0 at first, the end after a write; writes always append.
    const a = await open(ctx, p, "a");
    assert.deepEqual(await seek(ctx, a, 0n, "cur"), { position: 0n, eof: false });
    assert.deepEqual(await write(ctx, a, b64("ABC")), { count: 3, eof: false });
    assert.deepEqual(await seek(ctx, a, 0n, "cur"), { position: 13n, eof: false });
    assert.deepEqual(await seek(ctx, a, 2n, "set"), { position: 2n, eof: false });
    await write(ctx, a, b64("X"));
    assert.deepEqual(await seek(ctx, a, 0n, "cur"), { position: 14n, eof: false });
    await assert.rejects(() => read(ctx, a), err("failed to read file: Bad file descriptor"));
    await close(ctx, a);
    // "a+": reads start at 0, a write after a read appends.
    const ap = await open(ctx, p, "a+");
    assert.deepEqual(await read(ctx, ap, 3n), { count: 3, "buf-b64": b64("012"), eof: false });
    await write(ctx, ap, b64("Y"));
    assert.deepEqual(await seek(ctx, ap, 0n, "cur"), { position: 15n, eof: false });
    assert.deepEqual(await read(ctx, ap, 3n), { count: 0, "buf-b64": "", eof: true });
    await seek(ctx, ap, 0n, "set");
    assert.deepEqual(await read(ctx, ap, 100n), {
      count: 15,
      "buf-b64": b64("0123456789ABCXY"),
      eof: true,
    });
    await close(ctx, ap);
    // "w": truncates.
    await close(ctx, await open(ctx, p, "w"));
    assert.equal((await Deno.stat(p)).size, 0);
  });
});

Deno.test("w+ mixes writes, reads and seeks at one position, holes read as zeros", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "new1");
    const h = await open(ctx, p, "w+");
    assert.deepEqual(await write(ctx, h, "SGVsbG8="), { count: 5, eof: false });
    assert.deepEqual(await read(ctx, h), { count: 0, "buf-b64": "", eof: true });
    assert.deepEqual(await seek(ctx, h, 1n, 0n), { position: 1n, eof: false });
    // whence 1 is SEEK_CUR: from here, not from the end
    assert.deepEqual(await seek(ctx, h, 1n, 1n), { position: 2n, eof: false });
    assert.deepEqual(await seek(ctx, h, -1n, 1n), { position: 1n, eof: false });
    assert.deepEqual(await read(ctx, h, 2n), { count: 2, "buf-b64": "ZWw=", eof: false });
    assert.deepEqual(await write(ctx, h, "WFk="), { count: 2, eof: false });
    assert.deepEqual(await seek(ctx, h, 0n, 1n), { position: 5n, eof: false });
    assert.deepEqual(await seek(ctx, h, 10n, "end"), { position: 15n, eof: false });
    assert.deepEqual(await write(ctx, h, "Wg=="), { count: 1, eof: false });
    assert.equal(await guestFileFlush.handler({ handle: h }, ctx), undefined);
    await close(ctx, h);
    assert.deepEqual(
      await Deno.readFile(p),
      new Uint8Array([72, 101, 108, 88, 89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 90]),
    );
  });
});

Deno.test("writes to a read-only handle fail with Bad file descriptor unless nothing is written", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "f");
    await Deno.writeTextFile(p, "abc");
    const h = await open(ctx, p, "r");
    await assert.rejects(
      () => write(ctx, h, "QQ=="),
      err("failed to write to file: Bad file descriptor"),
    );
    assert.deepEqual(await write(ctx, h, ""), { count: 0, eof: false });
    assert.deepEqual(await write(ctx, h, "QQ==", 0n), { count: 0, eof: false });
    assert.equal(await Deno.readTextFile(p), "abc");
  });
});

Deno.test("write count defaults to the decoded length and must lie between 0 and it", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "f");
    const h = await open(ctx, p, "w");
    await assert.rejects(
      () => write(ctx, h, "QQ==", 2n),
      err("value '2' is invalid for argument count"),
    );
    await assert.rejects(
      () => write(ctx, h, "QQ==", -1n),
      err("value '-1' is invalid for argument count"),
    );
    assert.deepEqual(await write(ctx, h, b64("Hello"), 3n), { count: 3, eof: false });
    assert.deepEqual(await write(ctx, h, b64("!!")), { count: 2, eof: false });
    await close(ctx, h);
    assert.equal(await Deno.readTextFile(p), "Hel!!");
  });
});

Deno.test("invalid base64 is refused and qemu-ga's lenient decoding is matched row by row", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "f");
    const h = await open(ctx, p, "w+");
    for (const bad of ["!!!", "Q Q==", "QQ==\r\n", "-_-_", "QQ\t==", "SGVsbG8é"]) {
      await assert.rejects(
        () => write(ctx, h, bad),
        err("Base64 data contains invalid characters"),
        JSON.stringify(bad),
      );
    }
    const rows: [string, number[]][] = [
      ["SGVsbG8", [...te.encode("Hel")]],
      ["SGVsbG8=", [...te.encode("Hello")]],
      ["SGVsbG8==", [...te.encode("Hello")]],
      ["SGVs\nbG8=", [...te.encode("Hello")]],
      ["S", []],
      ["SG", []],
      ["SGV", []],
      ["", []],
      ["SGVsbA=", [...te.encode("Hel")]],
      ["=SGV", [0x01, 0x21, 0x95]],
      ["====", [0]],
      ["SGVsbG8=SGVs", [...te.encode("HelloHel")]],
      ["ab=c", [0x69, 0x1c]],
      ["a=b=", [0x68, 0x06]],
    ];
    for (const [input, bytes] of rows) {
      const before = (await seek(ctx, h, 0n, "end")).position;
      assert.deepEqual(await write(ctx, h, input), { count: bytes.length, eof: false }, input);
      await seek(ctx, h, before, "set");
      const got = await read(ctx, h, 100n);
      assert.deepEqual([...Uint8Array.fromBase64(got["buf-b64"])], bytes, input);
    }
  });
});

Deno.test("seek refuses negative results, bad whence codes and int64 overflow", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const p = join(dir, "hello");
    await Deno.writeTextFile(p, "Hello World!\n");
    const h = await open(ctx, p);
    await read(ctx, h, 13n);
    const einval = err("failed to seek file: Invalid argument");
    await assert.rejects(() => seek(ctx, h, -1n, "set"), einval);
    await assert.rejects(() => seek(ctx, h, -14n, "cur"), einval);
    await assert.rejects(() => seek(ctx, h, -14n, 2n), einval);
    await assert.rejects(() => seek(ctx, h, 9223372036854775807n, "cur"), einval);
    await assert.rejects(() => seek(ctx, h, 0n, 3n), err("invalid whence code 3"));
    await assert.rejects(() => seek(ctx, h, 0n, -1n), err("invalid whence code -1"));
    // A failed seek leaves the position alone.
    assert.deepEqual(await seek(ctx, h, 0n, "cur"), { position: 13n, eof: false });
    assert.deepEqual(await seek(ctx, h, 100n, "cur"), { position: 113n, eof: false });
    assert.deepEqual(await seek(ctx, h, -3n, "end"), { position: 10n, eof: false });
    assert.deepEqual(await read(ctx, h), { count: 3, "buf-b64": "ZCEK", eof: true });
    // Reading past the end of the file just hits the end.
    await seek(ctx, h, 9007199254740993n, "set");
    assert.deepEqual(await read(ctx, h), { count: 0, "buf-b64": "", eof: true });
  });
});

Deno.test("a FIFO opens without blocking and behaves like qemu-ga's non-blocking stream", async () => {
  await inTempDir(async (dir) => {
    const ctx = fakeContext();
    const fifo = join(dir, "fifo");
    await mkfifo(fifo);
    // No writer: EOF at once, and seeking a pipe is illegal.
    const r = await open(ctx, fifo, "r");
    assert.deepEqual(await read(ctx, r), { count: 0, "buf-b64": "", eof: true });
    await assert.rejects(() => seek(ctx, r, 0n, "cur"), err("failed to seek file: Illegal seek"));
    // r+ is its own writer: no data yet is EAGAIN.
    const rw = await open(ctx, fifo, "r+");
    await assert.rejects(
      () => read(ctx, rw),
      err("failed to read file: Resource temporarily unavailable"),
    );
    assert.deepEqual(await write(ctx, rw, b64("ABC")), { count: 3, eof: false });
    assert.deepEqual(await read(ctx, rw, 2n), { count: 2, "buf-b64": b64("AB"), eof: false });
    // Switching from reading to writing needs fseek(0, SEEK_CUR): Illegal seek, until a seek resets.
    const espipe = err("failed to seek file: Illegal seek");
    await assert.rejects(() => write(ctx, rw, b64("DEF")), espipe);
    await assert.rejects(() => write(ctx, rw, b64("DEF")), espipe);
    await assert.rejects(() => seek(ctx, rw, 0n, "cur"), espipe);
    assert.deepEqual(await write(ctx, rw, b64("DEF")), { count: 3, eof: false });
    // Asking for more than is there: the data is consumed and the read reports EAGAIN.
    await assert.rejects(
      () => read(ctx, rw, 100n),
      err("failed to read file: Resource temporarily unavailable"),
    );
    await close(ctx, rw);
    await close(ctx, r);
  });
});

Deno.test("each agent context has its own handle table", async () => {
  await inTempDir(async (dir) => {
    const p = join(dir, "f");
    await Deno.writeTextFile(p, "x");
    const one = fakeContext();
    const two = fakeContext();
    const h = await open(one, p);
    await assert.rejects(() => read(two, h), err(`handle '${h}' has not been found`));
    assert.equal((await read(one, h)).count, 1);
  });
});

Deno.test("guest-file-write marks buf-b64 sensitive and the file commands answer when not frozen only", () => {
  assert.deepEqual(guestFileWrite.sensitive, ["buf-b64"]);
  for (const c of [guestFileOpen, guestFileClose, guestFileRead, guestFileWrite, guestFileSeek]) {
    assert.notEqual(c.allowedWhileFrozen, true, c.name);
  }
});

/** A straight port of qbase64_decode + g_base64_decode_step, as the reference. */
function referenceDecode(s: string): Uint8Array | "invalid" {
  if (!/^[A-Za-z0-9+/=\n]*$/.test(s)) return "invalid";
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const out: number[] = [];
  let v = 0;
  let i = 0;
  let last = [0, 0];
  for (const ch of s) {
    if (ch === "\n") continue;
    const rank = ch === "=" ? 0 : alphabet.indexOf(ch);
    last = [ch.charCodeAt(0), last[0]!];
    v = ((v << 6) | rank) >>> 0;
    if (++i === 4) {
      out.push((v >>> 16) & 0xff);
      if (last[1] !== 61) out.push((v >>> 8) & 0xff);
      if (last[0] !== 61) out.push(v & 0xff);
      i = 0;
    }
  }
  return new Uint8Array(out);
}

Deno.test("the fast base64 path decodes exactly as qemu-ga on thousands of random inputs", () => {
  const pool = ["A", "g", "Q", "/", "+", "9", "=", "=", "\n", " ", "-"];
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  let lenient = 0;
  for (let k = 0; k < 20000; k++) {
    let s = "";
    const len = rand(24);
    for (let j = 0; j < len; j++) s += pool[rand(k % 2 ? pool.length - 2 : pool.length)];
    const want = referenceDecode(s);
    let got: Uint8Array | "invalid";
    try {
      got = decodeQemuBase64(s);
    } catch (e) {
      assert.ok(e instanceof QgaError && e.message === "Base64 data contains invalid characters");
      got = "invalid";
    }
    assert.deepEqual(got, want, JSON.stringify(s));
    if (want !== "invalid" && s.includes("=")) lenient++;
  }
  assert.ok(lenient > 1000, `only ${lenient} inputs exercised padding`);
  const big = new Uint8Array(3 * 1024 * 1024 + 1).map((_, i) => i * 7);
  const wrapped = big.toBase64().replace(/.{76}/g, "$&\n") + "\n";
  assert.deepEqual(decodeQemuBase64(wrapped), big);
});

/** Copies `src` to `dst` through the handlers in `chunk`-byte reads; returns seconds spent. */
async function copyThroughHandlers(ctx: Context, src: string, dst: string, chunk: bigint) {
  const t0 = performance.now();
  const r = await open(ctx, src, "r");
  const w = await open(ctx, dst, "wb");
  let total = 0;
  let reads = 0;
  for (;;) {
    const got = await read(ctx, r, chunk);
    reads++;
    if (got.count > 0) {
      const put = await write(ctx, w, got["buf-b64"]);
      assert.equal(put.count, got.count);
      total += got.count;
    }
    if (got.eof) break;
    assert.equal(got.count, Number(chunk));
  }
  await close(ctx, r);
  await close(ctx, w);
  return { seconds: (performance.now() - t0) / 1000, total, reads };
}

async function sha256(path: string): Promise<string> {
  const data = await Deno.readFile(path);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data)).toHex();
}

Deno.test("a 256 MiB file read and written back in 1 MiB and 48 MiB chunks round-trips byte-identical", async () => {
  await inTempDir(async (dir) => {
    const MiB = 1024 * 1024;
    const size = 256 * MiB;
    const src = join(dir, "src");
    const block = new Uint8Array(MiB);
    for (let i = 0; i < MiB; i += 65536) crypto.getRandomValues(block.subarray(i, i + 65536));
    const file = await Deno.open(src, { write: true, create: true });
    for (let i = 0; i < size / MiB; i++) {
      new DataView(block.buffer).setUint32(i % (MiB / 4) * 4, i); // every MiB differs
      await file.write(block);
    }
    file.close();
    const want = await sha256(src);
    for (const chunk of [MiB, 48 * MiB]) {
      const ctx = fakeContext();
      const dst = join(dir, `dst-${chunk}`);
      const { seconds, total, reads } = await copyThroughHandlers(ctx, src, dst, BigInt(chunk));
      assert.equal(total, size);
      assert.equal(reads, Math.ceil(size / chunk) + (size % chunk === 0 ? 1 : 0));
      assert.equal(await sha256(dst), want);
      console.log(
        `  ${chunk / MiB} MiB chunks: 256 MiB read+written in ${seconds.toFixed(2)} s = ${
          (256 / seconds).toFixed(0)
        } MiB/s`,
      );
      await Deno.remove(dst);
    }
  });
});
