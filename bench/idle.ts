/**
 * The deno runtime's floor for the start-up and memory comparisons: a unix-socket
 * listener with no agent code, started the same way as the agent (`deno run
 * --no-config`). It answers each guest-sync it reads with `{"return": <id>}`, so the
 * start-up measure can time it exactly as it times the agents.
 *
 * @module
 */

const path = Deno.args[0];
if (!path) throw new Error("usage: idle.ts SOCKET");
const listener = Deno.listen({ transport: "unix", path });
const enc = new TextEncoder();
const dec = new TextDecoder();
for await (const conn of listener) {
  (async () => {
    const buf = new Uint8Array(4096);
    let text = "";
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n));
      for (const m of text.matchAll(/"id":\s*(\d+)/g)) {
        await conn.write(enc.encode(`{"return": ${m[1]}}\n`));
      }
      text = text.slice(text.lastIndexOf("}") + 1);
    }
    conn.close();
  })().catch(() => {});
}
