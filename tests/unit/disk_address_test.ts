import assert from "node:assert/strict";
import { FixtureSystem } from "../../system/fixture.ts";
import { SysError } from "../../system/mod.ts";
import {
  type DeviceWalk,
  diskAddress,
  parseUdevDb,
  parseUevent,
  udevDevice,
  walkDevice,
} from "../../commands/disk_address.ts";

const ROOT = new URL("../fixtures/sysfs/vm-virtio/", import.meta.url).pathname;

async function walk(sys: FixtureSystem, devpath: string): Promise<DeviceWalk> {
  const w: DeviceWalk = { disk: [] };
  await walkDevice(sys, devpath, w);
  return w;
}

Deno.test("the captured virtio-blk disk gets qemu-ga's address", async () => {
  const w = await walk(new FixtureSystem(ROOT), "/sys/dev/block/254:0");
  const fsinfo = JSON.parse(Deno.readTextFileSync(`${ROOT}qemu-ga/guest-get-fsinfo.json`)).return;
  assert.equal(w.name, "vda");
  assert.equal(w.error, undefined);
  assert.deepEqual(w.disk, fsinfo[0].disk);
});

Deno.test("the captured uevent file gives the devnode, and no serial without a udev database", async () => {
  const sys = new FixtureSystem(ROOT);
  const syspath = "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda";
  assert.equal(parseUevent(await sys.readTextFile(`${syspath}/uevent`)).get("DEVNAME"), "vda");
  const dev = await udevDevice(sys, syspath);
  assert.equal(dev?.devnode, "/dev/vda");
  assert.equal(dev?.properties.get("ID_SERIAL"), undefined);
  assert.equal(await udevDevice(sys, "/sys/devices/nonexistent"), null);
});

Deno.test("udev database properties are the E: lines", () => {
  const db = parseUdevDb(
    "S:disk/by-id/virtio-QGATEST0\nI:1234\nE:ID_SERIAL=QGATEST0\nE:DM_NAME=vg-root\nG:systemd\n",
  );
  assert.deepEqual([...db], [["ID_SERIAL", "QGATEST0"], ["DM_NAME", "vg-root"]]);
});

/**
 * A sysfs-like tree in a temporary directory: `null` makes a directory, a string a
 * file, `{ link }` a symlink. Layouts follow what Linux creates for the named
 * QEMU devices (paths as seen on q35/i440fx/s390x guests).
 */
