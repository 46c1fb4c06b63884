/**
 * The import graph against the layers of README.md's layout table (the one place they are
 * defined): every import of a production file goes to its own folder or to a folder of a
 * lower layer, no imports form a cycle, nothing imports tests/ or bench/, helper/ imports
 * nothing outside helper/ (it runs with --allow-all), and commands/ does no I/O of its own.
 * The graph is Deno's own (`deno info --json`): static, dynamic and type-only imports.
 */

import assert from "node:assert/strict";
import { join, relative } from "node:path";

const REPO = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** `where` → layer, from README.md's layout table (rows with a layer number). */
function readmeLayers(): Map<string, number> {
  const readme = Deno.readTextFileSync(`${REPO}/README.md`);
  const at = readme.indexOf("## Layout");
  assert.ok(at >= 0, "README.md has no Layout section");
  const section = readme.slice(at, readme.indexOf("\n## ", at + 1));
  const layers = new Map<string, number>();
  for (const m of section.matchAll(/^\| +(\d*) \| `([^`]+)` +\|/gm)) {
    if (m[1] !== "") layers.set(m[2]!.replace(/\/$/, ""), Number(m[1]));
  }
  assert.ok(layers.size > 5, "no layered rows found in README.md's layout table");
  return layers;
}

/** Every .ts file under `dir` (recursively), relative to the repository. */
function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(join(REPO, dir))) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...tsFiles(rel));
    else if (e.name.endsWith(".ts")) out.push(rel);
  }
  return out;
}

/** The folder (or `main.ts`) a repository path belongs to. */
function ownerOf(path: string): string {
  return path.includes("/") ? path.slice(0, path.indexOf("/")) : path;
}

/** `deno info --json` of one root module. */
async function denoInfo(root: string): Promise<{
  modules: {
    specifier: string;
    dependencies?: {
      code?: { specifier: string };
      type?: { specifier: string };
      isDynamic?: boolean;
    }[];
  }[];
}> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--no-config", root],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Edges between repository files, as Deno resolves them, for the given roots. */
async function importGraph(files: string[]): Promise<Map<string, string[]>> {
  const root = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      root,
      files.map((f) => `import ${JSON.stringify(`file://${REPO}/${f}`)};\n`).join(""),
    );
    const info = await denoInfo(root);
    const inRepo = (spec: string) =>
      spec.startsWith(`file://${REPO}/`) ? relative(REPO, new URL(spec).pathname) : undefined;
    const graph = new Map<string, string[]>();
    for (const m of info.modules) {
      const from = inRepo(m.specifier);
      if (from === undefined || !files.includes(from)) continue;
      const to = new Set<string>();
      for (const d of m.dependencies ?? []) {
        for (const spec of [d.code?.specifier, d.type?.specifier]) {
          const target = spec === undefined ? undefined : inRepo(spec);
          if (target !== undefined) to.add(target);
        }
      }
      graph.set(from, [...to]);
    }
    return graph;
  } finally {
    await Deno.remove(root);
  }
}

const layers = readmeLayers();
const production = [...layers.keys()].flatMap((w) => w.endsWith(".ts") ? [w] : tsFiles(w));
const graph = await importGraph(production);

Deno.test("README's layout table lists every folder of code, and only existing ones", () => {
  const skip = new Set(["node_modules", "tests", "bench", "dist", "run", "cov"]);
  for (const e of Deno.readDirSync(REPO)) {
    if (!e.isDirectory || skip.has(e.name) || e.name.startsWith(".")) continue;
    if (tsFiles(e.name).length > 0) assert.ok(layers.has(e.name), `${e.name}/ has no layer`);
  }
  for (const w of layers.keys()) {
    assert.ok(Deno.statSync(join(REPO, w)), `${w} does not exist`);
  }
  assert.equal(graph.size, production.length, "deno info did not see every production file");
});

/** Test tools among the npm scripts: they may read what tests/ holds. */
const TEST_TOOLS: Record<string, string> = {
  "scripts/mutants.ts": "tests/mutants/list.ts", // the mutation runner reads the mutant list
};

Deno.test("no import runs from a lower layer to a higher one, or across one layer", () => {
  const wrong: string[] = [];
  for (const [from, tos] of graph) {
    const a = ownerOf(from);
    for (const to of tos) {
      const b = ownerOf(to);
      if (a === b || TEST_TOOLS[from] === to) continue;
      const la = layers.get(a);
      const lb = layers.get(b);
      if (la === undefined || lb === undefined || lb >= la) {
        wrong.push(`${from} (${la ?? "no layer"}) imports ${to} (${lb ?? "no layer"})`);
      }
    }
  }
  assert.deepEqual(wrong, []);
});

