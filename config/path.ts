/**
 * POSIX path operations on strings: what node:path's `normalize`, `join`, `dirname` and
 * `resolve` and node:url's `fileURLToPath` do, for the agent's own code. The agent's
 * start-up imports no `node:` module (the first one costs Deno's Node compatibility
 * layer: about 6 MB of memory and tens of milliseconds, docs/performance.md); the modules
 * that need node:fs or node:net load them when first used. tests/unit/path_test.ts
 * compares every function with node:path.
 *
 * @module
 */

/** Collapses `//`, `.` and `..` (`..` at the root stays at the root); "." for "". */
export function normalize(path: string): string {
  if (path === "") return ".";
  const absolute = path.startsWith("/");
  const out: string[] = [];
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
      continue;
    }
    out.push(seg);
  }
  const body = out.join("/");
  const trailing = path.endsWith("/") ? "/" : "";
  if (absolute) return body === "" ? "/" : `/${body}${trailing}`;
  return (body === "" ? "." : body) + trailing;
}

/** The segments joined with "/", normalised ("." when all are empty). */
export function join(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  return joined === "" ? "." : normalize(joined);
}

/**
 * The parent of `path`: everything before its last "/" that is not trailing (repeated
 * slashes kept, as node:path does); "/" for top-level names, "." for a bare name.
 */
export function dirname(path: string): string {
  if (path === "") return ".";
  const hasRoot = path.startsWith("/");
  let end = -1;
  let inTrailingSlashes = true;
  for (let i = path.length - 1; i >= 1; i--) {
    if (path[i] !== "/") inTrailingSlashes = false;
    else if (!inTrailingSlashes) {
      end = i;
      break;
    }
  }
  if (end === -1) return hasRoot ? "/" : ".";
  if (hasRoot && end === 1) return "//";
  return path.slice(0, end);
}

/** An absolute, normalised path: the segments from the right up to the first absolute
 * one, against the working directory when none is (which needs a read grant). */
export function resolve(...parts: string[]): string {
  let path = "";
  for (let i = parts.length - 1; i >= 0 && !path.startsWith("/"); i--) {
    const p = parts[i]!;
    if (p === "") continue;
    path = path === "" ? p : `${p}/${path}`;
  }
  if (!path.startsWith("/")) path = `${Deno.cwd()}/${path}`;
  const n = normalize(path);
  return n.length > 1 ? n.replace(/\/$/, "") : n;
}

/** The path of a `file:` URL (percent-decoded). */
export function fileURLToPath(url: string | URL): string {
  const u = typeof url === "string" ? new URL(url) : url;
  if (u.protocol !== "file:") throw new TypeError(`not a file: URL: ${u.href}`);
  if (u.hostname !== "" && u.hostname !== "localhost") {
    throw new TypeError(`file: URL with a host: ${u.href}`);
  }
  if (/%2f/i.test(u.pathname)) throw new TypeError(`encoded / in a file: URL: ${u.href}`);
  return decodeURIComponent(u.pathname);
}
