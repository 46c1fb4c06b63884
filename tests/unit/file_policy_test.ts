import assert from "node:assert/strict";
import { join } from "node:path";
import {
  guestFileClose,
  guestFileOpen,
  guestFileRead,
  guestFileWrite,
} from "../../commands/file.ts";
import {
  checkFileAccess,
  fileGrants,
  policyActive,
  resolveForPolicy,
} from "../../commands/file_policy.ts";
import type { Context } from "../../commands/types.ts";
import { QgaError } from "../../protocol/errors.ts";
import { fakeContext } from "../helpers/fake_context.ts";

async function open(ctx: Context, path: string, mode?: string): Promise<bigint> {
  return await guestFileOpen.handler(mode === undefined ? { path } : { path, mode }, ctx);
}

/**
 * A tree: rw/ (read-write root), ro/ (read-only root), outside/, links between them, and
 * rw-x/ and ro-x/: outside too, though their names start with a root's.
 */
async function tree(f: (t: { dir: string; rw: string; ro: string; out: string }) => Promise<void>) {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "qga-policy-test-" }));
  const rw = join(dir, "rw");
  const ro = join(dir, "ro");
  const out = join(dir, "outside");
  for (const d of [rw, ro, out, join(rw, "sub")]) await Deno.mkdir(d);
  await Deno.writeTextFile(join(rw, "data.txt"), "rw data");
  await Deno.writeTextFile(join(ro, "conf.txt"), "ro data");
  await Deno.writeTextFile(join(out, "secret.txt"), "secret");
  await Deno.symlink(join(out, "secret.txt"), join(rw, "escape-link"));
  await Deno.symlink(out, join(rw, "escape-dir"));
  await Deno.symlink(join(rw, "data.txt"), join(out, "into-rw"));
  for (const d of [`${rw}-x`, `${ro}-x`]) {
    await Deno.mkdir(d);
    await Deno.writeTextFile(join(d, "secret.txt"), "secret");
  }
  await Deno.symlink(join(`${rw}-x`, "secret.txt"), join(rw, "sibling-link"));
  try {
    await f({ dir, rw, ro, out });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function denied(path: string, rw: string, ro: string): QgaError {
  return new QgaError(
    `access to '${path}' is denied by the file access policy (allowed: ${rw} (read-write), ${ro} (read-only))`,
  );
}

Deno.test("with no roots the policy is off and grants cover the whole filesystem", () => {
  const none = { fileRoots: [], fileReadRoots: [] };
  assert.equal(policyActive(none), false);
  assert.deepEqual(fileGrants(none), { read: ["/"], write: ["/"] });
  assert.equal(checkFileAccess("/etc/shadow", true, none), null);
});

Deno.test("grants list read-write roots for both and read-only roots for reading, canonicalised", async () => {
  await tree(async ({ dir, rw, ro }) => {
    const link = join(dir, "rw-link");
    await Deno.symlink(rw, link);
    assert.deepEqual(fileGrants({ fileRoots: [link], fileReadRoots: [ro] }), {
      read: [rw, ro],
      write: [rw],
    });
    assert.deepEqual(fileGrants({ fileRoots: [], fileReadRoots: [ro, ro] }), {
      read: [ro],
      write: [],
    });
  });
});

Deno.test("paths inside a read-write root open in every mode and inside a read-only root only for reading", async () => {
  await tree(async ({ rw, ro }) => {
    const ctx = fakeContext({ options: { fileRoots: [rw], fileReadRoots: [ro] } });
    const h = await open(ctx, join(rw, "data.txt"), "r+");
    assert.deepEqual(await guestFileWrite.handler({ handle: h, "buf-b64": "Ulc=" }, ctx), {
      count: 2,
      eof: false,
    });
    await guestFileClose.handler({ handle: h }, ctx);
    assert.equal(await Deno.readTextFile(join(rw, "data.txt")), "RW data");
    const r = await open(ctx, join(ro, "conf.txt"));
    assert.equal((await guestFileRead.handler({ handle: r }, ctx))["buf-b64"], btoa("ro data"));
    for (const mode of ["w", "a", "r+", "w+", "a+", "rb+"]) {
      await assert.rejects(
        () => open(ctx, join(ro, "conf.txt"), mode),
        denied(join(ro, "conf.txt"), rw, ro),
        mode,
      );
    }
    assert.equal(await Deno.readTextFile(join(ro, "conf.txt")), "ro data");
  });
});

Deno.test("paths outside the roots are refused whatever the spelling: absolute, .., symlinks", async () => {
  await tree(async ({ rw, ro, out }) => {
    const ctx = fakeContext({ options: { fileRoots: [rw], fileReadRoots: [ro] } });
    for (
      const p of [
        join(out, "secret.txt"),
        `${rw}/../outside/secret.txt`,
        `${rw}/sub/../../outside/secret.txt`,
        join(rw, "escape-link"),
        join(rw, "escape-dir", "secret.txt"),
        "/etc/hostname",
        "/",
        // A directory whose name merely starts with a root's is not inside it.
        `${rw}-x/secret.txt`,
        `${ro}-x/secret.txt`,
        `${rw}-x`,
        `${rw}/../rw-x/secret.txt`,
        join(rw, "sibling-link"),
      ]
    ) {
      await assert.rejects(() => open(ctx, p), denied(p, rw, ro), p);
    }
    for (const p of [`${rw}-x/new.txt`, `${rw}x`, `${ro}-x/secret.txt`]) {
      await assert.rejects(() => open(ctx, p, "w"), denied(p, rw, ro), `${p} for writing`);
    }
    await assert.rejects(Deno.stat(`${rw}-x/new.txt`), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(`${rw}x`), Deno.errors.NotFound);
    // A link from outside into a root is fine: what counts is where it lands.
    const h = await open(ctx, join(out, "into-rw"));
    assert.equal((await guestFileRead.handler({ handle: h }, ctx)).count, 7);
  });
});

Deno.test("a refused open creates nothing, truncates nothing and consumes no handle", async () => {
  await tree(async ({ rw, ro, out }) => {
    const ctx = fakeContext({ options: { fileRoots: [rw], fileReadRoots: [ro] } });
    await assert.rejects(() => open(ctx, join(out, "new.txt"), "w"));
    await assert.rejects(() => open(ctx, join(rw, "escape-dir", "new.txt"), "w"));
    await assert.rejects(() => open(ctx, join(rw, "escape-link"), "w"));
    await assert.rejects(() => open(ctx, join(ro, "new.txt"), "a"));
    assert.deepEqual(
      [...Deno.readDirSync(out)].map((e) => e.name).sort(),
      ["into-rw", "secret.txt"],
    );
    assert.equal(await Deno.readTextFile(join(out, "secret.txt")), "secret");
    assert.equal([...Deno.readDirSync(ro)].length, 1);
    assert.equal(await open(ctx, join(rw, "data.txt")), 1000n);
  });
});

Deno.test("new files may be created inside a read-write root, 0666, and w still truncates", async () => {
  await tree(async ({ rw, ro }) => {
    const ctx = fakeContext({ options: { fileRoots: [rw], fileReadRoots: [ro] } });
    const p = join(rw, "sub", "new.txt");
    await guestFileClose.handler({ handle: await open(ctx, p, "w") }, ctx);
    assert.equal((await Deno.stat(p)).mode! & 0o777, 0o666);
    await guestFileClose.handler({ handle: await open(ctx, join(rw, "data.txt"), "w") }, ctx);
    assert.equal((await Deno.stat(join(rw, "data.txt"))).size, 0);
  });
});

Deno.test("a missing file inside a root still gets qemu-ga's No such file or directory", async () => {
  await tree(async ({ rw, ro }) => {
    const ctx = fakeContext({ options: { fileRoots: [rw], fileReadRoots: [ro] } });
    const p = join(rw, "missing.txt");
    await assert.rejects(
      () => open(ctx, p, "r"),
      new QgaError(`failed to open file '${p}' (mode: 'r'): No such file or directory`),
    );
    const deep = join(rw, "no", "such", "dir.txt");
    await assert.rejects(
      () => open(ctx, deep, "w"),
      new QgaError(`failed to open file '${deep}' (mode: 'w'): No such file or directory`),
    );
  });
});

Deno.test("relative paths resolve against the working directory, symlinks included", async () => {
  await tree(({ dir, rw, ro, out }) => {
    assert.equal(resolveForPolicy("rw/data.txt", dir), join(rw, "data.txt"));
    assert.equal(resolveForPolicy("rw/escape-dir/secret.txt", dir), join(out, "secret.txt"));
    assert.equal(resolveForPolicy("rw/new/deeper.txt", dir), join(rw, "new", "deeper.txt"));
    assert.equal(resolveForPolicy("/", dir), "/");
    const opts = { fileRoots: [rw], fileReadRoots: [ro] };
    assert.equal(checkFileAccess(join(rw, "sub", "x"), true, opts), join(rw, "sub", "x"));
    // Whether `missing/..` is resolved lexically (Deno without --allow-all) or
    // refused as unresolvable (the kernel's view), it never lands inside a root.
    assert.throws(() => checkFileAccess(`${rw}/missing/../../outside/x`, false, opts));
    assert.throws(() => checkFileAccess(`${rw}/missing/../../outside/x`, true, opts));
    return Promise.resolve();
  });
});

Deno.test("a read-only policy alone allows reads and refuses every write mode", async () => {
  await tree(async ({ rw, ro }) => {
    const ctx = fakeContext({ options: { fileRoots: [], fileReadRoots: [ro] } });
    await guestFileClose.handler({ handle: await open(ctx, join(ro, "conf.txt"), "rb") }, ctx);
    const p = join(rw, "data.txt");
    await assert.rejects(
      () => open(ctx, p),
      new QgaError(
        `access to '${p}' is denied by the file access policy (allowed: ${ro} (read-only))`,
      ),
    );
  });
});

Deno.test("guest-file-open needs the policy's grants", () => {
  const needs = guestFileOpen.needs;
  assert.equal(typeof needs, "function");
  if (typeof needs !== "function") return;
  const base = fakeContext().options;
  assert.deepEqual(needs(base), { read: ["/"], write: ["/"] });
  assert.deepEqual(needs({ ...base, fileRoots: ["/"], fileReadRoots: [] }), {
    read: ["/"],
    write: ["/"],
  });
});
