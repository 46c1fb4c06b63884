/**
 * One byte stream that a child process gets as both stdout and stderr, for guest-exec's
 * `merged` capture: qemu-ga gives the child one pipe and dup2()s it onto descriptor 2,
 * so the host sees the writes in the order the child made them. Deno offers neither
 * pipe(2) nor dup2(2), so the agent makes a connected pair of unix stream sockets (a
 * listener in its state directory, one connection, the listener closed and unlinked at
 * once) and hands one end's descriptor to the child as descriptors 1 and 2; it reads the
 * other end. One socket shared by both descriptors keeps the order of the writes exactly,
 * as one pipe does.
 *
 * Two Deno details this relies on, both checked by tests/unit/shared_output_test.ts so a
 * Deno upgrade that changes them fails the suite: `Deno.Command` accepts a raw descriptor
 * number for `stdout`/`stderr` (its node:child_process layer uses that), and a node:net
 * socket exposes its descriptor as `_handle.fd`.
 *
 * Needs `--allow-net=unix:<path>` and read/write on the path (the state directory).
 *
 * @module
 */

import type * as net from "node:net";

/** The socket path for an agent whose state directory is `statedir`. */
export function sharedOutputPath(statedir: string): string {
  return `${statedir.replace(/\/+$/, "")}/qga-exec.sock`;
}

/** sun_path holds 108 bytes, the terminating NUL included. */
export const MAX_SOCKET_PATH = 107;

/** The two ends: `childFd` for the child's descriptors 1 and 2, `reader` for the agent. */
export interface SharedOutput {
  /** The descriptor number to pass as the child's stdout and stderr. */
  readonly childFd: number;
  /** The agent's end; yields EOF once every holder of the child end closed it. */
  readonly reader: Deno.UnixConn;
  /** Closes the agent's copy of the child end (call right after spawning). */
  closeChildEnd(): void;
  /** Closes both ends (when the spawn failed). */
  close(): void;
}

async function connectNode(path: string): Promise<net.Socket> {
  // node:net is loaded on first use: the agent starts without Node compatibility.
  const net = await import("node:net");
  return await new Promise((resolve, reject) => {
    const s = net.connect(path);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

async function readExactly(conn: Deno.UnixConn, n: number): Promise<Uint8Array | null> {
  const out = new Uint8Array(n);
  let off = 0;
  while (off < n) {
    const got = await conn.read(out.subarray(off));
    if (got === null) return null;
    off += got;
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Makes the pair. Throws when the sandbox or the system refuses (no net grant for the
 * path, a path too long for a socket); the caller then reports or falls back.
 */
export async function openSharedOutput(path: string): Promise<SharedOutput> {
  if (new TextEncoder().encode(path).length > MAX_SOCKET_PATH) {
    throw new Error(`socket path too long: ${path}`);
  }
  try {
    await Deno.remove(path);
  } catch {
    // Not there: the usual case.
  }
  const listener = Deno.listen({ transport: "unix", path });
  let client: net.Socket | undefined;
  try {
    const accepting = listener.accept();
    client = await connectNode(path);
    // Only root can connect in the state directory, but make sure the accepted
    // connection is ours: the client end announces a random nonce first.
    const nonce = crypto.getRandomValues(new Uint8Array(16));
    client.write(nonce);
    let reader = await accepting;
    for (let tries = 0;; tries++) {
      const got = await readExactly(reader, nonce.length);
      if (got && equalBytes(got, nonce)) break;
      reader.close();
      if (tries >= 3) throw new Error("the shared output socket was connected by someone else");
      reader = await listener.accept();
    }
    const fd = (client as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    if (typeof fd !== "number" || fd < 0) {
      reader.close();
      throw new Error("node:net did not expose the socket's descriptor");
    }
    const childEnd = client;
    return {
      childFd: fd,
      reader,
      closeChildEnd: () => childEnd.destroy(),
      close: () => {
        childEnd.destroy();
        try {
          reader.close();
        } catch {
          // Already closed.
        }
      },
    };
  } catch (e) {
    client?.destroy();
    throw e;
  } finally {
    listener.close(); // also unlinks the path
  }
}
