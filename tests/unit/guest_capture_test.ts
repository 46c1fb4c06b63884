/**
 * The fixture captured in a real QEMU guest (tests/e2e_lifecycle, QGA_E2E_WRITE_FIXTURE=1):
 * a virtio-blk disk with serial QGATEST0 at PCI slot 6 and a running udevd, with
 * qemu-ga 7.2's replies recorded next to it. Our handlers read the same tree and
 * must give the same replies (sizes aside, which statvfs gives both).
 */
import assert from "node:assert/strict";
import { FixtureSystem } from "../../system/fixture.ts";
import { successReply } from "../../protocol/json_writer.ts";
import type { TypeDesc } from "../../protocol/types.ts";
import { getDisks, getFsinfo, guestGetDisks, guestGetFsinfo } from "../../commands/filesystems.ts";
import { getVcpus, guestGetVcpus } from "../../commands/vcpus.ts";

const ROOT = new URL("../fixtures/sysfs/e2e-guest/", import.meta.url).pathname;
const sys = new FixtureSystem(ROOT, {
  statfs: JSON.parse(Deno.readTextFileSync(`${ROOT}statfs.json`)),
});

function qemuReply(command: string): unknown {
  return JSON.parse(Deno.readTextFileSync(`${ROOT}qemu-ga/${command}.json`)).return;
}

/** Serializes as the agent does and parses back: what a client sees. */
function wire(type: TypeDesc | undefined, value: unknown): unknown {
  return JSON.parse(successReply(value, type, undefined)).return;
}

Deno.test("guest-get-fsinfo in the captured guest reports vda with serial QGATEST0 as qemu-ga did", async () => {
  const ours = wire(guestGetFsinfo.returns, await getFsinfo(sys)) as Record<string, unknown>[];
  const theirs = qemuReply("guest-get-fsinfo") as Record<string, unknown>[];
  const strip = (e: Record<string, unknown>) => {
    const { "used-bytes": _u, "total-bytes": _t, "total-bytes-privileged": _p, ...rest } = e;
    return rest;
  };
  assert.deepEqual(ours.map(strip), theirs.map(strip));
  const disk = (ours[0]!.disk as Record<string, unknown>[])[0]!;
  assert.equal(disk.serial, "QGATEST0");
  assert.deepEqual(disk["pci-controller"], { bus: 0, slot: 6, domain: 0, function: 0 });
});

Deno.test("guest-get-disks in the captured guest equals qemu-ga's reply", async () => {
  assert.deepEqual(wire(guestGetDisks.returns, await getDisks(sys)), qemuReply("guest-get-disks"));
});

Deno.test("guest-get-vcpus in the captured guest equals qemu-ga's reply", async () => {
  assert.deepEqual(wire(guestGetVcpus.returns, await getVcpus(sys)), qemuReply("guest-get-vcpus"));
});
