/**
 * The card's command line (`deno run --allow-read --allow-write --allow-run main.ts ...`)
 * grants no --allow-env: the agent still reads QGA_CONF, QGA_OS_RELEASE and TZ (from
 * `env -0`, which that line allows: system/environment.ts), so an operator's config is
 * never dropped silently and no command is disabled for an env grant (issues 12 and 13).
 * A line that allows neither says that QGA_CONF cannot be read.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { QgaClient } from "../../client/mod.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const DENO = `${ROOT}node_modules/.bin/deno`;
const MAIN = `${ROOT}main.ts`;
const CARD = ["run", "--allow-read", "--allow-write", "--allow-run"];

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qga-card-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function run(flags: string[], args: string[], env: Record<string, string>) {
  const out = await new Deno.Command(DENO, {
    args: [...flags, MAIN, ...args],
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("under the card's line -D shows the config QGA_CONF names, with nothing on stderr", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/qga.conf`,
      "[general]\nmethod=unix-listen\npath=/x.sock\nblock-rpcs=guest-ping;guest-get-time\n",
    );
    const r = await run(CARD, ["-D"], { QGA_CONF: `${dir}/qga.conf` });
    assert.equal(r.stderr, "");
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^method=unix-listen$/m);
    assert.match(r.stdout, /^path=\/x\.sock$/m);
    assert.match(r.stdout, /^block-rpcs=guest-ping;guest-get-time$/m);
  });
});

Deno.test("a sandbox that can read QGA_CONF neither way says so instead of ignoring it", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/qga.conf`, "[general]\nmethod=unix-listen\npath=/x.sock\n");
    const r = await run(["run", "--allow-read", "--allow-run=/bin/true"], ["-D"], {
      QGA_CONF: `${dir}/qga.conf`,
    });
    assert.match(r.stderr, /QGA_CONF cannot be read .*a configuration it names is not loaded/);
  });
});

Deno.test("under the card's line (plus the socket's net grant) osinfo, timezone and exec follow the environment", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/os-release`, 'ID=card-test\nNAME="Card Line"\n');
    const sock = `${dir}/sock`;
    const child = new Deno.Command(DENO, {
      args: [...CARD, "--allow-net", MAIN, "-m", "unix-listen", "-p", sock, "-t", dir],
      env: {
        PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
        QGA_OS_RELEASE: `${dir}/os-release`,
        TZ: "EST5",
        NO_COLOR: "1",
      },
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    try {
      let c: QgaClient | undefined;
      for (let i = 0; i < 100 && !c; i++) {
        try {
          c = await QgaClient.connect(sock);
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      assert.ok(c, "the agent did not listen");
      const info = await c.execute("guest-info") as {
        supported_commands: { name: string; enabled: boolean }[];
      };
      const enabled = new Map(info.supported_commands.map((x) => [x.name, x.enabled]));
      for (
        const name of ["guest-get-osinfo", "guest-get-timezone", "guest-set-time", "guest-exec"]
      ) {
        assert.equal(enabled.get(name), true, `${name} is disabled under the card's line`);
      }
      const os = await c.execute("guest-get-osinfo") as { id?: string; name?: string };
      assert.equal(os.id, "card-test");
      assert.equal(os.name, "Card Line");
      assert.deepEqual(await c.execute("guest-get-timezone"), { zone: "EST", offset: -18000 });
      // a bare name is found through the agent's PATH
      const { pid } = await c.execute("guest-exec", {
        path: "echo",
        arg: ["-n", "card"],
        "capture-output": "merged",
      }) as { pid: number };
      let st: { exited: boolean; "out-data"?: string } = { exited: false };
      for (let i = 0; i < 200 && !st.exited; i++) {
        st = await c.execute("guest-exec-status", { pid }) as typeof st;
        if (!st.exited) await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(new TextDecoder().decode(Uint8Array.fromBase64(st["out-data"] ?? "")), "card");
      await c.close();
    } finally {
      child.kill("SIGTERM");
      await child.status;
      const text = await stderr;
      assert.doesNotMatch(text, /cannot be read/, text);
    }
  });
});
