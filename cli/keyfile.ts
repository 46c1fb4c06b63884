/**
 * A GKeyFile reader and writer for what qemu-ga needs (qga-reference.md §4.2, §4.3):
 * `g_key_file_load_from_file` with flags 0, `g_key_file_get_string`,
 * `g_key_file_get_boolean`, `g_key_file_set_string` and `g_key_file_to_data`, with
 * GLib 2.74's parsing rules and error texts.
 *
 * Parsing works on the file's bytes (held as a latin1 string, one char per byte) so
 * that, as in GLib, only values that are read must be valid UTF-8.
 *
 * @example
 * ```ts
 * const kf = parseKeyFile(new TextEncoder().encode("[general]\ndaemon = true\n"));
 * kf.getBoolean("general", "daemon"); // true
 * ```
 *
 * @module
 */

import { osErrorText } from "../helper/errno.ts";

/** Why a key file could not be loaded or a value not read. */
export type KeyFileErrorKind = "not-found" | "file" | "parse" | "invalid-value" | "encoding";

/** A GLib-style error: `message` is the exact text GLib puts in `GError.message`. */
export class KeyFileError extends Error {
  /** What failed; `not-found` is the one qemu-ga tolerates for an optional config. */
  readonly kind: KeyFileErrorKind;

  /** Creates an error with GLib's message text. */
  constructor(kind: KeyFileErrorKind, message: string) {
    super(message);
    this.name = "KeyFileError";
    this.kind = kind;
  }
}

const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const utf8Loose = new TextDecoder("utf-8");

/**
 * Bytes to a byte string (one char per byte). Not TextDecoder("latin1"): WHATWG maps
 * that label to windows-1252, which changes bytes 0x80-0x9f.
 */
function toByteStringFromBytes(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

/** Byte string (one char per byte) to bytes. */
function toBytes(byteString: string): Uint8Array {
  const out = new Uint8Array(byteString.length);
  for (let i = 0; i < byteString.length; i++) out[i] = byteString.charCodeAt(i);
  return out;
}

/** `g_utf8_make_valid`: bytes to text, invalid sequences replaced by U+FFFD. */
function makeValid(byteString: string): string {
  return utf8Loose.decode(toBytes(byteString));
}

/** `g_ascii_isspace`: space, \t, \n, \v, \f, \r. */
function isAsciiSpace(c: string | undefined): boolean {
  return c === " " || c === "\t" || c === "\n" || c === "\v" || c === "\f" || c === "\r";
}

/** A loaded key file: groups of key → raw (still escaped) values, as GLib holds them. */
export class KeyFile {
  #groups = new Map<string, Map<string, string>>();
  #current: Map<string, string> | undefined;
  #startGroup: string | undefined;

  /** Parses one line (without its line break), as `g_key_file_parse_line`. */
  parseLine(line: string): void {
    let start = 0;
    while (isAsciiSpace(line[start])) start++;
    const rest = line.slice(start);
    if (rest === "" || rest[0] === "#") return;
    if (isGroupLine(rest)) {
      this.#parseGroup(rest);
      return;
    }
    const eq = rest.indexOf("=");
    if (eq > 0) {
      this.#parseKeyValue(rest, eq);
      return;
    }
    throw new KeyFileError(
      "parse",
      `Key file contains line “${
        makeValid(line)
      }” which is not a key-value pair, group, or comment`,
    );
  }

  #parseGroup(line: string): void {
    const name = line.slice(1, line.lastIndexOf("]"));
    if (!isGroupName(name)) {
      throw new KeyFileError("parse", `Invalid group name: ${makeValid(name)}`);
    }
    let group = this.#groups.get(name);
    if (group === undefined) {
      group = new Map();
      this.#groups.set(name, group);
    }
    this.#startGroup ??= name;
    this.#current = group;
  }

  #parseKeyValue(line: string, eq: number): void {
    if (this.#current === undefined) {
      throw new KeyFileError("parse", "Key file does not start with a group");
    }
    let keyEnd = eq;
    while (keyEnd > 0 && isAsciiSpace(line[keyEnd - 1])) keyEnd--;
    const key = line.slice(0, keyEnd);
    if (!isKeyName(key)) throw new KeyFileError("parse", `Invalid key name: ${makeValid(key)}`);
    let valueStart = eq + 1;
    while (isAsciiSpace(line[valueStart])) valueStart++;
    const value = line.slice(valueStart);
    if (
      key === "Encoding" && this.#current === this.#groups.get(this.#startGroup ?? "") &&
      value.toLowerCase() !== "utf-8"
    ) {
      throw new KeyFileError(
        "encoding",
        `Key file contains unsupported encoding “${makeValid(value)}”`,
      );
    }
    // A translation (key[locale]) never answers a lookup of the plain key: keep it out.
    if (key.includes("[")) return;
    this.#current.set(key, value);
  }

  /** `g_key_file_has_key`. */
  hasKey(group: string, key: string): boolean {
    return this.#groups.get(group)?.has(toByteString(key)) ?? false;
  }

  /** `g_key_file_get_string`: the unescaped value; throws GLib's errors. */
  getString(group: string, key: string): string {
    const raw = this.#raw(group, key);
    let text: string;
    try {
      text = utf8Strict.decode(toBytes(raw));
    } catch {
      throw new KeyFileError(
        "encoding",
        `Key file contains key “${key}” with value “${makeValid(raw)}” which is not UTF-8`,
      );
    }
    try {
      return unescapeValue(text);
    } catch (e) {
      if (e instanceof KeyFileError && e.kind === "invalid-value") {
        throw new KeyFileError(
          "invalid-value",
          `Key file contains key “${key}” which has a value that cannot be interpreted.`,
        );
      }
      throw e;
    }
  }

  /** `g_key_file_get_boolean`: `true`/`false`/`1`/`0`, trailing whitespace allowed. */
  getBoolean(group: string, key: string): boolean {
    const raw = this.#raw(group, key);
    let end = raw.length;
    while (end > 0 && isAsciiSpace(raw[end - 1])) end--;
    const word = raw.slice(0, end);
    if (word === "true" || word === "1") return true;
    if (word === "false" || word === "0") return false;
    throw new KeyFileError(
      "invalid-value",
      `Key file contains key “${key}” which has a value that cannot be interpreted.`,
    );
  }

  #raw(group: string, key: string): string {
    const g = this.#groups.get(group);
    if (g === undefined) {
      throw new KeyFileError("parse", `Key file does not have group “${group}”`);
    }
    const v = g.get(toByteString(key));
    if (v === undefined) {
      throw new KeyFileError("parse", `Key file does not have key “${key}” in group “${group}”`);
    }
    return v;
  }
}

