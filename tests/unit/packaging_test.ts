/**
 * Packaging: scripts/bundle.sh, scripts/install.sh into a temporary DESTDIR, the unit
 * (packaging/deno-qga.service.in rendered by packaging/render-unit.sh with the agent's own
 * --print-permissions line), systemd-analyze verify on it, scripts/uninstall.sh leaving the
 * tree empty again, and the Debian package scripts/package.sh builds (its control data, its
 * files, and the unit its render-unit makes).
 *
 * Needs sh, install, sha256sum, md5sum (coreutils), systemd-analyze, systemd-escape
 * (apt-get install systemd) and dpkg-deb, dpkg-shlibdeps (apt-get install dpkg-dev). The real
 * installs in a guest are tests/e2e_install/ (install.sh) and tests/e2e_systemd/ (the .deb).
 *
 * @module
 */

import assert from "node:assert/strict";

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const PREFIX = "/usr/local";
const LIB = `${PREFIX}/lib/deno-qga`;
const UNIT = `${PREFIX}/lib/systemd/system/deno-qga.service`;
const RULES = `${PREFIX}/lib/udev/rules.d/99-deno-qga.rules`;
const PORT = "/dev/virtio-ports/org.qemu.guest_agent.0";
const DEVICE_UNIT = "dev-virtio\\x2dports-org.qemu.guest_agent.0.device";

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; clearEnv?: boolean } = {},
): Promise<Output> {
  let o: Deno.CommandOutput;
  try {
    o = await new Deno.Command(cmd, { args, stdin: "null", ...options }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`${cmd} is not installed (${toolHint(cmd)})`);
    }
    throw e;
  }
  const d = new TextDecoder();
  return { code: o.code, stdout: d.decode(o.stdout), stderr: d.decode(o.stderr) };
}

function toolHint(cmd: string): string {
  if (cmd.startsWith("systemd-")) return "apt-get install systemd";
  return "apt-get install coreutils";
}

function ok(o: Output, what: string): string {
  assert.equal(o.code, 0, `${what} failed (exit ${o.code}):\n${o.stdout}\n${o.stderr}`);
  return o.stdout;
}

/** Builds the bundles into `out` (a temp dir, not the shared dist/); about 0.5 s. */
async function bundle(out: string): Promise<void> {
  ok(await run("sh", [`${REPO}/scripts/bundle.sh`, "--out", out]), "scripts/bundle.sh");
}

/** The temp dir of the running test: `dest` (DESTDIR) and `dist` (bundles) side by side. */
interface Temp {
  dest: string;
  dist: string;
}

async function install(t: Temp, extra: string[] = []): Promise<string> {
  return ok(
    await run("sh", [
      `${REPO}/scripts/install.sh`,
      "--destdir",
      t.dest,
      "--dist",
      t.dist,
      ...extra,
    ]),
    "scripts/install.sh",
  );
}

async function uninstall(destdir: string, extra: string[] = []): Promise<Output> {
  return await run("sh", [`${REPO}/scripts/uninstall.sh`, "--destdir", destdir, ...extra]);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Every path below `root` (relative, with a leading slash), sorted. */
async function tree(root: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    for await (const e of Deno.readDir(root + rel)) {
      const p = `${rel}/${e.name}`;
      out.push(p);
      if (e.isDirectory) await walk(p);
    }
  }
  await walk("");
  return out.sort();
}

async function withTemp(fn: (t: Temp) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qga-pkg." });
  try {
    const t = { dest: `${dir}/dest`, dist: `${dir}/dist` };
    await Deno.mkdir(t.dest);
    await bundle(t.dist);
    await fn(t);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function unitValues(unit: string, key: string): string[] {
  return unit.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) =>
    l.slice(key.length + 1)
  );
}

