/**
 * Bytes in, JSON values out, exactly as qemu-ga's lexer, streamer and parser do
 * (qga-reference.md §1.1-1.2; qobject/json-lexer.c, json-streamer.c, json-parser.c):
 *
 * - no framing: a value is complete when its braces and brackets balance; a
 *   top-level scalar as soon as its token is complete (numbers and keywords need
 *   one byte of look-ahead);
 * - single-quoted strings, `\'` escapes, modified UTF-8 (`C0 80` is U+0000);
 * - an invalid byte is answered with `JSON parse error, stray '<token so far>'`,
 *   the message being built is discarded, and the lexer skips to the next
 *   structural or control byte (0xFF is the documented way to force this);
 * - limits: 64 MiB per token and per message, 2 Mi tokens, nesting 1024.
 *
 * State lives in one {@link JsonStream} per agent and is NOT reset when a client
 * disconnects, as in qemu-ga.
 *
 * One algorithm, hence one file over 500 lines: the lexer's state machine, the token
 * queue, the streamer's brace counting and the recursive-descent parser share their
 * state and limits, and are read side by side with json-lexer.c, json-streamer.c and
 * json-parser.c.
 *
 * @module
 */

import { type JsonValue, QNum } from "./value.ts";
import { bytesToQemuString } from "./json_writer.ts";
import { INT64_MAX, INT64_MIN, UINT64_MAX } from "./int64.ts";

/** Limits of qemu's streamer (json-streamer.c / json-lexer.c). */
export const LIMITS = {
  maxTokenSize: 64 * 1024 * 1024,
  maxTokenCount: 2 * 1024 * 1024,
  maxNesting: 1024,
} as const;

/** What the stream emits for each message: a value, or an error text. */
export type StreamEvent = { value: JsonValue; error?: undefined } | {
  value?: undefined;
  error: string;
};

// Lexer states (json-lexer.c); values below are not token types.
const S_RECOVERY = 1,
  S_DQ_ESC = 2,
  S_DQ = 3,
  S_SQ_ESC = 4,
  S_SQ = 5,
  S_ZERO = 6,
  S_EXP_DIGITS = 7,
  S_EXP_SIGN = 8,
  S_EXP_E = 9,
  S_MANTISSA = 10,
  S_MANTISSA_DIGITS = 11,
  S_DIGITS = 12,
  S_SIGN = 13,
  S_KEYWORD = 14,
  S_START = 15;

// Token types.
const T_ERROR = 100,
  T_LCURLY = 101,
  T_RCURLY = 102,
  T_LSQUARE = 103,
  T_RSQUARE = 104,
  T_COLON = 105,
  T_COMMA = 106,
  T_INTEGER = 107,
  T_FLOAT = 108,
  T_KEYWORD = 109,
  T_STRING = 110;

const LOOKAHEAD = 0x100;

