/**
 * One helper round trip per guest-get-fsinfo: the command's code runs unchanged against
 * a SystemAccess that answers from a filesystem snapshot (helper/fs_snapshot.ts) taken
 * at the start of the call: /proc/self/mountinfo, statvfs of the mount points, and the
 * answers to the /proc, /sys and /dev reads the previous call of the command made.
 * A read the snapshot lacks (the first call, or the topology changed) goes to the
 * system as before and is named in the next call's snapshot. Other paths (the udev
 * database) are read directly, and read again whenever the helper took its answers
 * afresh (it reuses them for up to 10 s while mountinfo and the list are unchanged), so
 * they are as fresh as the sysfs answers. What a command derives from these reads alone
 * (guest-get-fsinfo's mount list and disks) it may keep while the answers are the same
 * ({@link Memo}). The reply is the one the command would have built from single reads of
 * the same files.
 *
 * @module
 */

import { statfsPoints, type WireError } from "../helper/protocol.ts";
import { isSpecialPath, tidyPath } from "./real.ts";
import {
  type AuthKeysReply,
  type AuthKeysRequest,
  fromWireError,
  type FsSnapshot,
  type NetSnapshot,
  type ProgramRequest,
  type ProgramResult,
  type SnapshotRead,
  type SysDirEntry,
  type SysStatfs,
  type SystemAccess,
  toWireError,
} from "./mod.ts";

const MOUNTINFO = "/proc/self/mountinfo";

/** Most reads one snapshot names (helper/fs_snapshot.ts MAX_SNAPSHOT_READS). */
const MAX_READS = 1024;

/**
 * The snapshot taken with single calls of `sys`, when `sys` cannot take it in one (no
 * helper, the fixture tree of the tests): what the helper's FsSnapshot answers, read the
 * slow way, each call answered exactly as it was.
 */
export async function snapshotVia(sys: SystemAccess, reads: SnapshotRead[]): Promise<FsSnapshot> {
  // Errors keep the error thrown (`thrown`) beside its wire form, so the view throws it as is.
  const answer = async <T>(f: () => Promise<T>) => {
    try {
      return { ok: await f() };
    } catch (e) {
      return { error: toWireError(e), thrown: e };
    }
  };
  const mountinfo = await answer(() => sys.readTextFile(MOUNTINFO));
  const statfs: FsSnapshot["statfs"] = [];
  if ("ok" in mountinfo) {
    for (const dir of statfsPoints(mountinfo.ok)) {
      statfs.push([dir, await answer(() => sys.statfs(dir))]);
    }
  }
  const out: FsSnapshot["reads"] = [];
  for (const [kind, path] of reads) {
    switch (kind) {
      case "read":
        out.push(await answer(async () => (await sys.readFile(path)).toBase64()));
        break;
      case "readdir":
        out.push(await answer(() => sys.readDir(path)));
        break;
      case "readlink":
        out.push(await answer(() => sys.readLink(path)));
        break;
      case "realpath":
        out.push(await answer(() => sys.realPath(path)));
        break;
    }
  }
  return { mountinfo, statfs, reads: out, generation: crypto.randomUUID() };
}

/** The error an answer stands for: the one thrown (snapshotVia), else rebuilt from the wire. */
function thrown(a: { error: WireError }): unknown {
  return (a as { thrown?: unknown }).thrown ?? fromWireError(a.error);
}

/** Serves the snapshot's answers; everything else goes to `live`. */
class SnapshotView implements SystemAccess {
  readonly #live: SystemAccess;
  readonly #snap: FsSnapshot;
  readonly #answers = new Map<string, FsSnapshot["reads"][number]>();
  readonly #statfs: Map<string, FsSnapshot["statfs"][number][1]>;
  readonly #used = new Map<string, SnapshotRead>();
  /** Files read directly (not /proc, /sys or /dev: the udev database) and their answers. */
  readonly files: Map<string, Answer<Uint8Array>>;
  readonly #earlier: Map<string, Answer<Uint8Array>>;

  /** `earlier`: the direct reads of a call served from the same generation of answers. */
  constructor(
    live: SystemAccess,
    snap: FsSnapshot,
    reads: SnapshotRead[],
    earlier: Map<string, Answer<Uint8Array>>,
  ) {
    this.#live = live;
    this.#snap = snap;
    this.#earlier = earlier;
    this.files = new Map();
    reads.forEach(([kind, path], i) => {
      const a = snap.reads[i];
      if (a) this.#answers.set(`${kind}\0${path}`, a);
    });
    this.#statfs = new Map(snap.statfs);
  }

