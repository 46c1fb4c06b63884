/**
 * A Context for unit tests of command handlers: a fixture SystemAccess, an
 * in-memory handle counter and frozen flag, a recording logger and a scripted
 * `run` so no test spawns shutdown, chpasswd or fsfreeze on the test machine.
 * The helper programs a command asks for (ctx.sys.runProgram) are turned into
 * the argv and stdin the helper would run (helper/programs.ts `invocation`, the
 * helper's own code) and handed to `run`.
 *
 * @module
 */

import type { Context, Logger, RegistryEntry, RunResult } from "../../commands/types.ts";
import { type AgentOptions, defaultOptions } from "../../config/options.ts";
import type { ProgramRequest, SystemAccess } from "../../system/mod.ts";
import { invocation } from "../../helper/programs.ts";
import {
  type AgentEnvironment,
  type AgentEnvName,
  fixedEnvironment,
} from "../../system/environment.ts";

/** Options of {@link fakeContext}. */
export interface FakeContextOptions {
  sys?: SystemAccess;
  options?: Partial<AgentOptions>;
  /** Answers ctx.sys.runProgram with the argv the helper would run (see `runs`). */
  run?: (argv: string[], input?: Uint8Array) => RunResult | Promise<RunResult>;
  registry?: RegistryEntry[];
  /** The agent's environment variables; default: the test process's own, read when asked. */
  env?: Partial<Record<AgentEnvName, string>>;
}

/**
 * The test process's environment, read at each call (tests may set TZ meanwhile); a test
 * that runs without env permission sees every variable unset.
 */
const LIVE_ENV: AgentEnvironment = {
  get(name) {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  },
  unreadable: [],
};

/** A fake Context plus what the test may inspect. */
export interface FakeContext extends Context {
  /** Every program run through ctx.sys.runProgram, as argv (and stdin), in order. */
  readonly runs: { argv: string[]; input?: Uint8Array }[];
  /** Every log line, in order. */
  readonly logs: { level: string; msg: string; fields?: Record<string, unknown> }[];
  /** True after delimitNextReply() until read. */
  delimited: boolean;
}

/** qemu-ga's defaults with paths no test owns: unix-listen, no hook, no roots. */
export function testOptions(overrides: Partial<AgentOptions> = {}): AgentOptions {
  return defaultOptions({
    method: "unix-listen",
    path: "/nonexistent/qga.sock",
    pidfile: "/nonexistent/qga.pid",
    statedir: "/nonexistent/state",
    helper: "/nonexistent/qga-helper",
    ...overrides,
  });
}

const NO_SYS: SystemAccess = new Proxy({} as SystemAccess, {
  get(_t, prop) {
    return () => Promise.reject(new Error(`fake context has no system access (${String(prop)})`));
  },
});

/** Builds a fake Context. */
export function fakeContext(o: FakeContextOptions = {}): FakeContext {
  const stores = new Map<string, unknown>();
  let next = 1000n;
  let frozen = false;
  const runs: { argv: string[]; input?: Uint8Array }[] = [];
  const logs: { level: string; msg: string; fields?: Record<string, unknown> }[] = [];
  const mk = (level: string) => (msg: string, fields?: Record<string, unknown>) => {
    logs.push(fields ? { level, msg, fields } : { level, msg });
  };
  const log: Logger = {
    debug: mk("debug"),
    info: mk("info"),
    warn: mk("warn"),
    error: mk("error"),
  };
  const options = testOptions(o.options);
  const base = o.sys ?? NO_SYS;
  const runProgram = async (req: ProgramRequest) => {
    const inv = invocation(req, {
      fsfreezeHook: options.fsfreezeHook ?? null,
      isMountPoint: () => true,
    });
    const argv = [...inv.argv];
    runs.push(inv.stdin ? { argv, input: inv.stdin } : { argv });
    if (!o.run) throw new Error(`fake context: unexpected run of ${argv.join(" ")}`);
    return await o.run(argv, inv.stdin);
  };
  const sys = new Proxy(base, {
    get(target, prop, receiver) {
      if (prop === "runProgram") return runProgram;
      const v = Reflect.get(target, prop, receiver);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  const ctx: FakeContext = {
    sys,
    options,
    env: o.env ? fixedEnvironment(o.env) : LIVE_ENV,
    log,
    version: "10.2.2",
    runs,
    logs,
    delimited: false,
    store<T>(key: string, create: () => T): T {
      if (!stores.has(key)) stores.set(key, create());
      return stores.get(key) as T;
    },
    registry: () => o.registry ?? [],
    delimitNextReply() {
      ctx.delimited = true;
    },
    get frozen() {
      return frozen;
    },
    setFrozen(f: boolean) {
      frozen = f;
      return Promise.resolve();
    },
    allocateHandle() {
      return Promise.resolve(next++);
    },
  };
  return ctx;
}
