/**
 * guest-file-open, -close, -read, -write, -seek and -flush (qga-reference.md
 * §2.3 "Files", §3.3-3.5).
 *
 * qemu-ga keeps a stdio `FILE*` per handle. We keep the descriptor (opened by
 * node:fs with the exact open(2) flags: O_NOCTTY|O_NONBLOCK, O_CLOEXEC added by
 * Deno) and emulate what the client can observe of stdio:
 *
 * - Regular files and directories are read and written with pread/pwrite at a
 *   position we track (node:fs has no lseek); that position is what ftell
 *   reports. Append modes write at the end and then stand at the end, as the
 *   kernel's O_APPEND does. FIFOs and other streams use plain read/write.
 * - `eof` is feof(): true only when a read hit the end (a read of exactly the
 *   remaining bytes says false; the next one returns 0 bytes and true).
 * - The read/write state machine of qemu-ga (rw_state): a write after a read
 *   first does fseek(0, SEEK_CUR), which fails `Illegal seek` on a FIFO; a read
 *   after a write flushes; seek and flush reset the state.
 * - Writes go through at once. stdio would hold up to one buffer (4 KiB) until
 *   the next flush, close, seek or read; the only differences are that other
 *   readers see the data earlier and that a write error (ENOSPC, a full FIFO)
 *   is reported by the write instead of by the later flush or close.
 *
 * @module
 */

