import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  guestGetHostName,
  guestGetOsinfo,
  guestGetTimezone,
  guestGetUsers,
  osInfo,
  osReleaseValue,
  parseUtmp,
  unameMachine,
} from "../../commands/identity.ts";
import { localZone, parsePosixTz, zoneFromPosixTz, zoneFromTzif } from "../../commands/timezone.ts";
import { FixtureSystem } from "../../system/fixture.ts";
import { fakeContext } from "../helpers/fake_context.ts";

// Captured from a Debian 12 VM by tests/fixtures/capture_identity.sh, with qemu-ga
// 7.2.22's replies on that machine in expected/.
const ROOT = fileURLToPath(new URL("../fixtures/identity/", import.meta.url));
const sys = new FixtureSystem(ROOT);
const expected = (name: string) =>
  JSON.parse(Deno.readTextFileSync(`${ROOT}expected/${name}`)).return;

Deno.test("guest-get-users matches qemu-ga on the captured utmp", async () => {
  const ctx = fakeContext({ sys });
  assert.deepEqual(await guestGetUsers.handler({}, ctx), expected("users.json"));
});

Deno.test("guest-get-users keeps the earliest login of a repeated user", () => {
  const users = parseUtmp(Deno.readFileSync(`${ROOT}var/run/utmp`));
  assert.deepEqual(users.map((u) => u.user), ["alice", "bob"]);
  assert.equal(users[0]!["login-time"], 1735693200.25);
});

Deno.test("guest-get-users ignores a partial trailing record", () => {
  const data = Deno.readFileSync(`${ROOT}var/run/utmp`);
  assert.deepEqual(parseUtmp(data.subarray(0, 384 * 2 + 100)), [{
    user: "alice",
    "login-time": 1735700645.1,
  }]);
});

Deno.test("guest-get-users answers [] without a utmp file", async () => {
  const empty = await Deno.makeTempDir();
  try {
    const ctx = fakeContext({ sys: new FixtureSystem(empty) });
    assert.deepEqual(await guestGetUsers.handler({}, ctx), []);
  } finally {
    await Deno.remove(empty);
  }
});

Deno.test("guest-get-host-name returns the kernel's host name as qemu-ga did at the capture", async () => {
  const ctx = fakeContext({ sys });
  assert.deepEqual(
    { return: await guestGetHostName.handler({}, ctx) },
    JSON.parse(Deno.readTextFileSync(`${ROOT}expected/host-name.json`)),
  );
});

const tzLines = Deno.readTextFileSync(`${ROOT}expected/timezone.jsonl`).trim().split("\n").map((
  l,
) =>
  JSON.parse(l) as { tz: string; now: number; reply: { return: { zone: string; offset: number } } }
);
for (const { tz, now, reply } of tzLines) {
  Deno.test(`guest-get-timezone with TZ=${tz} matches qemu-ga's reply at the capture time`, async () => {
    const z = await localZone(sys, { tz: tz === "UNSET" ? undefined : tz, tzdir: undefined }, now);
    assert.deepEqual(z, reply.return);
  });
}

const NOV_2026 = 1795783350; // 2026-11-27, the capture time
const JUL_2026 = 1784000000; // 2026-07-14
const LIVE_RULES: [string, number, { zone: string; offset: number }][] = [
  // replies of qemu-ga 7.2.22 with these TZ values on 2026-11-27 (see the report)
  ["<+0330>-3:30", NOV_2026, { zone: "+0330", offset: 12600 }],
  ["AEST-10AEDT,M10.1.0,M4.1.0/3", NOV_2026, { zone: "AEDT", offset: 39600 }],
  ["EST+5EDT,M3.2.0/2,M11.1.0/2", NOV_2026, { zone: "EST", offset: -18000 }],
  ["<-03>3<-02>,M3.5.0/-2,M10.5.0/-1", NOV_2026, { zone: "-03", offset: -10800 }],
  ["UTC0", NOV_2026, { zone: "UTC", offset: 0 }],
  ["XYZ5ABC", NOV_2026, { zone: "UTC", offset: 0 }],
  ["ab5", NOV_2026, { zone: "UTC", offset: 0 }],
  ["ABC", NOV_2026, { zone: "UTC", offset: 0 }],
  ["", NOV_2026, { zone: "UTC", offset: 0 }],
  [":Asia/Kolkata", NOV_2026, { zone: "IST", offset: 19800 }],
  ["Foo/Bar", NOV_2026, { zone: "UTC", offset: 0 }],
  // summer: the same rules switch over
  ["EST+5EDT,M3.2.0/2,M11.1.0/2", JUL_2026, { zone: "EDT", offset: -14400 }],
  ["AEST-10AEDT,M10.1.0,M4.1.0/3", JUL_2026, { zone: "AEST", offset: 36000 }],
];
for (const [tz, now, want] of LIVE_RULES) {
  Deno.test(`guest-get-timezone with TZ='${tz}' gives ${want.zone} ${want.offset}`, async () => {
    assert.deepEqual(await localZone(sys, { tz, tzdir: undefined }, now), want);
  });
}

