import assert from "node:assert/strict";
import { FixtureSystem } from "../../system/fixture.ts";
import {
  type NetSnapshot,
  type SysDirEntry,
  SysError,
  type SystemAccess,
} from "../../system/mod.ts";
import { netSnapshot } from "../../helper/net.ts";
import { successReply } from "../../protocol/json_writer.ts";
import { fakeContext } from "../helpers/fake_context.ts";
import {
  formatIPv6,
  getInterfaces,
  getRoutes,
  guestNetworkGetInterfaces,
  guestNetworkGetRoute,
  type InterfaceAddress,
  netDevStats,
  parseIPv6,
  parseRouteV4,
  parseRouteV6,
} from "../../commands/network.ts";

const ROOT = new URL("../fixtures/sysfs/vm-virtio/", import.meta.url).pathname;

/** The captured tree, listing directories in the captured kernel readdir order. */
function captured(): FixtureSystem {
  const order: Record<string, string[]> = JSON.parse(
    Deno.readTextFileSync(`${ROOT}readdir_order.json`),
  );
  return new (class extends FixtureSystem {
    override async readDir(path: string): Promise<SysDirEntry[]> {
      const entries = await super.readDir(path);
      const names = order[path.replace(/(.)\/+$/, "$1")];
      return names
        ? [...entries].sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name))
        : entries;
    }
  })(ROOT);
}

/** The helper's snapshot (helper/net.ts) over `sys`, with these addresses. */
function snapOf(sys: SystemAccess, addrs: InterfaceAddress[]): Promise<NetSnapshot> {
  return netSnapshot({
    readDir: async (p) => (await sys.readDir(p)).map((e) => e.name),
    readText: (p) => sys.readTextFile(p),
    addresses: () => addrs,
  });
}

function capturedAddresses(): InterfaceAddress[] {
  return JSON.parse(Deno.readTextFileSync(`${ROOT}network_interfaces.json`));
}

function qemuReply(command: string): unknown {
  return JSON.parse(Deno.readTextFileSync(`${ROOT}qemu-ga/${command}.json`)).return;
}

function failing(sys: SystemAccess, path: string, code: string, text: string): SystemAccess {
  return new Proxy(sys, {
    get: (target, prop: keyof SystemAccess) => {
      const orig = target[prop].bind(target) as (p: string) => Promise<unknown>;
      return (p: string) => (p === path ? Promise.reject(new SysError(code, text)) : orig(p));
    },
  });
}

Deno.test("guest-network-get-interfaces on the captured guest equals qemu-ga's reply apart from moving counters", async () => {
  const sys = captured();
  const ours = JSON.parse(
    successReply(
      getInterfaces(await snapOf(sys, capturedAddresses())),
      guestNetworkGetInterfaces.returns,
      undefined,
    ),
  ).return as Record<string, unknown>[];
  const theirs = qemuReply("guest-network-get-interfaces") as Record<string, unknown>[];
  const noStats = (i: Record<string, unknown>) => {
    const { statistics: _s, ...rest } = i;
    return rest;
  };
  assert.deepEqual(ours.map(noStats), theirs.map(noStats));
  assert.deepEqual(ours.map((i) => "statistics" in i), theirs.map((i) => "statistics" in i));
  const netDev = await sys.readTextFile("/proc/net/dev");
  for (const i of ours.filter((i) => i.statistics)) {
    assert.deepEqual(
      i.statistics,
      JSON.parse(JSON.stringify(netDevStats(netDev, i.name as string))),
    );
  }
});

Deno.test("interfaces come in ifindex order, and those without addresses have only a MAC", async () => {
  const list = getInterfaces(await snapOf(captured(), capturedAddresses()));
  assert.deepEqual(list.map((i) => i.name), ["lo", "ifb0", "ifb1", "eth0"]);
  assert.deepEqual(list[1], { name: "ifb0", "hardware-address": "62:3b:d5:9e:a9:c9" });
  assert.equal(list[0]!["hardware-address"], "00:00:00:00:00:00");
});

Deno.test("an IPv4 alias label is its own interface with its base's MAC and no counters", async () => {
  const addrs: InterfaceAddress[] = [
    ...capturedAddresses(),
    { family: "IPv4", name: "eth0:1", address: "192.0.2.77", netmask: "255.255.255.128" },
  ];
  const list = getInterfaces(await snapOf(captured(), addrs));
  assert.deepEqual(list.at(-1), {
    name: "eth0:1",
    "hardware-address": "02:fc:00:00:00:01",
    "ip-addresses": [{ "ip-address": "192.0.2.77", "ip-address-type": "ipv4", prefix: 25 }],
  });
});

Deno.test("a link without a MAC reports zeros, as SIOCGIFHWADDR does", async () => {
  const base = captured();
  const sys = new Proxy(base, {
    get: (t, prop: keyof SystemAccess) =>
      prop === "readTextFile"
        ? (
          p: string,
        ) => (p === "/sys/class/net/ifb0/address" ? Promise.resolve("\n") : t.readTextFile(p))
        : t[prop].bind(t),
  });
  const list = getInterfaces(await snapOf(sys, []));
  assert.equal(list.find((i) => i.name === "ifb0")!["hardware-address"], "00:00:00:00:00:00");
});

Deno.test("an unlistable /sys/class/net is getifaddrs' failure", async () => {
  await assert.rejects(
    async () =>
      getInterfaces(
        await snapOf(failing(captured(), "/sys/class/net", "EACCES", "Permission denied"), []),
      ),
    {
      message: "getifaddrs failed: Permission denied",
    },
  );
});

