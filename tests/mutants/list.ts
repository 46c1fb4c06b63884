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
    subset: true,
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
  {
    name: "registry-sandbox-reason-dropped",
    what: "a command the sandbox cannot serve is disabled without the sandbox's reason",
    file: "agent/registry.ts",
    find: "    if (sandbox !== undefined) return sandbox;",
    replace: '    if (sandbox !== undefined) return "";',
    tests: ["tests/unit/registry_test.ts"],
  },
  {
    name: "registry-allow-list-ignored",
    what: "a command left out of -a (allow-rpcs) stays enabled",
    file: "agent/registry.ts",
    find: '    if (this.#allow && !this.#allow.has(name)) return "";',
    replace: "",
    tests: ["tests/unit/registry_test.ts"],
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
  {
    name: "file-policy-read-only-root-writable",
    what: "a write mode is accepted on a read-only root (fileReadRoots)",
    file: "commands/file_policy.ts",
    find: "rw.some((r) => inside(resolved, r)) || (!write && ro.some((r) => inside(resolved, r)));",
    replace: "rw.some((r) => inside(resolved, r)) || ro.some((r) => inside(resolved, r));",
    tests: ["tests/unit/file_policy_test.ts"],
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
  {
    name: "file-read-count-unbounded",
    what: "guest-file-read accepts a count above qemu-ga's 48 MiB limit",
    file: "commands/file.ts",
    find: "    if (count < 0n || count > READ_COUNT_MAX) throw invalidCount(count);",
    replace: "    if (count < 0n) throw invalidCount(count);",
    tests: ["tests/unit/file_test.ts"],
  },
  {
    name: "file-write-count-unchecked",
    what: "guest-file-write accepts a count larger than the data it was given",
    file: "commands/file.ts",
    find: "    if (count < 0n || count > BigInt(data.length)) throw invalidCount(count);",
    replace: "    if (count < 0n) throw invalidCount(count);",
    tests: ["tests/unit/file_test.ts"],
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
  // ------------------------------------------------------------------ exec policy
  {
    name: "exec-policy-lexical-compare",
    what:
      "--exec-programs compares spellings instead of canonical paths (a symlinked spelling is refused)",
    file: "commands/exec_policy.ts",
    find: "      if (listed === null || canonical(listed) !== want) continue;",
    replace: "      if (listed === null || listed !== found) continue;",
    tests: ["tests/unit/exec_policy_test.ts"],
  },
  // ------------------------------------------------------------------ helper allowlist
  {
    name: "helper-allowlist-requested-path",
    what:
      "the allowlist is re-checked on the requested path, not the resolved one (symlink escape)",
    file: "helper/ops.ts",
    find: '    const rule = this.#require(op, this.#canonical(real), access, "resolved");',
    replace: '    const rule = this.#require(op, path, access, "resolved");',
    tests: ["tests/unit/helper_test.ts"],
    subset: true,
  },
  {
    name: "helper-rule-any-sysfs-file",
    what: "the sysfs read rule serves any file under /sys/devices, not only the listed attributes",
    file: "helper/ops.ts",
    find: '  { pattern: `/sys/{devices|block|class|dev|bus}/{path}/${ATTRS}`, access: "read" },',
    replace: '  { pattern: `/sys/{devices|block|class|dev|bus}/{path}`, access: "read" },',
    tests: ["tests/unit/helper_test.ts"],
  },
  // ------------------------------------------------------------------ helper programs
  {
    name: "helper-set-clock-any-value",
    what: "set-clock puts any value on date's command line (date -f /etc/shadow)",
    file: "helper/programs.ts",
    find: "      if (!Number.isSafeInteger(s) || !Number.isSafeInteger(us)) {",
    replace: "      if (false) {",
    tests: ["tests/unit/helper_programs_test.ts"],
  },
  {
    name: "helper-hook-option-accepted",
    what: "an fsfreeze hook that looks like an option is accepted at Init",
    file: "helper/programs.ts",
    find: '  if (hook.startsWith("-")) {',
    replace: "  if (false) {",
    tests: ["tests/unit/helper_programs_test.ts"],
  },
  // ------------------------------------------------------------------ helper launcher
  {
    name: "launcher-keeps-environment",
    what: "helper/qga-helper passes the caller's environment on (env without -i)",
    file: "helper/qga-helper",
    find: "exec /usr/bin/env -i \\\n",
    replace: "exec /usr/bin/env \\\n",
    tests: ["tests/unit/launcher_test.ts"],
    subset: true,
  },
  {
    name: "launcher-bundle-reads-config",
    what: "packaging/qga-helper.sh runs the helper without --no-config",
    file: "packaging/qga-helper.sh",
    find: "  --allow-all --no-prompt --no-config --no-lock --no-remote --no-npm \\\n",
    replace: "  --allow-all --no-prompt --no-lock --no-remote --no-npm \\\n",
    tests: ["tests/unit/launcher_test.ts"],
  },
  // ------------------------------------------------------------------ helper Init
  {
    name: "helper-second-init-accepted",
    what: "the helper accepts Init again after the first request",
    file: "helper/main.ts",
    find: "    if (!first || this.#init) {",
    replace: "    if (false) {",
    tests: ["tests/unit/helper_programs_test.ts"],
  },
  {
    name: "init-record-other-settings",
    what: "a later helper of the same agent accepts settings other than the recorded ones",
    file: "helper/init_record.ts",
    find: "    if (!sameSettings(existing, requested)) {",
    replace: "    if (false) {",
    tests: ["tests/unit/helper_lifecycle_test.ts"],
  },
  // ------------------------------------------------------------------ channel relay
  {
    name: "channel-other-than-named",
    what: "the helper opens a channel request for a path other than the one named at start",
    file: "helper/main.ts",
    find: "          if (!named || named.path !== req?.path || named.mode !== mode) {",
    replace: "          if (!named) {",
    tests: ["tests/unit/system_real_test.ts"],
    subset: true,
  },
  {
    name: "channel-drops-rest-of-chunk",
    what: "the relay drops what is left of a read chunk larger than the agent's request",
    file: "helper/channel_worker.ts",
    find:
      "        if (take === head.length) queue.shift();\n        else queue[0] = head.subarray(take);",
    replace: "        queue.shift();",
    tests: ["tests/unit/system_real_test.ts"],
  },
  // ------------------------------------------------------------------ thaw on exit
  {
    name: "thaw-on-exit-removed",
    what: "the agent no longer thaws the guest when it stops (SIGTERM) while frozen",
    file: "agent/run.ts",
    find: "        await deps.thawAll(agent);",
    replace: "        void 0;",
    tests: ["tests/unit/run_shutdown_test.ts"],
    subset: true,
  },
  {
    name: "thaw-sigterm-unhandled",
    what: "SIGTERM is no longer handled, so the agent dies by it without thawing",
    file: "agent/run.ts",
    find: 'for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {',
    replace: 'for (const sig of ["SIGINT", "SIGHUP"] as const) {',
    tests: ["tests/unit/run_shutdown_test.ts"],
  },
  // ------------------------------------------------------------------ start-up
  {
    name: "ready-gate-open",
    what:
      "requests other than guest-sync are served before the helper has started (guest-info reports the commands that need it before the outcome is known)",
    file: "agent/agent.ts",
    find: "        if (this.#ready && !ANSWERED_BEFORE_READY.has(executeOf(ev.value))) {",
    replace: "        if (this.#ready && false) {",
    tests: ["tests/unit/agent_ready_test.ts"],
  },
  {
    name: "host-read-before-init",
    what:
      "the agent reads host input before its first helper's Init is sent (a host that compromised the agent could choose the recorded settings)",
    file: "agent/run.ts",
    find: "  await initSent;\n",
    replace: "",
    tests: ["tests/unit/run_init_order_test.ts"],
  },
  {
    name: "startup-loads-node",
    what:
      "a module the agent loads at start imports node:path again (Node compatibility at every start)",
    file: "agent/state.ts",
    find: 'import { join } from "../config/path.ts";',
    replace: 'import { join } from "node:path";',
    tests: ["tests/unit/layers_test.ts"],
  },
  {
    name: "startup-loads-table",
    what:
      "main.ts imports the whole command table at start again (every command module compiled before the first reply)",
    file: "main.ts",
    find: 'import { QEMU_GA_LINUX_COMMANDS } from "./commands/names.ts";',
    replace: 'import { QEMU_GA_LINUX_COMMANDS } from "./commands/mod.ts";',
    tests: ["tests/unit/layers_test.ts"],
  },
  {
    name: "late-table-not-loaded",
    what:
      "the agent never loads the rest of its command table: only guest-sync and guest-sync-delimited are ever served",
    file: "agent/run.ts",
    find: "    readying ??= Promise.all([startHelperOnce(), loadTable()])",
    replace: "    readying ??= Promise.all([startHelperOnce(), Promise.resolve(undefined)])",
    tests: ["tests/unit/run_late_table_test.ts"],
  },
  // ------------------------------------------------------------------ printed grants
  {
    name: "grants-deny-write-dropped",
    what:
      "the printed line no longer carves the helper's code, cache and deno binary out of a wide write grant",
    file: "agent/permissions.ts",
    find: '  if (covered.length) flags.push(`--deny-write=${covered.join(",")}`);',
    replace: "",
    tests: ["tests/unit/permissions_test.ts"],
    subset: true,
  },
  {
    name: "grants-run-any-program",
    what:
      'the printed --allow-run keeps guest-exec\'s "*" (any program) when no --exec-programs is set',
    file: "agent/permissions.ts",
    find: '  const run = [...new Set(n.run)].filter((r) => r !== "*");',
    replace: "  const run = [...new Set(n.run)];",
    tests: ["tests/unit/permissions_test.ts"],
  },
  // ------------------------------------------------------------------ ssh keys
  {
    name: "ssh-keys-follow-symlink",
    what: "authorized_keys is opened without O_NOFOLLOW (a symlink to a root-only file is read)",
    file: "helper/authorized_keys.ts",
    find: "  const fd = fs.openSync(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK);",
    replace: "  const fd = fs.openSync(path, O_RDONLY | O_NONBLOCK);",
    tests: ["tests/integration/attack_test.ts"],
  },
];
