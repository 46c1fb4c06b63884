/**
 * What a command is: one exported object per command, collected in the COMMANDS
 * table of commands/mod.ts. The table drives argument validation, guest-info, the
 * enabled/disabled registry, the least-privilege command line and docs/commands.md.
 *
 * @module
 */

import type { AgentOptions } from "../config/options.ts";
import type { ProgramResult, SystemAccess } from "../system/mod.ts";
import type { AgentEnvironment } from "../system/environment.ts";
import type { StructDesc, TypeDesc } from "../protocol/types.ts";

/**
 * What a command needs from the sandbox. The agent checks these at start-up: a
 * command whose needs are not granted is reported `enabled: false` in guest-info
 * and answers as a disabled command (the reason goes to the log).
 *
 * Paths are absolute. `run` names executables the agent itself spawns (absolute
 * paths, as Deno matches spawns on the resolved path): only guest-exec has any;
 * every other program runs in the privileged helper (`helper: ["run"]`). `sys`
 * names Deno `--allow-sys` kinds. `helper` names privileged-helper operations
 * ("read", "write", "run", "ssh", "net").
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

/** Logger handed to handlers; the audit trail of commands is written by the dispatcher. */
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

/** A command of the table. */
export interface CommandDef<A = Record<string, unknown>, R = unknown> {
  /** Wire name, e.g. "guest-file-open". */
  readonly name: string;
  /** First qemu-ga version with the command. */
  readonly since: string;
  /** One line for docs/commands.md. */
  readonly doc: string;
  /** Differences from qemu-ga, for docs/commands.md (omit when none). */
  readonly differences?: string;
  /** Argument struct; omitted for commands without arguments (every key is then unexpected). */
  readonly args?: StructDesc;
  /** Return type; omitted for commands that return `{}`. */
  readonly returns?: TypeDesc;
  /** False for the four commands that send no reply on success (§1.8). Default true. */
  readonly successResponse?: boolean;
  /** True for the six commands allowed while frozen (§1.10). Default false. */
  readonly allowedWhileFrozen?: boolean;
  /** Argument members that must never reach a log (passwords, file data, keys). */
  readonly sensitive?: readonly string[];
  /** What the command needs from the sandbox, possibly depending on options. */
  readonly needs: Needs | ((options: AgentOptions) => Needs);
  /** The handler: throws QgaError for qemu-ga's error replies. */
  handler(args: A, ctx: Context): Promise<R> | R;
}

/** Declares a command with typed arguments and result (identity; for inference). */
export function defineCommand<A = Record<string, never>, R = unknown>(
  def: CommandDef<A, R>,
): CommandDef<A, R> {
  return def;
}