/** The installed bundle's --print-permissions argv, with the DESTDIR stripped. */
async function printPermissions(destdir: string, main: string): Promise<string[]> {
  const out = ok(
    await run(`${destdir}${LIB}/deno`, [
      "run",
      "--no-prompt",
      "--no-config",
      "--allow-read",
      "--allow-env",
      main,
      "--print-permissions",
      "-m",
      "stdio",
      "-t",
      "/run/deno-qga",
      `--helper=${LIB}/helper/qga-helper`,
    ], { cwd: "/", env: { QGA_CONF: `${destdir}/etc/qemu/qemu-ga.conf`, NO_COLOR: "1" } }),
    "--print-permissions",
  );
  // Plain words only in these tests' configurations (no quoting to undo).
  assert.doesNotMatch(out, /['"\\]/, out);
  return out.trim().replaceAll(`${destdir}/`, "/").split(" ");
}

/** The agent's chunks bundle.sh built and listed in deno-qga.chunks. */
async function chunksOf(dist: string): Promise<string[]> {
  return (await Deno.readTextFile(`${dist}/deno-qga.chunks`)).split("\n").filter((l) => l !== "");
}

Deno.test("bundle.sh splits the agent: start-up code in deno-qga.js, the command table in chunks it lists", async () => {
  await withTemp(async ({ dist: d }) => {
    const chunks = await chunksOf(d);
    const js = [...Deno.readDirSync(d)].filter((e) => e.isFile && e.name.endsWith(".js"))
      .map((e) => e.name).sort();
    assert.deepEqual(
      js,
      ["deno-qga.js", "qga-helper.js", ...chunks].sort(),
      "a .js file not listed",
    );
    const code = await Deno.readTextFile(`${d}/deno-qga.js`);
    // The table's chunk is imported dynamically, and holds commands the start-up code does not.
    const table = chunks.find((c) => c.startsWith("mod-"));
    assert.ok(table, `no chunk of commands/mod.ts among ${chunks.join(" ")}`);
    assert.match(code, new RegExp(`import\\("\\./${table.replace(".", "\\.")}"\\)`));
    assert.ok(!code.includes("guest-get-fsinfo"), "deno-qga.js holds guest-get-fsinfo");
    assert.ok(code.includes("guest-sync-delimited"), "deno-qga.js lacks guest-sync-delimited");
    assert.ok((await Deno.readTextFile(`${d}/${table}`)).includes("guest-get-fsinfo"));
  });
});

Deno.test("bundle.sh builds an agent bundle that runs from an empty directory with only the pinned deno", async () => {
  await withTemp(async ({ dist: d, dest: empty }) => {
    const chunks = await chunksOf(d);
    for (const f of ["deno-qga.js", "deno-qga.chunks", ...chunks]) {
      await Deno.copyFile(`${d}/${f}`, `${empty}/${f}`);
    }
    await Deno.copyFile(`${d}/deno`, `${empty}/deno`); // follows the symlink: the real binary
    await Deno.chmod(`${empty}/deno`, 0o755);
    const env = { DENO_DIR: `${empty}/deno_dir`, NO_COLOR: "1", PATH: "/usr/bin:/bin" };
    const flags = ["run", "--no-prompt", "--no-config", "--allow-read", "--allow-env"];
    const v = await run("./deno", [...flags, "deno-qga.js", "-V"], {
      cwd: empty,
      env,
      clearEnv: true,
    });
    assert.match(ok(v, "deno-qga.js -V"), /^QEMU Guest Agent \d+\.\d+\.\d+\n/);
    const pinned = JSON.parse(await Deno.readTextFile(`${REPO}/package.json`)).devDependencies
      .deno as string;
    assert.match(v.stdout, new RegExp(`Deno ${pinned.replaceAll(".", "\\.")}\\b`));
    const h = await run("./deno", [...flags, "deno-qga.js", "--help"], {
      cwd: empty,
      env,
      clearEnv: true,
    });
    assert.match(ok(h, "deno-qga.js --help"), /^Usage: /);
    assert.match(h.stdout, /--method/);
    // --print-permissions reads the whole command table: its chunks load from beside it.
    const p = await run("./deno", [...flags, "deno-qga.js", "--print-permissions", "-m", "stdio"], {
      cwd: empty,
      env,
      clearEnv: true,
    });
    assert.match(ok(p, "deno-qga.js --print-permissions"), / --allow-run=\S*qga-helper /);
    const names = (await tree(empty)).filter((p) => !p.startsWith("/deno_dir"));
    assert.deepEqual(
      names,
      ["/deno", "/deno-qga.chunks", "/deno-qga.js", ...chunks.map((c) => `/${c}`)].sort(),
    );
    // The static imports of the agent and the helper load at every start: none may be a
    // node: module (Deno's Node compatibility, 10+ ms and several MB; modules use
    // `await import("node:...")` instead). The bundles are minified: several statements
    // share a line.
    const staticImport = /(?:^|[;}\n])\s*import\s*[^;()"']*?\bfrom\s*["'](node:[^"']+)["']/g;
    for (const file of ["deno-qga.js", ...chunks, "qga-helper.js", "channel_worker.ts"]) {
      const code = await Deno.readTextFile(`${d}/${file}`);
      assert.deepEqual([...code.matchAll(staticImport)].map((m) => `${file}: ${m[1]}`), []);
    }
  });
});

Deno.test("the bundled helper starts under its launcher and exits when the agent closes its stdin", async () => {
  await withTemp(async ({ dist: d }) => {
    const launcher = await Deno.stat(`${d}/helper/qga-helper`);
    assert.equal(launcher.mode! & 0o777, 0o755);
    const cacheBefore = await exists("/var/cache/deno-qga");
    const o = await run(`${d}/helper/qga-helper`, []);
    assert.equal(o.code, 0, `helper exit ${o.code}: ${o.stderr}`);
    assert.equal(o.stdout, "", "the helper wrote to a closed channel");
    // Outside the unit (no CacheDirectory=) the launcher must not create the unit's cache.
    if (!cacheBefore) assert.equal(await exists("/var/cache/deno-qga"), false);
  });
});

Deno.test("install.sh lays out the deno binary, both bundles, the launcher, the unit, the udev rule and the config, with their modes", async () => {
  await withTemp(async (t) => {
    const dest = t.dest;
    await install(t);
    const expect: [string, number][] = [
      [`${LIB}/deno`, 0o755],
      [`${LIB}/deno-qga.js`, 0o644],
      [`${LIB}/deno-qga.chunks`, 0o644],
      ...(await chunksOf(t.dist)).map((c): [string, number] => [`${LIB}/${c}`, 0o644]),
      [`${LIB}/qga-helper.js`, 0o644],
      [`${LIB}/channel_worker.ts`, 0o644],
      [`${LIB}/helper/qga-helper`, 0o755],
      [`${LIB}/install-manifest`, 0o644],
      [`${PREFIX}/share/doc/deno-qga/deploy.md`, 0o644],
      [`${PREFIX}/share/doc/deno-qga/qemu-ga.conf.example`, 0o644],
      [UNIT, 0o644],
      [RULES, 0o644],
      ["/etc/qemu/qemu-ga.conf", 0o644],
    ];
    const root = ok(await run("id", ["-u"]), "id -u").trim() === "0";
    for (const [path, mode] of expect) {
      const st = await Deno.stat(dest + path);
      assert.ok(st.isFile, path);
      assert.equal((st.mode! & 0o7777).toString(8), mode.toString(8), path);
      if (root) assert.equal(st.uid, 0, `${path} is not owned by root`);
    }
    // The launcher and every directory above it: not writable by group or others.
    for (
      const p of [`${LIB}/helper/qga-helper`, `${LIB}/helper`, LIB, `${PREFIX}/lib`, PREFIX]
    ) {
      assert.equal((await Deno.stat(dest + p)).mode! & 0o022, 0, `${p} is group/other-writable`);
    }
    const files = await tree(dest);
    const manifest = (await Deno.readTextFile(`${dest}${LIB}/install-manifest`)).trim()
      .split("\n").map((l) => l.replace(/^c [0-9a-f]{64} /, "f ").slice(2));
    assert.deepEqual([...manifest].sort(), files, "the manifest lists exactly the laid-out tree");
    assert.equal(
      await Deno.readTextFile(`${dest}/etc/qemu/qemu-ga.conf`),
      await Deno.readTextFile(`${REPO}/packaging/deno-qga.conf.example`),
    );
    assert.equal(
      await Deno.readTextFile(dest + RULES),
      await Deno.readTextFile(`${REPO}/packaging/99-deno-qga.rules`),
    );
    ok(await uninstall(dest), "uninstall.sh");
    assert.deepEqual(await tree(dest), []);
  });
});

Deno.test("the unit runs the agent's own least-privilege line for -m stdio on one read-write descriptor of the port", async () => {
  await withTemp(async (t) => {
    const dest = t.dest;
    await install(t);
    const unit = await Deno.readTextFile(dest + UNIT);
    assert.doesNotMatch(unit, /@[A-Z_]+@/, "placeholders left");
    // Started by the port's device unit; the name is systemd's own escaping of the path.
    const device = ok(
      await run("systemd-escape", ["--path", "--suffix=device", PORT]),
      "systemd-escape",
    ).trim();
    assert.equal(device, DEVICE_UNIT);
    assert.deepEqual(unitValues(unit, "BindsTo"), [device]);
    assert.deepEqual(unitValues(unit, "After"), [device]);
    assert.deepEqual(unitValues(unit, "WantedBy"), [device]);
    // Same path for both: systemd opens it once, O_RDWR, and dups it (systemd.exec(5)).
    assert.deepEqual(unitValues(unit, "StandardInput"), [`file:${PORT}`]);
    assert.deepEqual(unitValues(unit, "StandardOutput"), [`file:${PORT}`]);
    assert.deepEqual(unitValues(unit, "StandardError"), ["journal"]);
    assert.deepEqual(unitValues(unit, "Restart"), ["always"]);

    const [exec] = unitValues(unit, "ExecStart");
    assert.ok(exec);
    const argv = exec.split(" ");
    // What the installed bundle prints for the installed paths ...
    const fromBundle = await printPermissions(dest, `${dest}${LIB}/deno-qga.js`);
    // ... and what the source tree prints: the same grants (an independent computation).
    const fromSource = await printPermissions(dest, `${REPO}/main.ts`);
    assert.equal(argv[0], `${LIB}/deno`);
    assert.equal(argv.filter((a) => a === `${LIB}/deno-qga.js`).length, 1);
    const flags = (xs: string[]) => xs.slice(1, xs.findIndex((a) => /\.(js|ts)$/.test(a)));
    assert.deepEqual(flags(argv), flags(fromBundle));
    assert.deepEqual(flags(argv), flags(fromSource));
    const tail = (xs: string[]) => xs.slice(xs.findIndex((a) => /\.(js|ts)$/.test(a)) + 1);
    assert.deepEqual(tail(argv), [
      "-m",
      "stdio",
      "-t",
      "/run/deno-qga",
      `--helper=${LIB}/helper/qga-helper`,
    ]);
    assert.deepEqual(tail(argv), tail(fromSource));
    // Least privilege: no blanket grants, and the helper is the run grant's launcher.
    for (const a of argv) {
      assert.ok(!["-A", "--allow-all", "--allow-run", "--allow-ffi"].includes(a), a);
    }
    assert.ok(
      argv.some((a) => a.startsWith("--allow-run=") && a.includes(`${LIB}/helper/qga-helper`)),
    );
    assert.ok(
      argv.some((a) => a.startsWith("--allow-read=") && a.includes("/etc/qemu/qemu-ga.conf")),
    );
    assert.ok(argv.some((a) => /^--allow-(read|write)=.*\/run\/deno-qga\b/.test(a)));
    // stdio needs no net grant for its channel: the only ones are the merged-output socket
    // of guest-exec in the state dir and the inspector's port the agent holds.
    assert.deepEqual(
      argv.filter((a) => a.startsWith("--allow-net")),
      ["--allow-net=unix:/run/deno-qga/qga-exec.sock,127.0.0.1:9229"],
    );
    ok(await uninstall(dest), "uninstall.sh");
  });
});

/** A root for `systemd-analyze verify --root`: the host's own units plus the install. */
async function verifyRoot(dest: string, fn: (root: string) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "qga-pkg-verify." });
  try {
    await Deno.mkdir(`${root}/usr/lib/systemd`, { recursive: true });
    ok(await run("cp", ["-a", "/usr/lib/systemd/system", `${root}/usr/lib/systemd/`]), "cp");
    ok(await run("cp", ["-a", `${dest}/.`, `${root}/`]), "cp");
    await fn(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

Deno.test("systemd-analyze verify accepts the installed unit and rejects it when ExecStart names a missing binary", async () => {
  await withTemp(async (t) => {
    const dest = t.dest;
    await install(t);
    await verifyRoot(dest, async (root) => {
      const v = await run("systemd-analyze", [
        "verify",
        "--man=no",
        `--root=${root}`,
        "deno-qga.service",
      ], { cwd: "/" });
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stderr.trim(), "", `systemd-analyze warned:\n${v.stderr}`);
      // The check bites: the same unit with the deno binary gone fails.
      await Deno.remove(`${root}${LIB}/deno`);
      const bad = await run("systemd-analyze", [
        "verify",
        "--man=no",
        `--root=${root}`,
        "deno-qga.service",
      ], { cwd: "/" });
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /is not executable/);
    });
    ok(await uninstall(dest), "uninstall.sh");
  });
});

