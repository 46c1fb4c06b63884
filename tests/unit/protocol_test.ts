/**
 * The protocol layer on its own, fast and without qemu-ga: the request checks in qemu's
 * order (qga-reference.md §1.3), argument validation texts (§1.6) and the reply writer
 * (§1.4), each against texts observed from qemu-ga 7.2. The differential suite compares
 * whole conversations; these tests are what `npm run mutants` relies on for the same
 * guards (tests/mutants/list.ts).
 */

import assert from "node:assert/strict";
import { dispatch } from "../../agent/dispatch.ts";
import { Registry } from "../../agent/registry.ts";
import { defineCommand } from "../../commands/types.ts";
import { COMMANDS } from "../../commands/mod.ts";
import { errorReply, formatDouble, quoteString, successReply } from "../../protocol/json_writer.ts";
import { alternate, array, bool, enumType, int, str, struct } from "../../protocol/types.ts";
import { validateArguments } from "../../protocol/validate.ts";
import type { JsonValue } from "../../protocol/value.ts";
import { JsonStream, type StreamEvent } from "../../protocol/json_stream.ts";
import { fakeContext } from "../helpers/fake_context.ts";

/** Parses one JSON text with the agent's own streamer. */
function parse(text: string): JsonValue {
  const events: StreamEvent[] = [];
  new JsonStream((e) => events.push(e)).feed(new TextEncoder().encode(text));
  assert.equal(events.length, 1, `one message from ${text}`);
  const e = events[0]!;
  if (e.error !== undefined) throw new Error(e.error);
  return e.value;
}

/** The reply text dispatch produces for `text`, as the agent would write it. */
async function reply(text: string, registry = new Registry(COMMANDS, { allow: [], block: [] })) {
  const out = await dispatch(parse(text), registry, fakeContext());
  const r = out.reply;
  return typeof r === "string" ? r : r?.join("");
}

const genericError = (desc: string) => `{"error": {"class": "GenericError", "desc": "${desc}"}}`;

// ---------------------------------------------------------------- request checks (§1.3)

Deno.test("a request that is not an object is refused without an id", async () => {
  assert.equal(await reply("[1]"), genericError("QMP input must be a JSON object"));
});

Deno.test("request members are checked in qemu's order with its texts", async () => {
  assert.equal(
    await reply('{"execute": 1}'),
    genericError("QMP input member 'execute' must be a string"),
  );
  assert.equal(
    await reply('{"execute": "guest-ping", "arguments": null}'),
    genericError("QMP input member 'arguments' must be an object"),
  );
  assert.equal(
    await reply('{"exec-oob": "guest-ping"}'),
    genericError("QMP input member 'exec-oob' is unexpected"),
  );
  assert.equal(
    await reply('{"id": 1}'),
    `{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}`,
  );
});

Deno.test("an unknown command is CommandNotFound and keeps the id", async () => {
  assert.equal(
    await reply('{"execute": "guest-nope", "id": "x"}'),
    '{"id": "x", "error": {"class": "CommandNotFound", "desc": "The command guest-nope has not been found"}}',
  );
});

Deno.test("a blocked command is CommandNotFound and its arguments are not validated", async () => {
  const registry = new Registry(COMMANDS, { allow: [], block: ["guest-ping"] });
  assert.equal(
    await reply('{"execute": "guest-ping", "arguments": {"bogus": 1}}', registry),
    '{"error": {"class": "CommandNotFound", "desc": "Command guest-ping has been disabled"}}',
  );
});

Deno.test("the reply carries the id after the return value", async () => {
  assert.equal(await reply('{"execute": "guest-ping", "id": 1}'), '{"return": {}, "id": 1}');
  assert.equal(await reply('{"execute": "guest-sync", "arguments": {"id": 5}}'), '{"return": 5}');
});

