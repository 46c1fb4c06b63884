/**
 * `-m isa-serial -p /dev/ttySN` (default /dev/ttyS0), qga-reference.md §1.1 and
 * §4.4. The helper opens the tty and puts it in raw mode as qemu-ga does (Deno has no
 * O_NOCTTY and none is needed: the helper is never a session leader, so it cannot
 * acquire a controlling terminal); see docs/security.md for what Deno's raw mode covers
 * (no baud rate, no tcflush).
 *
 * Unlike virtio-serial, EOF ends the client (qemu-ga closes it): the connection
 * kind is "socket". A UART never reports EOF; a pty or USB serial adapter does
 * when its far side hangs up. The next accept() then reopens the device under
 * `--retry-path` (every 5 s until it is back) and resolves null without it, so
 * the agent exits (qemu-ga would instead sit idle with no channel; under
 * systemd's Restart=always an exit brings it back).
 *
 * @module
 */

import { DEFAULTS } from "../config/options.ts";
import type { HelperClient } from "../system/helper_client.ts";
import type { Transport } from "./connection.ts";
import { type DeviceOptions, openDeviceTransport, type TransportHooks } from "./virtio_serial.ts";

/**
 * Opens `-m isa-serial` through the helper.
 *
 * @example
 * ```ts
 * const transport = await openIsaSerialTransport({ ...options, path: "/dev/ttyS1" }, helper);
 * ```
 */
export function openIsaSerialTransport(
  options: DeviceOptions,
  helper: HelperClient | undefined,
  hooks: TransportHooks = {},
): Promise<Transport> {
  const o = options.path ? options : { ...options, path: DEFAULTS.serialPath };
  return openDeviceTransport(o, helper, { method: "isa-serial", kind: "socket" }, hooks);
}
