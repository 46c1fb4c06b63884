/**
 * A stream-socket client as a Connection (unix-listen, vsock-listen): EOF ends
 * the client, writes loop until every byte is out.
 *
 * @module
 */

import type { Connection } from "./connection.ts";

/** The part of a Deno socket connection the agent uses. */
export interface StreamSocket {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/** One accepted client. */
export class SocketConnection implements Connection {
  readonly kind = "socket" as const;
  readonly #conn: StreamSocket;
  #closed = false;

  constructor(conn: StreamSocket) {
    this.#conn = conn;
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.#conn.read(p);
  }

  async write(p: Uint8Array): Promise<void> {
    let off = 0;
    while (off < p.length) off += await this.#conn.write(p.subarray(off));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer.
    }
  }
}
