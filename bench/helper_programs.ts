/**
 * What moving the agent's programs into the privileged helper costs per call:
 * guest-set-time, guest-set-user-password and fsfreeze freeze/thaw, timed on a
 * checkout from before the move (the agent spawned date, hwclock, chpasswd and
 * fsfreeze itself) and on this one (the helper spawns them), in the same run,
 * alternating call by call; also guest-network-get-interfaces, which went from
 * one helper round trip per file to one snapshot. qemu-ga 7.2 runs alongside for
 * the commands that stay harmless with stand-in programs (set-time without a
 * time, which runs only `hwclock -s`, set-user-password, the interfaces).
 *
 * Nothing on the machine changes: the script re-runs itself in a private mount
 * namespace (`unshare -m`) where /usr/bin/date, /usr/sbin/hwclock,
 * /usr/sbin/chpasswd and /usr/sbin/fsfreeze are bind-mounted stand-ins (date,
 * hwclock and chpasswd exit 0 after reading their input; fsfreeze keeps a
 * frozen flag per mount point in a temporary directory and fails an unfreeze of
 * a mount it has not frozen, as the real one does). The figures are therefore
 * the agents' own cost, spawning included, not the programs' work. qemu-ga's
 * freeze is an ioctl on the real filesystems, so it is not measured here.
 *
 * Run (as root): ./node_modules/.bin/deno run -A bench/helper_programs.ts
 *   [--before=GIT-REV (default: the parent of the commit that moved the programs)]
 *   [--calls=N (default 200)] [--freezes=N (default 40)]
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { BenchConn, request } from "./client.ts";
import { connectRetry, denoQgaArgv, QEMU_GA, spawnAgent } from "./agents.ts";
import type { BenchAgent } from "./agents.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url)).replace(/\/$/, "");
const flag = (name: string, dflt: string) =>
  Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const BEFORE = flag("before", "c66ad24");
const CALLS = Number(flag("calls", "200"));
const FREEZES = Number(flag("freezes", "40"));

const STAND_INS = [
  "/usr/bin/date",
  "/usr/sbin/hwclock",
  "/usr/sbin/chpasswd",
  "/usr/sbin/fsfreeze",
];

async function sh(cmd: string, args: string[], opts: Deno.CommandOptions = {}): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", ...opts })
    .output();
  if (!o.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(o.stderr)}`);
  }
  return new TextDecoder().decode(o.stdout);
}

if (Deno.env.get("QGA_BENCH_NS") !== "1") {
  // Re-run inside a private mount namespace; the stand-ins exist only there.
  const o = await new Deno.Command("unshare", {
    args: ["-m", "--propagation", "private", Deno.execPath(), "run", "-A", ...[
      fileURLToPath(import.meta.url),
      ...Deno.args,
    ]],
    env: { QGA_BENCH_NS: "1" },
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  Deno.exit(o.code);
}

const work = await Deno.makeTempDir({ prefix: "qga-bench-programs." });
await sh("mount", ["-t", "tmpfs", "tmpfs", work]);
const state = `${work}/frozen`;
await Deno.mkdir(state);
const stub = {
  quiet: "#!/bin/sh\ncat >/dev/null\nexit 0\n",
  fsfreeze: `#!/bin/sh
f=${state}/$(printf '%s' "$2" | tr / _)
case $1 in
--freeze) : > "$f" ;;
--unfreeze) if [ -e "$f" ]; then rm -f "$f"; else echo "fsfreeze: $2: unfreeze failed: Invalid argument" >&2; exit 1; fi ;;
esac
`,
};
for (const path of STAND_INS) {
  const file = `${work}/${path.slice(path.lastIndexOf("/") + 1)}`;
  await Deno.writeTextFile(file, path.endsWith("fsfreeze") ? stub.fsfreeze : stub.quiet);
  await Deno.chmod(file, 0o755);
  await sh("mount", ["--bind", file, path]);
}

// The checkout from before the move, with this checkout's node_modules.
const before = `${work}/before`;
await Deno.mkdir(before);
const archive = await new Deno.Command("git", {
  args: ["-C", REPO, "archive", "--format=tar", BEFORE],
  stdout: "piped",
}).output();
if (!archive.success) throw new Error(`git archive ${BEFORE} failed`);
const tar = new Deno.Command("tar", { args: ["-x", "-C", before], stdin: "piped" }).spawn();
const w = tar.stdin.getWriter();
await w.write(archive.stdout);
await w.close();
if (!(await tar.status).success) throw new Error("tar failed");
await Deno.symlink(`${REPO}/node_modules`, `${before}/node_modules`);
const beforeRev = (await sh("git", ["-C", REPO, "rev-parse", "--short", BEFORE])).trim();
const afterRev = (await sh("git", ["-C", REPO, "rev-parse", "--short", "HEAD"])).trim();

async function start(
  label: string,
  repo: string | null,
): Promise<{ label: string; agent: BenchAgent; conn: BenchConn }> {
  const dir = await Deno.makeTempDir({ dir: work, prefix: `${label}.` });
  const args = ["-m", "unix-listen", "-p", `${dir}/sock`, "-t", dir];
  const argv = repo ? await denoQgaArgv(repo, args) : [QEMU_GA, ...args];
  const agent = spawnAgent(repo ? "deno-qga" : "qemu-ga", dir, argv);
  const conn = BenchConn.from(await connectRetry(agent));
  return { label, agent, conn };
}

const agents = [
  await start(`before (${beforeRev})`, before),
  await start(`after (${afterRev})`, REPO),
  await start("qemu-ga 7.2", null),
];
const deno = agents.slice(0, 2);

const password = new TextEncoder().encode("bench-password").toBase64();
const cases: { name: string; who: typeof agents; calls: number; req: Uint8Array[] }[] = [
  {
    name: "guest-set-time with a time (date -u -s, then hwclock -w)",
    who: deno,
    calls: CALLS,
    req: [request("guest-set-time", { time: 1_900_000_000_000_000_000 })],
  },
  {
    name: "guest-set-time without a time (hwclock -s)",
    who: agents,
    calls: CALLS,
    req: [request("guest-set-time")],
  },
  {
    name: "guest-set-user-password (chpasswd)",
    who: agents,
    calls: CALLS,
    req: [request("guest-set-user-password", {
      username: "qga-bench-nobody",
      password,
      crypted: false,
    })],
  },
  {
    name: "guest-network-get-interfaces",
    who: agents,
    calls: CALLS,
    req: [request("guest-network-get-interfaces")],
  },
  {
    name: "guest-fsfreeze-freeze-list [/] (one fsfreeze --freeze)",
    who: deno,
    calls: FREEZES,
    req: [request("guest-fsfreeze-freeze-list", { mountpoints: ["/"] })],
  },
  {
    name: "guest-fsfreeze-thaw after it (fsfreeze --unfreeze per mount, twice for /)",
    who: deno,
    calls: FREEZES,
    req: [request("guest-fsfreeze-thaw")],
  },
  {
    name: "guest-fsfreeze-freeze (every mount)",
    who: deno,
    calls: FREEZES,
    req: [request("guest-fsfreeze-freeze")],
  },
  {
    name: "guest-fsfreeze-thaw after it",
    who: deno,
    calls: FREEZES,
    req: [request("guest-fsfreeze-thaw")],
  },
];

/** Per-case, per-agent call times (ms). */
const times = new Map<string, number[]>();
const key = (c: string, a: string) => `${c}\0${a}`;