/** Tokens longer than this are handed to the message by reference, not copied. */
const BIG_TOKEN = 1 << 16;

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** The transition table of json-lexer.c, as a function: next state | LOOKAHEAD flag. */
function next(state: number, c: number): number {
  switch (state) {
    case S_RECOVERY:
      if (c === 0x09) return S_RECOVERY;
      if (c < 0x20 || c >= 0xfe) return S_START | LOOKAHEAD;
      if (c === 0x5b || c === 0x5d || c === 0x7b || c === 0x7d || c === 0x3a || c === 0x2c) {
        return S_START | LOOKAHEAD;
      }
      return S_RECOVERY;
    case S_DQ_ESC:
      return c >= 0x20 && c <= 0xfd ? S_DQ : T_ERROR;
    case S_DQ:
      if (c === 0x5c) return S_DQ_ESC;
      if (c === 0x22) return T_STRING;
      return c >= 0x20 && c <= 0xfd ? S_DQ : T_ERROR;
    case S_SQ_ESC:
      return c >= 0x20 && c <= 0xfd ? S_SQ : T_ERROR;
    case S_SQ:
      if (c === 0x5c) return S_SQ_ESC;
      if (c === 0x27) return T_STRING;
      return c >= 0x20 && c <= 0xfd ? S_SQ : T_ERROR;
    case S_ZERO:
      if (isDigit(c)) return T_ERROR;
      if (c === 0x2e) return S_MANTISSA;
      return T_INTEGER | LOOKAHEAD;
    case S_EXP_DIGITS:
      return isDigit(c) ? S_EXP_DIGITS : T_FLOAT | LOOKAHEAD;
    case S_EXP_SIGN:
      return isDigit(c) ? S_EXP_DIGITS : T_ERROR;
    case S_EXP_E:
      if (c === 0x2d || c === 0x2b) return S_EXP_SIGN;
      return isDigit(c) ? S_EXP_DIGITS : T_ERROR;
    case S_MANTISSA_DIGITS:
      if (isDigit(c)) return S_MANTISSA_DIGITS;
      if (c === 0x65 || c === 0x45) return S_EXP_E;
      return T_FLOAT | LOOKAHEAD;
    case S_MANTISSA:
      return isDigit(c) ? S_MANTISSA_DIGITS : T_ERROR;
    case S_DIGITS:
      if (isDigit(c)) return S_DIGITS;
      if (c === 0x65 || c === 0x45) return S_EXP_E;
      if (c === 0x2e) return S_MANTISSA;
      return T_INTEGER | LOOKAHEAD;
    case S_SIGN:
      if (c === 0x30) return S_ZERO;
      return c >= 0x31 && c <= 0x39 ? S_DIGITS : T_ERROR;
    case S_KEYWORD:
      return c >= 0x61 && c <= 0x7a ? S_KEYWORD : T_KEYWORD | LOOKAHEAD;
    default: // S_START
      switch (c) {
        case 0x22:
          return S_DQ;
        case 0x27:
          return S_SQ;
        case 0x30:
          return S_ZERO;
        case 0x2d:
          return S_SIGN;
        case 0x7b:
          return T_LCURLY;
        case 0x7d:
          return T_RCURLY;
        case 0x5b:
          return T_LSQUARE;
        case 0x5d:
          return T_RSQUARE;
        case 0x2c:
          return T_COMMA;
        case 0x3a:
          return T_COLON;
        case 0x20:
        case 0x09:
        case 0x0d:
        case 0x0a:
          return S_START;
      }
      if (c >= 0x31 && c <= 0x39) return S_DIGITS;
      if (c >= 0x61 && c <= 0x7a) return S_KEYWORD;
      return T_ERROR;
  }
}

/** A growable byte buffer for the token being lexed. */
class TokenBuffer {
  #buf = new Uint8Array(64);
  length = 0;

