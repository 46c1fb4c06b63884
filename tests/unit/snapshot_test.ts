/**
 * One helper round trip per guest-get-fsinfo and guest-network-get-interfaces: the
 * helper's FsSnapshot (helper/fs_snapshot.ts) answers each read as the single operation
 * does and reuses the answers for at most 10 s; the agent's snapshot view
 * (system/snapshot.ts) builds the same reply as single calls and names the reads it made;
 * the network snapshot reuses a link's ifindex and MAC text for at most 10 s; and on this
 * machine, through the real helper, both paths give the same guest-get-fsinfo.
 *
 * Run: deno test -A tests/unit/snapshot_test.ts
 */

import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import {
  FsSnapshotter,
  MAX_SNAPSHOT_BYTES,
  MAX_SNAPSHOT_READS,
  READS_TTL_MS,
  type SnapshotRead,
  statfsPoints,
} from "../../helper/fs_snapshot.ts";
import { LINK_TTL_MS, LinkCache, netSnapshot, type NetSource } from "../../helper/net.ts";
import { Ops } from "../../helper/ops.ts";
import { FixtureSystem } from "../../system/fixture.ts";
import { type SysDirEntry, type SystemAccess } from "../../system/mod.ts";
import { snapshotVia } from "../../system/snapshot.ts";
import { startHelper } from "../../system/helper_client.ts";
import { createSystemAccess } from "../../system/real.ts";
import { getFsinfo } from "../../commands/filesystems.ts";
import { SPAWN_VIA_SHELL } from "../helpers/helper_spawn.ts";

const ROOT = new URL("../fixtures/sysfs/vm-virtio/", import.meta.url).pathname;
const LAUNCHER = fromFileUrl(new URL("../../helper/qga-helper", import.meta.url));

function captured(): FixtureSystem {
  const order: Record<string, string[]> = JSON.parse(
    Deno.readTextFileSync(`${ROOT}readdir_order.json`),
  );
  const stat = JSON.parse(Deno.readTextFileSync(`${ROOT}statfs.json`));
  return new (class extends FixtureSystem {
    override async readDir(path: string): Promise<SysDirEntry[]> {
      const entries = await super.readDir(path);
      const names = order[path.replace(/(.)\/+$/, "$1")] ?? order[await this.realPath(path)];
      if (!names) return entries;
      return [...entries].sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name));
    }
  })(ROOT, { statfs: stat });
}

/** `base` taking its snapshot in one call (as the helper does), every call counted. */
function counted(base: SystemAccess): { sys: SystemAccess; calls: string[] } {
  const calls: string[] = [];
  const sys = new Proxy(base, {
    get(target, prop: keyof SystemAccess) {
      if (prop === "fsSnapshot") {
        return (reads: SnapshotRead[]) => {
          calls.push(`fsSnapshot ${reads.length}`);
          return snapshotVia(target, reads);
        };
      }
      const f = (target[prop] as (...a: unknown[]) => unknown).bind(target);
      return (...a: unknown[]) => {
        calls.push(`${prop} ${a[0]}`);
        return f(...a);
      };
    },
  });
  return { sys, calls };
}

Deno.test("mount points for statvfs: block devices and btrfs, escapes decoded, no duplicates", () => {
  const text = [
    "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw",
    "23 22 0:21 / /proc rw - proc proc rw",
    "24 22 0:35 / /srv/pool rw - btrfs /dev/vdb rw",
    "25 22 254:2 / /mnt/with\\040space rw - ext4 /dev/vdc rw",
    "26 22 254:2 / /mnt/with\\040space rw - ext4 /dev/vdc rw",
    "27 22 0:50 / /net rw - nfs4 srv:/x rw",
    "",
  ].join("\n");
  assert.deepEqual(statfsPoints(text), ["/", "/srv/pool", "/mnt/with space"]);
});

Deno.test("the helper's snapshot answers each read as the single operation, refusals included", async () => {
  const ops = new Ops();
  const reads: SnapshotRead[] = [
    ["read", "/proc/loadavg"],
    ["readdir", "/sys/class"],
    ["realpath", "/sys/class/net/lo"],
    ["read", "/etc/shadow"],
    ["readlink", "/sys/class/net/lo"],
  ];
  const snap = await new FsSnapshotter(ops).take({ reads });
  assert.ok("ok" in snap.mountinfo);
  assert.equal(snap.mountinfo.ok, Deno.readTextFileSync("/proc/self/mountinfo"));
  assert.deepEqual(snap.statfs.map(([dir]) => dir), statfsPoints(snap.mountinfo.ok));
  assert.equal(snap.reads.length, reads.length);
  const [loadavg, classes, real, shadow, link] = snap.reads as Record<string, unknown>[];
  assert.match(atob(loadavg!.ok as string), /^\d+\.\d+ /);
  assert.deepEqual(
    (classes!.ok as SysDirEntry[]).map((e) => e.name).sort(),
    (await ops.readDir("/sys/class")).map((e) => e.name).sort(),
  );
  assert.equal(real!.ok, await ops.realPath("/sys/class/net/lo"));
  assert.deepEqual(shadow!.error, {
    code: "EPERM",
    message: 'helper refused read of "/etc/shadow": not in the allowlist',
    refused: true,
  });
  assert.equal(link!.ok, await ops.readLink("/sys/class/net/lo"));
});

