/**
 * The SystemAccess the agent uses on a real guest: paths under /proc, /sys and
 * /dev (which Deno refuses outside --allow-all) go to the privileged helper;
 * every other path is served by Deno directly, within the agent's own grants.
 * statvfs always goes to the helper (it would otherwise need read access to
 * every mount point); the helper answers it only for current mount points.
 *
 * @module
 */

import { normalize } from "../config/path.ts";
import { toWireStatfs } from "../helper/protocol.ts";
import type { HelperClient } from "./helper_client.ts";
import {
  type AuthKeysReply,
  type AuthKeysRequest,
  type FsSnapshot,
  type NetSnapshot,
  type ProgramRequest,
  type ProgramResult,
  SandboxRefusal,
  type SnapshotRead,
  type SysDirEntry,
  type SysStatfs,
  type SystemAccess,
  toSysError,
} from "./mod.ts";

/** True for paths Deno only opens under --allow-all (checked on the normalised path). */
export function isSpecialPath(path: string): boolean {
  const p = normalize(path);
  return /^\/(proc|sys|dev)(\/|$)/.test(p);
}

/**
 * Collapses repeated slashes and drops a trailing one ("/sys/devices/system/memory/"
 * becomes "/sys/devices/system/memory"): the same file for the kernel, and the
 * helper only accepts paths without empty segments. `.` and `..` are left alone.
 */
export function tidyPath(path: string): string {
  const p = path.replace(/\/{2,}/g, "/");
  return p.length > 1 ? p.replace(/\/$/, "") : p;
}

async function wrap<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toSysError(e);
  }
}

function noHelper(op: string, path: string): SandboxRefusal {
  return new SandboxRefusal(
    "EPERM",
    `${op}${path ? ` ${JSON.stringify(path)}` : ""}: the privileged helper is not running`,
  );
}

/** Routes each call to the helper or to Deno. */
class RealSystem implements SystemAccess {
  readonly #helper: HelperClient | undefined;

  constructor(helper: HelperClient | undefined) {
    this.#helper = helper;
  }

  #via(op: string, path: string): HelperClient | undefined {
    if (!isSpecialPath(path)) return undefined;
    if (!this.#helper) throw noHelper(op, path);
    return this.#helper;
  }

  readFile(path: string): Promise<Uint8Array> {
    path = tidyPath(path);
    return wrap(() => this.#via("read", path)?.readFile(path) ?? Deno.readFile(path));
  }

  async readTextFile(path: string): Promise<string> {
    path = tidyPath(path);
    return new TextDecoder().decode(await this.readFile(path));
  }

  readDir(path: string): Promise<SysDirEntry[]> {
    path = tidyPath(path);
    return wrap(async () => {
      const helper = this.#via("readdir", path);
      if (helper) return await helper.readDir(path);
      const out: SysDirEntry[] = [];
      for await (const e of Deno.readDir(path)) {
        out.push({
          name: e.name,
          isFile: e.isFile,
          isDirectory: e.isDirectory,
          isSymlink: e.isSymlink,
        });
      }
      return out;
    });
  }

  readLink(path: string): Promise<string> {
    path = tidyPath(path);
    return wrap(() => this.#via("readlink", path)?.readLink(path) ?? Deno.readLink(path));
  }

  realPath(path: string): Promise<string> {
    path = tidyPath(path);
    return wrap(() => this.#via("realpath", path)?.realPath(path) ?? Deno.realPath(path));
  }

  async exists(path: string): Promise<boolean> {
    path = tidyPath(path);
    const helper = this.#via("exists", path);
    if (helper) return await wrap(() => helper.exists(path));
    try {
      await Deno.lstat(path);
      return true;
    } catch (e) {
      const err = toSysError(e);
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return false;
      throw err;
    }
  }

  writeFile(path: string, data: string): Promise<void> {
    path = tidyPath(path);
    return wrap(() =>
      this.#via("write", path)?.writeFile(path, data) ?? Deno.writeTextFile(path, data)
    );
  }

  #helperFor(op: string): HelperClient {
    if (!this.#helper) throw noHelper(op, "");
    return this.#helper;
  }

  runProgram(req: ProgramRequest): Promise<ProgramResult> {
    return wrap(() => this.#helperFor("run").runProgram(req));
  }

  authorizedKeys(req: AuthKeysRequest): Promise<AuthKeysReply> {
    return wrap(() => this.#helperFor("authorized keys").authorizedKeys(req));
  }

  netSnapshot(): Promise<NetSnapshot> {
    return wrap(() => this.#helperFor("network snapshot").netSnapshot());
  }

  fsSnapshot(reads: SnapshotRead[]): Promise<FsSnapshot> {
    return wrap(() => this.#helperFor("fs snapshot").fsSnapshot(reads));
  }

  statfs(path: string): Promise<SysStatfs> {
    path = tidyPath(path);
    return wrap(async () => {
      if (this.#helper) return await this.#helper.statfs(path);
      // node:fs is loaded on first use: the agent starts without Node compatibility.
      const { statfs: nodeStatfs } = await import("node:fs/promises");
      return toWireStatfs(await nodeStatfs(path));
    });
  }
}

/**
 * The agent's SystemAccess. With `helper` undefined, /proc, /sys and /dev
 * paths fail with EPERM ("the privileged helper is not running") and statfs
 * is tried with Deno's own grants.
 *
 * @example
 * ```ts
 * const sys = createSystemAccess(await startHelper(options.helper));
 * const text = await sys.readTextFile("/proc/self/mountinfo");
 * ```
 */
export function createSystemAccess(helper: HelperClient | undefined): SystemAccess {
  return new RealSystem(helper);
}
