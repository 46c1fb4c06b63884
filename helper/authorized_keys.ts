/**
 * `~user/.ssh/authorized_keys` for guest-ssh-get/add/remove-authorized-keys,
 * done by the helper (the agent has no grant on /root or /home) so that a local
 * user who owns the home directory cannot turn the root-run operation against
 * another file:
 *
 * - the user and the home directory come from the passwd file here, never from
 *   the agent;
 * - a symlinked `~/.ssh` or `authorized_keys` is refused (ELOOP); `.ssh` is
 *   opened with O_NOFOLLOW|O_DIRECTORY and every later step works inside that
 *   descriptor (`/proc/self/fd/N/NAME`, which is openat(2)), so swapping `.ssh`
 *   for a symlink half-way changes nothing;
 * - the file is opened with O_NOFOLLOW|O_NONBLOCK and must be a regular file;
 *   one with other hard links is read only when the user owns it;
 * - a new file is a temporary `authorized_keys.XXXXXX` made with
 *   O_CREAT|O_EXCL|O_NOFOLLOW in the same directory, renamed over the old name
 *   (rename never follows a link), then fchown(2)/fchmod(2) on its descriptor:
 *   no chown or chmod of a path, ever.
 *
 * Otherwise the semantics are qemu-ga's (qga-reference.md §2.3 "SSH keys"): the
 * agent gets the file's lines, or the step that failed with its errno, and builds
 * qemu-ga's texts from them (commands/accounts.ts).
 *
 * @module
 */

import type * as NodeFs from "node:fs";
import { errnoName } from "./errno.ts";
import { refusal } from "./ops.ts";

// node:fs is loaded by loadAuthorizedKeysFs, not at the helper's start: the first node:
// module loads Deno's Node compatibility (several MB and 10+ ms), which a helper started
// for any other request would pay for (docs/performance.md, "Start-up").
let fs!: typeof NodeFs;
let O_RDONLY = 0, O_WRONLY = 0, O_CREAT = 0, O_EXCL = 0, O_NOFOLLOW = 0, O_DIRECTORY = 0;
let O_NONBLOCK = 0;

/** Loads node:fs and its open flags (once); call before {@link authorizedKeys}. */
export async function loadAuthorizedKeysFs(): Promise<void> {
  if (fs !== undefined) return;
  const m = await import("node:fs");
  ({ O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = m.constants);
  fs = m;
}

/** Largest authorized_keys read (its lines travel back as JSON). */
export const MAX_AUTHORIZED_KEYS = 1024 * 1024;

/** The AuthorizedKeys payload. */
export type AuthKeysRequest =
  | { op: "get"; username: string }
  | { op: "add"; username: string; keys: string[]; reset: boolean }
  | { op: "remove"; username: string; keys: string[] };

/** The step that failed, for the agent's error text. */
export type AuthKeysStage =
  | "lookup"
  | "read"
  | "mkdir"
  | "chown-dir"
  | "chmod-dir"
  | "create"
  | "write"
  | "rename"
  | "chown"
  | "chmod";

/**
 * The reply: `lines` (get: the file split on "\n"; add and remove: null), or the
 * failed step with its errno name ("" for errno 0: an unknown user) and the path
 * (`tmp`: the temporary file for create, write and rename).
 */
export type AuthKeysReply =
  | { ok: true; lines: string[] | null }
  | { ok: false; stage: AuthKeysStage; code: string; path: string; tmp?: string };

/** A passwd entry, as the ssh-key operations need it. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Finds `name` in passwd(5) text; the first well-formed matching line wins, as getpwnam. */
export function findPasswdEntry(text: string, name: string): PasswdEntry | null {
  if (name === "") return null;
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || f[0] !== name) continue;
    if (!/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    return { name, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! };
  }
  return null;
}

class Failed extends Error {
  constructor(readonly reply: AuthKeysReply & { ok: false }) {
    super(reply.stage);
  }
}

function fail(stage: AuthKeysStage, e: unknown, path: string, tmp?: string): never {
  const code = typeof e === "string" ? e : errnoName(e);
  throw new Failed(
    tmp === undefined ? { ok: false, stage, code, path } : {
      ok: false,
      stage,
      code,
      path,
      tmp,
    },
  );
}

/** A name inside an open directory: the kernel resolves it as openat(fd, name). */
const at = (fd: number, name: string) => `/proc/self/fd/${fd}/${name}`;

