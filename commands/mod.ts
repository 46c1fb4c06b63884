/**
 * The COMMANDS table: every command deno-qga implements, in qemu-ga 10.2's
 * registration (schema) order (qga-reference.md §2.1), each the object its module
 * declares with `defineCommand`. A command that is not implemented is absent from the
 * table, not present and failing. tests/unit/commands_table_test.ts checks the table
 * against {@link QEMU_GA_LINUX_COMMANDS} and that no declared command is left out.
 *
 * @module
 */

import type { Command } from "./types.ts";
import { guestInfo, guestPing, guestSync, guestSyncDelimited } from "./session.ts";
import { guestGetTime, guestSetTime } from "./time.ts";
import { guestShutdown } from "./power.ts";
import {
  guestFileClose,
  guestFileFlush,
  guestFileOpen,
  guestFileRead,
  guestFileSeek,
  guestFileWrite,
} from "./file.ts";
import {
  guestFsfreezeFreeze,
  guestFsfreezeFreezeList,
  guestFsfreezeStatus,
  guestFsfreezeThaw,
} from "./fsfreeze.ts";
import { guestFstrim, guestGetDisks, guestGetDiskstats, guestGetFsinfo } from "./filesystems.ts";
import { guestSuspendDisk, guestSuspendHybrid, guestSuspendRam } from "./suspend.ts";
import { guestNetworkGetInterfaces, guestNetworkGetRoute } from "./network.ts";
import { guestGetVcpus, guestSetVcpus } from "./vcpus.ts";
import {
  guestGetMemoryBlockInfo,
  guestGetMemoryBlocks,
  guestSetMemoryBlocks,
} from "./memory_blocks.ts";
import { guestGetCpustats, guestGetLoad } from "./cpu_stats.ts";
import {
  guestSetUserPassword,
  guestSshAddAuthorizedKeys,
  guestSshGetAuthorizedKeys,
  guestSshRemoveAuthorizedKeys,
} from "./accounts.ts";
import { guestExec, guestExecStatus } from "./exec.ts";
import { guestGetHostName, guestGetOsinfo, guestGetTimezone, guestGetUsers } from "./identity.ts";

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

/** The command table, in registration order. */
export const COMMANDS: readonly Command[] = [
  guestSyncDelimited,
  guestSync,
  guestPing,
  guestGetTime,
  guestSetTime,
  guestInfo,
  guestShutdown,
  guestFileOpen,
  guestFileClose,
  guestFileRead,
  guestFileWrite,
  guestFileSeek,
  guestFileFlush,
  guestFsfreezeStatus,
  guestFsfreezeFreeze,
  guestFsfreezeFreezeList,
  guestFsfreezeThaw,
  guestFstrim,
  guestSuspendDisk,
  guestSuspendRam,
  guestSuspendHybrid,
  guestNetworkGetInterfaces,
  guestGetVcpus,
  guestSetVcpus,
  guestGetDisks,
  guestGetFsinfo,
  guestSetUserPassword,
  guestGetMemoryBlocks,
  guestSetMemoryBlocks,
  guestGetMemoryBlockInfo,
  guestExecStatus,
  guestExec,
  guestGetHostName,
  guestGetUsers,
  guestGetTimezone,
  guestGetOsinfo,
  guestSshGetAuthorizedKeys,
  guestSshAddAuthorizedKeys,
  guestSshRemoveAuthorizedKeys,
  guestGetDiskstats,
  guestGetCpustats,
  guestGetLoad,
  guestNetworkGetRoute,
];
