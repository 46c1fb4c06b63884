/**
 * guest-file-open, -close, -read, -write, -seek and -flush (qga-reference.md
 * §2.3 "Files", §3.3-3.5).
 *
 * qemu-ga keeps a stdio `FILE*` per handle. We keep a GuestFile (system/guest_file.ts:
 * the descriptor, the position ftell would report, feof's `eof`) and here what the client
 * sees of qemu-ga on top of it: the handle table, the file policy (commands/file_policy.ts),
 * qemu-ga's texts, and its read/write state machine (rw_state): a write after a read first
 * does fseek(0, SEEK_CUR), which fails `Illegal seek` on a FIFO; a read after a write
 * flushes; seek and flush reset the state.
 *
 * Writes go through at once. stdio would hold up to one buffer (4 KiB) until the next
 * flush, close, seek or read; the only differences are that other readers see the data
 * earlier and that a write error (ENOSPC, a full FIFO) is reported by the write instead
 * of by the later flush or close.
 *
 * @module
 */

import { decodeQemuBase64 } from "../protocol/base64.ts";
import { QgaError } from "../protocol/errors.ts";
import { INT64_MAX } from "../protocol/int64.ts";
import { alternate, base64Str, bool, enumType, int, str, struct } from "../protocol/types.ts";
import { toSysError } from "../system/mod.ts";
import { Scratch } from "../system/scratch.ts";
import {
  type GuestFile,
  loadGuestFileSupport,
  OPEN_MODES,
  OpenError,
  openGuestFile,
  writesTo,
} from "../system/guest_file.ts";
import { type Context, defineCommand, type Needs } from "./types.ts";
import { checkFileAccess, fileGrants, policyError, stillSameFile } from "./file_policy.ts";
import type { AgentOptions } from "../config/options.ts";

/** QGA_READ_COUNT_DEFAULT. */
export const READ_COUNT_DEFAULT = 4096n;
/** GUEST_FILE_READ_COUNT_MAX: 48 MiB, inclusive. */
export const READ_COUNT_MAX = 50331648n;

/**
 * guest-file-read's data buffer, reused from call to call up to the largest count (its
 * base64 is taken before the next read) and let go after 2 s without a read.
 */
function newReadScratch(): Scratch {
  return new Scratch({ max: Number(READ_COUNT_MAX), quietMs: 2000 });
}

/** Our bound on open guest-file handles; qemu-ga is bounded only by RLIMIT_NOFILE. */
export const MAX_OPEN_FILES = 1024;

/** GuestFileRead. */
export const GuestFileRead = struct("GuestFileRead", {
  count: int,
  "buf-b64": base64Str,
  eof: bool,
});
/** GuestFileWrite. */
export const GuestFileWrite = struct("GuestFileWrite", { count: int, eof: bool });
/** GuestFileSeek. */
export const GuestFileSeek = struct("GuestFileSeek", { position: int, eof: bool });
/** QGASeek. */
export const QGASeek = enumType("QGASeek", ["set", "cur", "end"]);
/** GuestFileWhence: an integer whence code or a QGASeek name. */
export const GuestFileWhence = alternate("GuestFileWhence", { num: int, str: QGASeek });

/** qemu-ga's rw_state. */
const enum RwState {
  New,
  Reading,
  Writing,
}

/** One guest-file handle: the open file and qemu-ga's rw_state for it. */
interface Handle {
  readonly file: GuestFile;
  state: RwState;
}

/** The handle table of an agent. */
function handles(ctx: Context): Map<bigint, Handle> {
  return ctx.store("guest-file", () => new Map<bigint, Handle>());
}

/** guest_file_handle_find. */
function findHandle(ctx: Context, id: bigint): Handle {
  const h = handles(ctx).get(id);
  if (!h) throw new QgaError(`handle '${id}' has not been found`);
  return h;
}

function invalidCount(count: bigint): QgaError {
  return new QgaError(`value '${count}' is invalid for argument count`);
}

