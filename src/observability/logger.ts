// JSON logs with pino, one line per record on stdout. Each part logs through a
// child with a `component` field (node, journal, actors, grpc, timers...).
// A line written inside a span carries its trace_id and span_id (tracing.ts).

import pino, { type Logger } from "pino";
import { traceFields } from "./tracing";

export const CENSOR = "[redacted]";

/**
 * Keys never logged in clear wherever they appear up to two levels down (an
 * error's options, a client's settings): pino's `redact` paths.
 */
export const REDACTED_KEYS = ["password", "token", "secret", "credentials", "authorization", "apiKey"] as const;
const REDACT_PATHS = REDACTED_KEYS.flatMap((key) => [key, `*.${key}`, `*.*.${key}`]);

/**
 * The configuration logged at start (`config`) may gain secrets with any
 * name (natsToken, etcdPassword): every key that looks like one is censored,
 * so a new variable is covered without editing a list.
 */
const SECRET_KEY = /pass(word)?|token|secret|credential|authoriz|api_?key|private_?key/i;

function censorSecrets(config: unknown): unknown {
  if (typeof config !== "object" || config === null) return config;
  return Object.fromEntries(Object.entries(config).map(([key, value]) => [key, SECRET_KEY.test(key) ? CENSOR : value]));
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: "quartermaster" },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    serializers: { config: censorSecrets },
    mixin: traceFields,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
