/**
 * Differential test of the command line and configuration file: runs the reference
 * qemu-ga (7.2.22, /usr/sbin/qemu-ga) and deno-qga's parser (cli/dump_main.ts) on the
 * same argument vectors, config files and environment, and compares exit code, stdout
 * and stderr byte for byte after these normalisations, each a known difference:
 *
 * - qemu-ga prints its argv[0] (`/usr/sbin/qemu-ga`) where deno-qga prints `deno-qga`.
 * - GLib messages carry a pid and the time of day: both become placeholders.
 * - qemu-ga never calls setlocale, so GLib converts its curly quotes to `?` on output;
 *   deno-qga keeps GLib's UTF-8 text (`“daemon”`).
 * - deno-qga implements 10.2, whose `-D` output ends with `allow-rpcs=`; 7.2 lacks it.
 *
 * `-V` runs main.ts itself (not the parser with qemu-ga's version handed in): its output
 * must be qemu-ga's own `-V` output with the version deno-qga implements
 * (agent/version.ts) in place of 7.2's, followed by deno-qga's own version line.
 *
 * Not compared (they differ by design): `-c`, `-a` and `--allow-rpcs` (10.x only), the
 * `-b help` list (different command sets), `--help`, `--blacklist` (deno-qga warns) and
 * ambiguity lists that include 10.x-only options.
 *
 * Run: deno test --allow-run --allow-read --allow-write --allow-env tests/differential/cli_diff_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { QEMU_GA_VERSION, VERSION } from "../../agent/version.ts";

const QEMU_GA = "/usr/sbin/qemu-ga";
const DUMP_MAIN = new URL("../../cli/dump_main.ts", import.meta.url).pathname;
const MAIN = new URL("../../main.ts", import.meta.url).pathname;

interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/** One comparison: argv, and optionally a config file (QGA_CONF) and extra environment. */
interface Case {
  argv: string[];
  config?: string;
  env?: Record<string, string>;
  /** A `-V` case: run main.ts and compare with qemu-ga's own `-V` output. */
  version?: boolean;
}

async function requireQemuGa(): Promise<void> {
  try {
    await Deno.stat(QEMU_GA);
  } catch {
    assert.fail(
      `${QEMU_GA} is missing: the differential test needs the reference agent ` +
        "(apt-get install qemu-guest-agent)",
    );
  }
}

