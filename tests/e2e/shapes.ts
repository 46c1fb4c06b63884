/**
 * Reply shapes as real clients parse them: libvirt's required fields and integer rules
 * (clients.md §1.6), plus the facts the e2e guest was set up with (guest_script.ts).
 *
 * @module
 */

import { GUEST_FACTS } from "./guest_script.ts";
import { type Conversation } from "./sessions.ts";
import { intOf, isObject, type Raw, type RawObject } from "./raw_json.ts";

/** A disk address as libvirt's `qemuAgentGetDiskAddress` requires it. */
export function checkDiskAddress(c: Conversation, d: Raw, path: string): RawObject | undefined {
  if (!c.kind(d, "object", path)) return undefined;
  const o = d as RawObject;
  for (const k of ["bus", "target", "unit"]) c.req(o, k, "uint", path);
  const pci = c.req(o, "pci-controller", "object", path);
  if (isObject(pci)) {
    for (const k of ["domain", "bus", "slot", "function"]) {
      c.req(pci, k, "uint", `${path}.pci-controller`);
    }
  }
  for (const k of ["bus-type", "serial", "dev"]) c.opt(o, k, "string", path);
  const ccw = c.opt(o, "ccw-address", "object", path);
  if (isObject(ccw)) {
    for (const k of ["cssid", "ssid", "devno"]) c.req(ccw, k, "uint", `${path}.ccw-address`);
  }
  return o;
}

/** `guest-get-fsinfo` (C4). Returns the entries. */
export function checkFsinfo(c: Conversation, ret: Raw | undefined, path: string): RawObject[] {
  if (!c.kind(ret, "array", path)) return [];
  const out: RawObject[] = [];
  (ret as Raw[]).forEach((e, i) => {
    const p = `${path}[${i}]`;
    if (!c.kind(e, "object", p)) return;
    const o = e as RawObject;
    for (const k of ["mountpoint", "name", "type"]) c.req(o, k, "string", p);
    for (const k of ["used-bytes", "total-bytes"]) c.opt(o, k, "uint", p);
    const disks = c.req(o, "disk", "array", p);
    if (Array.isArray(disks)) disks.forEach((d, j) => checkDiskAddress(c, d, `${p}.disk[${j}]`));
    out.push(o);
  });
  return out;
}

/** The /data entry: vda, ext4, serial QGATEST0, virtio at PCI 0000:00:06.0 (C4). */
export function checkDataFs(c: Conversation, entries: RawObject[], path: string): void {
  const f = GUEST_FACTS;
  const data = entries.find((e) => e.mountpoint === f.dataMount);
  if (!c.expect(data !== undefined, `${path}: no entry with mountpoint "${f.dataMount}"`)) return;
  const p = `${path}[mountpoint=${f.dataMount}]`;
  c.expect(data!.name === "vda", `${p}.name: expected "vda", got ${JSON.stringify(data!.name)}`);
  c.expect(data!.type === "ext4", `${p}.type: expected "ext4", got ${JSON.stringify(data!.type)}`);
  const total = intOf(data!["total-bytes"]);
  c.expect(
    total !== undefined && total > 0n && total <= 64n * 1024n * 1024n,
    `${p}.total-bytes: expected 1..64 MiB, got ${total}`,
  );
  const disks = data!.disk;
  if (!c.expect(Array.isArray(disks) && disks.length === 1, `${p}.disk: expected one disk`)) {
    return;
  }
  const d = (disks as Raw[])[0];
  if (!isObject(d)) return;
  c.expect(
    d.serial === f.diskSerial,
    `${p}.disk[0].serial: expected "${f.diskSerial}", got ${JSON.stringify(d.serial)}`,
  );
  c.expect(
    d["bus-type"] === "virtio",
    `${p}.disk[0].bus-type: expected "virtio", got ${JSON.stringify(d["bus-type"])}`,
  );
  if ("dev" in d) {
    c.expect(d.dev === "/dev/vda", `${p}.disk[0].dev: expected "/dev/vda", got ${d.dev}`);
  }
  checkPciSlot(c, d, `${p}.disk[0]`);
}

function checkPciSlot(c: Conversation, d: RawObject, p: string): void {
  const pci = d["pci-controller"];
  if (!isObject(pci)) return;
  const got = ["domain", "bus", "slot", "function"].map((k) => intOf(pci[k]));
  const want = [0n, 0n, BigInt(GUEST_FACTS.diskPciSlot), 0n];
  c.expect(
    got.every((v, i) => v === want[i]),
    `${p}.pci-controller: expected 0000:00:0${GUEST_FACTS.diskPciSlot}.0 (libvirt maps the ` +
      `disk by it), got ${got.join(":")}`,
  );
}

