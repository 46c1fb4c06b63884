import assert from "node:assert/strict";
import {
  type CliInfo,
  type CliResult,
  EXTENSION_LONG_OPTIONS,
  parseCommandLine,
  QEMU_LONG_OPTIONS,
  SHORT_OPTIONS,
} from "../../cli/options.ts";
import { type GetoptEvent, getoptLong, type GetoptSpec } from "../../cli/getopt.ts";
import { glibMessage, splitList } from "../../cli/config.ts";
import { DEFAULTS } from "../../config/options.ts";

// ---------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------

const SPEC: GetoptSpec = {
  short: SHORT_OPTIONS,
  long: [QEMU_LONG_OPTIONS, EXTENSION_LONG_OPTIONS],
  programName: "deno-qga",
  posixlyCorrect: false,
};

function events(argv: string[], spec: GetoptSpec = SPEC): GetoptEvent[] {
  return [...getoptLong(argv, spec)];
}

function opt(val: string, arg?: string): GetoptEvent {
  return { kind: "option", val, arg };
}

const PID = 4242;
const NOW = new Date(2026, 0, 2, 3, 4, 5, 6);
const INFO: CliInfo = {
  version: "10.2.2",
  denoQgaVersion: "0.1.0",
  denoVersion: "2.9.6",
  commandNames: ["guest-sync-delimited", "guest-sync", "guest-ping"],
  defaultHelper: "/opt/deno-qga/helper/qga-helper",
  pid: PID,
  now: () => NOW,
};

/** An environment with only the given variables. */
function envOf(vars: Record<string, string> = {}): { get(name: string): string | undefined } {
  return { get: (name) => vars[name] };
}

/** Runs `fn` with a fresh temporary directory. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "cli_options_test" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Parses with QGA_CONF pointing at a file that does not exist (no config). */
async function parseNoConfig(argv: string[], dir: string): Promise<CliResult> {
  return await parseCommandLine(argv, envOf({ QGA_CONF: `${dir}/none.conf` }), INFO);
}

/** Parses with QGA_CONF pointing at a config file with `content`. */
async function parseWithConfig(argv: string[], content: string, dir: string): Promise<CliResult> {
  await Deno.writeTextFile(`${dir}/qga.conf`, content);
  return await parseCommandLine(argv, envOf({ QGA_CONF: `${dir}/qga.conf` }), INFO);
}

