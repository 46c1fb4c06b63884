/**
 * The state directory (agent/state.ts, qga-reference.md §3.3): qemu-ga's `qga.state`
 * file keeps the next guest-file handle across restarts, rewritten on every allocation.
 */

import assert from "node:assert/strict";
import { StateDir } from "../../agent/state.ts";

async function inTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "qga-state-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("handles start at 1000 and each allocation commits the next one to qga.state", () =>
  inTempDir((dir) => {
    const s = new StateDir(dir);
    s.load(true);
    assert.equal(Deno.readTextFileSync(`${dir}/qga.state`), "[global]\nfd_counter=1000\n");
    assert.equal(s.allocate(), 1000n);
    assert.equal(s.allocate(), 1001n);
    assert.equal(Deno.readTextFileSync(`${dir}/qga.state`), "[global]\nfd_counter=1002\n");
    // nothing but the state file is left behind (test-qga removes exactly its files)
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["qga.state"]);
  }));

Deno.test("a restarted agent continues from the stored counter", () =>
  inTempDir((dir) => {
    Deno.writeTextFileSync(`${dir}/qga.state`, "[global]\nfd_counter=4242\n");
    const s = new StateDir(dir);
    s.load(true);
    assert.equal(s.allocate(), 4242n);
    const again = new StateDir(dir);
    again.load(true);
    assert.equal(again.allocate(), 4243n);
  }));

Deno.test("the frozen marker is created and removed", () =>
  inTempDir((dir) => {
    const s = new StateDir(dir);
    assert.equal(s.markerExists(), false);
    s.setMarker(true);
    assert.equal(s.markerExists(), true);
    s.setMarker(false);
    assert.equal(s.markerExists(), false);
  }));