Deno.test("install.sh computes the grants from the config under DESTDIR and never overwrites it", async () => {
  await withTemp(async (t) => {
    const dest = t.dest;
    await Deno.mkdir(`${dest}/etc/qemu`, { recursive: true });
    const conf = "[general]\nfile-roots=/srv/qga\nblock-rpcs=guest-exec,guest-exec-status\n";
    await Deno.writeTextFile(`${dest}/etc/qemu/qemu-ga.conf`, conf);
    await install(t);
    assert.equal(await Deno.readTextFile(`${dest}/etc/qemu/qemu-ga.conf`), conf);
    const unit = await Deno.readTextFile(dest + UNIT);
    const [exec] = unitValues(unit, "ExecStart");
    const write = exec!.split(" ").find((a) => a.startsWith("--allow-write="));
    const list = write?.slice("--allow-write=".length).split(",") ?? [];
    assert.ok(list.includes("/srv/qga"), `file-roots not granted: ${write}`);
    assert.ok(!list.includes("/"), `writes still granted everywhere: ${write}`);
    for (const p of list) {
      assert.ok(
        !`${LIB}/helper/qga-helper`.startsWith(p.endsWith("/") ? p : `${p}/`),
        `${p} covers the launcher`,
      );
    }
    assert.ok(!exec!.includes(dest), "a DESTDIR path leaked into ExecStart");
    ok(await uninstall(dest), "uninstall.sh");
    // The admin's config stays; everything else is gone.
    assert.deepEqual(await tree(dest), ["/etc", "/etc/qemu", "/etc/qemu/qemu-ga.conf"]);
  });
});

