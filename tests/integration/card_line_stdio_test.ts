/**
 * The card's command line, `deno run --allow-read --allow-write --allow-run main.ts`,
 * serves every command: none disappears for want of an env or sys grant the line
 * lacks (TZ and QGA_OS_RELEASE read as unset, so /etc/localtime and
 * /etc/os-release are used; the network interfaces come from the helper). The
 * channel is stdio (the card's line has no --allow-net for a socket, and a
 * virtio port needs a guest: tests/e2e_lifecycle runs the same line on one).
 *
 * Run: env -u RUST_BACKTRACE ./node_modules/.bin/deno test --allow-all tests/integration/card_line_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { COMMANDS } from "../../commands/mod.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");
const DENO = `${REPO}/node_modules/.bin/deno`;

/**
 * Runs the agent on stdio with `flags` (state dir `dir`, or a new one), sends
 * `requests`, returns the replies.
 */
async function stdioAgent(
  flags: string[],
  requests: unknown[],
  o: { args?: string[]; dir?: string; env?: Record<string, string> } = {},
): Promise<unknown[]> {
  const dir = o.dir ?? await Deno.makeTempDir({ prefix: "qga-card." });
  try {
    const child = new Deno.Command(DENO, {
      args: ["run", ...flags, `${REPO}/main.ts`, "-m", "stdio", "-t", dir, ...(o.args ?? [])],
      cwd: dir,
      // The agent's environment: no TZ, no QGA_OS_RELEASE.
      clearEnv: true,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...o.env },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(requests.map((r) => JSON.stringify(r)).join("\n")));
    const lines: string[] = [];
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    while (lines.length < requests.length) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
    await w.close();
    reader.releaseLock();
    await child.stdout.cancel().catch(() => {});
    const [status, stderr] = await Promise.all([
      child.status,
      new Response(child.stderr).text(),
    ]);
    assert.equal(lines.length, requests.length, `agent exited ${status.code}: ${stderr}`);
    return lines.map((l) => JSON.parse(l));
  } finally {
    if (!o.dir) await Deno.remove(dir, { recursive: true });
  }
}

interface Info {
  return: { supported_commands: { name: string; enabled: boolean }[] };
}

Deno.test("the card's line lists all 43 commands enabled and answers those that once needed env or sys grants", async () => {
  const [info, os, tz, net] = await stdioAgent(["--allow-read", "--allow-write", "--allow-run"], [
    { execute: "guest-info" },
    { execute: "guest-get-osinfo" },
    { execute: "guest-get-timezone" },
    { execute: "guest-network-get-interfaces" },
  ]) as [Info, Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
  const cmds = info.return.supported_commands;
  assert.equal(cmds.length, 43);
  assert.equal(COMMANDS.length, 43);
  assert.deepEqual(cmds.filter((c) => !c.enabled).map((c) => c.name), []);
  const osr = (os.return ?? {}) as Record<string, string>;
  const idLine = /^ID=(.*)$/m.exec(await Deno.readTextFile("/etc/os-release"));
  assert.equal(osr.id, idLine?.[1]?.replace(/^"|"$/g, ""), JSON.stringify(os));
  assert.ok("return" in tz, JSON.stringify(tz));
  const ifaces = net.return as { name: string }[];
  assert.ok(Array.isArray(ifaces) && ifaces.some((i) => i.name === "lo"), JSON.stringify(net));
});

Deno.test("the least-privilege line disables only guest-exec when no program is listed, and nothing with one", async () => {
  for (const exec of [[], ["--exec-programs=/bin/echo"]]) {
    const dir = await Deno.makeTempDir({ prefix: "qga-least." });
    try {
      const out = await new Deno.Command(DENO, {
        args: [
          "run",
          "--allow-read",
          "--allow-env",
          `${REPO}/main.ts`,
          "-m",
          "stdio",
          "-t",
          dir,
          ...exec,
          "--print-permissions",
        ],
        stdout: "piped",
      }).output();
      const line = new TextDecoder().decode(out.stdout).trim().split(" ");
      const flags = line.slice(
        line.indexOf("run") + 1,
        line.findIndex((a) => a.endsWith("main.ts")),
      );
      const [info] = await stdioAgent(flags, [{ execute: "guest-info" }], { args: exec, dir }) as [
        Info,
      ];
      const disabled = info.return.supported_commands.filter((c) => !c.enabled).map((c) => c.name);
      assert.deepEqual(disabled, exec.length ? [] : ["guest-exec"], flags.join(" "));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("the card's line honours TZ and QGA_OS_RELEASE of its environment without --allow-env", async () => {
  const dir = await Deno.makeTempDir({ prefix: "qga-card-env." });
  try {
    await Deno.writeTextFile(`${dir}/os-release`, 'ID=cardtest\nNAME="Card Test"\n');
    const [tz, os] = await stdioAgent(
      ["--allow-read", "--allow-write", "--allow-run"],
      [{ execute: "guest-get-timezone" }, { execute: "guest-get-osinfo" }],
      { env: { TZ: "Asia/Kolkata", QGA_OS_RELEASE: `${dir}/os-release` } },
    ) as [Record<string, unknown>, { return: Record<string, string> }];
    assert.deepEqual(tz, { return: { zone: "IST", offset: 19800 } });
    assert.equal(os.return.id, "cardtest");
    assert.equal(os.return.name, "Card Test");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
