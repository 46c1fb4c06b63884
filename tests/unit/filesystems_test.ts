import assert from "node:assert/strict";
import { FixtureSystem } from "../../system/fixture.ts";
import { type SysDirEntry, SysError, type SysStatfs, type SystemAccess } from "../../system/mod.ts";
import { fakeContext } from "../helpers/fake_context.ts";
import { successReply } from "../../protocol/json_writer.ts";
import type { Command, RunResult } from "../../commands/types.ts";
import {
  FSTRIM,
  getDisks,
  getFsinfo,
  guestFstrim,
  guestGetDisks,
  guestGetDiskstats,
  guestGetFsinfo,
  parseDiskstats,
  parseFstrim,
} from "../../commands/filesystems.ts";

const ROOT = new URL("../fixtures/sysfs/vm-virtio/", import.meta.url).pathname;

/** The captured tree, listing directories in the captured kernel readdir order. */
function captured(statfs?: Record<string, SysStatfs>): FixtureSystem {
  const order: Record<string, string[]> = JSON.parse(
    Deno.readTextFileSync(`${ROOT}readdir_order.json`),
  );
  const stat = statfs ?? JSON.parse(Deno.readTextFileSync(`${ROOT}statfs.json`));
  return new (class extends FixtureSystem {
    override async readDir(path: string): Promise<SysDirEntry[]> {
      const entries = await super.readDir(path);
      const key = path.replace(/(.)\/+$/, "$1");
      const names = order[key] ?? order[await this.realPath(path)];
      if (!names) return entries;
      return [...entries].sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name));
    }
  })(ROOT, { statfs: stat });
}

/** `sys` with some methods answering differently for given paths. */
function patched(
  sys: SystemAccess,
  patch: Partial<{ [K in keyof SystemAccess]: (path: string) => unknown }>,
): SystemAccess {
  return new Proxy(sys, {
    get(target, prop: keyof SystemAccess) {
      const orig = target[prop].bind(target) as (...a: unknown[]) => unknown;
      const p = patch[prop];
      if (!p) return orig;
      return (path: string, ...rest: unknown[]) => {
        const answer = p(path);
        return answer === undefined ? orig(path, ...rest) : answer;
      };
    },
  });
}

function qemuReply(command: string): unknown {
  return JSON.parse(Deno.readTextFileSync(`${ROOT}qemu-ga/${command}.json`)).return;
}

/** Serializes as the agent does and parses back: the wire form. */
function wire(def: Command, value: unknown): unknown {
  return JSON.parse(successReply(value, def.returns, undefined)).return;
}

const enoent = () => Promise.reject(new SysError("ENOENT", "No such file or directory"));

Deno.test("guest-get-fsinfo on the captured virtio guest names, types and addresses disks as qemu-ga did", async () => {
  const ours = wire(guestGetFsinfo as never, await getFsinfo(captured())) as Record<
    string,
    unknown
  >[];
  const theirs = qemuReply("guest-get-fsinfo") as Record<string, unknown>[];
  const strip = (e: Record<string, unknown>) => {
    const { "used-bytes": _u, "total-bytes": _t, "total-bytes-privileged": _p, ...rest } = e;
    return rest;
  };
  assert.deepEqual(ours.map(strip), theirs.map(strip));
  assert.equal(ours[0]!["total-bytes"], theirs[0]!["total-bytes"]);
});

Deno.test("guest-get-fsinfo sizes follow statvfs, with the 10.2 privileged total", async () => {
  const [fs] = await getFsinfo(
    captured({ "/": { frsize: 4096, blocks: 10, bfree: 4, bavail: 3 } }),
  );
  assert.equal(fs!["used-bytes"], 6 * 4096);
  assert.equal(fs!["total-bytes"], 9 * 4096);
  assert.equal(fs!["total-bytes-privileged"], 10 * 4096);
});

Deno.test("guest-get-fsinfo leaves the sizes out when statvfs fails", async () => {
  const [fs] = await getFsinfo(captured({}));
  assert.equal(fs!.name, "vda");
  assert.ok(
    !("used-bytes" in fs!) && !("total-bytes" in fs!) && !("total-bytes-privileged" in fs!),
  );
});

Deno.test("guest-get-fsinfo names a device missing from sysfs major:minor, with no disks", async () => {
  const sys = patched(captured(), {
    realPath: (p) => (p === "/sys/dev/block/254:0" ? enoent() : undefined),
  });
  const [fs] = await getFsinfo(sys);
  assert.equal(fs!.name, "254:0");
  assert.deepEqual(fs!.disk, []);
});

