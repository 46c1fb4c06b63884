/**
 * The COMMANDS table: every command deno-qga implements, in qemu-ga 10.2's
 * registration (schema) order (qga-reference.md §2.1). A command that is not
 * implemented is absent from the table, not present and failing.
 *
 * @module
 */

import type { CommandDef } from "./types.ts";
import * as session from "./session.ts";
import * as file from "./file.ts";
import * as fsfreeze from "./fsfreeze.ts";
import * as power from "./power.ts";
import * as time from "./time.ts";
import * as suspend from "./suspend.ts";
import * as accounts from "./accounts.ts";
import * as exec from "./exec.ts";
import * as identity from "./identity.ts";
import * as filesystems from "./filesystems.ts";
import * as network from "./network.ts";
import * as cpuMemory from "./cpu_memory.ts";

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

// deno-lint-ignore no-explicit-any
type AnyCommand = CommandDef<any, unknown>;

function collect(...modules: Record<string, unknown>[]): Map<string, AnyCommand> {
  const byName = new Map<string, AnyCommand>();
  for (const mod of modules) {
    for (const v of Object.values(mod)) {
      const c = v as Partial<AnyCommand>;
      if (
        c && typeof c === "object" && typeof c.name === "string" && typeof c.handler === "function"
      ) {
        byName.set(c.name, c as AnyCommand);
      }
    }
  }
  return byName;
}

const implemented = collect(
  session,
  file,
  fsfreeze,
  power,
  time,
  suspend,
  accounts,
  exec,
  identity,
  filesystems,
  network,
  cpuMemory,
);

/** The command table, in registration order. */
export const COMMANDS: readonly AnyCommand[] = QEMU_GA_LINUX_COMMANDS
  .filter((n) => implemented.has(n))
  .map((n) => implemented.get(n)!);
