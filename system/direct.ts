/**
 * SystemAccess straight through Deno, for ordinary paths. /dev, /proc and /sys
 * are refused by Deno outside --allow-all, so those fail here with EPERM; the
 * agent routes them to the privileged helper instead (system/real.ts).
 *
 * @module
 */

import fs from "node:fs";
import { type SysDirEntry, type SysStatfs, type SystemAccess, toSysError } from "./mod.ts";

async function wrap<T>(f: () => Promise<T> | T): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw toSysError(e);
  }
}

/** SystemAccess through Deno's own file APIs. */
export class DirectSystem implements SystemAccess {
  readFile(path: string): Promise<Uint8Array> {
    return wrap(() => Deno.readFile(path));
  }
  readTextFile(path: string): Promise<string> {
    return wrap(() => Deno.readTextFile(path));
  }
  readDir(path: string): Promise<SysDirEntry[]> {
    return wrap(async () => {
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
    return wrap(() => Deno.readLink(path));
  }
  realPath(path: string): Promise<string> {
    return wrap(() => Deno.realPath(path));
  }
  async exists(path: string): Promise<boolean> {
    try {
      await Deno.lstat(path);
      return true;
    } catch {
      return false;
    }
  }
  writeFile(path: string, data: string): Promise<void> {
    return wrap(() => Deno.writeTextFile(path, data));
  }
  statfs(path: string): Promise<SysStatfs> {
    return wrap(() => {
      const s = fs.statfsSync(path);
      return {
        frsize: Number((s as { frsize?: number }).frsize ?? s.bsize),
        blocks: s.blocks,
        bfree: s.bfree,
        bavail: s.bavail,
      };
    });
  }
}
