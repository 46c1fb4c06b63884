/**
 * guest-file-read / guest-file-write throughput over virtio-serial: boots the
 * e2e guest (tests/e2e/vm.ts: host root over 9p, QEMU/TCG, deno-qga on
 * `org.qemu.guest_agent.0`, qemu-ga on `org.qemu.guest_agent.1`) and drives both
 * agents through the host-side sockets with the same client as bench.ts.
 *
 * ```sh
 * ./node_modules/.bin/deno run -A bench/virtio_bench.ts [--size=16] [--chunks=1,16] [--out=bench/results/virtio.md]
 * ```
 *
 * QEMU runs under TCG here (no working KVM), so the figures measure the emulated
 * guest as much as the agents; only the ratio between the two agents means much.
 * A virtio-serial channel is shared by every host connection, so each agent is
 * resynchronised (0xFF + guest-sync-delimited) before it is measured.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { startVm } from "../tests/e2e/vm.ts";
import type { AgentKind } from "./agents.ts";
import { formatMarkdown } from "./bench.ts";
import { BenchConn } from "./client.ts";
import { fileRead, fileWrite, WriteRequest } from "./workloads.ts";

const MiB = 1024 * 1024;
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]);
}

/** Sends 0xFF + guest-sync-delimited and skips everything up to its own reply. */
async function resync(conn: BenchConn, id: number): Promise<void> {
  const req = encoder.encode(`{"execute":"guest-sync-delimited","arguments":{"id":${id}}}\n`);
  const bytes = new Uint8Array(req.length + 1);
  bytes[0] = 0xff; // the sentinel: one raw byte that resets the agent's parser
  bytes.set(req, 1);
  await conn.send(bytes);
  for (;;) {
    const line = await conn.line();
    let text = latin1.decode(line);
    if (text.startsWith("\xff")) text = text.slice(1);
    if (text === `{"return": ${id}}`) return;
  }
}

async function connectRetry(path: string, ms: number): Promise<BenchConn> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await BenchConn.connect(path);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

interface Row {
  what: string;
  values: Partial<Record<AgentKind, number>>;
  notes: Partial<Record<AgentKind, string>>;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      size: { type: "string", default: "16" },
      chunks: { type: "string", default: "1,16" },
      out: { type: "string", default: new URL("./results/virtio.md", import.meta.url).pathname },
      repo: {
        type: "string",
        default: new URL("../", import.meta.url).pathname.replace(/\/$/, ""),
      },
    },
  });
  const total = Number(values.size) * MiB;
  const chunks = values.chunks.split(",").map((c) => Number(c) * MiB);
  const source = new Uint8Array(total);
  for (let o = 0; o < total; o += 65536) {
    crypto.getRandomValues(source.subarray(o, Math.min(total, o + 65536)));
  }
  const rows: Row[] = [];
  for (const c of chunks) {
    rows.push({ what: `guest-file-write, ${c / MiB} MiB per call`, values: {}, notes: {} });
    rows.push({ what: `guest-file-read, ${c / MiB} MiB per call`, values: {}, notes: {} });
  }
  const started = new Date().toISOString();
  await using vm = await startVm({ repo: values.repo, timeoutMs: 900_000 });
  await vm.waitReady(240_000);
  const sockets: Record<AgentKind, string> = {
    "qemu-ga": vm.sockets.refVirtio,
    "deno-qga": vm.sockets.denoVirtio,
  };
  for (const kind of ["qemu-ga", "deno-qga"] as const) {
    let conn: BenchConn | undefined;
    try {
      conn = await connectRetry(sockets[kind], 10_000);
      await withTimeout(resync(conn, 777), 120_000, `${kind} resync`);
      const info = await withTimeout(conn.exec("guest-info"), 30_000, `${kind} guest-info`) as {
        supported_commands: { name: string; enabled: boolean }[];
      };
      const open = info.supported_commands.find((c) => c.name === "guest-file-open");
      if (!open?.enabled) throw new Error("guest-file-open is not enabled");
      const path = `/tmp/virtio-bench.${kind}.bin`;
      let i = 0;
      for (const c of chunks) {
        const full = new WriteRequest(source.subarray(0, c));
        const tail = total % c ? new WriteRequest(source.subarray(0, total % c)) : undefined;
        const w = await withTimeout(
          fileWrite(conn, path, total, full, tail),
          600_000,
          `${kind} write`,
        );
        rows[i]!.values[kind] = w.mibPerSecond;
        rows[i++]!.notes[kind] = `${w.calls} calls, ${(w.ms / 1000).toFixed(1)} s`;
        const r = await withTimeout(fileRead(conn, path, c), 600_000, `${kind} read`);
        if (r.bytes !== total) throw new Error(`read ${r.bytes} bytes, expected ${total}`);
        rows[i]!.values[kind] = r.mibPerSecond;
        rows[i++]!.notes[kind] = `${r.calls} calls, ${(r.ms / 1000).toFixed(1)} s`;
        console.error(
          `${kind} ${c / MiB} MiB: write ${w.mibPerSecond.toFixed(1)} MiB/s, read ${
            r.mibPerSecond.toFixed(1)
          } MiB/s`,
        );
      }
    } catch (e) {
      for (const row of rows) row.notes[kind] ??= `not measured: ${(e as Error).message}`;
      console.error(`${kind}: ${(e as Error).message}`);
    } finally {
      conn?.close();
    }
  }
  const out: string[] = [
    "# deno-qga vs qemu-ga over virtio-serial (QEMU/TCG guest)",
    "",
    `Run ${started}: \`./node_modules/.bin/deno run -A bench/virtio_bench.ts ${
      Deno.args.join(" ")
    }\`. ` +
    `${values.size} MiB file in the guest's /tmp; guest booted by tests/e2e/vm.ts (TCG, no KVM).`,
    "",
    "| measure (MiB/s) | qemu-ga | deno-qga | deno-qga / qemu-ga |",
    "|---|---:|---:|---:|",
  ];
  for (const r of rows) {
    const q = r.values["qemu-ga"];
    const d = r.values["deno-qga"];
    out.push(
      `| ${r.what} | ${q?.toFixed(1) ?? "n/a"} | ${d?.toFixed(1) ?? "n/a"} | ${
        q && d ? (d / q).toFixed(2) + "×" : "n/a"
      } |`,
    );
  }
  out.push(
    "",
    ...rows.flatMap((r) => Object.entries(r.notes).map(([k, n]) => `- ${r.what}, ${k}: ${n}`)),
    "",
  );
  const md = out.join("\n");
  console.log(md);
  if (values.out !== "-") {
    await Deno.writeTextFile(values.out, md);
    await formatMarkdown(values.out);
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main());
