/**
 * Type descriptors: the QAPI schema of qemu-ga expressed as data.
 *
 * One descriptor drives three things: argument validation with qemu-ga's exact
 * error texts (protocol/validate.ts), reply serialization in qemu-ga's member order
 * (protocol/json_writer.ts), and the generated docs/commands.md.
 *
 * Struct members are declared in schema order; a leading `*` marks an optional
 * member, as in qapi-schema.json:
 *
 * ```ts
 * const GuestFileRead = struct("GuestFileRead", { count: int, "buf-b64": str, eof: bool });
 * const GuestUser = struct("GuestUser", { user: str, "login-time": number, "*domain": str });
 * ```
 *
 * Values as handlers see them: `int` and `uint64` arrive as `bigint` (the full int64
 * range round-trips) and may be returned as `number` (a safe integer) or `bigint`;
 * `number` is a JS number; `str` a string; `bool` a boolean; `enum` its string;
 * `array` an array; `struct` a plain object keyed by wire member names; `alternate`
 * the chosen branch's value.
 *
 * @module
 */

/** A struct member. */
export interface Member {
  readonly name: string;
  readonly type: TypeDesc;
  readonly optional: boolean;
}

/** A QAPI struct (or flat union flattened into its members). */
export interface StructDesc {
  readonly kind: "struct";
  readonly name: string;
  readonly members: readonly Member[];
}

/** A QAPI alternate: the branch is picked by the JSON type of the value. */
export interface AlternateDesc {
  readonly kind: "alternate";
  readonly name: string;
  /** Branch for a JSON number (qemu's QTYPE_QNUM). */
  readonly num?: TypeDesc;
  /** Branch for a JSON string. */
  readonly str?: TypeDesc;
  /** Branch for a JSON boolean. */
  readonly bool?: TypeDesc;
}

/**
 * A string the command itself produced as standard base64 (guest-file-read
 * `buf-b64`, guest-exec-status `out-data`/`err-data`): validated as `str`, and
 * written without the escaping scan, since base64 needs none.
 */
export const base64Str: TypeDesc = { kind: "str", base64: true };

/** Any type of the schema. */
export type TypeDesc =
  | { readonly kind: "int" }
  | { readonly kind: "uint64" }
  | { readonly kind: "number" }
  | { readonly kind: "bool" }
  | { readonly kind: "str"; readonly base64?: true }
  | { readonly kind: "any" }
  | { readonly kind: "enum"; readonly name: string; readonly values: readonly string[] }
  | { readonly kind: "array"; readonly of: TypeDesc }
  | StructDesc
  | AlternateDesc;

/** int64. */
export const int: TypeDesc = { kind: "int" };
/** uint64 (negative inputs are accepted and wrapped, as qemu does). */
export const uint64: TypeDesc = { kind: "uint64" };
/** A double, printed with `%.17g`. */
export const number: TypeDesc = { kind: "number" };
/** A boolean. */
export const bool: TypeDesc = { kind: "bool" };
/** A string. */
export const str: TypeDesc = { kind: "str" };
/** Any JSON value (serialized in its own key order). */
export const any: TypeDesc = { kind: "any" };

/** An enum type. */
export function enumType(name: string, values: readonly string[]): TypeDesc {
  return { kind: "enum", name, values };
}

/** A list type, `['T']` in the schema. */
export function array(of: TypeDesc): TypeDesc {
  return { kind: "array", of };
}

/** A struct; keys in schema order, `*name` for optional members. */
export function struct(name: string, members: Record<string, TypeDesc>): StructDesc {
  return {
    kind: "struct",
    name,
    members: Object.entries(members).map(([key, type]) => ({
      name: key.startsWith("*") ? key.slice(1) : key,
      type,
      optional: key.startsWith("*"),
    })),
  };
}

/** An alternate type. */
export function alternate(
  name: string,
  branches: { num?: TypeDesc; str?: TypeDesc; bool?: TypeDesc },
): AlternateDesc {
  return { kind: "alternate", name, ...branches };
}

/** The empty struct: arguments of a command that takes none. */
export const NO_ARGS: StructDesc = struct("", {});
