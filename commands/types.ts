/**
 * What a command is: one `defineCommand({...})` per command, listed by name in the
 * COMMANDS table of commands/mod.ts. That one declaration drives argument validation,
 * the reply's member order, guest-info, the enabled/disabled registry, the
 * least-privilege command line, docs/commands.md and the handler's own types: its
 * argument and return types are inferred from the `args` and `returns` descriptors
 * (protocol/types.ts), so there is nothing else to keep in step.
 *
 * @module
 */

import type { AgentOptions } from "../config/options.ts";
import type { ProgramResult, SystemAccess } from "../system/mod.ts";
import type { AgentEnvironment } from "../system/environment.ts";
import type { Infer, NO_ARGS, Returned, StructDesc, TypeDesc } from "../protocol/types.ts";

/**
 * What a command needs from the sandbox. The agent checks these at start-up: a
 * command whose needs are not granted is reported `enabled: false` in guest-info
 * and answers as a disabled command (the reason goes to the log).
 *
 * `read` and `write` are absolute paths. `run` names the programs the agent itself
 * spawns: only guest-exec has any (its `--exec-programs` list as given, or `*` for any
 * program, which only an unrestricted `--allow-run` grants); every other program runs
 * in the privileged helper (`helper: ["run"]`). `sys` names Deno `--allow-sys` kinds.
 * `helper` names privileged-helper operations ("read", "write", "run", "ssh", "net").
 *
 * `env` and `net` are printed in the least-privilege line but never disable a command:
 * environment variables are read once at start-up by other means when not granted
 * (system/environment.ts), and `net` (`unix:<path>`) only serves guest-exec's `merged`
 * capture, which has a fallback.
 */
export interface Needs {
  read?: string[];
  write?: string[];
  run?: string[];
  sys?: string[];
  env?: string[];
  net?: string[];
  helper?: string[];
}

/** Logger handed to handlers; the audit trail of commands is written by the agent (agent/agent.ts). */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** Result of running a helper program as qemu-ga's ga_run_command does (§4.6). */
export type RunResult = ProgramResult;

/** One entry of the registry, as guest-info reports it. */
export interface RegistryEntry {
  name: string;
  enabled: boolean;
  successResponse: boolean;
}

/**
 * Everything a handler may touch. All mutable agent state lives here; command
 * modules keep theirs in `ctx.store(key, create)` and hold no globals.
 */
export interface Context {
  /** Linux access (/proc and /sys through the privileged helper). */
  readonly sys: SystemAccess;
  readonly options: AgentOptions;
  /** The environment variables the agent reads (system/environment.ts), read at start-up. */
  readonly env: AgentEnvironment;
  readonly log: Logger;
  /** The agent version reported by guest-info. */
  readonly version: string;
  /** Per-agent state of a command group, created on first use. */
  store<T>(key: string, create: () => T): T;
  /** Registered commands in registration (schema) order, with their enabled flags. */
  registry(): RegistryEntry[];
  /** Prefix the next reply with the 0xFF sentinel (guest-sync-delimited). */
  delimitNextReply(): void;
  /** True while filesystems are frozen by the agent. */
  readonly frozen: boolean;
  /**
   * Enters or leaves the frozen state (§1.10): marker file, logging suspended
   * while frozen, command filters re-applied.
   */
  setFrozen(frozen: boolean): Promise<void>;
  /** Allocates the next guest-file handle and commits the counter to the state dir (§3.3). */
  allocateHandle(): Promise<bigint>;
}

/**
 * A command: `A` is its argument struct, `R` its return type (undefined: it returns `{}`),
 * `O` what its handler actually returns (inferred, and checked to be a `Returned<R>`).
 */
export interface CommandDef<
  A extends StructDesc<unknown, unknown> = StructDesc,
  R extends TypeDesc | undefined = TypeDesc | undefined,
  O = Returned<R>,
> {
  /** Wire name, e.g. "guest-file-open". */
  readonly name: string;
  /** First qemu-ga version with the command. */
  readonly since: string;
  /** One line for docs/commands.md. */
  readonly doc: string;
  /** Differences from qemu-ga, for docs/commands.md (omit when none). */
  readonly differences?: string;
  /** Argument struct; omitted for commands without arguments (every key is then unexpected). */
  readonly args?: A;
  /** Return type; omitted for commands that return `{}`. */
  readonly returns?: R;
  /** False for the four commands that send no reply on success (§1.8). Default true. */
  readonly successResponse?: boolean;
  /** True for the six commands allowed while frozen (§1.10). Default false. */
  readonly allowedWhileFrozen?: boolean;
  /** Argument members that must never reach a log (passwords, file data, keys). */
  readonly sensitive?: readonly string[];
  /** What the command needs from the sandbox, possibly depending on options. */
  readonly needs: Needs | ((options: AgentOptions) => Needs);
  /**
   * The handler: gets the validated arguments (`Infer<A>`), returns the result (a
   * `Returned<R>`), throws QgaError for qemu-ga's error replies.
   */
  handler(args: Infer<A>, ctx: Context): Promise<O> | O;
}

/**
 * A command of the table, its own argument and return types forgotten, so that commands
 * of every type fit in one array. `handler` is declared as a method, and TypeScript checks
 * method parameters bivariantly, which is what lets a `CommandDef<A, R>` be used as a
 * `Command` without a cast. That is the one place the types are loosened, and it is
 * sound as used: the dispatcher passes a handler exactly what `validateArguments` made
 * from the same command's `args` descriptor, which is `Infer<A>`.
 */
export type Command = CommandDef<StructDesc, TypeDesc | undefined, unknown>;

/**
 * Declares a command. The identity at run time; for TypeScript it infers `A` and `R` from
 * `args` and `returns`, types the handler's arguments from them and checks its result.
 */
export function defineCommand<
  const A extends StructDesc<unknown, unknown> = typeof NO_ARGS,
  const R extends TypeDesc | undefined = undefined,
  O extends Returned<R> = Returned<R>,
>(def: CommandDef<A, R, O>): CommandDef<A, R, O> {
  return def;
}