function asExit(r: CliResult): { code: number; stdout: string; stderr: string } {
  if (r.kind !== "exit") assert.fail(`expected an exit result, got ${JSON.stringify(r)}`);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

function asRun(r: CliResult): Extract<CliResult, { kind: "run" }> {
  assert.equal(r.kind, "run", `expected a run result, got ${JSON.stringify(r)}`);
  return r as Extract<CliResult, { kind: "run" }>;
}

const critical = (msg: string) => `\n** (process:${PID}): CRITICAL **: 03:04:05.006: ${msg}\n`;
const warning = (msg: string) => `\n** (process:${PID}): WARNING **: 03:04:05.006: ${msg}\n`;

const DEFAULT_DUMP = `[general]
daemon=false
method=virtio-serial
path=/dev/virtio-ports/org.qemu.guest_agent.0
pidfile=/var/run/qemu-ga.pid
statedir=/var/run
verbose=false
retry-path=false
block-rpcs=
allow-rpcs=
`;

/** tests/data/test-qga-config of QEMU (qga-reference.md §5.2). */
const UPSTREAM_TEST_CONFIG = `[general]
daemon=false
method=virtio-serial
path=/path/to/org.qemu.guest_agent.0
pidfile=/var/foo/qemu-ga.pid
statedir=/var/state
verbose=true
block-rpcs=guest-ping;guest-get-time
`;

// ---------------------------------------------------------------------------------------
// getopt_long
// ---------------------------------------------------------------------------------------

Deno.test("short flags combine in one argument", () => {
  assert.deepEqual(events(["-vdr"]), [opt("v"), opt("d"), opt("r")]);
});

Deno.test("a short option's argument may be attached or separate", () => {
  assert.deepEqual(events(["-p/dev/x", "-p", "/dev/y"]), [opt("p", "/dev/x"), opt("p", "/dev/y")]);
  assert.deepEqual(
    events(["-vp/s"]),
    [opt("v"), opt("p", "/s")],
    "the rest of a cluster is the argument",
  );
  assert.deepEqual(events(["-p", "-v"]), [opt("p", "-v")], "a separate argument may start with -");
});

Deno.test("-F takes an argument only when attached", () => {
  assert.deepEqual(events(["-F"]), [opt("F")]);
  assert.deepEqual(events(["-F/hook"]), [opt("F", "/hook")]);
  assert.deepEqual(events(["-F", "/hook"]), [opt("F")], "a separate word is a non-option");
  assert.deepEqual(events(["-vF"]), [opt("v"), opt("F")]);
  assert.deepEqual(events(["-Fv"]), [opt("F", "v")]);
});

Deno.test("long options take --name=value and --name value", () => {
  assert.deepEqual(events(["--path=/a", "--path", "/b", "--path="]), [
    opt("p", "/a"),
    opt("p", "/b"),
    opt("p", ""),
  ]);
  assert.deepEqual(events(["--fsfreeze-hook=/a=b"]), [opt("F", "/a=b")]);
});

Deno.test("the optional long argument is taken only after =", () => {
  assert.deepEqual(events(["--fsfreeze-hook", "/y"]), [opt("F")]);
  assert.deepEqual(events(["--fsfreeze-hook="]), [opt("F", "")]);
});

Deno.test("long options may be abbreviated when unambiguous", () => {
  assert.deepEqual(events(["--verb", "--bl=a", "--al", "b", "--st=/t", "--f"]), [
    opt("v"),
    opt("b", "a"),
    opt("a", "b"),
    opt("t", "/t"),
    opt("F"),
  ]);
});

Deno.test("an ambiguous abbreviation lists the candidates in table order", () => {
  assert.deepEqual(events(["--ver"]), [{
    kind: "error",
    message: "deno-qga: option '--ver' is ambiguous; possibilities: '--version' '--verbose'",
  }]);
  assert.deepEqual(events(["--p=x"]), [{
    kind: "error",
    message: "deno-qga: option '--p=x' is ambiguous; possibilities: '--pidfile' '--path'",
  }]);
});

Deno.test("extension options never change how a qemu-ga abbreviation resolves", () => {
  assert.deepEqual(events(["--h"]), [opt("h")], "--h is --help, not --helper");
  assert.deepEqual(events(["--helper=/x", "--print"]), [
    opt("helper", "/x"),
    opt("print-permissions"),
  ]);
  assert.deepEqual(events(["--file=/x"]), [{
    kind: "error",
    message:
      "deno-qga: option '--file=/x' is ambiguous; possibilities: '--file-roots' '--file-read-roots'",
  }]);
  assert.deepEqual(events(["--blacklist=a", "--bla=b"]), [
    opt("blacklist", "a"),
    opt("blacklist", "b"),
  ]);
});

Deno.test("getopt's error texts match glibc's", () => {
  const err = (message: string) => ({ kind: "error", message });
  assert.deepEqual(events(["-Z"]), [err("deno-qga: invalid option -- 'Z'")]);
  assert.deepEqual(events(["-:"]), [err("deno-qga: invalid option -- ':'")]);
  assert.deepEqual(events(["--x=1"]), [err("deno-qga: unrecognized option '--x=1'")]);
  assert.deepEqual(events(["-p"]), [err("deno-qga: option requires an argument -- 'p'")]);
  assert.deepEqual(events(["--meth"]), [err("deno-qga: option '--method' requires an argument")]);
  assert.deepEqual(events(["--verbose=1"]), [
    err("deno-qga: option '--verbose' doesn't allow an argument"),
  ]);
  assert.deepEqual(events(["--service=x"]), [err("deno-qga: unrecognized option '--service=x'")]);
});

Deno.test("parsing goes on after an invalid character of a cluster", () => {
  assert.deepEqual(events(["-vZd"]), [opt("v"), {
    kind: "error",
    message: "deno-qga: invalid option -- 'Z'",
  }, opt("d")]);
});

Deno.test("non-options are skipped and -- ends the options", () => {
  assert.deepEqual(events(["x", "-v", "-", "y", "--", "-d"]), [opt("v")]);
});

Deno.test("POSIXLY_CORRECT stops at the first non-option", () => {
  assert.deepEqual(events(["-D", "x", "-v"], { ...SPEC, posixlyCorrect: true }), [opt("D")]);
});

Deno.test("split_list stores one option's items in reverse", () => {
  assert.deepEqual(splitList("a,b,c"), ["c", "b", "a"]);
  assert.deepEqual(splitList("a,"), ["", "a"]);
  assert.deepEqual(splitList(""), []);
});

Deno.test("GLib messages carry the pid and local time with milliseconds", () => {
  assert.equal(
    glibMessage("CRITICAL", "boom", { pid: 7, now: () => new Date(2026, 5, 7, 23, 59, 58, 42) }),
    "\n** (process:7): CRITICAL **: 23:59:58.042: boom\n",
  );
});

// ---------------------------------------------------------------------------------------
// -D output and precedence
// ---------------------------------------------------------------------------------------

Deno.test("-D prints qemu-ga 10.2's defaults", async () => {
  await inTempDir(async (dir) => {
    assert.deepEqual(asExit(await parseNoConfig(["-D"], dir)), {
      code: 0,
      stdout: DEFAULT_DUMP,
      stderr: "",
    });
  });
});

Deno.test("-D prints every option in qemu-ga's order", async () => {
  await inTempDir(async (dir) => {
    const r = await parseNoConfig(
      [
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
        "-a",
        "x,y",
      ],
      dir,
    );
    assert.equal(
      asExit(r).stdout,
      `[general]
daemon=true
method=unix-listen
path=/tmp/s
logfile=/tmp/log
pidfile=/tmp/pidf
fsfreeze-hook=/etc/qemu/fsfreeze-hook
statedir=/tmp/st
verbose=true
retry-path=true
block-rpcs=guest-exec,guest-ping,guest-info
allow-rpcs=y,x
`,
    );
  });
});

Deno.test("-D with the upstream test config matches qemu-ga's output (§4.3)", async () => {
  await inTempDir(async (dir) => {
    const r = await parseWithConfig(
      [
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
      ],
      UPSTREAM_TEST_CONFIG,
      dir,
    );
    assert.deepEqual(asExit(r), {
      code: 0,
      stderr: "",
      stdout: `[general]
daemon=true
method=unix-listen
path=/tmp/s
logfile=/tmp/log
pidfile=/tmp/pidf
fsfreeze-hook=/etc/qemu/fsfreeze-hook
statedir=/tmp/st
verbose=true
retry-path=true
block-rpcs=guest-ping;guest-get-time,guest-exec,guest-ping,guest-info
allow-rpcs=
`,
    });
  });
});

Deno.test("the upstream /qga/config test sees its config echoed", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseWithConfig(["-D"], UPSTREAM_TEST_CONFIG, dir));
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
    assert.equal(
      r.stdout,
      `[general]
daemon=false
method=virtio-serial
path=/path/to/org.qemu.guest_agent.0
pidfile=/var/foo/qemu-ga.pid
statedir=/var/state
verbose=true
retry-path=false
block-rpcs=guest-ping;guest-get-time
allow-rpcs=
`,
    );
  });
});