Deno.test("a command without success response sends nothing on success", async () => {
  const quiet = defineCommand({
    name: "x-quiet",
    since: "0",
    doc: "",
    successResponse: false,
    needs: {},
    handler: () => {},
  });
  const registry = new Registry([quiet], { allow: [], block: [] });
  assert.equal(await reply('{"execute": "x-quiet"}', registry), undefined);
});

// ---------------------------------------------------------------- arguments (§1.6)

const ARGS = struct("t-arg", {
  id: int,
  "*reset": bool,
  "*mode": str,
  "*arg": array(str),
  "*whence": alternate("GuestFileWhence", {
    num: int,
    str: enumType("QGASeek", ["set", "cur", "end"]),
  }),
});

function validationError(json: string): string {
  try {
    validateArguments(parse(json) as Map<string, JsonValue>, ARGS);
  } catch (e) {
    return (e as Error).message;
  }
  return "(accepted)";
}

Deno.test("argument errors use qemu's texts", () => {
  assert.equal(validationError("{}"), "Parameter 'id' is missing");
  assert.equal(
    validationError('{"id": "1"}'),
    "Invalid parameter type for 'id', expected: integer",
  );
  assert.equal(
    validationError('{"id": 9223372036854775808}'),
    "Invalid parameter type for 'id', expected: integer",
  );
  assert.equal(
    validationError('{"id": 1, "reset": 1}'),
    "Invalid parameter type for 'reset', expected: boolean",
  );
  assert.equal(
    validationError('{"id": 1, "mode": null}'),
    "Invalid parameter type for 'mode', expected: string",
  );
  assert.equal(
    validationError('{"id": 1, "arg": ["a", 2]}'),
    "Invalid parameter type for 'arg[1]', expected: string",
  );
  assert.equal(
    validationError('{"id": 1, "whence": "foo"}'),
    "Parameter 'whence' does not accept value 'foo'",
  );
  assert.equal(
    validationError('{"id": 1, "whence": null}'),
    "Invalid parameter type for 'whence', expected: GuestFileWhence",
  );
  assert.equal(validationError('{"id": 1, "foo": 42}'), "Parameter 'foo' is unexpected");
  // declared members first: a bad declared member beats an unexpected one
  assert.equal(
    validationError('{"foo": 42, "id": "x"}'),
    "Invalid parameter type for 'id', expected: integer",
  );
  assert.equal(validationError('{"id": -9223372036854775808}'), "(accepted)");
});

// ---------------------------------------------------------------- reply writer (§1.4)

Deno.test("strings are escaped as qemu's writer does (upper-case \\uXXXX, / untouched)", () => {
  assert.equal(quoteString("é😀~\x7f"), '"\\u00E9\\uD83D\\uDE00~\\u007F"');
  assert.equal(quoteString('"\\\b\f\n\r\t/'), '"\\"\\\\\\b\\f\\n\\r\\t/"');
  assert.equal(quoteString("\x01"), '"\\u0001"');
});

Deno.test("doubles are printed with %.17g", () => {
  assert.equal(formatDouble(0.1), "0.10000000000000001");
  assert.equal(formatDouble(1.5), "1.5");
  assert.equal(formatDouble(-1.0e-3), "-0.001");
  assert.equal(formatDouble(18446744073709551616), "1.8446744073709552e+19");
  assert.equal(formatDouble(1735862400), "1735862400");
  assert.equal(formatDouble(Infinity), "inf");
});

Deno.test("members come out in QDict hash order, not insertion order", () => {
  const t = struct("GuestFileRead", { count: int, "buf-b64": str, eof: bool });
  assert.equal(
    successReply({ count: 5, "buf-b64": "aGVsbG8=", eof: false }, t, undefined),
    '{"return": {"count": 5, "buf-b64": "aGVsbG8=", "eof": false}}',
  );
  assert.equal(successReply({}, undefined, "i"), '{"return": {}, "id": "i"}');
  assert.equal(
    errorReply("GenericError", "x", 7),
    '{"id": 7, "error": {"class": "GenericError", "desc": "x"}}',
  );
});
