/**
 * `-m stdio` (our extension): the channel is the agent's inherited stdin and
 * stdout, for a systemd unit that names the port itself:
 *
 * ```ini
 * StandardInput=file:/dev/virtio-ports/org.qemu.guest_agent.0
 * StandardOutput=file:/dev/virtio-ports/org.qemu.guest_agent.0
 * ```
 *
 * (the same path for both makes systemd open the port once, read-write, and
 * duplicate it; `StandardOutput=inherit` would duplicate a read-only descriptor).
 *
 * systemd opens the port as root before starting the agent, so no helper and
 * no --allow-all are needed for the channel. stdin and stdout are two Deno
 * resources, so a pending stdin read never queues a stdout write behind it;
 * writes still use writeSync so a reply is on the wire when write() resolves.
 *
 * When stdin is a character device (a virtio port) the connection kind is
 * "device" (EOF: no host, back off and keep reading). A pipe, socket or file
 * is kind "socket": EOF ends the client and accept() then resolves null.
 *
 * @module
 */

import { fstatSync } from "node:fs";
import type { Connection, Transport } from "./connection.ts";

/** The inherited descriptors as a Connection. */
class StdioConnection implements Connection {
  readonly kind: "socket" | "device";
  readonly #onClose: () => void;

  constructor(kind: "socket" | "device", onClose: () => void) {
    this.kind = kind;
    this.#onClose = onClose;
  }

  read(p: Uint8Array): Promise<number | null> {
    return Deno.stdin.read(p);
  }

  write(p: Uint8Array): Promise<void> {
    try {
      let off = 0;
      while (off < p.length) off += Deno.stdout.writeSync(p.subarray(off));
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  close(): void {
    this.#onClose();
  }
}

/** "device" when stdin is a character device, else "socket". */
export function stdioKind(): "socket" | "device" {
  try {
    return fstatSync(0).isCharacterDevice() ? "device" : "socket";
  } catch {
    return "socket";
  }
}

/**
 * Uses stdin/stdout as the channel (systemd opened the port: there is no path).
 *
 * @example
 * ```ts
 * const transport = await openStdioTransport();
 * ```
 */
export function openStdioTransport(): Promise<Transport> {
  let served = false;
  let closed = false;
  const kind = stdioKind();
  return Promise.resolve({
    description: `stdio (${kind === "device" ? "character device" : "stream"})`,
    accept(): Promise<Connection | null> {
      if (closed || served) return Promise.resolve(null);
      served = true;
      return Promise.resolve(new StdioConnection(kind, () => closed = true));
    },
    close(): void {
      closed = true;
    },
  });
}
