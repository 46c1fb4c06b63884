/**
 * Argument validation as qemu's QObject input visitor does it (qga-reference.md
 * §1.6; qapi/qobject-input-visitor.c): members visited in schema order, the first
 * failure reported with qemu's exact text, unexpected members checked only after
 * every declared one was valid, and — when several are unexpected — the one
 * reported is the first in the GHashTable iteration order qemu happens to use.
 *
 * @module
 */

import { QgaError } from "./errors.ts";
import type { Infer, StructDesc, TypeDesc } from "./types.ts";
import { type JsonObject, type JsonValue, QNum } from "./value.ts";
import { qdictOrder } from "./json_writer.ts";

/** g_str_hash (djb2 over signed chars), as GLib computes it. */
function gStrHash(key: string): number {
  let h = 5381;
  for (const b of new TextEncoder().encode(key)) {
    const sc = b >= 0x80 ? b - 0x100 : b;
    h = (Math.imul(h, 33) + sc) >>> 0;
  }
  return h;
}

/** A model of GLib's GHashTable with string keys: enough to know its iteration order. */
class GHashModel {
  #shift = 3;
  #keys: (string | undefined)[] = new Array(8).fill(undefined);
  #hashes: number[] = new Array(8).fill(0);
  #nnodes = 0;
  #noccupied = 0;

