import assert from "node:assert/strict";
import { FixtureSystem } from "../../system/fixture.ts";
import { type SysDirEntry, SysError, type SystemAccess } from "../../system/mod.ts";
import { successReply } from "../../protocol/json_writer.ts";
import { fakeContext } from "../helpers/fake_context.ts";
import { getVcpus, guestGetVcpus, setVcpus } from "../../commands/vcpus.ts";
import {
  getMemoryBlockInfo,
  getMemoryBlocks,
  guestGetMemoryBlocks,
  parseHexSize,
  setMemoryBlocks,
} from "../../commands/memory_blocks.ts";
import {
  clockTicks,
  guestGetCpustats,
  guestGetLoad,
  parseCpuStats,
  parseLoadavg,
} from "../../commands/cpu_stats.ts";

const ROOT = new URL("../fixtures/sysfs/vm-virtio/", import.meta.url).pathname;
const ORDER: Record<string, string[]> = JSON.parse(
  Deno.readTextFileSync(`${ROOT}readdir_order.json`),
);

/** A FixtureSystem listing directories in the captured kernel readdir order. */
class Captured extends FixtureSystem {
  override async readDir(path: string): Promise<SysDirEntry[]> {
    const entries = await super.readDir(path);
    const names = ORDER[path.replace(/(.)\/+$/, "$1")];
    return names
      ? [...entries].sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name))
      : entries;
  }
}

/** A writable copy of the captured CPU and memory directories, removed on dispose. */
async function writableCopy(): Promise<
  { root: string; sys: Captured; [Symbol.asyncDispose](): Promise<void> }