  /** The /proc, /sys and /dev reads made so far, in first-use order (the next snapshot's list). */
  get used(): SnapshotRead[] {
    return [...this.#used.values()].slice(0, MAX_READS);
  }

  /** Counts as made: the reads of a computation whose result is reused (see {@link Memo}). */
  markUsed(reads: SnapshotRead[]): void {
    for (const [kind, path] of reads) {
      const key = `${kind}\0${path}`;
      if (!this.#used.has(key)) this.#used.set(key, [kind, path]);
    }
  }

  /** The snapshot's answer for a special path (recorded), or undefined to ask `live`. */
  #answer<T>(kind: SnapshotRead[0], path: string): { ok: T } | undefined {
    const p = tidyPath(path);
    if (!isSpecialPath(p)) return undefined;
    const key = `${kind}\0${p}`;
    if (!this.#used.has(key)) this.#used.set(key, [kind, p]);
    const a = this.#answers.get(key);
    if (a === undefined) return undefined;
    if ("error" in a) throw thrown(a);
    return { ok: a.ok as T };
  }

  readFile(path: string): Promise<Uint8Array> {
    try {
      if (tidyPath(path) === MOUNTINFO) {
        const m = this.#snap.mountinfo;
        if ("error" in m) throw thrown(m);
        return Promise.resolve(new TextEncoder().encode(m.ok));
      }
      const a = this.#answer<string>("read", path);
      if (a) return Promise.resolve(Uint8Array.fromBase64(a.ok));
      if (isSpecialPath(tidyPath(path))) return this.#live.readFile(path);
      return this.#direct(path);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** A direct read, answered as in the earlier call of the same generation if there was one. */
  async #direct(path: string): Promise<Uint8Array> {
    let a = this.files.get(path) ?? this.#earlier.get(path);
    if (a === undefined) {
      try {
        a = { ok: await this.#live.readFile(path) };
      } catch (e) {
        a = { thrown: e };
      }
    }
    this.files.set(path, a);
    if ("thrown" in a) throw a.thrown;
    return a.ok.slice();
  }

  async readTextFile(path: string): Promise<string> {
    if (tidyPath(path) === MOUNTINFO) {
      const m = this.#snap.mountinfo;
      if ("error" in m) throw thrown(m);
      return m.ok;
    }
    return new TextDecoder().decode(await this.readFile(path));
  }

  async readDir(path: string): Promise<SysDirEntry[]> {
    const a = this.#answer<SysDirEntry[]>("readdir", path);
    return a ? a.ok : await this.#live.readDir(path);
  }

  async readLink(path: string): Promise<string> {
    const a = this.#answer<string>("readlink", path);
    return a ? a.ok : await this.#live.readLink(path);
  }

  async realPath(path: string): Promise<string> {
    const a = this.#answer<string>("realpath", path);
    return a ? a.ok : await this.#live.realPath(path);
  }

  async statfs(path: string): Promise<SysStatfs> {
    const s = this.#statfs.get(tidyPath(path));
    if (s === undefined) return await this.#live.statfs(path);
    if ("error" in s) throw thrown(s);
    return s.ok;
  }

  exists(path: string): Promise<boolean> {
    return this.#live.exists(path);
  }

  writeFile(path: string, data: string): Promise<void> {
    return this.#live.writeFile(path, data);
  }

  runProgram(req: ProgramRequest): Promise<ProgramResult> {
    return this.#live.runProgram(req);
  }

  authorizedKeys(req: AuthKeysRequest): Promise<AuthKeysReply> {
    return this.#live.authorizedKeys(req);
  }

  netSnapshot(): Promise<NetSnapshot> {
    return this.#live.netSnapshot();
  }

  fsSnapshot(reads: SnapshotRead[]): Promise<FsSnapshot> {
    return this.#live.fsSnapshot(reads);
  }
}

/** A direct read's bytes or the error it threw. */
type Answer<T> = { ok: T } | { thrown: unknown };

/**
 * Computes a value from the snapshot, or hands back the one computed by the previous call
 * when that call was served from the same answers (the helper's generation) and read
 * nothing outside them, so the computation would read exactly the same bytes again.
 * Only what is derived from the snapshot's reads and mountinfo may be memoised (not
 * statvfs, which every snapshot takes afresh); the value is shared, never to be mutated.
 */
export type Memo = <V>(key: string, compute: () => Promise<V>) => Promise<V>;

interface Memoised {
  value: unknown;
  /** The reads the computation made (counted as made again when the value is reused). */
  reads: SnapshotRead[];
}

/** What each SystemAccess's last snapshot-served call read and computed. */
const last = new WeakMap<SystemAccess, {
  reads: SnapshotRead[];
  generation: string;
  files: Map<string, Answer<Uint8Array>>;
  /** True when the call read nothing but the snapshot's answers (its list was complete). */
  clean: boolean;
  memos: Map<string, Memoised>;
}>();

function sameReads(a: SnapshotRead[], b: SnapshotRead[]): boolean {
  return a.length === b.length && a.every(([k, p], i) => k === b[i]![0] && p === b[i]![1]);
}

/**
 * Runs `f` against a snapshot of `sys` naming the reads the previous call made, and
 * remembers the reads this one made. When `sys` cannot take the snapshot in one request
 * (no helper, a helper that failed or does not know the operation), it is read with
 * single calls ({@link snapshotVia}), which answer as they did before.
 */
export async function withFsSnapshot<T>(
  sys: SystemAccess,
  f: (view: SystemAccess, memo: Memo) => Promise<T>,
): Promise<T> {
  const before = last.get(sys);
  const reads = before?.reads ?? [];
  let snap: FsSnapshot;
  try {
    snap = await sys.fsSnapshot(reads);
  } catch {
    snap = await snapshotVia(sys, reads);
  }
  const same = before !== undefined && before.generation === snap.generation;
  const view = new SnapshotView(sys, snap, reads, same ? before.files : new Map());
  const earlier = same && before.clean ? before.memos : undefined;
  const memos = new Map<string, Memoised>();
  const memo: Memo = async <V>(key: string, compute: () => Promise<V>): Promise<V> => {
    const had = earlier?.get(key);
    if (had) {
      view.markUsed(had.reads);
      memos.set(key, had);
      return had.value as V;
    }
    const from = view.used.length;
    const value = await compute();
    memos.set(key, { value, reads: view.used.slice(from) });
    return value;
  };
  try {
    return await f(view, memo);
  } finally {
    const used = view.used;
    const files = view.files;
    if (same) { for (const [k, v] of before.files) if (!files.has(k)) files.set(k, v); }
    last.set(sys, {
      reads: used,
      generation: snap.generation,
      files,
      clean: sameReads(used, reads),
      memos,
    });
  }
}
