/**
 * The sandbox under attack (issue 13; docs/security.md "Threat model"): each
 * finding of the review, replayed as an attacker would, against the real agent
 * started with the line `main.ts --print-permissions` prints.
 *
 * - A hostile host: guest-exec of a program the agent's grants once held but the
 *   operator did not list (`date -f /etc/shadow`, `chpasswd -R ROOT`, the helper
 *   launcher), guest-file-open of the helper's cache and of every path of the
 *   deno binary in the default mode.
 * - A compromised agent: a script run with exactly the printed grants, doing
 *   what code inside the agent could do: spawn programs, read and write /root
 *   and /home, write the helper's cache and the deno binary, start a second
 *   helper, re-initialise the helper, and send it hostile requests.
 * - A local user against guest-ssh-*-authorized-keys (a real account made with
 *   useradd): authorized_keys a symlink to a root-only file, a symlink raced in
 *   during `reset: true`, and ~/.ssh a symlink out of /home.
 *
 * Every case checks that nothing outside changed: owner, mode and content of each
 * target. Must run as root (useradd, /root). Names are unique per run, and users
 * and files are removed afterwards.
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all tests/integration/attack_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { QgaClient } from "../../client/mod.ts";
import { type RunningAgent, shellSplit, startAgent } from "../helpers/agents.ts";
import { helperCacheDirs } from "../../agent/permissions.ts";
import { startHelper } from "../../system/helper_client.ts";
import type { AuthKeysRequest } from "../../system/mod.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");
const DENO = `${REPO}/node_modules/.bin/deno`;
const LAUNCHER = `${REPO}/helper/qga-helper`;
const CACHE = helperCacheDirs(REPO)[0]!;
/** Every path of the deno binary in this checkout (hard links and the .bin link). */
const DENO_PATHS = [
  `${REPO}/node_modules/deno/deno`,
  `${REPO}/node_modules/.bin/deno`,
  ...Array.from(
    Deno.readDirSync(`${REPO}/node_modules/@deno`),
    (e) => `${REPO}/node_modules/@deno/${e.name}/deno`,
  ).filter((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  }),
];

function requireRoot(): void {
  if (Deno.uid() !== 0) throw new Error("the attack tests must run as root (useradd, /root)");
}

const tag = () => crypto.getRandomValues(new Uint8Array(5)).toHex();

/** Owner, mode, size, inode and a hash of the content: what "unchanged" means here. */
async function fingerprint(path: string): Promise<string> {
  const st = await Deno.lstat(path);
  let content = "";
  if (st.isFile && st.size < 64 * 1024 * 1024) {
    content = new Uint8Array(
      await crypto.subtle.digest("SHA-256", await Deno.readFile(path)),
    ).toHex();
  } else if (st.isFile) {
    content = `mtime ${st.mtime?.getTime()}`;
  } else if (st.isSymlink) {
    content = `-> ${await Deno.readLink(path)}`;
  } else if (st.isDirectory) {
    content = Array.from(Deno.readDirSync(path), (e) => e.name).sort().join(",");
  }
  return JSON.stringify({ uid: st.uid, gid: st.gid, mode: st.mode, ino: st.ino, content });
}

async function fingerprints(paths: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const p of paths) out[p] = await fingerprint(p);
  return out;
}

async function rpc(agent: RunningAgent, execute: string, args?: Record<string, unknown>) {
  await using c = await QgaClient.connect(agent.socketPath, { timeoutMs: 30_000 });
  const r = await c.executeText(JSON.stringify(args ? { execute, arguments: args } : { execute }));
  return r;
}

function isError(r: { reply: Record<string, unknown> }): boolean {
  return "error" in r.reply;
}