/** `guest-get-disks` (C5): shapes, and /dev/vda with its address. */
export function checkDisks(c: Conversation, ret: Raw | undefined, path: string): void {
  if (!c.kind(ret, "array", path)) return;
  let vda: RawObject | undefined;
  (ret as Raw[]).forEach((e, i) => {
    const p = `${path}[${i}]`;
    if (!c.kind(e, "object", p)) return;
    const o = e as RawObject;
    c.req(o, "name", "string", p);
    c.req(o, "partition", "bool", p);
    const deps = c.opt(o, "dependencies", "array", p);
    if (Array.isArray(deps)) deps.forEach((d, j) => c.kind(d, "string", `${p}.dependencies[${j}]`));
    c.opt(o, "alias", "string", p);
    if ("address" in o) checkDiskAddress(c, o.address, `${p}.address`);
    if (o.name === "/dev/vda") vda = o;
  });
  if (!c.expect(vda !== undefined, `${path}: no disk named "/dev/vda"`)) return;
  c.expect(vda!.partition === false, `${path}[/dev/vda].partition: expected false`);
  if (c.expect(isObject(vda!.address), `${path}[/dev/vda].address: missing`)) {
    checkPciSlot(c, vda!.address as RawObject, `${path}[/dev/vda].address`);
  }
}

/** `guest-network-get-interfaces` (C3). Returns the entries. */
export function checkInterfaces(
  c: Conversation,
  ret: Raw | undefined,
  path: string,
): RawObject[] {
  if (!c.kind(ret, "array", path)) return [];
  const out: RawObject[] = [];
  (ret as Raw[]).forEach((e, i) => {
    const p = `${path}[${i}]`;
    if (!c.kind(e, "object", p)) return;
    const o = e as RawObject;
    c.req(o, "name", "string", p);
    const hw = c.opt(o, "hardware-address", "string", p);
    if (typeof hw === "string") {
      c.expect(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(hw), `${p}.hardware-address: ${hw}`);
    }
    const addrs = c.opt(o, "ip-addresses", "array", p);
    if (Array.isArray(addrs)) {
      addrs.forEach((a, j) => {
        const q = `${p}.ip-addresses[${j}]`;
        if (!c.kind(a, "object", q)) return;
        const ao = a as RawObject;
        const t = c.req(ao, "ip-address-type", "string", q);
        c.expect(
          t === undefined || t === "ipv4" || t === "ipv6",
          `${q}.ip-address-type: "unknown ip address type" ${JSON.stringify(t)}`,
        );
        c.req(ao, "ip-address", "string", q);
        c.req(ao, "prefix", "uint", q);
      });
    }
    out.push(o);
  });
  return out;
}

/** The guest's network: lo and dummy0 with its MAC, IPv4 and IPv6 addresses. */
export function checkGuestNetwork(c: Conversation, entries: RawObject[], path: string): void {
  const f = GUEST_FACTS;
  const has = (o: RawObject | undefined, type: string, ip: string, prefix: number) =>
    Array.isArray(o?.["ip-addresses"]) &&
    (o["ip-addresses"] as Raw[]).some((a) =>
      isObject(a) && a["ip-address-type"] === type && a["ip-address"] === ip &&
      intOf(a.prefix) === BigInt(prefix)
    );
  const lo = entries.find((e) => e.name === "lo");
  c.expect(
    lo?.["hardware-address"] === "00:00:00:00:00:00" && has(lo, "ipv4", "127.0.0.1", 8),
    `${path}: lo should have 00:00:00:00:00:00 and 127.0.0.1/8`,
  );
  const d = entries.find((e) => e.name === f.netIf);
  if (!c.expect(d !== undefined, `${path}: no interface "${f.netIf}"`)) return;
  c.expect(
    d!["hardware-address"] === f.mac,
    `${path}[${f.netIf}].hardware-address: expected ${f.mac}, got ${d!["hardware-address"]}`,
  );
  c.expect(
    has(d, "ipv4", f.ipv4, f.ipv4Prefix),
    `${path}[${f.netIf}]: no ipv4 ${f.ipv4}/${f.ipv4Prefix}`,
  );
  c.expect(
    has(d, "ipv6", f.ipv6, f.ipv6Prefix),
    `${path}[${f.netIf}]: no ipv6 ${f.ipv6}/${f.ipv6Prefix}`,
  );
}

/** `guest-get-users` (C6). */
export function checkUsers(c: Conversation, ret: Raw | undefined, path: string): void {
  if (!c.kind(ret, "array", path)) return;
  (ret as Raw[]).forEach((e, i) => {
    const p = `${path}[${i}]`;
    if (!c.kind(e, "object", p)) return;
    c.req(e as RawObject, "user", "string", p);
    c.req(e as RawObject, "login-time", "number", p);
    c.opt(e as RawObject, "domain", "string", p);
  });
}

