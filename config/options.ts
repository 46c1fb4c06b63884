/**
 * The agent's resolved settings: command line over config file over defaults
 * (qga-reference.md §4.1-4.2). cli/options.ts builds them; everything else reads them.
 * A leaf: it imports nothing of deno-qga, so every layer may use it.
 *
 * @module
 */

import { fileURLToPath } from "./path.ts";

/** How the agent talks to the host. `stdio` is our extension: the channel is an
 * inherited descriptor (systemd `StandardInput=`/`StandardOutput=` naming the port). */
export type Method = "virtio-serial" | "isa-serial" | "unix-listen" | "vsock-listen" | "stdio";

/** Resolved options. */
export interface AgentOptions {
  daemonize: boolean;
  method: Method;
  /** Device or socket path (`CID:PORT` for vsock); defaulted for the serial methods. */
  path: string;
  /** Log file; undefined means stderr. */
  logfile: string | undefined;
  pidfile: string;
  /** fsfreeze hook script; undefined means none. */
  fsfreezeHook: string | undefined;
  statedir: string;
  verbose: boolean;
  retryPath: boolean;
  /** -b / block-rpcs, in qemu-ga's stored order (see §4.1 about -D). */
  blockRpcs: string[];
  /** -a / allow-rpcs; empty means no allow list. */
  allowRpcs: string[];
  /** Config file that was loaded, if any. */
  configPath: string | undefined;
  /** Directories guest-file-open may read and write (our extension); empty = qemu-ga's behaviour. */
  fileRoots: string[];
  /** Directories guest-file-open may only read (our extension). */
  fileReadRoots: string[];
  /** Programs guest-exec may start when the agent runs least-privilege (our extension). */
  execPrograms: string[];
  /** The privileged helper executable (launched with a run grant for this one path). */
  helper: string;
  /** Print the least-privilege deno command line and exit. */
  printPermissions: boolean;
}

/** qemu-ga's defaults (§3.1, §4.1). */
export const DEFAULTS = {
  virtioPath: "/dev/virtio-ports/org.qemu.guest_agent.0",
  serialPath: "/dev/ttyS0",
  pidfile: "/var/run/qemu-ga.pid",
  statedir: "/var/run",
  config: "/etc/qemu/qemu-ga.conf",
  fsfreezeHook: "/etc/qemu/fsfreeze-hook",
} as const;

/**
 * qemu-ga's defaults for every option (no config file, no command line), with
 * `overrides` applied: what docs/commands.md is generated for, and the base of the tests'
 * options. `helper` is helper/qga-helper of this checkout (main.ts passes the real one).
 */
export function defaultOptions(overrides: Partial<AgentOptions> = {}): AgentOptions {
  return {
    daemonize: false,
    method: "virtio-serial",
    path: DEFAULTS.virtioPath,
    logfile: undefined,
    pidfile: DEFAULTS.pidfile,
    fsfreezeHook: undefined,
    statedir: DEFAULTS.statedir,
    verbose: false,
    retryPath: false,
    blockRpcs: [],
    allowRpcs: [],
    configPath: undefined,
    fileRoots: [],
    fileReadRoots: [],
    execPrograms: [],
    helper: fileURLToPath(new URL("../helper/qga-helper", import.meta.url)),
    printPermissions: false,
    ...overrides,
  };
}