Deno.test("IPv6 addresses are printed as glibc's inet_ntop prints them", () => {
  // Expected texts: Python's socket.inet_ntop (glibc 2.36) on this machine.
  const cases: [string, string][] = [
    ["::", "::"],
    ["::1", "::1"],
    ["::2", "::2"],
    ["::ffff:1.2.3.4", "::ffff:1.2.3.4"],
    ["::1.2.3.4", "::1.2.3.4"],
    ["1::", "1::"],
    ["1:0:0:1:0:0:0:1", "1:0:0:1::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["0:0:1::", "0:0:1::"],
    ["1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"],
    ["::ffff:0:1.2.3.4", "::ffff:0:102:304"],
    ["0:0:0:0:0:1:0:0", "::1:0:0"],
    ["FE80::FC:FF:FE00:1", "fe80::fc:ff:fe00:1"],
  ];
  for (const [input, expected] of cases) {
    assert.equal(formatIPv6(parseIPv6(input)!), expected, input);
  }
  assert.equal(parseIPv6("1::2::3"), null);
  assert.equal(parseIPv6("1:2:3:4:5:6:7"), null);
});

Deno.test("/proc/net/dev counters are matched on the exact name before the colon", () => {
  const text = Deno.readTextFileSync(`${ROOT}proc/net/dev`);
  const eth0 = text.split("\n").find((l) => l.trim().startsWith("eth0:"))!.split(":")[1]!.trim()
    .split(/\s+/);
  assert.deepEqual(netDevStats(text, "eth0"), {
    "rx-bytes": Number(eth0[0]),
    "rx-packets": Number(eth0[1]),
    "rx-errs": Number(eth0[2]),
    "rx-dropped": Number(eth0[3]),
    "tx-bytes": Number(eth0[8]),
    "tx-packets": Number(eth0[9]),
    "tx-errs": Number(eth0[10]),
    "tx-dropped": Number(eth0[11]),
  });
  assert.equal(netDevStats(text, "eth"), null);
  assert.equal(netDevStats(" eth1: 1 2 3\n", "eth1"), null);
});

Deno.test("IPv4 routes are printed from the little-endian words of /proc/net/route", () => {
  const routes = parseRouteV4(Deno.readTextFileSync(`${ROOT}proc/net/route`));
  assert.deepEqual(routes[0], {
    iface: "eth0",
    destination: "0.0.0.0",
    metric: 0,
    gateway: "192.0.2.1",
    mask: "0.0.0.0",
    irtt: 0,
    flags: 3,
    refcnt: 0,
    use: 0,
    window: 0,
    mtu: 0,
    version: 4,
  });
  assert.equal(routes[1]!.mask, "255.255.255.0");
  assert.equal(routes.length, 2);
});

Deno.test("IPv6 route numbers are C ints: metric ffffffff is -1 and high flags sign-extend", () => {
  const routes = parseRouteV6(Deno.readTextFileSync(`${ROOT}proc/net/ipv6_route`));
  const defaultRoute = routes.find((r) => r.nexthop === "fd00::1")!;
  assert.deepEqual(defaultRoute, {
    iface: "eth0",
    destination: "::",
    metric: 1024,
    flags: 3,
    refcnt: 2,
    use: 0,
    desprefixlen: "0",
    source: "::",
    srcprefixlen: "0",
    nexthop: "fd00::1",
    version: 6,
  });
  const local = routes.find((r) => r.destination === "fe80::fc:ff:fe00:1")!;
  assert.equal(local.flags, 18446744071564165121n);
  assert.equal(local.desprefixlen, "128");
  assert.equal(routes.at(-1)!.metric, -1);
});

Deno.test("guest-network-get-route lists IPv4 then IPv6 routes", async () => {
  const routes = await getRoutes(captured());
  assert.deepEqual(routes.map((r) => r.version), [4, 4, 6, 6, 6, 6, 6, 6, 6, 6]);
  const reply = successReply(routes.slice(5, 6), guestNetworkGetRoute.returns, undefined);
  assert.match(reply, /"flags": 18446744071564165121,/);
});

Deno.test("guest-network-get-route fails when a route file cannot be opened", async () => {
  const ctx = fakeContext({
    sys: failing(captured(), "/proc/net/ipv6_route", "ENOENT", "No such file or directory"),
  });
  await assert.rejects(Promise.resolve(guestNetworkGetRoute.handler({}, ctx)), {
    message: 'open("/proc/net/ipv6_route"): No such file or directory',
  });
});

Deno.test("guest-network-get-interfaces takes one snapshot: the fixture's, addresses from network_interfaces.json", async () => {
  let snapshots = 0;
  const base = captured();
  const sys = new Proxy(base, {
    get: (t, prop: keyof SystemAccess) => {
      if (prop === "netSnapshot") {
        return () => {
          snapshots++;
          return t.netSnapshot();
        };
      }
      if (prop === "readFile" || prop === "readTextFile" || prop === "readDir") {
        return () => Promise.reject(new Error(`the handler read ${String(prop)} itself`));
      }
      return t[prop].bind(t);
    },
  });
  const list = await guestNetworkGetInterfaces.handler({}, fakeContext({ sys }));
  assert.equal(snapshots, 1);
  assert.deepEqual(list, getInterfaces(await snapOf(captured(), capturedAddresses())));
});
