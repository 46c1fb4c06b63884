/**
 * config/path.ts against node:path and node:url on the same inputs.
 *
 * @module
 */

import assert from "node:assert/strict";
import * as np from "node:path";
import * as nu from "node:url";
import { dirname, fileURLToPath, join, normalize, resolve } from "../../config/path.ts";

const PATHS = [
  "",
  ".",
  "..",
  "/",
  "//",
  "///a//b/",
  "/a/b/c",
  "/a/b/c/",
  "a",
  "a/",
  "a/b",
  "./a",
  "../a/b",
  "a/../..",
  "/../a",
  "/a/./b/../c",
  "/a/b/..",
  "a//b//",
  "/usr/bin/",
  "..a/b",
  "a/.../b",
  "/proc/self/../1",
];

Deno.test("normalize and dirname agree with node:path on every sample", () => {
  for (const p of PATHS) {
    assert.equal(normalize(p), np.posix.normalize(p), `normalize(${JSON.stringify(p)})`);
    assert.equal(dirname(p), np.posix.dirname(p), `dirname(${JSON.stringify(p)})`);
  }
});

Deno.test("join and resolve agree with node:path on pairs of samples", () => {
  for (const a of PATHS) {
    for (const b of PATHS) {
      assert.equal(join(a, b), np.posix.join(a, b), `join(${JSON.stringify([a, b])})`);
      assert.equal(resolve(a, b), np.posix.resolve(a, b), `resolve(${JSON.stringify([a, b])})`);
    }
    assert.equal(resolve(a), np.posix.resolve(a), `resolve(${JSON.stringify(a)})`);
  }
  assert.equal(join("/srv", "helper", "qga-helper"), "/srv/helper/qga-helper");
  assert.equal(resolve(), np.posix.resolve());
});

Deno.test("fileURLToPath agrees with node:url, and refuses what it refuses", () => {
  for (
    const u of ["file:///a/b.ts", "file:///a%20b/c%C3%A9.ts", "file://localhost/x", "file:///"]
  ) {
    assert.equal(fileURLToPath(u), nu.fileURLToPath(u), u);
    assert.equal(fileURLToPath(new URL(u)), nu.fileURLToPath(u), u);
  }
  for (const u of ["http://x/a", "file:///a%2Fb", "file://host/a"]) {
    assert.throws(() => fileURLToPath(u), TypeError, u);
    assert.throws(() => nu.fileURLToPath(u), u);
  }
});
