/**
 * `-m vsock-listen -p CID:PORT` (qga-reference.md §4.4): listen on an AF_VSOCK
 * stream socket and serve one client at a time, like unix-listen.
 *
 * Deno's vsock API is unstable: the agent must be started with
 * `--unstable-vsock` (without it the first Deno.listen ends the process with
 * exit code 70, which cannot be caught) and `--allow-net=vsock:CID:PORT`.
 * No helper is needed: vsock sockets are not paths under /dev.
 *
 * @module
 */

import type { Transport } from "./connection.ts";
import { listenerTransport } from "./socket_connection.ts";

/** A vsock address. */
export interface VsockAddress {
  cid: number;
  port: number;
}

/**
 * Parses `<cid>:<port>` as qemu's vsock_parse does: decimal digits only, both
 * parts 32-bit. Throws Error `error parsing address '<p>'` otherwise.
 */
export function parseVsockAddress(path: string): VsockAddress {
  const m = /^([0-9]{1,32}):([0-9]{1,32})$/.exec(path);
  const cid = m ? Number(m[1]) : NaN;
  const port = m ? Number(m[2]) : NaN;
  if (!m || cid > 0xffff_ffff || port > 0xffff_ffff) {
    throw new Error(`error parsing address '${path}'`);
  }
  return { cid, port };
}

/**
 * Listens on `path` (`CID:PORT`). Only call this from a process started with
 * `--unstable-vsock`.
 *
 * @example
 * ```ts
 * const transport = await openVsockListenTransport("4294967295:1234");
 * ```
 */
export function openVsockListenTransport(path: string): Promise<Transport> {
  let addr: VsockAddress;
  try {
    addr = parseVsockAddress(path);
  } catch (e) {
    return Promise.reject(e);
  }
  let listener: Deno.VsockListener;
  try {
    listener = Deno.listen({ transport: "vsock", cid: addr.cid, port: addr.port });
  } catch (e) {
    return Promise.reject(e);
  }
  return Promise.resolve(listenerTransport(listener, `vsock-listen ${addr.cid}:${addr.port}`));
}
