/**
 * qemu-ga's GAConfig (qga-reference.md §4.1-4.3): the configuration file's `[general]`
 * keys (`config_load`, plus 7.2's `blacklist` and deno-qga's keys), qemu-ga's list
 * splitting, the `-D` dump (`config_dump`) and the GLib-style messages qemu-ga prints
 * before its own log is set up. cli/options.ts merges the command line into it.
 *
 * @module
 */

import { formatKeyFile, type KeyFile, KeyFileError } from "./keyfile.ts";

/** Where a GLib-style message gets its process id and clock. */
export interface MessageContext {
  readonly pid: number;
  readonly now: () => Date;
}

/**
 * GLib's default log handler output for a message without log domain, as qemu-ga prints
 * config errors and warnings before its own handler is installed:
 * `\n** (process:PID): CRITICAL **: HH:MM:SS.mmm: <message>\n` (local time).
 */
export function glibMessage(
  level: "CRITICAL" | "WARNING",
  message: string,
  ctx: MessageContext,
): string {
  const d = ctx.now();
  const two = (n: number) => String(n).padStart(2, "0");
  const time = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${
    String(d.getMilliseconds()).padStart(3, "0")
  }`;
  return `\n** (process:${ctx.pid}): ${level} **: ${time}: ${message}\n`;
}

/** The deprecation warning qemu-ga 7.2 prints for the `blacklist` config key. */
export const BLACKLIST_KEY_WARNING =
  "config using deprecated 'blacklist' key, should be replaced with the 'block-rpcs' key.";

/** deno-qga's warning for 7.2's `--blacklist` option (removed upstream in 9.1). */
export const BLACKLIST_OPTION_WARNING =
  "option '--blacklist' is deprecated, should be replaced with '--block-rpcs'.";

/** qemu-ga's GAConfig plus deno-qga's extensions, before defaults are applied. */
export interface Config {
  daemonize: boolean;
  method: string | undefined;
  path: string | undefined;
  logfile: string | undefined;
  pidfile: string | undefined;
  fsfreezeHook: string | undefined;
  statedir: string | undefined;
  verbose: boolean;
  retryPath: boolean;
  blockRpcs: string[];
  allowRpcs: string[];
  dumpConf: boolean;
  configPath: string | undefined;
  fileRoots: string[];
  fileReadRoots: string[];
  execPrograms: string[];
  helper: string | undefined;
  printPermissions: boolean;
}

export function emptyConfig(): Config {
  return {
    daemonize: false,
    method: undefined,
    path: undefined,
    logfile: undefined,
    pidfile: undefined,
    fsfreezeHook: undefined,
    statedir: undefined,
    verbose: false,
    retryPath: false,
    blockRpcs: [],
    allowRpcs: [],
    dumpConf: false,
    configPath: undefined,
    fileRoots: [],
    fileReadRoots: [],
    execPrograms: [],
    helper: undefined,
    printPermissions: false,
  };
}

/**
 * qemu-ga's `split_list`: `g_strsplit(str, ",")` then `g_list_prepend`, so one option's
 * items come out reversed (`a,b` → `[b, a]`); an empty string gives no items.
 */
export function splitList(text: string): string[] {
  return text === "" ? [] : text.split(",").reverse();
}

/**
 * deno-qga's lists: items in the given order, empty items dropped. Items are separated by
 * `,` (as on qemu-ga's command line) or `;` (GKeyFile's list syntax, as in qemu-ga's own
 * test config `block-rpcs=guest-ping;guest-get-time`), so `exec-programs=a;b` names two
 * programs.
 */
export function splitPaths(text: string): string[] {
  return text.split(/[,;]/).filter((s) => s !== "");
}

/**
 * The RPC names a block or allow list means. qemu-ga splits its lists on `,` only, so
 * `block-rpcs=guest-ping;guest-get-time` is stored (and dumped by `-D`) as one name that
 * blocks nothing; no command name contains `;`, so deno-qga blocks both names (the
 * operator's plain intent) while `-D` still prints the list exactly as qemu-ga does.
 */
export function effectiveRpcList(stored: readonly string[]): string[] {
  return stored.flatMap((item) => item.split(";")).filter((s) => s !== "");
}

/** `config_load` (10.2, plus 7.2's `blacklist` key and deno-qga's keys). */
export function applyKeyFile(
  config: Config,
  kf: KeyFile,
  warnings: string[],
  ctx: MessageContext,
): void {
  const G = "general";
  // qemu-ga keeps reading after a bad value and reports the first error at the end.
  let firstError: KeyFileError | undefined;
  function read<T>(key: string, get: (key: string) => T, set: (v: T) => void): void {
    if (!kf.hasKey(G, key)) return;
    try {
      set(get(key));
    } catch (e) {
      if (!(e instanceof KeyFileError)) throw e;
      firstError ??= e;
    }
  }
  const str = (k: string) => kf.getString(G, k);
  const bool = (k: string) => kf.getBoolean(G, k);

  read("daemon", bool, (v) => config.daemonize = v);
  read("method", str, (v) => config.method = v);
  read("path", str, (v) => config.path = v);
  read("logfile", str, (v) => config.logfile = v);
  read("pidfile", str, (v) => config.pidfile = v);
  read("fsfreeze-hook", str, (v) => config.fsfreezeHook = v);
  read("statedir", str, (v) => config.statedir = v);
  read("verbose", bool, (v) => config.verbose ||= v);
  read("retry-path", bool, (v) => config.retryPath = v);
  // 7.2: a `blacklist` key is used instead of `block-rpcs` (never both).
  let blockKey = "block-rpcs";
  if (kf.hasKey(G, "blacklist")) {
    warnings.push(glibMessage("WARNING", BLACKLIST_KEY_WARNING, ctx).slice(0, -1));
    blockKey = "blacklist";
  }
  read(blockKey, str, (v) => config.blockRpcs.push(...splitList(v)));
  read("allow-rpcs", str, (v) => config.allowRpcs.push(...splitList(v)));
  read("file-roots", str, (v) => config.fileRoots.push(...splitPaths(v)));
  read("file-read-roots", str, (v) => config.fileReadRoots.push(...splitPaths(v)));
  read("exec-programs", str, (v) => config.execPrograms.push(...splitPaths(v)));
  read("helper", str, (v) => config.helper = v);
  read("print-permissions", bool, (v) => config.printPermissions = v);
  if (firstError !== undefined) throw firstError;
}

/** `config_dump`: the `-D` keyfile (10.2 order), then deno-qga's keys that are set. */
export function dumpConfigText(config: {
  readonly daemonize: boolean;
  readonly method: string;
  readonly path: string | undefined;
  readonly logfile: string | undefined;
  readonly pidfile: string;
  readonly fsfreezeHook: string | undefined;
  readonly statedir: string;
  readonly verbose: boolean;
  readonly retryPath: boolean;
  readonly blockRpcs: readonly string[];
  readonly allowRpcs: readonly string[];
  readonly fileRoots: readonly string[];
  readonly fileReadRoots: readonly string[];
  readonly execPrograms: readonly string[];
  readonly helper: string | undefined;
  readonly printPermissions: boolean;
}): string {
  const e: [string, string][] = [];
  e.push(["daemon", String(config.daemonize)]);
  e.push(["method", config.method]);
  if (config.path !== undefined) e.push(["path", config.path]);
  if (config.logfile !== undefined) e.push(["logfile", config.logfile]);
  e.push(["pidfile", config.pidfile]);
  if (config.fsfreezeHook !== undefined) e.push(["fsfreeze-hook", config.fsfreezeHook]);
  e.push(["statedir", config.statedir]);
  e.push(["verbose", String(config.verbose)]);
  e.push(["retry-path", String(config.retryPath)]);
  e.push(["block-rpcs", config.blockRpcs.join(",")]);
  e.push(["allow-rpcs", config.allowRpcs.join(",")]);
  if (config.fileRoots.length > 0) e.push(["file-roots", config.fileRoots.join(",")]);
  if (config.fileReadRoots.length > 0) {
    e.push(["file-read-roots", config.fileReadRoots.join(",")]);
  }
  if (config.execPrograms.length > 0) e.push(["exec-programs", config.execPrograms.join(",")]);
  if (config.helper !== undefined) e.push(["helper", config.helper]);
  if (config.printPermissions) e.push(["print-permissions", "true"]);
  return formatKeyFile("general", e);
}
