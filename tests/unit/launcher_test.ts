/**
 * The two helper launchers (helper/qga-helper for a checkout, packaging/qga-helper.sh for
 * the bundles) on their own: each is copied into a temp tree where the deno binary it
 * runs is a stand-in that prints the environment it was started with (from
 * /proc/<pid>/environ, so nothing the shell adds), its arguments and its working
 * directory. A compromised agent controls the launcher's arguments and environment; the
 * stand-in must see exactly the launcher's fixed environment and flags whatever they were
 * (docs/security.md "The launcher").
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all tests/unit/launcher_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

/** Prints the exec'd environment (one per line), `--`, each argument, `--`, the cwd. */
const STAND_IN = `#!/bin/sh
tr '\\0' '\\n' < /proc/$$/environ
echo --
for a in "$@"; do echo "$a"; done
echo --
pwd
`;

/** What the hostile caller passes: everything a launcher must not hand on. */
const HOSTILE_ARGS = ["--allow-pty-channels", "--inspect=0.0.0.0:9229", "/tmp/evil.ts"];
const HOSTILE_ENV: Record<string, string> = {
  DENO_DIR: "/tmp/evil-cache",
  DENO_V8_FLAGS: "--allow-natives-syntax",
  DENO_CERT: "/tmp/evil.pem",
  NODE_OPTIONS: "--require=/tmp/evil.js",
  LD_LIBRARY_PATH: "/tmp/evil-lib",
  PATH: "/tmp/evil-bin",
  IFS: "/",
  HOME: "/tmp/evil-home",
};

interface Seen {
  env: Record<string, string>;
  args: string[];
  cwd: string;
}

async function launch(launcher: string): Promise<Seen> {
  const out = await new Deno.Command(launcher, {
    args: HOSTILE_ARGS,
    clearEnv: true,
    env: HOSTILE_ENV,
    cwd: "/tmp",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `the launcher failed: ${stderr}`);
  const [envPart, argPart, cwdPart] = new TextDecoder().decode(out.stdout).split("--\n");
  assert.ok(envPart !== undefined && argPart !== undefined && cwdPart !== undefined);
  const env: Record<string, string> = {};
  for (const line of envPart.split("\n").filter((l) => l !== "")) {
    const eq = line.indexOf("=");
    env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return { env, args: argPart.split("\n").slice(0, -1), cwd: cwdPart.trim() };
}

async function writeExecutable(path: string, text: string): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, text);
  await Deno.chmod(path, 0o755);
}

const FLAGS = ["--allow-all", "--no-prompt", "--no-config", "--no-lock", "--no-remote", "--no-npm"];

Deno.test("helper/qga-helper runs the checkout's deno with a fixed environment and fixed flags, whatever its caller passes", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "qga-launcher-" }));
  try {
    await writeExecutable(
      `${root}/helper/qga-helper`,
      await Deno.readTextFile(`${REPO}/helper/qga-helper`),
    );
    await writeExecutable(`${root}/node_modules/deno/deno`, STAND_IN);
    const seen = await launch(`${root}/helper/qga-helper`);
    assert.deepEqual(seen.env, {
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
      DENO_DIR: `${root}/node_modules/.deno-helper-cache`,
      DENO_NO_UPDATE_CHECK: "1",
    });
    assert.deepEqual(seen.args, ["run", ...FLAGS, `${root}/helper/main.ts`]);
    assert.equal(seen.cwd, "/");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("packaging/qga-helper.sh runs the bundle's deno with a fixed environment and fixed flags, whatever its caller passes", async () => {
  const lib = await Deno.realPath(await Deno.makeTempDir({ prefix: "qga-launcher-lib-" }));
  try {
    await writeExecutable(
      `${lib}/helper/qga-helper`,
      await Deno.readTextFile(`${REPO}/packaging/qga-helper.sh`),
    );
    await writeExecutable(`${lib}/deno`, STAND_IN);
    const seen = await launch(`${lib}/helper/qga-helper`);
    // The unit's CacheDirectory= when it exists, else a path Deno cannot create.
    let cache = "/var/cache/deno-qga";
    try {
      if (!Deno.statSync(cache).isDirectory) cache = "/dev/null/uncached";
    } catch {
      cache = "/dev/null/uncached";
    }
    assert.deepEqual(seen.env, {
      PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
      LANG: "C.UTF-8",
      DENO_DIR: cache,
      DENO_NO_UPDATE_CHECK: "1",
      NO_COLOR: "1",
    });
    assert.deepEqual(seen.args, ["run", ...FLAGS, `${lib}/qga-helper.js`]);
    assert.equal(seen.cwd, "/");
  } finally {
    await Deno.remove(lib, { recursive: true });
  }
});

Deno.test("a launcher outside a helper/ directory refuses to run anything", async () => {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "qga-launcher-bad-" }));
  try {
    for (
      const [name, source] of [
        ["checkout", "helper/qga-helper"],
        ["bundle", "packaging/qga-helper.sh"],
      ] as const
    ) {
      await writeExecutable(
        `${dir}/${name}/qga-helper`,
        await Deno.readTextFile(`${REPO}/${source}`),
      );
      await writeExecutable(`${dir}/deno`, STAND_IN);
      await writeExecutable(`${dir}/node_modules/deno/deno`, STAND_IN);
      const out = await new Deno.Command(`${dir}/${name}/qga-helper`, {
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 127, name);
      assert.equal(new TextDecoder().decode(out.stdout), "", `${name} ran something`);
      assert.match(new TextDecoder().decode(out.stderr), /not inside a helper\/ directory/);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
