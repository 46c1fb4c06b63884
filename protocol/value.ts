/**
 * JSON values as qemu's parser produces them (qga-reference.md §1.2): numbers keep
 * qemu's three kinds (int64, uint64, double) so that ids echo back exactly, and
 * objects keep their parse order (a Map) because qemu re-serializes them in a
 * hash order computed from insertion order (§1.4).
 *
 * @module
 */

/** A JSON number with qemu's QNum kind. */
export class QNum {
  /** "int" (fits int64), "uint" (fits uint64 only) or "double". */
  readonly kind: "int" | "uint" | "double";
  /** The integer value for "int" and "uint". */
  readonly int: bigint;
  /** The value as a double (exact for "double"). */
  readonly double: number;

  private constructor(kind: "int" | "uint" | "double", int: bigint, double: number) {
    this.kind = kind;
    this.int = int;
    this.double = double;
  }

  /** An int64 value. */
  static int(v: bigint): QNum {
    return new QNum("int", v, Number(v));
  }

  /** A uint64 value above INT64_MAX. */
  static uint(v: bigint): QNum {
    return new QNum("uint", v, Number(v));
  }

  /** A double. */
  static double(v: number): QNum {
    return new QNum("double", 0n, v);
  }
}

/** A parsed JSON object: members in parse order. */
export type JsonObject = Map<string, JsonValue>;

/** Any parsed JSON value. */
export type JsonValue = null | boolean | string | QNum | JsonValue[] | JsonObject;

/** True for a parsed JSON object. */
export function isObject(v: JsonValue | undefined): v is JsonObject {
  return v instanceof Map;
}
