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
    file: "protocol/json_stream.ts",
    find: "if (c < 0x20 || c >= 0xfe) return S_START | LOOKAHEAD;",
    replace: "if (c < 0x20 || c === 0xfe) return S_START | LOOKAHEAD;",
    tests: ["tests/unit/json_stream_test.ts"],
    subset: true,
  },
  // ------------------------------------------------------------------ writer
  {
    name: "writer-lower-case-hex",
    what: "\\uXXXX escapes written in lower-case hex",
    file: "protocol/json_writer.ts",
    find: 'return n.toString(16).toUpperCase().padStart(4, "0");',
    replace: 'return n.toString(16).padStart(4, "0");',
    tests: ["tests/unit/protocol_test.ts"],
    subset: true,
  },
  {
    name: "writer-insertion-order",
    what: "reply members in insertion order instead of QDict hash order",
    file: "protocol/json_writer.ts",
    find: "indexed.sort((x, y) => x.b - y.b || y.i - x.i);",
    replace: "indexed.sort((x, y) => x.i - y.i);",
    tests: ["tests/unit/protocol_test.ts"],
  },
  // ------------------------------------------------------------------ validation
  {
    name: "validate-unexpected-first",
    what: "an unexpected member is reported before a bad declared one",
    file: "protocol/validate.ts",
    find:
      "  for (const m of desc.members) {\n    const full = prefix ? `${prefix}.${m.name}` : m.name;",
    replace:
      "  for (const k of obj.keys()) {\n    if (!desc.members.some((m) => m.name === k)) {\n" +
      "      throw new QgaError(`Parameter '${k}' is unexpected`);\n    }\n  }\n" +
      "  for (const m of desc.members) {\n    const full = prefix ? `${prefix}.${m.name}` : m.name;",
    tests: ["tests/unit/protocol_test.ts"],
  },
  {
    name: "validate-enum-any-string",
    what: "an enum accepts any string",
    file: "protocol/validate.ts",
    find: "      if (!t.values.includes(v)) {",
    replace: "      if (false) {",
    tests: ["tests/unit/protocol_test.ts"],
  },
  // ------------------------------------------------------------------ dispatcher
  {
    name: "dispatch-no-id",
    what: "replies no longer echo the request's id",
    file: "agent/dispatch.ts",
    find: '  const id = request.get("id");',
    replace: "  const id = undefined;",
    tests: ["tests/unit/protocol_test.ts"],
    subset: true,
  },
  {
    name: "dispatch-unknown-generic",
    what: "an unknown command answers GenericError instead of CommandNotFound",
    file: "agent/dispatch.ts",
    find: '    return fail("CommandNotFound", `The command ${name} has not been found`',
    replace: '    return fail("GenericError", `The command ${name} has not been found`',
    tests: ["tests/unit/protocol_test.ts"],
  },
  // ------------------------------------------------------------------ registry
  {
    name: "registry-frozen-reason-dropped",
    what: "the frozen-state reason text is dropped from the disabled reply",
    file: "agent/registry.ts",
    find: "return REASON_FROZEN;",
    replace: 'return "";',
    tests: ["tests/unit/registry_test.ts"],
    subset: true,
  },
  {
    name: "registry-allow-beats-block",
    what: "a name on both lists is allowed (the block list no longer wins)",
    file: "agent/registry.ts",
    find: '    if (this.#block.has(name)) return "";',
    replace: '    if (this.#block.has(name) && !this.#allow?.has(name)) return "";',
    tests: ["tests/unit/registry_test.ts", "tests/unit/protocol_test.ts"],
  },
  // ------------------------------------------------------------------ file policy
  {
    name: "file-policy-prefix-sibling",
    what: "a sibling sharing the root's prefix (/srv/share-x) counts as inside /srv/share",
    file: "commands/file_policy.ts",
    find: "path.startsWith(`${root}/`)",
    replace: "path.startsWith(root)",
    tests: ["tests/unit/file_policy_test.ts"],
    subset: true,
  },
  // ------------------------------------------------------------------ file commands and state
  {
    name: "file-read-eof-never",
    what: "guest-file-read never reports eof",
    file: "system/guest_file.ts",
    find: "        if (n === 0) {\n          eof = true;",
    replace: "        if (n === 0) {\n          eof = false;",
    tests: ["tests/unit/file_test.ts"],
    subset: true,
  },
  {
    name: "file-seek-cur-as-end",
    what: "whence 1 (SEEK_CUR) seeks from the end",
    file: "commands/file.ts",
    find: '  if (n === 1n) return "cur";',
    replace: '  if (n === 1n) return "end";',
    tests: ["tests/unit/file_test.ts"],
  },
  {
    name: "state-counter-not-committed",
    what: "a new guest-file handle is not committed to qga.state",
    file: "agent/state.ts",
    find: "    const handle = this.#counter++;\n    try {\n      this.#write();",
    replace: "    const handle = this.#counter++;\n    try {\n      void 0;",
    tests: ["tests/unit/state_test.ts"],
  },
  // ------------------------------------------------------------------ exec capture
  {
    name: "exec-capture-unbounded",
    what: "guest-exec keeps more than 16 MiB of output and never flags truncation",
    file: "commands/exec.ts",
    find: "    if (chunk.length > room) {",
    replace: "    if (false) {",
    tests: ["tests/unit/exec_test.ts"],
  },
  {
    name: "exec-merged-two-pipes",
    what: "merged capture reads two pipes in arrival order instead of one shared socket",
    file: "commands/exec.ts",
    find: 'const shared = mode === "merged" ? await sharedOutput(ctx) : null;',
    replace: "const shared = null as SharedOutput | null;",
    tests: ["tests/unit/shared_output_test.ts"],
    subset: true,
  },
];
