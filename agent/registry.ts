/**
 * The enabled/disabled registry (qga-reference.md §1.9-1.10): every command of
 * the table is registered; allow list, block list (which wins), the frozen state
 * (which beats both, leaving only the six freeze-safe commands) and the sandbox
 * (a command whose needs are not granted) decide whether it runs. The frozen-state
 * reason is given only for commands nothing else disabled (qemu-ga 7.2 re-disables
 * only enabled commands when it freezes).
 *
 * @module
 */

import type { Command, RegistryEntry } from "../commands/types.ts";
import type { CommandLookup } from "./dispatch.ts";

/** Disabled-command reasons. 7.2's texts, which clients see after "has been disabled". */
export const REASON_FROZEN = "the agent is in frozen state";

/** The registry of one agent. */
export class Registry implements CommandLookup {
  #commands: Command[];
  #byName: Map<string, Command>;
  readonly #allow: Set<string> | undefined;
  readonly #block: Set<string>;
  #sandbox: Map<string, string>;
  #frozen = false;

  constructor(
    commands: readonly Command[],
    o: { allow: string[]; block: string[]; sandbox?: Map<string, string> },
  ) {
    this.#commands = [...commands];
    this.#byName = new Map(commands.map((c) => [c.name, c]));
    this.#allow = o.allow.length ? new Set(o.allow) : undefined;
    this.#block = new Set(o.block);
    this.#sandbox = o.sandbox ?? new Map();
  }

  /**
   * Replaces the command table (the whole table, once it is loaded: start-up registers
   * only the commands it answers before that). The lists, the frozen state and the
   * sandbox apply to the new table as they did to the old one.
   */
  setCommands(commands: readonly Command[]): void {
    this.#commands = [...commands];
    this.#byName = new Map(commands.map((c) => [c.name, c]));
  }

  /** Replaces the commands the sandbox disables (known once the helper has started). */
  setSandbox(sandbox: Map<string, string>): void {
    this.#sandbox = sandbox;
  }

  /** Re-applies the filters for the frozen state (ga_set_frozen / ga_unset_frozen). */
  setFrozen(frozen: boolean): void {
    this.#frozen = frozen;
  }

  get(name: string): Command | undefined {
    return this.#byName.get(name);
  }

  /**
   * Why `name` is disabled ("" for no reason), or undefined when it is enabled. As in
   * qemu-ga 7.2, entering the frozen state disables only the commands still enabled: a
   * command the lists (or the sandbox) already disabled keeps its own text.
   */
  disabledReason(name: string): string | undefined {
    const cmd = this.#byName.get(name);
    if (!cmd) return undefined;
    if (this.#block.has(name)) return "";
    if (this.#allow && !this.#allow.has(name)) return "";
    const sandbox = this.#sandbox.get(name);
    if (sandbox !== undefined) return sandbox;
    if (this.#frozen && !cmd.allowedWhileFrozen) return REASON_FROZEN;
    return undefined;
  }

  /** Commands in registration order with their flags. */
  entries(): RegistryEntry[] {
    return this.#commands.map((c) => ({
      name: c.name,
      enabled: this.disabledReason(c.name) === undefined,
      successResponse: c.successResponse !== false,
    }));
  }
}
