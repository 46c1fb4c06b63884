/**
 * QgaError: the only error a handler throws on purpose. The dispatcher turns it
 * into `{"error": {"class": ..., "desc": ...}}`; any other error becomes a
 * GenericError with its message (a sandbox refusal is named as such).
 *
 * @module
 */

/** qemu-ga uses only these two classes (qga-reference.md §1.5). */
export type ErrorClass = "GenericError" | "CommandNotFound";

/** An error reply with qemu-ga's class and description. */
export class QgaError extends Error {
  readonly errorClass: ErrorClass;

  constructor(desc: string, errorClass: ErrorClass = "GenericError") {
    super(desc);
    this.name = "QgaError";
    this.errorClass = errorClass;
  }
}
