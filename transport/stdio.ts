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
 * is kind "socket": EOF ends the client and accept() then resolves null. The kind
 * needs node:fs (fstat of descriptor 0; Deno's own API has none), so it is found at the
 * first EOF, the only time the agent looks at it: an agent whose host stays connected
 * never loads Node compatibility for it.
 *
 * @module
 */

import type { Connection, Transport } from "./connection.ts";

/** The inherited descriptors as a Connection. */
class StdioConnection implements Connection {
  #kind: "socket" | "device" | undefined;
  readonly #onClose: () => void;

  constructor(onClose: () => void) {
    this.#onClose = onClose;
  }

  /** Known once a read has seen EOF ("device" until then: it is only looked at then). */
  get kind(): "socket" | "device" {
    return this.#kind ?? "device";
  }

  async read(p: Uint8Array): Promise<number | null> {
    const n = await Deno.stdin.read(p);
    if (n === null) this.#kind ??= await stdioKind();
    return n;
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
export async function stdioKind(): Promise<"socket" | "device"> {
  try {
    const { fstatSync } = await import("node:fs");
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
  return Promise.resolve({
    description: "stdio",
    accept(): Promise<Connection | null> {
      if (closed || served) return Promise.resolve(null);
      served = true;
      return Promise.resolve(new StdioConnection(() => closed = true));
    },
    close(): void {
      closed = true;
    },
  });
}