Deno.test("command-line scalars override the config file", async () => {
  await inTempDir(async (dir) => {
    const conf = "[general]\nmethod=isa-serial\npath=/c/path\nlogfile=/c/log\npidfile=/c/pid\n" +
      "statedir=/c/state\nfsfreeze-hook=/c/hook\nhelper=/c/helper\n";
    const run = asRun(
      await parseWithConfig(
        [
          "-m",
          "unix-listen",
          "-p",
          "/l/path",
          "-l",
          "/l/log",
          "-f",
          "/l/pid",
          "-t",
          "/l/state",
          "-F/l/hook",
          "--helper",
          "/l/helper",
        ],
        conf,
        dir,
      ),
    );
    assert.equal(run.options.method, "unix-listen");
    assert.equal(run.options.path, "/l/path");
    assert.equal(run.options.logfile, "/l/log");
    assert.equal(run.options.pidfile, "/l/pid");
    assert.equal(run.options.statedir, "/l/state");
    assert.equal(run.options.fsfreezeHook, "/l/hook");
    assert.equal(run.options.helper, "/l/helper");
    assert.equal(run.options.configPath, `${dir}/qga.conf`);
  });
});

Deno.test("config values apply when the command line is silent", async () => {
  await inTempDir(async (dir) => {
    const conf = "[general]\ndaemon=1\nmethod=isa-serial\nlogfile=/c/log\nfsfreeze-hook=/c/hook\n" +
      "verbose=true\nretry-path=true\n";
    const o = asRun(await parseWithConfig([], conf, dir)).options;
    assert.equal(o.daemonize, true);
    assert.equal(o.method, "isa-serial");
    assert.equal(o.path, "/dev/ttyS0");
    assert.equal(o.logfile, "/c/log");
    assert.equal(o.fsfreezeHook, "/c/hook", "no default substitution from the config");
    assert.equal(o.verbose, true);
    assert.equal(o.retryPath, true);
    assert.equal(o.pidfile, DEFAULTS.pidfile);
    assert.equal(o.statedir, DEFAULTS.statedir);
  });
});