/** Needs of guest-file-open: the policy's read and write grants. */
function openNeeds(options: AgentOptions): Needs {
  const g = fileGrants(options);
  return { read: g.read, write: g.write };
}

/** guest-file-open. */
export const guestFileOpen = defineCommand({
  name: "guest-file-open",
  since: "0.15.0",
  doc: "Open a file in the guest and return a handle for the other guest-file commands.",
  differences:
    "With file roots configured (fileRoots/fileReadRoots), paths outside them, or a write mode on a read-only root, are refused before anything is opened. Paths under /dev, /proc and /sys need an agent run with --allow-all. At most 1024 handles are open at once (qemu-ga: RLIMIT_NOFILE); the next open gets `guest-file-open: too many handles (1024) are open; close some with guest-file-close first`.",
  args: struct("guest-file-open-arg", { path: str, "*mode": str }),
  returns: int,
  needs: openNeeds,
  async handler(args, ctx) {
    const mode = args.mode ?? "r";
    const path = args.path;
    const om = OPEN_MODES.get(mode);
    if (!om) throw new QgaError(`invalid file open mode '${mode}'`);
    const resolved = checkFileAccess(path, writesTo(om), ctx.options);
    if (handles(ctx).size >= MAX_OPEN_FILES) {
      throw new QgaError(
        `guest-file-open: too many handles (${MAX_OPEN_FILES}) are open; ` +
          `close some with guest-file-close first`,
      );
    }
    let file: GuestFile;
    await loadGuestFileSupport();
    try {
      file = openGuestFile(resolved ?? path, om, {
        // Under the policy, truncation waits until the opened file is confirmed.
        deferTruncate: resolved !== null,
        ...(resolved !== null ? { verify: (st) => stillSameFile(resolved, st) } : {}),
      });
    } catch (e) {
      if (!(e instanceof OpenError)) throw e;
      if (e.step === "verify") throw policyError(path, ctx.options);
      const why = e.error?.strerror;
      if (e.step === "chmod") {
        throw new QgaError(
          `failed to set permission 0666 on new file '${path}' (mode: '${mode}'): ${why}`,
        );
      }
      throw new QgaError(`failed to open file '${path}' (mode: '${mode}'): ${why}`);
    }
    let handle: bigint;
    try {
      handle = await ctx.allocateHandle();
    } catch (e) {
      try {
        file.close();
      } catch {
        // The allocation failure is what gets reported.
      }
      throw e;
    }
    handles(ctx).set(handle, { file, state: RwState.New });
    ctx.log.debug(`guest-file-open, handle: ${handle}`);
    return handle;
  },
});

/** guest-file-close. */
export const guestFileClose = defineCommand({
  name: "guest-file-close",
  since: "0.15.0",
  doc: "Close an open file in the guest.",
  differences:
    "A failing close(2) still forgets the handle (qemu-ga keeps a dangling entry for the freed FILE).",
  args: struct("guest-file-close-arg", { handle: int }),
  needs: {},
  handler(args, ctx) {
    const h = findHandle(ctx, args.handle);
    handles(ctx).delete(args.handle);
    try {
      h.file.close();
    } catch (e) {
      throw new QgaError(`failed to close handle: ${toSysError(e).strerror}`);
    }
  },
});

/** guest-file-read. */
export const guestFileRead = defineCommand({
  name: "guest-file-read",
  since: "0.15.0",
  doc: "Read from an open file in the guest; the data is base64-encoded.",
  args: struct("guest-file-read-arg", { handle: int, "*count": int }),
  returns: GuestFileRead,
  needs: {},
  handler(args, ctx) {
    const h = findHandle(ctx, args.handle);
    const count = args.count ?? READ_COUNT_DEFAULT;
    if (count < 0n || count > READ_COUNT_MAX) throw invalidCount(count);
    // A read after a write flushes first; writes went through already.
    if (h.state === RwState.Writing) h.state = RwState.New;
    if (count === 0n) {
      h.state = RwState.Reading;
      return { count: 0, "buf-b64": "", eof: false };
    }
    let read;
    try {
      read = h.file.read(Number(count), ctx.store("guest-file-read", newReadScratch));
    } catch (e) {
      throw new QgaError(`failed to read file: ${toSysError(e).strerror}`);
    }
    const { data, eof } = read;
    h.state = RwState.Reading;
    return { count: data.length, "buf-b64": data.length ? data.toBase64() : "", eof };
  },
});

