/**
 * Memory after a burst (issue 14): the fuzzer's cases (tests/fuzz/fuzz_lib.ts: random
 * bytes, mutated requests, deep nesting, huge strings, wrong-typed arguments; nothing
 * that changes the machine) sent to one agent, then the agent's RSS while it is left
 * alone. The goal: back under 1.5x its idle RSS within 60 s of quiet.
 *
 * @module
 */

import { FuzzClient, generateCases } from "../tests/fuzz/fuzz_lib.ts";
import { treeMemory } from "./proc.ts";

/** RSS (KiB, summed over the agent's processes) over a burst and the quiet after it. */
export interface BurstResult {
  cases: number;
  seconds: number;
  /** Before the burst. */
  beforeKb: number;
  /** Right after the last case was answered. */
  afterKb: number;
  /** Highest reading during the quiet period. */
  peakQuietKb: number;
  /** After `quietMs` of quiet. */
  settledKb: number;
  /** Every reading of the quiet period: seconds after the burst, KiB. */
  series: [number, number][];
}

/** Sends `count` fuzz cases (seed `seed`) on `socket`, then samples RSS for `quietMs`. */
export async function measureBurst(
  socket: string,
  pid: number,
  o: { count: number; seed: number; quietMs: number; sampleMs?: number },
): Promise<BurstResult> {
  const rss = () => treeMemory(pid).vmRss;
  const beforeKb = rss();
  const client = await FuzzClient.connect(socket);
  const t0 = performance.now();
  let cases = 0;
  try {
    for (const c of generateCases(o.seed, o.count)) {
      await client.run(c);
      cases++;
    }
  } finally {
    client.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  const afterKb = rss();
  const series: [number, number][] = [];
  const start = performance.now();
  const step = o.sampleMs ?? 5000;
  let peakQuietKb = afterKb;
  for (let t = step; t <= o.quietMs; t += step) {
    await new Promise((r) => setTimeout(r, start + t - performance.now()));
    const kb = rss();
    peakQuietKb = Math.max(peakQuietKb, kb);
    series.push([Math.round(t / 1000), kb]);
  }
  return {
    cases,
    seconds,
    beforeKb,
    afterKb,
    peakQuietKb,
    settledKb: series.at(-1)?.[1] ?? afterKb,
    series,
  };
}
