/**
 * docs/security.md lists everything that runs with --allow-all, with line counts
 * (issue 13): every file of helper/ and the bundles' launcher, each count current,
 * and the size it states for the allowlisted core (launcher, protocol, ops).
 */

import assert from "node:assert/strict";

const REPO = new URL("../../", import.meta.url).pathname;
const lines = (path: string) =>
  Deno.readTextFileSync(`${REPO}${path}`).split("").filter((c) => c === "\n").length;

function privilegedTable(): Map<string, number> {
  const doc = Deno.readTextFileSync(`${REPO}docs/security.md`);
  const at = doc.indexOf("## Everything that runs with `--allow-all`");
  assert.ok(at >= 0, "the section is missing");
  const section = doc.slice(at, doc.indexOf("\n## ", at + 1));
  const rows = new Map<string, number>();
  for (const m of section.matchAll(/^\| `([^`]+)` +\| +(\d+) \|/gm)) rows.set(m[1]!, Number(m[2]));
  return rows;
}

Deno.test("docs/security.md lists every privileged file with its current line count", () => {
  const rows = privilegedTable();
  const helper = Array.from(Deno.readDirSync(`${REPO}helper`), (e) => `helper/${e.name}`);
  for (const f of [...helper, "packaging/qga-helper.sh"]) {
    assert.ok(rows.has(f), `${f} is not listed`);
  }
  for (const [f, n] of rows) assert.equal(n, lines(f), `${f}: the table says ${n} lines`);
});

Deno.test("docs/security.md states the size of the allowlisted core correctly", () => {
  const doc = Deno.readTextFileSync(`${REPO}docs/security.md`);
  const m = /The allowlisted core \(launcher, protocol, ops\) is (\d+) lines/.exec(doc);
  assert.ok(m, "the sentence is missing");
  const core = ["helper/qga-helper", "helper/protocol.ts", "helper/ops.ts"];
  assert.equal(Number(m[1]), core.reduce((n, f) => n + lines(f), 0));
});
