/**
 * The privileged helper's operations and the allowlist that guards them.
 *
 * The allowlist is data: one line per path family, written in a small pattern
 * language so a reviewer can read it at a glance.
 *
 * - `{n}`    a decimal number (`[0-9]+`)
 * - `{name}` exactly one path segment (`[^/]+`)
 * - `{path}` one or more segments (`[^/]+(/[^/]+)*`)
 * - `{a|b}`  one of the alternatives (each a literal text)
 * - anything else is literal; every pattern is anchored at both ends
 *
 * Every check runs twice: on the path as requested (which must be absolute,
 * shorter than PATH_MAX, and free of `.`, `..` and empty segments) and again on
 * its canonical form after `realpath(3)` resolved every symlink. Both must match
 * a rule granting the access. `/proc/<helper pid>/` is written `/proc/self/` before
 * the second check. Reads are capped at {@link MAX_FILE_SIZE} and, unless the
 * rule says otherwise, only files any local user may read (mode o+r) are served,
 * so the helper never shows the agent more than an unprivileged user could see.
 *
 * @module
 */

import type { statfsSync as NodeStatfsSync } from "node:fs";
import { errnoName } from "./errno.ts";
import {
  MAX_FILE_SIZE,
  MAX_PATH,
  OpError,
  refusal,
  toWireStatfs,
  type WireDirEntry,
  type WireStatfs,
} from "./protocol.ts";

/** What a rule grants. `read` implies `list` on the same path. */
export type Access = "read" | "list" | "write" | "channel";

/** One allowlist entry. */
export interface Rule {
  /** The pattern (see the module doc). */
  pattern: string;
  access: Access;
  /** For `write`: the values accepted (a trailing newline is allowed too). */
  values?: readonly string[];
  /** For `read`: serve files that are not world-readable (the file is filtered instead). */
  private?: true;
  /** For `channel`: only when the helper was started with `--allow-pty-channels` (tests). */
  testOnly?: true;
}

/** Sysfs attribute files the disk, network, CPU and memory commands read. */
const ATTRS = "{dev|uevent|size|removable|ro|serial|wwid|vendor|model|rev|unique_id|device|" +
  "subsystem_vendor|subsystem_device|class|address|type|ifindex|flags|mtu|operstate|name|uuid|" +
  "partition|start|online|state|phys_index|valid_zones|block_size_bytes|firmware_rev|nsid|devtype}";

/** The allowlist. Adding a path is adding a line. */
export const RULES: readonly Rule[] = [
  // /proc files read by guest-get-fsinfo, -diskstats, -cpustats, -load, -osinfo, network
  { pattern: "/proc/self/{mountinfo|mounts}", access: "read" },
  { pattern: "/proc/{self/net|net}/{dev|route|ipv6_route}", access: "read" },
  { pattern: "/proc/{diskstats|stat|loadavg|uptime}", access: "read" },
  { pattern: "/proc/sys/kernel/{version|osrelease|hostname}", access: "read" },
  // Only AT_PAGESZ and AT_CLKTCK survive (see filterAuxv): no addresses leave the helper.
  { pattern: "/proc/self/auxv", access: "read", private: true },
  // sysfs attributes (canonical paths live under /sys/devices)
  { pattern: `/sys/{devices|block|class|dev|bus}/{path}/${ATTRS}`, access: "read" },
  { pattern: "/sys/power/{state|disk|mem_sleep}", access: "read" },
  // Names, links and existence under /sys and /dev (no file contents)
  { pattern: "/sys", access: "list" },
  { pattern: "/sys/{devices|block|class|dev|bus|power}", access: "list" },
  { pattern: "/sys/{devices|block|class|dev|bus|power}/{path}", access: "list" },
  { pattern: "/dev", access: "list" },
  {
    pattern: "/dev/{block|char|disk|mapper|virtio-ports|vport{n}p{n}|ttyS{n}|hvc{n}}",
    access: "list",
  },
  { pattern: "/dev/{block|char|disk|mapper|virtio-ports}/{path}", access: "list" },
  { pattern: "/dev/{vd|sd|hd|xvd|nvme|dm-|md|loop|sr}{name}", access: "list" },
  // Writes, with the only values qemu-ga ever writes
  { pattern: "/sys/devices/system/cpu/cpu{n}/online", access: "write", values: ["0", "1"] },
  {
    pattern: "/sys/devices/system/memory/memory{n}/state",
    access: "write",
    values: ["online", "offline"],
  },
  { pattern: "/sys/power/state", access: "write", values: ["mem", "disk", "freeze", "standby"] },
  // Channel devices (requested names, then what they resolve to)
  { pattern: "/dev/virtio-ports/{name}", access: "channel" },
  { pattern: "/dev/{vport{n}p{n}|ttyS{n}|hvc{n}}", access: "channel" },
  { pattern: "/dev/pts/{n}", access: "channel", testOnly: true },
];

