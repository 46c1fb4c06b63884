/**
 * The Debian package in a guest whose init is systemd (issue 16): the host builds the .deb
 * with scripts/package.sh (as `npm run package` does) and boots the systemd guest
 * (guest.ts: QEMU/TCG, the host's root read-only under an overlay whose upper layer is a
 * state disk, Debian's qemu-guest-agent masked). In the guest the scenarios run `dpkg` and
 * systemctl/kill as an operator would, through the out-of-band probe runner; the host talks
 * to the agent through the virtio-serial chardev and unplugs/replugs the port through QMP.
 * One test, one step per scenario, two boots of the same disks (the second proves that the
 * installed agent starts on its own at boot, and reads the first boot's journal). The host is
 * never changed: nothing is installed on it.
 *
 * Timing. Issue 16's bounds (an answer within 5 s of kill -9, within 30 s of boot) are for a
 * guest that runs at native speed. Under TCG, Deno starts 20-40 times slower: the test
 * measures, in the same guest, how long the installed agent and helper take to start
 * ({@linkcode startupCost}, 0.3 s natively). When that is at most 1 s the bounds are asserted
 * as written. Otherwise each is split: what systemd controls is asserted as written (the
 * restart after RestartSec=, the start when the port appears), and the agent's own start-up is
 * asserted against the measured cost. Every figure is printed at the end.
 *
 * Needs qemu-system-x86_64, a kernel in /boot with its modules, a static busybox, mkfs.ext4
 * and dpkg-dev (apt-get install qemu-system-x86 linux-image-amd64 busybox-static e2fsprogs
 * dpkg-dev). Boot 45-60 s, the whole test 6-9 min under TCG; every VM run has a hard timeout.
 * QGA_E2E_KEEP=1 keeps the temp dir (disks, consoles, shares) for a look.
 *
 * Run: npm test -- tests/e2e_systemd/
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Vm } from "../e2e/vm.ts";
import { makeDisks, PORT_DEVICE, PORT_ID, qmpSocket, startSystemdVm } from "./guest.ts";
import { AgentLink, Qmp } from "./host.ts";

const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const LIB = "/usr/lib/deno-qga";
const UNIT_FILE = "/lib/systemd/system/deno-qga.service";
const CONF = "/etc/qemu/qemu-ga.conf";
const PORT = "/dev/virtio-ports/org.qemu.guest_agent.0";
const DEVICE_UNIT = "dev-virtio\\x2dports-org.qemu.guest_agent.0.device";
/** Hard limits on each QEMU run. */
const BOOT1_TIMEOUT_MS = 1_200_000;
const BOOT2_TIMEOUT_MS = 400_000;
/** How long the guest may take to reach multi-user.target (45-60 s measured). */
const READY_MS = 300_000;
/** A program the changed config lets guest-exec run (guest-exec is off without a list). */
const EXEC_PROGRAM = "/usr/bin/uptime";
/** The config an operator changes before the upgrade. */
const CHANGED_CONF = `[general]\nexec-programs=${EXEC_PROGRAM}\n`;
/** Paths of the upper layer that change on their own while the guest runs. */
const CHURN = [/^var\/log\/journal\//];
/** Start-up cost up to which the guest counts as running at native speed (ms). */
const NATIVE_STARTUP_MS = 1_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Figures for the report (printed at the end). */
const timings: string[] = [];
function note(what: string, ms: number): void {
  timings.push(`${what}: ${(ms / 1000).toFixed(1)} s`);
}

async function run(cmd: string, args: string[]): Promise<string> {
  const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  assert.equal(o.code, 0, `${cmd} ${args.join(" ")}:\n${d.decode(o.stdout)}${d.decode(o.stderr)}`);
  return d.decode(o.stdout);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Builds the package as `npm run package` does, into `out`; returns the .deb's path. */
async function buildPackage(out: string, version?: string): Promise<string> {
  const args = [`${REPO}/scripts/package.sh`, "--out", out];
  if (version) args.push("--version", version);
  const said = await run("sh", args);
  const m = /built (\S+\.deb)$/m.exec(said);
  assert.ok(m, said);
  return m[1]!;
}

/** Shell functions every guest script starts with. */
const PRELUDE = `set -u
U=/proc/$(cat /e2e/upper.pid)/root/mnt/upper/u
section() { echo "== $1"; }
# the guest's changes: the overlay's upper layer (type, path), sorted
snapshot() { (cd "$U" && find . -mindepth 1 -printf '%y %P\\n') | LC_ALL=C sort; }
unit() {
  systemctl show -p ActiveState,SubState,MainPID,NRestarts,ExecMainStartTimestampMonotonic \\
    deno-qga.service
}
mono() { systemctl show -p ActiveEnterTimestampMonotonic --value "$1"; }
`;

/** A guest script's output cut at its `== name` lines. */
function sections(out: string): Map<string, string> {
  const m = new Map<string, string>();
  let name = "";
  const lines = out.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) {
    const h = /^== (.*)$/.exec(line);
    if (h) {
      name = h[1]!;
      m.set(name, "");
    } else m.set(name, (m.get(name) ?? "") + line + "\n");
  }
  return m;
}

/** `systemctl show` key=value lines. */
function props(text: string | undefined): Record<string, string> {
  const o: Record<string, string> = {};
  for (const l of (text ?? "").split("\n")) {
    const i = l.indexOf("=");
    if (i > 0) o[l.slice(0, i)] = l.slice(i + 1);
  }
  return o;
}

let probeCount = 0;
/** Runs a script in the guest (out of band, as root) and waits for it. */
async function guest(vm: Vm, script: string, ms = 120_000): Promise<{ rc: number; out: string }> {
  const id = `s${++probeCount}`;
  const r = await (await vm.guestRun(id, PRELUDE + script)).finished(ms);
  if (!r) {
    throw new Error(
      `guest script ${id} did not finish within ${ms} ms:\n${script}\n` +
        `output so far:\n${await vm.shareText(`probe/${id}.out`)}`,
    );
  }
  return r;
}

/** Like {@linkcode guest}, asserting exit status 0; returns the output's sections. */
async function guestOk(vm: Vm, script: string, ms = 120_000): Promise<Map<string, string>> {
  const r = await guest(vm, script, ms);
  assert.equal(r.rc, 0, `guest script failed (exit ${r.rc}):\n${script}\n${r.out}`);
  return sections(r.out);
}

/** The unit's state as systemd reports it. */
async function unitState(vm: Vm): Promise<Record<string, string>> {
  return props((await guestOk(vm, "unit")).get(""));
}

/**
 * How long the installed agent and its helper take to start in this guest (ms; the better
 * of two runs): `deno-qga.js -V`, then the helper launcher until it sees EOF, as the unit
 * runs them (cache in /var/cache/deno-qga). About 0.3 s at native speed.
 */
async function startupCost(vm: Vm): Promise<number> {
  const s = await guestOk(
    vm,
    `cd / && export DENO_DIR=/var/cache/deno-qga NO_COLOR=1
for i in 1 2; do
  a=$(date +%s%N)
  ${LIB}/deno run --no-prompt --no-config --allow-read --allow-env ${LIB}/deno-qga.js -V >/dev/null
  ${LIB}/helper/qga-helper </dev/null
  b=$(date +%s%N)
  echo $(( (b - a) / 1000000 ))
done`,
  );
  const ms = Math.min(...(s.get("") ?? "").trim().split("\n").map(Number));
  assert.ok(ms > 0, `no start-up measurement: ${s.get("")}`);
  note("agent + helper start-up in the guest (the emulator's speed)", ms);
  return ms;
}

interface Proc {
  pid: number;
  ppid: number;
  args: string;
}

function parsePs(text: string): Proc[] {
  return text.trim().split("\n").map((l) => {
    const m = /^\s*(\d+)\s+(\d+)\s+(.*)$/.exec(l);
    assert.ok(m, `ps line: ${l}`);
    return { pid: Number(m[1]), ppid: Number(m[2]), args: m[3]! };
  });
}

/**
 * The processes that run with every permission: each must be the helper, a descendant of the
 * agent (the unit's main process) running a file of the package other than the agent's own
 * bundle; the agent itself must not have it. Returns them.
 */
function checkAllowAll(procs: Proc[], mainPid: number): Proc[] {
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const main = byPid.get(mainPid);
  assert.ok(main, `the unit's main pid ${mainPid} is not in ps`);
  assert.ok(main.args.includes(`${LIB}/deno-qga.js`), `main process: ${main.args}`);
  const allowAll = procs.filter((p) => /(^|\s)(--allow-all|-A)(\s|$)/.test(p.args));
  for (const p of allowAll) {
    let up = byPid.get(p.ppid);
    let hops = 0;
    while (up && up.pid !== mainPid && hops++ < 5) up = byPid.get(up.ppid);
    assert.ok(
      up?.pid === mainPid && p.pid !== mainPid,
      `a process with --allow-all that is not the agent's helper: ${p.pid} ${p.args}`,
    );
    assert.ok(
      p.args.includes(`${LIB}/`) && !p.args.includes(`${LIB}/deno-qga.js`),
      `--allow-all process runs no helper file of the package: ${p.args}`,
    );
  }
  return allowAll;
}

/** guest-info's disabled commands. */
async function disabledCommands(link: AgentLink): Promise<string[]> {
  const info = await link.ok("guest-info") as {
    supported_commands: { name: string; enabled: boolean }[];
  };
  return info.supported_commands.filter((c) => !c.enabled).map((c) => c.name).sort();
}

/** Snapshot text -> path -> type. */
function parseSnapshot(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of text.split("\n")) if (l.length > 2) m.set(l.slice(2), l[0]!);
  return m;
}

