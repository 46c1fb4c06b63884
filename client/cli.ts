/**
 * `deno-qga client`: talk to a guest agent from the host, through a unix socket. The
 * command line is read by client/cli_args.ts; this file runs each command with a
 * QgaClient (client/client.ts) and prints the replies.
 *
 * @module
 */

import {
  type CopyProgress,
  type ExecResult,
  MAX_READ_CHUNK,
  MAX_WRITE_CHUNK,
  QgaClient,
} from "./client.ts";
import type { QgaReply } from "./connection.ts";
import { loadParseArgs, parseArgs } from "./parse_args.ts";
import { QgaClientError, QgaReplyError } from "./errors.ts";
import { type JsonValue, parseJson, stringifyJson } from "./json.ts";
import {
  CLIENT_USAGE,
  commandName,
  type GlobalOptions,
  isParseArgsError,
  parseGlobal,
  parseKeyValues,
  parseSeconds,
  parseSize,
  UsageError,
} from "./cli_args.ts";
import { formatSummary, ProgressBar } from "./progress.ts";

/** Where the CLI writes; tests pass their own. */
export interface ClientIo {
  /** Writes bytes to standard output. */
  stdout(bytes: Uint8Array): Promise<void>;
  /** Writes bytes to standard error. */
  stderr(bytes: Uint8Array): Promise<void>;
  /** Whether standard error is a terminal (progress bars are drawn only then). */
  stderrIsTerminal: boolean;
  /** Reads all of standard input. */
  readStdin(): Promise<Uint8Array>;
}

/** Commands that send nothing on success (qga-reference.md §1.8). */
const NO_REPLY_COMMANDS = new Set([
  "guest-shutdown",
  "guest-suspend-disk",
  "guest-suspend-ram",
  "guest-suspend-hybrid",
]);

const encoder = new TextEncoder();

async function writeAllTo(file: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/** The real process streams. */
export function processIo(): ClientIo {
  return {
    stdout: (bytes) => writeAllTo(Deno.stdout, bytes),
    stderr: (bytes) => writeAllTo(Deno.stderr, bytes),
    stderrIsTerminal: Deno.stderr.isTerminal(),
    readStdin: async () => new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer()),
  };
}

/** Writes text to the CLI's streams, in call order even when a caller does not await. */
class Output {
  #io: ClientIo;
  #last: Promise<void> = Promise.resolve();
  constructor(io: ClientIo) {
    this.#io = io;
  }
  get io(): ClientIo {
    return this.#io;
  }
  #queue(write: () => Promise<void>): Promise<void> {
    this.#last = this.#last.then(write);
    return this.#last;
  }
  out(text: string): Promise<void> {
    return this.#queue(() => this.#io.stdout(encoder.encode(text)));
  }
  err(text: string): Promise<void> {
    return this.#queue(() => this.#io.stderr(encoder.encode(text)));
  }
  outBytes(bytes: Uint8Array): Promise<void> {
    return this.#queue(() => this.#io.stdout(bytes));
  }
  errBytes(bytes: Uint8Array): Promise<void> {
    return this.#queue(() => this.#io.stderr(bytes));
  }
}

async function printReply(output: Output, options: GlobalOptions, reply: QgaReply, line: string) {
  if (options.raw) {
    await output.out(line + "\n");
    return "error" in reply ? 1 : 0;
  }
  if ("return" in reply) {
    await output.out(stringifyJson(reply.return, 2) + "\n");
    return 0;
  }
  const error = reply.error;
  if (typeof error === "object" && error !== null && !Array.isArray(error)) {
    await output.err(`error: ${String(error.class)}: ${String(error.desc)}\n`);
  } else {
    await output.err(`error: ${line}\n`);
  }
  return 1;
}

/** A parsed command, ready to run once connected. */
type Plan = (client: QgaClient, output: Output) => Promise<number>;