/** The host's (= guest's) os-release ID. */
export async function osReleaseId(): Promise<string | undefined> {
  for (const f of ["/etc/os-release", "/usr/lib/os-release"]) {
    try {
      const m = /^ID=("?)([^"\n]*)\1$/m.exec(await Deno.readTextFile(f));
      if (m) return m[2];
    } catch {
      // next
    }
  }
  return undefined;
}

/** `guest-get-osinfo` (C7); `id` must match the guest's os-release and uname fields be set. */
export function checkOsinfo(
  c: Conversation,
  ret: Raw | undefined,
  path: string,
  expectedId: string | undefined,
): void {
  if (!c.kind(ret, "object", path)) return;
  const o = ret as RawObject;
  for (
    const k of [
      "id",
      "name",
      "pretty-name",
      "version",
      "version-id",
      "machine",
      "variant",
      "variant-id",
      "kernel-release",
      "kernel-version",
    ]
  ) c.opt(o, k, "string", path);
  c.expect(o.id === expectedId, `${path}.id: expected ${expectedId}, got ${o.id}`);
  c.expect(o.machine === "x86_64", `${path}.machine: expected x86_64, got ${o.machine}`);
  c.expect(typeof o["kernel-release"] === "string", `${path}.kernel-release missing`);
}

/** `guest-get-timezone` (C8); the guest runs with TZ=UTC. */
export function checkTimezone(c: Conversation, ret: Raw | undefined, path: string): void {
  if (!c.kind(ret, "object", path)) return;
  const o = ret as RawObject;
  c.opt(o, "zone", "string", path);
  if (c.req(o, "offset", "int", path) !== undefined) {
    c.expect(intOf(o.offset) === 0n, `${path}.offset: expected 0 (TZ=UTC), got ${intOf(o.offset)}`);
  }
}

/** `guest-get-host-name` (C9). */
export function checkHostname(c: Conversation, ret: Raw | undefined, path: string): void {
  if (!c.kind(ret, "object", path)) return;
  const h = c.req(ret as RawObject, "host-name", "string", path);
  c.expect(
    h === undefined || h === GUEST_FACTS.hostname,
    `${path}.host-name: expected "${GUEST_FACTS.hostname}", got ${JSON.stringify(h)}`,
  );
}

/** `guest-get-time` (C10): uint nanoseconds, close to the host's clock. */
export function checkTime(c: Conversation, ret: Raw | undefined, path: string): void {
  if (!c.kind(ret, "uint", path)) return;
  const ns = intOf(ret)!;
  const skewS = Number(ns / 1_000_000_000n) - Date.now() / 1000;
  c.expect(Math.abs(skewS) < 300, `${path}: guest time is ${skewS.toFixed(1)} s off the host's`);
}

/** `guest-get-vcpus` (C12); the guest has 2 vCPUs. Returns the entries. */
export function checkVcpus(c: Conversation, ret: Raw | undefined, path: string): RawObject[] {
  if (!c.kind(ret, "array", path)) return [];
  const out: RawObject[] = [];
  (ret as Raw[]).forEach((e, i) => {
    const p = `${path}[${i}]`;
    if (!c.kind(e, "object", p)) return;
    const o = e as RawObject;
    const id = c.req(o, "logical-id", "uint", p);
    c.expect(id === undefined || intOf(id)! < 4096n, `${p}.logical-id >= 4096`);
    c.req(o, "online", "bool", p);
    c.req(o, "can-offline", "bool", p);
    c.expect(
      !(o.online === false && o["can-offline"] === false),
      `${p}: online:false with can-offline:false is "Invalid data provided by guest agent"`,
    );
    out.push(o);
  });
  const ids = out.map((o) => intOf(o["logical-id"])).sort();
  c.expect(
    ids.length === 2 && ids[0] === 0n && ids[1] === 1n,
    `${path}: expected logical ids 0 and 1, got ${ids.join(",")}`,
  );
  return out;
}

/** Go's `base64.StdEncoding` (padded standard alphabet); returns the bytes or a reason. */
export function stdBase64(c: Conversation, v: Raw | undefined, path: string): Uint8Array {
  if (!c.kind(v, "string", path)) return new Uint8Array();
  const s = v as string;
  if (
    !c.expect(
      /^[A-Za-z0-9+/]*={0,2}$/.test(s) && s.length % 4 === 0,
      `${path}: not padded standard base64`,
    )
  ) {
    return new Uint8Array();
  }
  return Uint8Array.fromBase64(s, { lastChunkHandling: "strict" });
}