/** systemd's time span text ("2s", "500ms", "1min 30s") in ms. */
function spanMs(text: string): number {
  const unit: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000 };
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d+)?)\s*(us|ms|s|min|h)\b/g)) {
    ms += Number(m[1]) * unit[m[2]!]!;
  }
  return ms;
}

Deno.test({
  name: "the Debian package in a systemd guest: install, restart, freeze, replug, upgrade, " +
    "remove, purge, reinstall, shutdown, and start at boot",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    for (const tool of ["dpkg-deb", "dpkg-shlibdeps"]) {
      assert.ok(
        (await new Deno.Command("sh", { args: ["-c", `command -v ${tool}`] }).output()).success,
        `${tool} is missing: apt-get install dpkg-dev`,
      );
    }
    const dir = await Deno.makeTempDir({ prefix: "qga-e2e-deb." });
    const keep = Deno.env.get("QGA_E2E_KEEP") !== undefined;
    let vm: Vm | undefined;
    let link: AgentLink | undefined;
    let qmp: Qmp | undefined;
    let boots = 0;
    const closeVm = async () => {
      await link?.close();
      await qmp?.close();
      link = qmp = undefined;
      if (vm && keep) {
        const to = `${dir}/boot${++boots}`;
        await Deno.mkdir(to);
        await Deno.copyFile(`${vm.dir}/console.log`, `${to}/console.log`).catch(() => {});
        await run("cp", ["-r", vm.share, `${to}/share`]).catch(() => {});
      }
      await vm?.dispose();
      vm = undefined;
    };
    const diagnostics = async () =>
      vm
        ? `\nconsole (end):\n${(await vm.console()).slice(-4000)}\nrunner log:\n${await vm
          .shareText("runner.log")}`
        : "";
    try {
      let t0 = Date.now();
      const deb = await buildPackage(`${dir}/v1`);
      note("package.sh (bundle + dpkg-deb, host)", Date.now() - t0);
      const debName = deb.slice(deb.lastIndexOf("/") + 1);
      const version = /^deno-qga_([^_]+)_/.exec(debName)![1]!;
      const debFiles = (await run("dpkg-deb", ["-c", deb])).trim().split("\n")
        .map((l) => l.replace(/^.* \.\//, "").replace(/\/$/, "")).filter((p) => p !== "");
      const disks = await makeDisks(dir);

      t0 = Date.now();
      vm = await startSystemdVm(disks, { timeoutMs: BOOT1_TIMEOUT_MS });
      // The upgrade's package, built while the guest boots.
      const upgradeVersion = `${version}+e2e.1`;
      const upgradeBuild = buildPackage(`${dir}/v2`, upgradeVersion);
      upgradeBuild.catch(() => {});
      link = await AgentLink.open(vm.sockets.denoVirtio);
      qmp = await Qmp.connect(qmpSocket(vm));
      const v = vm;
      const l = link;
      const q = qmp;

      let ok = await t.step("systemd boots as PID 1 with qemu-guest-agent masked", async () => {
        try {
          await v.waitReady(READY_MS);
        } catch (e) {
          throw new Error(`${(e as Error).message}${await diagnostics()}`);
        }
        note("boot 1: QEMU start to multi-user.target", Date.now() - t0);
        const s = await guestOk(
          v,
          `section pid1; cat /proc/1/comm
section ref; systemctl is-enabled qemu-guest-agent.service || true
section state; systemctl is-system-running || true
section virt; systemd-detect-virt || true
section udev; udevadm info -q property ${PORT} | grep -E '^(TAGS|SYSTEMD_WANTS)=' || true`,
        );
        assert.equal(s.get("pid1")?.trim(), "systemd");
        assert.equal(s.get("ref")?.trim(), "masked");
        assert.match(s.get("state") ?? "", /^(running|degraded)$/m);
        // A VM, not a container: systemd skips its sync before power-off in a container, and
        // the next boot then finds what was written last (the unit postinst renders) empty.
        assert.equal(s.get("virt")?.trim(), "qemu", "systemd-detect-virt");
        // systemd's own 99-systemd.rules tags every vport; without the package nothing wants
        // a unit for the port (qemu-guest-agent's rule is masked).
        assert.doesNotMatch(s.get("udev") ?? "", /SYSTEMD_WANTS/, s.get("udev") ?? "");
      });
      if (!ok) throw new Error("the guest did not boot");

      await Deno.copyFile(deb, `${v.share}/${debName}`);
      let before = new Map<string, string>();
      let mainPid = 0;
      let cost = 0;
      let disabledAfterInstall: string[] = [];
      /** The agent's own start-up budget: `literal` at native speed, else `k` x the cost. */
      const agentBudget = (literal: number, k: number) =>
        cost <= NATIVE_STARTUP_MS ? literal : k * cost + 1_000;

      await t.step(
        "dpkg -i, and nothing else: systemd starts the agent and it answers guest-ping",
        async () => {
          await guestOk(v, "snapshot > /e2e/before.txt");
          before = parseSnapshot(await v.shareText("before.txt"));
          const t1 = Date.now();
          const answered = l.sync(300_000, 1000);
          answered.catch(() => {});
          const inst = await guest(v, `dpkg -i /e2e/${debName}`, 300_000);
          const installed = Date.now();
          assert.equal(inst.rc, 0, `dpkg -i failed:\n${inst.out}`);
          note("dpkg -i (guest)", installed - t1);
          const at = await answered;
          note("from dpkg -i's end to the agent's first answer", Math.max(0, at - installed));
          assert.deepEqual(await l.ok("guest-ping"), {});
          const s = await guestOk(
            v,
            `section active; systemctl is-active deno-qga.service || true
section device; systemctl is-active '${DEVICE_UNIT}' || true
section udev; udevadm info -q property ${PORT} | grep -E '^(TAGS|SYSTEMD_WANTS)='
section unit; unit
section ps; ps -eo pid=,ppid=,args=`,
          );
          assert.equal(s.get("active")?.trim(), "active");
          assert.equal(s.get("device")?.trim(), "active", "the port's device unit");
          assert.match(s.get("udev") ?? "", /^TAGS=.*:systemd:/m, s.get("udev") ?? "");
          assert.match(
            s.get("udev") ?? "",
            /^SYSTEMD_WANTS=.*\bdeno-qga\.service\b/m,
            s.get("udev") ?? "",
          );
          mainPid = Number(props(s.get("unit")).MainPID);
          const helpers = checkAllowAll(parsePs(s.get("ps") ?? ""), mainPid);
          timings.push(
            `processes with --allow-all beside the agent: ${helpers.length} (the helper)`,
          );
          disabledAfterInstall = await disabledCommands(l);
          // guest-exec is off until the config lists programs (--exec-programs).
          assert.ok(disabledAfterInstall.includes("guest-exec"), `${disabledAfterInstall}`);
          cost = await startupCost(v);
        },
      );

      await t.step(
        "kill -9 of the agent: systemd restarts it and guest-sync succeeds (within 5 s at native speed)",
        async () => {
          await l.sync(120_000);
          const u0 = await unitState(v);
          const restartSec = spanMs(
            (await guestOk(v, "systemctl show -p RestartUSec --value deno-qga")).get("") ?? "",
          );
          const id = `kill${++probeCount}`;
          await v.guestRun(
            id,
            `k=$(cut -d' ' -f1 /proc/uptime); kill -9 ${u0.MainPID} && echo "killed $k"`,
          );
          let killedAt = 0;
          let killedUptime = 0;
          const until = Date.now() + 60_000;
          while (!killedAt && Date.now() < until) {
            const m = /killed ([\d.]+)/.exec(await v.shareText(`probe/${id}.out`));
            if (m) {
              killedAt = Date.now();
              killedUptime = Number(m[1]) * 1000;
            } else await sleep(50);
          }
          assert.ok(killedAt, `the guest did not kill ${u0.MainPID}`);
          const at = await l.sync(120_000, 250);
          const total = at - killedAt;
          const u = await unitState(v);
          assert.notEqual(u.MainPID, u0.MainPID);
          assert.equal(Number(u.NRestarts), Number(u0.NRestarts) + 1);
          assert.equal(u.ActiveState, "active");
          const restartDelay = Number(u.ExecMainStartTimestampMonotonic) / 1000 - killedUptime;
          note("kill -9 to the restarted agent's answer (host)", total);
          note("kill -9 to systemd's restart of the agent (guest)", restartDelay);
          // systemd: the restart comes RestartSec= after the death.
          assert.ok(restartDelay <= restartSec + 1_500, `restarted after ${restartDelay} ms`);
          if (cost <= NATIVE_STARTUP_MS) assert.ok(total <= 5_000, `answered after ${total} ms`);
          else {
            assert.ok(
              total - restartDelay <= agentBudget(3_000, 2),
              `the restarted agent answered ${total - restartDelay} ms after it was started ` +
                `(start-up cost ${cost} ms)`,
            );
          }
        },
      );

      await t.step("frozen state survives systemctl restart deno-qga, and thaw works", async () => {
        await l.sync(120_000);
        const m = await guestOk(v, "findmnt -n -o SOURCE,FSTYPE /data");
        assert.match(m.get("") ?? "", /ext4/, "the data disk is not mounted at /data");
        const frozen = await l.ok("guest-fsfreeze-freeze") as number;
        assert.ok(frozen >= 1, `froze ${frozen} filesystems`);
        assert.equal(await l.ok("guest-fsfreeze-status"), "frozen");
        const u0 = await unitState(v);
        const t1 = Date.now();
        const s = await guestOk(v, "systemctl restart deno-qga.service; section unit; unit");
        const u = props(s.get("unit"));
        assert.equal(u.ActiveState, "active");
        assert.notEqual(u.MainPID, u0.MainPID, "not restarted");
        await l.sync(120_000);
        note("systemctl restart while frozen, to the new agent's answer", Date.now() - t1);
        assert.equal(await l.ok("guest-fsfreeze-status"), "frozen");
        // ... and the filesystem really is frozen: a write to it waits for the thaw.
        const w = await v.guestRun(`w${++probeCount}`, "touch /data/after-restart && echo written");
        assert.ok(await w.started(30_000));
        assert.equal(await w.finished(3_000), undefined, "a write to /data went through");
        const thawed = await l.ok("guest-fsfreeze-thaw") as number;
        assert.ok(thawed >= 1, `thawed ${thawed}`);
        assert.equal(await l.ok("guest-fsfreeze-status"), "thawed");
        const done = await w.finished(60_000);
        assert.equal(done?.rc, 0, `the write after the thaw: ${JSON.stringify(done)}`);
      });

      await t.step(
        "virtio-serial unplug stops the unit, replug starts it, the host talks to the new agent",
        async () => {
          await l.sync(120_000);
          const u0 = await unitState(v);
          await q.execute("device_del", { id: PORT_ID });
          await q.waitEvent("DEVICE_DELETED", 30_000);
          const s = await guestOk(
            v,
            `i=0; while systemctl -q is-active deno-qga.service && [ $i -lt 120 ]; do sleep 0.5; i=$((i+1)); done
section state; systemctl is-active deno-qga.service || true
section port; ls ${PORT} 2>&1 || true`,
          );
          assert.equal(
            s.get("state")?.trim(),
            "inactive",
            "the unit is still running after unplug",
          );
          assert.match(s.get("port") ?? "", /No such file/);
          const t1 = Date.now();
          await q.execute("device_add", { ...PORT_DEVICE });
          await l.sync(120_000);
          note("replug to the new agent's answer", Date.now() - t1);
          assert.deepEqual(await l.ok("guest-ping"), {});
          const u = await unitState(v);
          assert.equal(u.ActiveState, "active");
          assert.notEqual(u.MainPID, u0.MainPID);
        },
      );

      await t.step(
        "dpkg -i of a newer version restarts the agent and keeps a changed config",
        async () => {
          const deb2 = await upgradeBuild;
          const deb2Name = deb2.slice(deb2.lastIndexOf("/") + 1);
          await Deno.copyFile(deb2, `${v.share}/${deb2Name}`);
          await Deno.writeTextFile(`${v.share}/changed.conf`, CHANGED_CONF);
          await l.sync(120_000);
          const u0 = await unitState(v);
          const t1 = Date.now();
          const s = await guestOk(
            v,
            `cp /e2e/changed.conf ${CONF}
section dpkg; dpkg -i /e2e/${deb2Name}
section version; dpkg-query -W -f='\${Version}\\n' deno-qga
section conf; cat ${CONF}
section etc; ls /etc/qemu
section exec; sed -n 's/^ExecStart=//p' ${UNIT_FILE}
section render; ${LIB}/render-unit --lib ${LIB} --template ${LIB}/deno-qga.service.in --out /dev/null
section unit; unit`,
            300_000,
          );
          note("dpkg -i of the upgrade (guest)", Date.now() - t1);
          assert.equal(s.get("version")?.trim(), upgradeVersion);
          assert.equal(s.get("conf"), CHANGED_CONF, "the changed config was not kept");
          assert.doesNotMatch(s.get("etc") ?? "", /dpkg-(dist|new|old)/, "dpkg left config copies");
          // The unit runs what the installed agent prints for the config as it is now.
          assert.equal(
            s.get("exec"),
            s.get("render"),
            "ExecStart= is not rendered from the config",
          );
          const u = props(s.get("unit"));
          assert.equal(u.ActiveState, "active");
          assert.notEqual(u.MainPID, u0.MainPID, "the agent was not restarted");
          await l.sync(120_000);
          assert.deepEqual(
            await disabledCommands(l),
            disabledAfterInstall.filter((c) => !c.startsWith("guest-exec")),
            "the restarted agent does not run with the changed config",
          );
          const pid = (await l.ok("guest-exec", { path: EXEC_PROGRAM, "capture-output": true }) as {
            pid: number;
          }).pid;
          let st: { exited?: boolean; exitcode?: number } = {};
          for (let i = 0; i < 100 && !st.exited; i++) {
            st = await l.ok("guest-exec-status", { pid }) as typeof st;
            if (!st.exited) await sleep(200);
          }
          assert.deepEqual([st.exited, st.exitcode], [true, 0], JSON.stringify(st));
        },
      );

      await t.step(
        "dpkg -r stops the agent and keeps only the config; dpkg -P leaves no file of the package",
        async () => {
          const r = await guestOk(
            v,
            `section enable; systemctl enable deno-qga.service
section remove; dpkg -r deno-qga
section status; dpkg-query -W -f='\${Status}\\n' deno-qga
section active; systemctl is-active deno-qga.service || true
section procs; ps -eo args= | grep -F '${LIB}/' | grep -v grep || true
section conf; cat ${CONF}
section left; for p in ${LIB} ${UNIT_FILE} /lib/udev/rules.d/99-deno-qga.rules /run/deno-qga /var/cache/deno-qga; do [ -e "$p" ] && echo "$p"; done; true`,
            300_000,
          );
          // (An operator may have enabled it, though udev starts it: purge removes that too.)
          assert.match(r.get("enable") ?? "", /Created symlink/, r.get("enable") ?? "");
          assert.equal(r.get("status")?.trim(), "deinstall ok config-files");
          assert.notEqual(r.get("active")?.trim(), "active");
          assert.equal(r.get("procs")?.trim(), "", "agent processes left after dpkg -r");
          assert.equal(r.get("conf"), CHANGED_CONF, "dpkg -r removed the config");
          assert.equal(r.get("left")?.trim(), "", "left after dpkg -r");

          const p = await guestOk(
            v,
            `section purge; dpkg -P deno-qga
section status; dpkg-query -W -f='\${Status}\\n' deno-qga 2>&1 || true
section run; find /run /var/cache -name '*deno-qga*' 2>/dev/null; true
snapshot > /e2e/after.txt`,
            300_000,
          );
          assert.doesNotMatch(
            p.get("status") ?? "",
            /install ok|config-files/,
            p.get("status") ?? "",
          );
          assert.equal(p.get("run")?.trim(), "", "run-time files left");
          const after = parseSnapshot(await v.shareText("after.txt"));
          // Every path the package ships: gone, unless the host's root (the overlay's lower
          // layer) has it too (/usr, /etc/qemu, ...).
          for (const f of debFiles) {
            if (after.has(f) && !await exists(`/${f}`)) assert.fail(`/${f} of the package remains`);
          }
          // Anything new in the guest since before the install: none but the journal's growth
          // and what the host's root has too (directories and files the overlay copied up).
          const left: string[] = [];
          for (const [path, type] of after) {
            if (before.has(path) || CHURN.some((re) => re.test(path))) continue;
            if (type !== "c" && await exists(`/${path}`)) continue;
            left.push(`${type} /${path}`);
          }
          assert.deepEqual(left, [], `left behind after purge:\n${left.join("\n")}`);
        },
      );

      await t.step("a second install works", async () => {
        const t1 = Date.now();
        const answered = l.sync(300_000, 1000);
        answered.catch(() => {});
        const s = await guestOk(
          v,
          `section dpkg; dpkg -i /e2e/${debName}
section conf; cat ${CONF}`,
          300_000,
        );
        assert.equal(
          s.get("conf"),
          await Deno.readTextFile(`${REPO}/packaging/deno-qga.conf.example`),
          "the config is not the package's again",
        );
        await answered;
        note("second dpkg -i to the agent's answer", Date.now() - t1);
        assert.deepEqual(await l.ok("guest-ping"), {});
        assert.equal((await unitState(v)).ActiveState, "active");
      });

      ok = await t.step("guest-shutdown powers the systemd guest off (QEMU exits)", async () => {
        await l.sync(120_000);
        const t1 = Date.now();
        await l.send("guest-shutdown");
        const status = await v.waitExit(180_000);
        assert.ok(status, `QEMU still runs 180 s after guest-shutdown${await diagnostics()}`);
        assert.equal(status.code, 0);
        note("guest-shutdown to QEMU's exit", Date.now() - t1);
        const con = await v.console();
        assert.match(con, /Reached target .*poweroff\.target/);
        assert.match(con, /reboot: Power down/);
      });
      await closeVm();
      if (!ok) return;

      // Boot 2: the same disks. Nothing is run in the guest before the agent answers.
      t0 = Date.now();
      vm = await startSystemdVm(disks, { timeoutMs: BOOT2_TIMEOUT_MS });
      const v2 = vm;
      link = await AgentLink.open(v2.sockets.denoVirtio);
      const l2 = link;
      await t.step(
        "after a reboot the installed agent answers with no command (within 30 s of boot at native speed)",
        async () => {
          let at: number;
          try {
            at = await l2.sync(READY_MS, 1000);
          } catch (e) {
            const r = await guest(
              v2,
              `systemd-detect-virt; systemctl status deno-qga.service --no-pager 2>&1 | head -20
ls -la ${UNIT_FILE} /dev/virtio-ports/; journalctl -b -u deno-qga.service --no-pager | tail -20`,
              60_000,
            ).then((r) => r.out, (e2) => `(no guest diagnostics: ${(e2 as Error).message})`);
            throw new Error(`${(e as Error).message}\nin the guest:\n${r}${await diagnostics()}`);
          }
          // The guest's clock at (just after) the first answer: the agent's start-up is
          // measured on the guest's clocks, without QEMU's firmware and the kernel's load.
          const answeredNs = await l2.ok("guest-get-time") as number;
          note("boot 2: QEMU start to the agent's first answer", at - t0);
          assert.deepEqual(await l2.ok("guest-ping"), {});
          await v2.waitReady(READY_MS);
          note("boot 2: QEMU start to multi-user.target", Date.now() - t0);
          const s = await guestOk(
            v2,
            `section active; systemctl is-active deno-qga.service
section unit; unit
section device; mono '${DEVICE_UNIT}'
section basic; mono basic.target
section clock; echo "$(date +%s%N) $(cut -d' ' -f1 /proc/uptime)"`,
          );
          assert.equal(s.get("active")?.trim(), "active");
          const started = Number(props(s.get("unit")).ExecMainStartTimestampMonotonic) / 1000;
          const device = Number(s.get("device")?.trim()) / 1000;
          const basic = Number(s.get("basic")?.trim()) / 1000;
          note("boot 2: kernel start to the port's device unit (guest)", device);
          note("boot 2: kernel start to basic.target (guest)", basic);
          note("boot 2: kernel start to the agent's start (guest)", started);
          // systemd: started as soon as the port is there and the base system is up (the
          // unit's default dependencies), not at the end of the boot.
          assert.ok(
            started - Math.max(device, basic) <= 2_000,
            `started ${started} ms into the boot; port at ${device} ms, basic.target at ${basic} ms`,
          );
          cost = await startupCost(v2);
          if (cost <= NATIVE_STARTUP_MS) {
            assert.ok(at - t0 <= 30_000, `the agent answered ${at - t0} ms after QEMU started`);
          } else {
            // During the boot the agent shares the CPU with everything else that starts.
            // Both ends on the guest's clock: realtime at the answer, less the realtime of
            // the kernel's start (now - uptime), is the answer's monotonic time.
            const [nowNs = NaN, uptime = NaN] = (s.get("clock") ?? "").trim().split(" ").map(
              Number,
            );
            const answered = (answeredNs - nowNs) / 1e6 + uptime * 1000;
            assert.ok(answered > 0, `no guest clock reading: ${s.get("clock")}`);
            note("boot 2: the agent's start to its first answer (guest)", answered - started);
            assert.ok(
              answered - started <= agentBudget(3_000, 3),
              `the agent answered ${Math.round(answered - started)} ms after it was started ` +
                `during the boot (start-up cost ${cost} ms)`,
            );
          }
        },
      );

      await t.step(
        "the journal on the state disk shows the first boot's clean shutdown",
        async () => {
          const s = await guestOk(
            v2,
            `section boots; journalctl --list-boots --no-pager
section last; journalctl -b -1 --no-pager -o cat | tail -n 40
section agent; journalctl -b -1 --no-pager -o cat -u deno-qga.service | tail -n 20`,
          );
          const bootList = (s.get("boots") ?? "").trim().split("\n")
            .filter((x) => /^\s*-?\d+ /.test(x));
          assert.equal(bootList.length, 2, s.get("boots") ?? "");
          const last = s.get("last") ?? "";
          assert.match(last, /Reached target poweroff\.target/);
          assert.match(last, /Journal stopped/);
          assert.match(s.get("agent") ?? "", /Stopped deno-qga\.service/);
        },
      );
    } finally {
      console.log(`figures (tests/e2e_systemd):\n  ${timings.join("\n  ")}`);
      await closeVm();
      if (keep) console.error(`kept ${dir}`);
      else await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
