/**
 * The agent serves before its helper has started (agent/run.ts starts the helper in the
 * background): until `ready` settles only guest-sync and guest-sync-delimited are
 * answered; every other request waits, in order, and guest-info then reports what the
 * helper's start decided (Agent.attach).
 *
 * @module
 */

import assert from "node:assert/strict";
import { Agent, ANSWERED_BEFORE_READY } from "../../agent/agent.ts";
import { needsOf } from "../../agent/permissions.ts";
import { EARLY_COMMANDS, LATE_COMMANDS } from "../../main.ts";
import { AgentLog } from "../../agent/log.ts";
import { COMMANDS } from "../../commands/mod.ts";
import { defaultOptions } from "../../config/options.ts";
import { createSystemAccess } from "../../system/real.ts";
import type { Connection } from "../../transport/connection.ts";
import type { Command } from "../../commands/types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A connection that records the replies written to it. */
function recorder(): Connection & { replies: string[] } {
  const replies: string[] = [];
  return {
    kind: "socket",
    replies,
    read: () => Promise.resolve(null),
    write(p: Uint8Array) {
      replies.push(dec.decode(p));
      return Promise.resolve();
    },
    close() {},
  };
}

function agentWaitingFor(
  ready: () => Promise<void>,
  statedir: string,
  commands: readonly Command[] = COMMANDS,
): Agent {
  return new Agent({
    options: defaultOptions({ method: "unix-listen", path: `${statedir}/sock`, statedir }),
    commands,
    sys: createSystemAccess(undefined),
    log: new AgentLog({ verbose: false, json: false, sink: { writeSync: (p) => p.length } }),
    version: "test",
    sandboxDisabled: new Map(),
    ready,
  });
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("guest-sync is answered while the helper starts; guest-info waits and sees the outcome", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let open!: () => void;
    const ready = new Promise<void>((r) => (open = r));
    let calls = 0;
    const agent = agentWaitingFor(() => {
      calls++;
      return ready;
    }, dir);
    const conn = recorder();
    await agent.feed(enc.encode('{"execute":"guest-sync","arguments":{"id":7}}'), conn);
    assert.deepEqual(conn.replies, ['{"return": 7}\n']);
    assert.equal(calls, 1, "the first reply did not start the helper");

    const info = agent.feed(enc.encode('{"execute":"guest-info"}'), conn);
    await tick(100);
    assert.equal(conn.replies.length, 1, "guest-info was answered before the helper started");
    agent.attach(
      createSystemAccess(undefined),
      new Map([["guest-get-fsinfo", "the privileged helper is not available"]]),
    );
    open();
    await info;
    assert.equal(conn.replies.length, 2);
    const cmds = JSON.parse(conn.replies[1]!).return.supported_commands as {
      name: string;
      enabled: boolean;
    }[];
    assert.equal(cmds.find((c) => c.name === "guest-get-fsinfo")?.enabled, false);
    assert.equal(cmds.find((c) => c.name === "guest-ping")?.enabled, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a guest-sync queued behind a waiting request keeps its place", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let open!: () => void;
    const ready = new Promise<void>((r) => (open = r));
    const agent = agentWaitingFor(() => ready, dir);
    const conn = recorder();
    const fed = agent.feed(
      enc.encode('{"execute":"guest-ping"}{"execute":"guest-sync","arguments":{"id":3}}'),
      conn,
    );
    await tick(100);
    assert.deepEqual(conn.replies, [], "answered out of order or before ready");
    open();
    await fed;
    assert.deepEqual(conn.replies, ['{"return": {}}\n', '{"return": 3}\n']);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an agent without a pending start answers everything at once", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const agent = agentWaitingFor(() => Promise.resolve(), dir);
    const conn = recorder();
    await agent.feed(enc.encode('{"execute":"guest-ping"}'), conn);
    assert.deepEqual(conn.replies, ['{"return": {}}\n']);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts starts with guest-sync(-delimited) only; the rest waits for the whole table", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let open!: () => void;
    const ready = new Promise<void>((r) => (open = r));
    const agent = agentWaitingFor(() => ready, dir, EARLY_COMMANDS);
    const conn = recorder();
    await agent.feed(
      enc.encode('{"execute":"guest-sync-delimited","arguments":{"id":1}}'),
      conn,
    );
    await agent.feed(enc.encode('{"execute":"guest-sync","arguments":{"id":2}}'), conn);
    assert.deepEqual(
      conn.replies,
      ['\ufffd{"return": 1}\n', '{"return": 2}\n'],
      "0xFF, then the reply",
    );
    const later = agent.feed(
      enc.encode('{"execute":"guest-ping"}{"execute":"guest-nonesuch"}{"execute":"guest-info"}'),
      conn,
    );
    await tick(100);
    assert.equal(conn.replies.length, 2, "answered before the table was loaded");
    agent.attach(createSystemAccess(undefined), new Map(), await LATE_COMMANDS.load());
    open();
    await later;
    assert.equal(conn.replies[2], '{"return": {}}\n');
    assert.match(conn.replies[3]!, /"class": "CommandNotFound"/);
    const names = (JSON.parse(conn.replies[4]!).return.supported_commands as { name: string }[])
      .map((c) => c.name);
    assert.deepEqual(names.sort(), COMMANDS.map((c) => c.name).sort());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts's start-up table: the commands answered before ready; the helper it needs", async () => {
  assert.deepEqual(new Set(EARLY_COMMANDS.map((c) => c.name)), ANSWERED_BEFORE_READY);
  for (const c of EARLY_COMMANDS) assert.ok(COMMANDS.includes(c), `${c.name} is not in COMMANDS`);
  assert.equal(await LATE_COMMANDS.load(), COMMANDS);
  const options = defaultOptions({});
  assert.equal(
    LATE_COMMANDS.needHelper,
    COMMANDS.some((c) => (needsOf(c, options).helper?.length ?? 0) > 0),
  );
});
