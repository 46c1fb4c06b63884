/**
 * Runs a probe script (TypeScript source) in a child deno process of its own, in a network
 * namespace of its own (`unshare -n`): a probe that runs the agent's start-up holds
 * 127.0.0.1:9229 there, not on the machine. The probe gets a fresh temporary directory
 * as its first argument. Needs root (unshare).
 *
 * @module
 */

/** What the probe printed, and its exit code. */
export interface ProbeOutput {
  code: number;
  stdout: string;
  stderr: string;
}

/** Writes `source` to a temporary dir, runs it there (30 s at most), removes the dir. */
export async function runProbeInNetns(source: string, prefix: string): Promise<ProbeOutput> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await Deno.writeTextFile(`${dir}/probe.ts`, source);
    const out = await new Deno.Command("unshare", {
      args: ["-n", Deno.execPath(), "run", "-A", "--no-config", `${dir}/probe.ts`, dir],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
