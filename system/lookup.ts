/**
 * Path lookups on ordinary paths (within the agent's own grants), for the checks the
 * agent makes before it opens or starts anything: guest-file-open's file policy
 * (commands/file_policy.ts) and guest-exec's program lookup (commands/exec_policy.ts).
 * Synchronous, as those checks are. Every failure is a SysError (system/mod.ts).
 *
 * @module
 */

import { toSysError } from "./mod.ts";

/** What a stat of a path tells the checks. */
export interface PathInfo {
  readonly isFile: boolean;
  /** st_mode (permission bits included). */
  readonly mode: number;
  readonly dev: number;
  readonly ino: number;
}

/** realpath(3). */
export function realPath(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch (e) {
    throw toSysError(e);
  }
}

/** stat(2), following links. */
export function statPath(path: string): PathInfo {
  try {
    const st = Deno.statSync(path);
    return { isFile: st.isFile, mode: st.mode ?? 0, dev: st.dev, ino: st.ino ?? 0 };
  } catch (e) {
    throw toSysError(e);
  }
}

/** The agent's working directory (relative paths resolve against it). */
export function workingDirectory(): string {
  return Deno.cwd();
}
