/**
 * Summarises a V8 `.cpuprofile` (as written by `deno run --cpu-prof`): where the
 * busy time goes, by function (self and inclusive) and by source file.
 *
 * ```sh
 * ./node_modules/.bin/deno run --allow-read bench/profile_summary.ts bench/profiles/*.cpuprofile --top=15
 * ```
 *
 * Self time of a sample is the interval up to the next sample (as Chrome DevTools
 * counts it). `(idle)` is time the agent waited for input; percentages are of the
 * busy (non-idle) time.
 *
 * @module
 */

import { parseArgs } from "node:util";

/** The parts of a V8 CPU profile used here. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** One row of the summary. */
export interface Row {
  name: string;
  location: string;
  /** Microseconds. */
  self: number;
  /** Microseconds. */
  total: number;
}

/** The summary of one profile. */
export interface Summary {
  /** Wall time covered by samples, µs. */
  sampled: number;
  idle: number;
  busy: number;
  functions: Row[];
  files: { file: string; self: number }[];
}

function shortUrl(url: string, repoRoot: string): string {
  if (url === "") return "(native)";
  const root = `file://${repoRoot.endsWith("/") ? repoRoot : repoRoot + "/"}`;
  if (url.startsWith(root)) return url.slice(root.length);
  const m =
    /^file:\/\/.*\/((?:agent|transport|protocol|config|commands|system|cli|helper|client)\/[^/]+)$/
      .exec(url);
  return m ? m[1]! : url;
}

/** Computes self and inclusive time per function and self time per file. */
export function summarise(profile: CpuProfile, repoRoot: string): Summary {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = new Map<number, { key: string; name: string; location: string; file: string }>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    const name = f.functionName || (f.url ? "(anonymous)" : "(native)");
    const file = shortUrl(f.url, repoRoot);
    const location = f.url ? `${file}:${f.lineNumber + 1}` : "";
    keyOf.set(n.id, { key: `${name}\u0000${location}`, name, location, file: f.url ? file : name });
  }
  const rows = new Map<string, Row>();
  const files = new Map<string, number>();
  let idle = 0;
  let sampled = 0;
  const { samples, timeDeltas } = profile;
  for (let i = 0; i < samples.length; i++) {
    const dt = timeDeltas[i + 1] ?? 0;
    sampled += dt;
    const id = samples[i]!;
    const k = keyOf.get(id)!;
    if (k.name === "(idle)") {
      idle += dt;
      continue;
    }
    const row = rows.get(k.key) ?? { name: k.name, location: k.location, self: 0, total: 0 };
    row.self += dt;
    rows.set(k.key, row);
    files.set(k.file, (files.get(k.file) ?? 0) + dt);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const pk = keyOf.get(at)!;
      if (pk.name === "(root)" || seen.has(pk.key)) continue;
      seen.add(pk.key);
      const r = rows.get(pk.key) ?? { name: pk.name, location: pk.location, self: 0, total: 0 };
      r.total += dt;
      rows.set(pk.key, r);
    }
  }
  return {
    sampled,
    idle,
    busy: sampled - idle,
    functions: [...rows.values()],
    files: [...files.entries()].map(([file, self]) => ({ file, self })).sort((a, b) =>
      b.self - a.self
    ),
  };
}

function ms(us: number): string {
  return (us / 1000).toFixed(1);
}

function pct(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : "-";
}

/** The summary as markdown: top functions by self time, by inclusive time, and files. */
export function summaryMarkdown(title: string, s: Summary, top = 15): string {
  const lines: string[] = [];
  lines.push(`#### ${title}`, "");
  lines.push(
    `Sampled ${ms(s.sampled)} ms: busy ${ms(s.busy)} ms, idle (waiting for the client) ${
      ms(s.idle)
    } ms. ` +
      "Percentages are of busy time.",
    "",
  );
  lines.push("Top functions by self time:", "");
  lines.push("| function | location | self ms | self % | incl. % |", "|---|---|---:|---:|---:|");
  for (const r of [...s.functions].sort((a, b) => b.self - a.self).slice(0, top)) {
    lines.push(
      `| \`${r.name}\` | ${r.location || "-"} | ${ms(r.self)} | ${pct(r.self, s.busy)} | ${
        pct(r.total, s.busy)
      } |`,
    );
  }
  lines.push("", "Top project functions by inclusive time:", "");
  lines.push("| function | location | incl. ms | incl. % |", "|---|---|---:|---:|");
  const project = s.functions.filter((r) =>
    /^(agent|transport|protocol|config|commands|system|main\.ts)/.test(r.location)
  );
  for (const r of project.sort((a, b) => b.total - a.total).slice(0, Math.min(top, 10))) {
    lines.push(`| \`${r.name}\` | ${r.location} | ${ms(r.total)} | ${pct(r.total, s.busy)} |`);
  }
  lines.push("", "Self time by source:", "");
  lines.push("| source | self ms | self % |", "|---|---:|---:|");
  for (const f of s.files.slice(0, 10)) {
    lines.push(`| ${f.file} | ${ms(f.self)} | ${pct(f.self, s.busy)} |`);
  }
  lines.push("");
  return lines.join("\n");
}

/** Reads and summarises one file. */
export async function summariseFile(path: string, repoRoot: string, top = 15): Promise<string> {
  const profile = JSON.parse(await Deno.readTextFile(path)) as CpuProfile;
  const title = path.split("/").pop()!.replace(/\.cpuprofile$/, "");
  return summaryMarkdown(title, summarise(profile, repoRoot), top);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    options: { top: { type: "string", default: "15" }, repo: { type: "string" } },
    allowPositionals: true,
  });
  const repo = values.repo ?? new URL("../", import.meta.url).pathname;
  if (positionals.length === 0) {
    console.error("usage: profile_summary.ts FILE.cpuprofile... [--top=N] [--repo=DIR]");
    Deno.exit(2);
  }
  for (const p of positionals) console.log(await summariseFile(p, repo, Number(values.top)));
}
