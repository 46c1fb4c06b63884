/**
 * `-m unix-listen -p PATH` (qga-reference.md §4.4): an existing path is unlinked,
 * the socket is bound, and one client is served at a time; the next accept
 * happens only after that client disconnects. The socket file is left in place on
 * exit, as qemu-ga does; a stale one is replaced at the next start.
 *
 * Deno needs read, write and `--allow-net=unix:PATH` on the socket path
 * (deno-facts.md §3).
 *
 * @module
 */

import type { Transport } from "./connection.ts";
import { listenerTransport } from "./socket_connection.ts";

/** Listens on a unix socket path. */
export function openUnixListen(path: string): Transport {
  try {
    Deno.removeSync(path);
  } catch {
    // Nothing to remove.
  }
  return listenerTransport(Deno.listen({ transport: "unix", path }), `unix-listen ${path}`);
}