async function tree(
  spec: Record<string, string | null | { link: string }>,
): Promise<{ sys: FixtureSystem; [Symbol.asyncDispose](): Promise<void> }> {
  const root = await Deno.makeTempDir({ prefix: "disk_address_test_" });
  for (const [path, what] of Object.entries(spec)) {
    const full = `${root}${path}`;
    if (what === null) {
      await Deno.mkdir(full, { recursive: true });
    } else {
      await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
      if (typeof what === "string") await Deno.writeTextFile(full, what);
      else await Deno.symlink(what.link, full);
    }
  }
  return {
    sys: new FixtureSystem(root),
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

function blockDev(syspath: string, major: number, minor: number, name: string) {
  return {
    [`${syspath}/uevent`]: `MAJOR=${major}\nMINOR=${minor}\nDEVNAME=${name}\nDEVTYPE=disk\n`,
  };
}

const DRIVERS = "../../../bus/pci/drivers";

Deno.test("an AHCI disk is sata, its unit the index of its ata port among the controller's", async () => {
  const ctrl = "/sys/devices/pci0000:00/0000:00:1f.2";
  const dev = `${ctrl}/ata3/host2/target2:0:0/2:0:0:0/block/sda`;
  await using t = await tree({
    [`${ctrl}/driver`]: { link: `${DRIVERS}/ahci` },
    [`${ctrl}/ata1`]: null,
    [`${ctrl}/ata2`]: null,
    [`${ctrl}/ata4`]: null,
    ...blockDev(dev, 8, 0, "sda"),
    "/run/udev/data/b8:0": "E:ID_SERIAL=QEMU_HARDDISK_QM00005\n",
    "/sys/dev/block/8:0": {
      link: `../../devices/pci0000:00/0000:00:1f.2/ata3/host2/target2:0:0/2:0:0:0/block/sda`,
    },
  });
  const sys = t.sys;
  const w = await walk(sys, "/sys/dev/block/8:0");
  assert.deepEqual(w.disk, [{
    "pci-controller": { domain: 0, bus: 0, slot: 0x1f, function: 2 },
    "bus-type": "sata",
    bus: 0,
    target: 0,
    unit: 2,
    serial: "QEMU_HARDDISK_QM00005",
    dev: "/dev/sda",
  }]);
});

Deno.test("an IDE disk on ata_piix gets the bus of its host and the unit of its target id", async () => {
  const ctrl = "/sys/devices/pci0000:00/0000:00:01.1";
  const dev = `${ctrl}/ata2/host1/target1:0:1/1:0:1:0/block/sdb`;
  await using t = await tree({
    [`${ctrl}/driver`]: { link: `${DRIVERS}/ata_piix` },
    [`${ctrl}/ata1`]: null,
    ...blockDev(dev, 8, 16, "sdb"),
  });
  const sys = t.sys;
  const { address } = await diskAddress(sys, dev);
  assert.deepEqual(address, {
    "pci-controller": { domain: 0, bus: 0, slot: 1, function: 1 },
    "bus-type": "ide",
    bus: 1,
    target: 0,
    unit: 1,
    dev: "/dev/sdb",
  });
});

Deno.test("a virtio-scsi disk is scsi with only the LUN as unit, like qemu-ga", async () => {
  const fn = "/sys/devices/pci0000:00/0000:00:05.0";
  const dev = `${fn}/virtio2/host2/target2:0:3/2:0:3:7/block/sdc`;
  await using t = await tree({
    [`${fn}/driver`]: { link: `${DRIVERS}/virtio-pci` },
    ...blockDev(dev, 8, 32, "sdc"),
  });
  const sys = t.sys;
  const { address } = await diskAddress(sys, dev);
  assert.deepEqual(address, {
    "pci-controller": { domain: 0, bus: 0, slot: 5, function: 0 },
    "bus-type": "scsi",
    bus: 0,
    target: 0,
    unit: 7,
    dev: "/dev/sdc",
  });
});

Deno.test("the walk passes PCIe ports until the NVMe controller", async () => {
  const port = "/sys/devices/pci0000:00/0000:00:1c.0";
  const ctrl = `${port}/0000:01:00.0`;
  const dev = `${ctrl}/nvme/nvme0/nvme0n1`;
  await using t = await tree({
    [`${port}/driver`]: { link: `${DRIVERS}/pcieport` },
    [`${ctrl}/driver`]: { link: `../../${DRIVERS}/nvme` },
    ...blockDev(dev, 259, 0, "nvme0n1"),
  });
  const sys = t.sys;
  const { address } = await diskAddress(sys, dev);
  assert.equal(address?.["bus-type"], "nvme");
  assert.deepEqual(address?.["pci-controller"], { domain: 0, bus: 1, slot: 0, function: 0 });
});

Deno.test("a disk behind an unknown controller keeps the defaults but its devnode", async () => {
  const fn = "/sys/devices/pci0000:00/0000:00:07.0";
  const dev = `${fn}/host0/target0:2:0/0:2:0:0/block/sda`;
  await using t = await tree({
    [`${fn}/driver`]: { link: `${DRIVERS}/megaraid_sas` },
    ...blockDev(dev, 8, 0, "sda"),
  });
  const sys = t.sys;
  const { address } = await diskAddress(sys, dev);
  assert.deepEqual(address, {
    "pci-controller": { domain: -1, bus: -1, slot: -1, function: -1 },
    "bus-type": "unknown",
    bus: 0,
    target: 0,
    unit: 0,
    dev: "/dev/sda",
  });
});

Deno.test("a CCW virtio disk carries its subchannel address", async () => {
  const dev = "/sys/devices/css0/0.0.0002/0.0.0003/virtio1/block/vda";
  await using t = await tree(blockDev(dev, 254, 0, "vda"));
  const sys = t.sys;
  const { address } = await diskAddress(sys, dev);
  assert.deepEqual(address, {
    "pci-controller": { domain: -1, bus: -1, slot: -1, function: -1 },
    "bus-type": "virtio",
    bus: 0,
    target: 0,
    unit: 0,
    dev: "/dev/vda",
    "ccw-address": { cssid: 0, ssid: 0, subchno: 2, devno: 3 },
  });
});

Deno.test("a device-mapper volume lists the disks under its slaves, last slave first", async () => {
  const pci = "/sys/devices/pci0000:00";
  const vda = `${pci}/0000:00:02.0/virtio1/block/vda`;
  const vdb = `${pci}/0000:00:06.0/virtio3/block/vdb`;
  await using t = await tree({
    [`${pci}/0000:00:02.0/driver`]: { link: `${DRIVERS}/virtio-pci` },
    [`${pci}/0000:00:06.0/driver`]: { link: `${DRIVERS}/virtio-pci` },
    ...blockDev(vda, 254, 0, "vda"),
    ...blockDev(`${vda}/vda2`, 254, 2, "vda2"),
    ...blockDev(vdb, 254, 16, "vdb"),
    ...blockDev("/sys/devices/virtual/block/dm-0", 253, 0, "dm-0"),
    "/sys/devices/virtual/block/dm-0/slaves/vda2": {
      link: "../../../../pci0000:00/0000:00:02.0/virtio1/block/vda/vda2",
    },
    "/sys/devices/virtual/block/dm-0/slaves/vdb": {
      link: "../../../../pci0000:00/0000:00:06.0/virtio3/block/vdb",
    },
    "/sys/dev/block/253:0": { link: "../../devices/virtual/block/dm-0" },
  });
  const sys = t.sys;
  const w = await walk(sys, "/sys/dev/block/253:0");
  assert.equal(w.name, "dm-0");
  const order = (await sys.readDir("/sys/devices/virtual/block/dm-0/slaves")).map((e) =>
    `/dev/${e.name}`
  );
  assert.deepEqual(w.disk.map((d) => d.dev), order.reverse());
  const slots = Object.fromEntries(w.disk.map((d) => [d.dev, d["pci-controller"].slot]));
  assert.deepEqual(slots, { "/dev/vda2": 2, "/dev/vdb": 6 });
});

Deno.test("an unreadable controller directory is an error of the walk", async () => {
  const ctrl = "/sys/devices/pci0000:00/0000:00:1f.2";
  const dev = `${ctrl}/ata3/host2/target2:0:0/2:0:0:0/block/sda`;
  await using t = await tree({
    [`${ctrl}/driver`]: { link: `${DRIVERS}/ahci` },
    ...blockDev(dev, 8, 0, "sda"),
  });
  const sys = t.sys;
  const denied = new Proxy(sys, {
    get: (target, prop: keyof FixtureSystem) =>
      prop === "readDir"
        ? (p: string) =>
          p === ctrl
            ? Promise.reject(new SysError("EACCES", "Permission denied"))
            : target.readDir(p)
        : target[prop].bind(target),
  });
  const w: DeviceWalk = { disk: [] };
  await walkDevice(denied, dev, w);
  assert.equal(w.error?.message, `opendir("${ctrl}"): Permission denied`);
  // qemu-ga still records the disk with its devnode and default address.
  assert.equal(w.disk[0]?.dev, "/dev/sda");
  assert.equal(w.disk[0]?.["bus-type"], "unknown");
});