Deno.test("command-line flags turn on what the config left off", async () => {
  await inTempDir(async (dir) => {
    const conf = "[general]\ndaemon=false\nverbose=false\nretry-path=0\n";
    const o = asRun(await parseWithConfig(["-d", "-v", "-r"], conf, dir)).options;
    assert.deepEqual([o.daemonize, o.verbose, o.retryPath], [true, true, true]);
  });
});

Deno.test("lists put config items first, then command-line items", async () => {
  await inTempDir(async (dir) => {
    const conf = "[general]\nblock-rpcs=a,b\nallow-rpcs=c\nfile-roots=/r1,/r2\n" +
      "file-read-roots=/ro\nexec-programs=/bin/true\n";
    const r = await parseWithConfig(
      [
        "-b",
        "x,y",
        "--block-rpcs=z",
        "-a",
        "d,e",
        "--file-roots=/r3",
        "--file-read-roots",
        "/ro2,,/ro3",
        "--exec-programs=/bin/echo",
      ],
      conf,
      dir,
    );
    const o = asRun(r).options;
    assert.deepEqual(o.blockRpcs, ["b", "a", "y", "x", "z"]);
    assert.deepEqual(o.allowRpcs, ["c", "e", "d"]);
    assert.deepEqual(o.fileRoots, ["/r1", "/r2", "/r3"]);
    assert.deepEqual(o.fileReadRoots, ["/ro", "/ro2", "/ro3"]);
    assert.deepEqual(o.execPrograms, ["/bin/true", "/bin/echo"]);
  });
});

