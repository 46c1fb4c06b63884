/**
 * The printed grants (agent/permissions.ts leastPrivilegeCommand, what `--print-permissions`
 * prints and the unit runs): in the default mode, whose write grant is `/` as qemu-ga may
 * write anywhere, the helper's launcher and code, its Deno cache and every path of the deno
 * binary are carved out again with --deny-write; --allow-run names the launcher and the
 * --exec-programs list, never "any program"; nothing grants everything. The same line
 * attacked by a running agent is tests/integration/attack_test.ts.
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all tests/unit/permissions_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { helperCacheDirs, leastPrivilegeCommand } from "../../agent/permissions.ts";
import { COMMANDS } from "../../commands/mod.ts";
import { type AgentOptions, defaultOptions } from "../../config/options.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");
const LAUNCHER = `${REPO}/helper/qga-helper`;

/** Every path of the deno binary in this checkout (the .bin link, the hard links). */
function denoPaths(): string[] {
  const out = [`${REPO}/node_modules/deno/deno`, `${REPO}/node_modules/.bin/deno`];
  for (const e of Deno.readDirSync(`${REPO}/node_modules/@deno`)) {
    const p = `${REPO}/node_modules/@deno/${e.name}/deno`;
    try {
      if (Deno.statSync(p).isFile) out.push(p);
    } catch {
      // A platform package without a binary.
    }
  }
  return out;
}

/** The printed line's flags by name (each flag must appear at most once). */
function flagsOf(overrides: Partial<AgentOptions>): Map<string, string[]> {
  const line = leastPrivilegeCommand(COMMANDS, defaultOptions(overrides), {
    denoPath: `${REPO}/node_modules/.bin/deno`,
    mainPath: `${REPO}/main.ts`,
    args: [],
  });
  assert.ok(!line.some((a) => a === "-A" || a === "--allow-all" || /^--allow-ffi/.test(a)));
  const flags = new Map<string, string[]>();
  for (const a of line.filter((a) => a.startsWith("--allow-") || a.startsWith("--deny-"))) {
    const eq = a.indexOf("=");
    assert.ok(eq > 0, `a grant without a list: ${a}`);
    const name = a.slice(0, eq);
    if (name === "--allow-net") continue; // vsock adds a second one; not checked here
    assert.ok(!flags.has(name), `${name} twice`);
    flags.set(name, a.slice(eq + 1).split(","));
  }
  return flags;
}

const covers = (list: readonly string[], path: string) =>
  list.some((d) => d === "/" || path === d || path.startsWith(`${d}/`));

Deno.test("default mode: the write grant covers the helper, its cache and the deno binary, and --deny-write carves each out", () => {
  const flags = flagsOf({});
  const write = flags.get("--allow-write") ?? [];
  const deny = flags.get("--deny-write") ?? [];
  const guarded = [
    LAUNCHER,
    `${REPO}/helper/main.ts`,
    `${REPO}/helper/programs.ts`,
    helperCacheDirs(REPO)[0]!,
    ...denoPaths(),
  ];
  for (const p of guarded) {
    // Not vacuous: without the carve-out the agent could write there.
    assert.ok(covers(write, p), `the write grant does not cover ${p}: ${write.join(",")}`);
    assert.ok(covers(deny, p), `--deny-write does not cover ${p}: ${deny.join(",")}`);
  }
});

Deno.test("with --file-roots the write grant stays inside the roots and needs no carve-out", () => {
  const flags = flagsOf({ fileRoots: ["/srv/share"] });
  const write = flags.get("--allow-write") ?? [];
  assert.ok(write.includes("/srv/share"), write.join(","));
  assert.ok(!covers(write, LAUNCHER), write.join(","));
  assert.equal(flags.get("--deny-write"), undefined);
});

Deno.test("--allow-run names the launcher and the listed programs, never any program", () => {
  assert.deepEqual(flagsOf({}).get("--allow-run"), [LAUNCHER]);
  assert.deepEqual(
    flagsOf({ execPrograms: ["/bin/echo", "/usr/bin/true"] }).get("--allow-run"),
    ["/bin/echo", "/usr/bin/true", LAUNCHER],
  );
  // guest-exec blocked: only the launcher (and no program at all is listed as "*").
  assert.deepEqual(flagsOf({ blockRpcs: ["guest-exec"] }).get("--allow-run"), [LAUNCHER]);
});