  static readonly #PRIMES = [
    1,
    2,
    3,
    7,
    13,
    31,
    61,
    127,
    251,
    509,
    1021,
    2039,
    4093,
    8191,
    16381,
    32749,
    65521,
  ];

  #slotFor(key: string, hash: number): number {
    const size = 1 << this.#shift;
    const mod = GHashModel.#PRIMES[this.#shift] ?? size - 1;
    let idx = (Math.imul(hash, 11) >>> 0) % mod;
    let step = 0;
    let tomb = -1;
    while (this.#hashes[idx] !== 0) {
      if (this.#hashes[idx] === hash && this.#keys[idx] === key) return idx;
      if (this.#hashes[idx] === 1 && tomb < 0) tomb = idx;
      step++;
      idx = (idx + step) & (size - 1);
    }
    return tomb >= 0 ? tomb : idx;
  }

  insert(key: string): void {
    let hash = gStrHash(key);
    if (hash < 2) hash = 2;
    const idx = this.#slotFor(key, hash);
    const old = this.#hashes[idx]!;
    if (old > 1) return;
    this.#keys[idx] = key;
    this.#hashes[idx] = hash;
    this.#nnodes++;
    if (old === 0) {
      this.#noccupied++;
      this.#maybeResize();
    }
  }

  remove(key: string): void {
    let hash = gStrHash(key);
    if (hash < 2) hash = 2;
    const size = 1 << this.#shift;
    for (let i = 0; i < size; i++) {
      if (this.#hashes[i]! > 1 && this.#keys[i] === key) {
        this.#hashes[i] = 1;
        this.#keys[i] = undefined;
        this.#nnodes--;
        this.#maybeResize();
        return;
      }
    }
  }

  #maybeResize(): void {
    const size = 1 << this.#shift;
    if (
      (size > this.#nnodes * 4 && size > 8) ||
      size <= this.#noccupied + Math.floor(this.#noccupied / 16)
    ) {
      let n = Math.floor(this.#nnodes * 1.333);
      let shift = 0;
      for (; n; shift++) n >>= 1;
      const live = this.#keys.filter((k, i) => k !== undefined && this.#hashes[i]! > 1) as string[];
      this.#shift = Math.max(shift, 3);
      this.#keys = new Array(1 << this.#shift).fill(undefined);
      this.#hashes = new Array(1 << this.#shift).fill(0);
      this.#nnodes = 0;
      this.#noccupied = 0;
      for (const k of live) {
        let hash = gStrHash(k);
        if (hash < 2) hash = 2;
        const idx = this.#slotFor(k, hash);
        this.#keys[idx] = k;
        this.#hashes[idx] = hash;
        this.#nnodes++;
        this.#noccupied++;
      }
    }
  }

  /** The first key in iteration order. */
  first(): string | undefined {
    return this.#keys.find((k, i) => k !== undefined && this.#hashes[i]! > 1);
  }
}

/**
 * The first key left in the GHashTable qobject_input_push builds from a QDict's
 * keys (inserted in QDict order) after the visited members were removed in
 * schema order: the "unexpected" member qemu reports. Exact while the table never
 * resizes (under 8 keys); larger tables are modelled by re-inserting in slot order.
 */
export function firstRemainingKey(
  keys: readonly string[],
  removedInOrder: readonly string[],
): string | undefined {
  const h = new GHashModel();
  for (const k of qdictOrder(keys)) h.insert(k);
  for (const k of removedInOrder) h.remove(k);
  return h.first();
}

function typeError(name: string, expected: string): QgaError {
  return new QgaError(`Invalid parameter type for '${name}', expected: ${expected}`);
}

/**
 * Validates `args` (the request's `arguments`, or an empty object) against a
 * command's argument struct; returns the plain values handlers receive. The result is
 * `Infer<S>` because the walk below builds exactly that shape from `desc` (the one place
 * the descriptors' phantom types are asserted for a value).
 */
export function validateArguments<S extends StructDesc<unknown, unknown>>(
  args: JsonObject,
  desc: S,
): Infer<S> {
  return visitStruct(args, desc, "") as Infer<S>;
}

function visitStruct(
  obj: JsonObject,
  desc: StructDesc<unknown, unknown>,
  prefix: string,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const consumed: string[] = [];
  for (const m of desc.members) {
    const full = prefix ? `${prefix}.${m.name}` : m.name;
    if (!obj.has(m.name)) {
      if (m.optional) continue;
      throw new QgaError(`Parameter '${full}' is missing`);
    }
    consumed.push(m.name);
    out[m.name] = visit(obj.get(m.name)!, m.type, full, m.name);
  }
  if (consumed.length < obj.size) {
    const extra = firstRemainingKey([...obj.keys()], consumed);
    if (extra !== undefined) {
      throw new QgaError(`Parameter '${prefix ? `${prefix}.${extra}` : extra}' is unexpected`);
    }
  }
  return out;
}

/**
 * Visits one value. `full` is qemu's full_name (`vcpus[0].online`); `plain` is the
 * bare member name qemu uses in enum and alternate errors (null inside lists).
 */
function visit(v: JsonValue, t: TypeDesc, full: string, plain: string | null): unknown {
  switch (t.kind) {
    case "int":
      if (v instanceof QNum && v.kind === "int") return v.int;
      throw typeError(full, "integer");
    case "uint64":
      if (v instanceof QNum && v.kind !== "double") return BigInt.asUintN(64, v.int);
      throw new QgaError(`Parameter '${full}' expects uint64`);
    case "number":
      if (v instanceof QNum) return v.double;
      throw typeError(full, "number");
    case "bool":
      if (typeof v === "boolean") return v;
      throw typeError(full, "boolean");
    case "str":
      if (typeof v === "string") return v;
      throw typeError(full, "string");
    case "enum":
      if (typeof v !== "string") throw typeError(full, "string");
      if (!t.values.includes(v)) {
        throw new QgaError(`Parameter '${plain ?? "null"}' does not accept value '${v}'`);
      }
      return v;
    case "array": {
      if (!Array.isArray(v)) throw typeError(full, "array");
      return v.map((e, i) => visit(e, t.of, `${full}[${i}]`, null));
    }
    case "struct":
      if (!(v instanceof Map)) throw typeError(full, "object");
      return visitStruct(v, t, full);
    case "alternate": {
      let branch: TypeDesc | undefined;
      if (v instanceof QNum) branch = t.num;
      else if (typeof v === "string") branch = t.str;
      else if (typeof v === "boolean") branch = t.bool;
      if (!branch) {
        throw new QgaError(`Invalid parameter type for '${plain ?? "null"}', expected: ${t.name}`);
      }
      return visit(v, branch, full, plain);
    }
  }
}
