/**
 * JSON parsing that keeps every number's source text, so checks can require what real
 * clients require: libvirt parses integers with `virStrToLong_*` on the raw token
 * (clients.md §0 fact 6), so `5.0`, `5e3` or `null` must fail where an integer is due.
 * Plus {@linkcode Checker}, a small field checker that collects reasons instead of throwing.
 *
 * @module
 */

/** A JSON number with its literal as sent. */
export class Num {
  /** The parsed value (may be imprecise above 2^53; use `source` then). */
  readonly value: number;
  /** The literal text, e.g. `"1795780658936800000"` or `"5.0"`. */
  readonly source: string;
  /** Creates the number. */
  constructor(value: number, source: string) {
    this.value = value;
    this.source = source;
  }
}

/** A parsed JSON value whose numbers are {@linkcode Num}. */
export type Raw = null | boolean | string | Num | Raw[] | RawObject;
/** A parsed JSON object. */
export interface RawObject {
  [key: string]: Raw;
}

interface ReviverContext {
  source?: string;
}

/**
 * Parses JSON text, keeping number literals. Throws SyntaxError like `JSON.parse`.
 *
 * @example
 * ```ts
 * const v = parseRaw('{"return": 5.0}') as RawObject;
 * (v.return as Num).source; // "5.0"
 * ```
 */
export function parseRaw(text: string): Raw {
  const reviver = (_key: string, value: unknown, context?: ReviverContext): unknown =>
    typeof value === "number" ? new Num(value, context?.source ?? String(value)) : value;
  return JSON.parse(text, reviver as (key: string, value: unknown) => unknown) as Raw;
}

/** Converts a raw value back to plain JSON values (numbers lose their literal). */
export function plain(v: Raw): unknown {
  if (v instanceof Num) return v.value;
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

/**
 * Re-serialises a raw value compactly, numbers as their literals: what libvirt's
 * `virJSONValueToString(…, false)` hands to `virsh qemu-agent-command` callers (KubeVirt).
 */
export function compact(v: Raw): string {
  if (v instanceof Num) return v.source;
  if (Array.isArray(v)) return `[${v.map(compact).join(",")}]`;
  if (v !== null && typeof v === "object") {
    return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}:${compact(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** True for a JSON object (not null, not an array). */
export function isObject(v: Raw | undefined): v is RawObject {
  return v !== null && v !== undefined && typeof v === "object" && !Array.isArray(v) &&
    !(v instanceof Num);
}

/** Field kinds the checker knows. `uint`/`int` demand a JSON integer literal. */
export type Kind = "uint" | "int" | "number" | "string" | "bool" | "object" | "array";

const UINT = /^(?:0|[1-9][0-9]*)$/;
const INT = /^-?(?:0|[1-9][0-9]*)$/;

/** Describes `v` for messages. */
export function describe(v: Raw | undefined): string {
  if (v === undefined) return "absent";
  if (v instanceof Num) return `number ${v.source}`;
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  return typeof v === "object" ? "object" : `${typeof v} ${JSON.stringify(v)}`;
}

/** Collects reasons why replies do not meet a client's expectations. */
export class Checker {
  /** Every failure so far, as sentences with the JSON path. */
  readonly reasons: string[] = [];

  /** Records a failure. */
  fail(reason: string): void {
    this.reasons.push(reason);
  }

  /** Records a failure unless `ok`. */
  expect(ok: boolean, reason: string): boolean {
    if (!ok) this.fail(reason);
    return ok;
  }

  /** Checks `v` is of `kind`; records `<path>: expected <kind>, got …` otherwise. */
  kind(v: Raw | undefined, kind: Kind, path: string): boolean {
    let ok: boolean;
    switch (kind) {
      case "uint":
        ok = v instanceof Num && UINT.test(v.source);
        break;
      case "int":
        ok = v instanceof Num && INT.test(v.source);
        break;
      case "number":
        ok = v instanceof Num;
        break;
      case "string":
        ok = typeof v === "string";
        break;
      case "bool":
        ok = typeof v === "boolean";
        break;
      case "object":
        ok = isObject(v);
        break;
      case "array":
        ok = Array.isArray(v);
        break;
    }
    if (!ok) this.fail(`${path}: expected ${kind}, got ${describe(v)}`);
    return ok;
  }

  /** Checks a required member; returns it when it has the right kind. */
  req(obj: RawObject, key: string, kind: Kind, path: string): Raw | undefined {
    const v = obj[key];
    return this.kind(v, kind, `${path}.${key}`) ? v : undefined;
  }

  /** Checks an optional member: absent is fine, present must have the right kind. */
  opt(obj: RawObject, key: string, kind: Kind, path: string): Raw | undefined {
    if (!(key in obj)) return undefined;
    return this.req(obj, key, kind, path);
  }
}

/** The integer value of a checked `uint`/`int` (as bigint, exact). */
export function intOf(v: Raw | undefined): bigint | undefined {
  return v instanceof Num && INT.test(v.source) ? BigInt(v.source) : undefined;
}
