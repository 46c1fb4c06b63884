/**
 * Start and stop guest agents for integration and differential tests: the reference
 * qemu-ga (/usr/sbin/qemu-ga) and deno-qga (main.ts), each on a unix socket in a fresh
 * temp dir that is also its state dir and its cwd, as upstream test-qga.c does
 * (qga-reference.md §5.1). Relative guest-file paths such as `foo` therefore land in the
 * agent's own temp dir for both agents.
 *
 * An agent is stopped with SIGTERM and must exit with status 0; the temp dir is removed
 * afterwards. Use `await using agent = await startAgent("qemu-ga")` so a failing test
 * still stops it.
 *
 * @module
 */

import assert from "node:assert/strict";

/** Which implementation to start. */
export type AgentKind = "qemu-ga" | "deno-qga";

/** Options of {@link startAgent}. */
export interface StartOptions {
  /** Commands passed to `-b` (block list). */
  block?: readonly string[];
  /** Further command-line arguments, appended after the standard ones. */
  extraArgs?: readonly string[];
  /** Extra environment variables for the agent. */
  env?: Readonly<Record<string, string>>;
  /** Files created in the temp dir before start (name relative to the dir → content). */
  files?: Readonly<Record<string, string>>;
  /** deno-qga's command line: least privilege (default) or the card's (see denoQgaArgv);
   * `QGA_TEST_LINE=card` in the environment makes "card" the default. */
  line?: "least" | "card";
}

/** A running agent. */
export interface RunningAgent extends AsyncDisposable {
  readonly kind: AgentKind;
  /** Temp dir: cwd, state dir and home of the socket. */
  readonly dir: string;
  /** The unix socket path. */
  readonly socketPath: string;
  /** The argv the agent was started with. */
  readonly argv: readonly string[];
  /** Everything the agent wrote to stderr so far (lossy UTF-8). */
  stderr(): string;
  /** Sends SIGTERM (repeated until it exits), asserts exit status 0, removes the temp dir.
   * Idempotent. */
  stop(): Promise<void>;
}

/** Path of the reference binary. */
export const QEMU_GA = "/usr/sbin/qemu-ga";

/** Commands never run against this machine (freeze, power, passwords, clock, vcpus, keys). */
export const DANGEROUS_COMMANDS: readonly string[] = [
  "guest-fsfreeze-freeze",
  "guest-fsfreeze-freeze-list",
  "guest-shutdown",
  "guest-suspend-ram",
  "guest-suspend-disk",
  "guest-suspend-hybrid",
  "guest-set-user-password",
  "guest-set-time",
  "guest-set-vcpus",
  "guest-set-memory-blocks",
  "guest-ssh-add-authorized-keys",
  "guest-ssh-remove-authorized-keys",
];

/**
 * Programs deno-qga may start through guest-exec in tests. qemu-ga runs anything
 * as root; deno-qga under least privilege runs only programs named with
 * --exec-programs, so the programs the tests run are named here. `/bin/invalid-cmd42`
 * does not exist: it is granted so that deno-qga really tries to spawn it and its spawn
 * failure is compared with qemu-ga's (test-qga.c's guest-exec-invalid); a program not
 * named here is refused by the sandbox before any spawn, a different reply.
 */
export const EXEC_PROGRAMS: readonly string[] = [
  "/usr/bin/true",
  "/usr/bin/echo",
  "/bin/sh",
  "/bin/cat",
  "/bin/sleep",
  "/bin/echo",
  "/bin/invalid-cmd42",
];

const REPO_ROOT = new URL("../../", import.meta.url).pathname;
const DENO = `${REPO_ROOT}node_modules/.bin/deno`;
const MAIN = `${REPO_ROOT}main.ts`;

/** Throws the house message when qemu-ga is missing. */
export async function requireQemuGa(): Promise<void> {
  try {
    const info = await Deno.stat(QEMU_GA);
    if (!info.isFile) throw new Error("not a file");
  } catch {
    throw new Error("qemu-ga not found: apt-get install qemu-guest-agent");
  }
}

/**
 * Splits a POSIX-shell-quoted command line into argv (single quotes, double quotes with
 * backslash escapes, backslash outside quotes). No expansion of any kind.
 */
