/**
 * Runs the e2e suite by hand and prints the `conversation | qemu-ga | deno-qga` table.
 *
 * ```sh
 * ./node_modules/.bin/deno run --no-prompt --allow-read --allow-write --allow-run \
 *   --allow-net --allow-env --allow-sys tests/e2e/run.ts [--only TEXT]... [--logs]
 * ```
 *
 * `--only TEXT` keeps the conversations whose name contains TEXT (repeatable); `--logs`
 * prints the guest-side logs even when everything passes. Exits 1 when the suite fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { formatLogs, formatReport, runSuite } from "./suite.ts";

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      only: { type: "string", multiple: true },
      logs: { type: "boolean", default: false },
    },
  });
  const result = await runSuite({
    ...(values.only ? { only: values.only } : {}),
    log: (line) => console.error(line),
  });
  console.log(formatReport(result));
  if (values.logs || result.failures.length > 0) console.log(formatLogs(result));
  Deno.exit(result.failures.length > 0 ? 1 : 0);
}