  push(c: number): void {
    if (this.length === this.#buf.length) this.#grow(this.length + 1);
    this.#buf[this.length++] = c;
  }

  append(src: Uint8Array, start: number, end: number): void {
    const n = end - start;
    if (this.length + n > this.#buf.length) this.#grow(this.length + n);
    this.#buf.set(src.subarray(start, end), this.length);
    this.length += n;
  }

  #grow(min: number): void {
    // Doubling, but never past what the size limit lets a token reach.
    let size = this.#buf.length * 2;
    while (size < min) size *= 2;
    size = Math.max(min, Math.min(size, LIMITS.maxTokenSize + 2));
    const b = new Uint8Array(size);
    b.set(this.#buf.subarray(0, this.length));
    this.#buf = b;
  }

  view(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }

  /** Hands the bytes over without copying; the buffer starts afresh. */
  detach(): Uint8Array {
    const out = this.#buf.subarray(0, this.length);
    this.#buf = new Uint8Array(64);
    this.length = 0;
    return out;
  }

  clear(): void {
    this.length = 0;
    if (this.#buf.length > 1 << 20) this.#buf = new Uint8Array(64);
  }
}

/**
 * The tokens of the message being built, stored flat: one byte buffer for all
 * their text and typed arrays for type and extent, so a message of 2 Mi tokens
 * costs a few tens of MB rather than an object per token.
 */
class TokenQueue {
  bytes = new Uint8Array(256);
  used = 0;
  types = new Uint8Array(64);
  starts = new Int32Array(64);
  ends = new Int32Array(64);
  count = 0;
  /** Big tokens kept by reference (handed over by the lexer), by index. */
  readonly big = new Map<number, Uint8Array>();

  /** Adds a token; an `owned` one (no one else will write to it) is kept without a copy. */
  push(type: number, src: Uint8Array, owned = false): void {
    if (owned) {
      this.#room();
      this.big.set(this.count, src);
      this.types[this.count] = type;
      this.starts[this.count] = this.used;
      this.ends[this.count] = this.used;
      this.count++;
      return;
    }
    if (this.used + src.length > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < this.used + src.length) size *= 2;
      const b = new Uint8Array(size);
      b.set(this.bytes.subarray(0, this.used));
      this.bytes = b;
    }
    this.#room();
    this.bytes.set(src, this.used);
    this.types[this.count] = type;
    this.starts[this.count] = this.used;
    this.used += src.length;
    this.ends[this.count] = this.used;
    this.count++;
  }

  #room(): void {
    if (this.count === this.types.length) {
      const n = this.count * 2;
      const t = new Uint8Array(n);
      t.set(this.types);
      this.types = t;
      const st = new Int32Array(n);
      st.set(this.starts);
      this.starts = st;
      const en = new Int32Array(n);
      en.set(this.ends);
      this.ends = en;
    }
  }

  text(i: number): Uint8Array {
    return this.big.get(i) ?? this.bytes.subarray(this.starts[i]!, this.ends[i]!);
  }

  reset(): void {
    this.count = 0;
    this.big.clear();
    this.used = 0;
    if (this.bytes.length > 1 << 20) this.bytes = new Uint8Array(256);
    if (this.types.length > 1 << 16) {
      this.types = new Uint8Array(64);
      this.starts = new Int32Array(64);
      this.ends = new Int32Array(64);
    }
  }
}

class ParseError extends Error {}

const latin1 = new TextDecoder("latin1");
/** For ASCII-only bytes UTF-8 and Latin-1 agree; Deno's UTF-8 decoder is several times faster. */
const ascii = new TextDecoder();

/** Validates and decodes a string token body as parse_string does. */
function parseString(tok: Uint8Array): string {
  const end = tok.length - 1; // closing quote
  // Fast path: printable ASCII without escapes.
  let plain = true;
  for (let i = 1; i < end; i++) {
    const c = tok[i]!;
    if (c === 0x5c || c >= 0x80) {
      plain = false;
      break;
    }
  }
  if (plain) return ascii.decode(tok.subarray(1, end));
  let out = "";
  let i = 1;
  let runStart = 1;
  const flush = (upto: number) => {
    if (upto > runStart) out += latin1.decode(tok.subarray(runStart, upto));
  };
  while (i < end) {
    const c = tok[i]!;
    if (c < 0x80 && c !== 0x5c) {
      i++;
      continue;
    }
    flush(i);
    if (c === 0x5c) {
      const beg = i;
      const e = tok[i + 1]!;
      i += 2;
      switch (e) {
        case 0x22:
          out += '"';
          break;
        case 0x27:
          out += "'";
          break;
        case 0x5c:
          out += "\\";
          break;
        case 0x2f:
          out += "/";
          break;
        case 0x62:
          out += "\b";
          break;
        case 0x66:
          out += "\f";
          break;
        case 0x6e:
          out += "\n";
          break;
        case 0x72:
          out += "\r";
          break;
        case 0x74:
          out += "\t";
          break;
        case 0x75: {
          let cp = hex4(tok, i);
          i += 4;
          if (cp >= 0xd800 && cp <= 0xdbff && tok[i] === 0x5c && tok[i + 1] === 0x75) {
            cp = 0x10000 + ((cp & 0x3ff) << 10);
            const trailing = hex4(tok, i + 2);
            if (trailing >= 0xdc00 && trailing <= 0xdfff) {
              cp |= trailing & 0x3ff;
              i += 6;
            } else {
              cp = -1;
            }
          }
          if (!validCodepoint(cp)) {
            // "%.*s": the escape as written, at most up to the token's end.
            const shown = tok.subarray(beg, Math.min(i, tok.length));
            throw new ParseError(`${bytesToQemuString(shown)} is not a valid Unicode character`);
          }
          out += String.fromCodePoint(cp);
          break;
        }
        default:
          throw new ParseError("invalid escape sequence in string");
      }
    } else {
      const [cp, len] = modUtf8(tok, i, end);
      if (cp < 0) throw new ParseError("invalid UTF-8 sequence in string");
      out += String.fromCodePoint(cp);
      i += len;
    }
    runStart = i;
  }
  flush(end);
  return out;
}

function hex4(b: Uint8Array, at: number): number {
  let cp = 0;
  for (let k = 0; k < 4; k++) {
    const c = b[at + k];
    if (c === undefined) return -1;
    let v: number;
    if (c >= 0x30 && c <= 0x39) v = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) v = c - 0x61 + 10;
    else if (c >= 0x41 && c <= 0x46) v = c - 0x41 + 10;
    else return -1;
    cp = cp * 16 + v;
  }
  return cp;
}

function validCodepoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false;
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  return !(cp >= 0xd800 && cp <= 0xdfff);
}

