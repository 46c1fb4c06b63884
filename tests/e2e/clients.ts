/**
 * The client conversations of the e2e suite: what libvirt, Proxmox VE and KubeVirt send, byte
 * for byte (clients.md), and the real-guest facts (freeze blocks writes, fsinfo, reconnects,
 * isa-serial, power-off). Each conversation runs against one agent's host socket and records
 * its failures in a {@linkcode Conversation}; suite.ts runs every one against the reference
 * qemu-ga and against deno-qga in the same boot.
 *
 * @module
 */

import { Channel, excerpt } from "./channel.ts";
import { GUEST_FACTS, SHARE_FILES } from "./guest_script.ts";
import { intOf, isObject, Num, parseRaw, type Raw, type RawObject } from "./raw_json.ts";
import {
  Conversation,
  LibvirtSession,
  okReturn,
  perlBase64,
  pveCommand,
  type PveOptions,
  type PveReply,
  request,
  resync,
} from "./sessions.ts";
import {
  checkDataFs,
  checkDisks,
  checkFsinfo,
  checkGuestNetwork,
  checkHostname,
  checkInterfaces,
  checkOsinfo,
  checkTime,
  checkTimezone,
  checkUsers,
  checkVcpus,
  osReleaseId,
  stdBase64,
} from "./shapes.ts";
import type { Vm } from "./vm.ts";

/** The implementation under test. */
export type AgentName = "qemu-ga" | "deno-qga";

/** One agent in the booted guest. */
export interface Target {
  agent: AgentName;
  /** Host socket of its virtio-serial port. */
  virtio: string;
  /** Host socket of its isa-serial port. */
  isa: string;
  /** Share file with the command line the guest used (deno-qga only). */
  commandFile?: string;
  vm: Vm;
  /** Proxmox's id: `"$$" . "0" . $seq`, increasing. */
  pveId(): number;
}

/** A conversation of the suite. */
export interface ConversationSpec {
  /** Row title: client and what it does. */
  name: string;
  /**
   * A documented qemu-ga 7.2.22 limitation: why it cannot pass, and the failure text that
   * shows it is that limitation (any other failure on qemu-ga still counts).
   */
  limit72?: { why: string; evidence: RegExp };
  /** Runs only against deno-qga (the qemu-ga cell shows n/a). */
  denoOnly?: boolean;
  /** Runs the conversation; failures go into `c`. */
  run(c: Conversation, t: Target): Promise<void>;
}

const TEXT = new TextEncoder();
const UTF8 = new TextDecoder();

/** The 10 commands KubeVirt requires in guest-info (clients.md §3.1). */
export const KUBEVIRT_REQUIRED: readonly string[] = [
  "guest-ping",
  "guest-get-time",
  "guest-info",
  "guest-shutdown",
  "guest-network-get-interfaces",
  "guest-get-fsinfo",
  "guest-get-host-name",
  "guest-get-users",
  "guest-get-timezone",
  "guest-get-osinfo",
];

/** KubeVirt's raw-reply regexes (agent_parser.go). */
const KV_RETURN = /{\s*"return":\s*([{\[][\s\S]*[}\]])\s*}/;
const KV_STRING = /{\s*"return":\s*"([\s\S]*)"\s*}/;

async function libvirt(
  c: Conversation,
  t: Target,
  label = "libvirt",
): Promise<LibvirtSession | undefined> {
  return await LibvirtSession.open(c, t.virtio, label);
}

async function pve(
  c: Conversation,
  t: Target,
  command: string,
  args: Record<string, unknown> = {},
  options: PveOptions = {},
): Promise<PveReply | undefined> {
  return await pveCommand(c, t.virtio, t.pveId(), command, args, options);
}

/** Runs a shell script in the guest, outside any agent, and returns its output. */
async function guestSh(t: Target, id: string, script: string, ms = 20_000) {
  const run = await t.vm.guestRun(`${t.agent}-${id}`, script);
  return await run.finished(ms);
}

/** Verifies the user's shadow hash matches `password` (perl crypt in the guest). */
async function checkPassword(c: Conversation, t: Target, id: string, password: string) {
  const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
  const r = await guestSh(
    t,
    id,
    `h=$(getent shadow ${GUEST_FACTS.user} | cut -d: -f2)\n` +
      `perl -e 'exit(crypt($ARGV[0], $ARGV[1]) eq $ARGV[1] ? 0 : 1)' ${q(password)} "$h"\n`,
  );
  c.expect(
    r?.rc === 0,
    `the password of ${GUEST_FACTS.user} was not changed (checked in the guest: ${
      r ? `rc ${r.rc} ${r.out}` : "no answer"
    })`,
  );
}

function kvReturn(c: Conversation, what: string, compactText: string | undefined): Raw | undefined {
  if (compactText === undefined) return undefined;
  const m = KV_RETURN.exec(compactText);
  if (
    !c.expect(
      m !== null,
      `KubeVirt ${what}: the return regex does not match ${excerpt(compactText)}`,
    )
  ) {
    return undefined;
  }
  try {
    return parseRaw(m![1]!);
  } catch {
    c.fail(`KubeVirt ${what}: json.Unmarshal of the regex match fails`);
    return undefined;
  }
}