Deno.test("uninstall.sh keeps a config changed since install unless --purge, and an upgrade still uninstalls completely", async () => {
  await withTemp(async (t) => {
    const dest = t.dest;
    // The first install's build had a chunk the next one does not (chunk names carry a
    // hash of their contents): the upgrade removes it.
    const chunks = await chunksOf(t.dist);
    await Deno.writeTextFile(`${t.dist}/old-ABCD1234.js`, "export {};\n");
    await Deno.writeTextFile(
      `${t.dist}/deno-qga.chunks`,
      [...chunks, "old-ABCD1234.js", ""].join("\n"),
    );
    await install(t);
    assert.ok(await exists(`${dest}${LIB}/old-ABCD1234.js`));
    await Deno.remove(`${t.dist}/old-ABCD1234.js`);
    await Deno.writeTextFile(`${t.dist}/deno-qga.chunks`, [...chunks, ""].join("\n"));
    await install(t); // upgrade in place: the first install's directories stay recorded
    assert.equal(await exists(`${dest}${LIB}/old-ABCD1234.js`), false, "a stale chunk stayed");
    await Deno.writeTextFile(`${dest}/etc/qemu/qemu-ga.conf`, "[general]\nverbose=true\n");
    const keep = await uninstall(dest);
    ok(keep, "uninstall.sh");
    assert.match(keep.stderr, /keeping \/etc\/qemu\/qemu-ga\.conf: changed since install/);
    assert.deepEqual(await tree(dest), ["/etc", "/etc/qemu", "/etc/qemu/qemu-ga.conf"]);
    await Deno.remove(`${dest}/etc`, { recursive: true });

    await install(t);
    await Deno.writeTextFile(`${dest}/etc/qemu/qemu-ga.conf`, "[general]\nverbose=true\n");
    ok(await uninstall(dest, ["--purge"]), "uninstall.sh --purge");
    assert.deepEqual(await tree(dest), []);
  });
});

