/**
 * `-m virtio-serial -p PATH` (default /dev/virtio-ports/org.qemu.guest_agent.0),
 * qga-reference.md §1.1 and §4.4. Deno refuses /dev outside --allow-all, so the
 * port is opened and relayed by the privileged helper (system/helper_client.ts).
 *
 * The open port is the one and only "client" (kind "device"): EOF means no host
 * is attached, and the agent backs off 100 ms and reads again. After the agent
 * closes the connection (a read error, e.g. the port was hot-unplugged), the
 * next accept() reopens the device when `--retry-path` is set, trying every 5 s
 * as qemu-ga does; without it accept() resolves null and the agent exits.
 *
 * @module
 */

import { DEFAULTS } from "../config/options.ts";
import type { HelperChannel, HelperClient } from "../system/helper_client.ts";
import { strerror, SysError, toSysError } from "../system/mod.ts";
import type { Connection, Transport } from "./connection.ts";

/** Extra knobs of the device transports (tests shorten the retry delay). */
export interface TransportHooks {
  /** Log sink for the retry messages qemu-ga prints. */
  log?: (level: "warning" | "critical", message: string) => void;
  /** Delay between reopen attempts under --retry-path; qemu-ga's is 5000 ms. */
  retryDelayMs?: number;
}

/** A helper-relayed channel device as a Connection. */
class DeviceConnection implements Connection {
  readonly kind: "socket" | "device";
  readonly #channel: HelperChannel;
  readonly #onClose: () => void;
  #closed = false;

  constructor(channel: HelperChannel, kind: "socket" | "device", onClose: () => void) {
    this.#channel = channel;
    this.kind = kind;
    this.#onClose = onClose;
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.#channel.read(p);
  }

  write(p: Uint8Array): Promise<void> {
    return this.#channel.write(p);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const done = this.#channel.close().catch(() => {});
    void done.then(this.#onClose);
  }
}

/** What a device transport needs of the options: the device and `--retry-path`. */
export interface DeviceOptions {
  /** The device path (`-p`); empty means the method's default device. */
  readonly path: string;
  /** Reopen the device every 5 s while it cannot be opened (`-r`). */
  readonly retryPath: boolean;
}

/** What differs between virtio-serial and isa-serial. */
export interface DeviceTransportSpec {
  method: "virtio-serial" | "isa-serial";
  /** Connection kind: "device" keeps reading after EOF, "socket" ends the client. */
  kind: "socket" | "device";
}

/** The open-failure error, as the agent logs it after `error opening channel '<path>': `. */
function openError(e: unknown): SysError {
  const err = toSysError(e);
  // A refusal explains itself; an errno is shown as strerror, like qemu-ga.
  const message = err.code === "EPERM" ? err.message : strerror(err.code);
  return new SysError(err.code, err.strerror, message);
}

/**
 * A transport over a channel device relayed by the helper. Opens the device at
 * once; without --retry-path a failure rejects (the agent exits 1), with it the
 * failure is logged and accept() keeps trying.
 */
export async function openDeviceTransport(
  options: DeviceOptions,
  helper: HelperClient | undefined,
  spec: DeviceTransportSpec,
  hooks: TransportHooks = {},
): Promise<Transport> {
  const path = options.path;
  const delay = hooks.retryDelayMs ?? 5000;
  const log = hooks.log ?? (() => {});
  if (!helper) {
    throw new SysError(
      "EPERM",
      strerror("EPERM"),
      `${spec.method} needs the privileged helper, which is not running`,
    );
  }
  let closed = false;
  let ready: HelperChannel | undefined;
  let current: DeviceConnection | undefined;
  let wake: (() => void) | undefined;
  let released: Promise<void> = Promise.resolve();

  const open = () => helper.openChannel(path, spec.method);
  try {
    ready = await open();
  } catch (e) {
    const err = openError(e);
    if (!options.retryPath) throw err;
    log("critical", `error opening channel '${path}': ${err.message}`);
    log("critical", "failed to initialize guest agent channel, will retry");
  }
  const sleep = () =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, delay);
      function done() {
        clearTimeout(t);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  let first = true;

  return {
    description: `${spec.method} ${path}`,
    async accept(): Promise<Connection | null> {
      if (closed) return null;
      if (!ready) {
        if (!first && !options.retryPath) return null;
        await released;
        for (;;) {
          if (closed) return null;
          try {
            ready = await open();
            break;
          } catch (e) {
            if (!options.retryPath) return null;
            log("warning", `waiting for channel path... (${openError(e).message})`);
            await sleep();
          }
        }
      }
      first = false;
      const channel = ready;
      ready = undefined;
      let release!: () => void;
      released = new Promise((r) => release = r);
      current = new DeviceConnection(channel, spec.kind, release);
      return current;
    },
    close(): void {
      if (closed) return;
      closed = true;
      wake?.();
      void ready?.close().catch(() => {});
      ready = undefined;
      current?.close();
    },
  };
}

/**
 * Opens `-m virtio-serial` through the helper.
 *
 * @example
 * ```ts
 * const transport = await openVirtioSerialTransport(options, helper);
 * ```
 */
export function openVirtioSerialTransport(
  options: DeviceOptions,
  helper: HelperClient | undefined,
  hooks: TransportHooks = {},
): Promise<Transport> {
  const o = options.path ? options : { ...options, path: DEFAULTS.virtioPath };
  return openDeviceTransport(o, helper, { method: "virtio-serial", kind: "device" }, hooks);
}
