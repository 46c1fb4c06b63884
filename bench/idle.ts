/**
 * The deno runtime's floor for the start-up and memory comparisons: a unix-socket
 * listener with no agent code, started the same way as the agent (`deno run
 * --no-config`). It answers each guest-sync it reads with `{"return": <id>}`, so the
 * start-up measure can time it exactly as it times the agents.
 *
 * With `--separated=DENO` it is the floor of a privilege-separated agent instead: before it
 * listens it spawns `DENO run idle.ts --child` (a second deno process that reads its stdin
 * until EOF, the helper's stand-in) with piped stdin and stdout, and writes one line to it,
 * as deno-qga starts its helper and writes its Init before it reads any host byte.
 *
 * @module
 */

const [path, separated] = Deno.args;
if (!path) throw new Error("usage: idle.ts SOCKET [--separated=DENO] | idle.ts --child");
if (path === "--child") {
  // The helper's stand-in: reads its stdin until EOF.
  const b = new Uint8Array(4096);
  while (await Deno.stdin.read(b) !== null) { /* discard */ }
  Deno.exit(0);
}
if (separated?.startsWith("--separated=")) {
  // The floor of a privilege-separated agent: before its first read it spawns a second deno
  // process with piped stdin and stdout (deno-qga's helper) and writes one line to it (Init).
  const child = new Deno.Command(separated.slice("--separated=".length), {
    args: ["run", "--no-prompt", "--no-config", new URL(import.meta.url).pathname, "--child"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode('{"init":{}}\n'));
}
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