function unique(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** Thaws whatever is frozen (through the agent, then directly) after a failed freeze test. */
async function safetyThaw(t: Target): Promise<void> {
  const c = new Conversation();
  const s = await libvirt(c, t).catch(() => undefined);
  if (s) {
    await s.run("guest-fsfreeze-thaw", undefined, 30_000);
    await s.close(0);
  }
  await guestSh(t, unique("unfreeze"), `fsfreeze --unfreeze ${GUEST_FACTS.dataMount} || true\n`);
}

// ---------------------------------------------------------------------------------------------
// libvirt

const libvirtHandshake: ConversationSpec = {
  name: "libvirt: guest-sync handshake, no-arguments command, unknown command (W1 W2 W4 W7)",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const os = await s.run("guest-get-osinfo");
    c.kind(okReturn(c, "guest-get-osinfo", os), "object", "guest-get-osinfo.return");
    const bad = await s.run("guest-nonexistent");
    if (bad) {
      c.notBuilt.delete("guest-nonexistent");
      c.expect(
        bad.error?.class === "CommandNotFound" &&
          bad.error.desc === "The command guest-nonexistent has not been found",
        `guest-nonexistent: expected CommandNotFound "The command guest-nonexistent has not ` +
          `been found", got ${excerpt(bad.text)}`,
      );
      c.expect(!("id" in bad.value), `guest-nonexistent: reply carries an id: ${bad.text}`);
    }
    // a second sync on the same connection (older libvirt synced before every command)
    await s.sync(false);
    await s.close();
  },
};

const libvirtGarbage: ConversationSpec = {
  name: "libvirt: first sync with garbage on the channel (W6)",
  async run(c, t) {
    const ch = await Channel.connect(t.virtio);
    await ch.write("garbage}\n");
    await ch.close();
    const s = await libvirt(c, t);
    if (!s) return;
    const r = await s.run("guest-ping");
    c.kind(okReturn(c, "guest-ping", r), "object", "guest-ping.return");
    await s.close();
  },
};

const libvirtGuestinfo: ConversationSpec = {
  name: "libvirt: virsh guestinfo (users, os, timezone, hostname, filesystem, disk, interface)",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const osId = await osReleaseId();
    const get = async (cmd: string) => okReturn(c, cmd, await s.run(cmd));
    checkUsers(c, await get("guest-get-users"), "guest-get-users");
    checkOsinfo(c, await get("guest-get-osinfo"), "guest-get-osinfo", osId);
    checkTimezone(c, await get("guest-get-timezone"), "guest-get-timezone");
    checkHostname(c, await get("guest-get-host-name"), "guest-get-host-name");
    const fs = checkFsinfo(c, await get("guest-get-fsinfo"), "guest-get-fsinfo");
    checkDataFs(c, fs, "guest-get-fsinfo");
    checkDisks(c, await get("guest-get-disks"), "guest-get-disks");
    const ifs = checkInterfaces(
      c,
      await get("guest-network-get-interfaces"),
      "guest-network-get-interfaces",
    );
    checkGuestNetwork(c, ifs, "guest-network-get-interfaces");
    await s.close();
  },
};

const libvirtDomifaddr: ConversationSpec = {
  name: "libvirt: virsh domifaddr --source agent",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const r = await s.run("guest-network-get-interfaces");
    const ifs = checkInterfaces(
      c,
      okReturn(c, "guest-network-get-interfaces", r),
      "guest-network-get-interfaces",
    );
    checkGuestNetwork(c, ifs, "guest-network-get-interfaces");
    await s.close();
  },
};

const libvirtDomfsinfo: ConversationSpec = {
  name: "libvirt: virsh domfsinfo (/data on vda, serial QGATEST0, PCI 00:06.0)",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const r = await s.run("guest-get-fsinfo");
    const fs = checkFsinfo(c, okReturn(c, "guest-get-fsinfo", r), "guest-get-fsinfo");
    checkDataFs(c, fs, "guest-get-fsinfo");
    await s.close();
  },
};

const libvirtDomtime: ConversationSpec = {
  name: "libvirt: virsh domtime",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    checkTime(c, okReturn(c, "guest-get-time", await s.run("guest-get-time")), "guest-get-time");
    await s.close();
  },
};

const libvirtVcpus: ConversationSpec = {
  name: "libvirt: virsh guestvcpus, setvcpus --guest (offline and online vCPU 1)",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const online = async (id: number, on: boolean) => {
      const r = await s.run("guest-set-vcpus", { vcpus: [{ "logical-id": id, online: on }] });
      const n = okReturn(c, `guest-set-vcpus ${id} ${on}`, r);
      c.expect(
        n instanceof Num && n.source === "1",
        `guest-set-vcpus: expected the integer 1, got ${r?.text}`,
      );
    };
    const state = async () => {
      const v = checkVcpus(
        c,
        okReturn(c, "guest-get-vcpus", await s.run("guest-get-vcpus")),
        "guest-get-vcpus",
      );
      return v.find((o) => intOf(o["logical-id"]) === 1n)?.online;
    };
    if ((await state()) !== true) c.fail("guest-get-vcpus: vCPU 1 is not online at the start");
    await online(1, false);
    c.expect((await state()) === false, "vCPU 1 is still online after guest-set-vcpus");
    await online(1, true);
    c.expect((await state()) === true, "vCPU 1 did not come back online");
    await s.close();
  },
};

const libvirtPassword: ConversationSpec = {
  name: "libvirt: virsh set-user-password (crypted:false, base64 without newlines)",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const password = unique(`lv-${t.agent}`);
    const r = await s.run("guest-set-user-password", {
      crypted: false,
      username: GUEST_FACTS.user,
      password: TEXT.encode(password).toBase64(),
    });
    okReturn(c, "guest-set-user-password", r);
    await s.close();
    if (r && !r.error) await checkPassword(c, t, "lv-passwd", password);
  },
};

const libvirtFreeze: ConversationSpec = {
  name: "libvirt: virsh domfsfreeze --mountpoint /data, domfsfreeze, domfsthaw",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    let thawed = false;
    try {
      const count = (what: string, r: Awaited<ReturnType<typeof s.run>>, min: bigint) => {
        const v = okReturn(c, what, r);
        if (c.kind(v, "int", `${what}.return`)) {
          c.expect(intOf(v)! >= min, `${what}: expected >= ${min}, got ${intOf(v)}`);
        }
      };
      const fl = await s.run("guest-fsfreeze-freeze-list", {
        mountpoints: [GUEST_FACTS.dataMount],
      });
      count("guest-fsfreeze-freeze-list", fl, 1n);
      count("guest-fsfreeze-thaw", await s.run("guest-fsfreeze-thaw"), 1n);
      count("guest-fsfreeze-freeze", await s.run("guest-fsfreeze-freeze"), 1n);
      count("guest-fsfreeze-thaw", await s.run("guest-fsfreeze-thaw"), 1n);
      thawed = true;
      await s.close();
    } finally {
      if (!thawed || c.reasons.length > 0) await safetyThaw(t);
    }
  },
};

