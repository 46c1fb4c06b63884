/**
 * Accounts: guest-set-user-password and the guest-ssh-*-authorized-keys commands
 * (qga-reference.md §2.3 "SSH keys", "Accounts"; §5.3).
 *
 * Users are looked up in /etc/passwd read through ctx.sys (qemu-ga asks NSS), so a
 * test's fixture passwd decides which home directory is touched: no test can reach
 * a real account. authorized_keys is then read and written directly (Deno), with
 * qemu-ga's GLib semantics: whole-file replace through a temporary file and rename,
 * `.ssh` created 0700 and the file chmod 0600, both chowned to the user.
 *
 * @module
 */

import { QgaError } from "../schema/errors.ts";
import { decodeQemuBase64 } from "../schema/base64.ts";
import { array, bool, str, struct } from "../schema/types.ts";
import type { SystemAccess } from "../system/mod.ts";
import { toSysError } from "../system/mod.ts";
import { type Context, defineCommand } from "./types.ts";
import { runGaCommand } from "./run_command.ts";

/** The password program (qemu-ga runs `chpasswd` from PATH). */
export const CHPASSWD_PATH = "/usr/sbin/chpasswd";
/** Where home directories usually are; grants for the ssh-key commands. */
const HOME_ROOTS = ["/root", "/home"];

/** What the ssh-key commands need of a passwd entry. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** Finds `name` in passwd(5) text; the first matching line wins, as getpwnam does. */
export function findPasswdEntry(text: string, name: string): PasswdEntry | null {
  if (name === "") return null;
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 7 || f[0] !== name) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) continue;
    return { name, uid, gid, home: f[5]! };
  }
  return null;
}

async function lookupUser(sys: SystemAccess, name: string): Promise<PasswdEntry> {
  let text: string;
  try {
    text = await sys.readTextFile("/etc/passwd");
  } catch (e) {
    throw new QgaError(`failed to lookup user '${name}': ${toSysError(e).strerror}`);
  }
  const entry = findPasswdEntry(text, name);
  // g_unix_get_passwd_entry reports a missing user with errno 0
  if (!entry) throw new QgaError(`failed to lookup user '${name}': Success`);
  return entry;
}

/** check_openssh_pub_key: no leading `#`, no newline. */
function checkKeys(keys: readonly string[]): void {
  for (const key of keys) {
    if (key.startsWith("#") || key.includes("\n")) {
      throw new QgaError(`invalid OpenSSH public key: '${key}'`);
    }
  }
}

function errText(e: unknown): string {
  return toSysError(e).strerror;
}

