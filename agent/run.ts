/**
 * Start-up and shutdown of the agent process, wired by main.ts: log file, helper,
 * sandbox check of every command, state dir, pid file, transport, signals, and
 * the thaw that must happen whenever the agent stops while frozen (except when it
 * exits for a restart: SIGUSR2).
 *
 * @module
 */

import type { AgentOptions } from "../config/options.ts";
import type { Command } from "../commands/types.ts";
import type { SystemAccess } from "../system/mod.ts";
import type { AgentEnvironment } from "../system/environment.ts";
import type { Transport } from "../transport/connection.ts";
import { Agent } from "./agent.ts";
import { AgentLog, type LogSink } from "./log.ts";
import { channelNeedsHelper, needsOf, sandboxDisabled } from "./permissions.ts";
import type { InitRequest } from "../helper/protocol.ts";
import { loadInspectorGuard } from "../helper/inspector.ts";

/** The privileged helper as the start-up code sees it. */
export interface HelperHandle {
  close(): Promise<void>;
  /** Resolves when the helper that relays the channel exits. */
  readonly exited: Promise<unknown>;
  /** While `keep()` is true an idle helper is not let go. */
  setKeepAlive?(keep: () => boolean): void;
}

/** What main.ts plugs in. */
export interface RunDeps<H extends HelperHandle> {
  options: AgentOptions;
  /** The command table; with `lateCommands`, only the commands answered before it loads. */
  commands: readonly Command[];
  /**
   * The whole command table, loaded once the first reply is written (with the helper's
   * start, before any other request is served: Agent's `ready`), so that start-up loads
   * no command module but the ones in `commands` (main.ts: guest-sync and
   * guest-sync-delimited). `needHelper`: whether a command of the table needs the
   * privileged helper, which starts before any host input is read, so before the table
   * is loaded (tests/unit/agent_ready_test.ts checks main.ts's value against COMMANDS).
   */
  lateCommands?: { load(): Promise<readonly Command[]>; needHelper: boolean };
  version: string;
  /** The environment variables the agent reads, read once at start-up. */
  environment: AgentEnvironment;
  /** Starts the helper and sends Init (before any host input is read). */
  startHelper(path: string, init: InitRequest, hooks?: { onInitSent?(): void }): Promise<H>;
  createSystem(helper: H | undefined): SystemAccess;
  openTransport(
    options: AgentOptions,
    helper: H | undefined,
    hooks: { log?(level: "warning" | "critical", msg: string): void },
  ): Promise<Transport>;
  /** Thaws every filesystem (fsfreeze's thaw, without the reply). */
  thawAll?(agent: Agent): Promise<unknown>;
  /** Log lines in JSON instead of qemu-ga's text format. */
  jsonLog?: boolean;
}

const stderrSink: LogSink = { writeSync: (p) => Deno.stderr.writeSync(p) };

function openLogFile(path: string): LogSink {
  const f = Deno.openSync(path, { append: true, create: true });
  return { writeSync: (p) => f.writeSync(p) };
}

/**
 * Holds 127.0.0.1:9229, Deno's SIGUSR1 inspector address, for the agent's life, so the
 * inspector of no deno process on the guest can bind there (the helper, which may come
 * and go, does the same while it runs). Connections are closed at once: nobody can speak
 * the inspector protocol. Needs `--allow-net=127.0.0.1:9229` (the least-privilege line
 * has it); without it, or with the port taken by another program, nothing is held and
 * `closeInspectorOnSigusr1` (helper/inspector.ts) is the guard.
 */
export function holdInspectorPort(): boolean {
  if (inspectorPortHeld) return true;
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: "127.0.0.1", port: 9229 });
  } catch {
    return false;
  }
  inspectorPortHeld = true;
  (async () => {
    for await (const conn of listener) conn.close();
  })().catch(() => {});
  return true;
}
let inspectorPortHeld = false;

/**
 * The inspector guard of a process: holds the port when it can; when it cannot, loads
 * node:inspector now so that a SIGUSR1 finds the inspector's close ready
 * (helper/inspector.ts). Returns whether the port is held.
 */
