/**
 * System access: the one interface every command uses to look at (and, for a few
 * allowlisted /sys files, change) the guest.
 *
 * Deno refuses every path under /dev, /proc and /sys to anything short of
 * `--allow-all`, so the agent never touches them itself. The implementation chosen
 * at start-up routes such paths to the privileged helper (system/helper_client.ts)
 * and ordinary paths to Deno directly; unit tests use a fixture tree
 * (system/fixture.ts) captured from a real guest.
 *
 * Errors: every method throws {@link SysError} (never a raw Deno error), whose
 * `strerror` is the C library's text ("No such file or directory", helper/errno.ts), so
 * commands can build qemu-ga's messages (`open("/proc/diskstats"): No such file or
 * directory`); a refusal by the sandbox is a {@link SandboxRefusal}.
 *
 * @module
 */

import type { ProgramRequest } from "../helper/programs.ts";
import type { AuthKeysReply, AuthKeysRequest } from "../helper/authorized_keys.ts";
import type { NetSnapshot } from "../helper/net.ts";
import type { FsSnapshot, SnapshotRead } from "../helper/fs_snapshot.ts";
import type { WireError } from "../helper/protocol.ts";

import { errnoName, knownErrno, osErrorText, strerror } from "../helper/errno.ts";

export type {
  AuthKeysReply,
  AuthKeysRequest,
  FsSnapshot,
  NetSnapshot,
  ProgramRequest,
  SnapshotRead,
};
export { errnoNumber, strerror } from "../helper/errno.ts";

/** How a program the helper ran ended (qemu-ga's ga_run_command, §4.6). */
export interface ProgramResult {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  signal: string | null;
  /** stdout and stderr, merged in arrival order. */
  output: Uint8Array;
}

/** One directory entry, in the kernel's readdir order (never sorted). */
export interface SysDirEntry {
  name: string;
  isFile: boolean;
  isDirectory: boolean;
  isSymlink: boolean;
}

/** statvfs(3) figures, as numbers of blocks of `frsize` bytes. */
export interface SysStatfs {
  /** Fragment size (f_frsize). */
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
}

/** What commands may ask of the system. */
export interface SystemAccess {
  /** Reads a whole file (a /proc or /sys path goes through the helper). */
  readFile(path: string): Promise<Uint8Array>;
  /** Reads a whole file as UTF-8 text. */
  readTextFile(path: string): Promise<string>;
  /** Lists a directory in readdir order. */
  readDir(path: string): Promise<SysDirEntry[]>;
  /** readlink(2). */
  readLink(path: string): Promise<string>;
  /** realpath(3): the canonical absolute path. */
  realPath(path: string): Promise<string>;
  /** True when the path exists (lstat succeeds). */
  exists(path: string): Promise<boolean>;
  /** Writes a short value to an allowlisted /sys file (cpu online, memory state, power state). */
  writeFile(path: string, data: string): Promise<void>;
  /** statvfs(3) of a mount point. */
  statfs(path: string): Promise<SysStatfs>;
  /**
   * Runs one of the helper's fixed programs (helper/programs.ts). Throws
   * SysError with the spawn errno when the program cannot be started, and EPERM
   * ("helper refused ...") when the request is not one of the templates.
   */
  runProgram(req: ProgramRequest): Promise<ProgramResult>;
  /** One ~/.ssh/authorized_keys operation (helper/authorized_keys.ts). */
  authorizedKeys(req: AuthKeysRequest): Promise<AuthKeysReply>;
  /** The links, addresses and counters behind guest-network-get-interfaces (helper/net.ts). */
  netSnapshot(): Promise<NetSnapshot>;
  /**
   * Mountinfo, statvfs of its block-device mount points and the answers to `reads`, in one
   * helper round trip (helper/fs_snapshot.ts); system/snapshot.ts serves a command from it.
   */
  fsSnapshot(reads: SnapshotRead[]): Promise<FsSnapshot>;
}

/** An operating-system error with the C library's errno name and text. */
export class SysError extends Error {
  /** errno name, e.g. "ENOENT"; "EPERM" for a sandbox refusal. */
  readonly code: string;
  /** strerror(3) text, e.g. "No such file or directory". */
  readonly strerror: string;

  constructor(code: string, strerror: string, message?: string) {
    super(message ?? strerror);
    this.name = "SysError";
    this.code = code;
    this.strerror = strerror;
  }
}

/**
 * The sandbox said no, as opposed to the operation failing: Deno refused a permission
 * (`NotCapable`), the helper refused a request (`helper refused …`: its allowlist, a
 * program template, Init), or there is no helper to ask. Commands re-throw it rather
 * than turn it into one of qemu-ga's errno texts, so the host sees the refusal itself.
 */
export class SandboxRefusal extends SysError {
  constructor(code: string, message: string) {
    super(code, strerror(code), message);
    this.name = "SandboxRefusal";
  }
}

/**
 * Converts any error thrown by Deno (or node:fs) into a {@link SysError}: a
 * {@link SandboxRefusal} for Deno's `NotCapable`, else the errno (helper/errno.ts) with its
 * strerror text (for an errno the table lacks, the text in Deno's message, as in
 * `No such file or directory (os error 2): readfile '/x'`).
 */
export function toSysError(e: unknown): SysError {
  if (e instanceof SysError) return e;
  const err = e as { name?: string; message?: string };
  const message = String(err?.message ?? e);
  if (err?.name === "NotCapable") return new SandboxRefusal("EPERM", `sandbox refused: ${message}`);
  const code = errnoName(e);
  const text = knownErrno(code) ? strerror(code) : osErrorText(message) ?? message;
  return new SysError(code, text, message);
}

/** An error as the helper sends it (helper/protocol.ts WireError) back as a SysError. */
export function fromWireError(w: Partial<WireError>): SysError {
  const code = typeof w.code === "string" ? w.code : "EIO";
  const message = typeof w.message === "string" ? w.message : "helper error";
  return w.refused === true
    ? new SandboxRefusal(code, message)
    : new SysError(code, strerror(code), message);
}

/** A SysError (any error, through {@link toSysError}) in the helper's wire form. */
export function toWireError(e: unknown): WireError {
  const err = toSysError(e);
  return err instanceof SandboxRefusal
    ? { code: err.code, message: err.message, refused: true }
    : { code: err.code, message: err.message };
}
