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

import type { Connection, Transport } from "./connection.ts";
import { SocketConnection } from "./socket_connection.ts";

/** Listens on a unix socket path. */
export function openUnixListen(path: string): Transport {
  try {
    Deno.removeSync(path);
  } catch {
    // Nothing to remove.
  }
  const listener = Deno.listen({ transport: "unix", path });
  let closed = false;
  return {
    description: `unix-listen ${path}`,
    async accept(): Promise<Connection | null> {
      if (closed) return null;
      try {
        return new SocketConnection(await listener.accept());
      } catch (e) {
        if (closed) return null;
        throw e;
      }
    },
    close(): void {
      if (closed) return;
      closed = true;
      try {
        listener.close();
      } catch {
        // Already closed.
      }
    },
  };
}
