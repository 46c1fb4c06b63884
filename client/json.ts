/**
 * JSON with exact integers. qemu-ga sends int64/uint64 values as plain decimal literals
 * (qga-reference.md §1.4); `guest-get-time` nanoseconds already exceed 2^53. Integers outside
 * the safe range are parsed as `bigint`, and `bigint` values are written back as literals.
 *
 * @module
 */

const INTEGER_LITERAL = /^-?(?:0|[1-9][0-9]*)$/;

/** A JSON value as the client sees it: unsafe integers are `bigint`. */
export type JsonValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** The reviver's third argument (V8 "JSON.parse source text access"). */
interface ReviverContext {
  source?: string;
}

function reviveBigInt(_key: string, value: unknown, context?: ReviverContext): unknown {
  if (
    typeof value === "number" && !Number.isSafeInteger(value) &&
    context?.source !== undefined && INTEGER_LITERAL.test(context.source)
  ) {
    return BigInt(context.source);
  }
  return value;
}

/**
 * Parses JSON text; integer literals outside ±(2^53 − 1) become `bigint`.
 *
 * @example
 * ```ts
 * parseJson('{"return": 1795783033040828000}'); // { return: 1795783033040828000n }
 * ```
 */
export function parseJson(text: string): JsonValue {
  return JSON.parse(text, reviveBigInt as (key: string, value: unknown) => unknown) as JsonValue;
}

/** `JSON.rawJSON` (V8 "JSON.parse source text access"); not yet in TypeScript's lib. */
const JSON_WITH_RAW = JSON as JSON & { rawJSON(text: string): unknown };

function replaceBigInt(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? JSON_WITH_RAW.rawJSON(value.toString()) : value;
}

/**
 * Serialises a value as JSON; `bigint` values are written as integer literals.
 * `indent` > 0 pretty-prints.
 *
 * @example
 * ```ts
 * stringifyJson({ id: 18446744073709551615n }); // '{"id":18446744073709551615}'
 * ```
 */
export function stringifyJson(value: unknown, indent = 0): string {
  const text = JSON.stringify(value, replaceBigInt, indent > 0 ? indent : undefined);
  if (text === undefined) throw new TypeError("Value cannot be represented as JSON");
  return text;
}