async function run(cmd: string, args: string[], env: Record<string, string>): Promise<Output> {
  const base: Record<string, string> = {};
  for (const name of ["PATH", "HOME", "DENO_DIR"]) {
    const v = Deno.env.get(name);
    if (v !== undefined) base[name] = v;
  }
  const out = await new Deno.Command(cmd, {
    args,
    env: { ...base, ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * What deno-qga's `-V` must print, given what qemu-ga's printed: the same line with the
 * version deno-qga implements, then deno-qga's own line. Output that is not a version
 * (an error before `-V` is reached) must be the same.
 */
function expectedVersionOutput(theirs: Output): string {
  if (theirs.code !== 0) return theirs.stdout;
  const m = /^QEMU Guest Agent \d+\.\d+\.\d+\n$/.exec(theirs.stdout);
  assert.ok(m, `qemu-ga -V printed ${JSON.stringify(theirs.stdout)}`);
  return `QEMU Guest Agent ${QEMU_GA_VERSION}\ndeno-qga ${VERSION} (Deno ${Deno.version.deno})\n`;
}

function normaliseGlib(text: string): string {
  return text
    .replace(/\(process:\d+\)/g, "(process:PID)")
    .replace(/ \*\*: \d\d:\d\d:\d\d\.\d\d\d: /g, " **: TIME: ");
}

function normaliseQemuGa(o: Output): Output {
  const fix = (s: string) => normaliseGlib(s.replaceAll(QEMU_GA, "deno-qga"));
  return { code: o.code, stdout: fix(o.stdout), stderr: fix(o.stderr) };
}

function normaliseOurs(o: Output): Output {
  return {
    code: o.code,
    // 10.2 appends allow-rpcs= to -D output; 7.2 does not.
    stdout: o.stdout.replace(/^allow-rpcs=.*\n/m, ""),
    stderr: normaliseGlib(o.stderr).replace(/[“”]/g, "?"),
  };
}

const UPSTREAM_TEST_CONFIG = `[general]
daemon=false
method=virtio-serial
path=/path/to/org.qemu.guest_agent.0
pidfile=/var/foo/qemu-ga.pid
statedir=/var/state
verbose=true
block-rpcs=guest-ping;guest-get-time
`;

const FULL_ARGV = [
  "-D",
  "-m",
  "unix-listen",
  "-p",
  "/tmp/s",
  "-b",
  "guest-ping,guest-exec",
  "-b",
  "guest-info",
  "-F",
  "-v",
  "-r",
  "-l",
  "/tmp/log",
  "-f",
  "/tmp/pidf",
  "-t",
  "/tmp/st",
  "-d",
];

const CASES: Case[] = [
  // -D with options in every form
  { argv: ["-D"] },
  { argv: FULL_ARGV },
  { argv: FULL_ARGV, config: UPSTREAM_TEST_CONFIG },
  { argv: ["-D"], config: UPSTREAM_TEST_CONFIG },
  { argv: ["-vdrD"] },
  { argv: ["-D", "-pF"] },
  { argv: ["-Fv", "-D"] },
  { argv: ["-F/x", "-D"] },
  { argv: ["-D", "-F", "/not-the-hook"] },
  { argv: ["--fsfreeze-hook", "-D"] },
  { argv: ["--fsfreeze-hook", "/y", "-D"] },
  { argv: ["--fsfreeze-hook=/y", "-D"] },
  { argv: ["--fsfreeze-hook=", "-D"] },
  { argv: ["--fsfreeze-hook=/a=b", "-D"] },
  { argv: ["-b", "a,", "-b", ",b,,c", "-D"] },
  { argv: ["--bl=a", "-D"] },
  { argv: ["--bloc=a", "--block-rpcs", "b,c", "-D"] },
  { argv: ["--b=a", "-D"] },
  { argv: ["--meth=isa-serial", "--pa", "/dev/x", "--pid=/p", "--st", "/s", "--log=/l", "-D"] },
  { argv: ["--verb", "--daem", "--retry", "--dump"] },
  { argv: ["-D", "-m", "isa-serial"] },
  { argv: ["-D", "-m", "vsock-listen", "-p", "3:4"] },
  { argv: ["-D", "-m", "foo", "-p", "/x"] },
  { argv: ["-D", "-p", "/tmp/s", "-m", "unix-listen", "-m", "virtio-serial"] },
  { argv: ["-D", "-p", "/a", "-p/b", "-l", "/l1", "-l/l2"] },
  { argv: ["-s", "install", "-D"] },
  { argv: ["-D", "--", "-v"] },
  { argv: ["-D", "foo", "-v", "bar"] },
  { argv: ["-D", "x", "-v"], env: { POSIXLY_CORRECT: "1" } },
  { argv: ["-D", "-p", " lead\ttab\\back"] },
  // getopt errors
  { argv: ["-Z"] },
  { argv: ["-vZ"] },
  { argv: ["-x", "-y"] },
  { argv: ["-Z", "-V"] },
  { argv: ["-:"] },
  { argv: ["--x"] },
  { argv: ["--x=1"] },
  { argv: ["-p"] },
  { argv: ["-D", "-t"] },
  { argv: ["-s"] },
  { argv: ["--method"] },
  { argv: ["--verbose=1"] },
  { argv: ["--ver"] },
  { argv: ["--p=x"] },
  { argv: ["--service=x", "-D"] },
  { argv: ["--h=1"] },
  // exits that stop parsing
  { argv: ["-V"], version: true },
  { argv: ["-V", "-Z"], version: true },
  { argv: ["--version"], version: true },
  // path checks before -D
  { argv: ["-D", "-m", "unix-listen"] },
  { argv: ["-D", "-m", "vsock-listen"] },
  { argv: ["-D", "-m", "foo"] },
  // config files
  { argv: ["-D"], config: "[general]\ndaemon=maybe\n" },
  { argv: ["-V"], config: "[general]\ndaemon=maybe\n", version: true },
  { argv: ["-Z"], config: "[general]\nretry-path=yes\n" },
  { argv: ["-D"], config: "[general]\nverbose=TRUE\n" },
  { argv: ["-D"], config: "garbage\n" },
  { argv: ["-D"], config: "daemon=true\n" },
  { argv: ["-D"], config: "[general]\n=x\n" },
  { argv: ["-D"], config: "[]\n" },
  { argv: ["-D"], config: "[general]\na]b=1\n" },
  { argv: ["-D"], config: "[general]\npath=/a\\x\n" },
  { argv: ["-D"], config: "[general]\npath=/a\\\n" },
  {
    argv: ["-D"],
    config: "[general]\n  daemon = true \n#c\n\n  verbose=  1\nmethod = unix-listen  \n" +
      "path=\\s/a\\tb\\\\c\\n \n[other]\npidfile=/x\n[general]\npidfile=/p\npidfile[de]=/q\n" +
      "statedir=a\r\n",
  },
  { argv: ["-D", "-v", "-d"], config: "[general]\nverbose=false\ndaemon=0\nretry-path=1\n" },
  {
    argv: ["-D", "-m", "isa-serial", "-b", "x,y"],
    config: "[general]\nmethod=unix-listen\nblock-rpcs=a,b\n",
  },
  { argv: ["-D"], config: "[general]\nmethod=unix-listen\n" },
  { argv: ["-D"], config: "[general]\nblacklist=guest-ping,guest-info\nblock-rpcs=a\n" },
  { argv: ["-D"], config: "[general]\ndaemonize=1\nfoo=bar\n[x]\ndaemon=true\n" },
  { argv: ["-D"], config: "" },
  { argv: ["-D"], env: { QGA_CONF: "/nonexistent/qemu-ga.conf" } },
  { argv: ["-D"], env: { QGA_CONF: "/tmp" } },
];

function describe(c: Case): string {
  const parts = [c.argv.map((a) => JSON.stringify(a)).join(" ")];
  if (c.config !== undefined) parts.push(`config ${JSON.stringify(c.config)}`);
  if (c.env !== undefined) parts.push(`env ${JSON.stringify(c.env)}`);
  return parts.join(" with ");
}

for (const c of CASES) {
  Deno.test(`deno-qga parses like qemu-ga: ${describe(c)}`, async () => {
    await requireQemuGa();
    const dir = await Deno.makeTempDir({ prefix: "cli_diff" });
    try {
      const env: Record<string, string> = { ...c.env };
      if (c.config !== undefined) {
        await Deno.writeTextFile(`${dir}/qga.conf`, c.config);
        env.QGA_CONF = `${dir}/qga.conf`;
      }
      const theirs = normaliseQemuGa(await run(QEMU_GA, c.argv, env));
      const ours = normaliseOurs(
        await run(
          Deno.execPath(),
          ["run", "--allow-read", "--allow-env", c.version ? MAIN : DUMP_MAIN, ...c.argv],
          env,
        ),
      );
      if (c.version) {
        assert.deepEqual(ours, { ...theirs, stdout: expectedVersionOutput(theirs) });
      } else {
        assert.deepEqual(ours, theirs);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