/** g_file_get_contents + g_strsplit on "\n", with read_authkeys' error text. */
async function readAuthKeys(path: string): Promise<string[]> {
  try {
    const text = new TextDecoder().decode(await Deno.readFile(path));
    return text.split("\n");
  } catch (e) {
    throw new QgaError(
      `failed to read '${path}': Failed to open file \u201C${path}\u201D: ${errText(e)}`,
    );
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

async function mkdirForUser(path: string, user: PasswdEntry): Promise<void> {
  try {
    await Deno.mkdir(path, { mode: 0o700 });
  } catch (e) {
    throw new QgaError(`failed to create directory '${path}': ${errText(e)}`);
  }
  try {
    await Deno.chown(path, user.uid, user.gid);
  } catch (e) {
    throw new QgaError(`failed to set ownership of directory '${path}': ${errText(e)}`);
  }
  try {
    await Deno.chmod(path, 0o700);
  } catch (e) {
    throw new QgaError(`failed to set permissions of directory '${path}': ${errText(e)}`);
  }
}

/** write_authkeys: lines joined by "\n" (no trailing newline), replace, chown, chmod 0600. */
async function writeAuthKeys(path: string, lines: string[], user: PasswdEntry): Promise<void> {
  const data = new TextEncoder().encode(lines.join("\n"));
  const suffix = Array.from(
    crypto.getRandomValues(new Uint8Array(6)),
    (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36],
  )
    .join("");
  const tmp = `${path}.${suffix}`;
  try {
    await Deno.writeFile(tmp, data, { createNew: true, mode: 0o600 });
  } catch (e) {
    throw new QgaError(
      `failed to write to '${path}': Failed to create file \u201C${tmp}\u201D: ${errText(e)}`,
    );
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new QgaError(
      `failed to write to '${path}': Failed to rename file \u201C${tmp}\u201D to \u201C${path}\u201D: ` +
        `g_rename() failed: ${errText(e)}`,
    );
  }
  try {
    await Deno.chown(path, user.uid, user.gid);
  } catch (e) {
    throw new QgaError(`failed to set ownership of directory '${path}': ${errText(e)}`);
  }
  try {
    await Deno.chmod(path, 0o600);
  } catch (e) {
    throw new QgaError(`failed to set permissions of '${path}': ${errText(e)}`);
  }
}

const SSH_NEEDS = { read: ["/etc/passwd", ...HOME_ROOTS], write: [...HOME_ROOTS] };
const SSH_DIFFERENCES = "Users are looked up in /etc/passwd only (qemu-ga asks NSS, so LDAP or " +
  "systemd-homed users are found there and not here); home directories outside /root and /home " +
  "need the agent's read/write grant extended.";

/** guest-ssh-get-authorized-keys. */
export const guestSshGetAuthorizedKeys = defineCommand<{ username: string }, { keys: string[] }>({
  name: "guest-ssh-get-authorized-keys",
  since: "5.2",
  doc:
    "Return the public keys in a user's ~/.ssh/authorized_keys (in reverse file order, as qemu-ga)",
  differences: SSH_DIFFERENCES,
  args: struct("guest-ssh-get-authorized-keys-arg", { username: str }),
  returns: struct("GuestAuthorizedKeys", { keys: array(str) }),
  needs: SSH_NEEDS,
  async handler(args, ctx) {
    const user = await lookupUser(ctx.sys, args.username);
    const path = `${user.home.replace(/\/+$/, "")}/.ssh/authorized_keys`;
    const keys: string[] = [];
    for (const raw of await readAuthKeys(path)) {
      const line = raw.replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, "");
      if (line === "" || line.startsWith("#")) continue;
      keys.unshift(line);
    }
    return { keys };
  },
});

function authPaths(user: PasswdEntry): { ssh: string; file: string } {
  const ssh = `${user.home.replace(/\/+$/, "")}/.ssh`;
  return { ssh, file: `${ssh}/authorized_keys` };
}

/** guest-ssh-add-authorized-keys. */
export const guestSshAddAuthorizedKeys = defineCommand<
  { username: string; keys: string[]; reset?: boolean },
  Record<string, never>
>({
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
    const user = await lookupUser(ctx.sys, args.username);
    const { ssh, file } = authPaths(user);
    let lines: string[] | null = null;
    if (!args.reset) lines = await readAuthKeys(file).catch(() => null);
    if (lines === null) {
      if (!(await isDirectory(ssh))) await mkdirForUser(ssh, user);
      lines = [];
    }
    for (const key of args.keys) {
      if (!lines.includes(key)) lines.push(key);
    }
    await writeAuthKeys(file, lines, user);
    return {};
  },
});

/** guest-ssh-remove-authorized-keys. */
export const guestSshRemoveAuthorizedKeys = defineCommand<
  { username: string; keys: string[] },
  Record<string, never>
>({
  name: "guest-ssh-remove-authorized-keys",
  since: "5.2",
  doc: "Remove public keys from a user's ~/.ssh/authorized_keys",
  differences: SSH_DIFFERENCES,
  args: struct("guest-ssh-remove-authorized-keys-arg", { username: str, keys: array(str) }),
  sensitive: ["keys"],
  needs: SSH_NEEDS,
  async handler(args, ctx) {
    checkKeys(args.keys);
    const user = await lookupUser(ctx.sys, args.username);
    const { file } = authPaths(user);
    try {
      await Deno.stat(file);
    } catch {
      return {};
    }
    const lines = await readAuthKeys(file);
    await writeAuthKeys(file, lines.filter((l) => !args.keys.includes(l)), user);
    return {};
  },
});

/** The bytes of a C string: up to the first NUL. */
function cBytes(b: Uint8Array): Uint8Array {
  const i = b.indexOf(0);
  return i < 0 ? b : b.subarray(0, i);
}

/** guest-set-user-password. */
export const guestSetUserPassword = defineCommand<
  { username: string; password: string; crypted: boolean },
  Record<string, never>
>({
  name: "guest-set-user-password",
  since: "2.3",
  doc: "Set a user's password with chpasswd (base64 password, optionally already crypted)",
  differences: `chpasswd is run by absolute path (${CHPASSWD_PATH}), not found through PATH.`,
  args: struct("guest-set-user-password-arg", { username: str, password: str, crypted: bool }),
  sensitive: ["password"],
  needs: { run: [CHPASSWD_PATH] },
  async handler(args, ctx: Context) {
    const raw = cBytes(decodeQemuBase64(args.password));
    if (raw.includes(0x0a)) throw new QgaError("forbidden characters in raw password");
    const username = args.username.split("\0")[0]!;
    if (username.includes("\n") || username.includes(":")) {
      throw new QgaError("forbidden characters in username");
    }
    const name = new TextEncoder().encode(`${username}:`);
    const input = new Uint8Array(name.length + raw.length + 1);
    input.set(name);
    input.set(raw, name.length);
    input[input.length - 1] = 0x0a;
    const argv = args.crypted ? [CHPASSWD_PATH, "-e"] : [CHPASSWD_PATH];
    await runGaCommand(ctx, argv, "set user password", { input });
    return {};
  },
});
