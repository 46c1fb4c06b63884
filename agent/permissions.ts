/**
 * Permissions are part of the command table: each command declares what it needs
 * (commands/types.ts `Needs`). This module
 *
 * - works out, at start-up, which commands the agent's actual Deno grants (and
 *   the helper) cannot serve, so they are reported disabled instead of failing
 *   half-way;
 * - prints, for `--print-permissions`, the exact least-privilege `deno run`
 *   command line for the same options and config.
 *
 * @module
 */

import { dirname, fileURLToPath, join, resolve } from "../config/path.ts";
import { type AgentOptions, DEFAULTS } from "../config/options.ts";
import type { Command, Needs } from "../commands/types.ts";

/** The needs of a command under these options. */
export function needsOf(cmd: Command, options: AgentOptions): Needs {
  return typeof cmd.needs === "function" ? cmd.needs(options) : cmd.needs;
}

/** Whether a command is filtered out by -a/-b (then its needs are not granted). */
export function isFilteredOut(name: string, options: AgentOptions): boolean {
  if (options.blockRpcs.includes(name)) return true;
  return options.allowRpcs.length > 0 && !options.allowRpcs.includes(name);
}

/** True when the method opens a device through the privileged helper. */
export function channelNeedsHelper(options: AgentOptions): boolean {
  return options.method === "virtio-serial" || options.method === "isa-serial";
}

/** Needs of the agent itself (channel, state dir, log, pid file, config, helper). */
export function baseNeeds(options: AgentOptions, helperWanted: boolean): Needs {
  const read = [options.statedir];
  const write = [options.statedir];
  const env = ["QGA_CONF", "POSIXLY_CORRECT"];
  const run: string[] = [];
  read.push(options.configPath ?? DEFAULTS.config);
  if (options.logfile) write.push(options.logfile);
  if (options.daemonize) write.push(options.pidfile);
  if (options.method === "unix-listen") {
    read.push(options.path);
    write.push(options.path);
  }
  if (helperWanted) run.push(options.helper);
  // The inspector's port, held so that SIGUSR1 can never open it (agent/run.ts).
  const net = [INSPECTOR_ADDRESS];
  return { read, write, env, run, net };
}

/** Deno's SIGUSR1 inspector address, which the agent holds (agent/run.ts holdInspectorPort). */
export const INSPECTOR_ADDRESS = "127.0.0.1:9229";

function merge(into: Required<Needs>, n: Needs): void {
  for (const k of ["read", "write", "run", "sys", "env", "net", "helper"] as const) {
    for (const v of n[k] ?? []) if (!into[k].includes(v)) into[k].push(v);
  }
}

/** Everything the agent needs for these options: itself plus every enabled command. */
export function totalNeeds(
  commands: readonly Command[],
  options: AgentOptions,
): Required<Needs> {
  const all: Required<Needs> = {
    read: [],
    write: [],
    run: [],
    sys: [],
    env: [],
    net: [],
    helper: [],
  };
  for (const c of commands) {
    if (isFilteredOut(c.name, options)) continue;
    merge(all, needsOf(c, options));
  }
  const helperWanted = channelNeedsHelper(options) || all.helper.length > 0;
  merge(all, baseNeeds(options, helperWanted));
  return all;
}

function queryGranted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/** The first need the current process was not granted, described; undefined when all are. */
export function missingGrant(n: Needs): string | undefined {
  for (const path of n.read ?? []) {
    if (!queryGranted({ name: "read", path })) return `read access to ${path}`;
  }
  for (const path of n.write ?? []) {
    if (!queryGranted({ name: "write", path })) return `write access to ${path}`;
  }
  for (const command of n.run ?? []) {
    // "*" means any program (guest-exec without --exec-programs): only an unrestricted --allow-run.
    const desc: Deno.PermissionDescriptor = command === "*"
      ? { name: "run" }
      : { name: "run", command };
    if (!queryGranted(desc)) {
      return command === "*" ? "permission to run any program" : `permission to run ${command}`;
    }
  }
  for (const kind of n.sys ?? []) {
    if (!queryGranted({ name: "sys", kind } as Deno.PermissionDescriptor)) {
      return `system information "${kind}"`;
    }
  }
  // env and net are not checked: see Needs (commands/types.ts).
  return undefined;
}

/**
 * Commands the sandbox cannot serve, with the reason given after
 * "has been disabled: " (qemu-ga's disabled-command reply).
 */
export function sandboxDisabled(
  commands: readonly Command[],
  options: AgentOptions,
  helperAvailable: boolean,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const c of commands) {
    const n = needsOf(c, options);
    if ((n.helper?.length ?? 0) > 0 && !helperAvailable) {
      out.set(c.name, "the privileged helper is not available");
      continue;
    }
    const missing = missingGrant(n);
    if (missing) out.set(c.name, `the agent's sandbox does not grant ${missing}`);
  }
  return out;
}

/** Shell-quotes one argument (POSIX single quotes when needed). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_\/.,:=@%+-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The least-privilege command line. `mainPath` is main.ts (or the bundle);
 * `args` are the agent's own arguments, passed on unchanged (minus --print-permissions).
 */