const libvirtShutdown: ConversationSpec = {
  name: "libvirt: virsh shutdown --mode agent (guest-shutdown powerdown; recorded, no power-off)",
  async run(c, t) {
    const before = await t.vm.shareText(SHARE_FILES.shutdownLog);
    await Deno.writeTextFile(`${t.vm.share}/${SHARE_FILES.shutdownMode}`, "record\n");
    const s = await libvirt(c, t);
    if (!s) return;
    await s.channel.write(
      JSON.stringify({ execute: "guest-shutdown", arguments: { mode: "powerdown" } }) + "\n",
    );
    // a reply is optional (qemu-ga sends none on success); an error is reported
    const line = await s.channel.line(5000);
    if (typeof line !== "string") {
      const text = UTF8.decode(line);
      c.expect(
        /^\{\s*"return"\s*:\s*\{\s*\}\s*\}\s*$/.test(text),
        `guest-shutdown: expected no reply or {"return": {}}, got ${excerpt(text)}`,
      );
      if (text.includes('"error"')) {
        const e = parseRaw(text) as RawObject;
        if (isObject(e.error)) {
          c.noteError("guest-shutdown", {
            class: String(e.error.class),
            desc: String(e.error.desc),
          });
        }
      }
    }
    await s.channel.close();
    const calls = (await t.vm.shareText(SHARE_FILES.shutdownLog)).slice(before.length);
    c.expect(
      /^(shutdown .*-P|poweroff)/m.test(calls),
      `no power-off program was run in the guest (recorded: ${JSON.stringify(calls)})`,
    );
  },
};

// ---------------------------------------------------------------------------------------------
// KubeVirt (through libvirt)

const kubevirtInfo: ConversationSpec = {
  name: "KubeVirt: guest-info lists the 10 required commands enabled (+ credentials commands)",
  async run(c, t) {
    const s = await libvirt(c, t, "KubeVirt");
    if (!s) return;
    const r = await s.raw("guest-info");
    await s.close();
    if (!r) return;
    c.expect(!("id" in r.reply.value), `guest-info: the reply carries an "id" (fact 10)`);
    const info = kvReturn(c, "guest-info", r.compact);
    if (!isObject(info)) return;
    c.req(info, "version", "string", "guest-info");
    const cmds = c.req(info, "supported_commands", "array", "guest-info");
    if (!Array.isArray(cmds)) return;
    const byName = new Map<string, RawObject>();
    cmds.forEach((e, i) => {
      const p = `guest-info.supported_commands[${i}]`;
      if (!c.kind(e, "object", p)) return;
      c.req(e as RawObject, "name", "string", p);
      c.req(e as RawObject, "enabled", "bool", p);
      c.req(e as RawObject, "success-response", "bool", p);
      byName.set(String((e as RawObject).name), e as RawObject);
    });
    const need = [
      ...KUBEVIRT_REQUIRED,
      "guest-ssh-get-authorized-keys",
      "guest-ssh-add-authorized-keys",
      "guest-ssh-remove-authorized-keys",
      "guest-exec",
      "guest-exec-status",
      "guest-file-open",
      "guest-file-close",
      "guest-file-read",
      "guest-file-write",
      "guest-set-user-password",
    ];
    const missing = need.filter((n) => byName.get(n)?.enabled !== true);
    c.expect(
      missing.length === 0,
      `guest-info: not listed with enabled:true: ${missing.join(", ")} ` +
        `(condition AgentVersionNotSupported)`,
    );
  },
};

const kubevirtPollers: ConversationSpec = {
  name: "KubeVirt: pollers (raw fsinfo, fsfreeze-status; GetGuestInfo typed), agent_parser regexes",
  async run(c, t) {
    const s = await libvirt(c, t, "KubeVirt");
    if (!s) return;
    const fsr = await s.raw("guest-get-fsinfo");
    const fs = kvReturn(c, "guest-get-fsinfo", fsr?.compact);
    if (fsr) {
      okReturn(c, "guest-get-fsinfo", fsr.reply);
      checkDataFs(c, checkFsinfo(c, fs ?? undefined, "guest-get-fsinfo"), "guest-get-fsinfo");
    }
    const st = await s.raw("guest-fsfreeze-status");
    if (st) {
      const m = KV_STRING.exec(st.compact);
      c.expect(
        m?.[1] === "thawed",
        `guest-fsfreeze-status: the string regex gives ${m?.[1]} for ${excerpt(st.compact)}`,
      );
      c.expect(st.reply.ms < 5000, `guest-fsfreeze-status took ${st.reply.ms} ms`);
    }
    // GetGuestInfo(INTERFACES | OS | HOSTNAME | TIMEZONE), then (USERS): any failure loses the poll
    const get = async (cmd: string) => okReturn(c, cmd, await s.run(cmd));
    const ifs = checkInterfaces(
      c,
      await get("guest-network-get-interfaces"),
      "guest-network-get-interfaces",
    );
    checkGuestNetwork(c, ifs, "guest-network-get-interfaces");
    checkOsinfo(c, await get("guest-get-osinfo"), "guest-get-osinfo", await osReleaseId());
    checkHostname(c, await get("guest-get-host-name"), "guest-get-host-name");
    checkTimezone(c, await get("guest-get-timezone"), "guest-get-timezone");
    checkUsers(c, await get("guest-get-users"), "guest-get-users");
    await s.close();
  },
};