function planNamed(options: GlobalOptions, words: string[]): Plan {
  const name = commandName(words[0] ?? "");
  const args = parseKeyValues(words.slice(1));
  const hasArgs = Object.keys(args).length > 0;
  if (NO_REPLY_COMMANDS.has(name)) {
    return async (client) => {
      await client.executeNoReply(name, hasArgs ? args : undefined);
      return 0;
    };
  }
  const request = stringifyJson(hasArgs ? { execute: name, arguments: args } : { execute: name });
  return async (client, output) => {
    const { reply, line } = await client.executeText(request);
    return await printReply(output, options, reply, line);
  };
}

function planJson(options: GlobalOptions, text: string): Plan {
  let request: JsonValue;
  try {
    request = parseJson(text);
  } catch (error) {
    throw new UsageError(`The request is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof request === "object" && request !== null && !Array.isArray(request)) {
    const name = request.execute;
    const args = request.arguments;
    const isObject = typeof args === "object" && args !== null && !Array.isArray(args);
    if (
      typeof name === "string" && NO_REPLY_COMMANDS.has(name) && (args === undefined || isObject)
    ) {
      return async (client) => {
        await client.executeNoReply(
          name,
          isObject ? args as { [key: string]: JsonValue } : undefined,
        );
        return 0;
      };
    }
  }
  return async (client, output) => {
    const { reply, line } = await client.executeText(text);
    return await printReply(output, options, reply, line);
  };
}

async function runInfo(client: QgaClient, output: Output): Promise<number> {
  const info = await client.execute("guest-info");
  const record = typeof info === "object" && info !== null && !Array.isArray(info) ? info : {};
  const list = Array.isArray(record.supported_commands) ? record.supported_commands : [];
  const rows = list.flatMap((entry) =>
    typeof entry === "object" && entry !== null && !Array.isArray(entry) &&
      typeof entry.name === "string"
      ? [{
        name: entry.name,
        enabled: entry.enabled === true,
        success: entry["success-response"] !== false,
      }]
      : []
  ).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const width = Math.max("COMMAND".length, ...rows.map((row) => row.name.length));
  const enabled = rows.filter((row) => row.enabled).length;
  let text = `agent version ${String(record.version)}: ${rows.length} commands, ` +
    `${enabled} enabled\n\n${"COMMAND".padEnd(width)}  ENABLED  SUCCESS-RESPONSE\n`;
  for (const row of rows) {
    text += `${row.name.padEnd(width)}  ${(row.enabled ? "yes" : "no").padEnd(7)}  ` +
      `${row.success ? "yes" : "no"}\n`;
  }
  await output.out(text);
  return 0;
}

function planExec(words: string[]): Plan {
  const { values, positionals } = parseArgs({
    args: words,
    options: { input: { type: "string" }, "max-time": { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  const [program, ...programArgs] = positionals;
  if (program === undefined) throw new UsageError("exec needs a program: exec -- PROG [ARG...]");
  const maxTime = values["max-time"] === undefined
    ? undefined
    : parseSeconds(values["max-time"], "--max-time");
  const inputFile = values.input;
  return async (client, output) => {
    let input: Uint8Array | undefined;
    if (inputFile === "-") input = await output.io.readStdin();
    else if (inputFile !== undefined) input = await Deno.readFile(inputFile);
    const result: ExecResult = await client.exec(program, programArgs, {
      ...(input === undefined ? {} : { input }),
      ...(maxTime === undefined ? {} : { timeoutMs: maxTime }),
    });
    await output.outBytes(result.stdout);
    await output.errBytes(result.stderr);
    if (result.stdoutTruncated) await output.err("warning: the agent truncated stdout\n");
    if (result.stderrTruncated) await output.err("warning: the agent truncated stderr\n");
    if (result.exitcode !== null) return result.exitcode;
    if (result.signal !== null) return 128 + result.signal;
    return 1;
  };
}

function planCopy(direction: "copy-in" | "copy-out", words: string[]): Plan {
  const { values, positionals } = parseArgs({
    args: words,
    options: { "chunk-size": { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 2) {
    throw new UsageError(
      direction === "copy-in" ? "Usage: copy-in LOCAL REMOTE" : "Usage: copy-out REMOTE LOCAL",
    );
  }
  const [from = "", to = ""] = positionals;
  const max = direction === "copy-in" ? MAX_WRITE_CHUNK : MAX_READ_CHUNK;
  const chunkSize = values["chunk-size"] === undefined
    ? undefined
    : Math.min(parseSize(values["chunk-size"]), max);
  if (chunkSize === 0) throw new UsageError("--chunk-size must be at least 1 byte");
  return async (client, output) => {
    const bar = output.io.stderrIsTerminal
      ? new ProgressBar((text) => void output.err(text).catch(() => undefined))
      : undefined;
    const copyOptions = {
      ...(chunkSize === undefined ? {} : { chunkSize }),
      ...(bar === undefined
        ? {}
        : { onProgress: (progress: CopyProgress) => bar.update(progress) }),
    };
    try {
      const result = direction === "copy-in"
        ? await client.copyIn(from, to, copyOptions)
        : await client.copyOut(from, to, copyOptions);
      bar?.finish();
      await output.err(formatSummary(result.bytes, result.elapsedMs) + "\n");
    } finally {
      bar?.finish();
    }
    return 0;
  };
}

function planCommand(options: GlobalOptions, words: string[]): Plan {
  const [word = "", ...rest] = words;
  const noArguments = () => {
    if (rest.length > 0) throw new UsageError(`${word} takes no arguments`);
  };
  if (word.trimStart().startsWith("{")) {
    if (rest.length > 0) throw new UsageError("A JSON request takes no further arguments");
    return planJson(options, word);
  }
  switch (word) {
    case "ping":
      noArguments();
      return async (client, output) => {
        const started = performance.now();
        await client.ping();
        await output.out(`agent answered in ${(performance.now() - started).toFixed(1)} ms\n`);
        return 0;
      };
    case "info":
      noArguments();
      return runInfo;
    case "status":
      noArguments();
      return async (client, output) => {
        await output.out((await client.fsfreezeStatus()) + "\n");
        return 0;
      };
    case "freeze":
      return async (client, output) => {
        const count = await client.freeze(rest.length > 0 ? rest : undefined);
        await output.out(`frozen ${count} filesystem${count === 1 ? "" : "s"}\n`);
        return 0;
      };
    case "thaw":
      noArguments();
      return async (client, output) => {
        const count = await client.thaw();
        await output.out(`thawed ${count} filesystem${count === 1 ? "" : "s"}\n`);
        return 0;
      };
    case "exec":
      return planExec(rest);
    case "copy-in":
    case "copy-out":
      return planCopy(word, rest);
    default:
      return planNamed(options, words);
  }
}

function describe(error: unknown): string {
  if (error instanceof QgaReplyError) return `${error.errorClass}: ${error.desc}`;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Errors of the local system (a missing or unreadable local file, a refused permission). */
function isSystemError(error: unknown): boolean {
  return Object.values(Deno.errors).some((type) => error instanceof type);
}

/**
 * Runs `deno-qga client ARGS...` and resolves to the exit status: 0 on success, 1 when the
 * agent, the connection or a local file failed, 2 for a usage mistake, or `exec`'s program
 * status. Needs read/write/net access to the socket, and read/write access to copied files.
 *
 * @example
 * ```ts
 * Deno.exit(await clientMain(["-s", "/run/qga.sock", "ping"]));
 * ```
 */
export async function clientMain(args: string[], io: ClientIo = processIo()): Promise<number> {
  const output = new Output(io);
  await loadParseArgs();
  let options: GlobalOptions;
  let plan: Plan;
  try {
    const parsed = parseGlobal(args);
    if (parsed.options === "help") {
      await output.out(CLIENT_USAGE);
      return 0;
    }
    options = parsed.options;
    plan = planCommand(options, parsed.words);
  } catch (error) {
    if (!(error instanceof UsageError || isParseArgsError(error))) throw error;
    await output.err(`error: ${describe(error)}\nTry "deno-qga client --help".\n`);
    return 2;
  }
  let client: QgaClient | undefined;
  try {
    client = await QgaClient.connect(options.socket, { timeoutMs: options.timeoutMs });
    return await plan(client, output);
  } catch (error) {
    if (error instanceof QgaClientError || isSystemError(error)) {
      await output.err(`error: ${describe(error)}\n`);
      return 1;
    }
    throw error;
  } finally {
    await client?.close();
  }
}