/** mod_utf8_codepoint: [codepoint or -1, bytes consumed]. */
function modUtf8(b: Uint8Array, at: number, end: number): [number, number] {
  const byte = b[at]!;
  if (byte >= 0xfe || (byte & 0x40) === 0) return [-1, 1];
  let len = 0;
  let mask = 0x80;
  for (; byte & mask; mask >>= 1) len++;
  let cp = byte & (mask - 1);
  for (let k = 1; k < len; k++) {
    const c = at + k < end ? b[at + k]! : 0;
    if ((c & 0xc0) !== 0x80) return [-1, k];
    cp = cp * 64 + (c & 0x3f);
  }
  const minCp = [0x80, 0x800, 0x10000, 0x200000, 0x4000000][len - 2]!;
  if (!validCodepoint(cp)) return [-1, len];
  if (cp < minCp && !(cp === 0 && len === 2)) return [-1, len];
  return [cp, len];
}

/** Recursive-descent parser over one message's tokens (json-parser.c). */
class Parser {
  readonly #q: TokenQueue;
  #pos = 0;

  constructor(q: TokenQueue) {
    this.#q = q;
  }

  /** Type of the next token, or -1 at the end. */
  #peek(): number {
    return this.#pos < this.#q.count ? this.#q.types[this.#pos]! : -1;
  }

  /** Index of the token taken, or -1 at the end. */
  #pop(): number {
    return this.#pos < this.#q.count ? this.#pos++ : -1;
  }

  parseValue(): JsonValue {
    const t = this.#peek();
    if (t < 0) throw new ParseError("premature EOI");
    switch (t) {
      case T_LCURLY:
        return this.#object();
      case T_LSQUARE:
        return this.#array();
      case T_INTEGER:
      case T_FLOAT:
      case T_STRING:
        return this.#literal();
      case T_KEYWORD: {
        const kw = latin1.decode(this.#q.text(this.#pop()));
        if (kw === "true") return true;
        if (kw === "false") return false;
        if (kw === "null") return null;
        throw new ParseError(`invalid keyword '${kw}'`);
      }
      default:
        throw new ParseError("expecting value");
    }
  }

  #literal(): JsonValue {
    const i = this.#pop();
    const type = this.#q.types[i]!;
    const bytes = this.#q.text(i);
    if (type === T_STRING) return parseString(bytes);
    const text = latin1.decode(bytes);
    if (type === T_INTEGER) {
      if (text.length < 4) {
        const small = SMALL_INTS.get(text);
        if (small) return small;
      }
      const v = BigInt(text);
      if (text.length < 4 && v >= -99n && v <= 1000n) {
        // "-0" and "007" are other spellings of a cached value: key by the text.
        const q = QNum.int(v);
        SMALL_INTS.set(text, q);
        return q;
      }
      if (v >= INT64_MIN && v <= INT64_MAX) return QNum.int(v);
      if (!text.startsWith("-") && v <= UINT64_MAX) return QNum.uint(v);
    }
    return QNum.double(Number(text));
  }

  #object(): JsonValue {
    this.#pop();
    const dict = new Map<string, JsonValue>();
    const peek = this.#peek();
    if (peek < 0) throw new ParseError("premature EOI");
    if (peek === T_RCURLY) {
      this.#pop();
      return dict;
    }
    this.#pair(dict);
    let t = this.#popType();
    while (t !== T_RCURLY) {
      if (t !== T_COMMA) throw new ParseError("expected separator in dict");
      this.#pair(dict);
      t = this.#popType();
    }
    return dict;
  }

  /** Takes the next token and returns its type; premature EOI at the end. */
  #popType(): number {
    const i = this.#pop();
    if (i < 0) throw new ParseError("premature EOI");
    return this.#q.types[i]!;
  }

  #pair(dict: Map<string, JsonValue>): void {
    if (this.#peek() < 0) throw new ParseError("premature EOI");
    const key = this.parseValue();
    if (typeof key !== "string") throw new ParseError("key is not a string in object");
    if (this.#popType() !== T_COLON) throw new ParseError("missing : in object pair");
    const value = this.parseValue();
    if (dict.has(key)) throw new ParseError("duplicate key");
    dict.set(key, value);
  }

  #array(): JsonValue {
    this.#pop();
    const list: JsonValue[] = [];
    const peek = this.#peek();
    if (peek < 0) throw new ParseError("premature EOI");
    if (peek === T_RSQUARE) {
      this.#pop();
      return list;
    }
    list.push(this.parseValue());
    let t = this.#popType();
    while (t !== T_RSQUARE) {
      if (t !== T_COMMA) throw new ParseError("expected separator in list");
      list.push(this.parseValue());
      t = this.#popType();
    }
    return list;
  }
}

/** Shared QNums for small integer literals (frequent, and immutable), made on first use. */
const SMALL_INTS = new Map<string, QNum>();

