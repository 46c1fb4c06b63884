/**
 * The filesystem snapshot behind guest-get-fsinfo, taken in one helper round trip:
 * /proc/self/mountinfo, statvfs(3) of the mount points qemu-ga's mount list can hold
 * (a device major other than 0, or btrfs), and the answers to a list of reads the
 * agent names: the /sys paths its last walk of the block-device topology touched.
 * Each read is served by Ops exactly as the single request would be (the same
 * allowlist, checked on the requested and the resolved path); nothing is written.
 *
 * The answers to the reads are kept for at most {@link READS_TTL_MS} and reused while
 * mountinfo and the list of reads are unchanged; mountinfo and statvfs are read at
 * every request.
 *
 * @module
 */

import { errorOf, loadStatvfs, OpError, type Ops, readTextSync, refusal, statvfs } from "./ops.ts";
import { statfsPoints, type WireDirEntry, type WireError, type WireStatfs } from "./protocol.ts";

/** One read: readFile, readDir, readLink or realPath of a path. */
export type SnapshotRead = ["read" | "readdir" | "readlink" | "realpath", string];

/** The answer to one read: readFile's bytes in base64, the entries, the link or path text. */
export type SnapshotResult =
  | { ok: string | WireDirEntry[] }
  | { error: WireError };

/** Payload of FsSnapshot. */
export interface FsSnapshotRequest {
  reads: SnapshotRead[];
}

/** Reply to FsSnapshot. */
export interface FsSnapshot {
  /** /proc/self/mountinfo, or the error reading it. */
  mountinfo: { ok: string } | { error: WireError };
  /** [mount point, statvfs or its error], in mountinfo order. */
  statfs: [string, { ok: WireStatfs } | { error: WireError }][];
  /** One answer per requested read, in order. */
  reads: SnapshotResult[];
  /**
   * Names this taking of the answers to the reads (a random UUID): the same value in two
   * replies means the same answers, reused from the first.
   */
  generation: string;
}

/** Most reads one request may name. */
export const MAX_SNAPSHOT_READS = 1024;

/**
 * Most JSON text the answers to the reads may take; the reply (with mountinfo, which the
 * ReadFile operation caps at MAX_FILE_SIZE too) must stay under MAX_REPLY_PAYLOAD.
 */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024;

/** How long the answers to the reads are reused (while mountinfo and the list are unchanged). */
export const READS_TTL_MS = 10_000;

function wire(e: unknown, op: string, path: string): WireError {
  const err = e instanceof OpError ? e : errorOf(e, op, path);
  return err.refused
    ? { code: err.code, message: err.message, refused: true }
    : { code: err.code, message: err.message };
}

// statfsPoints lives in protocol.ts: the agent (system/snapshot.ts) uses it too, and
// loading it there does not load ops.ts's node:fs into the agent.
export { statfsPoints } from "./protocol.ts";

/** Checks the request: a list of at most MAX_SNAPSHOT_READS [kind, path] pairs. */
function checkReads(req: unknown): SnapshotRead[] {
  const reads = (req as Partial<FsSnapshotRequest> | null)?.reads;
  if (!Array.isArray(reads) || reads.length > MAX_SNAPSHOT_READS) {
    throw refusal("EINVAL", "fs snapshot: reads is not a list of at most 1024");
  }
  for (const r of reads) {
    if (
      !Array.isArray(r) || r.length !== 2 || typeof r[1] !== "string" ||
      !["read", "readdir", "readlink", "realpath"].includes(r[0])
    ) {
      throw refusal("EINVAL", "fs snapshot: a read is not [kind, path]");
    }
  }
  return reads as SnapshotRead[];
}

async function answer(ops: Ops, [kind, path]: SnapshotRead): Promise<SnapshotResult> {
  try {
    switch (kind) {
      case "read":
        return { ok: (await ops.readFile(path)).toBase64() };
      case "readdir":
        return { ok: await ops.readDir(path) };
      case "readlink":
        return { ok: await ops.readLink(path) };
      case "realpath":
        return { ok: await ops.realPath(path) };
    }
  } catch (e) {
    return { error: wire(e, kind, path) };
  }
}

/** Takes snapshots; holds the last answers to the reads for READS_TTL_MS. */
export class FsSnapshotter {
  readonly #ops: Ops;
  #cache: { key: string; at: number; reads: SnapshotResult[]; generation: string } | undefined;

  constructor(ops: Ops) {
    this.#ops = ops;
  }

  /**
   * The answers, one read at a time; once they hold {@link MAX_SNAPSHOT_BYTES}, the
   * remaining reads are answered with E2BIG (the reply must fit in one frame).
   */
  async #answers(reads: SnapshotRead[]): Promise<SnapshotResult[]> {
    const out: SnapshotResult[] = [];
    let size = 0;
    for (const [kind, path] of reads) {
      if (size > MAX_SNAPSHOT_BYTES) {
        out.push({
          error: { code: "E2BIG", message: `${kind} ${JSON.stringify(path)}: snapshot full` },
        });
        continue;
      }
      const a = await answer(this.#ops, [kind, path]);
      size += JSON.stringify(a).length;
      out.push(a);
    }
    return out;
  }

  /** One snapshot for the request payload (already parsed from JSON). */
  async take(req: unknown, now = Date.now()): Promise<FsSnapshot> {
    const reads = checkReads(req);
    let mountinfo: string;
    try {
      // Synchronous: a /proc file is generated in memory, and this avoids a thread hop.
      mountinfo = readTextSync("/proc/self/mountinfo");
    } catch (e) {
      this.#cache = undefined;
      return {
        mountinfo: { error: wire(e, "read", "/proc/self/mountinfo") },
        statfs: [],
        reads: await this.#answers(reads),
        generation: crypto.randomUUID(),
      };
    }
    await loadStatvfs();
    const statfs: FsSnapshot["statfs"] = statfsPoints(mountinfo).map((dir) => {
      try {
        return [dir, { ok: statvfs(dir) }];
      } catch (e) {
        return [dir, { error: wire(e, "statfs", dir) }];
      }
    });
    const key = `${mountinfo}\0${JSON.stringify(reads)}`;
    const c = this.#cache;
    if (!c || c.key !== key || now - c.at > READS_TTL_MS || now < c.at) {
      this.#cache = {
        key,
        at: now,
        reads: await this.#answers(reads),
        generation: crypto.randomUUID(),
      };
    }
    const { reads: answers, generation } = this.#cache!;
    return { mountinfo: { ok: mountinfo }, statfs, reads: answers, generation };
  }
}
