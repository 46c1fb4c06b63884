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

export { QEMU_GA_LINUX_COMMANDS } from "./names.ts";

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