import {
  closeSync,
  constants as C,
  fchmodSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { decodeQemuBase64 } from "../protocol/base64.ts";
import { QgaError } from "../protocol/errors.ts";
import { INT64_MAX } from "../protocol/int64.ts";
import { alternate, base64Str, bool, enumType, int, str, struct } from "../protocol/types.ts";
import { strerror, SysError, toSysError } from "../system/mod.ts";
import { type Context, defineCommand, type Needs } from "./types.ts";
import { checkFileAccess, fileGrants, policyError, stillSameFile } from "./file_policy.ts";
import type { AgentOptions } from "../config/options.ts";

/** QGA_READ_COUNT_DEFAULT. */
export const READ_COUNT_DEFAULT = 4096n;
/** GUEST_FILE_READ_COUNT_MAX: 48 MiB, inclusive. */
export const READ_COUNT_MAX = 50331648n;

/** Our bound on open guest-file handles; qemu-ga is bounded only by RLIMIT_NOFILE. */
export const MAX_OPEN_FILES = 1024;
/** DEFAULT_NEW_FILE_MODE. */
const NEW_FILE_MODE = 0o666;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Linux O_ACCMODE (node:fs in Deno does not export it). */
const O_ACCMODE = 3;

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

/** What open(2) gets for each fopen mode string qemu-ga accepts (§3.4). */
interface OpenMode {
  readonly flags: number;
  readonly append: boolean;
}

const RDONLY: OpenMode = { flags: C.O_RDONLY, append: false };
const WRONLY_TRUNC: OpenMode = { flags: C.O_WRONLY | C.O_CREAT | C.O_TRUNC, append: false };
const WRONLY_APPEND: OpenMode = { flags: C.O_WRONLY | C.O_CREAT | C.O_APPEND, append: true };
const RDWR: OpenMode = { flags: C.O_RDWR, append: false };
const RDWR_TRUNC: OpenMode = { flags: C.O_RDWR | C.O_CREAT | C.O_TRUNC, append: false };
const RDWR_APPEND: OpenMode = { flags: C.O_RDWR | C.O_CREAT | C.O_APPEND, append: true };

/** The twelve accepted mode strings (fifteen spellings), matched exactly. */
const OPEN_MODES: ReadonlyMap<string, OpenMode> = new Map([
  ["r", RDONLY],
  ["rb", RDONLY],
  ["w", WRONLY_TRUNC],
  ["wb", WRONLY_TRUNC],
  ["a", WRONLY_APPEND],
  ["ab", WRONLY_APPEND],
  ["r+", RDWR],
  ["rb+", RDWR],
  ["r+b", RDWR],
  ["w+", RDWR_TRUNC],
  ["wb+", RDWR_TRUNC],
  ["w+b", RDWR_TRUNC],
  ["a+", RDWR_APPEND],
  ["ab+", RDWR_APPEND],
  ["a+b", RDWR_APPEND],
]);

/** qemu-ga's rw_state. */
const enum RwState {
  New,
  Reading,
  Writing,
}

/** One open guest file. */
interface GuestFile {
  readonly fd: number;
  /** pread/pwrite at `pos` (regular file, directory, block device) or plain read/write. */
  readonly seekable: boolean;
  /** A regular file: its size bounds what a read can return. */
  readonly regular: boolean;
  readonly isDir: boolean;
  /** Opened for reading / writing (the kernel's EBADF checks). */
  readonly readable: boolean;
  readonly writable: boolean;
  readonly append: boolean;
  /** What ftell would say. */
  pos: bigint;
  state: RwState;
}

/** The handle table of an agent. */
function files(ctx: Context): Map<bigint, GuestFile> {
  return ctx.store("guest-file", () => new Map<bigint, GuestFile>());
}

/** guest_file_handle_find. */
function findHandle(ctx: Context, id: bigint): GuestFile {
  const f = files(ctx).get(id);
  if (!f) throw new QgaError(`handle '${id}' has not been found`);
  return f;
}

function invalidCount(count: bigint): QgaError {
  return new QgaError(`value '${count}' is invalid for argument count`);
}

/** Opens `target` as safe_open_or_create does; returns the fd and whether it created the file. */
function openOrCreate(target: string, flags: number): { fd: number; created: boolean } {
  if (flags & C.O_CREAT) {
    try {
      return { fd: openSync(target, flags | C.O_EXCL, 0), created: true };
    } catch (e) {
      if (toSysError(e).code !== "EEXIST") throw e;
      return { fd: openSync(target, flags & ~C.O_CREAT), created: false };
    }
  }
  return { fd: openSync(target, flags), created: false };
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Nothing to report: the open already failed.
  }
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
    const write = om.flags !== C.O_RDONLY;
    const resolved = checkFileAccess(path, write, ctx.options);
    const target = resolved ?? path;
    // Under the policy, truncation waits until the opened file is confirmed.
    const deferTruncate = resolved !== null && (om.flags & C.O_TRUNC) !== 0;
    const flags = (deferTruncate ? om.flags & ~C.O_TRUNC : om.flags) | C.O_NOCTTY | C.O_NONBLOCK;
    if (files(ctx).size >= MAX_OPEN_FILES) {
      throw new QgaError(
        `guest-file-open: too many handles (${MAX_OPEN_FILES}) are open; ` +
          `close some with guest-file-close first`,
      );
    }
    const failOpen = (e: unknown) =>
      new QgaError(`failed to open file '${path}' (mode: '${mode}'): ${toSysError(e).strerror}`);

    let opened: { fd: number; created: boolean };
    try {
      opened = openOrCreate(target, flags);
    } catch (e) {
      throw failOpen(e);
    }
    const { fd, created } = opened;
    let st;
    try {
      st = fstatSync(fd);
    } catch (e) {
      closeQuietly(fd);
      throw failOpen(e);
    }
    if (resolved !== null && !stillSameFile(resolved, st)) {
      closeQuietly(fd);
      throw policyError(path, ctx.options);
    }
    if (created) {
      try {
        fchmodSync(fd, NEW_FILE_MODE);
      } catch (e) {
        closeQuietly(fd);
        try {
          unlinkSync(target);
        } catch {
          // qemu-ga ignores the unlink result too.
        }
        throw new QgaError(
          `failed to set permission 0666 on new file '${path}' (mode: '${mode}'): ${
            toSysError(e).strerror
          }`,
        );
      }
    }
    if (deferTruncate && st.isFile()) {
      try {
        ftruncateSync(fd, 0);
      } catch (e) {
        closeQuietly(fd);
        throw failOpen(e);
      }
    }
    let handle: bigint;
    try {
      handle = await ctx.allocateHandle();
    } catch (e) {
      closeQuietly(fd);
      throw e;
    }
    files(ctx).set(handle, {
      fd,
      seekable: st.isFile() || st.isDirectory() || st.isBlockDevice(),
      regular: st.isFile(),
      isDir: st.isDirectory(),
      readable: (om.flags & O_ACCMODE) !== C.O_WRONLY,
      writable: (om.flags & O_ACCMODE) !== C.O_RDONLY,
      append: om.append,
      pos: 0n,
      state: RwState.New,
    });
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
    const f = findHandle(ctx, args.handle);
    files(ctx).delete(args.handle);
    try {
      closeSync(f.fd);
    } catch (e) {
      throw new QgaError(`failed to close handle: ${toSysError(e).strerror}`);
    }
  },
});

/**
 * fread(count): reads until `count` bytes, EOF or an error. The buffer starts at
 * what a regular file can still deliver (plus one byte to see EOF) and grows if
 * the file grows under us, so a 48 MiB count on a small file costs nothing.
 */
