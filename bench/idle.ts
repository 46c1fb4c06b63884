/**
 * The deno runtime's floor for the memory comparison: an idle unix-socket listener
 * with no agent code, started the same way as the agent (`deno run --no-config`).
 *
 * @module
 */

const path = Deno.args[0];
if (!path) throw new Error("usage: idle.ts SOCKET");
const listener = Deno.listen({ transport: "unix", path });
for await (const conn of listener) conn.close();
