/**
 * Opens the transport named by `-m` (qga-reference.md §4.4).
 *
 * @module
 */

import type { AgentOptions } from "../agent/options.ts";
import type { Transport } from "./connection.ts";
import { openUnixListen } from "./unix_listen.ts";

/** Opens the channel for the configured method. */
export function openTransport(options: AgentOptions, _helper: unknown): Promise<Transport> {
  switch (options.method) {
    case "unix-listen":
      return Promise.resolve(openUnixListen(options.path));
    default:
      return Promise.reject(new Error(`channel method ${options.method} is not available in this build`));
  }
}
