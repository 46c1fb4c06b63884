/**
 * The files guest-file-* opens, as qemu-ga's stdio `FILE*` lets a client observe them
 * (qga-reference.md §3.3-3.5). The descriptor is opened by node:fs with the exact open(2)
 * flags (O_NOCTTY|O_NONBLOCK added, O_CLOEXEC added by Deno), within the agent's own
 * grants: these are ordinary paths, never /dev, /proc or /sys (those need --allow-all).
 *
 * - Regular files and directories are read and written with pread/pwrite at a position
 *   kept here (node:fs has no lseek); that position is what ftell reports. Append modes
 *   write at the end and then stand at the end, as the kernel's O_APPEND does. FIFOs and
 *   other streams use plain read/write.
 * - A read reports `eof` as feof() does: true only when it hit the end (reading exactly
 *   the remaining bytes says false; the next read returns 0 bytes and true).
 * - Writes go through at once (stdio would hold up to 4 KiB until the next flush).
 *
 * Every failure is a SysError (system/mod.ts); commands/file.ts turns them into qemu-ga's
 * texts.
 *
 * @module
 */

import type * as NodeFs from "node:fs";
import { strerror, SysError, toSysError } from "./mod.ts";
import type { Scratch } from "./scratch.ts";

/** DEFAULT_NEW_FILE_MODE. */
const NEW_FILE_MODE = 0o666;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Linux O_ACCMODE (node:fs in Deno does not export it). */
const O_ACCMODE = 3;
/** Linux's open(2) flags (asm-generic values: the same on x86-64 and arm64). */
const C = {
  O_RDONLY: 0,
  O_WRONLY: 1,
  O_RDWR: 2,
  O_CREAT: 0o100,
  O_EXCL: 0o200,
  O_NOCTTY: 0o400,
  O_TRUNC: 0o1000,
  O_APPEND: 0o2000,
  O_NONBLOCK: 0o4000,
} as const;

/**
 * node:fs (pread/pwrite and open flags Deno's own API lacks), loaded by
 * {@link loadGuestFileSupport} before the first open: the agent starts without Node
 * compatibility, which costs memory and start-up time an agent that never opens a
 * guest file does not need to pay.
 */
let fs: typeof NodeFs | undefined;

/** Loads what guest files need; call (and await) before {@link openGuestFile}. */
export async function loadGuestFileSupport(): Promise<void> {
  fs ??= await import("node:fs");
}

function nodeFs(): typeof NodeFs {
  if (!fs) throw new Error("guest file support is not loaded (loadGuestFileSupport)");
  return fs;
}