export function leastPrivilegeCommand(
  commands: readonly Command[],
  options: AgentOptions,
  o: { denoPath: string; mainPath: string; args: string[] },
): string[] {
  const n = totalNeeds(commands, options);
  const abs = (p: string) => resolve(p);
  // --no-config: a deno.json in a parent directory must not change the agent's code.
  // --expose-gc: the agent collects its garbage when idle (agent/agent.ts #armIdleGc).
  // --no-lazy: V8 compiles every function of a module when it loads it, so Deno's code
  // cache holds them all and the code that runs before the first reply is not compiled
  // at every start (7 ms sooner with the bundle; 2-3 MiB more idle: docs/performance.md).
  const flags = ["run", "--no-prompt", "--no-config", "--v8-flags=--expose-gc,--no-lazy"];
  // Deno refuses /dev, /proc and /sys outside --allow-all whatever the grant says:
  // those go through the helper, so naming them would only mislead a reader.
  const special = (p: string) => /^\/(proc|sys|dev)(\/|$)/.test(p) && p !== "/dev/null";
  const list = (xs: string[]) => [...new Set(xs.map(abs))].filter((p) => !special(p)).join(",");
  if (n.read.length) flags.push(`--allow-read=${list(n.read)}`);
  if (n.write.length) flags.push(`--allow-write=${list(n.write)}`);
  // The helper's launcher, its code, its Deno cache and every path of the deno
  // binary are the way to --allow-all: a write grant that covers them (no file
  // roots: guest-file-* may write anywhere, as qemu-ga) is carved out again.
  const protect = helperPaths(options.helper, o.denoPath);
  const writes = n.write.map(abs);
  const covered = protect.filter((p) =>
    writes.some((w) => w === "/" || p === w || p.startsWith(`${w}/`))
  );
  if (covered.length) flags.push(`--deny-write=${covered.join(",")}`);
  // "*" (guest-exec with no --exec-programs list) is never granted: least privilege
  // names its programs, and never a shell or deno itself.
  const run = [...new Set(n.run)].filter((r) => r !== "*");
  if (run.length) flags.push(`--allow-run=${run.join(",")}`);
  const net = [...new Set(n.net)];
  if (options.method === "unix-listen") net.unshift(`unix:${abs(options.path)}`);
  if (net.length) flags.push(`--allow-net=${net.join(",")}`);
  if (n.sys.length) flags.push(`--allow-sys=${n.sys.join(",")}`);
  if (n.env.length) flags.push(`--allow-env=${n.env.join(",")}`);
  if (options.method === "vsock-listen") {
    flags.push("--unstable-vsock", `--allow-net=vsock:${options.path}`);
  }
  const args = o.args.filter((a) => a !== "--print-permissions");
  return [o.denoPath, ...flags, o.mainPath, ...args];
}

/** The Deno caches the two launchers set as DENO_DIR (helper/qga-helper, packaging/qga-helper.sh). */
export function helperCacheDirs(root: string): string[] {
  return [join(root, "node_modules", ".deno-helper-cache"), "/var/cache/deno-qga"];
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function fileId(path: string): string | undefined {
  try {
    const st = Deno.statSync(path);
    return st.isFile && st.dev !== null && st.ino !== null ? `${st.dev}:${st.ino}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a write grant must not cover (Deno's --deny-write is lexical: a symlink or
 * a hard link is another path to the same file, so each is named):
 * - the helper's directory (its launcher; in a checkout its code too);
 * - the directory of the deno binary the agent runs (in a bundle, the helper's code);
 * - the helper's Deno cache (emit and V8 code cache, loaded under --allow-all),
 *   those of the two launchers that the launcher at `helper` names;
 * - every path of the deno binary found where a checkout or a bundle keeps one:
 *   `node_modules/deno/deno`, its `.bin/deno` link, the `@deno/<platform>/deno`
 *   hard link npm installs, a bundle's `deno`, and the running binary: each one
 *   that is the same file (device and inode) as the binary the launcher runs or
 *   the one running now.
 */
export function helperPaths(helper: string, denoPath: string): string[] {
  const helperDir = dirname(resolve(helper));
  const root = dirname(helperDir);
  const modules = join(root, "node_modules");
  let launcher: string | undefined;
  try {
    launcher = Deno.readTextFileSync(resolve(helper));
  } catch {
    // Not readable here (an install computes the line for paths under its DESTDIR).
  }
  const [checkoutCache, bundleCache] = helperCacheDirs(root) as [string, string];
  const caches = launcher !== undefined
    ? [checkoutCache, bundleCache].filter((c) =>
      launcher.includes(c === checkoutCache ? "node_modules/.deno-helper-cache" : c)
    )
    : [exists(modules) ? checkoutCache : bundleCache];
  const candidates = [
    resolve(denoPath),
    join(modules, "deno", "deno"),
    join(modules, ".bin", "deno"),
    join(root, "deno"),
  ];
  try {
    for (const e of Deno.readDirSync(join(modules, "@deno"))) {
      candidates.push(join(modules, "@deno", e.name, "deno"));
    }
  } catch {
    // No npm-installed platform package here.
  }
  try {
    candidates.push(Deno.execPath());
  } catch {
    // No read grant for it.
  }
  const binaries = new Set(
    [resolve(denoPath), join(modules, "deno", "deno"), join(root, "deno")]
      .map(fileId).filter((id) => id !== undefined),
  );
  const same = candidates.filter((c) => {
    const id = fileId(c);
    return id !== undefined && binaries.has(id);
  });
  const all = [...new Set([helperDir, dirname(resolve(denoPath)), ...caches, ...same])];
  // A path inside another protected directory is covered by it.
  return all.filter((p) => !all.some((q) => q !== p && p.startsWith(`${q}/`)));
}

/** Directory holding main.ts (for the default helper path). */
export function projectDir(mainUrl: string): string {
  return dirname(fileURLToPath(mainUrl));
}