/** Compiles a rule pattern into an anchored regular expression. */
export function compilePattern(pattern: string): RegExp {
  let out = "";
  let i = 0;
  const literal = (s: string) => s.replace(/[.*+?^$()[\]\\|]/g, "\\$&");
  const group = (start: number): [string, number] => {
    // Parses `{...}` starting at `start` (the `{`); alternatives may nest groups.
    let body = "";
    let j = start + 1;
    let text = "";
    while (j < pattern.length && pattern[j] !== "}") {
      if (pattern[j] === "{") {
        const [sub, end] = group(j);
        text += sub;
        j = end;
      } else if (pattern[j] === "|") {
        body += text + "|";
        text = "";
        j++;
      } else {
        text += literal(pattern[j] as string);
        j++;
      }
    }
    if (j >= pattern.length) throw new SyntaxError(`unclosed "{" in pattern "${pattern}"`);
    body += text;
    const word = pattern.slice(start + 1, j);
    if (word === "n") return ["[0-9]+", j + 1];
    if (word === "name") return ["[^/]+", j + 1];
    if (word === "path") return ["[^/]+(?:/[^/]+)*", j + 1];
    return [`(?:${body})`, j + 1];
  };
  while (i < pattern.length) {
    if (pattern[i] === "{") {
      const [re, end] = group(i);
      out += re;
      i = end;
    } else {
      out += literal(pattern[i] as string);
      i++;
    }
  }
  return new RegExp(`^${out}$`);
}

// OpError and refusal live in protocol.ts, which the agent's code also loads (through
// programs.ts), so that loading them does not load this file's node:fs.
export { OpError, refusal } from "./protocol.ts";

/** Options of {@link Ops}. */
export interface OpsOptions {
  /** Accept `/dev/pts/N` channels (tests only; never set by helper/qga-helper). */
  allowPtyChannels?: boolean;
}

interface Compiled {
  re: RegExp;
  rule: Rule;
}

/** Checks a requested path lexically; returns it unchanged or throws OpError. */
export function checkShape(op: string, path: unknown): string {
  if (typeof path !== "string") {
    throw refusal("EINVAL", `${op}: path is not a string`);
  }
  const shown = JSON.stringify(path.slice(0, 200));
  if (path.length === 0 || path.length >= MAX_PATH) {
    throw refusal("ENAMETOOLONG", `${op} of ${shown}: bad path length`);
  }
  if (path.includes("\0")) {
    throw refusal("EINVAL", `${op} of ${shown}: NUL in path`);
  }
  if (!path.startsWith("/")) {
    throw refusal("EPERM", `${op} of ${shown}: not absolute`);
  }
  if (path !== "/") {
    for (const seg of path.slice(1).split("/")) {
      if (seg === "" || seg === "." || seg === "..") {
        throw refusal("EPERM", `${op} of ${shown}: "." , ".." or empty segment`);
      }
    }
  }
  return path;
}

/** Any error of `op` on `path` as an OpError (its errno name and Deno's message). */
export function errorOf(e: unknown, op: string, path: string): OpError {
  if (e instanceof OpError) return e;
  const err = e as { message?: string };
  const code = errnoName(e);
  return new OpError(code, `${op} ${JSON.stringify(path)}: ${err?.message ?? String(e)}`);
}

/** Keeps only AT_PAGESZ (6) and AT_CLKTCK (17) of an auxiliary vector (64-bit entries). */
export function filterAuxv(data: Uint8Array): Uint8Array {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out = new Uint8Array(16 * 3);
  const ov = new DataView(out.buffer);
  let n = 0;
  for (let off = 0; off + 16 <= data.length; off += 16) {
    const type = view.getBigUint64(off, true);
    if (type === 6n || type === 17n) {
      ov.setBigUint64(n * 16, type, true);
      ov.setBigUint64(n * 16 + 8, view.getBigUint64(off + 8, true), true);
      n++;
      if (n === 2) break;
    }
  }
  return out.slice(0, (n + 1) * 16); // ends with an AT_NULL entry
}

/**
 * The helper's operations, each guarded by the allowlist. Every method throws
 * {@link OpError}; refusals use code EPERM and name the op and the path.
 */
export class Ops {
  readonly #rules: Compiled[];
  readonly #selfPrefix = `/proc/${Deno.pid}`;

  constructor(options: OpsOptions = {}) {
    this.#rules = RULES
      .filter((r) => !r.testOnly || options.allowPtyChannels === true)
      .map((rule) => ({ re: compilePattern(rule.pattern), rule }));
  }

  /** The rule granting `access` to `path`, if any (`read` rules also grant `list`). */
  match(path: string, access: Access): Rule | undefined {
    for (const c of this.#rules) {
      const ok = c.rule.access === access || (access === "list" && c.rule.access === "read");
      if (ok && c.re.test(path)) return c.rule;
    }
    return undefined;
  }

