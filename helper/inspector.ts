/**
 * Deno (2.9.2+) starts a V8 inspector on 127.0.0.1:9229 when the process gets SIGUSR1,
 * even when a SIGUSR1 listener is registered (deno-facts.md §5), which would let any local
 * user attach to a root process. This is the one workaround, used by the agent (main.ts)
 * and by the helper (helper/main.ts, which also holds the port). It imports nothing of
 * deno-qga and lives in helper/ because the helper imports nothing outside helper/.
 *
 * @module
 */

import type NodeInspector from "node:inspector";

let inspector: typeof NodeInspector | undefined;

/**
 * Loads node:inspector, which {@link closeInspectorOnSigusr1} closes the inspector with.
 * A process that cannot hold 127.0.0.1:9229 itself awaits this at start, so the close
 * comes on the tick after a signal. One that holds the port (the inspector then cannot
 * bind) may leave it to the first signal: it then starts without Node compatibility
 * (memory, start-up time).
 */
export async function loadInspectorGuard(): Promise<void> {
  inspector ??= (await import("node:inspector")).default;
}

/**
 * On SIGUSR1, closes the inspector: the server is created right after the signal
 * listeners run, so it is closed on the next tick, and again later in case a second
 * signal raced the first.
 */
export function closeInspectorOnSigusr1(): void {
  // Not inspector.url(): it needs an unscoped --allow-sys ("inspector" is no
  // --allow-sys= kind). close() needs no permission and is a no-op when closed.
  const close = () => {
    try {
      inspector?.close();
    } catch {
      // Nothing to close.
    }
  };
  Deno.addSignalListener("SIGUSR1", () => {
    if (!inspector) loadInspectorGuard().then(close, () => {});
    for (const ms of [0, 1, 5, 20, 100, 500]) setTimeout(close, ms);
  });
}
