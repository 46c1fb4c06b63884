/**
 * Versions. guest-info and `-V` report the qemu-ga version whose command set and
 * behaviour deno-qga implements, so version-gated clients behave as with qemu-ga;
 * `-V` adds deno-qga's own version and Deno's.
 *
 * @module
 */

/** The qemu-ga release whose Linux command set deno-qga implements. */
export const QEMU_GA_VERSION = "10.2.2";

/** deno-qga's own version. */
export const VERSION = "0.1.0";
