/**
 * A stream-socket client as a Connection (unix-listen, vsock-listen): EOF ends
 * the client, writes loop until every byte is out.
 *
 * @module
 */

import type { Connection, Transport } from "./connection.ts";

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

/** The part of a Deno listener the agent uses. */
export interface StreamListener {
  accept(): Promise<StreamSocket>;
  close(): void;
}

/** A listening socket as a Transport: one client at a time, as qemu-ga serves them. */
export function listenerTransport(listener: StreamListener, description: string): Transport {
  let closed = false;
  return {
    description,
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