Deno.test("the helper reuses its answers for at most 10 s, and only for the same list and mountinfo", async () => {
  const snapper = new FsSnapshotter(new Ops());
  const req = { reads: [["read", "/proc/uptime"]] };
  const first = await snapper.take(req, 1_000_000);
  const again = await snapper.take(req, 1_000_000 + READS_TTL_MS);
  assert.equal(again.generation, first.generation);
  assert.deepEqual(again.reads, first.reads);
  const later = await snapper.take(req, 1_000_001 + READS_TTL_MS);
  assert.notEqual(later.generation, first.generation);
  const other = await snapper.take(
    { reads: [["read", "/proc/loadavg"]] },
    1_000_001 + READS_TTL_MS,
  );
  assert.notEqual(other.generation, later.generation);
  const back = await snapper.take(req, 1_000_000);
  assert.notEqual(back.generation, other.generation, "a clock that went back reads afresh");
});

Deno.test("the helper refuses a malformed or oversized list of reads", async () => {
  const snapper = new FsSnapshotter(new Ops());
  for (
    const req of [
      null,
      { reads: "x" },
      { reads: [["write", "/sys/power/state"]] },
      { reads: [["read", 7]] },
      { reads: Array.from({ length: MAX_SNAPSHOT_READS + 1 }, () => ["read", "/proc/stat"]) },
    ]
  ) {
    await assert.rejects(snapper.take(req), { code: "EINVAL", refused: true });
  }
});

Deno.test("the helper's answers stop at the snapshot budget, the rest answered E2BIG", async () => {
  const reads = Array.from(
    { length: MAX_SNAPSHOT_READS },
    (): SnapshotRead => ["read", "/proc/self/mountinfo"],
  );
  const snap = await new FsSnapshotter(new Ops()).take({ reads });
  const sizes = snap.reads.map((a) => JSON.stringify(a).length);
  const full = snap.reads.findIndex((a) => "error" in a);
  const one = sizes[0]!;
  assert.ok("ok" in snap.reads[0]!);
  if (one * MAX_SNAPSHOT_READS > MAX_SNAPSHOT_BYTES + one) {
    assert.ok(full > 0, "no read was cut off");
  }
  if (full > 0) {
    assert.ok(snap.reads.slice(full).every((a) => "error" in a && a.error.code === "E2BIG"));
    const kept = sizes.slice(0, full).reduce((n, x) => n + x, 0);
    assert.ok(kept - sizes[full - 1]! <= MAX_SNAPSHOT_BYTES, `${kept} bytes kept`);
  }
});

