import assert from "node:assert/strict";
import { AgentLog } from "../../agent/log.ts";
import { auditSummary } from "../../agent/agent.ts";

function capture(json: boolean) {
  const lines: string[] = [];
  const log = new AgentLog({
    verbose: false,
    json,
    sink: { writeSync: (p) => (lines.push(new TextDecoder().decode(p)), p.length) },
    nowMicros: () => 1795780658936800n,
  });
  return { log, lines };
}

Deno.test("audit records with nested bigints are written in both formats", () => {
  for (const json of [false, true]) {
    const { log, lines } = capture(json);
    const args = auditSummary({ vcpus: [{ "logical-id": 1n, online: false }], big: 2n ** 64n });
    log.audit("guest-set-vcpus", { args, result: "ok", ms: 1 });
    assert.equal(lines.length, 0, "audit lines are batched");
    log.flush();
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /"logical-id":1/);
    assert.match(lines[0]!, /"big":"18446744073709551616"/);
  }
});

Deno.test("a batched audit line is written before the next other line, in order", () => {
  const { log, lines } = capture(false);
  log.audit("guest-ping", { result: "ok" });
  log.error("after");
  assert.deepEqual(lines, [
    '1795780658.936800: audit: guest-ping {"result":"ok"}\n',
    "1795780658.936800: critical: after\n",
  ]);
});

Deno.test("text lines use qemu-ga's format and only errors show without -v", () => {
  const { log, lines } = capture(false);
  log.info("hidden");
  log.warn("hidden too");
  log.error("shown");
  assert.deepEqual(lines, ["1795780658.936800: critical: shown\n"]);
});

Deno.test("sensitive arguments are withheld from the audit summary", () => {
  const s = auditSummary({ username: "root", password: "c2VjcmV0" }, ["password"]);
  assert.deepEqual(s, { username: "root", password: "<8 chars withheld>" });
});

Deno.test("while frozen nothing is written, and the held lines follow the thaw", () => {
  const { log, lines } = capture(false);
  log.hold();
  log.error("during freeze");
  assert.equal(lines.length, 0);
  log.release();
  assert.deepEqual(lines, ["1795780658.936800: critical: during freeze\n"]);
});