export function shellSplit(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let inWord = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated single quote in ${JSON.stringify(line)}`);
      cur += line.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      i++;
      while (i < line.length && line[i] !== '"') {
        if (line[i] === "\\" && i + 1 < line.length && '"\\$`\n'.includes(line[i + 1]!)) i++;
        cur += line[i];
        i++;
      }
      if (i >= line.length) throw new Error(`unterminated double quote in ${JSON.stringify(line)}`);
      inWord = true;
    } else if (c === "\\" && i + 1 < line.length) {
      cur += line[++i];
      inWord = true;
    } else if (c === " " || c === "\t" || c === "\n") {
      if (inWord) out.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}

function childEnv(extra: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.RUST_BACKTRACE;
  return { ...env, ...extra };
}

/**
 * The deno-qga argv: the line `main.ts --print-permissions` prints when the agent supports
 * it, else the documented fallback (never --allow-all). Relative `.ts` paths in the printed
 * line are resolved against the repository root, and argv[0] is replaced by the repo's deno.
 *
 * With `QGA_TEST_LINE=card` in the environment, the card's line instead:
 * `deno run --allow-read --allow-write --allow-run main.ts`, plus the one grant a unix
 * socket needs (`--allow-net=unix:SOCKET`), so a suite can run under both lines.
 */
