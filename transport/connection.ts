/**
 * The byte pipe between host and agent. Every transport (unix-listen, virtio-serial,
 * isa-serial, stdio, vsock) offers the agent connections one at a time, as qemu-ga
 * serves one client at a time (qga-reference.md §1.1, §4.4).
 *
 * @module
 */

/** One host connection (for device channels: the device, for as long as it is open). */
export interface Connection {
  /**
   * Reads into `p`; resolves to the byte count, or null at end of input.
   * For `kind: "device"` (virtio-serial) null means "no host attached right now":
   * the agent backs off 100 ms and reads again, keeping the connection.
   */
  read(p: Uint8Array): Promise<number | null>;
  /**
   * Writes all of `p`. Rejects when the peer is gone; the agent logs and goes on. Keeps
   * no reference to `p` once settled: the agent reuses the buffer for its next reply.
   */
  write(p: Uint8Array): Promise<void>;
  /** Closes this connection (sockets) or releases the device. */
  close(): void;
  /** "socket": EOF ends the client; "device": EOF means no host, keep reading. */
  readonly kind: "socket" | "device";
}

/** A source of connections. */
export interface Transport {
  /** Waits for the next client; null when the transport is closed for good. */
  accept(): Promise<Connection | null>;
  /** Stops accepting; a pending accept resolves to null. */
  close(): void;
  /** Human-readable description for logs ("unix-listen /run/qga.sock"). */
  readonly description: string;
}
