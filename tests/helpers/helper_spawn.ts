/**
 * Helpers started by tests: every helper records the Init of its parent process
 * (helper/init_record.ts), and a test process starts many helpers with different
 * settings, so tests start each one through a shell of its own that waits for it.
 *
 * @module
 */

/** argv prefix: `sh -c '"$0"; exit $?' <launcher>` (the shell stays the helper's parent). */
export const SPAWN_VIA_SHELL: readonly string[] = ["/bin/sh", "-c", '"$0" "$@"; exit $?'];