/** The incremental JSON message parser: one per agent. */
export class JsonStream {
  #state = S_START;
  #token = new TokenBuffer();
  readonly #tokens = new TokenQueue();
  #brace = 0;
  #bracket = 0;
  #tokenSize = 0;
  readonly #emit: (e: StreamEvent) => void;
  readonly #maxTokenSize: number;

  /** `emit` is called synchronously for every complete message or error. */
  constructor(emit: (e: StreamEvent) => void, opts: { maxTokenSize?: number } = {}) {
    this.#emit = emit;
    this.#maxTokenSize = opts.maxTokenSize ?? LIMITS.maxTokenSize;
  }

  /** Feeds bytes; emits synchronously. */
  feed(data: Uint8Array): void {
    const n = data.length;
    let i = 0;
    while (i < n) {
      const st = this.#state;
      // Fast path inside strings: consume a run of ordinary bytes at once.
      if (st === S_DQ || st === S_SQ) {
        const quote = st === S_DQ ? 0x22 : 0x27;
        const room = this.#maxTokenSize + 1 - this.#token.length;
        const stop = Math.min(n, i + Math.max(room, 0));
        let j = i;
        while (j < stop) {
          const c = data[j]!;
          if (c < 0x20 || c > 0xfd || c === 0x5c || c === quote) break;
          j++;
        }
        if (j > i) {
          this.#token.append(data, i, j);
          i = j;
          if (this.#token.length > this.#maxTokenSize) this.#overflow();
          continue;
        }
      } else if (st === S_RECOVERY) {
        let j = i;
        while (j < n) {
          const c = data[j]!;
          if (next(S_RECOVERY, c) !== S_RECOVERY) break;
          j++;
        }
        if (j > i) {
          i = j;
          continue;
        }
      }
      this.#feedChar(data[i]!);
      i++;
    }
  }

  #overflow(): void {
    this.#processToken(this.#state, this.#token.view());
    this.#token.clear();
    this.#state = S_START;
  }

  #feedChar(c: number): void {
    let consumed = false;
    while (!consumed) {
      const r = next(this.#state, c);
      consumed = (r & LOOKAHEAD) === 0;
      let ns = r & ~LOOKAHEAD;
      if (consumed) this.#token.push(c);
      if (ns >= T_LCURLY) {
        if (this.#token.length > BIG_TOKEN) {
          this.#processToken(ns, this.#token.detach(), true);
        } else {
          this.#processToken(ns, this.#token.view());
          this.#token.clear();
        }
        ns = S_START;
      } else if (ns === S_START) {
        this.#token.clear();
      } else if (ns === T_ERROR) {
        this.#processToken(T_ERROR, this.#token.view());
        this.#token.clear();
        ns = S_RECOVERY;
      } else if (ns === S_RECOVERY) {
        this.#token.clear();
      }
      this.#state = ns;
    }
    if (this.#token.length > this.#maxTokenSize) this.#overflow();
  }

  #processToken(type: number, bytes: Uint8Array, owned = false): void {
    let error: string | undefined;
    switch (type) {
      case T_LCURLY:
        this.#brace++;
        break;
      case T_RCURLY:
        this.#brace--;
        break;
      case T_LSQUARE:
        this.#bracket++;
        break;
      case T_RSQUARE:
        this.#bracket--;
        break;
      case T_ERROR:
        error = `JSON parse error, stray '${bytesToQemuString(bytes)}'`;
        break;
    }
    if (error === undefined) {
      if (this.#tokenSize + bytes.length + 1 > this.#maxTokenSize) {
        error = "JSON token size limit exceeded";
      } else if (this.#tokens.count + 1 > LIMITS.maxTokenCount) {
        error = "JSON token count limit exceeded";
      } else if (this.#bracket + this.#brace > LIMITS.maxNesting) {
        error = "JSON nesting depth limit exceeded";
      } else {
        this.#tokens.push(type, bytes, owned);
        this.#tokenSize += bytes.length;
        if ((this.#brace > 0 || this.#bracket > 0) && this.#brace >= 0 && this.#bracket >= 0) {
          return;
        }
      }
    }
    this.#brace = 0;
    this.#bracket = 0;
    this.#tokenSize = 0;
    if (error !== undefined) {
      this.#tokens.reset();
      this.#emit({ error });
      return;
    }
    let value: JsonValue;
    try {
      value = new Parser(this.#tokens).parseValue();
    } catch (e) {
      if (e instanceof ParseError) {
        this.#tokens.reset();
        this.#emit({ error: `JSON parse error, ${e.message}` });
        return;
      }
      throw e;
    } finally {
      this.#tokens.reset();
    }
    this.#emit({ value });
  }
}
