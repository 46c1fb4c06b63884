/**
 * Type descriptors: the QAPI schema of qemu-ga expressed as data, each carrying its
 * TypeScript types.
 *
 * One descriptor drives argument validation with qemu-ga's exact error texts
 * (protocol/validate.ts), reply serialization in qemu-ga's member order
 * (protocol/json_writer.ts), the generated docs/commands.md, and the types of the
 * handler that uses it: a command declares its arguments and result once
 * (commands/types.ts `defineCommand`), and its handler's parameter and return types
 * are inferred from those descriptors.
 *
 * Struct members are declared in schema order; a leading `*` marks an optional
 * member, as in qapi-schema.json:
 *
 * ```ts
 * const GuestFileRead = struct("GuestFileRead", { count: int, "buf-b64": str, eof: bool });
 * type Read = Infer<typeof GuestFileRead>; // { count: bigint; "buf-b64": string; eof: boolean }
 * const GuestUser = struct("GuestUser", { user: str, "login-time": number, "*domain": str });
 * ```
 *
 * Every descriptor has two types: {@link Infer} is the value a handler receives (what
 * validation produced), {@link Returned} what a handler may return. They differ for the
 * integers: `int` and `uint64` arrive as `bigint` (the full int64 range round-trips) and
 * may be returned as `number` (a safe integer) or `bigint`. `number` is a JS number; `str`
 * a string; `bool` a boolean; `enumType` the union of its values; `array` an array;
 * `struct` a plain object keyed by wire member names; `alternate` the chosen branch's
 * value.
 *
 * The types are phantom: nothing at run time carries them, so the descriptors below are
 * the only places that assert them (`as`), each next to the code that validates and
 * writes that kind.
 *
 * @module
 */

declare const IN: unique symbol;
declare const OUT: unique symbol;

/** The phantom types of a descriptor: `I` as handlers receive it, `O` as they return it. */
interface Carries<I, O> {
  readonly [IN]?: I;
  readonly [OUT]?: O;
}

/** A struct member. */
export interface Member {
  readonly name: string;
  readonly type: TypeDesc;
  readonly optional: boolean;
}

/** A QAPI struct (or flat union flattened into its members). */
export interface StructDesc<I = Record<string, unknown>, O = I> extends Carries<I, O> {
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

/** Any type of the schema (the run-time shape every module switches on). */
export type TypeDesc =
  | { readonly kind: "int" }
  | { readonly kind: "uint64" }
  | { readonly kind: "number" }
  | { readonly kind: "bool" }
  | { readonly kind: "str"; readonly base64?: true }
  | { readonly kind: "enum"; readonly name: string; readonly values: readonly string[] }
  | { readonly kind: "array"; readonly of: TypeDesc }
  | StructDesc<unknown, unknown>
  | AlternateDesc;

/** A descriptor with its types: receives `I`, may return `O`. */
export type Typed<I, O = I> = TypeDesc & Carries<I, O>;

/** The value a handler receives for descriptor `T` (what validation produces). */
export type Infer<T> = T extends Carries<infer I, unknown> ? I : unknown;

/**
 * What a handler may return for descriptor `T`; `void` when there is none (the command
 * replies `{}`).
 */
export type Returned<T> = [T] extends [undefined] ? void
  : T extends Carries<unknown, infer O> ? O
  : unknown;

/** int64: received as bigint, returned as a safe-integer number or a bigint. */
export const int = { kind: "int" } as Typed<bigint, bigint | number>;
/** uint64 (negative inputs are accepted and wrapped, as qemu does). */
export const uint64 = { kind: "uint64" } as Typed<bigint, bigint | number>;
/** A double, printed with `%.17g`. */
export const number = { kind: "number" } as Typed<number>;
/** A boolean. */
export const bool = { kind: "bool" } as Typed<boolean>;
/** A string. */
export const str = { kind: "str" } as Typed<string>;

/**
 * A string the command itself produced as standard base64 (guest-file-read
 * `buf-b64`, guest-exec-status `out-data`/`err-data`): validated as `str`, and
 * written without the escaping scan, since base64 needs none.
 */
export const base64Str = { kind: "str", base64: true } as Typed<string>;

/** An enum type; its values are the TypeScript type. */
export function enumType<const V extends readonly string[]>(
  name: string,
  values: V,
): Typed<V[number]> {
  return { kind: "enum", name, values } as Typed<V[number]>;
}

/** A list type, `['T']` in the schema. */
export function array<T extends TypeDesc>(of: T): Typed<Infer<T>[], Returned<T>[]> {
  return { kind: "array", of } as Typed<Infer<T>[], Returned<T>[]>;
}

type Flat<T> = { [K in keyof T]: T[K] };
type RequiredKey<K> = K extends `*${string}` ? never : K;
type OptionalKey<K> = K extends `*${infer N}` ? N : never;

/** The value of a struct whose members are `M` (`*name` keys become optional `name`). */
type StructValue<M, Side extends "in" | "out"> = Flat<
  & {
    -readonly [K in keyof M as RequiredKey<K>]: Side extends "in" ? Infer<M[K]>
      : Returned<M[K]>;
  }
  & {
    -readonly [K in keyof M as OptionalKey<K>]?: Side extends "in" ? Infer<M[K]>
      : Returned<M[K]>;
  }
>;

/** A struct; keys in schema order, `*name` for optional members. */
export function struct<const M extends Record<string, TypeDesc>>(
  name: string,
  members: M,
): StructDesc<StructValue<M, "in">, StructValue<M, "out">> {
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

/** An alternate type: the value of whichever branch the JSON type picks. */
export function alternate<
  const B extends { num?: TypeDesc; str?: TypeDesc; bool?: TypeDesc },
>(
  name: string,
  branches: B,
): Typed<Infer<B[keyof B]>, Returned<B[keyof B]>> {
  return { kind: "alternate", name, ...branches } as Typed<
    Infer<B[keyof B]>,
    Returned<B[keyof B]>
  >;
}

/** The empty struct: arguments of a command that takes none. */
export const NO_ARGS = struct("", {});