  #require(op: string, path: string, access: Access, form: "requested" | "resolved"): Rule {
    const rule = this.match(path, access);
    if (!rule) {
      const what = form === "requested" ? "" : " (after resolving symlinks)";
      throw refusal("EPERM", `${op} of ${JSON.stringify(path)}${what}: not in the allowlist`);
    }
    return rule;
  }

  /** /proc/<own pid>/x is reported as /proc/self/x. */
  #canonical(real: string): string {
    if (real === this.#selfPrefix || real.startsWith(this.#selfPrefix + "/")) {
      return "/proc/self" + real.slice(this.#selfPrefix.length);
    }
    return real;
  }

  async #resolve(op: string, path: string, access: Access): Promise<{ real: string; rule: Rule }> {
    checkShape(op, path);
    this.#require(op, path, access, "requested");
    let real: string;
    try {
      real = await Deno.realPath(path);
    } catch (e) {
      throw errorOf(e, op, path);
    }
    const rule = this.#require(op, this.#canonical(real), access, "resolved");
    return { real, rule };
  }

  /** Parent resolved, last segment kept: for readlink and exists, which must not follow the link. */
  async #resolveParent(op: string, path: string): Promise<string> {
    checkShape(op, path);
    this.#require(op, path, "list", "requested");
    const cut = path.lastIndexOf("/");
    const parent = cut === 0 ? "/" : path.slice(0, cut);
    let realParent: string;
    try {
      realParent = await Deno.realPath(parent);
    } catch (e) {
      throw errorOf(e, op, path);
    }
    const real = `${realParent === "/" ? "" : realParent}/${path.slice(cut + 1)}`;
    this.#require(op, this.#canonical(real), "list", "resolved");
    return real;
  }

  /** Reads a whole allowlisted file (at most {@link MAX_FILE_SIZE} bytes). */
  async readFile(path: string): Promise<Uint8Array> {
    const { real, rule } = await this.#resolve("read", path, "read");
    try {
      using f = await Deno.open(real, { read: true });
      const st = await f.stat();
      if (!st.isFile) {
        throw new OpError("EISDIR", `read ${JSON.stringify(path)}: not a regular file`);
      }
      if (!rule.private && ((st.mode ?? 0) & 0o004) === 0) {
        throw refusal("EPERM", `read of ${JSON.stringify(path)}: not world-readable`);
      }
      const chunks: Uint8Array[] = [];
      let total = 0;
      for (;;) {
        const buf = new Uint8Array(64 * 1024);
        const n = await f.read(buf);
        if (n === null) break;
        total += n;
        if (total > MAX_FILE_SIZE) {
          throw new OpError(
            "EFBIG",
            `read ${JSON.stringify(path)}: larger than ${MAX_FILE_SIZE} bytes`,
          );
        }
        chunks.push(buf.subarray(0, n));
      }
      const out = new Uint8Array(total);
      let off = 0;
      for (const c of chunks) {
        out.set(c, off);
        off += c.length;
      }
      return rule.pattern === "/proc/self/auxv" ? filterAuxv(out) : out;
    } catch (e) {
      throw errorOf(e, "read", path);
    }
  }

  /** Lists an allowlisted directory in readdir order. */
  async readDir(path: string): Promise<WireDirEntry[]> {
    const { real } = await this.#resolve("readdir", path, "list");
    try {
      const out: WireDirEntry[] = [];
      for await (const e of Deno.readDir(real)) {
        out.push({
          name: e.name,
          isFile: e.isFile,
          isDirectory: e.isDirectory,
          isSymlink: e.isSymlink,
        });
      }
      return out;
    } catch (e) {
      throw errorOf(e, "readdir", path);
    }
  }

  /** readlink(2) of an allowlisted link. */
  async readLink(path: string): Promise<string> {
    const real = await this.#resolveParent("readlink", path);
    try {
      return await Deno.readLink(real);
    } catch (e) {
      throw errorOf(e, "readlink", path);
    }
  }

  /** realpath(3); the result must be allowlisted too. */
  async realPath(path: string): Promise<string> {
    const { real } = await this.#resolve("realpath", path, "list");
    return this.#canonical(real);
  }

  /** lstat succeeds (false for ENOENT and ENOTDIR). */
  async exists(path: string): Promise<boolean> {
    let real: string;
    try {
      real = await this.#resolveParent("exists", path);
    } catch (e) {
      if (e instanceof OpError && (e.code === "ENOENT" || e.code === "ENOTDIR")) return false;
      throw e;
    }
    try {
      await Deno.lstat(real);
      return true;
    } catch (e) {
      const err = errorOf(e, "exists", path);
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return false;
      throw err;
    }
  }

  /** statvfs(3) of a path that is a mount point right now (per /proc/self/mountinfo). */
  async statfs(path: string): Promise<WireStatfs> {
    checkShape("statfs", path);
    let mountinfo: string;
    try {
      mountinfo = await Deno.readTextFile("/proc/self/mountinfo");
    } catch (e) {
      throw errorOf(e, "statfs", path);
    }
    if (!mountPoints(mountinfo).has(path)) {
      throw refusal("EPERM", `statfs of ${JSON.stringify(path)}: not a mount point`);
    }
    await loadStatvfs();
    return statvfs(path);
  }

  /** Writes one of the allowed values to an allowlisted sysfs file. */
  async writeFile(path: string, data: unknown): Promise<void> {
    if (typeof data !== "string") {
      throw refusal("EINVAL", "write: value is not a string");
    }
    const { real, rule } = await this.#resolve("write", path, "write");
    const value = data.endsWith("\n") ? data.slice(0, -1) : data;
    if (!rule.values?.includes(value)) {
      throw refusal(
        "EINVAL",
        `write of ${JSON.stringify(data.slice(0, 40))} to ${JSON.stringify(path)}: ` +
          `value not allowed`,
      );
    }
    try {
      using f = await Deno.open(real, { write: true });
      const bytes = new TextEncoder().encode(data);
      let off = 0;
      while (off < bytes.length) off += await f.write(bytes.subarray(off));
    } catch (e) {
      throw errorOf(e, "write", path);
    }
  }

  /** Checks a channel device name as requested (before any symlink is resolved). */
  checkChannelName(op: string, path: unknown): string {
    checkShape(`channel ${op}`, path);
    this.#require(`channel ${op}`, path as string, "channel", "requested");
    return path as string;
  }

  /** Resolves and checks a channel device; returns the canonical device path. */
  async channelPath(path: string): Promise<string> {
    checkShape("channel open", path);
    // Test-only pty channels may be requested through any symlink (socat's link=).
    const ptyTest = this.match("/dev/pts/0", "channel") !== undefined;
    if (!ptyTest) this.#require("channel open", path, "channel", "requested");
    let real: string;
    try {
      real = await Deno.realPath(path);
    } catch (e) {
      throw errorOf(e, "open", path);
    }
    this.#require("channel open", real, "channel", "resolved");
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(real);
    } catch (e) {
      throw errorOf(e, "open", path);
    }
    if (!st.isCharDevice) {
      throw refusal("EPERM", `channel open of ${JSON.stringify(path)}: not a character device`);
    }
    return real;
  }
}

