/**
 * node:util's parseArgs for the client's command line, loaded on first use.
 *
 * The client is imported dynamically by main.ts (`main.ts client ...`), but the deployed
 * bundle (scripts/bundle.sh) inlines it, and a bundler hoists a static `import ... from
 * "node:util"` to the top of the one file. The agent would then load Deno's Node
 * compatibility at every start (about 10 ms: docs/performance.md, "Start-up"). So no
 * module of the client imports node:util statically: clientMain calls
 * {@link loadParseArgs} first, and {@link parseArgs} is that function.
 *
 * @module
 */

import type { parseArgs as NodeParseArgs } from "node:util";

let loaded: typeof NodeParseArgs | undefined;

/** Loads node:util's parseArgs (once); call before {@link parseArgs}. */
export async function loadParseArgs(): Promise<void> {
  loaded ??= (await import("node:util")).parseArgs;
}

/** node:util's parseArgs; throws when {@link loadParseArgs} has not run. */
export const parseArgs = ((config) => {
  if (loaded === undefined) throw new Error("parseArgs used before loadParseArgs()");
  return loaded(config);
}) as typeof NodeParseArgs;
