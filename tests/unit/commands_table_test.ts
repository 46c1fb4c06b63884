/**
 * The COMMANDS table (commands/mod.ts) is an explicit list: it must hold qemu-ga 10.2's
 * Linux commands in registration order, each once, and every command a module of
 * commands/ declares must be in it (a declared command left out of the list would
 * otherwise vanish without a word).
 */

import assert from "node:assert/strict";
import { COMMANDS, QEMU_GA_LINUX_COMMANDS } from "../../commands/mod.ts";

Deno.test("COMMANDS is qemu-ga 10.2's Linux command list, in registration order", () => {
  assert.deepEqual(COMMANDS.map((c) => c.name), [...QEMU_GA_LINUX_COMMANDS]);
});

Deno.test("every command declared in commands/ is in COMMANDS, once", async () => {
  const dir = new URL("../../commands/", import.meta.url);
  const declared = new Map<string, string>();
  for (const entry of Deno.readDirSync(dir)) {
    if (!entry.name.endsWith(".ts")) continue;
    const mod = await import(new URL(entry.name, dir).href) as Record<string, unknown>;
    for (const [key, value] of Object.entries(mod)) {
      const c = value as { name?: unknown; handler?: unknown } | null;
      if (
        c && typeof c === "object" && typeof c.name === "string" && typeof c.handler === "function"
      ) {
        declared.set(c.name, `${entry.name} ${key}`);
        assert.ok(COMMANDS.includes(value as never), `${entry.name} ${key} is not in COMMANDS`);
      }
    }
  }
  assert.equal(new Set(COMMANDS).size, COMMANDS.length, "a command is listed twice");
  assert.equal(declared.size, COMMANDS.length, "COMMANDS lists something no module declares");
});
