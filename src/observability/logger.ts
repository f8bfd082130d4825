// JSON logs with pino. Trace ids join the records once tracing lands (a later issue).

import pino, { type Logger } from "pino";

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: "quartermaster" }, timestamp: pino.stdTimeFunctions.isoTime });
}
