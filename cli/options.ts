/**
 * Command line and configuration file of deno-qga, as qemu-ga 10.2's `config_parse`
 * and `config_load` (qga-reference.md §4.1-4.3): a glibc-compatible `getopt_long`, two
 * passes (`-c` first, then the config file, then every other option), qemu-ga's
 * precedence (scalars: command line over config; lists: config items, then command
 * line items), `-D` output byte for byte, and qemu-ga's error texts and exit codes.
 *
 * @example
 * ```ts
 * const r = await parseCommandLine(Deno.args, Deno.env, {
 *   version: "10.2.2", denoVersion: Deno.version.deno, commandNames: ["guest-ping"],
 * });
 * if (r.kind === "exit") { ... print r.stdout / r.stderr, Deno.exit(r.code) }
 * ```
 *
 * @module
 */

import { type AgentOptions, defaultOptions, DEFAULTS, type Method } from "../config/options.ts";
import { formatKeyFile, type KeyFile, KeyFileError, loadKeyFile } from "./keyfile.ts";
import { type HelpInfo, usageText, versionText } from "./help.ts";
import { qemuLogLine } from "../agent/log.ts";

// ---------------------------------------------------------------------------------------
// getopt_long (glibc 2.36 semantics, not long_only)
// ---------------------------------------------------------------------------------------

/** A long option as in `struct option`: `hasArg` 0 none, 1 required, 2 optional. */
export interface LongOption {
  readonly name: string;
  readonly hasArg: 0 | 1 | 2;
  /** What getopt returns: the short option letter, or a longer key for long-only options. */
  readonly val: string;
}

/** What one `getopt_long` call yields: an option with its argument, or an error text. */
export type GetoptEvent =
  | { readonly kind: "option"; readonly val: string; readonly arg: string | undefined }
  | { readonly kind: "error"; readonly message: string };

/** How to parse: short option string (getopt syntax) and long option tables. */
export interface GetoptSpec {
  /** e.g. `hVvdc:m:p:l:f:F::b:a:s:t:Dr`. */
  readonly short: string;
  /**
   * Long options in tiers. An exact name matches in any tier; abbreviations are
   * resolved in the first tier that has a prefix match, glibc-style inside the tier.
   * Tier 0 is qemu-ga's own table, so deno-qga's extensions never change how a qemu-ga
   * abbreviation resolves.
   */
  readonly long: readonly (readonly LongOption[])[];
  /** Program name for error texts (glibc prints argv[0]). */
  readonly programName: string;
  /** `POSIXLY_CORRECT` set: stop at the first non-option instead of skipping it. */
  readonly posixlyCorrect: boolean;
}

/** Argument kind of short option `c` in `spec`, or undefined if it is not an option. */
function shortArgKind(spec: string, c: string): 0 | 1 | 2 | undefined {
  if (c === ":" || c === ";") return undefined;
  const at = spec.indexOf(c);
  if (at < 0) return undefined;
  if (spec[at + 1] !== ":") return 0;
  return spec[at + 2] === ":" ? 2 : 1;
}

/** Finds a long option the way glibc's `process_long_option` does. */
function matchLong(
  tiers: GetoptSpec["long"],
  name: string,
): { found: LongOption } | { ambiguous: LongOption[] } | undefined {
  for (const tier of tiers) {
    const exact = tier.find((o) => o.name === name);
    if (exact !== undefined) return { found: exact };
  }
  for (const tier of tiers) {
    const prefixed = tier.filter((o) => o.name.startsWith(name));
    const first = prefixed[0];
    if (first === undefined) continue;
    const differing = prefixed.filter((o) => o.hasArg !== first.hasArg || o.val !== first.val);
    if (differing.length === 0) return { found: first };
    const set = new Set([first, ...differing]);
    return { ambiguous: tier.filter((o) => set.has(o)) };
  }
  return undefined;
}

/**
 * Walks `argv` (without the program name) like repeated `getopt_long` calls: yields
 * every option and every error (with glibc's exact text, without the newline) and
 * stops at `--` or at the end. Non-options are skipped (glibc permutes them to the
 * end; qemu-ga ignores them), or end parsing under POSIXLY_CORRECT.
 */
