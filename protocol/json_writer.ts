/**
 * qemu's JSON serialization (qga-reference.md §1.4, qobject/json-writer.c and
 * qdict.c): compact with a space after `:` and `,`; every non-ASCII or control
 * character written as `\uXXXX` in upper-case hex (so the output is 7-bit ASCII);
 * doubles as C's `%.17g`; object members in QDict hash order.
 *
 * Values come from two places: replies built by handlers (plain objects, numbers,
 * bigints, strings, booleans, arrays; member order given by the return type
 * descriptor or else by the object's own key order) and echoed request ids (parsed
 * {@link JsonValue}s, whose Map order is the parse order).
 *
 * @module
 */

import { QNum } from "./value.ts";
import type { StructDesc, TypeDesc } from "./types.ts";

/** Number of QDict buckets (QDICT_BUCKET_MAX). */
const BUCKETS = 512;

const encoder = new TextEncoder();

/** tdb_hash of qobject/qdict.c over the key's UTF-8 bytes. */
export function tdbHash(key: string): number {
  const b = encoder.encode(key);
  let v = Math.imul(0x238f13af, b.length) >>> 0;
  for (let i = 0; i < b.length; i++) {
    v = (v + ((b[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  }
  return (Math.imul(1103515243, v) + 12345) >>> 0;
}

const bucketCache = new Map<string, number>();

function bucketOf(key: string): number {
  let b = bucketCache.get(key);
  if (b === undefined) {
    b = tdbHash(key) % BUCKETS;
    if (bucketCache.size < 4096) bucketCache.set(key, b);
  }
  return b;
}

/**
 * Orders keys (given in insertion order) as a QDict iterates them: by bucket,
 * and within a bucket the most recently inserted first.
 */
export function qdictOrder(keys: readonly string[]): string[] {
  const indexed = keys.map((k, i) => ({ k, i, b: bucketOf(k) }));
  indexed.sort((x, y) => x.b - y.b || y.i - x.i);
  return indexed.map((e) => e.k);
}

function hex4(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, "0");
}

function isNonCharacter(cp: number): boolean {
  return (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe;
}

const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/** Quotes a string as qemu's quoted_str does. */
export function quoteString(s: string): string {
  if (PLAIN.test(s)) return `"${s}"`;
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    let cp = s.charCodeAt(i);
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < s.length) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    switch (cp) {
      case 0x22:
        out += '\\"';
        continue;
      case 0x5c:
        out += "\\\\";
        continue;
      case 0x08:
        out += "\\b";
        continue;
      case 0x0c:
        out += "\\f";
        continue;
      case 0x0a:
        out += "\\n";
        continue;
      case 0x0d:
        out += "\\r";
        continue;
      case 0x09:
        out += "\\t";
        continue;
    }
    if ((cp >= 0xd800 && cp <= 0xdfff) || isNonCharacter(cp)) cp = 0xfffd;
    if (cp > 0xffff) {
      out += `\\u${hex4(0xd800 + ((cp - 0x10000) >> 10))}\\u${
        hex4(0xdc00 + ((cp - 0x10000) & 0x3ff))
      }`;
    } else if (cp < 0x20 || cp >= 0x7f) {
      out += `\\u${hex4(cp)}`;
    } else {
      out += String.fromCharCode(cp);
    }
  }
  return out + '"';
}

/**
 * Decodes bytes as qemu's writer reads a C string: stops at the first NUL, and
 * every invalid (modified) UTF-8 sequence or noncharacter becomes U+FFFD, one per
 * sequence as mod_utf8_codepoint consumes it.
 */
export function bytesToQemuString(b: Uint8Array): string {
  let out = "";
  let i = 0;
  const minCp = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];
  while (i < b.length) {
    const byte = b[i]!;
    if (byte === 0) break;
    i++;
    if (byte < 0x80) {
      out += String.fromCharCode(byte);
      continue;
    }
    if (byte >= 0xfe || (byte & 0x40) === 0) {
      out += "\ufffd";
      continue;
    }
    let len = 0;
    let mask = 0x80;
    for (; byte & mask; mask >>= 1) len++;
    let cp = byte & (mask - 1);
    let bad = false;
    for (let k = 1; k < len; k++) {
      const c = i < b.length ? b[i]! : 0;
      if ((c & 0xc0) !== 0x80) {
        bad = true;
        break;
      }
      i++;
      cp = cp * 64 + (c & 0x3f);
    }
    if (
      bad || cp > 0x10ffff || isNonCharacter(cp) || (cp >= 0xd800 && cp <= 0xdfff) ||
      (cp < minCp[len - 2]! && !(cp === 0 && len === 2))
    ) {
      out += "\ufffd";
    } else {
      out += String.fromCodePoint(cp);
    }
  }
  return out;
}

/** Formats a double as C's `printf("%.17g")` (exact, round-half-even). */
export function formatDouble(d: number): string {
  if (Number.isNaN(d)) return d < 0 ? "-nan" : "nan";
  if (d === Infinity) return "inf";
  if (d === -Infinity) return "-inf";
  if (d === 0) return Object.is(d, -0) ? "-0" : "0";
  const neg = d < 0;
  const { digits, exp } = exactDigits(Math.abs(d), 17);
  // digits: 17 significant digits, value = 0.d1d2... * 10^exp → first digit at 10^(exp-1)
  const x = exp - 1; // exponent of the first significant digit
  let out: string;
  if (x < -4 || x >= 17) {
    let mant = digits.replace(/0+$/, "");
    mant = mant.length > 1 ? `${mant[0]}.${mant.slice(1)}` : mant;
    out = `${mant}e${x < 0 ? "-" : "+"}${String(Math.abs(x)).padStart(2, "0")}`;
  } else if (x >= 0) {
    const intPart = digits.slice(0, x + 1);
    const frac = digits.slice(x + 1).replace(/0+$/, "");
    out = frac ? `${intPart}.${frac}` : intPart;
  } else {
    const frac = ("0".repeat(-x - 1) + digits).replace(/0+$/, "");
    out = `0.${frac}`;
  }
  return neg ? `-${out}` : out;
}

/**
 * The first `p` significant decimal digits of a positive finite double, rounded
 * half-to-even on its exact binary value, and the decimal exponent such that
 * value ≈ 0.DIGITS × 10^exp.
 */
function exactDigits(d: number, p: number): { digits: string; exp: number } {
  // Exact value as num / den with bigints.
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, d);
  const hi = buf.getUint32(0);
  const lo = buf.getUint32(4);
  const bexp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e2: number;
  if (bexp === 0) {
    e2 = -1074;
  } else {
    mant |= 1n << 52n;
    e2 = bexp - 1075;
  }
  let num = e2 >= 0 ? mant << BigInt(e2) : mant;
  let den = e2 >= 0 ? 1n : 1n << BigInt(-e2);
  // Estimate the decimal exponent, then fix it.
  let exp = Math.floor(Math.log10(d)) + 1;
  const scale = (k: number) => {
    if (k >= 0) den *= 10n ** BigInt(k);
    else num *= 10n ** BigInt(-k);
  };
  // We want num/den in [10^(p-1), 10^p) after scaling by 10^(p - exp).
  scale(exp - p);
  const lowBound = 10n ** BigInt(p - 1);
  const highBound = 10n ** BigInt(p);
  while (num < lowBound * den) {
    num *= 10n;
    exp--;
  }
  while (num >= highBound * den) {
    den *= 10n;
    exp++;
  }
  let q = num / den;
  const r = num - q * den;
  const twice = 2n * r;
  if (twice > den || (twice === den && (q & 1n) === 1n)) q += 1n;
  if (q >= highBound) {
    q /= 10n;
    exp++;
  }
  return { digits: q.toString(), exp };
}

