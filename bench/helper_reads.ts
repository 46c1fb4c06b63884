/**
 * Measures what privilege separation costs per privileged read: /proc/stat read
 * through the long-lived helper, compared with reading it in-process (what an
 * --allow-all agent would do) and with starting a process per read.
 *
 * Run: ./node_modules/.bin/deno run -A bench/helper_reads.ts [reads=1000]
 *
 * @module
 */

import { fileURLToPath } from "node:url";
import { startHelper } from "../system/helper_client.ts";

const N = Number(Deno.args[0] ?? 1000);
const launcher = fileURLToPath(new URL("../helper/qga-helper", import.meta.url));

/** Runs `f` `n` times; each call performs `per` reads. */
async function time(label: string, n: number, f: () => Promise<unknown>, per = 1): Promise<void> {
  await f(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await f();
  const ms = performance.now() - t0;
  const reads = n * per;
  console.log(
    `${label.padEnd(44)} ${String(reads).padStart(5)} reads  ${
      (ms / reads * 1000).toFixed(1).padStart(9)
    } µs/read`,
  );
}

const t0 = performance.now();
const helper = await startHelper(launcher);
console.log(
  `helper start (spawn + first round trip)      ${(performance.now() - t0).toFixed(1)} ms`,
);
await time("in-process Deno.readFile (needs -A)", N, () => Deno.readFile("/proc/stat"));
await time("through the helper, sequential", N, () => helper.readFile("/proc/stat"));
await time(
  "through the helper, 8 in flight",
  N / 8,
  () => Promise.all(Array.from({ length: 8 }, () => helper.readFile("/proc/stat"))),
  8,
);
await time(
  "spawn `cat /proc/stat` per read",
  Math.max(1, N / 10),
  () => new Deno.Command("cat", { args: ["/proc/stat"], stdout: "piped" }).output(),
);
await time("spawn the helper per read", Math.max(1, N / 50), async () => {
  const h = await startHelper(launcher);
  await h.readFile("/proc/stat");
  await h.close();
});
await helper.close();
