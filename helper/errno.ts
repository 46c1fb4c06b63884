/**
 * errno for the whole project: names, Linux numbers and glibc's strerror(3) texts, and
 * how to read them off the errors Deno and node:fs throw. The agent (system/, through
 * system/mod.ts) and the helper both use this one module. It lives in helper/ because
 * the helper may import nothing outside helper/ (docs/security.md); it imports nothing
 * and does no I/O.
 *
 * @module
 */

/** errno name → [Linux number (x86_64, aarch64), strerror text]. */
const ERRNO: Readonly<Record<string, readonly [number, string]>> = {
  EPERM: [1, "Operation not permitted"],
  ENOENT: [2, "No such file or directory"],
  EINTR: [4, "Interrupted system call"],
  EIO: [5, "Input/output error"],
  ENXIO: [6, "No such device or address"],
  E2BIG: [7, "Argument list too long"],
  ENOEXEC: [8, "Exec format error"],
  EBADF: [9, "Bad file descriptor"],
  EAGAIN: [11, "Resource temporarily unavailable"],
  ENOMEM: [12, "Cannot allocate memory"],
  EACCES: [13, "Permission denied"],
  EBUSY: [16, "Device or resource busy"],
  EEXIST: [17, "File exists"],
  EXDEV: [18, "Invalid cross-device link"],
  ENODEV: [19, "No such device"],
  ENOTDIR: [20, "Not a directory"],
  EISDIR: [21, "Is a directory"],
  EINVAL: [22, "Invalid argument"],
  ENFILE: [23, "Too many open files in system"],
  EMFILE: [24, "Too many open files"],
  ENOTTY: [25, "Inappropriate ioctl for device"],
  ETXTBSY: [26, "Text file busy"],
  EFBIG: [27, "File too large"],
  ENOSPC: [28, "No space left on device"],
  ESPIPE: [29, "Illegal seek"],
  EROFS: [30, "Read-only file system"],
  EMLINK: [31, "Too many links"],
  ENAMETOOLONG: [36, "File name too long"],
  ENOTEMPTY: [39, "Directory not empty"],
  ELOOP: [40, "Too many levels of symbolic links"],
  EOVERFLOW: [75, "Value too large for defined data type"],
  EOPNOTSUPP: [95, "Operation not supported"],
  EDQUOT: [122, "Disk quota exceeded"],
};

const BY_NUMBER = new Map(Object.entries(ERRNO).map(([name, [n]]) => [n, name]));

/** strerror(3) text for an errno name; the name itself when unknown. */
export function strerror(name: string): string {
  return ERRNO[name]?.[1] ?? name;
}

/** The Linux number of an errno name (GuestMemoryBlockResponse's `error-code`). */
export function errnoNumber(name: string): number | undefined {
  return ERRNO[name]?.[0];
}

/** True when `name` is in the table. */
export function knownErrno(name: string): boolean {
  return ERRNO[name] !== undefined;
}

/** Deno's error classes that carry no `code`, by the errno they stand for. */
const BY_CLASS: Readonly<Record<string, string>> = {
  NotCapable: "EPERM",
  NotFound: "ENOENT",
  PermissionDenied: "EACCES",
};

/**
 * The errno name of an error Deno or node:fs threw: its `code` (`"ENOENT"`), else what its
 * class stands for (`NotFound`), else the number in its message (`(os error 5)`: Deno
 * maps some errnos to errors without a code), else `"EIO"`.
 */
export function errnoName(e: unknown): string {
  const err = e as { code?: unknown; name?: unknown; message?: unknown } | null;
  const code = err?.code;
  if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) return code;
  const byClass = typeof err?.name === "string" ? BY_CLASS[err.name] : undefined;
  if (byClass !== undefined) return byClass;
  const n = /\(os error (\d+)\)/.exec(String(err?.message ?? e))?.[1];
  return (n !== undefined ? BY_NUMBER.get(Number(n)) : undefined) ?? "EIO";
}

/**
 * The strerror part of a Deno error message: `No such file or directory` in
 * `No such file or directory (os error 2): readfile '/x'`, and `Exec format error` in
 * `Failed to spawn '/x': Exec format error (os error 8)`. Undefined when there is none.
 */
export function osErrorText(message: string): string | undefined {
  return /(?:^|: )([^:]*?) \(os error \d+\)/.exec(message)?.[1];
}