Deno.test("config lists take GKeyFile's ; as well as , (exec-programs=a;b names two programs)", async () => {
  await inTempDir(async (dir) => {
    const conf = "[general]\nexec-programs=/bin/echo;/bin/bash;\nfile-roots=/r1;/r2,/r3\n" +
      "file-read-roots=/ro1;/ro2\n";
    const o = asRun(await parseWithConfig(["--exec-programs=/bin/true;/bin/cat"], conf, dir))
      .options;
    assert.deepEqual(o.execPrograms, ["/bin/echo", "/bin/bash", "/bin/true", "/bin/cat"]);
    assert.deepEqual(o.fileRoots, ["/r1", "/r2", "/r3"]);
    assert.deepEqual(o.fileReadRoots, ["/ro1", "/ro2"]);
  });
});

Deno.test("block-rpcs=a;b blocks both names, and -D prints it back as qemu-ga does", async () => {
  await inTempDir(async (dir) => {
    const conf =
      "[general]\nblock-rpcs=guest-ping;guest-get-time\nallow-rpcs=guest-info;guest-ping\n";
    const o = asRun(await parseWithConfig([], conf, dir)).options;
    assert.deepEqual(o.blockRpcs, ["guest-ping", "guest-get-time"]);
    assert.deepEqual(o.allowRpcs, ["guest-info", "guest-ping"]);
    // test-qga's /qga/config reads the dump back as a ;-list of two names
    const d = asExit(await parseWithConfig(["-D"], conf, dir));
    assert.match(d.stdout, /^block-rpcs=guest-ping;guest-get-time$/m);
  });
});

Deno.test("-D keeps qemu-ga's empty list items", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseNoConfig(["-b", "a,", "-b", ",b,,c", "-D"], dir));
    assert.match(r.stdout, /^block-rpcs=,a,c,,b,$/m);
  });
});

Deno.test("-D prints deno-qga's keys after qemu-ga's, only when set", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(
      await parseNoConfig(
        [
          "-D",
          "--file-roots=/srv,/home",
          "--file-read-roots=/etc",
          "--exec-programs=/bin/ls",
          "--helper=/h",
          "--print-permissions",
          "-m",
          "stdio",
        ],
        dir,
      ),
    );
    assert.equal(
      r.stdout,
      `[general]
daemon=false
method=stdio
pidfile=/var/run/qemu-ga.pid
statedir=/var/run
verbose=false
retry-path=false
block-rpcs=
allow-rpcs=
file-roots=/srv,/home
file-read-roots=/etc
exec-programs=/bin/ls
helper=/h
print-permissions=true
`,
    );
  });
});

Deno.test("-D escapes values as GLib writes them", async () => {
  await inTempDir(async (dir) => {
    const conf = "[general]\nmethod = unix-listen  \npath=\\s/a\\tb\\\\c\\n \n";
    const r = asExit(await parseWithConfig(["-D"], conf, dir));
    assert.match(r.stdout, /^method=unix-listen {2}$/m);
    assert.match(r.stdout, /^path=\\s\/a\tb\\\\c\\n $/m);
  });
});

Deno.test("-F alone means the default hook, --fsfreeze-hook= means an empty one", async () => {
  await inTempDir(async (dir) => {
    assert.equal(
      asRun(await parseNoConfig(["-F"], dir)).options.fsfreezeHook,
      DEFAULTS.fsfreezeHook,
    );
    assert.equal(asRun(await parseNoConfig(["--fsfreeze-hook="], dir)).options.fsfreezeHook, "");
    assert.equal(asRun(await parseNoConfig([], dir)).options.fsfreezeHook, undefined);
  });
});

// ---------------------------------------------------------------------------------------
// Config file location and errors
// ---------------------------------------------------------------------------------------

