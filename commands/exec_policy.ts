/**
 * Which programs guest-exec may start (`--exec-programs`, `exec-programs=` in the config),
 * checked by the agent itself before anything is spawned. Deno's `--allow-run` is a
 * second line only: it also lists the helper launcher, and under the card's line it
 * grants every program.
 *
 * The requested path is found the way qemu-ga's g_spawn (SEARCH_PATH_FROM_ENVP) finds
 * it: a name with a `/` is used as it is; a bare name is looked up in the `PATH` of the
 * `env` the host passed, else in the agent's `PATH` (GLib's default `/bin:/usr/bin:.`
 * when there is none). Each listed program is found the same way (a bare name through the
 * agent's `PATH`). The program found and the listed ones are then compared canonicalised
 * (realpath: symbolic links resolved the same way on both sides), and the listed path
 * whose canonical form matches is what gets spawned, so only a listed spelling ever
 * reaches Deno (which matches grants on the path it is given). The check runs on every
 * call: a listed program installed after the agent started is found.
 *
 * @module
 */

import { resolve } from "../config/path.ts";
import { QgaError } from "../protocol/errors.ts";
import { strerror } from "../system/mod.ts";
import { realPath, statPath } from "../system/lookup.ts";

/** Where programs live; read grants for the lookup when file roots narrow the agent's reads. */
export const SYSTEM_BIN_DIRS: readonly string[] = [
  "/usr/local/sbin",
  "/usr/local/bin",
  "/usr/sbin",
  "/usr/bin",
  "/sbin",
  "/bin",
];

/** GLib's search path when PATH is unset (gspawn.c). */
export const GLIB_DEFAULT_PATH = "/bin:/usr/bin:.";

function exists(path: string): boolean {
  try {
    statPath(path);
    return true;
  } catch {
    return false;
  }
}

/** True when `path` is a regular file with an execute bit (root may run it). */
function isExecutableFile(path: string): boolean {
  try {
    const st = statPath(path);
    return st.isFile && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * Finds a program as g_spawn does: a name with a `/` as it is (made absolute against the
 * working directory; null when nothing is there), a bare name in `searchPath` (empty
 * entries mean the working directory; null when no executable file of that name is
 * found).
 */
export function findProgram(name: string, searchPath: string | undefined): string | null {
  if (name === "") return null;
  if (name.includes("/")) return exists(name) ? resolve(name) : null;
  for (const dir of (searchPath ?? GLIB_DEFAULT_PATH).split(":")) {
    const candidate = resolve(dir === "" ? "." : dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return null;
}

function canonical(path: string): string | null {
  try {
    return realPath(path);
  } catch {
    return null;
  }
}

/** The PATH from a guest-exec `env` list (`K=V` strings), if it has one. */
export function pathFromEnvList(env: readonly string[] | undefined): string | undefined {
  if (env === undefined) return undefined;
  for (const entry of env) {
    if (entry.startsWith("PATH=")) return entry.slice(5);
  }
  return undefined;
}

/** The refusal text: names the option that would allow the program. */
export function notListedMessage(path: string): string {
  return `guest-exec: program '${path}' is not allowed: it is not listed in the agent's ` +
    `--exec-programs (exec-programs= in the configuration)`;
}

/**
 * Decides what guest-exec spawns for `path`. With no list every program may run and
 * `path` is spawned as given. With a list, returns the listed program to spawn, or
 * throws: GLib's spawn error when no such program exists, the refusal otherwise.
 */
export function programToSpawn(
  path: string,
  o: {
    listed: readonly string[];
    /** The agent's own PATH. */
    agentPath: string | undefined;
    /** The `env` the host passed to guest-exec, if any. */
    env?: readonly string[];
  },
): string {
  if (o.listed.length === 0) return path;
  const found = findProgram(path, pathFromEnvList(o.env) ?? o.agentPath);
  if (found === null) {
    throw new QgaError(
      `Failed to execute child process \u201C${path}\u201D (${strerror("ENOENT")})`,
    );
  }
  const want = canonical(found);
  if (want !== null) {
    let match: string | undefined;
    for (const entry of o.listed) {
      const listed = findProgram(entry, o.agentPath);
      if (listed === null || canonical(listed) !== want) continue;
      // Prefer the listed spelling that is the path found itself.
      if (listed === found) return listed;
      match ??= listed;
    }
    if (match !== undefined) return match;
  }
  throw new QgaError(notListedMessage(path));
}
