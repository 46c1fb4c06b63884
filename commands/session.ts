/**
 * Session commands: guest-sync-delimited, guest-sync, guest-ping, guest-info
 * (qga-reference.md §1.7, §1.11, §2.3 "Session / info").
 *
 * @module
 */

import { array, bool, int, str, struct } from "../protocol/types.ts";
import { defineCommand } from "./types.ts";

const SyncArgs = struct("", { id: int });

/** guest-sync-delimited: echo the id, the reply prefixed by the 0xFF sentinel. */
export const guestSyncDelimited = defineCommand({
  name: "guest-sync-delimited",
  since: "1.1",
  doc:
    "Echo `id` back, the reply preceded by a 0xFF byte so a client can find it in a dirty stream.",
  args: SyncArgs,
  returns: int,
  allowedWhileFrozen: true,
  needs: {},
  handler(args, ctx) {
    ctx.delimitNextReply();
    return args.id;
  },
});

/** guest-sync: echo the id. */
export const guestSync = defineCommand({
  name: "guest-sync",
  since: "0.15.0",
  doc: "Echo `id` back (libvirt's handshake).",
  args: SyncArgs,
  returns: int,
  allowedWhileFrozen: true,
  needs: {},
  handler: (args) => args.id,
});

/** guest-ping: answer `{}`. */
export const guestPing = defineCommand({
  name: "guest-ping",
  since: "0.15.0",
  doc: "Check that the agent answers.",
  allowedWhileFrozen: true,
  needs: {},
  handler(_args, ctx) {
    ctx.log.info("guest-ping called");
  },
});

const GuestAgentCommandInfo = struct("GuestAgentCommandInfo", {
  name: str,
  enabled: bool,
  "success-response": bool,
});

/** GuestAgentInfo. */
export const GuestAgentInfo = struct("GuestAgentInfo", {
  version: str,
  supported_commands: array(GuestAgentCommandInfo),
});

/** guest-info: version and every registered command, last registered first. */
export const guestInfo = defineCommand({
  name: "guest-info",
  since: "0.15.0",
  doc: "Report the agent version and every command with its enabled flag.",
  differences:
    "`version` is the qemu-ga version whose command set deno-qga implements (10.2.2). A command the sandbox cannot serve is listed with `enabled: false`.",
  returns: GuestAgentInfo,
  allowedWhileFrozen: true,
  needs: {},
  handler(_args, ctx) {
    return {
      version: ctx.version,
      supported_commands: ctx.registry().reverse().map((e) => ({
        name: e.name,
        enabled: e.enabled,
        "success-response": e.successResponse,
      })),
    };
  },
});
