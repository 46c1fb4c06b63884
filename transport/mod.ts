/**
 * Opens the transport named by `-m` (qga-reference.md §4.4). The serial methods
 * open their device through the privileged helper; `stdio` uses the descriptors
 * systemd passed in; unix-listen and vsock-listen listen themselves.
 *
 * @module
 */

import type { Method } from "../config/options.ts";
import type { HelperClient } from "../system/helper_client.ts";
import type { Transport } from "./connection.ts";
import { openIsaSerialTransport } from "./isa_serial.ts";
import { openStdioTransport } from "./stdio.ts";
import { openUnixListen } from "./unix_listen.ts";
import { openVirtioSerialTransport, type TransportHooks } from "./virtio_serial.ts";
import { openVsockListenTransport } from "./vsock_listen.ts";

/** What opening the channel needs of the options: `-m`, `-p` and `-r`. */
export interface ChannelOptions {
  readonly method: Method;
  readonly path: string;
  readonly retryPath: boolean;
}

/** Opens the channel for the configured method. */
export function openTransport(
  options: ChannelOptions,
  helper: HelperClient | undefined,
  hooks: TransportHooks = {},
): Promise<Transport> {
  switch (options.method) {
    case "unix-listen":
      return Promise.resolve(openUnixListen(options.path));
    case "virtio-serial":
      return openVirtioSerialTransport(options, helper, hooks);
    case "isa-serial":
      return openIsaSerialTransport(options, helper, hooks);
    case "stdio":
      return openStdioTransport();
    case "vsock-listen":
      return openVsockListenTransport(options.path);
  }
}
