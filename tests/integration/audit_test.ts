/**
 * Audit trail (issue 8 part 5, docs/robustness.md "Audit trail"): every command leaves
 * exactly one record `<sec>.<usec>: audit: <command> {"args":{...},"result":...,"ms":N}`
 * in the log (the -l file, or stderr without -l), and no secret a command carried (a
 * password, file content, an ssh key, guest-exec input or environment) appears in the
 * log, neither as plain text, nor base64, nor as any 8-character piece of its base64.
 *
 * Nothing here changes the machine: guest-set-user-password gets a user name with ':',
 * which the handler refuses after decoding the password (chpasswd never runs), and
 * guest-ssh-add-authorized-keys names a user that does not exist (it fails at the lookup).
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all \
 *   tests/integration/audit_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { QgaClient } from "../../client/mod.ts";
import { startAgent } from "../helpers/agents.ts";

const enc = new TextEncoder();
const b64 = (s: string) => enc.encode(s).toBase64();

/** Distinctive secrets, random per run so that no other log line can hold them by chance. */
function secrets() {
  const tag = crypto.getRandomValues(new Uint8Array(9)).toHex();
  return {
    password: `Pw-${tag}-hunter2`,
    file: `file content ${tag} top secret`,
    key: `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${tag}SecretKeyMaterial audit@test`,
    input: `exec input ${tag} stdin secret`,
    env: `QGA_SECRET=env-${tag}-value`,
  };
}

/** One parsed audit record. */
interface AuditRecord {
  time: number;
  command: string;
  fields: { args?: Record<string, unknown>; result?: string; ms?: number; error?: string };
}

const RECORD = /^(\d+)\.(\d{6}): audit: (\S+) (\{.*\})$/;

function auditRecords(log: string): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (const line of log.split("\n")) {
    if (!line.includes(": audit: ")) continue;
    const m = RECORD.exec(line);
    assert.ok(m, `malformed audit record: ${line}`);
    out.push({
      time: Number(m[1]) + Number(m[2]) / 1e6,
      command: m[3]!,
      fields: JSON.parse(m[4]!),
    });
  }
  return out;
}

/** Every 8-character piece of `s`, and `s` itself. */
function pieces(s: string): string[] {
  const out = [s];
  for (let i = 0; i + 8 <= s.length; i++) out.push(s.slice(i, i + 8));
  return out;
}