Deno.test("TZif transitions and the footer rule agree around New York's DST changes", () => {
  const ny = Deno.readFileSync(`${ROOT}usr/share/zoneinfo/America/New_York`);
  const rule = parsePosixTz("EST5EDT,M3.2.0,M11.1.0")!;
  // 2026-03-08 07:00 UTC is 02:00 EST; 2026-11-01 06:00 UTC is 02:00 EDT
  for (const t of [1772953199, 1772953200, 1793512799, 1793512800, 2200000000, 4102444800]) {
    assert.deepEqual(zoneFromTzif(ny, t), zoneFromPosixTz(rule, t), `at ${t}`);
  }
  assert.deepEqual(zoneFromTzif(ny, 1772953200), { zone: "EDT", offset: -14400 });
  assert.deepEqual(zoneFromTzif(ny, 1793512800), { zone: "EST", offset: -18000 });
});

Deno.test("a file that is not TZif is not taken for a zone", () => {
  assert.equal(zoneFromTzif(new TextEncoder().encode("ID=debian\n"), 0), null);
});

Deno.test("guest-get-timezone reads /etc/localtime when TZ is unset", async () => {
  const ctx = fakeContext({ sys });
  const saved = Deno.env.get("TZ");
  Deno.env.delete("TZ");
  try {
    assert.deepEqual(await guestGetTimezone.handler({}, ctx), { zone: "UTC", offset: 0 });
  } finally {
    if (saved !== undefined) Deno.env.set("TZ", saved);
  }
});

const UNAME = {
  release: "6.18.44-fc-v595",
  version: "#1 SMP PREEMPT_DYNAMIC @0",
  machine: "x86_64",
};
for (const name of ["upstream", "crlf", "groups", "invalid-line", "not-utf8", "quotes"]) {
  Deno.test(`guest-get-osinfo matches qemu-ga on the ${name} os-release`, async () => {
    const got = await osInfo(sys, { uname: UNAME, osReleaseEnv: `/os-release/${name}.os-release` });
    assert.deepEqual(got, expected(`osinfo-${name}.json`));
  });
}

Deno.test("guest-get-osinfo matches qemu-ga on edge values except the fixed single quotes", async () => {
  const got = await osInfo(sys, { uname: UNAME, osReleaseEnv: "/os-release/edge.os-release" });
  const want = expected("osinfo-edge.json");
  assert.equal(want.version, "'single"); // qemu-ga's bug
  assert.deepEqual(got, { ...want, version: "single quoted" });
});

Deno.test("guest-get-osinfo falls back to /usr/lib/os-release and reports the fixture system", async () => {
  const got = await osInfo(sys, { uname: UNAME, osReleaseEnv: undefined });
  assert.deepEqual(got, expected("osinfo.json"));
  const ctx = fakeContext({ sys });
  const live = await guestGetOsinfo.handler({}, ctx);
  assert.equal(live["kernel-version"], "#1 SMP PREEMPT_DYNAMIC @0");
  // The fixture's kernel (captured with the rest of the tree), never the machine running the test.
  const fixtureRelease = (await sys.readTextFile("/proc/sys/kernel/osrelease")).trim();
  assert.equal(fixtureRelease, UNAME.release);
  assert.equal(live["kernel-release"], fixtureRelease);
  assert.equal(live.id, "debian");
});

Deno.test("guest-get-osinfo with QGA_OS_RELEASE naming a missing file reports no os-release fields", async () => {
  const got = await osInfo(sys, { uname: UNAME, osReleaseEnv: "/nonexistent" });
  assert.deepEqual(got, {
    "kernel-release": UNAME.release,
    "kernel-version": UNAME.version,
    machine: "x86_64",
  });
});

Deno.test("os-release values are unquoted as qemu-ga does", () => {
  assert.equal(osReleaseValue('"a\\"b"rest'), 'a"b');
  assert.equal(osReleaseValue('"back\\nslash"'), "back\\nslash");
  assert.equal(osReleaseValue('"unterminated'), "unterminatedd");
  assert.equal(osReleaseValue("two words"), "two");
  assert.equal(osReleaseValue("a;b c"), "a");
  assert.equal(osReleaseValue("'it\\'s'"), "it's");
  assert.equal(osReleaseValue('"'), '"');
});

Deno.test("Deno's architectures map to uname machine names", () => {
  assert.equal(unameMachine("x86_64"), "x86_64");
  assert.equal(unameMachine("aarch64"), "aarch64");
  assert.equal(unameMachine("riscv64gc"), "riscv64");
});