/** Serializes a parsed JSON value (an echoed id) as qemu re-serializes it. */
function writeParsed(v: unknown): string {
  if (v instanceof QNum) {
    return v.kind === "double" ? formatDouble(v.double) : v.int.toString();
  }
  if (v instanceof Map) {
    const keys = qdictOrder([...v.keys()]);
    return `{${keys.map((k) => `${quoteString(k)}: ${writeParsed(v.get(k))}`).join(", ")}}`;
  }
  return writeValue(v, undefined);
}

/** A struct member as {@link structPlan} lists it: its quoted key and ": " ready. */
interface PlannedMember {
  readonly name: string;
  readonly type: TypeDesc;
  readonly key: string;
}

const plans = new WeakMap<StructDesc<unknown, unknown>, readonly PlannedMember[]>();

/**
 * A struct's members in the order a QDict of all of them iterates, worked out once per
 * struct. The members present in a value keep that relative order (the order depends
 * only on each key's bucket and on insertion order, which leaving members out does not
 * change), so a reply is written in one pass, with no hashing or sorting per object.
 */
function structPlan(type: StructDesc<unknown, unknown>): readonly PlannedMember[] {
  let plan = plans.get(type);
  if (plan === undefined) {
    const byName = new Map(type.members.map((m) => [m.name, m.type]));
    plan = qdictOrder(type.members.map((m) => m.name)).map((name) => ({
      name,
      type: byName.get(name)!,
      key: `${quoteString(name)}: `,
    }));
    plans.set(type, plan);
  }
  return plan;
}

