/**
 * Generates docs/commands.md from the COMMANDS table: every command with its
 * since-version, arguments, return type, what it needs from the sandbox and how
 * it differs from qemu-ga. tests/unit/commands_doc_test.ts fails when the file is
 * stale; regenerate with `npm run docs`.
 *
 * @module
 */

import { COMMANDS, QEMU_GA_LINUX_COMMANDS } from "../commands/mod.ts";
import { defaultOptions } from "../config/options.ts";
import type { TypeDesc } from "../protocol/types.ts";
import { needsOf } from "../agent/permissions.ts";

function typeName(t: TypeDesc): string {
  switch (t.kind) {
    case "array":
      return `[${typeName(t.of)}]`;
    case "enum":
    case "struct":
    case "alternate":
      return t.name || "object";
    default:
      return t.kind;
  }
}

function renderType(t: TypeDesc | undefined): string {
  if (!t) return "`{}`";
  if (t.kind === "struct") {
    const members = t.members.map((m) => `${m.optional ? "*" : ""}${m.name}: ${typeName(m.type)}`);
    return `${t.name ? `${t.name} ` : ""}\`{${members.join(", ")}}\``;
  }
  return `\`${typeName(t)}\``;
}

function renderNeeds(n: ReturnType<typeof needsOf>): string {
  const parts: string[] = [];
  if (n.read?.length) parts.push(`read ${n.read.join(", ")}`);
  if (n.write?.length) parts.push(`write ${n.write.join(", ")}`);
  if (n.run?.length) parts.push(`run ${n.run.join(", ")}`);
  if (n.sys?.length) parts.push(`sys ${n.sys.join(", ")}`);
  if (n.env?.length) parts.push(`env ${n.env.join(", ")}`);
  if (n.net?.length) parts.push(`net ${n.net.join(", ")}`);
  if (n.helper?.length) parts.push(`helper: ${n.helper.join(", ")}`);
  return parts.length ? parts.join("; ") : "nothing";
}

/** The text of docs/commands.md. */
export function commandsDoc(): string {
  const options = defaultOptions();
  const lines: string[] = [
    "# Commands",
    "",
    "Generated from the command table (commands/mod.ts) by `npm run docs`; a test fails when it is stale.",
    "",
    `deno-qga implements ${COMMANDS.length} of the ${QEMU_GA_LINUX_COMMANDS.length} Linux commands of qemu-ga 10.2, in its registration order.`,
    "Needs are shown for default options (no file roots, no exec program list); the sandbox column",
    "is what `--print-permissions` grants for the command. A command whose needs are not granted",
    "is reported `enabled: false` by guest-info and answers as a disabled command. The env and",
    "net grants never disable a command (see system/environment.ts and guest-exec).",
    "",
    "## Conformance: QEMU's own test-qga",
    "",
    "QEMU's `tests/unit/test-qga` (28 tests, QEMU 10.0.13) runs against deno-qga in place of",
    "qemu-ga: `npm run test:peer` (scripts/test_qga.sh; CI runs it after `npm test`). It builds",
    "test-qga with ../shared/tools/peer/build.sh once per machine, then runs it against the",
    "least-privilege line with `--exec-programs=echo,bash` (the programs its guest-exec tests",
    "start), against the card's line plus `--allow-net` (unix-listen needs it), and",
    "`/qga/guest-exec-merged` 20 times. Expected result: 27 of 28 on both lines and 20 of 20",
    "merged runs. The one failure is `/qga/info`, which compares the agent's version (10.2.2,",
    "the command set deno-qga implements) with the QEMU test-qga was built from, as it would for",
    "any other qemu-ga version; the script counts it as passed only when that version check is",
    "its sole failure.",
    "",
  ];
  const missing = QEMU_GA_LINUX_COMMANDS.filter((n) => !COMMANDS.some((c) => c.name === n));
  if (missing.length) {
    lines.push(
      `Not implemented (absent from the table): ${missing.map((n) => `\`${n}\``).join(", ")}.`,
      "",
    );
  }
  for (const c of COMMANDS) {
    lines.push(`## ${c.name}`, "");
    lines.push(c.doc, "");
    lines.push(`- since: ${c.since}`);
    lines.push(`- arguments: ${c.args ? renderType(c.args) : "none"}`);
    lines.push(`- returns: ${renderType(c.returns)}`);
    if (c.successResponse === false) lines.push("- no reply on success");
    if (c.allowedWhileFrozen) lines.push("- allowed while filesystems are frozen");
    if (c.sensitive?.length) lines.push(`- never logged: ${c.sensitive.join(", ")}`);
    lines.push(`- sandbox: ${renderNeeds(needsOf(c, options))}`);
    if (c.differences) lines.push(`- differences from qemu-ga: ${c.differences}`);
    lines.push("");
  }
  return lines.join("\n");
}

if (import.meta.main) {
  await Deno.writeTextFile(new URL("../docs/commands.md", import.meta.url), commandsDoc());
}
