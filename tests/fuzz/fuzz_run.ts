/**
 * Runs fuzz cases against deno-qga and qemu-ga side by side: every case must be
 * followed by a correct sync reply from deno-qga (no crash, no hang), qemu-ga must
 * answer every case too, and the replies must agree byte for byte, line by line,
 * except for lines showing one of the documented 7.2/10.2 differences listed in
 * KNOWN_DIFFERENCES. The run says how many cases it compared and fails when that is
 * fewer than asked ({@link fuzzProblems}).
 *
 * `deno run ... tests/fuzz/fuzz_run.ts --cases 1000000 --seed 1` is the long run
 * (`npm run fuzz`); tests/fuzz/fuzz_test.ts runs a short one in the suite.
 *
 * @module
 */

import { DANGEROUS_COMMANDS, startAgent } from "../helpers/agents.ts";
import { agentPid, rssKb } from "../helpers/proc.ts";
import { type FuzzCase, FuzzClient, generateCases } from "./fuzz_lib.ts";

const dec = new TextDecoder("latin1");

/** Reply differences that are known and documented (docs/commands.md, docs/robustness.md). */
export const KNOWN_DIFFERENCES: readonly { re: RegExp; reason: string }[] = [
  { re: /"supported_commands"/, reason: "guest-info: version and 10.2 command set" },
  { re: /guest-get-load|guest-network-get-route/, reason: "10.2 commands absent from 7.2" },
  { re: /guest-get-devices/, reason: "registered but disabled in 7.2, absent in 10.2" },
  {
    re: /capture-output/,
    reason: "capture-output is an alternate (bool|enum) in 10.2, bool in 7.2",
  },
  {
    re: /PID ld does not exist|Invalid parameter 'pid'/,
    reason: "guest-exec-status unknown pid text (10.2 vs 7.2)",
  },
  { re: /total-bytes-privileged/, reason: "fsinfo member added in 9.1" },
];

/** Result of a run. */
export interface FuzzReport {
  /** Cases deno-qga answered (every case asked, or the run throws). */
  cases: number;
  /** Cases whose replies were compared with qemu-ga's (0 without `compare`). */
  compared: number;
  seconds: number;
  byKind: Record<string, number>;
  mismatches: { index: number; kind: string; deno: string; qemu: string }[];
  qemuFailures: { index: number; kind: string; error: string }[];
  rssBeforeKb: number;
  rssAfterKb: number;
}

/**
 * True when the replies to a case agree: line by line, each pair equal or one of the pair
 * a documented difference. A known difference excuses its own reply line, not the case.
 */
export function agrees(deno: string, qemu: string): boolean {
  if (deno === qemu) return true;
  const d = deno.split("\n");
  const q = qemu.split("\n");
  if (d.length !== q.length) return false;
  return d.every((line, i) =>
    line === q[i] || KNOWN_DIFFERENCES.some((k) => k.re.test(line) || k.re.test(q[i]!))
  );
}

/**
 * Runs `count` cases from `seed`; throws on the first deno-qga crash or hang. With
 * `compare`, a case qemu-ga does not answer is recorded in `qemuFailures` and the
 * connection to qemu-ga is opened again; if that fails, the run throws (it never goes on
 * without comparing).
 */