async function call(a: (typeof agents)[number], bytes: Uint8Array): Promise<number> {
  const t0 = performance.now();
  const reply = await a.conn.call(bytes);
  const ms = performance.now() - t0;
  if (reply.startsWith('{"error"')) throw new Error(`${a.label}: ${reply}`);
  return ms;
}

const load0 = (await Deno.readTextFile("/proc/loadavg")).trim();
// Warm-up, untimed: one call of each case per agent.
for (const c of cases) for (const a of c.who) await call(a, c.req[0]!);
// The freeze cases come in pairs (freeze, then the thaw that undoes it).
for (let i = 0; i < cases.length; i++) {
  const c = cases[i]!;
  if (c.name.startsWith("guest-fsfreeze-thaw")) continue;
  const thaw = c.name.startsWith("guest-fsfreeze-freeze") ? cases[i + 1]! : undefined;
  for (let n = 0; n < c.calls; n++) {
    // Alternate which agent goes first, call by call.
    const order = n % 2 === 0 ? c.who : [...c.who].reverse();
    for (const a of order) {
      const t = times.get(key(c.name, a.label)) ?? [];
      t.push(await call(a, c.req[0]!));
      times.set(key(c.name, a.label), t);
      if (thaw) {
        const t2 = times.get(key(thaw.name, a.label)) ?? [];
        t2.push(await call(a, thaw.req[0]!));
        times.set(key(thaw.name, a.label), t2);
      }
    }
  }
}
const load1 = (await Deno.readTextFile("/proc/loadavg")).trim();
// How many filesystems a freeze takes here (thaw runs fsfreeze once per mount, twice per frozen one).
const frozenCount = (await agents[1]!.conn.call(request("guest-fsfreeze-freeze"))).trim();
const thawedCount = (await agents[1]!.conn.call(request("guest-fsfreeze-thaw"))).trim();
const mounts = (await Deno.readTextFile("/proc/self/mountinfo")).trim().split("\n").length;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * (s.length - 1)))]!;
}

const lines: string[] = [];
lines.push(
  `helper_programs: ${new Date().toISOString()}, ${Deno.args.join(" ") || "defaults"}, ` +
    `mounts in the namespace: ${mounts}`,
);
lines.push(`load average before: ${load0}; after: ${load1}`);
lines.push(`guest-fsfreeze-freeze here: ${frozenCount}; its thaw: ${thawedCount}`);
lines.push("");
lines.push("| command | agent | calls | median ms | p10 ms | p90 ms |");
lines.push("| --- | --- | ---: | ---: | ---: | ---: |");
for (const c of cases) {
  for (const a of c.who) {
    const t = times.get(key(c.name, a.label)) ?? [];
    lines.push(
      `| ${c.name} | ${a.label} | ${t.length} | ${pct(t, 0.5).toFixed(2)} | ${
        pct(t, 0.1).toFixed(2)
      } | ${pct(t, 0.9).toFixed(2)} |`,
    );
  }
}
console.log(lines.join("\n"));

for (const a of agents) {
  a.conn.close();
  await a.agent.stop();
}
for (const path of STAND_INS) await sh("umount", [path]).catch(() => {});
await sh("umount", ["-l", work]).catch(() => {});
await Deno.remove(work, { recursive: true }).catch(() => {});