Deno.test("guest-get-fsinfo fails as a whole when a device path cannot be resolved", async () => {
  const sys = patched(captured(), {
    realPath: (p) =>
      p === "/sys/dev/block/254:0"
        ? Promise.reject(new SysError("EACCES", "Permission denied"))
        : undefined,
  });
  await assert.rejects(getFsinfo(sys), {
    message: 'realpath("/sys/dev/block/254:0"): Permission denied',
  });
});

Deno.test("guest-get-fsinfo lists mounts in reverse order, one entry per device", async () => {
  const base = captured({ "/": { frsize: 4096, blocks: 10, bfree: 4, bavail: 3 } });
  const mountinfo = await base.readTextFile("/proc/self/mountinfo");
  const sys = patched(base, {
    readTextFile: (p) =>
      p === "/proc/self/mountinfo"
        ? Promise.resolve(
          mountinfo + "50 27 254:0 /srv /srv-bind rw - ext4 /dev/vda rw\n" +
            "51 27 7:0 / /mnt/loop rw - squashfs /dev/loop0 ro\n",
        )
        : undefined,
  });
  const list = await getFsinfo(sys);
  assert.deepEqual(list.map((f) => [f.mountpoint, f.name, f.type]), [
    ["/mnt/loop", "loop0", "squashfs"],
    ["/", "vda", "ext4"],
  ]);
  // A loop device is virtual: its (empty) slaves directory gives no disks.
  assert.deepEqual(list[0]!.disk, []);
});

Deno.test("guest-get-disks on the captured virtio guest equals qemu-ga's reply", async () => {
  assert.deepEqual(
    wire(guestGetDisks as never, await getDisks(captured())),
    qemuReply("guest-get-disks"),
  );
});

Deno.test("guest-get-disks reports an unreadable /sys/block with qemu-ga's text", async () => {
  const sys = patched(captured(), {
    readDir: (
      p,
    ) => (p === "/sys/block"
      ? Promise.reject(new SysError("EACCES", "Permission denied"))
      : undefined),
  });
  await assert.rejects(getDisks(sys), {
    message: 'Can\'t open directory "/sys/block": Permission denied',
  });
});

Deno.test("guest-get-disks lists partitions before their disk, depending on it", async () => {
  const base = captured();
  const part = (n: number): SysDirEntry => ({
    name: `vda${n}`,
    isFile: false,
    isDirectory: true,
    isSymlink: false,
  });
  const sys = patched(base, {
    readDir: (p) =>
      p === "/sys/block/vda" ? base.readDir(p).then((e) => [part(1), ...e, part(2)]) : undefined,
    readTextFile: (p) => {
      const m = /^\/sys\/block\/vda\/vda(\d)\/uevent$/.exec(p);
      return m
        ? Promise.resolve(`MAJOR=254\nMINOR=${m[1]}\nDEVNAME=vda${m[1]}\nDEVTYPE=partition\n`)
        : undefined;
    },
  });
  const disks = await getDisks(sys);
  assert.deepEqual(disks.map((d) => [d.name, d.partition, d.dependencies]), [
    ["/dev/vda2", true, ["/dev/vda"]],
    ["/dev/vda1", true, ["/dev/vda"]],
    ["/dev/vda", false, []],
  ]);
});

Deno.test("guest-get-disks skips zero-sized devices such as unused loop devices", async () => {
  const sys = captured();
  const names = (await getDisks(sys)).map((d) => d.name);
  for (const l of ["loop0", "loop7", "zram0"]) {
    assert.equal(await sys.readTextFile(`/sys/block/${l}/size`), "0\n");
    assert.ok(!names.includes(`/dev/${l}`));
  }
});

Deno.test("guest-get-diskstats parses the captured /proc/diskstats like qemu-ga", () => {
  const text = Deno.readTextFileSync(`${ROOT}proc/diskstats`);
  const ours = wire(guestGetDiskstats as never, parseDiskstats(text)) as { name: string }[];
  const theirs = qemuReply("guest-get-diskstats") as { name: string }[];
  assert.deepEqual(ours.map((d) => d.name), theirs.map((d) => d.name));
  // Idle devices do not move between the capture of the file and qemu-ga's reply.
  assert.deepEqual(
    ours.filter((d) => d.name.startsWith("loop")),
    theirs.filter((d) => d.name.startsWith("loop")),
  );
});