/** The least-privilege line for these agent arguments, as argv. */
async function printedLine(args: string[]): Promise<string[]> {
  const out = await new Deno.Command(DENO, {
    args: [
      "run",
      "--no-prompt",
      "--allow-read",
      "--allow-env",
      `${REPO}/main.ts`,
      ...args,
      "--print-permissions",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return shellSplit(new TextDecoder().decode(out.stdout).trim());
}

// ---------------------------------------------------------------------------------------
// The hostile host

Deno.test("hostile host: guest-exec of a program that is not listed (date -f, chpasswd -R, the launcher) runs nothing", async () => {
  requireRoot();
  const root = await Deno.makeTempDir({ prefix: "qga-attack-roots." });
  const pkg = `${root}/pkg`;
  await Deno.mkdir(`${pkg}/etc/pam.d`, { recursive: true });
  await Deno.writeTextFile(`${pkg}/etc/pam.d/chpasswd`, "password required pam_exec.so /x\n");
  const watched = ["/etc/shadow", "/etc/passwd", pkg, `${pkg}/etc/pam.d/chpasswd`];
  const before = await fingerprints(watched);
  const shadowLine = (await Deno.readTextFile("/etc/shadow")).split("\n")[0]!;
  try {
    await using agent = await startAgent("deno-qga", {
      extraArgs: [`--file-roots=${root}`, "--exec-programs=/bin/echo"],
    });
    const attempts: [string, string[]][] = [
      ["/usr/bin/date", ["-f", "/etc/shadow"]],
      ["date", ["-f", "/etc/shadow"]],
      ["/usr/sbin/chpasswd", ["-R", pkg]],
      ["/sbin/hwclock", ["--hctosys"]],
      ["/usr/sbin/fsfreeze", ["--freeze", "/"]],
      ["/bin/sh", ["-c", "id"]],
      [LAUNCHER, []],
      [DENO, ["eval", "1"]],
    ];
    for (const [path, arg] of attempts) {
      const r = await rpc(agent, "guest-exec", { path, arg, "capture-output": true });
      assert.ok(isError(r), `guest-exec ${path} ${arg.join(" ")} was started: ${r.line}`);
      assert.ok(!r.line.includes(shadowLine.slice(0, 12)), r.line);
    }
    // The listed program runs: the refusals above are about the list, not guest-exec.
    const ok = await rpc(agent, "guest-exec", { path: "/bin/echo", arg: ["hi"] });
    assert.ok(!isError(ok), ok.line);
  } finally {
    assert.deepEqual(await fingerprints(watched), before);
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("hostile host, card's line: guest-exec checks --exec-programs itself although Deno would run anything", async () => {
  requireRoot();
  const before = await fingerprints(["/etc/shadow"]);
  const shadowLine = (await Deno.readTextFile("/etc/shadow")).split("\n")[0]!;
  await using agent = await startAgent("deno-qga", {
    line: "card",
    extraArgs: ["--exec-programs=/bin/echo"],
  });
  assert.ok(agent.argv.includes("--allow-run"), "the card's line grants every program");
  for (const [path, arg] of [["/usr/bin/date", ["-f", "/etc/shadow"]], ["/bin/sh", ["-c", "id"]]]) {
    const r = await rpc(agent, "guest-exec", { path, arg, "capture-output": true });
    assert.ok(isError(r), `guest-exec ${path} was started: ${r.line}`);
    assert.match(r.line, /is not listed in the agent's --exec-programs/);
    assert.ok(!r.line.includes(shadowLine.slice(0, 12)), r.line);
  }
  assert.ok(!isError(await rpc(agent, "guest-exec", { path: "echo", arg: ["hi"] })));
  assert.deepEqual(await fingerprints(["/etc/shadow"]), before);
});

Deno.test("hostile host, default mode: guest-file-open cannot write the helper's code, its cache or any path of the deno binary", async () => {
  requireRoot();
  await Deno.mkdir(CACHE, { recursive: true });
  const cacheFile = `${CACHE}/qga-attack-probe`;
  await Deno.writeTextFile(cacheFile, "cache entry\n");
  const watched = [
    CACHE,
    cacheFile,
    `${REPO}/helper/main.ts`,
    `${REPO}/helper/programs.ts`,
    LAUNCHER,
    ...DENO_PATHS,
  ];
  const before = await fingerprints(watched);
  const created = `${CACHE}/qga-attack-${tag()}`;
  try {
    await using agent = await startAgent("deno-qga"); // no --file-roots: may write anywhere else
    for (const path of [cacheFile, `${REPO}/helper/main.ts`, LAUNCHER, ...DENO_PATHS]) {
      // r+ neither creates nor truncates: if it opened, nothing was written yet.
      const r = await rpc(agent, "guest-file-open", { path, mode: "r+" });
      assert.ok(isError(r), `${path} opened for writing: ${r.line}`);
    }
    const c = await rpc(agent, "guest-file-open", { path: created, mode: "a" });
    assert.ok(isError(c), `a file was created in the helper's cache: ${c.line}`);
    // Control: the default mode does write elsewhere (qemu-ga's behaviour).
    const elsewhere = `${agent.dir}/allowed`;
    const w = await rpc(agent, "guest-file-open", { path: elsewhere, mode: "w" });
    assert.ok(!isError(w), w.line);
  } finally {
    await Deno.remove(created).catch(() => {});
    assert.deepEqual(await fingerprints(watched), before);
    await Deno.remove(cacheFile);
  }
});

// ---------------------------------------------------------------------------------------
// The compromised agent

/** What the attack script does, with the grants the agent would have. */
const ATTACK = (o: { marker: string; homeProbe: string; fileRoots: boolean }) => `
import { startHelper } from ${JSON.stringify(`${REPO}/system/helper_client.ts`)};
const out: Record<string, string> = {};
const tryIt = async (name: string, f: () => unknown) => {
  try {
    const v = await f();
    out[name] = "done" + (v instanceof Uint8Array ? " " + new TextDecoder().decode(v).slice(0, 80) : "");
  } catch (e) {
    const err = e as { name?: string; message?: string };
    out[name] = (err.name ?? "Error") + ": " + String(err.message).slice(0, 160);
  }
};
// As the agent does first, before any host input: start the helper, Init it.
const helper = await startHelper(${
  JSON.stringify(LAUNCHER)
}, { fsfreezeHook: null, channel: null });
const spawn = (cmd: string, args: string[]) => () =>
  new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" }).outputSync().stdout;
await tryIt("spawn date -f", spawn("/usr/bin/date", ["-f", "/etc/shadow"]));
await tryIt("spawn chpasswd -R", spawn("/usr/sbin/chpasswd", ["-R", "/tmp"]));
await tryIt("spawn hwclock", spawn("/sbin/hwclock", ["--show"]));
await tryIt("spawn fsfreeze", spawn("/usr/sbin/fsfreeze", ["--freeze", "/"]));
await tryIt("spawn systemctl", spawn("/usr/bin/systemctl", ["--version"]));
await tryIt("spawn sh", spawn("/bin/sh", ["-c", "id"]));
await tryIt("spawn env", spawn("/usr/bin/env", ["id"]));
for (const p of ${JSON.stringify(DENO_PATHS)}) await tryIt("spawn " + p, spawn(p, ["eval", "1"]));
// A second helper may start (an idle one is let go and another started), but it takes
// the settings the first one recorded and refuses any other.
await tryIt("second helper with another hook", () =>
  startHelper(${JSON.stringify(LAUNCHER)}, { fsfreezeHook: "/bin/sh", channel: null }));
await tryIt("second helper with a channel", () =>
  startHelper(${JSON.stringify(LAUNCHER)}, {
    fsfreezeHook: null,
    channel: { path: "/dev/ttyS0", mode: "isa-serial" },
  }));
await tryIt("write helper cache", () => Deno.openSync(${
  JSON.stringify(`${CACHE}/qga-attack-${tag()}`)
}, { write: true, createNew: true }));
for (const p of ${JSON.stringify(DENO_PATHS)}) {
  await tryIt("write " + p, () => Deno.openSync(p, { write: true }));
}
await tryIt("write helper/main.ts", () => Deno.openSync(${
  JSON.stringify(`${REPO}/helper/main.ts`)
}, { write: true }));
if (${o.fileRoots}) {
  await tryIt("read /root", () => Deno.readFileSync(${JSON.stringify(o.marker)}));
  await tryIt("write /root", () => Deno.openSync(${JSON.stringify(o.marker)}, { write: true }));
  await tryIt("create in /root", () => Deno.openSync(${
  JSON.stringify(`${o.marker}.new`)
}, { write: true, createNew: true }));
  await tryIt("list /home", () => Array.from(Deno.readDirSync("/home")).length);
  await tryIt("create in /home", () => Deno.openSync(${
  JSON.stringify(o.homeProbe)
}, { write: true, createNew: true }));
  await tryIt("read /etc/shadow", () => Deno.readFileSync("/etc/shadow"));
}
// Through the helper the agent already has.
// Raw frames on a helper of its own: the agent's settings first (accepted), then another.
await tryIt("helper: init again", async () => {
  const p = await import(${JSON.stringify(`${REPO}/helper/protocol.ts`)});
  const c = new Deno.Command(${
  JSON.stringify(LAUNCHER)
}, { stdin: "piped", stdout: "piped" }).spawn();
  const w = c.stdin.getWriter();
  const r = c.stdout.getReader();
  const d = new p.FrameDecoder(p.MAX_REPLY_PAYLOAD);
  const ask = async (id: number, init: unknown) => {
    await w.write(p.encodeFrame(p.Op.Init, id, p.jsonPayload(init)));
    for (;;) {
      const { value } = await r.read();
      const f = d.push(value!)[0];
      if (f) return f;
    }
  };
  await ask(1, { fsfreezeHook: null, channel: null });
  const f = await ask(2, { fsfreezeHook: "/bin/sh", channel: null });
  await w.close();
  await c.status;
  if (f.type === p.Reply.Error) {
    // The helper marks its refusals on the wire (refused: true), as the client reads them.
    const e = p.parseJsonPayload(f.payload);
    throw Object.assign(new Error(e.message), { name: e.refused ? "SandboxRefusal" : "SysError" });
  }
  return "accepted";
});
await tryIt("helper: hook", () => helper.runProgram({ program: "fsfreeze-hook", arg: "freeze" }));
await tryIt("helper: date -f", () =>
  helper.runProgram({ program: "set-clock", seconds: "-f /etc/shadow" as unknown as number, microseconds: 0 }));
await tryIt("helper: fsfreeze /etc", () =>
  helper.runProgram({ program: "fsfreeze", action: "freeze", mountpoint: "/etc" }));
await tryIt("helper: chpasswd two lines", () =>
  helper.runProgram({ program: "chpasswd", crypted: true, username: "x\\nroot", password: "eA==" }));
await tryIt("helper: read /etc/shadow", () => helper.readFile("/etc/shadow"));
await tryIt("helper: read /root", () => helper.readFile(${JSON.stringify(o.marker)}));
await tryIt("helper: channel", () => helper.openChannel("/dev/ttyS0", "isa-serial"));
await helper.close();
console.log(JSON.stringify(out));
`;

async function compromisedAgent(fileRoots: boolean): Promise<void> {
  requireRoot();
  const dir = await Deno.makeTempDir({ prefix: "qga-attack-agent." });
  const t = tag();
  const marker = `/root/qga-attack-${t}`;
  const homeProbe = `/home/qga-attack-${t}`;
  await Deno.writeTextFile(marker, `root-only ${t}\n`, { mode: 0o600 });
  await Deno.chmod(marker, 0o600);
  await Deno.mkdir(CACHE, { recursive: true });
  const watched = [marker, "/etc/shadow", CACHE, `${REPO}/helper/main.ts`, ...DENO_PATHS];
  const before = await fingerprints(watched);
  try {
    const args = [
      "-m",
      "virtio-serial",
      "-p",
      "/dev/virtio-ports/org.qemu.guest_agent.0",
      "-t",
      dir,
    ];
    if (fileRoots) args.push(`--file-roots=${dir}`, "--exec-programs=/bin/echo");
    const line = await printedLine(args);
    const main = line.findIndex((a) => a.endsWith("/main.ts"));
    assert.ok(main > 0, line.join(" "));
    const runAt = line.indexOf("run");
    const run = line.find((a) => a.startsWith("--allow-run="));
    assert.equal(
      run,
      `--allow-run=${fileRoots ? "/bin/echo," : ""}${LAUNCHER}`,
      "the agent's run grant holds the launcher and the listed programs only",
    );
    assert.ok(!line.some((a) => a === "--allow-all" || a === "-A" || a === "--allow-ffi"));
    if (fileRoots) {
      for (const a of line.filter((a) => /^--allow-(read|write)=/.test(a))) {
        assert.ok(!/[=,](\/root|\/home)(,|$)/.test(a), `grant on /root or /home: ${a}`);
      }
    }
    const script = `${dir}/attack.ts`;
    await Deno.writeTextFile(script, ATTACK({ marker, homeProbe, fileRoots }));
    const out = await new Deno.Command(DENO, {
      args: [...line.slice(runAt, main), script],
      cwd: dir,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const results = JSON.parse(new TextDecoder().decode(out.stdout)) as Record<string, string>;
    for (const [what, result] of Object.entries(results)) {
      const refused = what.startsWith("helper: ")
        ? /^SandboxRefusal: helper refused /.test(result)
        : what.startsWith("second helper")
        ? /did not start: .*helper refused init: this agent started its helper with other settings/
          .test(result)
        : result.startsWith("NotCapable: ");
      assert.ok(refused, `${what}: not refused: ${result}`);
    }
    const expected = 10 + 2 * DENO_PATHS.length + 1 + 8 + (fileRoots ? 6 : 0);
    assert.equal(Object.keys(results).length, expected, JSON.stringify(results));
  } finally {
    assert.deepEqual(await fingerprints(watched), before);
    await Deno.remove(marker).catch(() => {});
    await Deno.remove(`${marker}.new`).catch(() => {});
    await Deno.remove(homeProbe).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("compromised agent with --file-roots: no program but the launcher and the listed ones, no /root or /home, no second helper with other settings, no re-init", async () => {
  await compromisedAgent(true);
});

Deno.test("compromised agent in the default mode: no program but the launcher, no write to the helper's code, cache or deno binary", async () => {
  await compromisedAgent(false);
});

// ---------------------------------------------------------------------------------------
// A local user against the ssh-key commands

interface Victim {
  user: string;
  uid: number;
  gid: number;
  home: string;
  /** A root-only directory outside /home holding a root-only file. */
  vault: string;
  secret: string;
}

async function useradd(): Promise<Victim> {
  requireRoot();
  const user = `qgaatk${tag()}`;
  const home = `/home/${user}`;
  const o = await new Deno.Command("useradd", {
    args: ["-m", "-d", home, "-s", "/usr/sbin/nologin", user],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!o.success) throw new Error(`useradd: ${new TextDecoder().decode(o.stderr)}`);
  const st = await Deno.stat(home);
  const vault = await Deno.makeTempDir({ dir: "/root", prefix: "qga-attack-vault." });
  await Deno.chmod(vault, 0o700);
  const secret = `${vault}/secret`;
  await Deno.writeTextFile(secret, `root-only secret ${tag()}\n`);
  await Deno.chmod(secret, 0o600);
  return { user, uid: st.uid!, gid: st.gid!, home, vault, secret };
}

async function userdel(v: Victim): Promise<void> {
  await new Deno.Command("userdel", { args: ["-r", "-f", v.user], stdout: "null", stderr: "null" })
    .output();
  await Deno.remove(v.home, { recursive: true }).catch(() => {});
  await Deno.remove(v.vault, { recursive: true }).catch(() => {});
}

/** Runs `script` as the user (sh -c), in the background; returns the child. */
function asUser(v: Victim, script: string): Deno.ChildProcess {
  return new Deno.Command("setpriv", {
    args: [
      `--reuid=${v.uid}`,
      `--regid=${v.gid}`,
      "--clear-groups",
      "/bin/sh",
      "-c",
      script,
    ],
    env: { HOME: v.home },
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

async function asUserOnce(v: Victim, script: string): Promise<void> {
  const s = await asUser(v, script).status;
  assert.ok(s.success, `as ${v.user}: ${script}`);
}

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAttackTestKey attack@test";

async function withVictim(fn: (v: Victim, agent: RunningAgent) => Promise<void>): Promise<void> {
  const v = await useradd();
  const roots = await Deno.makeTempDir({ prefix: "qga-attack-r." });
  try {
    await using agent = await startAgent("deno-qga", { extraArgs: [`--file-roots=${roots}`] });
    await fn(v, agent);
  } finally {
    await userdel(v);
    await Deno.remove(roots, { recursive: true });
  }
}

Deno.test("ssh keys: a real user's keys are added, owned by the user, 0600 in a 0700 .ssh (control)", async () => {
  await withVictim(async (v, agent) => {
    const r = await rpc(agent, "guest-ssh-add-authorized-keys", { username: v.user, keys: [KEY] });
    assert.ok(!isError(r), r.line);
    const dir = await Deno.stat(`${v.home}/.ssh`);
    const file = await Deno.stat(`${v.home}/.ssh/authorized_keys`);
    assert.deepEqual([dir.uid, dir.gid, dir.mode! & 0o777], [v.uid, v.gid, 0o700]);
    assert.deepEqual([file.uid, file.gid, file.mode! & 0o777], [v.uid, v.gid, 0o600]);
    assert.equal(await Deno.readTextFile(`${v.home}/.ssh/authorized_keys`), KEY);
    const got = await rpc(agent, "guest-ssh-get-authorized-keys", { username: v.user });
    assert.deepEqual(got.reply, { return: { keys: [KEY] } });
  });
});

Deno.test("ssh keys: authorized_keys a symlink to a root-only file is refused by get, add and remove; the file is neither read, copied nor changed", async () => {
  await withVictim(async (v, agent) => {
    await asUserOnce(v, `mkdir -m 700 ~/.ssh && ln -s ${v.secret} ~/.ssh/authorized_keys`);
    const watched = [v.secret, v.vault, `${v.home}/.ssh`, `${v.home}/.ssh/authorized_keys`];
    const before = await fingerprints(watched);
    const secretText = (await Deno.readTextFile(v.secret)).trim();
    const file = `${v.home}/.ssh/authorized_keys`;
    const refusal = `failed to read '${file}': Failed to open file \u201C${file}\u201D: ` +
      "Too many levels of symbolic links";
    for (
      const [cmd, args] of [
        ["guest-ssh-get-authorized-keys", { username: v.user }],
        ["guest-ssh-add-authorized-keys", { username: v.user, keys: [KEY] }],
        ["guest-ssh-add-authorized-keys", { username: v.user, keys: [KEY], reset: true }],
        ["guest-ssh-remove-authorized-keys", { username: v.user, keys: [KEY] }],
      ] as const
    ) {
      const r = await rpc(agent, cmd, args);
      assert.deepEqual(r.reply, { error: { class: "GenericError", desc: refusal } }, r.line);
      assert.ok(!r.line.includes(secretText));
    }
    assert.deepEqual(await fingerprints(watched), before);
  });
});

/** Requests sent while the user races (the window a path-based chown would leave is short). */
const ROUNDS = 300;

Deno.test("ssh keys: a symlink raced in during reset never gives the root file to the user", async () => {
  await withVictim(async (v, agent) => {
    await asUserOnce(v, `mkdir -m 700 ~/.ssh && echo old > ~/.ssh/authorized_keys`);
    const watched = [v.secret, v.vault];
    const before = await fingerprints(watched);
    // The user swaps authorized_keys for a symlink to the secret as fast as it can.
    const racers = [
      asUser(v, `cd ~/.ssh || exit 1; while :; do ln -sfn ${v.secret} authorized_keys; done`),
      asUser(v, `cd ~/.ssh || exit 1; while :; do ln -sfn ${v.secret} authorized_keys; done`),
    ];
    let applied = 0;
    let refused = 0;
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const r = await rpc(agent, "guest-ssh-add-authorized-keys", {
          username: v.user,
          keys: [KEY],
          reset: true,
        });
        if (isError(r)) refused++;
        else applied++;
        // Every time, the secret is exactly as it was: owner, mode, content.
        assert.equal(await fingerprint(v.secret), before[v.secret], `after request ${i}`);
      }
    } finally {
      for (const r of racers) {
        r.kill("SIGKILL");
        await r.status;
      }
    }
    assert.equal(applied + refused, ROUNDS);
    assert.deepEqual(await fingerprints(watched), before);
    // Whatever the user's link pointed at, what the helper wrote is a file of the user's.
    for (const e of Deno.readDirSync(`${v.home}/.ssh`)) {
      const st = await Deno.lstat(`${v.home}/.ssh/${e.name}`);
      if (st.isFile) assert.deepEqual([st.uid, st.mode! & 0o777], [v.uid, 0o600], e.name);
    }
  });
});

Deno.test("ssh keys: ~/.ssh a symlink to a directory outside /home is refused; nothing is created there", async () => {
  await withVictim(async (v, agent) => {
    const outside = `${v.vault}/elsewhere`;
    await Deno.mkdir(outside);
    await Deno.chmod(outside, 0o755);
    await asUserOnce(v, `ln -s ${outside} ~/.ssh`);
    const watched = [outside, v.vault, v.secret, `${v.home}/.ssh`];
    const before = await fingerprints(watched);
    const file = `${v.home}/.ssh/authorized_keys`;
    const refusal = `failed to read '${file}': Failed to open file \u201C${file}\u201D: ` +
      "Too many levels of symbolic links";
    for (const reset of [false, true]) {
      const r = await rpc(agent, "guest-ssh-add-authorized-keys", {
        username: v.user,
        keys: [KEY],
        reset,
      });
      assert.deepEqual(r.reply, { error: { class: "GenericError", desc: refusal } }, r.line);
    }
    const get = await rpc(agent, "guest-ssh-get-authorized-keys", { username: v.user });
    assert.deepEqual(get.reply, { error: { class: "GenericError", desc: refusal } });
    assert.deepEqual(await fingerprints(watched), before);
    assert.deepEqual(Array.from(Deno.readDirSync(outside)), []);
  });
});

Deno.test("ssh keys: the helper changes owner and mode only through descriptors and opens nothing it did not expect to be a link (strace)", async () => {
  const v = await useradd();
  const dir = await Deno.makeTempDir({ prefix: "qga-attack-strace." });
  try {
    const log = `${dir}/trace`;
    const wrapper = `${dir}/traced-helper`;
    await Deno.writeTextFile(
      wrapper,
      `#!/bin/sh\nexec strace -f -qq -o ${log} -e trace=chown,lchown,fchown,fchownat,` +
        `chmod,fchmod,fchmodat,open,openat,mkdir,mkdirat,rename,renameat,renameat2 ${LAUNCHER}\n`,
    );
    await Deno.chmod(wrapper, 0o755);
    const helper = await startHelper(wrapper);
    try {
      const ops: AuthKeysRequest[] = [
        { op: "add", username: v.user, keys: [KEY], reset: false },
        { op: "add", username: v.user, keys: ["ssh-rsa AAAA second"], reset: false },
        { op: "add", username: v.user, keys: [KEY], reset: true },
        { op: "remove", username: v.user, keys: [KEY] },
        { op: "get", username: v.user },
      ];
      for (const req of ops) {
        assert.deepEqual((await helper.authorizedKeys(req)).ok, true, JSON.stringify(req));
      }
    } finally {
      await helper.close();
    }
    const trace = (await Deno.readTextFile(log)).split("\n");
    const mine = trace.filter((l) => l.includes(v.home) || /\/proc\/self\/fd\/\d+\//.test(l));
    // Ownership and mode: fchown/fchmod on a descriptor, never a path.
    for (const l of trace) {
      assert.ok(!/\b(chown|lchown|fchownat|chmod|fchmodat)\(/.test(l), `by path: ${l}`);
    }
    assert.ok(trace.some((l) => /\bfchown\(\d+, /.test(l)), "no fchown");
    assert.ok(trace.some((l) => /\bfchmod\(\d+, 0600\)/.test(l)), "no fchmod 0600");
    assert.ok(trace.some((l) => /\bfchmod\(\d+, 0700\)/.test(l)), "no fchmod 0700 of .ssh");
    // Every open of .ssh and of authorized_keys (and its temporary files) is O_NOFOLLOW.
    const opens = mine.filter((l) => /\bopenat?\(/.test(l) && /\.ssh|authorized_keys/.test(l));
    assert.ok(opens.length >= 8, mine.join("\n"));
    for (const l of opens) assert.match(l, /O_NOFOLLOW/, l);
    // Temporary files are created exclusively, next to authorized_keys.
    for (const l of opens.filter((l) => /authorized_keys\.\w{6}"/.test(l))) {
      assert.match(l, /O_CREAT\|O_EXCL|O_EXCL\|O_CREAT|O_CREAT.*O_EXCL/, l);
    }
  } finally {
    await userdel(v);
    await Deno.remove(dir, { recursive: true });
  }
});