async function execAndWait(
  c: Conversation,
  poll: (pid: number) => Promise<Raw | undefined>,
  startReply: Raw | undefined,
  limitMs: number,
): Promise<RawObject | undefined> {
  if (!c.kind(startReply, "object", "guest-exec.return")) return undefined;
  const pidRaw = c.req(startReply as RawObject, "pid", "int", "guest-exec.return");
  const pid = intOf(pidRaw);
  if (!c.expect(pid !== undefined && pid > 0n, `guest-exec: pid must be > 0, got ${pid}`)) {
    return undefined;
  }
  const deadline = Date.now() + limitMs;
  for (;;) {
    const st = await poll(Number(pid));
    if (!c.kind(st, "object", "guest-exec-status.return")) return undefined;
    const o = st as RawObject;
    if (c.req(o, "exited", "bool", "guest-exec-status.return") === undefined) return undefined;
    if (o.exited === true) return o;
    if (Date.now() > deadline) {
      c.fail(`guest-exec-status: not exited after ${limitMs} ms`);
      return undefined;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const kubevirtExec: ConversationSpec = {
  name: "KubeVirt: guest-exec capture-output true, exec-status, StdEncoding decode; getent passwd",
  async run(c, t) {
    const s = await libvirt(c, t, "KubeVirt");
    if (!s) return;
    const poll = async (pid: number) =>
      okReturn(c, "guest-exec-status", (await s.raw("guest-exec-status", { pid }))?.reply);
    const start = await s.raw("guest-exec", {
      path: "/bin/sh",
      arg: ["-c", "echo hi; echo err >&2; exit 3"],
      "capture-output": true,
    });
    const st = await execAndWait(c, poll, okReturn(c, "guest-exec", start?.reply), 10_000);
    if (st) {
      c.expect(
        intOf(st.exitcode) === 3n,
        `guest-exec-status.exitcode: expected 3, got ${
          st.exitcode instanceof Num ? st.exitcode.source : st.exitcode
        }`,
      );
      const out = UTF8.decode(stdBase64(c, st["out-data"], "guest-exec-status.out-data"));
      c.expect(out === "hi\n", `out-data decodes to ${JSON.stringify(out)}, expected "hi\\n"`);
      const err = UTF8.decode(stdBase64(c, st["err-data"], "guest-exec-status.err-data"));
      c.expect(err === "err\n", `err-data decodes to ${JSON.stringify(err)}, expected "err\\n"`);
    }
    // access-credentials fallback: getent passwd <user>, parsed as passwd fields
    const g = await s.raw("guest-exec", {
      path: "getent",
      arg: ["passwd", GUEST_FACTS.user],
      "capture-output": true,
    });
    const gst = await execAndWait(c, poll, okReturn(c, "guest-exec getent", g?.reply), 10_000);
    if (gst) {
      const line = UTF8.decode(stdBase64(c, gst["out-data"], "getent out-data")).trim();
      const f = line.split(":");
      c.expect(
        f.length === 7 && f[0] === GUEST_FACTS.user && f[5] === `/home/${GUEST_FACTS.user}`,
        `getent passwd output is ${JSON.stringify(line)}`,
      );
    }
    await s.close();
  },
};

const kubevirtCredentials: ConversationSpec = {
  name: "KubeVirt: access credentials (ssh keys reset, file-open/read fallback, ENOENT text)",
  async run(c, t) {
    const s = await libvirt(c, t, "KubeVirt");
    if (!s) return;
    const user = GUEST_FACTS.user;
    const key = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2e${t.agent.replace("-", "")}Key e2e@host`;
    const add = await s.run("guest-ssh-add-authorized-keys", {
      username: user,
      keys: [key],
      reset: true,
    });
    okReturn(c, "guest-ssh-add-authorized-keys", add);
    const got = okReturn(
      c,
      "guest-ssh-get-authorized-keys",
      await s.run("guest-ssh-get-authorized-keys", { username: user }),
    );
    if (c.kind(got, "object", "guest-ssh-get-authorized-keys.return")) {
      const keys = c.req(got as RawObject, "keys", "array", "guest-ssh-get-authorized-keys");
      c.expect(
        Array.isArray(keys) && keys.length === 1 && keys[0] === key,
        `guest-ssh-get-authorized-keys: expected exactly the added key, got ${
          JSON.stringify(keys)
        }`,
      );
    }
    // the fallback path: guest-file-open mode r, guest-file-read without count
    const path = `/home/${user}/.ssh/authorized_keys`;
    const h = okReturn(
      c,
      "guest-file-open",
      (await s.raw("guest-file-open", { path, mode: "r" }))?.reply,
    );
    if (c.kind(h, "int", "guest-file-open.return")) {
      const rd = okReturn(
        c,
        "guest-file-read",
        (await s.raw("guest-file-read", { handle: Number(intOf(h)) }))?.reply,
      );
      if (c.kind(rd, "object", "guest-file-read.return")) {
        const o = rd as RawObject;
        c.req(o, "count", "int", "guest-file-read");
        const text = UTF8.decode(stdBase64(c, o["buf-b64"], "guest-file-read.buf-b64"));
        c.expect(text.includes(key), `authorized_keys read back as ${JSON.stringify(text)}`);
      }
      okReturn(
        c,
        "guest-file-close",
        (await s.raw("guest-file-close", { handle: Number(intOf(h)) }))?.reply,
      );
    }
    const missing = await s.raw("guest-file-open", { path: "/nonexistent", mode: "r" });
    c.expect(
      missing?.reply.error?.desc.includes("No such file or directory") === true,
      `guest-file-open /nonexistent: the error must contain "No such file or directory", got ${
        excerpt(missing?.reply.text ?? "")
      }`,
    );
    const rm = await s.run("guest-ssh-remove-authorized-keys", { username: user, keys: [key] });
    okReturn(c, "guest-ssh-remove-authorized-keys", rm);
    await s.close();
  },
};

const kubevirtFreeze: ConversationSpec = {
  name: "KubeVirt: freeze/unfreeze (status string, FSFreeze, FSThaw)",
  async run(c, t) {
    const s = await libvirt(c, t, "KubeVirt");
    if (!s) return;
    let ok = false;
    try {
      const status = async (want: string) => {
        const st = await s.raw("guest-fsfreeze-status");
        const m = st ? KV_STRING.exec(st.compact) : null;
        c.expect(m?.[1] === want, `guest-fsfreeze-status: expected "${want}", got ${st?.compact}`);
      };
      await status("thawed");
      const f = okReturn(c, "guest-fsfreeze-freeze", await s.run("guest-fsfreeze-freeze"));
      c.expect(
        intOf(f) !== undefined && intOf(f)! >= 1n,
        `guest-fsfreeze-freeze: expected an int >= 1`,
      );
      await status("frozen");
      const th = okReturn(c, "guest-fsfreeze-thaw", await s.run("guest-fsfreeze-thaw"));
      c.expect(intOf(th) !== undefined && intOf(th)! >= 1n, `guest-fsfreeze-thaw: expected >= 1`);
      await status("thawed");
      ok = true;
      await s.close();
    } finally {
      if (!ok || c.reasons.length > 0) await safetyThaw(t);
    }
  },
};

// ---------------------------------------------------------------------------------------------
// Proxmox VE

const pvePing: ConversationSpec = {
  name: "Proxmox VE: guest-ping liveness within 3 s, exact bytes (W3)",
  async run(c, t) {
    const id = t.pveId();
    const r = await pveCommand(c, t.virtio, id, "guest-ping", {}, { timeoutMs: 3000 });
    if (!r) return;
    const want = `\xff{"return": ${id}}\n{"return": {}}\n`;
    const got = String.fromCharCode(...r.bytes);
    c.expect(got === want, `guest-ping: expected the bytes ${excerpt(want)}, got ${excerpt(got)}`);
  },
};

/** `qm guest cmd` pass-through commands (clients.md §2.2), each on its own connection. */
const PVE_PASSTHROUGH: readonly string[] = [
  "guest-ping",
  "guest-get-time",
  "guest-info",
  "guest-fsfreeze-status",
  "guest-fstrim",
  "guest-network-get-interfaces",
  "guest-get-vcpus",
  "guest-get-fsinfo",
  "guest-get-memory-blocks",
  "guest-get-memory-block-info",
  "guest-get-host-name",
  "guest-get-osinfo",
  "guest-get-users",
  "guest-get-timezone",
];

const pvePassthrough: ConversationSpec = {
  name: "Proxmox VE: qm guest cmd pass-through (14 commands, arguments:{}, 5 s each)",
  async run(c, t) {
    for (const cmd of PVE_PASSTHROUGH) {
      const r = await pve(c, t, cmd, {}, { timeoutMs: cmd === "guest-fstrim" ? 60_000 : 5000 });
      okReturn(c, cmd, r?.reply);
    }
  },
};

const pveFiles: ConversationSpec = {
  name: "Proxmox VE: file-write (Perl base64, 76 cols) then file-read until eof (1 MiB counts)",
  async run(c, t) {
    const path = `/tmp/pve-e2e-${t.agent}.bin`;
    const content = crypto.getRandomValues(new Uint8Array(65536));
    const big = new Uint8Array(1024 * 1024 + 12345);
    for (let i = 0; i < big.length; i += content.length) {
      big.set(content.slice(0, big.length - i), i);
    }
    const open = async (args: Record<string, unknown>) => {
      const h = okReturn(c, "guest-file-open", (await pve(c, t, "guest-file-open", args))?.reply);
      return c.kind(h, "int", "guest-file-open.return") ? Number(intOf(h)) : undefined;
    };
    const wh = await open({ path, mode: "wb" });
    if (wh === undefined) return;
    const w = okReturn(
      c,
      "guest-file-write",
      (await pve(c, t, "guest-file-write", { handle: wh, "buf-b64": perlBase64(big) }, {
        timeoutMs: 30_000,
      }))?.reply,
    );
    if (c.kind(w, "object", "guest-file-write.return")) {
      const n = intOf((w as RawObject).count);
      c.expect(n === BigInt(big.length), `guest-file-write.count: ${n}, expected ${big.length}`);
      c.req(w as RawObject, "eof", "bool", "guest-file-write");
    }
    okReturn(c, "guest-file-close", (await pve(c, t, "guest-file-close", { handle: wh }))?.reply);

    const rh = await open({ path });
    if (rh === undefined) return;
    const parts: Uint8Array[] = [];
    let total = 0;
    for (let i = 0; i < 5; i++) {
      const r = okReturn(
        c,
        "guest-file-read",
        (await pve(c, t, "guest-file-read", { handle: rh, count: 1048576 }, {
          timeoutMs: 30_000,
        }))?.reply,
      );
      if (!c.kind(r, "object", "guest-file-read.return")) break;
      const o = r as RawObject;
      const count = c.req(o, "count", "int", "guest-file-read");
      const eof = c.req(o, "eof", "bool", "guest-file-read");
      const buf = c.req(o, "buf-b64", "string", "guest-file-read");
      if (typeof buf === "string") {
        const bytes = Uint8Array.fromBase64(buf);
        c.expect(BigInt(bytes.length) === intOf(count), `guest-file-read: count != decoded size`);
        parts.push(bytes);
        total += bytes.length;
      }
      if (eof === true || eof === undefined) break;
      if (i === 4) c.fail("guest-file-read: no eof:true after 5 reads");
    }
    okReturn(c, "guest-file-close", (await pve(c, t, "guest-file-close", { handle: rh }))?.reply);
    const back = new Uint8Array(total);
    let at = 0;
    for (const p of parts) {
      back.set(p, at);
      at += p.length;
    }
    c.expect(
      back.length === big.length && back.every((b, i) => b === big[i]),
      `file read back differs (${back.length} bytes, wrote ${big.length})`,
    );
    // the seek step of `qm guest file-read`-style access: /etc/hostname from offset 2
    const hh = await open({ path: "/etc/hostname" });
    if (hh !== undefined) {
      const sk = okReturn(
        c,
        "guest-file-seek",
        (await pve(c, t, "guest-file-seek", { handle: hh, offset: 2, whence: "set" }))?.reply,
      );
      if (c.kind(sk, "object", "guest-file-seek.return")) {
        c.expect(intOf((sk as RawObject).position) === 2n, `guest-file-seek.position != 2`);
      }
      const r = okReturn(
        c,
        "guest-file-read",
        (await pve(c, t, "guest-file-read", { handle: hh, count: 1048576 }))?.reply,
      );
      if (isObject(r) && typeof r["buf-b64"] === "string") {
        const text = UTF8.decode(Uint8Array.fromBase64(r["buf-b64"]));
        c.expect(
          text === GUEST_FACTS.hostname.slice(2) + "\n" && r.eof === true,
          `/etc/hostname from offset 2 read as ${JSON.stringify(text)} eof ${r.eof}`,
        );
      }
      await pve(c, t, "guest-file-close", { handle: hh });
    }
    await guestSh(t, "rm-pve-file", `rm -f ${path}\n`);
  },
};

const pveExec: ConversationSpec = {
  name: "Proxmox VE: qm guest exec (poll exec-status every 1 s), --pass-stdin",
  async run(c, t) {
    const poll = async (pid: number) =>
      okReturn(c, "guest-exec-status", (await pve(c, t, "guest-exec-status", { pid }))?.reply);
    const st = await execAndWait(
      c,
      poll,
      okReturn(
        c,
        "guest-exec",
        (await pve(c, t, "guest-exec", {
          "capture-output": true,
          path: "/bin/sh",
          arg: ["-c", "sleep 1.5; echo hi; echo err >&2; exit 3"],
        }))?.reply,
      ),
      30_000,
    );
    if (st) {
      c.expect(intOf(st.exitcode) === 3n, `exitcode: expected 3`);
      const out = UTF8.decode(stdBase64(c, st["out-data"], "out-data"));
      const err = UTF8.decode(stdBase64(c, st["err-data"], "err-data"));
      c.expect(out === "hi\n" && err === "err\n", `output ${JSON.stringify([out, err])}`);
      for (const k of ["out-truncated", "err-truncated"]) c.opt(st, k, "bool", "exec-status");
    }
    const input = `stdin for ${t.agent}\n`.repeat(50);
    const st2 = await execAndWait(
      c,
      poll,
      okReturn(
        c,
        "guest-exec (input-data)",
        (await pve(c, t, "guest-exec", {
          "capture-output": true,
          path: "cat",
          arg: [],
          "input-data": TEXT.encode(input).toBase64(),
        }))?.reply,
      ),
      30_000,
    );
    if (st2) {
      const out = UTF8.decode(stdBase64(c, st2["out-data"], "out-data"));
      c.expect(out === input, `cat echoed ${out.length} bytes, expected ${input.length}`);
    }
  },
};

const pvePasswd: ConversationSpec = {
  name: "Proxmox VE: qm guest passwd (encode_base64 with newlines)",
  async run(c, t) {
    // longer than 57 bytes, so encode_base64 wraps it
    const password = unique(`pve-${t.agent}-long-password-to-force-the-76-column-wrap`);
    const b64 = perlBase64(TEXT.encode(password));
    c.expect(b64.split("\n").length === 3, "test setup: the password base64 should wrap");
    const r = await pve(c, t, "guest-set-user-password", {
      username: GUEST_FACTS.user,
      password: b64,
      crypted: false,
    });
    okReturn(c, "guest-set-user-password", r?.reply);
    if (r?.reply && !r.reply.error) await checkPassword(c, t, "pve-passwd", password);
  },
};

const pveBackupFreeze: ConversationSpec = {
  name: "Proxmox VE: fsfreeze around a backup (ping, status, freeze, status, thaw, thaw again)",
  async run(c, t) {
    let ok = false;
    try {
      const status = async (want: string) => {
        const r = await pve(c, t, "guest-fsfreeze-status");
        c.expect(
          okReturn(c, "guest-fsfreeze-status", r?.reply) === want,
          `guest-fsfreeze-status: expected "${want}", got ${r?.reply?.text}`,
        );
      };
      okReturn(c, "guest-ping", (await pve(c, t, "guest-ping", {}, { timeoutMs: 3000 }))?.reply);
      await status("thawed");
      const f = okReturn(
        c,
        "guest-fsfreeze-freeze",
        (await pve(c, t, "guest-fsfreeze-freeze", {}, { timeoutMs: 60_000 }))?.reply,
      );
      c.expect(intOf(f) !== undefined && intOf(f)! >= 1n, `guest-fsfreeze-freeze: expected >= 1`);
      await status("frozen");
      okReturn(
        c,
        "guest-ping while frozen",
        (await pve(c, t, "guest-ping", {}, { timeoutMs: 3000 }))?.reply,
      );
      const th = okReturn(
        c,
        "guest-fsfreeze-thaw",
        (await pve(c, t, "guest-fsfreeze-thaw", {}, { timeoutMs: 60_000 }))?.reply,
      );
      c.expect(intOf(th) !== undefined && intOf(th)! >= 1n, `guest-fsfreeze-thaw: expected >= 1`);
      await status("thawed");
      const again = await pve(c, t, "guest-fsfreeze-thaw", {}, { timeoutMs: 60_000 });
      c.expect(
        intOf(okReturn(c, "second guest-fsfreeze-thaw", again?.reply)) === 0n,
        `a thaw while thawed must return 0, got ${again?.reply?.text}`,
      );
      ok = true;
    } finally {
      if (!ok || c.reasons.length > 0) await safetyThaw(t);
    }
  },
};

const pveShutdown: ConversationSpec = {
  name: "Proxmox VE: vm stop via guest-shutdown (sync reply, no command reply, guest powers off)",
  async run(c, t) {
    // qemu-ga goes first and only records the call; deno-qga's shutdown powers the guest off
    const powerOff = t.agent === "deno-qga";
    const before = await t.vm.shareText(SHARE_FILES.shutdownLog);
    await Deno.writeTextFile(
      `${t.vm.share}/${SHARE_FILES.shutdownMode}`,
      powerOff ? "poweroff\n" : "record\n",
    );
    const r = await pve(c, t, "guest-shutdown", {}, {
      allowNoReply: { silenceMs: powerOff ? 60_000 : 5000 },
    });
    if (!r) return;
    if (r.reply) {
      okReturn(c, "guest-shutdown", r.reply);
      c.fail(`guest-shutdown: qemu-ga sends no reply on success; got ${excerpt(r.reply.text)}`);
    }
    const calls = (await t.vm.shareText(SHARE_FILES.shutdownLog)).slice(before.length);
    c.expect(
      /^(shutdown .*-P|poweroff)/m.test(calls),
      `no power-off program was run in the guest (recorded: ${JSON.stringify(calls)})`,
    );
    if (powerOff) {
      c.expect(r.eof, "the connection did not end (QEMU still running) after guest-shutdown");
      const status = await t.vm.waitExit(30_000);
      c.expect(status !== undefined, "QEMU did not exit within 30 s of guest-shutdown");
    }
  },
};

// ---------------------------------------------------------------------------------------------
// any client, real-guest facts

const idEcho: ConversationSpec = {
  name: "any: request id echoed, none added without one (W5)",
  async run(c, t) {
    const ch = await Channel.connect(t.virtio);
    try {
      if (!await resync(c, ch, t.pveId())) return;
      const a = await request(c, ch, "guest-ping", `{"execute":"guest-ping","id":"x"}`);
      c.expect(
        a !== undefined && a.value.id === "x" && isObject(a.ret),
        `guest-ping with id "x": ${a?.text}`,
      );
      const b = await request(c, ch, "guest-ping", `{"execute":"guest-ping"}`);
      c.expect(b !== undefined && !("id" in b.value), `guest-ping without id: ${b?.text}`);
      const e = await request(c, ch, "guest-nonexistent", `{"execute":"guest-nonexistent","id":7}`);
      c.notBuilt.delete("guest-nonexistent");
      c.expect(
        e !== undefined && e.value.id instanceof Num && e.value.id.source === "7" &&
          e.error?.class === "CommandNotFound",
        `unknown command with id 7: ${e?.text}`,
      );
    } finally {
      await ch.close();
    }
  },
};

const frozenWrites: ConversationSpec = {
  name: "guest: a write to /data blocks while frozen, completes after thaw; frozen allowlist (C14)",
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    let ok = false;
    try {
      const f = okReturn(c, "guest-fsfreeze-freeze", await s.run("guest-fsfreeze-freeze"));
      if (!c.expect(intOf(f) !== undefined && intOf(f)! >= 1n, "guest-fsfreeze-freeze: >= 1")) {
        return;
      }
      const probe = await t.vm.guestRun(
        `${t.agent}-frozen-write`,
        `echo "written by the e2e probe" >> ${GUEST_FACTS.dataMount}/probe.txt\n`,
      );
      c.expect(await probe.started(5000), "the guest did not start the write probe");
      c.expect(
        (await probe.finished(2000)) === undefined,
        `a write to ${GUEST_FACTS.dataMount} completed while frozen`,
      );
      const st = okReturn(c, "guest-fsfreeze-status", await s.run("guest-fsfreeze-status"));
      c.expect(st === "frozen", `guest-fsfreeze-status while frozen: ${JSON.stringify(st)}`);
      okReturn(c, "guest-ping while frozen", await s.run("guest-ping"));
      okReturn(c, "guest-info while frozen", await s.run("guest-info"));
      const gt = await s.run("guest-get-time", undefined, 5000);
      c.expect(
        gt?.error?.class === "CommandNotFound" && gt.ms < 2000,
        `guest-get-time while frozen must fail fast with CommandNotFound, got ${gt?.text}`,
      );
      const again = await s.run("guest-fsfreeze-freeze", undefined, 10_000);
      c.expect(again?.error !== undefined, `a second freeze must fail, got ${again?.text}`);
      const th = okReturn(c, "guest-fsfreeze-thaw", await s.run("guest-fsfreeze-thaw"));
      c.expect(intOf(th) !== undefined && intOf(th)! >= 1n, `guest-fsfreeze-thaw: ${th}`);
      const done = await probe.finished(10_000);
      c.expect(done?.rc === 0, `the write did not complete after thaw (${JSON.stringify(done)})`);
      const st2 = okReturn(c, "guest-fsfreeze-status", await s.run("guest-fsfreeze-status"));
      c.expect(st2 === "thawed", `guest-fsfreeze-status after thaw: ${JSON.stringify(st2)}`);
      const th2 = okReturn(c, "guest-fsfreeze-thaw", await s.run("guest-fsfreeze-thaw"));
      c.expect(intOf(th2) === 0n, `a thaw while thawed must return 0, got ${JSON.stringify(th2)}`);
      ok = true;
      await s.close();
    } finally {
      if (!ok || c.reasons.length > 0) await safetyThaw(t);
    }
  },
};

const reconnects: ConversationSpec = {
  name: "guest: 20 host reconnects (some mid-command, some mid-request), resync each time (W8)",
  async run(c, t) {
    for (let i = 0; i < 20; i++) {
      const ch = await Channel.connect(t.virtio);
      try {
        const ok = await resync(c, ch, t.pveId(), 5000, `reconnect ${i + 1}`);
        if (!ok) return;
        // (the last round leaves the channel clean for the next client, which may not resync)
        if (i % 4 === 1) await ch.write(`{"execute":"guest-info"}\n`); // close mid-command
        if (i % 4 === 2) await ch.write(`{"execute":"guest-pi`); // close mid-request
      } finally {
        await ch.close();
      }
    }
  },
};

const isaSerial: ConversationSpec = {
  name: "guest: isa-serial channel (resync, ping, host-name, guest-info), twice",
  async run(c, t) {
    for (let round = 1; round <= 2; round++) {
      const ch = await Channel.connect(t.isa);
      try {
        if (!await resync(c, ch, t.pveId(), 20_000, `isa-serial round ${round}`)) return;
        const p = await request(c, ch, "guest-ping", `{"execute":"guest-ping"}`);
        c.kind(okReturn(c, "guest-ping", p), "object", "guest-ping.return");
        const h = await request(c, ch, "guest-get-host-name", `{"execute":"guest-get-host-name"}`);
        checkHostname(c, okReturn(c, "guest-get-host-name", h), "guest-get-host-name");
        const info = await request(c, ch, "guest-info", `{"execute":"guest-info"}`, 30_000);
        const v = okReturn(c, "guest-info", info);
        if (c.kind(v, "object", "guest-info.return")) {
          c.req(v as RawObject, "version", "string", "guest-info");
        }
      } finally {
        await ch.close();
      }
    }
  },
};

const leastPrivilege: ConversationSpec = {
  name: "deno-qga: started with main.ts --print-permissions flags (no --allow-all)",
  denoOnly: true,
  async run(c, t) {
    const line = t.commandFile ? (await t.vm.shareText(t.commandFile)).trim() : "";
    if (!c.expect(line !== "", "main.ts --print-permissions printed nothing in the guest")) return;
    c.expect(/\brun\b/.test(line) && /main\.ts/.test(line), `unexpected command line: ${line}`);
    c.expect(!/(^|\s)(-A|--allow-all)(\s|$)/.test(line), `the command line grants all: ${line}`);
    c.expect(line.includes("--no-prompt"), `the command line lacks --no-prompt: ${line}`);
  },
};

// ---------------------------------------------------------------------------------------------
// commands newer than qemu-ga 7.2

const getLoad: ConversationSpec = {
  name: "libvirt (newer): guestinfo --load, guest-get-load (10.0)",
  limit72: {
    why: "guest-get-load is new in qemu-ga 10.0",
    evidence: /not built: guest-get-load/,
  },
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const r = okReturn(c, "guest-get-load", await s.run("guest-get-load"));
    if (c.kind(r, "object", "guest-get-load.return")) {
      for (const k of ["load1m", "load5m", "load15m"]) {
        c.req(r as RawObject, k, "number", "guest-get-load");
      }
    }
    await s.close();
  },
};

const getRoute: ConversationSpec = {
  name: "any (newer): guest-network-get-route (9.1) lists dummy0's routes",
  limit72: {
    why: "guest-network-get-route is new in qemu-ga 9.1",
    evidence: /not built: guest-network-get-route/,
  },
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const r = okReturn(c, "guest-network-get-route", await s.run("guest-network-get-route"));
    if (c.kind(r, "array", "guest-network-get-route.return")) {
      const routes = r as Raw[];
      const v4 = routes.find((e) =>
        isObject(e) && e.iface === GUEST_FACTS.netIf && intOf(e.version) === 4n &&
        e.destination === "192.0.2.0"
      );
      const v6 = routes.find((e) =>
        isObject(e) && e.iface === GUEST_FACTS.netIf && intOf(e.version) === 6n
      );
      c.expect(v4 !== undefined, "no IPv4 route 192.0.2.0 on dummy0");
      c.expect(v6 !== undefined, "no IPv6 route on dummy0");
    }
    await s.close();
  },
};

