/**
 * The mutation list of `npm run mutants` (scripts/mutants.ts): small, named breakages of
 * the product, each of which a fast test (unit or integration, never only the
 * differential or fuzz run) must notice. `find` must occur exactly once in `file`.
 *
 * @module
 */

/** One breakage. */
export interface Mutant {
  /** Short unique name. */
  readonly name: string;
  /** What the breakage does, in words. */
  readonly what: string;
  /** File, relative to the repository root. */
  readonly file: string;
  /** Exact text to replace (must occur exactly once). */
  readonly find: string;
  readonly replace: string;
  /** The fast tests that must fail (paths relative to the repository root). */
  readonly tests: readonly string[];
  /** Part of the fixed subset CI runs when its time budget is short. */
  readonly subset?: true;
}

/** Every mutant, grouped by the part of the product it breaks. */
export const MUTANTS: readonly Mutant[] = [
  // ------------------------------------------------------------------ streamer
  {
    name: "stream-0xff-no-recovery-end",
    what: "0xFF no longer ends error recovery (only 0xFE and control bytes do)",
    file: "transport/json_stream.ts",
    find: "if (c < 0x20 || c >= 0xfe) return S_START | LOOKAHEAD;",
    replace: "if (c < 0x20 || c === 0xfe) return S_START | LOOKAHEAD;",
    tests: ["tests/unit/json_stream_test.ts"],
    subset: true,
  },
];
