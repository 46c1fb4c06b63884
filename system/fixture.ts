/**
 * A SystemAccess backed by a fixture tree: every absolute path is looked up under
 * `root` (a copy of the relevant /proc, /sys and /etc files captured from a real
 * guest). Used by unit tests; writes go to the tree so tests can inspect them.
 *
 * @module
 */

import { join } from "../config/path.ts";
import { authorizedKeys, loadAuthorizedKeysFs } from "../helper/authorized_keys.ts";
import { type NetAddress, netSnapshot } from "../helper/net.ts";
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
  SysError,
  type SysStatfs,
  type SystemAccess,
  toSysError,
} from "./mod.ts";

/** Options for {@link FixtureSystem}. */
export interface FixtureOptions {
  /** statvfs answers by mount point; missing ones fail with ENOENT. */
  statfs?: Record<string, SysStatfs>;
  /**
   * Answers runProgram (tests script the programs: nothing is ever run). Without
   * it every program fails to start with ENOENT.
   */
  run?: (req: ProgramRequest) => ProgramResult | Promise<ProgramResult>;
}

/** SystemAccess over a directory tree standing in for `/`. */
export class FixtureSystem implements SystemAccess {
  readonly #root: string;
  readonly #statfs: Record<string, SysStatfs>;
  readonly #run: FixtureOptions["run"];

  constructor(root: string, options: FixtureOptions = {}) {
    this.#root = root;
    this.#statfs = options.statfs ?? {};
    this.#run = options.run;
  }

  #p(path: string): string {
    return join(this.#root, path);
  }

  async #wrap<T>(f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      throw toSysError(e);
    }
  }

  readFile(path: string): Promise<Uint8Array> {
    return this.#wrap(() => Deno.readFile(this.#p(path)));
  }

  readTextFile(path: string): Promise<string> {
    return this.#wrap(() => Deno.readTextFile(this.#p(path)));
  }

  /**
   * Lists a directory in the kernel's readdir order recorded at capture time
   * (`readdir_order.json` at the root of the tree, written by
   * tests/fixtures/capture_sysfs.sh: git keeps no directory order), then any
   * unrecorded entries by name. `.keep` files (git keeps no empty directory) are
   * not listed.
   */
  readDir(path: string): Promise<SysDirEntry[]> {
    return this.#wrap(async () => {
      const found = new Map<string, SysDirEntry>();
      for await (const e of Deno.readDir(this.#p(path))) {
        if (e.name === ".keep") continue;
        found.set(e.name, {
          name: e.name,
          isFile: e.isFile,
          isDirectory: e.isDirectory,
          isSymlink: e.isSymlink,
        });
      }
      const orders = await this.#orders();
      const key = path.length > 1 ? path.replace(/\/+$/, "") : path;
      const order = orders[key] ?? [];
      const out = order.filter((n) => found.has(n)).map((n) => found.get(n)!);
      const rest = [...found.keys()].filter((n) => !order.includes(n)).sort();
      return [...out, ...rest.map((n) => found.get(n)!)];
    });
  }

  #orderCache: Record<string, string[]> | undefined;

  async #orders(): Promise<Record<string, string[]>> {
    if (!this.#orderCache) {
      try {
        this.#orderCache = JSON.parse(
          await Deno.readTextFile(join(this.#root, "readdir_order.json")),
        );
      } catch {
        this.#orderCache = {};
      }
    }
    return this.#orderCache!;
  }

  readLink(path: string): Promise<string> {
    return this.#wrap(() => Deno.readLink(this.#p(path)));
  }

  realPath(path: string): Promise<string> {
    return this.#wrap(async () => {
      const real = await Deno.realPath(this.#p(path));
      const root = await Deno.realPath(this.#root);
      if (!real.startsWith(root)) return real;
      const rel = real.slice(root.length);
      return rel.startsWith("/") ? rel : `/${rel}`;
    });
  }

  async exists(path: string): Promise<boolean> {
    try {
      await Deno.lstat(this.#p(path));
      return true;
    } catch {
      return false;
    }
  }

  writeFile(path: string, data: string): Promise<void> {
    return this.#wrap(() => Deno.writeTextFile(this.#p(path), data));
  }

  async runProgram(req: ProgramRequest): Promise<ProgramResult> {
    if (!this.#run) {
      throw new SysError("ENOENT", "No such file or directory", "fixture: no programs");
    }
    return await this.#run(req);
  }

  /**
   * The helper's own authorized_keys code (helper/authorized_keys.ts) on the
   * fixture's etc/passwd; the home directories are the paths that passwd names,
   * so a test's passwd decides which (temporary) directories are touched.
   */
  authorizedKeys(req: AuthKeysRequest): Promise<AuthKeysReply> {
    return this.#wrap(async () => {
      await loadAuthorizedKeysFs();
      return authorizedKeys(req, { passwd: this.#p("/etc/passwd") });
    });
  }

  /**
   * The helper's snapshot code (helper/net.ts) over the tree; the addresses come
   * from `network_interfaces.json` at its root (Deno.networkInterfaces() captured
   * on the same guest), none when absent.
   */
  netSnapshot(): Promise<NetSnapshot> {
    return netSnapshot({
      readDir: async (path) => (await this.readDir(path)).map((e) => e.name),
      readText: (path) => this.readTextFile(path),
      addresses: () => {
        try {
          return JSON.parse(
            Deno.readTextFileSync(join(this.#root, "network_interfaces.json")),
          ) as NetAddress[];
        } catch {
          return [];
        }
      },
    });
  }

  /**
   * There is no helper to take the snapshot in one request: this refusal makes
   * system/snapshot.ts read it with single calls of the SystemAccess it was given (which a
   * test may have wrapped), as it does for an agent without a helper.
   */
  fsSnapshot(_reads: SnapshotRead[]): Promise<FsSnapshot> {
    return Promise.reject(
      new SandboxRefusal("EOPNOTSUPP", "fs snapshot: the fixture has no privileged helper"),
    );
  }

  statfs(path: string): Promise<SysStatfs> {
    const s = this.#statfs[path];
    if (s) return Promise.resolve(s);
    return Promise.reject(new SysError("ENOENT", "No such file or directory"));
  }
}
