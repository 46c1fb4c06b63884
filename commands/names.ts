/**
 * The names of qemu-ga 10.2's Linux commands, in its registration (schema) order
 * (qga-reference.md §2.1): the command table of commands/mod.ts implements exactly these,
 * in this order (tests/unit/commands_table_test.ts). A module of its own, without the
 * commands, so that start-up code can name the commands without loading them
 * (main.ts: the command line's `-b ?` and the agent's first reply need no command module).
 *
 * @module
 */

/** qemu-ga 10.2's Linux commands in registration order. */
export const QEMU_GA_LINUX_COMMANDS = [
  "guest-sync-delimited",
  "guest-sync",
  "guest-ping",
  "guest-get-time",
  "guest-set-time",
  "guest-info",
  "guest-shutdown",
  "guest-file-open",
  "guest-file-close",
  "guest-file-read",
  "guest-file-write",
  "guest-file-seek",
  "guest-file-flush",
  "guest-fsfreeze-status",
  "guest-fsfreeze-freeze",
  "guest-fsfreeze-freeze-list",
  "guest-fsfreeze-thaw",
  "guest-fstrim",
  "guest-suspend-disk",
  "guest-suspend-ram",
  "guest-suspend-hybrid",
  "guest-network-get-interfaces",
  "guest-get-vcpus",
  "guest-set-vcpus",
  "guest-get-disks",
  "guest-get-fsinfo",
  "guest-set-user-password",
  "guest-get-memory-blocks",
  "guest-set-memory-blocks",
  "guest-get-memory-block-info",
  "guest-exec-status",
  "guest-exec",
  "guest-get-host-name",
  "guest-get-users",
  "guest-get-timezone",
  "guest-get-osinfo",
  "guest-ssh-get-authorized-keys",
  "guest-ssh-add-authorized-keys",
  "guest-ssh-remove-authorized-keys",
  "guest-get-diskstats",
  "guest-get-cpustats",
  "guest-get-load",
  "guest-network-get-route",
] as const;
