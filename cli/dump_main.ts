/**
 * A small entry point around {@link parseCommandLine} for the differential CLI test:
 * prints what main.ts would print for an "exit" result and exits with its code; for a
 * "run" result it prints the warnings to stderr and the resolved options as JSON to
 * stdout, and exits 0 (it never starts an agent).
 *
 * Build facts come from the environment variable QGA_CLI_INFO (JSON with the fields of
 * {@link CliInfo}); `version` defaults to "10.2.2", `denoVersion` to this Deno's.
 *
 * Run: `deno run --allow-read --allow-env cli/dump_main.ts -D -m unix-listen -p /s`
 *
 * @module
 */

import { type CliInfo, parseCommandLine } from "./options.ts";

/** Parses QGA_CLI_INFO (if set) into the info handed to parseCommandLine. */
function cliInfo(): CliInfo {
  const text = Deno.env.get("QGA_CLI_INFO");
  const given: Partial<CliInfo> = text === undefined ? {} : JSON.parse(text);
  return {
    ...given,
    version: given.version ?? "10.2.2",
    denoVersion: given.denoVersion ?? Deno.version.deno,
    commandNames: given.commandNames ?? [],
  };
}

/** Writes all of `text` (writeSync may write only part of it to a pipe). */
function writeAll(out: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = new TextEncoder().encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(out.writeSync(bytes));
}

if (import.meta.main) {
  const result = await parseCommandLine(Deno.args, Deno.env, cliInfo());
  if (result.kind === "exit") {
    writeAll(Deno.stdout, result.stdout);
    writeAll(Deno.stderr, result.stderr);
    Deno.exit(result.code);
  }
  writeAll(Deno.stderr, result.warnings.map((w) => `${w}\n`).join(""));
  writeAll(Deno.stdout, JSON.stringify(result.options, null, 2) + "\n");
}
