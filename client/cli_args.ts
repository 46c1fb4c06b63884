/**
 * The command line of `deno-qga client`: its help text, the global options before
 * COMMAND, and the words after it (`KEY=VALUE` arguments, sizes, command names).
 * client/cli.ts runs what they ask for.
 *
 * @module
 */

import { parseArgs } from "./parse_args.ts";
import { type JsonValue, parseJson } from "./json.ts";

/** Help text of `deno-qga client`. */
export const CLIENT_USAGE =
  `Usage: deno-qga client -s SOCKET [--timeout S] [--raw] COMMAND [ARGS...]

Talks to a QEMU guest agent (deno-qga or qemu-ga) through a unix socket: a QEMU
chardev socket on the host, or an agent started with -m unix-listen. Before the
first command the client resynchronises (0xFF, then guest-sync-delimited).

Options:
  -s, --socket PATH   the agent's unix socket (required)
  -t, --timeout S     seconds to wait for each reply (default 10)
      --raw           print the reply line exactly as the agent sent it
  -h, --help          show this help

Commands:
  NAME [KEY=VALUE...]       run a command; "guest-" is added when NAME lacks it.
                            VALUE is parsed as JSON when it parses, else taken
                            as a string; a dotted KEY (a.b=1) builds nested
                            objects. Prints the "return" value as indented JSON.
  '{"execute": ...}'        send this JSON request as it is
  ping                      guest-ping; exit 0 when the agent answers
  info                      table of the agent's commands and whether enabled
  status                    guest-fsfreeze-status: "thawed" or "frozen"
  freeze [MOUNTPOINT...]    freeze all filesystems, or only these mount points
  thaw                      thaw frozen filesystems
  exec [--input FILE] [--max-time S] -- PROG [ARG...]
                            run PROG in the guest, print its stdout and stderr
                            and exit with its exit code (128+N for signal N).
                            --input FILE feeds FILE ("-": this stdin) to PROG.
  copy-in [--chunk-size N] LOCAL REMOTE
                            copy a local file into the guest
  copy-out [--chunk-size N] REMOTE LOCAL
                            copy a guest file to a local file
                            N is bytes, or with a K/M suffix (KiB/MiB); default
                            1M, at most 48M. A progress bar is drawn on stderr
                            when it is a terminal; a summary line always is.

Replies that are errors print "error: CLASS: DESC" and exit 1. guest-shutdown and
guest-suspend-* succeed when no error reply arrives within a second.

Examples:
  deno-qga client -s /run/qga.sock get-time
  deno-qga client -s /run/qga.sock guest-file-open path=/etc/hostname mode=r
  deno-qga client -s /run/qga.sock '{"execute":"guest-sync","arguments":{"id":7}}'
  deno-qga client -s /run/qga.sock exec -- /bin/sh -c 'uname -a'
  deno-qga client -s /run/qga.sock copy-out /var/log/syslog ./syslog
`;

/** A command-line mistake: printed with a hint to --help, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export interface GlobalOptions {
  socket: string;
  timeoutMs: number;
  raw: boolean;
}

const GLOBAL_OPTIONS = {
  socket: { type: "string", short: "s" },
  timeout: { type: "string", short: "t" },
  raw: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

/** Options taking a value, so their value is not mistaken for the command. */
const VALUE_OPTIONS = new Set(["-s", "--socket", "-t", "--timeout"]);

function splitGlobal(args: string[]): { global: string[]; command: string[] } {
  let at = 0;
  while (at < args.length) {
    const arg = args[at] ?? "";
    if (arg === "--") return { global: args.slice(0, at), command: args.slice(at + 1) };
    if (!arg.startsWith("-") || arg === "-") break;
    at += VALUE_OPTIONS.has(arg) ? 2 : 1;
  }
  return { global: args.slice(0, at), command: args.slice(at) };
}

/** A positive number of seconds (`--timeout`, `--max-time`), in milliseconds. */
export function parseSeconds(text: string, option: string): number {
  const seconds = Number(text);
  if (text.trim() === "" || !Number.isFinite(seconds) || seconds <= 0) {
    throw new UsageError(`${option} must be a positive number of seconds: received "${text}"`);
  }
  return seconds * 1000;
}

/**
 * Parses a byte count: digits with an optional K or M suffix (powers of 1024).
 *
 * @example
 * ```ts
 * parseSize("4M"); // 4194304
 * ```
 */
export function parseSize(text: string): number {
  const match = /^([0-9]+)([KkMm]?)(?:i?B)?$/.exec(text.trim());
  if (match === null) throw new UsageError(`Invalid size "${text}": use bytes, or a K/M suffix`);
  const unit = (match[2] ?? "").toUpperCase();
  const factor = unit === "M" ? 1024 * 1024 : unit === "K" ? 1024 : 1;
  return Number(match[1]) * factor;
}

/**
 * Builds a command's arguments from `KEY=VALUE` words. A value that parses as JSON is used
 * as that JSON (big integers stay exact), anything else is a string; dotted keys nest.
 *
 * @example
 * ```ts
 * parseKeyValues(["path=/etc/hostname", "count=10", "a.b=true"]);
 * // { path: "/etc/hostname", count: 10, a: { b: true } }
 * ```
 */
export function parseKeyValues(words: string[]): { [key: string]: JsonValue } {
  const result: { [key: string]: JsonValue } = {};
  for (const word of words) {
    const equals = word.indexOf("=");
    if (equals <= 0) throw new UsageError(`Expected KEY=VALUE: received "${word}"`);
    const keys = word.slice(0, equals).split(".");
    const text = word.slice(equals + 1);
    let value: JsonValue;
    try {
      value = parseJson(text);
    } catch {
      value = text;
    }
    let target = result;
    for (const [index, key] of keys.entries()) {
      if (key === "") throw new UsageError(`Empty key in "${word}"`);
      if (index === keys.length - 1) {
        if (key in target) throw new UsageError(`Key "${keys.join(".")}" given twice`);
        target[key] = value;
        break;
      }
      const next = target[key];
      if (next === undefined) {
        const child: { [key: string]: JsonValue } = {};
        target[key] = child;
        target = child;
      } else if (typeof next === "object" && next !== null && !Array.isArray(next)) {
        target = next as { [key: string]: JsonValue };
      } else {
        throw new UsageError(`Key "${keys.slice(0, index + 1).join(".")}" is not an object`);
      }
    }
  }
  return result;
}

/** Maps a command word to the agent command name (`get-time` → `guest-get-time`). */
export function commandName(word: string): string {
  return word.startsWith("guest-") ? word : `guest-${word}`;
}

/** Splits and parses the options before COMMAND; `"help"` for -h, --help or `help`. */
export function parseGlobal(args: string[]): { options: GlobalOptions | "help"; words: string[] } {
  const { global, command } = splitGlobal(args);
  const { values } = parseArgs({ args: global, options: GLOBAL_OPTIONS, strict: true });
  if (values.help === true || command[0] === "help") return { options: "help", words: [] };
  if (values.socket === undefined) throw new UsageError("Missing -s SOCKET");
  if (command.length === 0) throw new UsageError("Missing COMMAND");
  return {
    options: {
      socket: values.socket,
      timeoutMs: values.timeout === undefined ? 10_000 : parseSeconds(values.timeout, "--timeout"),
      raw: values.raw === true,
    },
    words: command,
  };
}

/** True for node:util parseArgs' own errors (an unknown or malformed option). */
export function isParseArgsError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_");
}
