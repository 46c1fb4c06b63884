/**
 * The mutation check (`npm run mutants`): each mutant in tests/mutants/list.ts is a small,
 * named breakage of the product (one exact text replaced by another in one file). Each is
 * applied to a scratch copy of the repository and the fast tests it names are run there;
 * a mutant is killed when those tests fail. A mutant whose text is not found exactly once
 * is an error (the list went stale), never a pass.
 *
 * ```sh
 * npm run mutants                         # every mutant
 * npm run mutants -- --subset             # the fixed subset (.ci/run with QGA_CI_MUTANTS=subset)
 * npm run mutants -- --only=name,name     # some, by name
 * ```
 *
 * Prints one line per mutant, then `mutants killed K/N`, then `K passed, F failed` (a
 * surviving or stale mutant counts as failed) for .ci/run's total. Runs with -A: the
 * tests it starts need what `npm test` gives them.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Mutant, MUTANTS } from "../tests/mutants/list.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const DENO = join(ROOT, "node_modules/.bin/deno");
/** A mutant's tests get this long; a run that hangs counts as killed (the same tests
 * passed on the unmutated copy, checked first), and the line says it timed out. */
const TEST_TIMEOUT_MS = 180_000;

/** Files and folders copied into the scratch tree (node_modules is linked, not copied). */
async function copyTree(from: string, to: string): Promise<void> {
  const files = new TextDecoder().decode(
    (await new Deno.Command("git", {
      args: ["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
      cwd: from,
      stdout: "piped",
    }).output()).stdout,
  ).split("\0").filter((f) => f !== "");
  for (const f of files) {
    const src = join(from, f);
    let st: Deno.FileInfo;
    try {
      st = await Deno.lstat(src);
    } catch {
      continue; // deleted in the work tree
    }
    const dst = join(to, f);
    await Deno.mkdir(dirname(dst), { recursive: true });
    if (st.isSymlink) await Deno.symlink(await Deno.readLink(src), dst);
    else await Deno.copyFile(src, dst);
  }
  await Deno.symlink(join(from, "node_modules"), join(to, "node_modules"));
}

interface TestRun {
  ok: boolean;
  timedOut: boolean;
  tail: string;
  /** The first test reported FAILED (what killed a mutant), if any. */
  firstFailed: string | undefined;
}

async function runTests(tree: string, tests: readonly string[]): Promise<TestRun> {
  const child = new Deno.Command(DENO, {
    // --no-check: a mutant must be caught by a test failing, not by the type checker.
    args: ["test", "--no-check", "--no-prompt", "--allow-all", "--fail-fast", ...tests],
    cwd: tree,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  }, TEST_TIMEOUT_MS);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const lines = text.split("\n");
  const firstFailed = lines.find((l) => / \.\.\. FAILED/.test(l))?.replace(/ \.\.\. FAILED.*/, "");
  return { ok: out.success && !timedOut, timedOut, tail: lines.slice(-12).join("\n"), firstFailed };
}

function countOccurrences(text: string, find: string): number {
  let n = 0;
  for (let i = text.indexOf(find); i >= 0; i = text.indexOf(find, i + 1)) n++;
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string" },
      subset: { type: "boolean", default: false },
      keep: { type: "boolean", default: false },
    },
  });
  let list: readonly Mutant[] = MUTANTS;
  if (values.only) {
    const names = new Set(values.only.split(","));
    list = MUTANTS.filter((m) => names.has(m.name));
    const unknown = [...names].filter((n) => !MUTANTS.some((m) => m.name === n));
    if (unknown.length) throw new Error(`unknown mutants: ${unknown.join(", ")}`);
  } else if (values.subset) {
    list = MUTANTS.filter((m) => m.subset);
  }
  console.log(
    values.subset
      ? `# mutants: the fixed subset (${list.length} of ${MUTANTS.length}); the full list: npm run mutants`
      : values.only
      ? `# mutants: ${list.length} of ${MUTANTS.length}, by name`
      : `# mutants: the full list (${list.length})`,
  );
  const tree = await Deno.makeTempDir({ prefix: "qga-mutants-" });
  let killed = 0;
  let failed = 0;
  try {
    await copyTree(ROOT, tree);
    // Each group of tests must pass unmutated, or a kill would prove nothing.
    const baseline = new Map<string, TestRun>();
    for (const m of list) {
      const key = m.tests.join(" ");
      if (!baseline.has(key)) baseline.set(key, await runTests(tree, m.tests));
    }
    for (const m of list) {
      const base = baseline.get(m.tests.join(" "))!;
      if (!base.ok) {
        failed++;
        console.log(`ERROR ${m.name}: its tests fail unmutated:\n${base.tail}`);
        continue;
      }
      const path = join(tree, m.file);
      const original = await Deno.readTextFile(path);
      const n = countOccurrences(original, m.find);
      if (n !== 1) {
        failed++;
        console.log(`STALE ${m.name}: ${m.file} has the text ${n} times (needs exactly 1)`);
        continue;
      }
      await Deno.writeTextFile(path, original.replace(m.find, () => m.replace));
      const t0 = performance.now();
      const r = await runTests(tree, m.tests);
      await Deno.writeTextFile(path, original);
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      if (!r.ok) {
        killed++;
        const by = r.firstFailed ? `: ${r.firstFailed}` : "";
        console.log(`killed   ${m.name} (${secs} s${r.timedOut ? ", timed out" : ""})${by}`);
      } else {
        failed++;
        console.log(`SURVIVED ${m.name} (${secs} s): ${m.what}\n  tests: ${m.tests.join(" ")}`);
      }
    }
  } finally {
    if (!values.keep) await Deno.remove(tree, { recursive: true });
    else console.log(`# scratch tree kept: ${tree}`);
  }
  console.log(`mutants killed ${killed}/${list.length}`);
  console.log(`${killed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