/** guest-file-write. */
export const guestFileWrite = defineCommand({
  name: "guest-file-write",
  since: "0.15.0",
  doc: "Write base64-encoded data to an open file in the guest.",
  differences:
    "Data is written at once rather than held in a 4 KiB stdio buffer until the next flush, close, seek or read.",
  args: struct("guest-file-write-arg", { handle: int, "buf-b64": str, "*count": int }),
  returns: GuestFileWrite,
  sensitive: ["buf-b64"],
  needs: {},
  handler(args, ctx) {
    const h = findHandle(ctx, args.handle);
    if (h.state === RwState.Reading) {
      // fseek(fh, 0, SEEK_CUR) before switching from reading to writing.
      if (!h.file.seekable) throw new QgaError("failed to seek file: Illegal seek");
      h.state = RwState.New;
    }
    const data = decodeQemuBase64(args["buf-b64"]);
    const count = args.count ?? BigInt(data.length);
    if (count < 0n || count > BigInt(data.length)) throw invalidCount(count);
    if (count > 0n) {
      try {
        h.file.write(data.subarray(0, Number(count)));
      } catch (e) {
        throw new QgaError(`failed to write to file: ${toSysError(e).strerror}`);
      }
    }
    h.state = RwState.Writing;
    return { count: Number(count), eof: false };
  },
});

/** ga_parse_whence: 0/1/2 or set/cur/end. */
function parseWhence(n: bigint | "set" | "cur" | "end"): "set" | "cur" | "end" {
  if (typeof n === "string") return n;
  if (n === 0n) return "set";
  if (n === 1n) return "cur";
  if (n === 2n) return "end";
  throw new QgaError(`invalid whence code ${n}`);
}

/** guest-file-seek. */
export const guestFileSeek = defineCommand({
  name: "guest-file-seek",
  since: "0.15.0",
  doc: "Set the position of an open file in the guest.",
  differences:
    "A position past the filesystem's maximum file size is accepted (qemu-ga's lseek says Invalid argument); SEEK_END on a directory answers as ext4 does (INT64_MAX); character devices cannot seek.",
  args: struct("guest-file-seek-arg", { handle: int, offset: int, whence: GuestFileWhence }),
  returns: GuestFileSeek,
  needs: {},
  handler(args, ctx) {
    const h = findHandle(ctx, args.handle);
    const f = h.file;
    const whence = parseWhence(args.whence);
    if (!f.seekable) {
      h.state = RwState.New;
      throw new QgaError("failed to seek file: Illegal seek");
    }
    let base = 0n;
    if (whence === "cur") base = f.pos;
    else if (whence === "end") base = f.isDir ? INT64_MAX : f.size();
    const position = base + args.offset;
    if (position < 0n || position > INT64_MAX) {
      throw new QgaError("failed to seek file: Invalid argument");
    }
    f.pos = position;
    h.state = RwState.New;
    return { position, eof: false };
  },
});

/** guest-file-flush. */
export const guestFileFlush = defineCommand({
  name: "guest-file-flush",
  since: "0.15.0",
  doc: "Write buffered data of an open file in the guest to the file.",
  args: struct("guest-file-flush-arg", { handle: int }),
  needs: {},
  handler(args, ctx) {
    const h = findHandle(ctx, args.handle);
    h.state = RwState.New;
  },
});