Deno.test("-c overrides QGA_CONF and must exist", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/env.conf`, "[general]\npidfile=/from-env\n");
    await Deno.writeTextFile(`${dir}/c.conf`, "[general]\npidfile=/from-c\n");
    const env = envOf({ QGA_CONF: `${dir}/env.conf` });
    assert.equal(asRun(await parseCommandLine([], env, INFO)).options.pidfile, "/from-env");
    const viaC = asRun(await parseCommandLine(["-c", `${dir}/c.conf`], env, INFO));
    assert.equal(viaC.options.pidfile, "/from-c");
    assert.equal(viaC.options.configPath, `${dir}/c.conf`);
    assert.equal(
      asRun(await parseCommandLine([`--config=${dir}/c.conf`], env, INFO)).options.pidfile,
      "/from-c",
    );
    assert.deepEqual(asExit(await parseCommandLine(["-c", `${dir}/no.conf`, "-D"], env, INFO)), {
      code: 1,
      stdout: "",
      stderr: critical(
        `error loading configuration from path: ${dir}/no.conf, No such file or directory`,
      ),
    });
  });
});

Deno.test("a missing optional config file is fine and is not reported as loaded", async () => {
  await inTempDir(async (dir) => {
    const r = asRun(await parseNoConfig([], dir));
    assert.equal(r.options.configPath, undefined);
    assert.deepEqual(r.warnings, []);
  });
});

Deno.test("-c is read before the other options, wherever it stands", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/c.conf`, "[general]\nblock-rpcs=conf\n");
    const r = asRun(
      await parseCommandLine(["-b", "cli", "-c", `${dir}/c.conf`], envOf(), INFO),
    );
    assert.deepEqual(r.options.blockRpcs, ["conf", "cli"]);
  });
});

Deno.test("a bad boolean stops start-up with GLib's message", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseWithConfig(["-D"], "[general]\ndaemon=maybe\n", dir));
    assert.deepEqual(r, {
      code: 1,
      stdout: "",
      stderr: critical(
        `error loading configuration from path: ${dir}/qga.conf, Key file contains key “daemon” which has a value that cannot be interpreted.`,
      ),
    });
  });
});

Deno.test("the first of several bad values is the one reported", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseWithConfig([], "[general]\nverbose=perhaps\ndaemon=maybe\n", dir));
    assert.match(r.stderr, /key “daemon” which/, "daemon is read before verbose");
  });
});

Deno.test("an unparsable config line stops start-up", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseWithConfig(["-V"], "[general]\ngarbage\n", dir));
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      critical(
        `error loading configuration from path: ${dir}/qga.conf, Key file contains line “garbage” which is not a key-value pair, group, or comment`,
      ),
    );
  });
});

Deno.test("a config directory is not a regular file", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseCommandLine(["-D"], envOf({ QGA_CONF: dir }), INFO));
    assert.equal(
      r.stderr,
      critical(`error loading configuration from path: ${dir}, Not a regular file`),
    );
  });
});

Deno.test("config errors win over invalid options, as the config is loaded first", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseWithConfig(["-Z"], "[general]\ndaemon=x\n", dir));
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /error loading configuration/);
  });
});

Deno.test("unknown keys and groups are ignored", async () => {
  await inTempDir(async (dir) => {
    const conf = "[other]\nmethod=isa-serial\n[general]\ndaemonize=0\nfoo=bar\n";
    const o = asRun(await parseWithConfig([], conf, dir)).options;
    assert.equal(o.method, "virtio-serial");
    assert.equal(o.daemonize, false);
  });
});

Deno.test("the blacklist key warns and replaces block-rpcs, as in 7.2", async () => {
  await inTempDir(async (dir) => {
    const conf = "[general]\nblock-rpcs=a\nblacklist=guest-ping,guest-info\n";
    const r = asExit(await parseWithConfig(["-D", "-b", "x,y"], conf, dir));
    assert.match(r.stdout, /^block-rpcs=guest-info,guest-ping,y,x$/m);
    assert.equal(
      r.stderr,
      warning(
        "config using deprecated 'blacklist' key, should be replaced with the 'block-rpcs' key.",
      ),
    );
    const run = asRun(await parseWithConfig([], conf, dir));
    assert.equal(run.warnings.length, 1);
  });
});