Deno.test("no import cycle", () => {
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === "done") return;
    if (state.get(f) === "open") {
      cycles.push([...path.slice(path.indexOf(f)), f].join(" -> "));
      return;
    }
    state.set(f, "open");
    for (const to of graph.get(f) ?? []) visit(to, [...path, f]);
    state.set(f, "done");
  };
  for (const f of graph.keys()) visit(f, []);
  assert.deepEqual(cycles, []);
});

Deno.test("helper/ imports nothing outside helper/ (it runs with --allow-all)", () => {
  const outside = [...graph].filter(([f]) => f.startsWith("helper/"))
    .flatMap(([f, tos]) => tos.filter((t) => !t.startsWith("helper/")).map((t) => `${f} -> ${t}`));
  assert.deepEqual(outside, []);
});

Deno.test("commands/ does no I/O of its own (Linux through system/)", () => {
  const found: string[] = [];
  for (const f of tsFiles("commands")) {
    const code = Deno.readTextFileSync(join(REPO, f))
      .replace(/\/\*[\s\S]*?\*\//g, "")
      .replace(/^\s*\/\/.*$/gm, "");
    for (const m of code.matchAll(/from "(node:[a-z_/]+)"/g)) {
      if (m[1] !== "node:path") found.push(`${f}: imports ${m[1]}`);
    }
    const withoutStrings = code.replace(/"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`/g, '""')
      .replace(/\/\/.*$/gm, "");
    for (const m of withoutStrings.matchAll(/\bDeno\.([A-Za-z]+)/g)) {
      if (m[1] !== "build") found.push(`${f}: Deno.${m[1]}`);
    }
  }
  assert.deepEqual(found, []);
});

/**
 * The modules `entry` loads, from `entry` down, and the static node: imports among them.
 * `followDynamic` follows dynamic imports too, as a bundler does: without code splitting
 * `deno bundle` inlines a dynamically imported module and hoists its static imports to
 * its top. A static node: import loads Deno's Node compatibility when its module loads
 * (memory and start-up time: docs/performance.md); `await import("node:...")` at first use
 * is fine.
 */
async function moduleGraph(
  entry: string,
  followDynamic: boolean,
): Promise<{ modules: string[]; node: string[] }> {
  const info = await denoInfo(join(REPO, entry));
  const bySpec = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>();
  const node: string[] = [];
  const todo = [new URL(`file://${REPO}/${entry}`).href];
  while (todo.length) {
    const spec = todo.pop()!;
    if (seen.has(spec)) continue;
    seen.add(spec);
    for (const d of bySpec.get(spec)?.dependencies ?? []) {
      const target = d.code?.specifier;
      if (target === undefined || (d.isDynamic && !followDynamic)) continue;
      if (target.startsWith("node:")) {
        if (!d.isDynamic) node.push(`${relative(REPO, new URL(spec).pathname)} imports ${target}`);
      } else if (target.startsWith("file:")) todo.push(target);
    }
  }
  return { modules: [...seen].map((s) => relative(REPO, new URL(s).pathname)).sort(), node };
}

Deno.test("the agent's start-up loads no node: module (they load on first use)", async () => {
  const { node, modules } = await moduleGraph("main.ts", true);
  assert.ok(modules.length > 50, `only ${modules.length} modules found from main.ts`);
  assert.deepEqual(node, []);
});

Deno.test("the helper's start-up loads no node: module (they load on first use)", async () => {
  const { node, modules } = await moduleGraph("helper/main.ts", true);
  assert.ok(modules.length > 5, `only ${modules.length} modules found from helper/main.ts`);
  assert.deepEqual(node, []);
});

Deno.test("the agent's start-up loads no command module but session.ts (the table loads after the first reply)", async () => {
  const graph = (await moduleGraph("main.ts", false)).modules;
  assert.ok(graph.includes("agent/agent.ts"), `main.ts's graph: ${graph.join(" ")}`);
  assert.deepEqual(
    graph.filter((f) => f.startsWith("commands/")),
    ["commands/names.ts", "commands/session.ts", "commands/types.ts"],
  );
});