Deno.test("guest-get-fsinfo from snapshots equals the single-call reply, and the second call asks once", async () => {
  const plain = await getFsinfo(captured());
  const { sys, calls } = counted(captured());
  assert.deepEqual(await getFsinfo(sys), plain);
  assert.equal(calls[0], "fsSnapshot 0");
  const live = calls.filter((c) => c.startsWith("realPath /sys") || c.startsWith("readFile /sys"));
  assert.ok(live.length > 0, `the first call walks sysfs itself: ${calls}`);
  calls.length = 0;
  assert.deepEqual(await getFsinfo(sys), plain);
  const special = calls.filter((c) => / \/(proc|sys|dev)\//.test(c));
  assert.deepEqual(special, [], `the second call reads /proc and /sys only through the snapshot`);
  assert.match(calls[0]!, /^fsSnapshot [1-9]/);
});

Deno.test("the fsinfo topology is reused only while the snapshot's answers are, and only after a complete list", async () => {
  const base = captured();
  let walks = 0;
  let generation = "g1";
  const sys = new Proxy(base, {
    get(target, prop: keyof SystemAccess) {
      if (prop === "fsSnapshot") {
        return async (reads: SnapshotRead[]) => {
          const snap = await snapshotVia(target, reads);
          // An answer the walk takes counts as walking.
          const counted = snap.reads.map((a) =>
            "ok" in a
              ? {
                get ok() {
                  walks++;
                  return a.ok;
                },
              }
              : a
          );
          return { ...snap, reads: counted, generation };
        };
      }
      const f = (target[prop] as (...a: unknown[]) => unknown).bind(target);
      if (prop !== "realPath") return f;
      return (p: string) => {
        if (p.startsWith("/sys/dev/block/")) walks++;
        return f(p);
      };
    },
  });
  const plain = await getFsinfo(captured());
  for (const expect of [1, 1, 0, 0]) {
    walks = 0;
    assert.deepEqual(await getFsinfo(sys), plain);
    // 1st: a walk of its own; 2nd: the list was incomplete before; then reused.
    assert.equal(walks > 0 ? 1 : 0, expect);
  }
  generation = "g2";
  walks = 0;
  assert.deepEqual(await getFsinfo(sys), plain);
  assert.ok(walks > 0, "new answers, a new walk");
});

Deno.test("the network snapshot reuses a link's ifindex and MAC for at most 10 s, and forgets gone links", async () => {
  let reads = 0;
  let names = ["lo", "eth0"];
  const source: NetSource = {
    readDir: () => Promise.resolve(names),
    readText: (path) => {
      reads++;
      if (path === "/proc/net/dev") return Promise.resolve("");
      return Promise.resolve(path.endsWith("ifindex") ? "2\n" : "52:54:00:12:34:56\n");
    },
    addresses: () => [],
  };
  const cache = new LinkCache();
  const t0 = 5_000_000;
  const first = await netSnapshot(source, cache, t0);
  assert.equal(reads, 5);
  reads = 0;
  assert.deepEqual(await netSnapshot(source, cache, t0 + LINK_TTL_MS), first);
  assert.equal(reads, 1, "only /proc/net/dev is read again");
  reads = 0;
  await netSnapshot(source, cache, t0 + LINK_TTL_MS + 1);
  assert.equal(reads, 5);
  names = ["eth0"];
  await netSnapshot(source, cache, t0 + LINK_TTL_MS + 2);
  assert.deepEqual([...cache.links.keys()], ["eth0"]);
});

Deno.test("the network snapshot lists /sys/class/net again only when /proc/net/dev names other interfaces", async () => {
  let listings = 0;
  let sysNames = ["lo", "eth0"];
  let devNames = ["lo", "eth0"];
  const source: NetSource = {
    readDir: () => {
      listings++;
      return Promise.resolve(sysNames);
    },
    readText: (path) =>
      Promise.resolve(
        path === "/proc/net/dev"
          ? "Inter-|   Receive\n face |bytes\n" + devNames.map((n) => `  ${n}: 1 2\n`).join("")
          : "1\n",
      ),
    addresses: () => [],
  };
  const cache = new LinkCache();
  const names = async () => (await netSnapshot(source, cache, 1)).links?.map((l) => l.name);
  assert.deepEqual(await names(), ["lo", "eth0"]);
  assert.deepEqual(await names(), ["lo", "eth0"]);
  assert.equal(listings, 1);
  sysNames = devNames = ["lo", "eth0", "eth1"];
  assert.deepEqual(await names(), ["lo", "eth0", "eth1"]);
  assert.equal(listings, 2);
  // Another namespace's sysfs: the lists differ, so it is listed at every snapshot.
  sysNames = ["lo", "veth9"];
  assert.deepEqual(await names(), ["lo", "eth0", "eth1"], "the kept listing is still valid");
  cache.listing = undefined;
  assert.deepEqual(await names(), ["lo", "veth9"]);
  assert.deepEqual(await names(), ["lo", "veth9"]);
  assert.equal(listings, 4);
});

Deno.test("through the real helper, guest-get-fsinfo from one snapshot equals the single-call reply", async () => {
  const helper = await startHelper(LAUNCHER, undefined, { spawnVia: SPAWN_VIA_SHELL });
  try {
    const real = createSystemAccess(helper);
    const single = new Proxy(real, {
      get(target, prop: keyof SystemAccess) {
        if (prop === "fsSnapshot") return () => Promise.reject(new Error("no snapshot"));
        return (target[prop] as (...a: unknown[]) => unknown).bind(target);
      },
    });
    // Other work on the machine moves the used and free figures between calls.
    const steady = (list: Awaited<ReturnType<typeof getFsinfo>>) =>
      list.map(({ "used-bytes": used, "total-bytes": total, ...rest }) => ({
        ...rest,
        sized: [typeof used, typeof total],
      }));
    const before = helper.launches;
    const expected = steady(await getFsinfo(single));
    await getFsinfo(real);
    assert.deepEqual(steady(await getFsinfo(real)), expected);
    assert.equal(helper.launches, before);
  } finally {
    await helper.close();
  }
});