export async function runFuzz(o: {
  seed: number;
  count: number;
  compare: boolean;
  onProgress?: (done: number) => void;
}): Promise<FuzzReport> {
  await using deno = await startAgent("deno-qga", {
    block: DANGEROUS_COMMANDS,
    extraArgs: ["--exec-programs=/usr/bin/true"],
  });
  await using qemu = o.compare
    ? await startAgent("qemu-ga", { block: DANGEROUS_COMMANDS })
    : undefined;
  const dc = await FuzzClient.connect(deno.socketPath);
  let qc = qemu ? await FuzzClient.connect(qemu.socketPath) : undefined;
  const report: FuzzReport = {
    cases: 0,
    compared: 0,
    seconds: 0,
    byKind: {},
    mismatches: [],
    qemuFailures: [],
    rssBeforeKb: 0,
    rssAfterKb: 0,
  };
  const pid = agentPid(deno);
  const started = performance.now();
  let i = 0;
  for (const c of generateCases(o.seed, o.count)) {
    // Measured from the middle of the run: the first half lets V8's heap grow to
    // its working size, so what the second half adds is what would be a leak.
    if (i === Math.floor(o.count / 2)) report.rssBeforeKb = rssKb(pid);
    let d: Uint8Array;
    try {
      d = await dc.run(c);
    } catch (e) {
      throw new Error(
        `deno-qga failed case ${i} (${c.kind}, seed ${o.seed}): ${(e as Error).message}\n` +
          `stderr: ${deno.stderr().slice(-2000)}`,
      );
    }
    if (qemu && qc) {
      let q: Uint8Array | undefined;
      try {
        q = await qc.run(c);
      } catch (e) {
        report.qemuFailures.push({ index: i, kind: c.kind, error: (e as Error).message });
        qc.close();
        try {
          qc = await FuzzClient.connect(qemu.socketPath);
        } catch (e) {
          throw new Error(
            `qemu-ga failed case ${i} (${c.kind}, seed ${o.seed}) and the reconnect failed: ` +
              `${(e as Error).message}; ${report.compared} of ${i + 1} cases compared\n` +
              `stderr: ${qemu.stderr().slice(-2000)}`,
          );
        }
      }
      if (q) {
        report.compared++;
        const ds = dec.decode(d);
        const qs = dec.decode(q);
        if (!agrees(ds, qs) && report.mismatches.length < 50) {
          report.mismatches.push({ index: i, kind: c.kind, deno: ds, qemu: qs });
        }
      }
    }
    report.byKind[c.kind] = (report.byKind[c.kind] ?? 0) + 1;
    i++;
    if (o.onProgress && i % 10000 === 0) o.onProgress(i);
  }
  report.cases = i;
  report.seconds = (performance.now() - started) / 1000;
  report.rssAfterKb = rssKb(pid);
  dc.close();
  qc?.close();
  return report;
}

/**
 * What makes a run fail: fewer cases than asked, fewer compared than asked (with
 * `compare`), a case qemu-ga did not answer, a reply that differs from qemu-ga's, or the
 * agent's memory growing by 64 MiB or more over the second half of the run.
 */
export function fuzzProblems(r: FuzzReport, asked: { count: number; compare: boolean }): string[] {
  const out: string[] = [];
  if (r.cases < asked.count) out.push(`only ${r.cases} of ${asked.count} cases ran`);
  if (asked.compare && r.compared < asked.count) {
    out.push(`only ${r.compared} of ${asked.count} cases were compared with qemu-ga`);
  }
  for (const f of r.qemuFailures.slice(0, 10)) {
    out.push(`qemu-ga failed case #${f.index} (${f.kind}): ${f.error}`);
  }
  for (const m of r.mismatches) {
    out.push(`#${m.index} ${m.kind} differs\n  deno: ${m.deno}\n  qemu: ${m.qemu}`);
  }
  if (!(r.rssBeforeKb > 0 && r.rssAfterKb > 0)) {
    out.push(`no RSS reading of deno-qga (${r.rssBeforeKb} -> ${r.rssAfterKb} kB)`);
  } else if (r.rssAfterKb - r.rssBeforeKb >= 64 * 1024) {
    out.push(`RSS grew ${r.rssBeforeKb} -> ${r.rssAfterKb} kB (bound +64 MiB)`);
  }
  return out;
}

/** Shows a case's bytes for a failure message. */
export function showCase(c: FuzzCase): string {
  return c.writes.map((w) => JSON.stringify(dec.decode(w))).join(" + ");
}

if (import.meta.main) {
  const arg = (name: string, def: number) => {
    const i = Deno.args.indexOf(name);
    return i >= 0 ? Number(Deno.args[i + 1]) : def;
  };
  const count = arg("--cases", 100000);
  const seed = arg("--seed", 1);
  const compare = !Deno.args.includes("--no-compare");
  const r = await runFuzz({
    seed,
    count,
    compare,
    onProgress: (n) => console.error(`${n} cases`),
  });
  console.log(JSON.stringify({ ...r, mismatches: r.mismatches.slice(0, 10) }, null, 2));
  const problems = fuzzProblems(r, { count, compare });
  console.log(
    `${r.cases} of ${count} cases answered by deno-qga, ` +
      `${compare ? `${r.compared} compared with qemu-ga` : "no comparison (--no-compare)"}`,
  );
  if (problems.length) {
    console.log(problems.join("\n"));
    Deno.exit(1);
  }
}
