/**
 * The first helper's Init is sent before the agent reads any host input (agent/run.ts):
 * the settings the first helper records, and every later helper takes, come from an agent
 * no host byte has reached (docs/security.md, "Init is fixed by the agent's first
 * helper"). runAgent runs in a child process (its shutdown ends the process) with a fake
 * helper that reports its Init as sent only after 300 ms, and a transport whose connection
 * says when it is first read. The child runs in a network namespace of its own
 * (`unshare -n`) so the agent's hold on 127.0.0.1:9229 takes nothing from the machine.
 * Needs root (unshare).
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { runProbeInNetns } from "../helpers/netns_probe.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

const PROBE = `
import { runAgent } from ${JSON.stringify(`${REPO}/agent/run.ts`)};
import { COMMANDS } from ${JSON.stringify(`${REPO}/commands/mod.ts`)};
import { defaultOptions } from ${JSON.stringify(`${REPO}/config/options.ts`)};
import { fixedEnvironment } from ${JSON.stringify(`${REPO}/system/environment.ts`)};
import { createSystemAccess } from ${JSON.stringify(`${REPO}/system/real.ts`)};
const say = (s: string) => Deno.stdout.writeSync(new TextEncoder().encode(s + "\\n"));
const dir = Deno.args[0]!;
let served = false;
await runAgent({
  options: defaultOptions({ method: "unix-listen", path: dir + "/sock", statedir: dir }),
  commands: COMMANDS,
  version: "test",
  environment: fixedEnvironment({}),
  startHelper: (_path, _init, hooks) => {
    say("helper spawned");
    return new Promise((_resolve, reject) =>
      setTimeout(() => {
        say("init sent");
        hooks?.onInitSent?.();
        setTimeout(() => reject(new Error("no helper in this test")), 100);
      }, 300)
    );
  },
  createSystem: createSystemAccess,
  openTransport: () => Promise.resolve({
    accept: () => {
      if (served) return new Promise(() => {});
      served = true;
      return Promise.resolve({
        kind: "socket",
        read: () => {
          say("host read");
          setTimeout(() => Deno.exit(0), 50);
          return new Promise(() => {});
        },
        write: () => Promise.resolve(),
        close: () => {},
      });
    },
    close: () => {},
  }),
});
`;

Deno.test("the agent reads no host input before its first helper's Init is sent", async () => {
  const { code, stdout, stderr } = await runProbeInNetns(PROBE, "qga-init-order-");
  assert.equal(code, 0, stderr);
  assert.deepEqual(stdout.trim().split("\n"), ["helper spawned", "init sent", "host read"]);
});