Deno.test("a prefix outside /usr puts the unit and the rule under /etc, where systemd and udev look", async () => {
  await withTemp(async (t) => {
    const dest = t.dest;
    await install(t, ["--prefix", "/opt/deno-qga"]);
    const unit = await Deno.readTextFile(`${dest}/etc/systemd/system/deno-qga.service`);
    assert.match(unit, /^ExecStart=\/opt\/deno-qga\/lib\/deno-qga\/deno run /m);
    await Deno.stat(`${dest}/etc/udev/rules.d/99-deno-qga.rules`);
    ok(await uninstall(dest, ["--prefix", "/opt/deno-qga"]), "uninstall.sh");
    assert.deepEqual(await tree(dest), []);
  });
});

Deno.test("a prefix with a dollar sign is quoted for systemd, and systemd-analyze finds the binary", async () => {
  await withTemp(async (t) => {
    const dest = t.dest;
    const prefix = "/opt/deno$qga";
    await install(t, ["--prefix", prefix]);
    const unit = await Deno.readTextFile(`${dest}/etc/systemd/system/deno-qga.service`);
    const exec = unitValues(unit, "ExecStart")[0] ?? "";
    // The program path is not subject to $-expansion; arguments are ($$ is a literal $).
    assert.ok(exec.startsWith(`"${prefix}/lib/deno-qga/deno" run `), exec);
    assert.ok(exec.includes(`"--helper=/opt/deno$$qga/lib/deno-qga/helper/qga-helper"`), exec);
    await verifyRoot(dest, async (root) => {
      const v = await run("systemd-analyze", [
        "verify",
        "--man=no",
        `--root=${root}`,
        "deno-qga.service",
      ], { cwd: "/" });
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stderr.trim(), "", v.stderr);
    });
    ok(await uninstall(dest, ["--prefix", prefix]), "uninstall.sh");
    assert.deepEqual(await tree(dest), []);
  });
});

