/**
 * The texts of `--help` and `--version` (qga-reference.md §4.1): qemu-ga 10.2's usage
 * text with the upstream `-c` default bug corrected, plus deno-qga's extensions.
 *
 * @module
 */

import { DEFAULTS } from "../config/options.ts";

/** What the texts need to know about this build. */
export interface HelpInfo {
  /** Program name printed where qemu-ga prints argv[0]. */
  programName: string;
  /** The QEMU version deno-qga reports (guest-info, `-V`), e.g. `10.2.2`. */
  version: string;
  /** deno-qga's own version, if known. */
  denoQgaVersion: string | undefined;
  /** `Deno.version.deno`. */
  denoVersion: string;
  /** The helper used when `--helper` is not given. */
  defaultHelper: string;
}

/** `deno-qga 0.1.0, Deno 2.9.6` (the version is left out when unknown). */
function buildLine(info: HelpInfo, separator: string): string {
  const agent = info.denoQgaVersion === undefined ? "deno-qga" : `deno-qga ${info.denoQgaVersion}`;
  return `${agent}${separator}Deno ${info.denoVersion}`;
}

/**
 * `-V` output. The first line is exactly qemu-ga's (`QEMU Guest Agent <version>`); the
 * second names deno-qga and Deno.
 */
export function versionText(info: HelpInfo): string {
  return `QEMU Guest Agent ${info.version}\n${buildLine(info, " (")})\n`;
}

/** `-h` output: qemu-ga 10.2's usage text adapted to deno-qga. */
export function usageText(info: HelpInfo): string {
  const p = info.programName;
  return `Usage: ${p} [-m <method> -p <path>] [<options>]
       ${p} client [<options>]   (host side, see '${p} client --help')
QEMU Guest Agent ${info.version} (${buildLine(info, ", ")})

  -c, --config=PATH configuration file path (default is
                    ${DEFAULTS.config}
                    unless overridden by the QGA_CONF environment variable)
  -m, --method      transport method: one of unix-listen, virtio-serial,
                    isa-serial, vsock-listen, or stdio (virtio-serial is the
                    default; stdio uses the inherited stdin/stdout, for
                    example a systemd socket or serial port)
  -p, --path        device/socket path (the default for virtio-serial is:
                    ${DEFAULTS.virtioPath},
                    the default for isa-serial is:
                    ${DEFAULTS.serialPath}).
                    Socket addresses for vsock-listen are written as
                    <cid>:<port>.
  -l, --logfile     set logfile path, logs to stderr by default
  -f, --pidfile     specify pidfile (default is ${DEFAULTS.pidfile})
  -F, --fsfreeze-hook
                    enable fsfreeze hook. Accepts an optional argument that
                    specifies script to run on freeze/thaw. Script will be
                    called with 'freeze'/'thaw' arguments accordingly.
                    (default is ${DEFAULTS.fsfreezeHook})
                    If using -F with an argument, do not follow -F with a
                    space.
                    (for example: -F/var/run/fsfreezehook.sh)
  -t, --statedir    specify dir to store state information (absolute paths
                    only, default is ${DEFAULTS.statedir})
  -v, --verbose     log extra debugging information
  -V, --version     print version information and exit
  -d, --daemonize   become a daemon
  -b, --block-rpcs  comma-separated list of RPCs to disable (no spaces,
                    use "--block-rpcs=help" to list available RPCs)
  -a, --allow-rpcs  comma-separated list of RPCs to enable (no spaces,
                    use "--allow-rpcs=help" to list available RPCs)
  -D, --dump-conf   dump a qemu-ga config file based on current config
                    options / command-line parameters to stdout
  -r, --retry-path  attempt re-opening path if it's unavailable or closed
                    due to an error which may be recoverable in the future
                    (virtio-serial driver re-install, serial device hot
                    plug/unplug, etc.)
  -h, --help        display this help and exit

deno-qga options (each is also a key of the [general] group of the
configuration file; lists given in both places are concatenated):
      --file-roots=DIR[,DIR]
                    directories guest-file-open may read and write
                    (default is none: any path the agent's permissions allow)
      --file-read-roots=DIR[,DIR]
                    directories guest-file-open may only read (default is none)
      --exec-programs=PROG[,PROG]
                    programs guest-exec may start when the agent runs with
                    least privilege (default is none)
      --helper=PATH privileged helper executable (default is
                    ${info.defaultHelper})
      --print-permissions
                    print the least-privilege deno command line for these
                    options and exit (default is off)

deno-qga reimplements qemu-ga; report its bugs to the deno-qga project,
not to QEMU.
`;
}
