/**
 * Accounts: guest-set-user-password and the guest-ssh-*-authorized-keys commands
 * (qga-reference.md §2.3 "SSH keys", "Accounts"; §5.3).
 *
 * The agent has no grant on /root or /home and runs no program itself: the
 * privileged helper looks the user up in /etc/passwd (qemu-ga asks NSS), reads
 * and replaces authorized_keys without ever following a link
 * (helper/authorized_keys.ts) and runs chpasswd from a fixed template
 * (helper/programs.ts). This file keeps qemu-ga's argument checks and builds
 * qemu-ga's texts from what the helper reports: whole-file replace through a
 * temporary file and rename, `.ssh` created 0700 and the file 0600, both owned by
 * the user.
 *
 * @module
 */

import { QgaError } from "../protocol/errors.ts";
import { decodeQemuBase64 } from "../protocol/base64.ts";
import { array, bool, str, struct } from "../protocol/types.ts";
import { type AuthKeysReply, type AuthKeysRequest, strerror } from "../system/mod.ts";
import { type Context, defineCommand } from "./types.ts";
import { runGaCommand } from "./run_command.ts";
import { PROGRAMS } from "../helper/programs.ts";

/** The password program (qemu-ga runs `chpasswd` from PATH). */
export const CHPASSWD_PATH = PROGRAMS.chpasswd;

/** check_openssh_pub_key: no leading `#`, no newline. */
function checkKeys(keys: readonly string[]): void {
  for (const key of keys) {
    if (key.startsWith("#") || key.includes("\n")) {
      throw new QgaError(`invalid OpenSSH public key: '${key}'`);
    }
  }
}

/** Runs one authorized_keys operation in the helper; qemu-ga's text for a failed step. */
async function authKeys(ctx: Context, req: AuthKeysRequest): Promise<string[] | null> {
  // qemu-ga's user name is a C string: it ends at the first NUL.
  req = { ...req, username: req.username.split("\0")[0]! };
  const r: AuthKeysReply = await ctx.sys.authorizedKeys(req);
  if (r.ok) return r.lines;
  const why = r.code === "" ? "Success" : strerror(r.code);
  const p = r.path;
  const tmp = r.tmp ?? p;
  switch (r.stage) {
    case "lookup":
      throw new QgaError(`failed to lookup user '${req.username}': ${why}`);
    case "read":
      throw new QgaError(`failed to read '${p}': Failed to open file \u201C${p}\u201D: ${why}`);
    case "mkdir":
      throw new QgaError(`failed to create directory '${p}': ${why}`);
    case "chown-dir":
    case "chown":
      throw new QgaError(`failed to set ownership of directory '${p}': ${why}`);
    case "chmod-dir":
      throw new QgaError(`failed to set permissions of directory '${p}': ${why}`);
    case "chmod":
      throw new QgaError(`failed to set permissions of '${p}': ${why}`);
    case "create":
      throw new QgaError(
        `failed to write to '${p}': Failed to create file \u201C${tmp}\u201D: ${why}`,
      );
    case "write":
      throw new QgaError(
        `failed to write to '${p}': Failed to write file \u201C${tmp}\u201D: write() failed: ${why}`,
      );
    case "rename":
      throw new QgaError(
        `failed to write to '${p}': Failed to rename file \u201C${tmp}\u201D to \u201C${p}\u201D: ` +
          `g_rename() failed: ${why}`,
      );
  }
}

const SSH_NEEDS = { helper: ["ssh"] };
const SSH_DIFFERENCES = "Users are looked up in /etc/passwd only (qemu-ga asks NSS, so LDAP or " +
  "systemd-homed users are found there and not here). The privileged helper does the file work " +
  "and never follows a link: a symlinked ~/.ssh or authorized_keys is refused with " +
  "`failed to read '<file>': Failed to open file \u201C<file>\u201D: Too many levels of " +
  "symbolic links` (qemu-ga follows it), and a file with other hard links is read only when the " +
  "user owns it.";

/** guest-ssh-get-authorized-keys. */
export const guestSshGetAuthorizedKeys = defineCommand({
  name: "guest-ssh-get-authorized-keys",
  since: "5.2",
  doc:
    "Return the public keys in a user's ~/.ssh/authorized_keys (in reverse file order, as qemu-ga)",
  differences: SSH_DIFFERENCES,
  args: struct("guest-ssh-get-authorized-keys-arg", { username: str }),
  returns: struct("GuestAuthorizedKeys", { keys: array(str) }),
  needs: SSH_NEEDS,
  async handler(args, ctx) {
    const keys: string[] = [];
    for (const raw of (await authKeys(ctx, { op: "get", username: args.username })) ?? []) {
      const line = raw.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "");
      if (line === "" || line.startsWith("#")) continue;
      keys.unshift(line);
    }
    return { keys };
  },
});

/** guest-ssh-add-authorized-keys. */
export const guestSshAddAuthorizedKeys = defineCommand({
  name: "guest-ssh-add-authorized-keys",
  since: "5.2",
  doc: "Append public keys to a user's ~/.ssh/authorized_keys (or replace them with reset)",
  differences: SSH_DIFFERENCES,
  args: struct("guest-ssh-add-authorized-keys-arg", {
    username: str,
    keys: array(str),
    "*reset": bool,
  }),
  sensitive: ["keys"],
  needs: SSH_NEEDS,
  async handler(args, ctx) {
    checkKeys(args.keys);
    await authKeys(ctx, {
      op: "add",
      username: args.username,
      keys: args.keys,
      reset: args.reset ?? false,
    });
  },
});

/** guest-ssh-remove-authorized-keys. */
export const guestSshRemoveAuthorizedKeys = defineCommand({
  name: "guest-ssh-remove-authorized-keys",
  since: "5.2",
  doc: "Remove public keys from a user's ~/.ssh/authorized_keys",
  differences: SSH_DIFFERENCES,
  args: struct("guest-ssh-remove-authorized-keys-arg", { username: str, keys: array(str) }),
  sensitive: ["keys"],
  needs: SSH_NEEDS,
  async handler(args, ctx) {
    checkKeys(args.keys);
    await authKeys(ctx, { op: "remove", username: args.username, keys: args.keys });
  },
});

/** The bytes of a C string: up to the first NUL. */
function cBytes(b: Uint8Array): Uint8Array {
  const i = b.indexOf(0);
  return i < 0 ? b : b.subarray(0, i);
}

/** guest-set-user-password. */
export const guestSetUserPassword = defineCommand({
  name: "guest-set-user-password",
  since: "2.3",
  doc: "Set a user's password with chpasswd (base64 password, optionally already crypted)",
  differences: `chpasswd is run by the privileged helper by absolute path (${CHPASSWD_PATH}), ` +
    "not found through PATH, with an empty environment; the user name and password reach it " +
    "only on stdin, as one line.",
  args: struct("guest-set-user-password-arg", { username: str, password: str, crypted: bool }),
  sensitive: ["password"],
  needs: { helper: ["run"] },
  async handler(args, ctx) {
    const raw = cBytes(decodeQemuBase64(args.password));
    if (raw.includes(0x0a)) throw new QgaError("forbidden characters in raw password");
    const username = args.username.split("\0")[0]!;
    if (username.includes("\n") || username.includes(":")) {
      throw new QgaError("forbidden characters in username");
    }
    await runGaCommand(ctx, {
      program: "chpasswd",
      crypted: args.crypted,
      username,
      password: raw.toBase64(),
    }, "set user password");
  },
});
