/**
 * The file-access policy of guest-file-open (our extension to qemu-ga).
 *
 * `AgentOptions.fileRoots` lists directories guest-file-open may read and write,
 * `fileReadRoots` directories it may only read. With both empty the agent
 * behaves as qemu-ga: any path, any mode. Otherwise the path is resolved the
 * way the kernel will resolve it (relative to the working directory, `..` and
 * symbolic links followed: the realpath of the file, or of its deepest existing
 * ancestor for a file that is about to be created) and refused, before anything
 * is opened or created and before a handle is allocated, when it lies outside
 * the roots or asks for a write mode on a read-only root.
 *
 * Deno's own permission check does not follow symbolic links (a link inside a
 * granted directory that points outside is opened), so this check is what
 * enforces the roots; the `--allow-read` / `--allow-write` grants derived by
 * {@link fileGrants} are the second line.
 *
 * @module
 */

import type { AgentOptions } from "../config/options.ts";
import { QgaError } from "../protocol/errors.ts";
import { toSysError } from "../system/mod.ts";
import { realPath, statPath, workingDirectory } from "../system/lookup.ts";

/** The Deno path grants the agent needs for guest-file-open. */
export interface FileGrants {
  /** Paths for `--allow-read`; `["/"]` when no policy is configured. */
  read: string[];
  /** Paths for `--allow-write`; `["/"]` when no policy is configured. */
  write: string[];
}

/** The options the policy reads. */
export type FilePolicyOptions = Pick<AgentOptions, "fileRoots" | "fileReadRoots">;

/** True when a policy is configured (at least one root). */
export function policyActive(options: FilePolicyOptions): boolean {
  return options.fileRoots.length > 0 || options.fileReadRoots.length > 0;
}

/** realpath(3) of a root, or the root as given when it cannot be resolved. */
function canonicalRoot(root: string): string {
  try {
    return realPath(root);
  } catch {
    return root;
  }
}

/**
 * The `--allow-read` / `--allow-write` grants guest-file-open needs, from the
 * same lists the policy enforces. Roots are canonicalised (the agent opens the
 * canonical path, and Deno matches grants on the path it is given).
 *
 * @example
 * ```ts
 * fileGrants({ fileRoots: ["/srv/share"], fileReadRoots: ["/etc"] });
 * // { read: ["/srv/share", "/etc"], write: ["/srv/share"] }
 * fileGrants({ fileRoots: [], fileReadRoots: [] }); // { read: ["/"], write: ["/"] }
 * ```
 */
export function fileGrants(options: FilePolicyOptions): FileGrants {
  if (!policyActive(options)) return { read: ["/"], write: ["/"] };
  const write = [...new Set(options.fileRoots.map(canonicalRoot))];
  const read = [...new Set([...write, ...options.fileReadRoots.map(canonicalRoot)])];
  return { read, write };
}

/** True when `path` (canonical) is `root` or below it. */
function inside(path: string, root: string): boolean {
  return root === "/" || path === root || path.startsWith(`${root}/`);
}

/**
 * Where the kernel would land for `path`: the realpath of the path when it
 * exists, else the realpath of its deepest existing ancestor followed by the
 * missing components. Null when that cannot be told (a `.` or `..` after a
 * missing component, or an error other than ENOENT such as a sandbox refusal).
 */
export function resolveForPolicy(path: string, cwd: string = workingDirectory()): string | null {
  const abs = path.startsWith("/") ? path : `${cwd}/${path}`;
  let head = abs;
  const missing: string[] = [];
  for (;;) {
    try {
      const real = realPath(head);
      if (missing.length === 0) return real;
      return `${real === "/" ? "" : real}/${missing.join("/")}`;
    } catch (e) {
      if (toSysError(e).code !== "ENOENT") return null;
    }
    const slash = head.lastIndexOf("/");
    if (slash < 0) return null;
    const base = head.slice(slash + 1);
    head = head.slice(0, slash) || "/";
    if (base === "." || base === "..") return null;
    if (base !== "") missing.unshift(base);
    if (head === "/" && slash === 0 && base === "") return null;
  }
}

/** The description of the allowed roots used in the refusal message. */
function describeRoots(options: FilePolicyOptions): string {
  const parts = [
    ...options.fileRoots.map((r) => `${r} (read-write)`),
    ...options.fileReadRoots.map((r) => `${r} (read-only)`),
  ];
  return parts.join(", ");
}

/** The refusal every policy failure reports. */
export function policyError(path: string, options: FilePolicyOptions): QgaError {
  return new QgaError(
    `access to '${path}' is denied by the file access policy (allowed: ${describeRoots(options)})`,
  );
}

/**
 * Checks `path` against the policy. Returns the canonical path to open, or
 * null when no policy is configured (open `path` as given, as qemu-ga does).
 *
 * @throws {QgaError} `access to '<path>' is denied by the file access policy (allowed: ...)`
 */
export function checkFileAccess(
  path: string,
  write: boolean,
  options: FilePolicyOptions,
): string | null {
  if (!policyActive(options)) return null;
  const resolved = resolveForPolicy(path);
  if (resolved === null) throw policyError(path, options);
  const rw = options.fileRoots.map(canonicalRoot);
  const ro = options.fileReadRoots.map(canonicalRoot);
  const ok = rw.some((r) => inside(resolved, r)) || (!write && ro.some((r) => inside(resolved, r)));
  if (!ok) throw policyError(path, options);
  return resolved;
}

/**
 * After opening `resolved`, confirms that no path component was swapped for a
 * symbolic link between the check and the open: the path must still be
 * canonical and name the opened file (same device and inode).
 */
export function stillSameFile(resolved: string, opened: { dev: number; ino: number }): boolean {
  try {
    if (realPath(resolved) !== resolved) return false;
    const st = statPath(resolved);
    return st.dev === opened.dev && st.ino === opened.ino;
  } catch {
    return false;
  }
}