Deno.test("the udev rule tags exactly the guest agent port for systemd and wants the unit", async () => {
  const rules = (await Deno.readTextFile(`${REPO}/packaging/99-deno-qga.rules`)).split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"));
  assert.deepEqual(rules, [
    'SUBSYSTEM=="virtio-ports", ATTR{name}=="org.qemu.guest_agent.0", TAG+="systemd", ' +
    'ENV{SYSTEMD_WANTS}+="deno-qga.service"',
  ]);
});

Deno.test("install.sh and uninstall.sh refuse unknown arguments and relative prefixes", async () => {
  const a = await run("sh", [`${REPO}/scripts/install.sh`, "--bogus"]);
  assert.equal(a.code, 1);
  assert.match(a.stderr, /unknown argument '--bogus'/);
  const b = await run("sh", [`${REPO}/scripts/install.sh`, "--prefix", "usr"]);
  assert.equal(b.code, 1);
  assert.match(b.stderr, /--prefix must be an absolute path/);
  await withTemp(async (t) => {
    const dest = t.dest;
    const c = await uninstall(dest);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /no manifest/);
  });
});

// ---- The Debian package (scripts/package.sh). The real install, in a guest booted by
// systemd, is tests/e2e_systemd/.

/** One package build (about 15 s) shared by the tests below: the .deb and its extraction. */
let built: Promise<{ dir: string; deb: string; root: string; control: string }> | undefined;
function buildDeb(): Promise<{ dir: string; deb: string; root: string; control: string }> {
  built ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "qga-deb." });
    builtDir = dir;
    const said = ok(
      await run("sh", [`${REPO}/scripts/package.sh`, "--out", `${dir}/out`]),
      "scripts/package.sh",
    );
    const deb = /built (\S+\.deb)$/m.exec(said)?.[1];
    assert.ok(deb, said);
    ok(await run("dpkg-deb", ["-x", deb, `${dir}/root`]), "dpkg-deb -x");
    ok(await run("dpkg-deb", ["-e", deb, `${dir}/control`]), "dpkg-deb -e");
    return { dir, deb, root: `${dir}/root`, control: `${dir}/control` };
  })();
  return built;
}