Deno.test("the --blacklist option blocks with a deprecation warning", async () => {
  await inTempDir(async (dir) => {
    const r = asRun(await parseNoConfig(["--blacklist=guest-ping", "-b", "guest-info"], dir));
    assert.deepEqual(r.options.blockRpcs, ["guest-ping", "guest-info"]);
    assert.deepEqual(r.warnings, [
      warning("option '--blacklist' is deprecated, should be replaced with '--block-rpcs'.")
        .slice(0, -1),
    ]);
  });
});

// ---------------------------------------------------------------------------------------
// Exits: help, version, lists, errors
// ---------------------------------------------------------------------------------------

Deno.test("-V prints qemu-ga's line, then deno-qga's and Deno's versions", async () => {
  await inTempDir(async (dir) => {
    assert.deepEqual(asExit(await parseNoConfig(["-V", "-Z"], dir)), {
      code: 0,
      stdout: "QEMU Guest Agent 10.2.2\ndeno-qga 0.1.0 (Deno 2.9.6)\n",
      stderr: "",
    });
  });
});

Deno.test("options are handled in order: an earlier error beats -V", async () => {
  await inTempDir(async (dir) => {
    assert.deepEqual(asExit(await parseNoConfig(["-Z", "-V"], dir)), {
      code: 1,
      stdout: "Unknown option, try 'deno-qga --help' for more information.\n",
      stderr: "deno-qga: invalid option -- 'Z'\n",
    });
  });
});

Deno.test("an unrecognized long option exits 1 with both messages", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseNoConfig(["--x"], dir));
    assert.deepEqual(r, {
      code: 1,
      stdout: "Unknown option, try 'deno-qga --help' for more information.\n",
      stderr: "deno-qga: unrecognized option '--x'\n",
    });
  });
});

Deno.test("the program name is configurable", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(
      await parseCommandLine(["-p"], envOf({ QGA_CONF: `${dir}/x` }), {
        ...INFO,
        programName: "qga",
      }),
    );
    assert.equal(r.stderr, "qga: option requires an argument -- 'p'\n");
    assert.equal(r.stdout, "Unknown option, try 'qga --help' for more information.\n");
  });
});

Deno.test("-b help, -a help and -b ? list the commands in registration order", async () => {
  await inTempDir(async (dir) => {
    for (const argv of [["-b", "help"], ["--allow-rpcs=help"], ["-b?"], ["-a", "?"]]) {
      assert.deepEqual(asExit(await parseNoConfig(argv, dir)), {
        code: 0,
        stdout: "guest-sync-delimited\nguest-sync\nguest-ping\n",
        stderr: "",
      }, argv.join(" "));
    }
  });
});

Deno.test("--help reads like qemu-ga's and documents the extensions", async () => {
  await inTempDir(async (dir) => {
    const r = asExit(await parseNoConfig(["--help"], dir));
    assert.equal(r.code, 0);
    assert.equal(r.stderr, "");
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], "Usage: deno-qga [-m <method> -p <path>] [<options>]");
    assert.ok(lines.includes("QEMU Guest Agent 10.2.2 (deno-qga 0.1.0, Deno 2.9.6)"));
    assert.ok(
      lines.includes("                    /etc/qemu/qemu-ga.conf"),
      "the -c default is fixed",
    );
    assert.ok(!r.stdout.includes("qemu-ga.conf/qemu-ga.conf"));
    for (
      const needle of [
        "  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,",
        "  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,",
        "      --file-roots=DIR[,DIR]",
        "      --file-read-roots=DIR[,DIR]",
        "      --exec-programs=PROG[,PROG]",
        "      --helper=PATH privileged helper executable (default is",
        "                    /opt/deno-qga/helper/qga-helper)",
        "      --print-permissions",
        "deno-qga client",
        "stdio",
      ]
    ) {
      assert.ok(r.stdout.includes(needle), `--help lacks ${JSON.stringify(needle)}`);
    }
    for (const line of lines) assert.ok(line.length <= 80, `line too long: ${line}`);
  });
});