/**
 * Serializes a reply value. `type` (the command's return descriptor) gives struct
 * member order; without it, plain objects use their own key order as insertion order.
 */
export function writeValue(v: unknown, type: TypeDesc | undefined): string {
  if (v === null || v === undefined) return "null";
  switch (typeof v) {
    case "boolean":
      return v ? "true" : "false";
    case "string":
      return type?.kind === "str" && type.base64 ? `"${v}"` : quoteString(v);
    case "bigint":
      return v.toString();
    case "number":
      return Number.isSafeInteger(v) ? String(v) : formatDouble(v);
  }
  if (v instanceof QNum || v instanceof Map) return writeParsed(v);
  if (Array.isArray(v)) {
    const of = type?.kind === "array" ? type.of : undefined;
    return `[${v.map((e) => writeValue(e, of)).join(", ")}]`;
  }
  const obj = v as Record<string, unknown>;
  if (type?.kind === "struct") {
    let out = "{";
    for (const m of structPlan(type)) {
      const value = obj[m.name];
      if (value === undefined) continue;
      out += `${out.length > 1 ? ", " : ""}${m.key}${writeValue(value, m.type)}`;
    }
    return out + "}";
  }
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined);
  return `{${
    qdictOrder(keys).map((k) => `${quoteString(k)}: ${writeValue(obj[k], undefined)}`).join(", ")
  }}`;
}

/** A reply ready to be written: the JSON text without the trailing newline. */
export function successReply(value: unknown, type: TypeDesc | undefined, id: unknown): string {
  // Insertion order: "return", then "id".
  const ret = writeValue(value, type);
  if (id === undefined) return `{"return": ${ret}}`;
  const parts = [["return", ret], ["id", writeParsed(id)]] as const;
  return orderPairs(parts);
}

/** Reply text, whole or in pieces to be written one after the other (always 7-bit ASCII). */
export type ReplyText = string | readonly string[];

/**
 * {@link successReply} in pieces: the base64 members of a struct result
 * (guest-file-read's 64 MiB `buf-b64`) stay pieces of their own, so the reply is
 * never copied into one big string before the agent encodes it.
 */
export function successReplyParts(
  value: unknown,
  type: TypeDesc | undefined,
  id: unknown,
): ReplyText {
  if (
    id !== undefined || type?.kind !== "struct" || value === null || typeof value !== "object" ||
    !type.members.some((m) => m.type.kind === "str" && m.type.base64)
  ) {
    return successReply(value, type, id);
  }
  const obj = value as Record<string, unknown>;
  const parts: string[] = ['{"return": {'];
  let first = true;
  for (const m of structPlan(type)) {
    const v = obj[m.name];
    if (v === undefined) continue;
    parts.push(first ? m.key : `, ${m.key}`);
    first = false;
    const t = m.type;
    if (t.kind === "str" && t.base64 && typeof v === "string") parts.push('"', v, '"');
    else parts.push(writeValue(v, t));
  }
  parts.push("}}");
  return parts;
}

/** An error reply: `{"error": {"class", "desc"}}` plus the echoed id. */
export function errorReply(errorClass: string, desc: string, id: unknown): string {
  const err = orderPairs([["class", quoteString(errorClass)], ["desc", quoteString(desc)]]);
  if (id === undefined) return `{"error": ${err}}`;
  return orderPairs([["error", err], ["id", writeParsed(id)]]);
}

function orderPairs(pairs: readonly (readonly [string, string])[]): string {
  const byKey = new Map(pairs);
  return `{${
    qdictOrder(pairs.map((p) => p[0])).map((k) => `${quoteString(k)}: ${byKey.get(k)}`).join(", ")
  }}`;
}