Deno.test("guest-get-diskstats reports members by the number of fields on the line", () => {
  const vda = Deno.readTextFileSync(`${ROOT}proc/diskstats`).split("\n").find((l) =>
    / vda /.test(l)
  )!;
  const fields = vda.trim().split(/\s+/);
  const keys = (n: number) =>
    Object.keys(parseDiskstats(fields.slice(0, n).join(" "))[0]?.stats ?? {}).sort();
  assert.deepEqual(parseDiskstats(fields.slice(0, 6).join(" ")), []);
  assert.deepEqual(keys(7), ["read-ios", "read-sectors", "write-ios", "write-sectors"]);
  const [old] = parseDiskstats(fields.slice(0, 7).join(" "));
  assert.equal(old!.stats["read-sectors"], Number(fields[4]));
  assert.deepEqual(keys(10), []);
  assert.equal(keys(14).length, 11);
  assert.equal(keys(18).length, 15);
  assert.equal(keys(20).length, 17);
  const [full] = parseDiskstats(vda);
  assert.equal(full!.stats["read-merges"], Number(fields[4]));
  assert.equal(full!.stats["flush-ticks"], Number(fields[19]));
});

Deno.test("guest-get-diskstats wraps the fields qemu-ga scans as unsigned int at 32 bits", () => {
  const [d] = parseDiskstats(" 254 0 vda 1 2 3 4 5 6 7 4294967297 9 10 11 12");
  assert.equal(d!.stats["write-ticks"], 1);
  assert.equal(d!.stats["read-ios"], 1);
});

Deno.test("guest-get-diskstats reports an unreadable /proc/diskstats with qemu-ga's text", async () => {
  const ctx = fakeContext({
    sys: patched(captured(), {
      readTextFile: (p) => (p === "/proc/diskstats" ? enoent() : undefined),
    }),
  });
  await assert.rejects(
    Promise.resolve(guestGetDiskstats.handler({}, ctx)),
    { message: 'open("/proc/diskstats"): No such file or directory' },
  );
});

function fstrimRun(reply: (dir: string) => [number, string]) {
  return (argv: string[]): RunResult => {
    const [code, out] = reply(argv.at(-1)!);
    return { code, signal: null, output: new TextEncoder().encode(out) };
  };
}

function withSecondMount(): SystemAccess {
  const base = captured();
  return patched(base, {
    readTextFile: (p) =>
      p === "/proc/self/mountinfo"
        ? base.readTextFile(p).then((t) => t + "60 27 254:16 / /data rw - xfs /dev/vdb rw\n")
        : undefined,
  });
}

Deno.test("guest-fstrim runs fstrim per mount and reports them in reverse mount order", async () => {
  const ctx = fakeContext({
    sys: withSecondMount(),
    run: fstrimRun((
      dir,
    ) => [0, `${dir}: 1.2 GiB (${dir === "/" ? 1288490188 : 4096} bytes) trimmed\n`]),
  });
  const reply = await guestFstrim.handler({ minimum: 65536n }, ctx);
  assert.deepEqual(reply, {
    paths: [
      { path: "/data", minimum: 65536, trimmed: 4096 },
      { path: "/", minimum: 65536, trimmed: 1288490188 },
    ],
  });
  assert.deepEqual(ctx.runs.map((r) => r.argv), [
    [FSTRIM, "-v", "-m", "65536", "/"],
    [FSTRIM, "-v", "-m", "65536", "/data"],
  ]);
  assert.deepEqual(ctx.logs.map((l) => l.msg), ["guest-fstrim called"]);
});

Deno.test("guest-fstrim maps fstrim's failures to qemu-ga's per-path errors", async () => {
  const ctx = fakeContext({
    sys: withSecondMount(),
    run: fstrimRun((dir) =>
      dir === "/"
        ? [1, "fstrim: /: the discard operation is not supported\n"]
        : [1, "fstrim: cannot open /data: No such file or directory\n"]
    ),
  });
  assert.deepEqual(await guestFstrim.handler({}, ctx), {
    paths: [
      { path: "/data", error: "failed to open: No such file or directory" },
      { path: "/", error: "trim not supported" },
    ],
  });
  assert.deepEqual(ctx.runs[0]!.argv, [FSTRIM, "-v", "-m", "0", "/"]);
});

Deno.test("guest-fstrim passes a negative minimum as the unsigned value the ioctl would get", async () => {
  const ctx = fakeContext({
    sys: captured(),
    run: fstrimRun((d) => [0, `${d}: 0 B (0 bytes) trimmed\n`]),
  });
  const reply = await guestFstrim.handler({ minimum: -1n }, ctx);
  assert.deepEqual(ctx.runs[0]!.argv.slice(2, 4), ["-m", "18446744073709551615"]);
  assert.deepEqual(reply.paths, [{ path: "/", minimum: -1, trimmed: 0 }]);
});

Deno.test("fstrim's ioctl failure becomes 'failed to trim' with the errno text", () => {
  assert.deepEqual(parseFstrim("/", 1, "fstrim: /: FITRIM ioctl failed: Input/output error\n"), {
    error: "failed to trim: Input/output error",
  });
  assert.deepEqual(parseFstrim("/", 0, "/: 0 B (0 bytes) trimmed\n"), { trimmed: 0n });
});
