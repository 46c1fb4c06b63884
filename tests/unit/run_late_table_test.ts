/**
 * Start-up loads only part of the command table (main.ts: guest-sync and
 * guest-sync-delimited); agent/run.ts loads the rest once the first reply is written, with
 * the helper's start, before it serves any other request. runAgent runs in a child process
 * (its shutdown ends the process) with a helper that is not available, a table whose load
 * says when it starts, and a connection that reads guest-sync, then guest-info and
 * guest-get-time. The child runs in a network namespace of its own (`unshare -n`) so the
 * agent's hold on 127.0.0.1:9229 takes nothing from the machine. Needs root (unshare).
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { runProbeInNetns } from "../helpers/netns_probe.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

const PROBE = `
import { runAgent } from ${JSON.stringify(`${REPO}/agent/run.ts`)};
import { EARLY_COMMANDS } from ${JSON.stringify(`${REPO}/main.ts`)};
import { defaultOptions } from ${JSON.stringify(`${REPO}/config/options.ts`)};
import { fixedEnvironment } from ${JSON.stringify(`${REPO}/system/environment.ts`)};
import { createSystemAccess } from ${JSON.stringify(`${REPO}/system/real.ts`)};
const say = (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s + "\\n"));
const dir = Deno.args[0]!;
const input = [
  '{"execute":"guest-sync","arguments":{"id":1}}',
  '{"execute":"guest-info"}{"execute":"guest-get-time"}',
].map((s) => new TextEncoder().encode(s));
let served = false;
let replies = 0;
await runAgent({
  options: defaultOptions({ method: "unix-listen", path: dir + "/sock", statedir: dir }),
  commands: EARLY_COMMANDS,
  lateCommands: {
    load: async () => {
      say("table loading");
      return (await import(${JSON.stringify(`${REPO}/commands/mod.ts`)})).COMMANDS;
    },
    needHelper: true,
  },
  version: "test",
  environment: fixedEnvironment({}),
  startHelper: (_path, _init, hooks) => {
    say("helper spawned");
    hooks?.onInitSent?.();
    return Promise.reject(new Error("no helper in this test"));
  },
  createSystem: createSystemAccess,
  openTransport: () => Promise.resolve({
    accept: () => {
      if (served) return new Promise(() => {});
      served = true;
      return Promise.resolve({
        kind: "socket",
        read: async (p: Uint8Array) => {
          const next = input.shift();
          if (!next) return await new Promise<number | null>(() => {});
          // The next request arrives a little after the previous reply.
          await new Promise((r) => setTimeout(r, 20));
          p.set(next);
          return next.length;
        },
        write: (p: Uint8Array) => {
          const text = new TextDecoder().decode(p);
          const info = /"supported_commands": \\[(.*)\\]/.exec(text);
          if (info) say("guest-info: " + info[1]!.split("}, {").length + " commands");
          else say("reply: " + (/"return": (\\d+|\\{\\})/.exec(text)?.[0] ?? /"desc": "[^"]*"/.exec(text)?.[0] ?? text.slice(0, 60)));
          if (++replies === 3) setTimeout(() => Deno.exit(0), 10);
          return Promise.resolve();
        },
        close: () => {},
      });
    },
    close: () => {},
  }),
});
`;

Deno.test("the command table loads after the first reply, before any other request is served", async () => {
  const { code, stdout, stderr } = await runProbeInNetns(PROBE, "qga-late-table-");
  assert.equal(code, 0, stderr);
  const lines = stdout.trim().split("\n");
  assert.deepEqual(lines.slice(0, 4), [
    "helper spawned",
    'reply: "return": 1',
    "table loading",
    "guest-info: 43 commands",
  ]);
  assert.match(lines[4] ?? "", /^reply: "return": \d+$/, "guest-get-time from the loaded table");
  assert.equal(lines.length, 5);
});
