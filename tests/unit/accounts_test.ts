import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { findPasswdEntry } from "../../helper/authorized_keys.ts";
import {
  CHPASSWD_PATH,
  guestSetUserPassword,
  guestSshAddAuthorizedKeys,
  guestSshGetAuthorizedKeys,
  guestSshRemoveAuthorizedKeys,
} from "../../commands/accounts.ts";
import { QgaError } from "../../protocol/errors.ts";
import { FixtureSystem } from "../../system/fixture.ts";
import { type FakeContext, fakeContext } from "../helpers/fake_context.ts";
import type { RunResult } from "../../commands/types.ts";

// The captured passwd (tests/fixtures/identity/etc/passwd, system accounts of a
// Debian 12 VM) with every home moved under a temporary directory, plus a test user
// owned by whoever runs the tests: no real home directory can be touched.
const CAPTURED = fileURLToPath(new URL("../fixtures/identity/etc/passwd", import.meta.url));
const USER = "qgatest";

async function withHome(fn: (ctx: FakeContext, home: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "qga-accounts-" });
  try {
    const lines = Deno.readTextFileSync(CAPTURED).trim().split("\n").map((l) => {
      const f = l.split(":");
      f[5] = `${root}/home/${f[0]}`;
      return f.join(":");
    });
    const home = `${root}/home/${USER}`;
    lines.push(`${USER}:x:${Deno.uid()}:${Deno.gid()}:QGA test:${home}:/bin/sh`);
    await Deno.mkdir(`${root}/etc`);
    await Deno.writeTextFile(`${root}/etc/passwd`, lines.join("\n") + "\n");
    await Deno.mkdir(home, { recursive: true, mode: 0o755 });
    await fn(fakeContext({ sys: new FixtureSystem(root) }), home);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const qgaError = (desc: string) => (e: unknown) => e instanceof QgaError && e.message === desc;
const KEY1 = "algo key1 comments";
const KEY2 = "algo key2 comments";
const read = (home: string) => Deno.readTextFileSync(`${home}/.ssh/authorized_keys`);
const setKeys = (home: string, text: string) => {
  Deno.mkdirSync(`${home}/.ssh`, { recursive: true, mode: 0o700 });
  Deno.writeTextFileSync(`${home}/.ssh/authorized_keys`, text);
};

Deno.test("ssh keys: an unknown or empty user is refused with GLib's errno-0 text (qga-ssh-test invalid_user)", async () => {
  await withHome(async (ctx) => {
    await assert.rejects(
      async () => await guestSshAddAuthorizedKeys.handler({ username: "", keys: [] }, ctx),
      qgaError("failed to lookup user '': Success"),
    );
    await assert.rejects(
      async () => await guestSshRemoveAuthorizedKeys.handler({ username: "", keys: [] }, ctx),
      qgaError("failed to lookup user '': Success"),
    );
    await assert.rejects(
      async () => await guestSshGetAuthorizedKeys.handler({ username: "nosuchuser" }, ctx),
      qgaError("failed to lookup user 'nosuchuser': Success"),
    );
  });
});

Deno.test("ssh keys: a key with a newline or a leading # is refused before the lookup (invalid_key)", async () => {
  await withHome(async (ctx) => {
    await assert.rejects(
      async () =>
        await guestSshAddAuthorizedKeys.handler({
          username: "nosuchuser",
          keys: ["not a valid\nkey"],
        }, ctx),
      qgaError("invalid OpenSSH public key: 'not a valid\nkey'"),
    );
    await assert.rejects(
      async () =>
        await guestSshRemoveAuthorizedKeys.handler({ username: USER, keys: ["# comment"] }, ctx),
      qgaError("invalid OpenSSH public key: '# comment'"),
    );
  });
});

Deno.test("ssh keys: add writes without trailing newline and skips present keys (add_keys)", async () => {
  await withHome(async (ctx, home) => {
    await guestSshAddAuthorizedKeys.handler({ username: USER, keys: [KEY2] }, ctx);
    assert.equal(read(home), KEY2);
    await guestSshAddAuthorizedKeys.handler({ username: USER, keys: [KEY1, KEY2] }, ctx);
    assert.equal(read(home), `${KEY2}\n${KEY1}`);
    const dir = Deno.statSync(`${home}/.ssh`);
    const file = Deno.statSync(`${home}/.ssh/authorized_keys`);
    assert.equal(dir.mode! & 0o777, 0o700);
    assert.equal(file.mode! & 0o777, 0o600);
    assert.equal(file.uid, Deno.uid());
    assert.equal(dir.gid, Deno.gid());
  });
});

Deno.test("ssh keys: reset replaces the keys and an empty reset truncates (add_reset_keys)", async () => {
  await withHome(async (ctx, home) => {
    await guestSshAddAuthorizedKeys.handler({ username: USER, keys: [KEY1, KEY2] }, ctx);
    assert.equal(read(home), `${KEY1}\n${KEY2}`);
    await guestSshAddAuthorizedKeys.handler({ username: USER, keys: [KEY2], reset: true }, ctx);
    assert.equal(read(home), KEY2);
    await guestSshAddAuthorizedKeys.handler({ username: USER, keys: [], reset: true }, ctx);
    assert.equal(read(home), "");
  });
});

Deno.test("ssh keys: appending to a file ending in a newline leaves an empty line", async () => {
  await withHome(async (ctx, home) => {
    setKeys(home, "a\n");
    await guestSshAddAuthorizedKeys.handler({ username: USER, keys: ["b"] }, ctx);
    assert.equal(read(home), "a\n\nb");
  });
});

Deno.test("ssh keys: remove keeps comments and the final newline (remove_keys)", async () => {
  await withHome(async (ctx, home) => {
    const original = `${KEY1}\n${KEY1}\n# a commented line\nalgo some-key another\n`;
    setKeys(home, original);
    await guestSshRemoveAuthorizedKeys.handler({ username: USER, keys: [KEY2] }, ctx);
    assert.equal(read(home), original);
    await guestSshRemoveAuthorizedKeys.handler({ username: USER, keys: [KEY1, KEY2] }, ctx);
    assert.equal(read(home), "# a commented line\nalgo some-key another\n");
  });
});

Deno.test("ssh keys: remove without a file succeeds and creates nothing", async () => {
  await withHome(async (ctx, home) => {
    await guestSshRemoveAuthorizedKeys.handler({ username: USER, keys: [KEY1] }, ctx);
    assert.equal(Deno.readDirSync(home).toArray().length, 0);
  });
});

Deno.test("ssh keys: get returns the keys in reverse order without comments or blanks (get_keys)", async () => {
  await withHome(async (ctx, home) => {
    setKeys(home, `${KEY1}\n# a commented line\n\n  algo some-key another \r\n`);
    assert.deepEqual(await guestSshGetAuthorizedKeys.handler({ username: USER }, ctx), {
      keys: ["algo some-key another", KEY1],
    });
  });
});

Deno.test("ssh keys: get without a file is an error naming it", async () => {
  await withHome(async (ctx, home) => {
    const path = `${home}/.ssh/authorized_keys`;
    await assert.rejects(
      async () => await guestSshGetAuthorizedKeys.handler({ username: USER }, ctx),
      qgaError(
        `failed to read '${path}': Failed to open file \u201C${path}\u201D: No such file or directory`,
      ),
    );
  });
});

Deno.test("passwd lookup takes the first matching line and skips malformed ones", () => {
  const text = "bad:x:zz:1::/x:/bin/sh\nbad:x:5:6::/home/bad:/bin/sh\nbad:x:7:8::/other:/bin/sh\n";
  assert.deepEqual(findPasswdEntry(text, "bad"), {
    name: "bad",
    uid: 5,
    gid: 6,
    home: "/home/bad",
  });
  assert.equal(findPasswdEntry(text, "ba"), null);
});

const ok = (): RunResult => ({ code: 0, signal: null, output: new Uint8Array() });
const b64 = (s: string) => new TextEncoder().encode(s).toBase64();

Deno.test("guest-set-user-password feeds user:password to chpasswd", async () => {
  const ctx = fakeContext({ run: ok });
  await guestSetUserPassword.handler(
    { username: "alice", password: b64("s3cret"), crypted: false },
    ctx,
  );
  assert.deepEqual(ctx.runs.map((r) => r.argv), [[CHPASSWD_PATH]]);
  assert.equal(new TextDecoder().decode(ctx.runs[0]!.input), "alice:s3cret\n");
});

Deno.test("guest-set-user-password passes -e for a crypted password and accepts Perl's base64", async () => {
  const ctx = fakeContext({ run: ok });
  const hash =
    "$6$salt$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./abcdefghijklmnopqrstu";
  const perl = b64(hash).replace(/.{76}/g, "$&\n") + "\n";
  await guestSetUserPassword.handler({ username: "bob", password: perl, crypted: true }, ctx);
  assert.deepEqual(ctx.runs[0]!.argv, [CHPASSWD_PATH, "-e"]);
  assert.equal(new TextDecoder().decode(ctx.runs[0]!.input), `bob:${hash}\n`);
});

Deno.test("guest-set-user-password refuses forbidden characters before running chpasswd", async () => {
  const ctx = fakeContext({ run: ok });
  await assert.rejects(
    async () =>
      await guestSetUserPassword.handler(
        { username: "a", password: b64("x\ny"), crypted: false },
        ctx,
      ),
    qgaError("forbidden characters in raw password"),
  );
  for (const username of ["a:b", "a\nb"]) {
    await assert.rejects(
      async () =>
        await guestSetUserPassword.handler({ username, password: b64("x"), crypted: false }, ctx),
      qgaError("forbidden characters in username"),
    );
  }
  await assert.rejects(
    async () =>
      await guestSetUserPassword.handler({ username: "a", password: "!!", crypted: false }, ctx),
    qgaError("Base64 data contains invalid characters"),
  );
  assert.deepEqual(ctx.runs, []);
});

Deno.test("guest-set-user-password stops the password at a NUL as qemu-ga's C string does", async () => {
  const ctx = fakeContext({ run: ok });
  await guestSetUserPassword.handler(
    { username: "a", password: b64("pw\0\nrest"), crypted: false },
    ctx,
  );
  assert.equal(new TextDecoder().decode(ctx.runs[0]!.input), "a:pw\n");
});

Deno.test("guest-set-user-password reports chpasswd's output on failure and never logs the password", async () => {
  const ctx = fakeContext({
    run: () => ({
      code: 1,
      signal: null,
      output: new TextEncoder().encode("chpasswd: line 1: user 'zz' does not exist\n"),
    }),
  });
  await assert.rejects(
    async () =>
      await guestSetUserPassword.handler({
        username: "zz",
        password: b64("hunter2"),
        crypted: false,
      }, ctx),
    qgaError(
      "child process has failed to set user password: chpasswd: line 1: user 'zz' does not exist\n",
    ),
  );
  assert.ok(!JSON.stringify(ctx.logs).includes("hunter2"));
  assert.deepEqual(guestSetUserPassword.sensitive, ["password"]);
});