Deno.test("unix-listen and vsock-listen need a path, checked before -D", async () => {
  await inTempDir(async (dir) => {
    for (const m of ["unix-listen", "vsock-listen", "bogus"]) {
      assert.deepEqual(asExit(await parseNoConfig(["-D", "-m", m], dir)), {
        code: 1,
        stdout: "",
        stderr: critical("must specify a path for this channel"),
      }, m);
    }
  });
});

Deno.test("-D dumps an unknown method, which only fails at start", async () => {
  await inTempDir(async (dir) => {
    assert.match(
      asExit(await parseNoConfig(["-D", "-m", "foo", "-p", "/x"], dir)).stdout,
      /^method=foo$/m,
    );
    const r = asExit(await parseNoConfig(["-m", "foo", "-p", "/x"], dir));
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    const secs = Math.floor(NOW.getTime() / 1000);
    const usecs = String((NOW.getTime() % 1000) * 1000).padStart(6, "0");
    assert.equal(
      r.stderr,
      `${secs}.${usecs}: critical: unsupported channel method/type: foo\n` +
        `${secs}.${usecs}: critical: failed to initialize guest agent channel\n`,
    );
  });
});

// ---------------------------------------------------------------------------------------
// Run results
// ---------------------------------------------------------------------------------------

Deno.test("no options give qemu-ga's defaults", async () => {
  await inTempDir(async (dir) => {
    const r = asRun(await parseNoConfig([], dir));
    assert.deepEqual(r.options, {
      daemonize: false,
      method: "virtio-serial",
      path: DEFAULTS.virtioPath,
      logfile: undefined,
      pidfile: DEFAULTS.pidfile,
      fsfreezeHook: undefined,
      statedir: DEFAULTS.statedir,
      verbose: false,
      retryPath: false,
      blockRpcs: [],
      allowRpcs: [],
      configPath: undefined,
      fileRoots: [],
      fileReadRoots: [],
      execPrograms: [],
      helper: "/opt/deno-qga/helper/qga-helper",
      printPermissions: false,
    });
    assert.deepEqual(r.warnings, []);
  });
});

Deno.test("stdio needs no path", async () => {
  await inTempDir(async (dir) => {
    const o = asRun(await parseNoConfig(["-m", "stdio"], dir)).options;
    assert.equal(o.method, "stdio");
    assert.equal(o.path, "");
  });
});

Deno.test("-d is kept for the caller and -s is accepted and ignored", async () => {
  await inTempDir(async (dir) => {
    const o = asRun(await parseNoConfig(["-d", "-s", "install"], dir)).options;
    assert.equal(o.daemonize, true);
  });
});

Deno.test("--print-permissions is a flag and a config key", async () => {
  await inTempDir(async (dir) => {
    assert.equal(
      asRun(await parseNoConfig(["--print-permissions"], dir)).options.printPermissions,
      true,
    );
    const c = asRun(await parseWithConfig([], "[general]\nprint-permissions=true\n", dir));
    assert.equal(c.options.printPermissions, true);
  });
});

Deno.test("the default helper is helper/qga-helper in the repository", async () => {
  await inTempDir(async (dir) => {
    const { defaultHelper: _, ...info } = INFO;
    const r = asRun(await parseCommandLine([], envOf({ QGA_CONF: `${dir}/x` }), info));
    const expected = new URL("../../helper/qga-helper", import.meta.url).pathname;
    assert.equal(r.options.helper, expected);
  });
});

Deno.test("POSIXLY_CORRECT from the environment stops option parsing", async () => {
  await inTempDir(async (dir) => {
    const env = envOf({ QGA_CONF: `${dir}/x`, POSIXLY_CORRECT: "1" });
    const o = asRun(await parseCommandLine(["-d", "arg", "-v"], env, INFO)).options;
    assert.deepEqual([o.daemonize, o.verbose], [true, false]);
  });
});