async function denoQgaArgv(
  agentArgs: string[],
  line: "least" | "card" | undefined,
): Promise<{ argv: string[]; note: string }> {
  const socket = agentArgs[agentArgs.indexOf("-p") + 1]!;
  if ((line ?? (Deno.env.get("QGA_TEST_LINE") === "card" ? "card" : "least")) === "card") {
    return {
      argv: [
        DENO,
        "run",
        "--allow-read",
        "--allow-write",
        "--allow-run",
        `--allow-net=unix:${socket}`,
        MAIN,
        ...agentArgs,
      ],
      note: "the card's line (QGA_TEST_LINE=card)",
    };
  }
  let note: string;
  try {
    const out = await new Deno.Command(DENO, {
      args: [
        "run",
        "--no-prompt",
        "--allow-read",
        "--allow-env",
        "--allow-sys",
        MAIN,
        "--print-permissions",
        ...agentArgs,
      ],
      cwd: REPO_ROOT,
      env: childEnv(undefined),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const line = new TextDecoder().decode(out.stdout).trim();
    if (out.success && line !== "" && !line.includes("\n")) {
      const argv = shellSplit(line);
      const runAt = argv.indexOf("run");
      const allowAll = argv.includes("-A") || argv.includes("--allow-all");
      if (runAt >= 0 && argv.some((a) => a.endsWith("main.ts")) && !allowAll) {
        return {
          argv: [
            DENO,
            ...argv.slice(runAt).map((a) =>
              a.endsWith(".ts") && !a.startsWith("/") && !a.startsWith("-") ? REPO_ROOT + a : a
            ),
          ],
          note: "",
        };
      }
      note = `unusable --print-permissions line: ${line}`;
    } else {
      note = `--print-permissions failed (code ${out.code}): ` +
        new TextDecoder().decode(out.stderr).trim().slice(0, 2000);
    }
  } catch (e) {
    note = `--print-permissions could not run: ${e}`;
  }
  const argv = [
    DENO,
    "run",
    "--no-prompt",
    "--allow-read",
    "--allow-write",
    `--allow-net=unix:${socket}`,
    "--allow-run",
    "--allow-env",
    "--allow-sys",
    MAIN,
    ...agentArgs,
  ];
  return { argv, note: `${note}; used the fallback flags` };
}

async function waitForSocket(
  path: string,
  exited: () => Deno.CommandStatus | undefined,
  what: () => string,
): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = exited();
    if (status) {
      throw new Error(`${what()} exited before listening (code ${status.code})`);
    }
    try {
      await Deno.lstat(path);
      // The socket file exists: connect once without sending anything (test-qga.c does the
      // same). An agent must treat a client that sends nothing as a no-op.
      const conn = await Deno.connect({ transport: "unix", path });
      conn.close();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${what()} did not listen on ${path}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/**
 * Starts an agent in a fresh temp dir (cwd = state dir = socket dir) and waits until its
 * socket accepts connections.
 *
 * @example
 * ```ts
 * await using ga = await startAgent("qemu-ga", { block: DANGEROUS_COMMANDS });
 * ```
 */
export async function startAgent(
  kind: AgentKind,
  options: StartOptions = {},
): Promise<RunningAgent> {
  if (kind === "qemu-ga") await requireQemuGa();
  const dir = await Deno.makeTempDir({ prefix: `qgadiff.${kind}.` });
  for (const [name, content] of Object.entries(options.files ?? {})) {
    await Deno.writeTextFile(`${dir}/${name}`, content);
  }
  const socketPath = `${dir}/sock`;
  const agentArgs = ["-m", "unix-listen", "-p", socketPath, "-t", dir];
  if (options.block && options.block.length > 0) agentArgs.push("-b", options.block.join(","));
  agentArgs.push(...(options.extraArgs ?? []));
  const { argv, note } = kind === "qemu-ga"
    ? { argv: [QEMU_GA, ...agentArgs], note: "" }
    : await denoQgaArgv(
      options.extraArgs?.some((a) => a.startsWith("--exec-programs"))
        ? agentArgs
        : [...agentArgs, `--exec-programs=${EXEC_PROGRAMS.join(",")}`],
      options.line,
    );

  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: dir,
    env: childEnv(options.env),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let errText = "";
  const decoder = new TextDecoder();
  // Keep the last 4 MiB: an agent serving a million requests writes an audit line
  // for each, more than a string can hold.
  const KEEP = 4 << 20;
  const drained = (async () => {
    for await (const chunk of child.stderr) {
      errText += decoder.decode(chunk, { stream: true });
      if (errText.length > 2 * KEEP) errText = errText.slice(-KEEP);
    }
  })();
  let finalStatus: Deno.CommandStatus | undefined;
  const statusPromise = child.status.then((s) => {
    finalStatus = s;
    return s;
  });

  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      try {
        // qemu-ga 7.2's SIGTERM handler is racy: it drops the signal when the main loop
        // is not running yet, and calls the non-async-signal-safe g_main_loop_quit, which
        // deadlocks on the GMainContext lock when the signal lands mid-iteration (seen as
        // a futex wait). So: signal only after a short idle pause, repeat SIGTERM every
        // 500 ms, SIGKILL after 5 s. A qemu-ga found deadlocked in a futex is tolerated
        // (reference defect); any other kill fails the exit-status check below.
        await new Promise((r) => setTimeout(r, 50));
        const signal = (sig: Deno.Signal) => {
          try {
            if (!finalStatus) child.kill(sig);
          } catch {
            // already exited; the status below tells
          }
        };
        signal("SIGTERM");
        let waited = 0;
        let deadlocked = false;
        const timer = setInterval(() => {
          waited += 500;
          if (waited >= 5000 && !finalStatus) {
            try {
              deadlocked = Deno.readTextFileSync(`/proc/${child.pid}/wchan`).includes("futex");
            } catch {
              // gone meanwhile
            }
          }
          signal(waited >= 5000 ? "SIGKILL" : "SIGTERM");
        }, 500);
        const status = await statusPromise;
        clearInterval(timer);
        if (kind === "qemu-ga" && deadlocked && status.signal === "SIGKILL") {
          console.warn(`qemu-ga deadlocked in its SIGTERM handler (known 7.2 race); killed`);
          await drained;
          return;
        }
        await drained;
        assert.equal(
          status.code,
          0,
          `${kind} must exit 0 on SIGTERM (got code ${status.code}, signal ${status.signal}); ` +
            `stderr: ${errText}`,
        );
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    })();
    return stopped;
  };

  const agent: RunningAgent = {
    kind,
    dir,
    socketPath,
    argv,
    stderr: () => errText,
    stop,
    [Symbol.asyncDispose]: stop,
  };
  try {
    await waitForSocket(
      socketPath,
      () => finalStatus,
      () => `${kind} (${argv.join(" ")})${note ? ` [${note}]` : ""}: ${errText}`,
    );
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
  return agent;
}

/** Lists the regular files of an agent's temp dir (not the socket), sorted, with content. */
export async function dirFiles(agent: RunningAgent): Promise<Map<string, Uint8Array>> {
  const names: string[] = [];
  for await (const e of Deno.readDir(agent.dir)) {
    if (e.isFile) names.push(e.name);
  }
  names.sort();
  const out = new Map<string, Uint8Array>();
  for (const n of names) out.set(n, await Deno.readFile(`${agent.dir}/${n}`));
  return out;
}
