/**
 * The enabled/disabled registry as the host sees it: the reply dispatch gives for a
 * command that is frozen, blocked, not allowed or not granted by the sandbox, with
 * qemu-ga 7.2's texts byte for byte (qga-reference.md §1.3 item 5, §1.9-1.10).
 */

import assert from "node:assert/strict";
import { COMMANDS } from "../../commands/mod.ts";
import { dispatch } from "../../agent/dispatch.ts";
import { Registry } from "../../agent/registry.ts";
import { JsonStream } from "../../protocol/json_stream.ts";
import type { JsonValue } from "../../protocol/value.ts";
import { fakeContext } from "../helpers/fake_context.ts";

const enc = new TextEncoder();

/** The reply line (without newline) dispatch gives for a request text. */
async function reply(registry: Registry, request: string): Promise<string | undefined> {
  let value: JsonValue | undefined;
  new JsonStream((e) => (value = e.value)).feed(enc.encode(request));
  assert.ok(value !== undefined, request);
  const out = await dispatch(value, registry, fakeContext());
  return out.reply === undefined ? undefined : [out.reply].flat().join("");
}

function disabled(name: string, reason?: string): string {
  return `{"error": {"class": "CommandNotFound", "desc": "Command ${name} has been disabled${
    reason === undefined ? "" : `: ${reason}`
  }"}}`;
}

const exec = (name: string) => `{"execute":"${name}"}`;

/** qemu-ga's ga_freeze_allowlist. */
const FREEZE_SAFE = [
  "guest-ping",
  "guest-info",
  "guest-sync",
  "guest-sync-delimited",
  "guest-fsfreeze-status",
  "guest-fsfreeze-thaw",
];

Deno.test("while frozen every other command is disabled with qemu-ga's frozen-state reason", async () => {
  const r = new Registry(COMMANDS, { allow: [], block: [] });
  r.setFrozen(true);
  for (const name of ["guest-get-time", "guest-file-open", "guest-exec", "guest-shutdown"]) {
    assert.equal(await reply(r, exec(name)), disabled(name, "the agent is in frozen state"));
  }
  assert.equal(await reply(r, exec("guest-ping")), `{"return": {}}`);
  assert.deepEqual(
    r.entries().filter((e) => e.enabled).map((e) => e.name).sort(),
    [...FREEZE_SAFE].sort(),
  );
  r.setFrozen(false);
  assert.equal(r.disabledReason("guest-get-time"), undefined);
  assert.ok(r.entries().every((e) => e.enabled));
});

Deno.test("block and allow lists give no reason, and freezing leaves their text alone", async () => {
  const r = new Registry(COMMANDS, {
    allow: ["guest-ping", "guest-get-time", "guest-info", "guest-get-timezone"],
    block: ["guest-get-time", "guest-ping"],
  });
  // -b wins over -a; a command left out of -a is disabled too; neither gives a reason.
  assert.equal(await reply(r, exec("guest-ping")), disabled("guest-ping"));
  assert.equal(await reply(r, exec("guest-get-time")), disabled("guest-get-time"));
  assert.equal(await reply(r, exec("guest-get-host-name")), disabled("guest-get-host-name"));
  assert.notEqual(await reply(r, exec("guest-info")), disabled("guest-info"));
  r.setFrozen(true);
  // qemu-ga 7.2 disables only the commands still enabled when it freezes.
  assert.equal(await reply(r, exec("guest-get-time")), disabled("guest-get-time"));
  assert.equal(await reply(r, exec("guest-get-host-name")), disabled("guest-get-host-name"));
  assert.equal(await reply(r, exec("guest-ping")), disabled("guest-ping"));
  assert.equal(
    await reply(r, exec("guest-get-timezone")),
    disabled("guest-get-timezone", "the agent is in frozen state"),
  );
  assert.deepEqual(r.entries().filter((e) => e.enabled).map((e) => e.name), ["guest-info"]);
});

Deno.test("a command the sandbox cannot serve is disabled with the sandbox's reason", async () => {
  const why = "the agent's sandbox does not grant --allow-run=/usr/bin/date";
  const r = new Registry(COMMANDS, {
    allow: [],
    block: ["guest-get-users"],
    sandbox: new Map([["guest-set-time", why], ["guest-get-users", "unused"]]),
  });
  assert.equal(await reply(r, exec("guest-set-time")), disabled("guest-set-time", why));
  // The block list is checked first: its refusal carries no reason.
  assert.equal(await reply(r, exec("guest-get-users")), disabled("guest-get-users"));
  r.setFrozen(true);
  assert.equal(await reply(r, exec("guest-set-time")), disabled("guest-set-time", why));
  const entry = r.entries().find((e) => e.name === "guest-set-time");
  assert.equal(entry?.enabled, false);
});

Deno.test("an unknown command is not found, whatever the lists say", async () => {
  const r = new Registry(COMMANDS, { allow: ["guest-nope"], block: ["guest-nope"] });
  r.setFrozen(true);
  assert.equal(
    await reply(r, `{"execute":"guest-nope","id":1}`),
    `{"id": 1, "error": {"class": "CommandNotFound", "desc": "The command guest-nope has not been found"}}`,
  );
});
