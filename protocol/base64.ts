/**
 * Base64 input as qemu-ga decodes it (qga-reference.md §3.5): `qbase64_decode`
 * checks the character set, then GLib's lenient `g_base64_decode` does the rest.
 * Used for guest-file-write `buf-b64`, guest-exec `input-data` and
 * guest-set-user-password `password`.
 *
 * @module
 */

import { QgaError } from "./errors.ts";

/** The only error text qemu-ga gives for bad base64. */
export const BASE64_INVALID = "Base64 data contains invalid characters";

/** Every character qbase64_decode accepts (`base64_valid_chars`). */
const VALID = /^[A-Za-z0-9+/=\n]*$/;
/** Canonical padded base64: the fast path's shape. */
const CANONICAL = /^[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** GLib's mime_base64_rank: the 6-bit value of a character, `=` ranking 0, -1 for skipped. */
function rank(c: number): number {
  if (c >= 65 && c <= 90) return c - 65; // A-Z
  if (c >= 97 && c <= 122) return c - 71; // a-z
  if (c >= 48 && c <= 57) return c + 4; // 0-9
  if (c === 43) return 62; // +
  if (c === 47) return 63; // /
  if (c === 61) return 0; // =
  return -1;
}

/** g_base64_decode_step over the whole input, one call, fresh state. */
function glibDecode(s: string): Uint8Array {
  const out = new Uint8Array(Math.floor((s.length * 3) / 4) + 3);
  let o = 0;
  let v = 0;
  let i = 0;
  let last0 = 0; // most recent character counted
  let last1 = 0; // the one before
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    const r = rank(c);
    if (r < 0) continue;
    last1 = last0;
    last0 = c;
    v = ((v << 6) | r) & 0xffffff;
    i++;
    if (i === 4) {
      out[o++] = v >> 16;
      if (last1 !== 61) out[o++] = (v >> 8) & 0xff;
      if (last0 !== 61) out[o++] = v & 0xff;
      i = 0;
    }
  }
  return out.slice(0, o);
}

/**
 * Decodes base64 exactly as qemu-ga does, leniency included: `\n` is skipped, `=`
 * counts as zero bits and only drops output bytes in the last two positions of a
 * quartet, a trailing incomplete quartet is dropped silently, and a NUL ends the
 * string (qemu receives a C string). Canonical input (the common case, also after
 * removing Perl's line breaks) takes the native `Uint8Array.fromBase64` path.
 *
 * @example
 * ```ts
 * decodeQemuBase64("SGVsbG8"); // "Hel" (3 bytes)
 * decodeQemuBase64("SGVsbG8=SGVs"); // "HelloHel"
 * ```
 * @throws {QgaError} `Base64 data contains invalid characters`
 */
export function decodeQemuBase64(s: string): Uint8Array {
  // Fast path: one native pass into a buffer sized for the result. setFromBase64
  // skips ASCII whitespace (GLib skips only \n, so other whitespace takes the slow
  // path) and, with stop-before-partial, leaves a trailing incomplete quartet
  // unread, which GLib drops silently once its characters are valid.
  if (!/[ \t\r\f]/.test(s)) {
    const out = new Uint8Array(Math.floor(s.length / 4) * 3);
    try {
      const { read, written } = out.setFromBase64(s, { lastChunkHandling: "stop-before-partial" });
      if (read === s.length || VALID.test(s.slice(read))) return out.subarray(0, written);
    } catch {
      // Not plain padded base64: qemu-ga's lenient rules decide below.
    }
  }
  const nul = s.indexOf("\0");
  if (nul >= 0) s = s.slice(0, nul);
  // Canonical base64 (the common case) holds only valid characters: one scan, not two.
  if (s.length % 4 === 0 && CANONICAL.test(s)) return Uint8Array.fromBase64(s);
  if (!VALID.test(s)) throw new QgaError(BASE64_INVALID);
  if (s.includes("\n")) s = s.replaceAll("\n", "");
  if (s.length % 4 === 0 && CANONICAL.test(s)) return Uint8Array.fromBase64(s);
  return glibDecode(s);
}

/** Standard padded base64 without line breaks, as g_base64_encode writes it. */
export function encodeBase64(data: Uint8Array): string {
  return data.toBase64();
}