/** Runs the commands that carry secrets; returns what was sent and when. */
async function runSecretCommands(socketPath: string, dir: string, s: ReturnType<typeof secrets>) {
  await using c = await QgaClient.connect(socketPath);
  await c.sync();
  const started = Date.now() / 1000;
  const sent: string[] = [];
  const run = async (name: string, args: Record<string, unknown>) => {
    sent.push(name);
    const r = await c.executeText(JSON.stringify({ execute: name, arguments: args }));
    return r.reply;
  };
  const pw = await run("guest-set-user-password", {
    username: "qga-audit:nobody",
    password: b64(s.password),
    crypted: false,
  });
  assert.deepEqual(pw, {
    error: { class: "GenericError", desc: "forbidden characters in username" },
  });
  const open = await run("guest-file-open", { path: `${dir}/secret.txt`, mode: "w" });
  const handle = open.return as number;
  assert.equal(typeof handle, "number", JSON.stringify(open));
  assert.deepEqual(await run("guest-file-write", { handle, "buf-b64": b64(s.file) }), {
    return: { count: s.file.length, eof: false },
  });
  assert.deepEqual(await run("guest-file-close", { handle }), { return: {} });
  const ssh = await run("guest-ssh-add-authorized-keys", {
    username: "qga-audit-no-such-user",
    keys: [s.key],
  });
  assert.ok("error" in ssh, JSON.stringify(ssh));
  const exec = await run("guest-exec", {
    path: "/usr/bin/true",
    "input-data": b64(s.input),
    env: [s.env],
  });
  const pid = (exec.return as { pid: number } | undefined)?.pid;
  assert.equal(typeof pid, "number", JSON.stringify(exec));
  for (;;) {
    const st = await run("guest-exec-status", { pid });
    if ((st.return as { exited: boolean }).exited) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  await c.sync();
  assert.equal(await Deno.readTextFile(`${dir}/secret.txt`), s.file);
  return { sent, started, ended: Date.now() / 1000, ssh };
}

function checkTrail(
  log: string,
  run: Awaited<ReturnType<typeof runSecretCommands>>,
  s: ReturnType<typeof secrets>,
): void {
  const records = auditRecords(log);
  // The client's resyncs (0xFF, then guest-sync-delimited) are audited too; leave them out.
  const commands = records.filter((r) =>
    r.command !== "guest-sync-delimited" && !(r.command === "request" && r.fields.error)
  );
  assert.deepEqual(commands.map((r) => r.command), run.sent);
  for (const r of commands) {
    assert.ok(r.time >= run.started - 1 && r.time <= run.ended + 1, `time of ${r.command}`);
    assert.equal(typeof r.fields.ms, "number", `duration of ${r.command}`);
    assert.ok(r.fields.ms! >= 0);
    assert.ok(r.fields.args && typeof r.fields.args === "object", `args of ${r.command}`);
  }
  const by = (name: string) => commands.find((r) => r.command === name)!;
  assert.deepEqual(by("guest-set-user-password").fields.args, {
    username: "qga-audit:nobody",
    password: `<${b64(s.password).length} chars withheld>`,
    crypted: false,
  });
  assert.equal(by("guest-set-user-password").fields.result, "GenericError");
  assert.equal(by("guest-file-open").fields.result, "ok");
  assert.deepEqual(
    by("guest-file-write").fields.args?.["buf-b64"],
    `<${b64(s.file).length} chars withheld>`,
  );
  assert.equal(by("guest-file-write").fields.result, "ok");
  assert.deepEqual(by("guest-ssh-add-authorized-keys").fields.args, {
    username: "qga-audit-no-such-user",
    keys: "<withheld>",
  });
  const sshClass = (run.ssh.error as { class: string }).class;
  assert.equal(by("guest-ssh-add-authorized-keys").fields.result, sshClass);
  assert.deepEqual(by("guest-exec").fields.args, {
    path: "/usr/bin/true",
    "input-data": `<${b64(s.input).length} chars withheld>`,
    env: "<withheld>",
  });
  assert.equal(by("guest-exec").fields.result, "ok");

  for (const secret of Object.values(s)) {
    for (const p of [secret, ...pieces(b64(secret)), ...pieces(secret).slice(0, 1)]) {
      assert.ok(
        !log.includes(p),
        `the log holds ${JSON.stringify(p)} (from ${JSON.stringify(secret)})`,
      );
    }
  }
}

Deno.test({
  name: "the -l log file has one audit record per command and none of the secrets",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qga-audit." });
    try {
      const s = secrets();
      const logfile = `${dir}/agent.log`;
      await using agent = await startAgent("deno-qga", {
        extraArgs: ["-l", logfile, `--file-roots=${dir}`, "--exec-programs=/usr/bin/true"],
      });
      const run = await runSecretCommands(agent.socketPath, dir, s);
      await agent.stop();
      const log = await Deno.readTextFile(logfile);
      checkTrail(log, run, s);
      // With -l, stderr carries no audit records (and no secrets either).
      assert.equal(auditRecords(agent.stderr()).length, 0);
      for (const secret of Object.values(s)) assert.ok(!agent.stderr().includes(secret));
      console.log(`-l log: ${auditRecords(log).length} audit records, ${log.length} bytes`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "without -l the audit records go to stderr, again without the secrets",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "qga-audit." });
    try {
      const s = secrets();
      await using agent = await startAgent("deno-qga", {
        extraArgs: [`--file-roots=${dir}`, "--exec-programs=/usr/bin/true"],
      });
      const run = await runSecretCommands(agent.socketPath, dir, s);
      await agent.stop();
      checkTrail(agent.stderr(), run, s);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
