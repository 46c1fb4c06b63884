/**
 * Runs fuzz cases against deno-qga and qemu-ga side by side: every case must be
 * followed by a correct sync reply from deno-qga (no crash, no hang), and where
 * both agents answer, their replies must agree byte for byte except for the
 * documented 7.2/10.2 differences listed in KNOWN_DIFFERENCES.
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
  cases: number;
  seconds: number;
  byKind: Record<string, number>;
  mismatches: { index: number; kind: string; deno: string; qemu: string }[];
  qemuFailures: { index: number; kind: string; error: string }[];
  rssBeforeKb: number;
  rssAfterKb: number;
}

function known(a: string, b: string): boolean {
  return KNOWN_DIFFERENCES.some((k) => k.re.test(a) || k.re.test(b));
}

/** Runs `count` cases from `seed`; throws on the first deno-qga crash or hang. */
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
    if (qc) {
      try {
        const q = await qc.run(c);
        const ds = dec.decode(d);
        const qs = dec.decode(q);
        if (ds !== qs && !known(ds, qs) && report.mismatches.length < 50) {
          report.mismatches.push({ index: i, kind: c.kind, deno: ds, qemu: qs });
        }
      } catch (e) {
        report.qemuFailures.push({ index: i, kind: c.kind, error: (e as Error).message });
        qc.close();
        qc = qemu ? await FuzzClient.connect(qemu.socketPath).catch(() => undefined) : undefined;
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
  if (r.mismatches.length) Deno.exit(1);
}
