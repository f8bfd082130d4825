// The server process: `npm start` execs it, and a container runs it directly.

import { setLogger } from "@grpc/grpc-js";
import { ConfigError, loadConfig } from "./config";
import { armCrashPoints } from "./fault/crash_points";
import { JOURNAL_FAILED_EXIT_DEADLINE_MS, SIGNAL_REPEAT_IGNORE_MS } from "./limits";
import { startClusterNode } from "./cluster_node";
import { type RunningNode, startNode } from "./node";
import { createLogger } from "./observability/logger";
import { startTracing, type Tracing } from "./observability/tracing";
import { VERSION } from "./version";

/**
 * Exit code after the embedded journal failed (sysexits' EX_IOERR): the
 * supervisor restarts the node, which recovers from what is on disk.
 */
const EXIT_JOURNAL_FAILED = 74;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`quartermaster: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  const log = logger.child({ component: "process" });
  let tracing: Tracing;
  try {
    tracing = await startTracing(config.tracing, config.nodeId, VERSION);
  } catch (error) {
    process.stderr.write(`quartermaster: cannot start tracing: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  }
  // Every request path catches its own errors, so a rejection nobody handled
  // is a bug whose effects are unknown: log it and exit, and let the
  // supervisor restart a clean process (the journal recovers it).
  process.on("unhandledRejection", (reason) => {
    log.fatal({ err: reason }, "unhandled rejection: exiting");
    process.exit(70);
  });
  // grpc-js writes its own errors to stderr ("E No address added..."); ours
  // say the same with the variable's name, so its lines go to the JSON log at debug.
  const grpcLog = logger.child({ component: "grpc-js" });
  setLogger({ error: (...args: unknown[]) => grpcLog.debug(args.map(String).join(" ")) });
  armCrashPoints(config.faultCrashPoints);
  log.debug({ config }, "configuration");

  // Handlers go in before anything starts: without one, a SIGTERM that
  // arrives while the node starts (or just as it logs "serving") would kill
  // the process by the default action instead of draining it.
  let node: Promise<RunningNode> | undefined;
  let firstSignalMs: number | undefined;
  const shutdown = (signal: string): void => {
    if (firstSignalMs !== undefined) {
      // `npm start` forwards the signal a terminal or supervisor also sent to
      // the whole process group: one Ctrl-C arrives twice. Only a signal
      // repeated later means "stop waiting".
      if (performance.now() - firstSignalMs < SIGNAL_REPEAT_IGNORE_MS) return;
      log.warn({ signal }, "second signal: exiting at once");
      process.exit(1);
    }
    firstSignalMs = performance.now();
    log.info({ signal }, "draining");
    // A node still starting is stopped once it has started (or has failed, which exits below).
    (node ?? Promise.reject(new Error("not started")))
      .then((running) => running.stop())
      // Spans still buffered are exported before the process exits.
      .then(() => tracing.stop())
      .then(
        () => {
          log.info("stopped");
          process.exit(0);
        },
        (error: unknown) => {
          log.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  // SIGHUP means "reload" to operators (QM_AUTH_CONFIG, the listener's certificate); its
  // default action would kill a node that has nothing to reload, or one that
  // is starting or stopping while the reload handler is not installed.
  process.on("SIGHUP", () => {
    if (process.listenerCount("SIGHUP") === 1) log.info("SIGHUP: nothing to reload (neither QM_AUTH_CONFIG nor QM_TLS_CERT is set, or the node is not serving)");
  });

  node = config.cluster === undefined ? startNode(config, logger) : startClusterNode(config, config.cluster, logger);
  let running: RunningNode;
  try {
    running = await node;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log.fatal({ err: error }, "failed to start");
    process.stderr.write(`quartermaster: cannot start: ${message}\n`);
    process.exit(1);
  }
  // A failed journal (an fsync EIO, lmdb_journal.ts) is not survivable in
  // process: drain what is in flight (each of those writes already failed
  // with JOURNAL_FAILED), then exit for the supervisor to restart us into
  // recovery, as PostgreSQL PANICs. The journal logged the reason at error.
  void running.journalFailed?.then(() => {
    setTimeout(() => process.exit(EXIT_JOURNAL_FAILED), JOURNAL_FAILED_EXIT_DEADLINE_MS).unref();
    running
      .stop()
      .then(() => tracing.stop())
      .catch((error: unknown) => log.error({ err: error }, "shutdown after the journal failed did not finish"))
      .finally(() => {
        log.fatal({ code: EXIT_JOURNAL_FAILED }, "journal failed: exiting for a restart into recovery");
        process.exit(EXIT_JOURNAL_FAILED);
      });
  });
}

void main();
