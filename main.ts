/**
 * deno-qga: a QEMU guest agent. Options and config file -> Agent; signals;
 * nothing else. `main.ts client ...` is the host-side client instead.
 *
 * Run as (least privilege: see `--print-permissions`):
 *   deno run --allow-read --allow-write --allow-run main.ts -p /dev/virtio-ports/org.qemu.guest_agent.0
 *
 * @module
 */

import { fileURLToPath, join } from "./config/path.ts";
import { QEMU_GA_LINUX_COMMANDS } from "./commands/names.ts";
import { guestSync, guestSyncDelimited } from "./commands/session.ts";
import { parseCommandLine } from "./cli/options.ts";
import { guardInspector, runAgent } from "./agent/run.ts";
import { closeInspectorOnSigusr1 } from "./helper/inspector.ts";
import { leastPrivilegeCommand, projectDir, shellQuote } from "./agent/permissions.ts";
import { QEMU_GA_VERSION, VERSION } from "./agent/version.ts";
import { startHelper } from "./system/helper_client.ts";
import { createSystemAccess } from "./system/real.ts";
import { type AgentEnvName, ENV_PROGRAM, readAgentEnvironment } from "./system/environment.ts";
import { openTransport } from "./transport/mod.ts";

const encoder = new TextEncoder();

/** The commands the agent answers before its command table is loaded (agent/agent.ts). */
export const EARLY_COMMANDS = [guestSyncDelimited, guestSync];

/** The whole table, loaded after the first reply; several of its commands need the helper. */
export const LATE_COMMANDS = {
  load: async () => (await import("./commands/mod.ts")).COMMANDS,
  needHelper: true,
};

/** Writes all of `text` (writeSync may write part of it to a pipe). */
function writeAll(out: { writeSync(p: Uint8Array): number }, text: string): void {
  let b = encoder.encode(text);
  while (b.length > 0) b = b.subarray(out.writeSync(b));
}

async function main(args: string[]): Promise<number> {
  if (args[0] === "client") {
    const { clientMain } = await import("./client/cli.ts");
    return await clientMain(args.slice(1));
  }
  closeInspectorOnSigusr1();
  await guardInspector();
  const here = projectDir(import.meta.url);
  const environment = await readAgentEnvironment();
  const env = { get: (name: string) => environment.get(name as AgentEnvName) };
  const parsed = await parseCommandLine(args, env, {
    version: QEMU_GA_VERSION,
    denoQgaVersion: VERSION,
    denoVersion: Deno.version.deno,
    // The table's names (tests/unit/commands_table_test.ts), without loading the table.
    commandNames: QEMU_GA_LINUX_COMMANDS,
    defaultHelper: join(here, "helper", "qga-helper"),
  });
  if (environment.unreadable.includes("QGA_CONF")) {
    // The operator may have named a configuration we cannot see: never drop it silently.
    writeAll(
      Deno.stderr,
      "deno-qga: QGA_CONF cannot be read (no --allow-env=QGA_CONF, and the sandbox does not " +
        `allow running ${ENV_PROGRAM}): a configuration it names is not loaded\n`,
    );
  }
  if (parsed.kind === "exit") {
    if (parsed.stdout) writeAll(Deno.stdout, parsed.stdout);
    if (parsed.stderr) writeAll(Deno.stderr, parsed.stderr);
    return parsed.code;
  }
  for (const w of parsed.warnings) writeAll(Deno.stderr, `${w}\n`);
  const options = parsed.options;
  if (options.printPermissions) {
    let denoPath = "deno";
    try {
      denoPath = Deno.execPath();
    } catch {
      // No read grant for the binary's path: print the bare name.
    }
    const { COMMANDS } = await import("./commands/mod.ts");
    const argv = leastPrivilegeCommand(COMMANDS, options, {
      denoPath,
      mainPath: fileURLToPath(import.meta.url),
      args,
    });
    writeAll(Deno.stdout, argv.map(shellQuote).join(" ") + "\n");
    return 0;
  }
  return await runAgent({
    options,
    // Start-up loads no command module but session.ts: the first reply (guest-sync) needs
    // nothing else, and the whole table is loaded with the helper's start right after it.
    commands: EARLY_COMMANDS,
    lateCommands: LATE_COMMANDS,
    version: QEMU_GA_VERSION,
    environment,
    startHelper,
    createSystem: createSystemAccess,
    openTransport,
    // Called after the table is loaded (the shutdown waits for `ready`): no new module.
    thawAll: async (agent) => (await import("./commands/fsfreeze.ts")).thawAll(agent.context),
  });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