/** lstat's answer, reduced to what the operations decide on. */
function kind(path: string): "missing" | "symlink" | "dir" | "other" {
  try {
    const st = fs.lstatSync(path);
    return st.isSymbolicLink() ? "symlink" : st.isDirectory() ? "dir" : "other";
  } catch (e) {
    if (errnoName(e) === "ENOENT" || errnoName(e) === "ENOTDIR") return "missing";
    throw e;
  }
}

function checkRequest(req: unknown): AuthKeysRequest {
  const r = req as Partial<Record<string, unknown>> | null;
  const bad = (what: string): never => {
    throw refusal("EINVAL", `authorized keys: ${what}`);
  };
  if (typeof r !== "object" || r === null) bad("the request is not an object");
  const name = r!.username;
  if (typeof name !== "string" || name.length > 256 || name.includes("\0")) bad("bad user name");
  if (r!.op === "get") return { op: "get", username: name as string };
  if (r!.op !== "add" && r!.op !== "remove") bad("unknown operation");
  const keys = r!.keys;
  if (!Array.isArray(keys)) bad("keys must be a list");
  for (const k of keys as unknown[]) {
    if (typeof k !== "string" || k.startsWith("#") || /[\n\0]/.test(k)) bad("invalid key");
  }
  if (r!.op === "remove") return { op: "remove", username: name as string, keys: keys as string[] };
  if (typeof r!.reset !== "boolean") bad("reset must be a boolean");
  return {
    op: "add",
    username: name as string,
    keys: keys as string[],
    reset: r!.reset as boolean,
  };
}

/** Where the files are: the passwd file read for the user (the real one: /etc/passwd). */
export interface AuthKeysOptions {
  passwd: string;
}

/** Runs one request. Throws OpError for a malformed request; every other failure is a reply. */
export function authorizedKeys(req: unknown, options: AuthKeysOptions): AuthKeysReply {
  // Never with unloaded (zero) open flags: a missing O_NOFOLLOW would follow a symlink.
  if (fs === undefined) throw new Error("authorizedKeys before loadAuthorizedKeysFs()");
  const r = checkRequest(req);
  const open: number[] = [];
  const track = (fd: number) => {
    open.push(fd);
    return fd;
  };
  try {
    let text: string;
    try {
      text = fs.readFileSync(options.passwd, "utf8");
    } catch (e) {
      fail("lookup", e, "");
    }
    const user = findPasswdEntry(text, r.username);
    if (!user) fail("lookup", "", ""); // g_unix_get_passwd_entry: errno 0
    const sshPath = `${user.home.replace(/\/+$/, "")}/.ssh`;
    const file = `${sshPath}/authorized_keys`;
    const refuseLink = () => fail("read", "ELOOP", file);

    let home: number | undefined;
    try {
      home = track(fs.openSync(user.home, O_RDONLY | O_DIRECTORY));
    } catch (e) {
      if (r.op === "get") fail("read", e, file);
      if (r.op === "remove") return { ok: true, lines: null };
      fail("mkdir", e, sshPath);
    }
    const sshKind = kind(at(home, ".ssh"));
    if (sshKind === "symlink") refuseLink();
    let ssh: number | undefined;
    if (sshKind === "dir") {
      try {
        ssh = track(fs.openSync(at(home, ".ssh"), O_RDONLY | O_DIRECTORY | O_NOFOLLOW));
      } catch (e) {
        if (r.op === "get") fail("read", e, file);
        if (r.op === "remove") return { ok: true, lines: null };
      }
    }

    if (r.op === "get") {
      if (ssh === undefined) fail("read", sshKind === "missing" ? "ENOENT" : "ENOTDIR", file);
      try {
        return { ok: true, lines: readLines(at(ssh, "authorized_keys"), user) };
      } catch (e) {
        fail("read", e, file);
      }
    }

    if (r.op === "remove") {
      if (ssh === undefined) return { ok: true, lines: null };
      const k = kind(at(ssh, "authorized_keys"));
      if (k === "missing") return { ok: true, lines: null };
      if (k === "symlink") refuseLink();
      let lines: string[];
      try {
        lines = readLines(at(ssh, "authorized_keys"), user);
      } catch (e) {
        fail("read", e, file);
      }
      writeLines(ssh, sshPath, lines.filter((l) => !r.keys.includes(l)), user);
      return { ok: true, lines: null };
    }

    // add
    let lines: string[] | null = null;
    if (ssh !== undefined) {
      if (kind(at(ssh, "authorized_keys")) === "symlink") refuseLink();
      if (!r.reset) {
        try {
          lines = readLines(at(ssh, "authorized_keys"), user);
        } catch (e) {
          if (errnoName(e) === "ELOOP") refuseLink();
          lines = null; // as qemu-ga: an unreadable file is replaced
        }
      }
    } else {
      ssh = track(makeSshDir(home, sshPath, user));
    }
    lines ??= [];
    for (const key of r.keys) if (!lines.includes(key)) lines.push(key);
    writeLines(ssh, sshPath, lines, user);
    return { ok: true, lines: null };
  } catch (e) {
    if (e instanceof Failed) return e.reply;
    throw e;
  } finally {
    for (const fd of open) fs.closeSync(fd);
  }
}