function readUpTo(f: GuestFile, count: number): { data: Uint8Array; eof: boolean } {
  let size = count;
  if (f.regular) {
    const remaining = BigInt(fstatSync(f.fd).size) - f.pos;
    if (remaining < BigInt(count)) size = Number(remaining < 0n ? 1n : remaining + 1n);
  }
  let buf = new Uint8Array(size);
  let got = 0;
  let eof = false;
  try {
    while (got < count) {
      if (got === buf.length) {
        const bigger = new Uint8Array(Math.min(count, buf.length * 2));
        bigger.set(buf);
        buf = bigger;
      }
      const at = f.seekable ? f.pos + BigInt(got) : null;
      // node:fs takes positions as numbers; no filesystem stores data past 2^53,
      // so the kernel's answer there is known: EBADF, EISDIR or the end.
      if (at !== null && at > MAX_SAFE) {
        if (!f.readable) throw new SysError("EBADF", strerror("EBADF"));
        if (f.isDir) throw new SysError("EISDIR", strerror("EISDIR"));
        eof = true;
        break;
      }
      const n = readSync(f.fd, buf, got, buf.length - got, at === null ? null : Number(at));
      if (n === 0) {
        eof = true;
        break;
      }
      got += n;
    }
  } catch (e) {
    if (f.seekable) f.pos += BigInt(got);
    throw new QgaError(`failed to read file: ${toSysError(e).strerror}`);
  }
  if (f.seekable) f.pos += BigInt(got);
  return { data: buf.subarray(0, got), eof };
}

/** guest-file-read. */
export const guestFileRead = defineCommand({
  name: "guest-file-read",
  since: "0.15.0",
  doc: "Read from an open file in the guest; the data is base64-encoded.",
  args: struct("guest-file-read-arg", { handle: int, "*count": int }),
  returns: GuestFileRead,
  needs: {},
  handler(args, ctx) {
    const f = findHandle(ctx, args.handle);
    const count = args.count ?? READ_COUNT_DEFAULT;
    if (count < 0n || count > READ_COUNT_MAX) throw invalidCount(count);
    // A read after a write flushes first; writes went through already.
    if (f.state === RwState.Writing) f.state = RwState.New;
    if (count === 0n) {
      f.state = RwState.Reading;
      return { count: 0, "buf-b64": "", eof: false };
    }
    const { data, eof } = readUpTo(f, Number(count));
    f.state = RwState.Reading;
    return { count: data.length, "buf-b64": data.length ? data.toBase64() : "", eof };
  },
});

/** fwrite: writes everything or fails; returns nothing (the count is the request). */
function writeAll(f: GuestFile, data: Uint8Array): void {
  let done = 0;
  try {
    while (done < data.length) {
      const at = f.seekable && !f.append ? f.pos + BigInt(done) : null;
      if (at !== null && at > MAX_SAFE) {
        const code = f.writable ? "EFBIG" : "EBADF";
        throw new SysError(code, strerror(code));
      }
      done += writeSync(f.fd, data, done, data.length - done, at === null ? null : Number(at));
    }
  } catch (e) {
    if (f.seekable && !f.append) f.pos += BigInt(done);
    throw new QgaError(`failed to write to file: ${toSysError(e).strerror}`);
  }
  if (!f.seekable) return;
  // O_APPEND writes land at the end and leave the offset there.
  f.pos = f.append ? BigInt(fstatSync(f.fd).size) : f.pos + BigInt(done);
}

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
    const f = findHandle(ctx, args.handle);
    if (f.state === RwState.Reading) {
      // fseek(fh, 0, SEEK_CUR) before switching from reading to writing.
      if (!f.seekable) throw new QgaError("failed to seek file: Illegal seek");
      f.state = RwState.New;
    }
    const data = decodeQemuBase64(args["buf-b64"]);
    const count = args.count ?? BigInt(data.length);
    if (count < 0n || count > BigInt(data.length)) throw invalidCount(count);
    if (count > 0n) writeAll(f, data.subarray(0, Number(count)));
    f.state = RwState.Writing;
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
    const f = findHandle(ctx, args.handle);
    const whence = parseWhence(args.whence);
    if (!f.seekable) {
      f.state = RwState.New;
      throw new QgaError("failed to seek file: Illegal seek");
    }
    let base = 0n;
    if (whence === "cur") base = f.pos;
    else if (whence === "end") base = f.isDir ? INT64_MAX : BigInt(fstatSync(f.fd).size);
    const position = base + args.offset;
    if (position < 0n || position > INT64_MAX) {
      throw new QgaError("failed to seek file: Invalid argument");
    }
    f.pos = position;
    f.state = RwState.New;
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
    const f = findHandle(ctx, args.handle);
    f.state = RwState.New;
  },
});

/** Closes every open guest file (agent shutdown). */
export function closeAllFiles(ctx: Context): void {
  const table = files(ctx);
  for (const f of table.values()) closeQuietly(f.fd);
  table.clear();
}