let builtDir: string | undefined;
// The shared build is removed when the test module is done, whichever tests ran.
globalThis.addEventListener("unload", () => {
  if (builtDir) Deno.removeSync(builtDir, { recursive: true });
});

function controlField(control: string, name: string): string | undefined {
  return new RegExp(`^${name}: (.*)$`, "m").exec(control)?.[1];
}

Deno.test("package.sh builds deno-qga_<version>_amd64.deb: version from agent/version.ts, dependencies from the deno binary, the config as conffile", async () => {
  const { deb, control } = await buildDeb();
  const version = /^export const VERSION = "([^"]+)"/m.exec(
    await Deno.readTextFile(`${REPO}/agent/version.ts`),
  )
    ?.[1];
  assert.ok(deb.endsWith(`/deno-qga_${version}_amd64.deb`), deb);
  const c = await Deno.readTextFile(`${control}/control`);
  assert.equal(controlField(c, "Package"), "deno-qga");
  assert.equal(controlField(c, "Version"), version);
  assert.equal(controlField(c, "Architecture"), "amd64");
  assert.match(controlField(c, "Depends") ?? "", /\blibc6 \(>= 2\.\d+\)/);
  assert.doesNotMatch(c, /^(Conflicts|Replaces|Breaks): .*qemu-guest-agent/m);
  assert.equal(await Deno.readTextFile(`${control}/conffiles`), "/etc/qemu/qemu-ga.conf\n");
  for (const s of ["postinst", "prerm", "postrm"]) {
    assert.equal((await Deno.stat(`${control}/${s}`)).mode! & 0o777, 0o755, s);
    ok(await run("sh", ["-n", `${control}/${s}`]), `sh -n ${s}`);
  }
  // md5sums lists every file of the package, and they match.
  const sums = (await Deno.readTextFile(`${control}/md5sums`)).trim().split("\n");
  const { root } = await buildDeb();
  const files = [];
  for (const p of await tree(root)) if ((await Deno.lstat(root + p)).isFile) files.push(p.slice(1));
  assert.deepEqual(sums.map((l) => l.replace(/^[0-9a-f]{32} {2}/, "")).sort(), files.sort());
  ok(await run("md5sum", ["--quiet", "-c", `${control}/md5sums`], { cwd: root }), "md5sum -c");
});

