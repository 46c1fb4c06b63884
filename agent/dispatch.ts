/**
 * One request in, at most one reply out: qemu's qmp_dispatch checks in qemu's
 * order with its texts (qga-reference.md §1.3), then argument validation (§1.6),
 * then the handler. Builds nothing but strings; the agent writes them.
 *
 * @module
 */

import type { Command, Context } from "../commands/types.ts";
import { QgaError } from "../protocol/errors.ts";
import { errorReply, type ReplyText, successReplyParts } from "../protocol/json_writer.ts";
import { NO_ARGS } from "../protocol/types.ts";
import { validateArguments } from "../protocol/validate.ts";
import { isObject, type JsonObject, type JsonValue } from "../protocol/value.ts";
import { qdictOrder } from "../protocol/json_writer.ts";

/** Looks up commands and whether they are enabled. */
export interface CommandLookup {
  get(name: string): Command | undefined;
  /** Undefined when enabled; else the reason suffix ("" for none). */
  disabledReason(name: string): string | undefined;
}

/** What dispatching one request produced, for the reply writer and the audit log. */
export interface DispatchOutcome {
  /** Reply text without the newline; undefined when no reply is sent. */
  reply: ReplyText | undefined;
  /** Command name when the request got that far. */
  command?: string;
  /** Error class when the reply is an error. */
  errorClass?: string;
  /** Validated arguments (for the audit summary). */
  args?: Record<string, unknown>;
}

function fail(
  errorClass: string,
  desc: string,
  id: JsonValue | undefined,
  extra: Partial<DispatchOutcome> = {},
): DispatchOutcome {
  return { reply: errorReply(errorClass, desc, id), errorClass, ...extra };
}

/** Checks the request object's members as qmp_dispatch_check_obj does. */
function checkRequest(dict: JsonObject): string | undefined {
  for (const key of qdictOrder([...dict.keys()])) {
    const v = dict.get(key);
    if (key === "execute") {
      if (typeof v !== "string") return "QMP input member 'execute' must be a string";
    } else if (key === "arguments") {
      if (!isObject(v)) return "QMP input member 'arguments' must be an object";
    } else if (key !== "id") {
      return `QMP input member '${key}' is unexpected`;
    }
  }
  if (!dict.has("execute")) return "QMP input lacks member 'execute'";
  return undefined;
}

/** Dispatches one parsed request. */
export async function dispatch(
  request: JsonValue,
  commands: CommandLookup,
  ctx: Context,
): Promise<DispatchOutcome> {
  if (!isObject(request)) return fail("GenericError", "QMP input must be a JSON object", undefined);
  const id = request.get("id");
  const problem = checkRequest(request);
  if (problem) return fail("GenericError", problem, id);
  const name = request.get("execute") as string;
  const cmd = commands.get(name);
  if (!cmd) {
    return fail("CommandNotFound", `The command ${name} has not been found`, id, { command: name });
  }
  const reason = commands.disabledReason(name);
  if (reason !== undefined) {
    const desc = `Command ${name} has been disabled${reason ? `: ${reason}` : ""}`;
    return fail("CommandNotFound", desc, id, { command: name });
  }
  const rawArgs = (request.get("arguments") as JsonObject | undefined) ?? new Map();
  let args: Record<string, unknown>;
  try {
    args = validateArguments(rawArgs, cmd.args ?? NO_ARGS);
  } catch (e) {
    if (e instanceof QgaError) return fail(e.errorClass, e.message, id, { command: name });
    throw e;
  }
  // The handler gets what validation made from its own command's descriptor (see Command).
  let result: unknown;
  try {
    result = await cmd.handler(args, ctx);
  } catch (e) {
    return fail(...describeError(e), id, { command: name, args });
  }
  if (cmd.successResponse === false) return { reply: undefined, command: name, args };
  const value = cmd.returns ? result : {};
  return { reply: successReplyParts(value, cmd.returns, id), command: name, args };
}

/** Class and text of an error thrown by a handler. */
export function describeError(e: unknown): [string, string] {
  if (e instanceof QgaError) return [e.errorClass, e.message];
  const err = e as { name?: string; message?: string };
  if (err?.name === "NotCapable") {
    return ["GenericError", `the agent's sandbox refused this operation: ${err.message}`];
  }
  return ["GenericError", String(err?.message ?? e)];
}
