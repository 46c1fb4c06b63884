/**
 * qemu's integer ranges, and the one way a handler hands a 64-bit integer to the writer:
 * as a number when it is a safe integer (exact, and what tests compare with), else as a
 * bigint. The writer prints both the same way (protocol/types.ts: `int` and `uint64`
 * results may be either).
 *
 * @module
 */

/** The smallest int64. */
export const INT64_MIN = -(2n ** 63n);
/** The largest int64. */
export const INT64_MAX = 2n ** 63n - 1n;
/** The largest uint64. */
export const UINT64_MAX = 2n ** 64n - 1n;

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** An int64 or uint64 result: a number when it is exactly representable, else the bigint. */
export function intResult(v: bigint): number | bigint {
  return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : v;
}
