import assert from "node:assert/strict";
import { commandsDoc } from "../../scripts/gen_commands_doc.ts";

Deno.test("docs/commands.md is what the command table generates (run `npm run docs`)", async () => {
  const onDisk = await Deno.readTextFile(new URL("../../docs/commands.md", import.meta.url));
  assert.equal(onDisk, commandsDoc(), "docs/commands.md is stale: run `npm run docs`");
});