> {
  const root = await Deno.makeTempDir({ prefix: "cpu_memory_test_" });
  await Deno.mkdir(`${root}/sys/devices`, { recursive: true });
  const cp = await new Deno.Command("cp", {
    args: ["-a", `${ROOT}sys/devices/system`, `${root}/sys/devices/`],
  })
    .output();
  assert.ok(cp.success);
  return {
    root,
    sys: new Captured(root),
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

function qemuReply(command: string): unknown {
  return JSON.parse(Deno.readTextFileSync(`${ROOT}qemu-ga/${command}.json`)).return;
}

function failing(sys: SystemAccess, path: string, code: string, text: string): SystemAccess {
  return new Proxy(sys, {
    get: (target, prop: keyof SystemAccess) => {
      const orig = target[prop].bind(target) as (p: string, ...r: unknown[]) => Promise<unknown>;
      return (
        p: string,
        ...r: unknown[]
      ) => (p === path ? Promise.reject(new SysError(code, text)) : orig(p, ...r));
    },
  });
}

Deno.test("guest-get-vcpus on the captured guest equals qemu-ga's reply, in readdir order", async () => {
  const reply = successReply(await getVcpus(new Captured(ROOT)), guestGetVcpus.returns, undefined);
  assert.deepEqual(JSON.parse(reply).return, qemuReply("guest-get-vcpus"));
  assert.deepEqual((await getVcpus(new Captured(ROOT))).map((c) => c["logical-id"]), [1, 0]);
});

Deno.test("a CPU without an online file is online and cannot be offlined", async () => {
  const sys = new Captured(ROOT);
  assert.equal(await sys.exists("/sys/devices/system/cpu/cpu0/online"), false);
  const cpu0 = (await getVcpus(sys)).find((c) => c["logical-id"] === 0);
  assert.deepEqual(cpu0, { "logical-id": 0, online: true, "can-offline": false });
});

Deno.test("guest-get-vcpus reports an unlistable CPU directory with qemu-ga's text", async () => {
  const sys = failing(
    new Captured(ROOT),
    "/sys/devices/system/cpu",
    "ENOENT",
    "No such file or directory",
  );
  await assert.rejects(getVcpus(sys), {
    message: "failed to list entries: /sys/devices/system/cpu: No such file or directory",
  });
});

Deno.test("guest-set-vcpus offlines a CPU by writing 0 to its online file", async () => {
  await using t = await writableCopy();
  assert.equal(await setVcpus(t.sys, [{ "logical-id": 1n, online: false }]), 1);
  assert.equal(await Deno.readTextFile(`${t.root}/sys/devices/system/cpu/cpu1/online`), "0");
  assert.equal(await setVcpus(t.sys, [{ "logical-id": 1n, online: true }]), 1);
  assert.equal(await Deno.readTextFile(`${t.root}/sys/devices/system/cpu/cpu1/online`), "1");
});

Deno.test("guest-set-vcpus leaves a CPU already in the requested state alone", async () => {
  await using t = await writableCopy();
  const file = `${t.root}/sys/devices/system/cpu/cpu1/online`;
  const before = await Deno.readTextFile(file);
  assert.equal(
    await setVcpus(t.sys, [{ "logical-id": 1n, online: true }, { "logical-id": 0n, online: true }]),
    2,
  );
  assert.equal(await Deno.readTextFile(file), before);
});

Deno.test("guest-set-vcpus fails on a first CPU that cannot be offlined", async () => {
  await using t = await writableCopy();
  await assert.rejects(setVcpus(t.sys, [{ "logical-id": 0n, online: false }]), {
    message: "logical processor #0 can't be offlined",
  });
  await assert.rejects(setVcpus(t.sys, [{ "logical-id": 7n, online: true }]), {
    message: 'open("/sys/devices/system/cpu/cpu7/"): No such file or directory',
  });
});

Deno.test("guest-set-vcpus stops at a later failure and returns the count done", async () => {
  await using t = await writableCopy();
  const n = await setVcpus(t.sys, [
    { "logical-id": 1n, online: false },
    { "logical-id": 0n, online: false },
    { "logical-id": 1n, online: true },
  ]);
  assert.equal(n, 1);
  assert.equal(await Deno.readTextFile(`${t.root}/sys/devices/system/cpu/cpu1/online`), "0");
  assert.equal(await setVcpus(t.sys, []), 0);
});

Deno.test("guest-get-memory-blocks on the captured guest equals qemu-ga's reply, in readdir order", async () => {
  const reply = successReply(
    await getMemoryBlocks(new Captured(ROOT)),
    guestGetMemoryBlocks.returns,
    undefined,
  );
  assert.deepEqual(JSON.parse(reply).return, qemuReply("guest-get-memory-blocks"));
});

Deno.test("guest-get-memory-blocks is empty without a memory directory", async () => {
  const sys = failing(
    new Captured(ROOT),
    "/sys/devices/system/memory/",
    "ENOENT",
    "No such file or directory",
  );
  assert.deepEqual(await getMemoryBlocks(sys), []);
  const denied = failing(
    new Captured(ROOT),
    "/sys/devices/system/memory/",
    "EACCES",
    "Permission denied",
  );
  await assert.rejects(getMemoryBlocks(denied), {
    message: 'Can\'t open directory"/sys/devices/system/memory/": Permission denied',
  });
});

Deno.test("guest-get-memory-block-info parses block_size_bytes as hex like qemu-ga", async () => {
  assert.deepEqual(
    await getMemoryBlockInfo(new Captured(ROOT)),
    qemuReply("guest-get-memory-block-info"),
  );
  assert.equal(parseHexSize("0x80000000\n"), 2147483648);
  assert.equal(parseHexSize("zz"), 0);
  const sys = failing(
    new Captured(ROOT),
    "/sys/devices/system/memory/block_size_bytes",
    "ENOENT",
    "No such file or directory",
  );
  await assert.rejects(getMemoryBlockInfo(sys), {
    message: 'open sysfs file "block_size_bytes": No such file or directory',
  });
});

Deno.test("guest-set-memory-blocks writes state changes and answers once per block", async () => {
  await using t = await writableCopy();
  const state = (n: number) =>
    Deno.readTextFile(`${t.root}/sys/devices/system/memory/memory${n}/state`);
  const before = await state(3);
  const reply = await setMemoryBlocks(t.sys, [
    { "phys-index": 3n, online: false },
    { "phys-index": 5n, online: true },
    { "phys-index": 999n, online: false },
  ]);
  assert.deepEqual(reply, [
    { "phys-index": 3, response: "success" },
    { "phys-index": 5, response: "success" },
    { "phys-index": 999, response: "not-found", "error-code": 2 },
  ]);
  assert.equal(before, "online\n");
  assert.equal(await state(3), "offline");
  assert.equal(await state(5), "online\n");
});

Deno.test("guest-set-memory-blocks without a state file cannot offline but pretends to online", async () => {
  await using t = await writableCopy();
  await Deno.remove(`${t.root}/sys/devices/system/memory/memory4/state`);
  assert.deepEqual(
    await setMemoryBlocks(t.sys, [{ "phys-index": 4n, online: false }, {
      "phys-index": 4n,
      online: true,
    }]),
    [
      { "phys-index": 4, response: "operation-not-supported", "error-code": 2 },
      { "phys-index": 4, response: "success", "error-code": 2 },
    ],
  );
});

Deno.test("guest-set-memory-blocks on a VM without memory hotplug is not supported", async () => {
  await using t = await writableCopy();
  await Deno.remove(`${t.root}/sys/devices/system/memory`, { recursive: true });
  assert.deepEqual(await setMemoryBlocks(t.sys, [{ "phys-index": 0n, online: true }]), [
    { "phys-index": 0, response: "operation-not-supported", "error-code": 2 },
  ]);
});

Deno.test("the clock tick comes from AT_CLKTCK in the auxiliary vector", () => {
  assert.equal(clockTicks(Deno.readFileSync(`${ROOT}proc/self/auxv`)), 100);
  const auxv = new DataView(new ArrayBuffer(48));
  auxv.setBigUint64(0, 6n, true);
  auxv.setBigUint64(8, 4096n, true);
  auxv.setBigUint64(16, 17n, true);
  auxv.setBigUint64(24, 1024n, true);
  assert.equal(clockTicks(new Uint8Array(auxv.buffer)), 1024);
  assert.equal(clockTicks(new Uint8Array(0)), 100);
});

Deno.test("guest-get-cpustats converts each cpuN line to milliseconds", async () => {
  const text = Deno.readTextFileSync(`${ROOT}proc/stat`);
  const cpu1 = text.split("\n").find((l) => l.startsWith("cpu1 "))!.split(/\s+/).slice(1).map(
    Number,
  );
  const stats = parseCpuStats(text, 100);
  assert.deepEqual(stats.map((s) => s.cpu), [0, 1]);
  const names = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guestnice",
  ];
  const expected = Object.fromEntries(names.map((n, i) => [n, cpu1[i]! * 10]));
  assert.deepEqual(stats[1], { type: "linux", cpu: 1, ...expected });
  const ctx = fakeContext({ sys: new Captured(ROOT) });
  const reply = await guestGetCpustats.handler({}, ctx);
  assert.deepEqual(reply, stats);
  const theirs = qemuReply("guest-get-cpustats") as Record<string, unknown>[];
  assert.deepEqual(
    reply.map((s) => Object.keys(s).sort()),
    theirs.map((s) => Object.keys(s).sort()),
  );
});

Deno.test("guest-get-cpustats reports optional members by column count", () => {
  const keys = (line: string) => parseCpuStats(line, 100).map((s) => Object.keys(s).length);
  assert.deepEqual(keys("cpu0 1 2 3 4"), [6]);
  assert.deepEqual(keys("cpu0 1 2 3 4 5"), [7]);
  assert.deepEqual(keys("cpu0 1 2 3 4 5 6 7"), [9]);
  assert.deepEqual(keys("cpu0 1 2 3 4 5 6 7 8"), [10]);
  assert.deepEqual(keys("cpu0 1 2 3 4 5 6 7 8 9 10"), [12]);
  // The aggregate line is skipped; a short cpuN line ends the list.
  assert.deepEqual(
    parseCpuStats("cpu 1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2\ncpu2 1 2 3 4\n", 100).map((s) => s.cpu),
    [0],
  );
  assert.equal(parseCpuStats("cpu3 7 0 0 0", 1024)[0]!.user, 6);
});

Deno.test("guest-get-load reads /proc/loadavg as getloadavg does", async () => {
  const text = Deno.readTextFileSync(`${ROOT}proc/loadavg`);
  const [a, b, c] = text.split(" ").map(Number);
  const ctx = fakeContext({ sys: new Captured(ROOT) });
  assert.deepEqual(await guestGetLoad.handler({}, ctx), { load1m: a, load5m: b, load15m: c });
  assert.equal(parseLoadavg("garbage"), null);
  const broken = fakeContext({
    sys: failing(new Captured(ROOT), "/proc/loadavg", "ENOENT", "No such file or directory"),
  });
  await assert.rejects(Promise.resolve(guestGetLoad.handler({}, broken)), {
    message: "cannot query load average: No such file or directory",
  });
});
