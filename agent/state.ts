/**
 * The state directory (qga-reference.md §3.3, §4.7): `qga.state` holds the next
 * guest-file handle (`[global]\nfd_counter=N\n`, rewritten through a temporary
 * file and a rename on every open), and the empty marker `qga.state.isfrozen`
 * makes a restarted agent start frozen.
 *
 * @module
 */

import { join } from "../config/path.ts";
import { QgaError } from "../protocol/errors.ts";
import { INT64_MAX } from "../protocol/int64.ts";
import { toSysError } from "../system/mod.ts";

const FIRST_HANDLE = 1000n;

/** Persistent state of one agent. */
export class StateDir {
  readonly dir: string;
  readonly stateFile: string;
  readonly frozenMarker: string;
  #counter = FIRST_HANDLE;
  #loaded = false;

  constructor(dir: string) {
    this.dir = dir;
    this.stateFile = join(dir, "qga.state");
    this.frozenMarker = join(dir, "qga.state.isfrozen");
  }

  /** True when the frozen marker exists. */
  markerExists(): boolean {
    try {
      Deno.lstatSync(this.frozenMarker);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Loads the counter; creates the file when missing unless `create` is false
   * (an agent starting frozen creates it only on demand). Throws an Error with
   * qemu-ga's start-up message on failure.
   */
  load(create: boolean): void {
    let text: string | undefined;
    try {
      text = Deno.readTextFileSync(this.stateFile);
    } catch (e) {
      const err = toSysError(e);
      if (err.code !== "ENOENT") {
        throw new Error(`unable to access state file at path ${this.stateFile}: ${err.strerror}`);
      }
    }
    if (text !== undefined) {
      const m = /^\s*fd_counter\s*=\s*(-?\d+)\s*$/m.exec(text);
      this.#counter = m ? BigInt(m[1]!) : FIRST_HANDLE;
      this.#loaded = true;
      return;
    }
    this.#counter = FIRST_HANDLE;
    if (create) {
      try {
        this.#write();
      } catch (e) {
        throw new Error(
          `failed to write persistent state to ${this.stateFile}: Failed to create file “${this.stateFile}.XXXXXX”: ${
            toSysError(e).strerror
          }\nunable to create state file at path ${this.stateFile}`,
        );
      }
      this.#loaded = true;
    }
  }

  #write(): void {
    const tmp = `${this.stateFile}.${crypto.randomUUID().slice(0, 6)}`;
    Deno.writeTextFileSync(tmp, `[global]\nfd_counter=${this.#counter}\n`, { mode: 0o644 });
    Deno.renameSync(tmp, this.stateFile);
  }

  /** Allocates a handle and commits the next value (the number is burnt on failure). */
  allocate(): bigint {
    if (!this.#loaded) this.load(true);
    if (this.#counter >= INT64_MAX) throw new QgaError("no more guest-file handles");
    const handle = this.#counter++;
    try {
      this.#write();
    } catch {
      throw new QgaError("failed to commit persistent state to disk");
    }
    return handle;
  }

  /** Creates or removes the frozen marker. */
  setMarker(present: boolean): void {
    if (present) {
      Deno.writeFileSync(this.frozenMarker, new Uint8Array(0));
    } else {
      try {
        Deno.removeSync(this.frozenMarker);
      } catch {
        // Already gone.
      }
    }
  }
}