Deno.test("the package holds everything bundle.sh builds, the renderer, the udev rule, the config and the docs, root-owned with their modes", async () => {
  const { deb, root } = await buildDeb();
  await withTemp(async ({ dist }) => {
    const lib = "/usr/lib/deno-qga";
    // Whatever bundle.sh builds, with the same name and executable bit (deno: the real binary).
    for (const p of await tree(dist)) {
      const src = await Deno.stat(dist + p);
      const dst = await Deno.lstat(root + lib + p);
      if (src.isDirectory) {
        assert.ok(dst.isDirectory, p);
        continue;
      }
      assert.ok(dst.isFile, `${lib}${p} is missing or not a file`);
      assert.equal(dst.mode! & 0o777, src.mode! & 0o111 ? 0o755 : 0o644, p);
      assert.equal(dst.size, src.size, p);
    }
  });
  const same = async (inPackage: string, inRepo: string) =>
    assert.equal(
      await Deno.readTextFile(root + inPackage),
      await Deno.readTextFile(`${REPO}/${inRepo}`),
      inPackage,
    );
  await same("/usr/lib/deno-qga/render-unit", "packaging/render-unit.sh");
  await same("/usr/lib/deno-qga/deno-qga.service.in", "packaging/deno-qga.service.in");
  await same("/lib/udev/rules.d/99-deno-qga.rules", "packaging/99-deno-qga.rules");
  await same("/etc/qemu/qemu-ga.conf", "packaging/deno-qga.conf.example");
  await same("/usr/share/doc/deno-qga/deploy.md", "docs/deploy.md");
  await same("/usr/share/doc/deno-qga/README.md", "README.md");
  assert.equal((await Deno.stat(`${root}/usr/lib/deno-qga/render-unit`)).mode! & 0o777, 0o755);
  // No unit in the package (postinst renders it), and nothing of qemu-guest-agent's.
  const listing = ok(await run("dpkg-deb", ["-c", deb]), "dpkg-deb -c");
  assert.doesNotMatch(listing, /deno-qga\.service$/m);
  for (const line of listing.trim().split("\n")) {
    assert.match(line, /^[-d]rw[-x]r-[-x]r-[-x] root\/root /, line);
  }
  const qga = ok(await run("dpkg-query", ["-L", "qemu-guest-agent"]), "dpkg-query -L").split("\n")
    .filter((p) => p !== "" && !(Deno.statSync(p).isDirectory));
  for (const p of qga) assert.ok(!listing.includes(` .${p}\n`), `the package ships ${p}`);
});

Deno.test("the package's render-unit makes a unit that systemd-analyze accepts, running the agent's least-privilege line for the package paths", async () => {
  const { root } = await buildDeb();
  const lib = "/usr/lib/deno-qga";
  const out = await Deno.makeTempFile({ prefix: "qga-deb-unit." });
  try {
    const exec = ok(
      await run("sh", [
        `${root}${lib}/render-unit`,
        "--destdir",
        root,
        "--lib",
        lib,
        "--template",
        `${root}${lib}/deno-qga.service.in`,
        "--docdir",
        "/usr/share/doc/deno-qga",
        "--out",
        out,
      ]),
      "render-unit",
    ).trim();
    const unit = await Deno.readTextFile(out);
    assert.deepEqual(unitValues(unit, "ExecStart"), [exec]);
    const argv = exec.split(" ");
    assert.equal(argv[0], `${lib}/deno`);
    assert.ok(argv.includes(`${lib}/deno-qga.js`), exec);
    assert.ok(!argv.some((a) => a === "--allow-all" || a === "-A"), exec);
    assert.ok(argv.some((a) => a.startsWith("--allow-run=") && a.includes(`${lib}/helper/`)), exec);
    assert.ok(!exec.includes(root), "a staging path leaked into ExecStart");
    assert.deepEqual(unitValues(unit, "Conflicts"), ["qemu-guest-agent.service"]);
    assert.deepEqual(unitValues(unit, "KillMode"), ["mixed"]);
    assert.deepEqual(unitValues(unit, "RestartKillSignal"), ["SIGUSR2"]);
    // The package's layout with the unit where postinst puts it, checked by systemd.
    await verifyRoot(root, async (vroot) => {
      await Deno.mkdir(`${vroot}/lib/systemd/system`, { recursive: true });
      await Deno.copyFile(out, `${vroot}/lib/systemd/system/deno-qga.service`);
      const v = await run("systemd-analyze", [
        "verify",
        "--man=no",
        `--root=${vroot}`,
        "deno-qga.service",
      ], { cwd: "/" });
      assert.equal(v.code, 0, v.stderr);
      assert.equal(v.stderr.trim(), "", v.stderr);
    });
  } finally {
    await Deno.remove(out);
  }
});