/** Reads the file without following a link, as a regular file of bounded size. */
function readLines(path: string, user: PasswdEntry): string[] {
  const fd = fs.openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  try {
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    if (!st.isFile()) throw Object.assign(new Error("not a regular file"), { code: "EINVAL" });
    // A hard link the user made to a file of someone else's (possible without
    // protected_hardlinks) is not read: its content would come back as keys.
    if (st.nlink > 1 && st.uid !== user.uid) {
      throw Object.assign(new Error("hard-linked file"), { code: "EMLINK" });
    }
    const buf = new Uint8Array(MAX_AUTHORIZED_KEYS + 1);
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
      if (n > MAX_AUTHORIZED_KEYS) {
        throw Object.assign(new Error("too large"), { code: "EFBIG" });
      }
    }
    return new TextDecoder().decode(buf.subarray(0, n)).split("\n");
  } finally {
    fs.closeSync(fd);
  }
}

/** mkdir `.ssh` 0700 inside the home descriptor, then fchown/fchmod it to the user. */
function makeSshDir(home: number, sshPath: string, user: PasswdEntry): number {
  try {
    fs.mkdirSync(at(home, ".ssh"), { mode: 0o700 });
  } catch (e) {
    fail("mkdir", e, sshPath);
  }
  let fd: number;
  try {
    fd = fs.openSync(at(home, ".ssh"), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (e) {
    fail("mkdir", e, sshPath);
  }
  try {
    fs.fchownSync(fd, user.uid, user.gid);
  } catch (e) {
    fs.closeSync(fd);
    fail("chown-dir", e, sshPath);
  }
  try {
    fs.fchmodSync(fd, 0o700);
  } catch (e) {
    fs.closeSync(fd);
    fail("chmod-dir", e, sshPath);
  }
  return fd;
}

function randomSuffix(): string {
  const abc = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  return Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => abc[b % abc.length]).join("");
}

/**
 * write_authkeys: the lines joined by "\n" (no trailing newline) into a new
 * temporary file, renamed over authorized_keys, then owned by the user, mode 0600.
 */
function writeLines(ssh: number, sshPath: string, lines: string[], user: PasswdEntry): void {
  const file = `${sshPath}/authorized_keys`;
  const data = new TextEncoder().encode(lines.join("\n"));
  let fd: number | undefined;
  let name = "";
  for (let i = 0; fd === undefined; i++) {
    name = `authorized_keys.${randomSuffix()}`;
    try {
      fd = fs.openSync(at(ssh, name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    } catch (e) {
      if (errnoName(e) !== "EEXIST" || i >= 100) fail("create", e, file, `${sshPath}/${name}`);
    }
  }
  const tmp = `${sshPath}/${name}`;
  try {
    try {
      for (let off = 0; off < data.length;) off += fs.writeSync(fd, data, off);
      fs.fsyncSync(fd);
    } catch (e) {
      fs.rmSync(at(ssh, name), { force: true });
      fail("write", e, file, tmp);
    }
    try {
      fs.renameSync(at(ssh, name), at(ssh, "authorized_keys"));
    } catch (e) {
      fs.rmSync(at(ssh, name), { force: true });
      fail("rename", e, file, tmp);
    }
    try {
      fs.fchownSync(fd, user.uid, user.gid);
    } catch (e) {
      fail("chown", e, file);
    }
    try {
      fs.fchmodSync(fd, 0o600);
    } catch (e) {
      fail("chmod", e, file);
    }
  } finally {
    fs.closeSync(fd);
  }
}
