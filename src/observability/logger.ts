// JSON logs with pino, one line per record on stdout. Each part logs through a
// child with a `component` field (node, journal, actors, grpc, timers...).
// A line written inside a span carries its trace_id and span_id (tracing.ts).

import { Metadata } from "@grpc/grpc-js";
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

/** The password of a URL's user info (redis://:pw@host, nats://u:pw@host), wherever a URL holds one. */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^:@/\s]*:)[^@/\s]+@/gi;

function censorSecrets(config: unknown): unknown {
  if (typeof config !== "object" || config === null) return config;
  return Object.fromEntries(
    Object.entries(config).map(([key, value]) => [key, SECRET_KEY.test(key) ? CENSOR : typeof value === "string" ? value.replace(URL_PASSWORD, `$1${CENSOR}@`) : value]),
  );
}

/**
 * gRPC metadata carries bearer tokens (`authorization`). A grpc-js Metadata
 * object hides its entries from pino's redact paths and hands them all over
 * through toJSON, so wherever one is logged (as a field, inside an object or
 * an error: a ServiceError carries its trailers) it is replaced by its entries
 * with every secret-looking key censored.
 */
const METADATA_DEPTH_MAX = 3;

function censoredMetadata(metadata: Metadata): Record<string, unknown> {
  return Object.fromEntries(Object.entries(metadata.toJSON()).map(([key, values]) => [key, SECRET_KEY.test(key) || /cookie/i.test(key) ? CENSOR : values]));
}

function withoutMetadata(value: unknown, depth: number): unknown {
  if (value instanceof Metadata) return censoredMetadata(value);
  if (value instanceof Error) return Object.values(value).some((v) => v instanceof Metadata) ? errorWithoutMetadata(value) : value;
  if (depth >= METADATA_DEPTH_MAX || typeof value !== "object" || value === null || Array.isArray(value)) return value;
  let copy: Record<string, unknown> | undefined;
  for (const [key, inner] of Object.entries(value)) {
    const replaced = withoutMetadata(inner, depth + 1);
    if (replaced !== inner) {
      copy ??= { ...(value as Record<string, unknown>) };
      copy[key] = replaced;
    }
  }
  return copy ?? value;
}

function errorWithoutMetadata(error: Error): ReturnType<typeof pino.stdSerializers.err> {
  const serialized = pino.stdSerializers.err(error);
  const record = serialized as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(record)) if (value instanceof Metadata) record[key] = censoredMetadata(value);
  return serialized;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: "quartermaster" },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    serializers: { config: censorSecrets, err: errorWithoutMetadata },
    formatters: { log: (object) => withoutMetadata(object, 0) as Record<string, unknown> },
    mixin: traceFields,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
