/**
 * Command line and configuration file of deno-qga, as qemu-ga 10.2's `config_parse`
 * (qga-reference.md §4.1-4.3): qemu-ga's option tables for `getopt_long`
 * (cli/getopt.ts), two passes (`-c` first, then the config file (cli/config.ts), then
 * every other option), qemu-ga's precedence (scalars: command line over config; lists:
 * config items, then command line items), `-D` output byte for byte, and qemu-ga's
 * error texts and exit codes. The result is the agent's options (config/options.ts).
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
import { KeyFileError, loadKeyFile } from "./keyfile.ts";
import { type HelpInfo, usageText, versionText } from "./help.ts";
import { getoptLong, type GetoptSpec, type LongOption } from "./getopt.ts";
import {
  applyKeyFile,
  BLACKLIST_OPTION_WARNING,
  dumpConfigText,
  effectiveRpcList,
  emptyConfig,
  glibMessage,
  type MessageContext,
  splitList,
  splitPaths,
} from "./config.ts";
import { qemuLogLine } from "../agent/log.ts";

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