/** Mount points of a mountinfo text (field 5, octal escapes decoded). */
export function mountPoints(mountinfo: string): Set<string> {
  const out = new Set<string>();
  for (const line of mountinfo.split("\n")) {
    const field = line.split(" ")[4];
    if (field === undefined) continue;
    out.add(
      field.replace(/\\([0-3][0-7][0-7])/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))),
    );
  }
  return out;
}

let statfsSync: typeof NodeStatfsSync | undefined;

/**
 * Loads node:fs for {@link statvfs}, once. Not at the helper's start: the first node:
 * module loads Deno's Node compatibility (several MB and 10+ ms), which a helper started
 * for any other request would pay for (docs/performance.md, "Start-up").
 */
export async function loadStatvfs(): Promise<void> {
  statfsSync ??= (await import("node:fs")).statfsSync;
}

/**
 * statvfs(3) of `path`, which the caller has checked is a current mount point; after
 * {@link loadStatvfs}.
 */
export function statvfs(path: string): WireStatfs {
  if (statfsSync === undefined) throw new Error("statvfs before loadStatvfs()");
  try {
    return toWireStatfs(statfsSync(path));
  } catch (e) {
    throw errorOf(e, "statfs", path);
  }
}

let scratch = new Uint8Array(64 * 1024);

/**
 * Reads a small generated file (/proc, sysfs) as text, synchronously, into a reused
 * buffer: cheaper than Deno.readTextFileSync for files whose size stat reports as 0 or
 * 4096. No allowlist check: for the fixed paths of the snapshots only. At most
 * {@link MAX_FILE_SIZE} bytes (EFBIG beyond).
 */
export function readTextSync(path: string): string {
  using f = Deno.openSync(path, { read: true });
  let n = 0;
  for (;;) {
    if (n === scratch.length) {
      if (n >= MAX_FILE_SIZE) throw new OpError("EFBIG", `read ${JSON.stringify(path)}: too large`);
      const bigger = new Uint8Array(n * 2);
      bigger.set(scratch);
      scratch = bigger;
    }
    const r = f.readSync(scratch.subarray(n));
    if (r === null || r === 0) break;
    n += r;
  }
  return new TextDecoder().decode(scratch.subarray(0, n));
}
