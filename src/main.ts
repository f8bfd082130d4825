// `npm start`: one single-node Quartermaster process.

import { QmError } from "./errors";
import { ConfigError, loadConfig } from "./config";
import { startNode } from "./node";
import { createLogger } from "./observability/logger";

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
  // A stray rejection belongs to one request; it must not take the node down.
  process.on("unhandledRejection", (reason) => logger.error({ err: reason }, "unhandled rejection"));
  let node;
  try {
    node = await startNode(config, logger);
  } catch (error) {
    const message = error instanceof QmError || error instanceof Error ? error.message : String(error);
    logger.fatal({ err: error }, "failed to start");
    process.stderr.write(`quartermaster: cannot start: ${message}\n`);
    process.exit(1);
  }
  const running = node;
  let signals = 0;
  const shutdown = (signal: string): void => {
    if (++signals > 1) {
      logger.warn({ signal }, "second signal: exiting at once");
      process.exit(1);
    }
    logger.info({ signal }, "draining");
    running.stop().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}

void main();