/** What open(2) gets for one of the fopen mode strings qemu-ga accepts (§3.4). */
export interface OpenMode {
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
export const OPEN_MODES: ReadonlyMap<string, OpenMode> = new Map([
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

/** True when the mode opens for writing (anything but `r`/`rb`). */
export function writesTo(mode: OpenMode): boolean {
  return mode.flags !== C.O_RDONLY;
}

/** The step of {@link openGuestFile} that failed, for qemu-ga's text of that step. */
export type OpenStep = "open" | "verify" | "chmod";

/** {@link openGuestFile} failed at `step`; `error` is the errno (none for `verify`). */
export class OpenError extends Error {
  readonly step: OpenStep;
  readonly error: SysError | undefined;
  constructor(step: OpenStep, error?: SysError) {
    super(error?.message ?? step);
    this.name = "OpenError";
    this.step = step;
    this.error = error;
  }
}

/** How {@link openGuestFile} opens. */
export interface OpenOptions {
  /**
   * Truncate only after `verify` accepted the opened file (the file policy), instead of
   * with O_TRUNC at open.
   */
  readonly deferTruncate: boolean;
  /** Confirms the opened file (its device and inode) is the one the policy checked. */
  readonly verify?: (opened: { dev: number; ino: number }) => boolean;
}

/** Opens `target` as safe_open_or_create does; returns the fd and whether it created it. */
function openOrCreate(target: string, flags: number): { fd: number; created: boolean } {
  if (flags & C.O_CREAT) {
    try {
      return { fd: nodeFs().openSync(target, flags | C.O_EXCL, 0), created: true };
    } catch (e) {
      if (toSysError(e).code !== "EEXIST") throw e;
      return { fd: nodeFs().openSync(target, flags & ~C.O_CREAT), created: false };
    }
  }
  return { fd: nodeFs().openSync(target, flags), created: false };
}

function closeQuietly(fd: number): void {
  try {
    nodeFs().closeSync(fd);
  } catch {
    // Nothing to report: the open already failed.
  }
}

/**
 * Opens `target` in `mode` as qemu-ga's guest-file-open does: O_NOCTTY|O_NONBLOCK, a new
 * file made 0666 (removed again when that fails), and the truncation deferred past
 * `verify` when asked. Throws {@link OpenError}.
 */
export function openGuestFile(target: string, mode: OpenMode, o: OpenOptions): GuestFile {
  const flags = (o.deferTruncate ? mode.flags & ~C.O_TRUNC : mode.flags) | C.O_NOCTTY |
    C.O_NONBLOCK;
  let opened: { fd: number; created: boolean };
  try {
    opened = openOrCreate(target, flags);
  } catch (e) {
    throw new OpenError("open", toSysError(e));
  }
  const { fd, created } = opened;
  let st;
  try {
    st = nodeFs().fstatSync(fd);
  } catch (e) {
    closeQuietly(fd);
    throw new OpenError("open", toSysError(e));
  }
  if (o.verify && !o.verify(st)) {
    closeQuietly(fd);
    throw new OpenError("verify");
  }
  if (created) {
    try {
      nodeFs().fchmodSync(fd, NEW_FILE_MODE);
    } catch (e) {
      closeQuietly(fd);
      try {
        nodeFs().unlinkSync(target);
      } catch {
        // qemu-ga ignores the unlink result too.
      }
      throw new OpenError("chmod", toSysError(e));
    }
  }
  if (o.deferTruncate && (mode.flags & C.O_TRUNC) !== 0 && st.isFile()) {
    try {
      nodeFs().ftruncateSync(fd, 0);
    } catch (e) {
      closeQuietly(fd);
      throw new OpenError("open", toSysError(e));
    }
  }
  return new GuestFile(fd, mode, st);
}

/** One open guest file: the descriptor and what stdio would know of it. */
export class GuestFile {
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
  pos = 0n;

  constructor(
    fd: number,
    mode: OpenMode,
    st: { isFile(): boolean; isDirectory(): boolean; isBlockDevice(): boolean },
  ) {
    this.fd = fd;
    this.seekable = st.isFile() || st.isDirectory() || st.isBlockDevice();
    this.regular = st.isFile();
    this.isDir = st.isDirectory();
    this.readable = (mode.flags & O_ACCMODE) !== C.O_WRONLY;
    this.writable = (mode.flags & O_ACCMODE) !== C.O_RDONLY;
    this.append = mode.append;
  }

  /** The file's size now (fstat). */
  size(): bigint {
    return BigInt(nodeFs().fstatSync(this.fd).size);
  }

  /**
   * fread(count): reads until `count` bytes, EOF or an error (a SysError, after `pos` has
   * moved past what was read). The buffer starts at what a regular file can still deliver
   * (plus one byte to see EOF) and grows if the file grows under us, so a 48 MiB count on a
   * small file costs nothing. With `scratch`, the data is read into its buffer (no fstat
   * when the kept buffer already holds `count` bytes) and is valid until its next use.
   */
  read(count: number, scratch?: Scratch): { data: Uint8Array; eof: boolean } {
    let size = count;
    if (this.regular && !(scratch && count <= scratch.capacity)) {
      const remaining = this.size() - this.pos;
      if (remaining < BigInt(count)) size = Number(remaining < 0n ? 1n : remaining + 1n);
    }
    let buf = scratch ? scratch.take(size) : new Uint8Array(size);
    let got = 0;
    let eof = false;
    try {
      while (got < count) {
        if (got === buf.length) {
          const bigger = new Uint8Array(Math.min(count, buf.length * 2));
          bigger.set(buf);
          buf = bigger;
        }
        const at = this.seekable ? this.pos + BigInt(got) : null;
        // node:fs takes positions as numbers; no filesystem stores data past 2^53,
        // so the kernel's answer there is known: EBADF, EISDIR or the end.
        if (at !== null && at > MAX_SAFE) {
          if (!this.readable) throw new SysError("EBADF", strerror("EBADF"));
          if (this.isDir) throw new SysError("EISDIR", strerror("EISDIR"));
          eof = true;
          break;
        }
        const n = nodeFs().readSync(
          this.fd,
          buf,
          got,
          buf.length - got,
          at === null ? null : Number(at),
        );
        if (n === 0) {
          eof = true;
          break;
        }
        got += n;
      }
    } catch (e) {
      if (this.seekable) this.pos += BigInt(got);
      throw toSysError(e);
    }
    if (this.seekable) this.pos += BigInt(got);
    return { data: buf.subarray(0, got), eof };
  }

  /** fwrite: writes all of `data` or fails (a SysError, after `pos` moved past what was written). */
  write(data: Uint8Array): void {
    let done = 0;
    try {
      while (done < data.length) {
        const at = this.seekable && !this.append ? this.pos + BigInt(done) : null;
        if (at !== null && at > MAX_SAFE) {
          const code = this.writable ? "EFBIG" : "EBADF";
          throw new SysError(code, strerror(code));
        }
        done += nodeFs().writeSync(
          this.fd,
          data,
          done,
          data.length - done,
          at === null ? null : Number(at),
        );
      }
    } catch (e) {
      if (this.seekable && !this.append) this.pos += BigInt(done);
      throw toSysError(e);
    }
    if (!this.seekable) return;
    // O_APPEND writes land at the end and leave the offset there.
    this.pos = this.append ? this.size() : this.pos + BigInt(done);
  }

  /** close(2); a SysError when it fails (the descriptor is gone either way). */
  close(): void {
    try {
      nodeFs().closeSync(this.fd);
    } catch (e) {
      throw toSysError(e);
    }
  }
}