const execMerged: ConversationSpec = {
  name: 'any (newer): guest-exec capture-output "merged" (8.0 enum)',
  limit72: {
    why: "capture-output is a bool in qemu-ga 7.2 (the enum came in 8.0)",
    evidence: /Invalid parameter type for 'capture-output', expected: boolean/,
  },
  async run(c, t) {
    const s = await libvirt(c, t);
    if (!s) return;
    const poll = async (pid: number) =>
      okReturn(c, "guest-exec-status", await s.run("guest-exec-status", { pid }));
    const st = await execAndWait(
      c,
      poll,
      okReturn(
        c,
        "guest-exec",
        await s.run("guest-exec", {
          path: "/bin/sh",
          arg: ["-c", "echo out; echo err >&2"],
          "capture-output": "merged",
        }),
      ),
      10_000,
    );
    if (st) {
      const out = UTF8.decode(stdBase64(c, st["out-data"], "out-data"));
      c.expect(out === "out\nerr\n", `merged output is ${JSON.stringify(out)}`);
      c.expect(!("err-data" in st), "merged capture must not report err-data");
    }
    await s.close();
  },
};

/** Every conversation, in the order they run (power-off last). */
export const CONVERSATIONS: readonly ConversationSpec[] = [
  leastPrivilege,
  libvirtHandshake,
  libvirtGarbage,
  libvirtGuestinfo,
  libvirtDomifaddr,
  libvirtDomfsinfo,
  libvirtDomtime,
  libvirtVcpus,
  libvirtPassword,
  libvirtFreeze,
  kubevirtInfo,
  kubevirtPollers,
  kubevirtExec,
  kubevirtCredentials,
  kubevirtFreeze,
  pvePing,
  pvePassthrough,
  pveFiles,
  pveExec,
  pvePasswd,
  pveBackupFreeze,
  idEcho,
  frozenWrites,
  reconnects,
  isaSerial,
  getLoad,
  getRoute,
  execMerged,
  libvirtShutdown,
  pveShutdown,
];

export { Conversation };