export async function guardInspector(): Promise<boolean> {
  if (holdInspectorPort()) return true;
  await loadInspectorGuard();
  return false;
}

/** What the helper is told at start: the fsfreeze hook and the channel device. */
export function helperInit(options: AgentOptions): InitRequest {
  return {
    fsfreezeHook: options.fsfreezeHook ?? null,
    channel: options.method === "virtio-serial" || options.method === "isa-serial"
      ? { path: options.path, mode: options.method }
      : null,
  };
}

/** Runs the agent until a signal or a fatal channel error; returns the exit code. */
export async function runAgent<H extends HelperHandle>(deps: RunDeps<H>): Promise<number> {
  const { options, commands } = deps;
  const log = new AgentLog({
    verbose: options.verbose,
    json: deps.jsonLog ?? false,
    sink: stderrSink,
  });

  await guardInspector();
  const wantsHelper = channelNeedsHelper(options) || deps.lateCommands?.needHelper === true ||
    commands.some((c) => (needsOf(c, options).helper?.length ?? 0) > 0);
  // The helper starts now, and its Init is in its stdin pipe before the agent reads any
  // host input (`initSent`): the settings the first helper records (and later helpers
  // take) come from an agent no host byte has reached. Only a channel relayed by the
  // helper waits for the whole start; otherwise the agent answers guest-sync while the
  // helper starts, and every other request waits for the outcome (Agent's `ready`, so
  // guest-info and the commands that need the helper see it).
  let starting: Promise<H | undefined> | undefined;
  let initSent = Promise.resolve();
  let markSent = () => {};
  if (wantsHelper) initSent = new Promise((r) => (markSent = r));
  const startHelperOnce = (): Promise<H | undefined> =>
    starting ??= wantsHelper
      ? deps.startHelper(options.helper, helperInit(options), { onInitSent: () => markSent() })
        .catch((e) => {
          const msg = (e as Error).message;
          if (channelNeedsHelper(options)) {
            log.error(`cannot start the privileged helper ${options.helper}: ${msg}`);
            log.error("failed to initialize guest agent channel");
            throw e;
          }
          log.warn(`privileged helper unavailable (${msg}); commands that need it are disabled`);
          return undefined;
        }).finally(() => markSent())
      : Promise.resolve(undefined);
  let helper: H | undefined;
  if (channelNeedsHelper(options)) {
    try {
      helper = await startHelperOnce();
    } catch {
      return 1;
    }
  }
  void startHelperOnce().catch(() => {});
  /** The whole command table: loaded once (a failure to load it stops the agent). */
  let table: Promise<readonly Command[] | undefined> | undefined;
  const loadTable = () =>
    table ??= deps.lateCommands
      ? deps.lateCommands.load().catch((e) => {
        log.error(`cannot load the command table: ${(e as Error).message}`);
        void shutdown("no command table");
        return undefined;
      })
      : Promise.resolve(undefined);
  /** The helper's start, the table's load and what follows from them, once. */
  let readying: Promise<void> | undefined;
  const ready = (): Promise<void> =>
    readying ??= Promise.all([startHelperOnce(), loadTable()]).then(([h, all]) => {
      helper = h;
      const disabled = sandboxDisabled(all ?? commands, options, h !== undefined);
      for (const [name, reason] of disabled) log.debug(`disabling command: ${name}: ${reason}`);
      agent.attach(deps.createSystem(h), disabled, all);
      // A frozen guest keeps its helper: starting one needs files a freeze may hold.
      h?.setKeepAlive?.(() => agent.frozen);
      // A helper that relays the channel and dies ends the agent (systemd or the operator
      // restarts it); any other helper is started again at the next request that needs one.
      h?.exited.then(() => {
        if (!exiting) {
          log.error("the privileged helper that relays the channel exited; stopping");
          void shutdown("helper exited");
        }
      });
    }, () => {});
  let exiting = false;

  for (const name of deps.environment.unreadable) {
    log.warn(
      `environment variable ${name} cannot be read (no --allow-env=${name}); treated as unset`,
    );
  }

  let startedFrozen = false;
  const agent = new Agent({
    options,
    commands,
    sys: deps.createSystem(helper),
    env: deps.environment,
    log,
    version: deps.version,
    // Until `ready` settles only guest-sync and guest-sync-delimited (which need nothing)
    // are served: what the sandbox disables is worked out then, not before the first reply.
    sandboxDisabled: new Map(),
    onThaw: () => {
      if (startedFrozen) {
        startedFrozen = false;
        openDeferred();
      }
    },
    ready,
  });

  try {
    startedFrozen = agent.start();
  } catch (e) {
    log.error((e as Error).message);
    log.error("failed to load persistent state");
    log.error("error initializing guest agent");
    await starting?.then((h) => h?.close(), () => {});
    return 1;
  }
  // While frozen the log file and pid file are deferred (they may live on a frozen fs).
  const openDeferred = () => {
    if (options.logfile) {
      try {
        log.setSink(openLogFile(options.logfile));
      } catch (e) {
        log.error(`unable to open specified log file: ${(e as Error).message}`);
      }
    }
    if (options.daemonize) {
      try {
        Deno.writeTextFileSync(options.pidfile, `${Deno.pid}\n`, { mode: 0o600 });
      } catch (e) {
        log.error(`Cannot open pid file, ${(e as Error).message}`);
      }
    }
  };
  if (!startedFrozen) openDeferred();

  let transport: Transport;
  try {
    transport = await deps.openTransport(options, helper, {
      log: (level, msg) => (level === "critical" ? log.error(msg) : log.warn(msg)),
    });
  } catch (e) {
    log.error(`error opening channel '${options.path}': ${(e as Error).message}`);
    log.error("failed to create guest agent channel");
    log.error("failed to initialize guest agent channel");
    await starting?.then((h) => h?.close(), () => {});
    return 1;
  }

  const shutdown = async (why: string, keepFrozen = false) => {
    if (exiting) return;
    exiting = true;
    log.debug(why);
    if (agent.frozen && deps.thawAll && !keepFrozen) {
      // Thawing needs the helper: started now if it was not yet.
      await ready();
      try {
        await deps.thawAll(agent);
      } catch (e) {
        log.error(`failed to thaw filesystems on exit: ${(e as Error).message}`);
      }
    }
    agent.stop();
    if (options.daemonize) {
      try {
        Deno.removeSync(options.pidfile);
      } catch {
        // Not there.
      }
    }
    await starting?.then((h) => h?.close(), () => {}).catch(() => {});
    log.flush();
    Deno.exit(0);
  };
  // A bug must not leave the guest frozen: an error nobody caught is logged; the
  // agent thaws and exits on one thrown synchronously, and keeps serving after a
  // rejected promise (both are reported with their stack in the log).
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    log.error(`unhandled rejection: ${(e.reason as Error)?.stack ?? e.reason}`);
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    log.error(`uncaught error: ${(e.error as Error)?.stack ?? e.message}`);
    void shutdown("uncaught error");
  });
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    Deno.addSignalListener(sig, () => void shutdown(`received signal ${sig}, quitting`));
  }
  // SIGUSR2: exit for a restart (the unit's RestartKillSignal=). As SIGTERM, but a frozen
  // guest stays frozen: the frozen marker stays in the state dir, the next agent starts
  // frozen and the host's guest-fsfreeze-thaw still thaws (docs/robustness.md).
  Deno.addSignalListener(
    "SIGUSR2",
    () => void shutdown("received signal SIGUSR2, exiting for a restart", true),
  );

  // No host byte is read before the helper's Init is on its way (see startHelperOnce).
  await initSent;
  try {
    await agent.serve(transport);
  } catch (e) {
    log.error(`agent stopped unexpectedly: ${(e as Error).message}`);
    await shutdown("channel failure");
    return 1;
  }
  await shutdown("transport closed");
  return 0;
}