/** Text to its UTF-8 byte string (keys are looked up in the file's byte form). */
function toByteString(text: string): string {
  return toByteStringFromBytes(new TextEncoder().encode(text));
}

/** `g_key_file_line_is_group`: `[name]`, then only spaces or tabs. */
function isGroupLine(line: string): boolean {
  if (line[0] !== "[") return false;
  const close = line.indexOf("]");
  if (close < 0) return false;
  return /^[ \t]*$/.test(line.slice(close + 1));
}

/** `g_key_file_is_group_name`: non-empty, no `[`, `]` or control characters. */
function isGroupName(name: string): boolean {
  // deno-lint-ignore no-control-regex
  return name.length > 0 && !/[\[\]\x00-\x1f\x7f]/.test(name);
}

/** `g_key_file_is_key_name`, for a key already stripped of surrounding whitespace. */
function isKeyName(key: string): boolean {
  let q = 0;
  while (q < key.length && key[q] !== "=" && key[q] !== "[" && key[q] !== "]") q++;
  if (q === 0) return false;
  if (key[0] === " " || key[q - 1] === " ") return false;
  if (key[q] === "[") {
    q++;
    const localeStart = q;
    while (q < key.length && key[q] !== "]") q++;
    const locale = makeValid(key.slice(localeStart, q));
    if (!/^[\p{L}\p{N}\-_.@]*$/u.test(locale)) return false;
    if (key[q] !== "]") return false;
    q++;
  }
  return q >= key.length;
}

/** `g_key_file_parse_value_as_string` without list pieces: `\s \n \t \r \\`. */
export function unescapeValue(value: string): string {
  let out = "";
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c !== "\\") {
      out += c;
      continue;
    }
    i++;
    const e = value[i];
    switch (e) {
      case "s":
        out += " ";
        break;
      case "n":
        out += "\n";
        break;
      case "t":
        out += "\t";
        break;
      case "r":
        out += "\r";
        break;
      case "\\":
        out += "\\";
        break;
      case undefined:
        throw new KeyFileError(
          "invalid-value",
          "Key file contains escape character at end of line",
        );
      default:
        throw new KeyFileError(
          "invalid-value",
          `Key file contains invalid escape sequence “\\${e}”`,
        );
    }
  }
  return out;
}

/** `g_key_file_parse_string_as_value` (no list separator): the on-disk form of a string. */
export function escapeValue(text: string): string {
  let out = "";
  let leading = true;
  for (const c of text) {
    switch (c) {
      case " ":
        out += leading ? "\\s" : " ";
        break;
      case "\t":
        out += leading ? "\\t" : "\t";
        break;
      case "\n":
        out += "\\n";
        break;
      case "\r":
        out += "\\r";
        break;
      case "\\":
        out += "\\\\";
        leading = false;
        break;
      default:
        out += c;
        leading = false;
    }
  }
  return out;
}

/**
 * `g_key_file_to_data` for one group whose values were set with `g_key_file_set_string`
 * or `g_key_file_set_boolean` (pass booleans as `"true"`/`"false"`).
 */
export function formatKeyFile(
  group: string,
  entries: readonly (readonly [string, string])[],
): string {
  let out = `[${group}]\n`;
  for (const [key, value] of entries) out += `${key}=${escapeValue(value)}\n`;
  return out;
}

/**
 * Parses key-file bytes as `g_key_file_load_from_data`: lines end at `\n` (a `\r`
 * before it is dropped); the first error stops parsing.
 */
export function parseKeyFile(bytes: Uint8Array): KeyFile {
  const kf = new KeyFile();
  const text = toByteStringFromBytes(bytes);
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    const isLast = i === lines.length - 1;
    kf.parseLine(!isLast && line.endsWith("\r") ? line.slice(0, -1) : line);
  });
  return kf;
}

/** The OS part of a Deno error message (`No such file or directory (os error 2): open …`). */
function osMessage(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return osErrorText(message) ?? message;
}

/**
 * `g_key_file_load_from_file(path, 0)`: open errors carry `strerror` text (kind
 * `not-found` for ENOENT), a non-regular file is `Not a regular file`, then the
 * content is parsed. Needs read permission on `path`.
 */
export async function loadKeyFile(path: string): Promise<KeyFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new KeyFileError(e instanceof Deno.errors.NotFound ? "not-found" : "file", osMessage(e));
  }
  let bytes: Uint8Array;
  try {
    const st = await file.stat();
    if (!st.isFile) throw new KeyFileError("parse", "Not a regular file");
    bytes = new Uint8Array(await new Response(file.readable).arrayBuffer());
  } catch (e) {
    if (e instanceof KeyFileError) throw e;
    throw new KeyFileError("file", osMessage(e));
  } finally {
    try {
      file.close();
    } catch {
      // file.readable closes the file when fully read.
    }
  }
  return parseKeyFile(bytes);
}