export function* getoptLong(argv: readonly string[], spec: GetoptSpec): Generator<GetoptEvent> {
  const prog = spec.programName;
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i] as string;
    if (arg === "--") return;
    if (arg.length < 2 || arg[0] !== "-") {
      if (spec.posixlyCorrect) return;
      i++;
      continue;
    }
    i++;
    if (arg.startsWith("--")) {
      const body = arg.slice(2);
      const eq = body.indexOf("=");
      const name = eq < 0 ? body : body.slice(0, eq);
      const m = matchLong(spec.long, name);
      if (m === undefined) {
        yield { kind: "error", message: `${prog}: unrecognized option '--${body}'` };
      } else if ("ambiguous" in m) {
        const names = m.ambiguous.map((o) => ` '--${o.name}'`).join("");
        yield {
          kind: "error",
          message: `${prog}: option '--${body}' is ambiguous; possibilities:${names}`,
        };
      } else {
        const o = m.found;
        if (eq >= 0) {
          if (o.hasArg === 0) {
            yield {
              kind: "error",
              message: `${prog}: option '--${o.name}' doesn't allow an argument`,
            };
          } else {
            yield { kind: "option", val: o.val, arg: body.slice(eq + 1) };
          }
        } else if (o.hasArg === 1) {
          if (i < argv.length) {
            yield { kind: "option", val: o.val, arg: argv[i++] };
          } else {
            yield { kind: "error", message: `${prog}: option '--${o.name}' requires an argument` };
          }
        } else {
          yield { kind: "option", val: o.val, arg: undefined };
        }
      }
      continue;
    }
    const chars = [...arg.slice(1)];
    for (let j = 0; j < chars.length; j++) {
      const c = chars[j] as string;
      const kind = shortArgKind(spec.short, c);
      if (kind === undefined) {
        yield { kind: "error", message: `${prog}: invalid option -- '${c}'` };
        continue;
      }
      if (kind === 0) {
        yield { kind: "option", val: c, arg: undefined };
        continue;
      }
      const rest = chars.slice(j + 1).join("");
      if (rest !== "") {
        yield { kind: "option", val: c, arg: rest };
      } else if (kind === 2) {
        yield { kind: "option", val: c, arg: undefined };
      } else if (i < argv.length) {
        yield { kind: "option", val: c, arg: argv[i++] };
      } else {
        yield { kind: "error", message: `${prog}: option requires an argument -- '${c}'` };
      }
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------
// qemu-ga's option tables
// ---------------------------------------------------------------------------------------

/** qemu-ga 10.2's short options (`s` is Windows' --service; Linux accepts and ignores it). */
export const SHORT_OPTIONS = "hVvdc:m:p:l:f:F::b:a:s:t:Dr";

/** qemu-ga 10.2's `lopt[]` on Linux, in its order (glibc lists ambiguities in this order). */
export const QEMU_LONG_OPTIONS: readonly LongOption[] = [
  { name: "help", hasArg: 0, val: "h" },
  { name: "version", hasArg: 0, val: "V" },
  { name: "config", hasArg: 1, val: "c" },
  { name: "dump-conf", hasArg: 0, val: "D" },
  { name: "logfile", hasArg: 1, val: "l" },
  { name: "pidfile", hasArg: 1, val: "f" },
  { name: "fsfreeze-hook", hasArg: 2, val: "F" },
  { name: "verbose", hasArg: 0, val: "v" },
  { name: "method", hasArg: 1, val: "m" },
  { name: "path", hasArg: 1, val: "p" },
  { name: "daemonize", hasArg: 0, val: "d" },
  { name: "block-rpcs", hasArg: 1, val: "b" },
  { name: "allow-rpcs", hasArg: 1, val: "a" },
  { name: "statedir", hasArg: 1, val: "t" },
  { name: "retry-path", hasArg: 0, val: "r" },
];

/** deno-qga's long-only options, plus 7.2's deprecated `--blacklist`. */
export const EXTENSION_LONG_OPTIONS: readonly LongOption[] = [
  { name: "file-roots", hasArg: 1, val: "file-roots" },
  { name: "file-read-roots", hasArg: 1, val: "file-read-roots" },
  { name: "exec-programs", hasArg: 1, val: "exec-programs" },
  { name: "helper", hasArg: 1, val: "helper" },
  { name: "print-permissions", hasArg: 0, val: "print-permissions" },
  { name: "blacklist", hasArg: 1, val: "blacklist" },
];

/** Every method deno-qga can open. */
export const METHODS: readonly Method[] = [
  "virtio-serial",
  "isa-serial",
  "unix-listen",
  "vsock-listen",
  "stdio",
];

// ---------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Configuration state (qemu-ga's GAConfig)
// ---------------------------------------------------------------------------------------

/** qemu-ga's GAConfig plus deno-qga's extensions, before defaults are applied. */
interface Config {
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

function emptyConfig(): Config {
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
function applyKeyFile(config: Config, kf: KeyFile, warnings: string[], ctx: MessageContext): void {
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

// ---------------------------------------------------------------------------------------
// parseCommandLine
// ---------------------------------------------------------------------------------------

/** What the caller knows about this build and process. */
export interface CliInfo {
  /** QEMU version deno-qga reports (`-V`, `--help`), e.g. `10.2.2`. */
  readonly version: string;
  /** `Deno.version.deno`. */
  readonly denoVersion: string;
  /** Registered command names in registration order (`-b help`, `-a help`). */
  readonly commandNames: readonly string[];
  /** deno-qga's own version (second line of `-V`). */
  readonly denoQgaVersion?: string;
  /** Name used where qemu-ga prints argv[0]; default `deno-qga`. */
  readonly programName?: string;
  /** Helper used without `--helper`; default `helper/qga-helper` next to main.ts. */
  readonly defaultHelper?: string;
  /** Process id in GLib-style messages; default `Deno.pid`. */
  readonly pid?: number;
  /** Clock for message timestamps; default the real clock. */
  readonly now?: () => Date;
}

/** Where parsing ends: run the agent, or print and exit. */
export type CliResult =
  | {
    readonly kind: "run";
    readonly options: AgentOptions;
    /**
     * Warnings in GLib's format (`\n** (process:PID): WARNING **: …: <msg>`), each
     * without its final newline: print each followed by `\n`, to stderr, before running.
     */
    readonly warnings: string[];
  }
  | {
    readonly kind: "exit";
    readonly code: number;
    readonly stdout: string;
    readonly stderr: string;
  };

/** Reads an environment variable; an unreadable one (no --allow-env) counts as unset. */
function optionalEnv(
  env: { get(name: string): string | undefined },
  name: string,
): string | undefined {
  try {
    return env.get(name);
  } catch (e) {
    if (e instanceof Error && e.name === "NotCapable") return undefined;
    throw e;
  }
}

/**
 * Parses qemu-ga's command line and configuration file (qga-reference.md §4.1-4.3).
 *
 * Order, as qemu-ga 10.2: (1) find `-c`; (2) load the config (`-c` path: required;
 * else `$QGA_CONF`, else /etc/qemu/qemu-ga.conf: a missing file is fine); (3) apply the
 * options in order (`-h`, `-V`, `-b help`, `-a help` and the first invalid option end
 * parsing at once); (4) defaults, then the path check; (5) `-D`; (6) method check.
 *
 * Reads the config file with Deno.open (needs read permission on it) and QGA_CONF and
 * POSIXLY_CORRECT through `env`.
 */
export async function parseCommandLine(
  argv: readonly string[],
  env: { get(name: string): string | undefined },
  info: CliInfo,
): Promise<CliResult> {
  const programName = info.programName ?? "deno-qga";
  const ctx: MessageContext = { pid: info.pid ?? Deno.pid, now: info.now ?? (() => new Date()) };
  const helpInfo: HelpInfo = {
    programName,
    version: info.version,
    denoQgaVersion: info.denoQgaVersion,
    denoVersion: info.denoVersion,
    defaultHelper: info.defaultHelper ?? defaultOptions().helper,
  };
  const spec: GetoptSpec = {
    short: SHORT_OPTIONS,
    long: [QEMU_LONG_OPTIONS, EXTENSION_LONG_OPTIONS],
    programName,
    posixlyCorrect: optionalEnv(env, "POSIXLY_CORRECT") !== undefined,
  };
  const warnings: string[] = [];
  const exit = (code: number, stdout: string, stderr = ""): CliResult => ({
    kind: "exit",
    code,
    stdout,
    stderr: warnings.map((w) => `${w}\n`).join("") + stderr,
  });

  // Pass 1: only -c.
  let confPath = env.get("QGA_CONF") ?? DEFAULTS.config;
  let confRequired = false;
  for (const ev of getoptLong(argv, spec)) {
    if (ev.kind === "option" && ev.val === "c" && ev.arg !== undefined) {
      confPath = ev.arg;
      confRequired = true;
    }
  }

  const config = emptyConfig();
  try {
    const kf = await loadKeyFile(confPath);
    applyKeyFile(config, kf, warnings, ctx);
    config.configPath = confPath;
  } catch (e) {
    if (!(e instanceof KeyFileError)) throw e;
    if (confRequired || e.kind !== "not-found") {
      return exit(
        1,
        "",
        glibMessage(
          "CRITICAL",
          `error loading configuration from path: ${confPath}, ${e.message}`,
          ctx,
        ),
      );
    }
  }

  // Pass 2: everything else, in order.
  for (const ev of getoptLong(argv, spec)) {
    if (ev.kind === "error") {
      return exit(
        1,
        `Unknown option, try '${programName} --help' for more information.\n`,
        `${ev.message}\n`,
      );
    }
    const arg = ev.arg ?? "";
    switch (ev.val) {
      case "c":
      case "s":
        break;
      case "m":
        config.method = arg;
        break;
      case "p":
        config.path = arg;
        break;
      case "l":
        config.logfile = arg;
        break;
      case "f":
        config.pidfile = arg;
        break;
      case "F":
        config.fsfreezeHook = ev.arg ?? DEFAULTS.fsfreezeHook;
        break;
      case "t":
        config.statedir = arg;
        break;
      case "v":
        config.verbose = true;
        break;
      case "V":
        return exit(0, versionText(helpInfo));
      case "d":
        config.daemonize = true;
        break;
      case "D":
        config.dumpConf = true;
        break;
      case "r":
        config.retryPath = true;
        break;
      case "h":
        return exit(0, usageText(helpInfo));
      case "blacklist":
      case "b":
      case "a": {
        if (ev.val === "blacklist") {
          warnings.push(glibMessage("WARNING", BLACKLIST_OPTION_WARNING, ctx).slice(0, -1));
        }
        if (arg === "help" || arg === "?") {
          return exit(0, info.commandNames.map((n) => `${n}\n`).join(""));
        }
        (ev.val === "a" ? config.allowRpcs : config.blockRpcs).push(...splitList(arg));
        break;
      }
      case "file-roots":
        config.fileRoots.push(...splitPaths(arg));
        break;
      case "file-read-roots":
        config.fileReadRoots.push(...splitPaths(arg));
        break;
      case "exec-programs":
        config.execPrograms.push(...splitPaths(arg));
        break;
      case "helper":
        config.helper = arg;
        break;
      case "print-permissions":
        config.printPermissions = true;
        break;
      default:
        throw new Error(`Option table and handler disagree about "${ev.val}"`);
    }
  }

  // Defaults, then the path check (before -D, as qemu-ga).
  const method = config.method ?? "virtio-serial";
  const pidfile = config.pidfile ?? DEFAULTS.pidfile;
  const statedir = config.statedir ?? DEFAULTS.statedir;
  let path = config.path;
  if (path === undefined) {
    if (method === "virtio-serial") path = DEFAULTS.virtioPath;
    else if (method === "isa-serial") path = DEFAULTS.serialPath;
    else if (method !== "stdio") {
      return exit(1, "", glibMessage("CRITICAL", "must specify a path for this channel", ctx));
    }
  }

  if (config.dumpConf) {
    return exit(0, dumpConfigText({ ...config, method, path, pidfile, statedir }));
  }

  if (!(METHODS as readonly string[]).includes(method)) {
    // qemu-ga fails here only when it opens the channel, through its own log handler.
    const micros = BigInt(ctx.now().getTime()) * 1000n;
    return exit(
      1,
      "",
      qemuLogLine("critical", `unsupported channel method/type: ${method}`, micros) +
        qemuLogLine("critical", "failed to initialize guest agent channel", micros),
    );
  }

  return {
    kind: "run",
    warnings,
    options: {
      daemonize: config.daemonize,
      method: method as Method,
      path: path ?? "",
      logfile: config.logfile,
      pidfile,
      fsfreezeHook: config.fsfreezeHook,
      statedir,
      verbose: config.verbose,
      retryPath: config.retryPath,
      blockRpcs: effectiveRpcList(config.blockRpcs),
      allowRpcs: effectiveRpcList(config.allowRpcs),
      configPath: config.configPath,
      fileRoots: config.fileRoots,
      fileReadRoots: config.fileReadRoots,
      execPrograms: config.execPrograms,
      helper: config.helper ?? helpInfo.defaultHelper,
      printPermissions: config.printPermissions,
    },
  };
}
