// Every environment variable the service reads, parsed and validated once at
// start. A bad value stops the process with a message naming the variable.

import { hostname } from "node:os";
import type { KeyObject, X509Certificate } from "node:crypto";
import { type FaultDelays, parseFaultDelays } from "./fault/fault_delays";
import { CRASH_POINT_NAMES, type CrashPointName } from "./fault/crash_points";
import { type AuthConfig, AuthConfigError, loadAuthConfig } from "./security/auth_config";
import {
  ACTIVE_ACTORS_MAX,
  GRPC_CONNECTIONS_MAX,
  GRPC_HANDSHAKE_TIMEOUT_MS,
  GRPC_IDLE_TIMEOUT_MS,
  GRPC_PENDING_REQUEST_BYTES_MAX,
  GRPC_QUEUED_RESPONSE_BYTES_MAX,
  GRPC_REQUEST_BODY_TIMEOUT_MS,
  GRPC_SEND_STALL_TIMEOUT_MS,
  GRPC_STREAMS_PER_CONNECTION_MAX,
  ID_LENGTH_MAX,
  ID_PATTERN,
  IDLE_GC_GARBAGE_MIN_BYTES,
  ORDER_RESERVATION_GRACE_MS,
} from "./limits";
import { PemFile, readCertificates, readPrivateKey, readTlsFile, Secret } from "./security/tls_files";

export interface Config {
  /** host:port of the gRPC server. */
  readonly listen: string;
  /** This node's name among the cluster's members; `local` for the embedded node unless set. */
  readonly nodeId: string;
  readonly dataDir: string;
  /** host:port of the Prometheus /metrics endpoint; empty disables it. */
  readonly metricsListen: string;
  readonly logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace";
  readonly actorIdleMs: number;
  readonly activeActorsMax: number;
  /** Heap growth (bytes) after which an idle node collects its garbage; 0: never. */
  readonly idleGcGarbageBytes: number;
  readonly timerTickMs: number;
  readonly auditRetentionMs: number;
  readonly auditMaxPerSku: number;
  readonly shutdownGraceMs: number;
  readonly orderReservationGraceMs: number;
  /** Tests only: stalls at named points (src/fault/fault_delays.ts). */
  readonly faultDelays: FaultDelays;
  /** Start with an empty journal even though the data directory's identity says one existed (it was lost). */
  readonly allowEmptyJournal: boolean;
  /** Tests only: points where the process kills itself (src/fault/crash_points.ts). */
  readonly faultCrashPoints: readonly CrashPointName[];
  readonly grpcEdge: GrpcEdgeConfig;
  /** TLS on the gRPC listener (QM_TLS_CERT, QM_TLS_KEY); undefined: plaintext h2c. */
  readonly tls: ListenerTlsConfig | undefined;
  /** Cluster mode, when QM_ETCD_ENDPOINTS and QM_NATS_URL are set; undefined: the embedded single node. */
  readonly cluster: ClusterConfig | undefined;
  /** OpenTelemetry tracing, from the standard OTEL_* variables. */
  readonly tracing: TracingConfig;
  /** QM_AUTH_CONFIG, read and checked (src/security/auth_config.ts); undefined: every caller is anonymous. */
  readonly auth: AuthConfig | undefined;
  /** redis:// or rediss:// URL of the rate limiter's shared buckets; empty: buckets in this node's memory. */
  readonly redisUrl: string;
}

export type TraceSamplerName =
  | "always_on"
  | "always_off"
  | "traceidratio"
  | "parentbased_always_on"
  | "parentbased_always_off"
  | "parentbased_traceidratio";

export interface TracingConfig {
  readonly exporter: "none" | "otlp" | "console";
  readonly protocol: "http/protobuf" | "http/json" | "grpc";
  /** Base URL of the OTLP receiver; the http protocols append /v1/traces. */
  readonly endpoint: string;
  readonly serviceName: string;
  /** From OTEL_RESOURCE_ATTRIBUTES, already percent-decoded. */
  readonly resourceAttributes: Readonly<Record<string, string>>;
  readonly sampler: TraceSamplerName;
  /** The ratio of the traceidratio samplers (0..1). */
  readonly samplerRatio: number;
  readonly bspScheduleDelayMs: number;
  readonly bspExportTimeoutMs: number;
  readonly bspMaxQueueSize: number;
  readonly bspMaxExportBatchSize: number;
}

export interface ClusterConfig {
  readonly etcdEndpoints: readonly string[];
  readonly natsUrl: string;
  /** Several clusters may share one etcd and one NATS: every key, subject and stream is under this name. */
  readonly name: string;
  readonly leaseTtlS: number;
  /** Used only when the cluster is created; a node with another value against an existing cluster exits. */
  readonly partitions: number;
  /** The address other nodes and clients use for this node; empty: the bound QM_LISTEN address. */
  readonly advertise: string;
  readonly journalReplicas: number;
  /** CA that signed etcd's server certificate (QM_ETCD_CA); only with https:// endpoints. */
  readonly etcdCa: PemFile | undefined;
  /** The node's client certificate and key for an etcd run with --client-cert-auth (QM_ETCD_CERT, QM_ETCD_KEY). */
  readonly etcdClientCert: { readonly cert: PemFile; readonly key: PemFile } | undefined;
  /** etcd's own authentication (QM_ETCD_USER, QM_ETCD_PASSWORD). */
  readonly etcdAuth: { readonly username: string; readonly password: Secret<string> } | undefined;
  /** A NATS .creds file (user JWT and NKey seed), QM_NATS_CREDS. */
  readonly natsCreds: { readonly path: string; readonly contents: Secret<Uint8Array> } | undefined;
  /** CA that signed the NATS server's certificate (QM_NATS_CA); the connection then requires TLS. */
  readonly natsCa: PemFile | undefined;
}

/** The listener's certificate and key, and the CA its clients' certificates must chain to for mutual TLS. */
export interface ListenerTlsConfig {
  readonly cert: PemFile;
  readonly key: PemFile;
  /** QM_TLS_CLIENT_CA: set, a client without a certificate signed by it is refused in the handshake. */
  readonly clientCa: PemFile | undefined;
}

/** What the gRPC edge allows clients (src/grpc/edge.ts); the defaults and reasons are in limits.ts. */
export interface GrpcEdgeConfig {
  readonly connectionsMax: number;
  readonly streamsPerConnectionMax: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly requestBodyTimeoutMs: number;
  readonly sendStallTimeoutMs: number;
  readonly pendingRequestBytesMax: number;
  readonly queuedResponseBytesMax: number;
  /** Reserve answered on the raw http2 stream instead of through grpc-js (src/grpc/direct_reserve.ts). */
  readonly directReserve: boolean;
}

/** The table the README documents: name, default, meaning. */
export const CONFIG_VARIABLES = {
  QM_LISTEN: ["127.0.0.1:50051", "gRPC listen address (host:port; port 0 picks a free one)"],
  QM_NODE_ID: ["local", "this node's id among the cluster's members (letters, digits, . _ : -)"],
  QM_DATA_DIR: ["./data", "data directory (journal); one process per directory"],
  QM_METRICS_LISTEN: ["127.0.0.1:9464", "Prometheus /metrics address; empty turns it off"],
  QM_LOG_LEVEL: ["info", "fatal, error, warn, info, debug or trace"],
  QM_ACTOR_IDLE_MS: ["60000", "an actor idle this long is passivated (dropped from memory), at most a second later (a quarter of this when shorter)"],
  QM_ACTIVE_ACTORS_MAX: [
    String(ACTIVE_ACTORS_MAX),
    "actors kept in memory at most; least recently used idle ones go first (recency to within a second); when all are busy, new callers get RESOURCE_EXHAUSTED (ACTORS_EXHAUSTED)",
  ],
  QM_IDLE_GC_MIB: [
    String(IDLE_GC_GARBAGE_MIN_BYTES / 1024 / 1024),
    "an idle node (event loop under 2% busy for 6 seconds) runs one full garbage collection once its heap grew this many MiB, or 1,000 actors left memory, since the last one, so passivated actors' memory goes back; 0 turns it off",
  ],
  QM_TIMER_TICK_MS: ["250", "how often due expiries and saga retries are polled, and asks past their deadline answered"],
  QM_AUDIT_RETENTION_DAYS: ["365", "adjustment audit records older than this are dropped"],
  QM_AUDIT_MAX_PER_SKU: ["100000", "adjustment audit records kept per SKU at most (oldest dropped)"],
  QM_SHUTDOWN_GRACE_MS: ["10000", "on SIGTERM, how long calls in flight may take to finish"],
  QM_ORDER_RESERVATION_GRACE_MS: [String(ORDER_RESERVATION_GRACE_MS), "an order's holds outlive its payment deadline by this much"],
  QM_FAULT_DELAYS: ["", "tests only: point=ms pairs (src/fault/fault_delays.ts) where the process stalls, e.g. journal.append=2000"],
  QM_ALLOW_EMPTY_JOURNAL: ["0", "1: start with an empty journal although the data directory's identity file says its journal was lost (0 refuses to start)"],
  QM_ETCD_ENDPOINTS: ["", "cluster mode (with QM_NATS_URL): comma-separated etcd client URLs, e.g. http://10.0.0.5:2379"],
  QM_NATS_URL: ["", "cluster mode (with QM_ETCD_ENDPOINTS): NATS server URL(s), comma-separated, e.g. nats://10.0.0.5:4222"],
  QM_CLUSTER: ["default", "cluster name; clusters sharing one etcd and NATS are kept apart by it"],
  QM_LEASE_TTL_S: ["10", "etcd lease TTL of a node, seconds; a node that cannot renew stops serving before it ends"],
  QM_PARTITIONS: ["256", "partitions of a new cluster (fixed once the cluster exists)"],
  QM_ADVERTISE: ["", "host:port other nodes and clients use for this node; empty: the bound QM_LISTEN"],
  QM_JOURNAL_REPLICAS: ["1", "JetStream replicas of the cluster's journal streams (production: 3)"],
  QM_ETCD_CA: ["", "cluster mode: PEM CA bundle that signed etcd's server certificate (endpoints must be https://)"],
  QM_ETCD_CERT: ["", "cluster mode: PEM client certificate (chain) the node presents to etcd (etcd run with --client-cert-auth); with QM_ETCD_KEY, https:// endpoints only"],
  QM_ETCD_KEY: ["", "cluster mode: PEM private key (unencrypted) of QM_ETCD_CERT"],
  QM_ETCD_USER: ["", "cluster mode: etcd user (etcd's own authentication; with QM_ETCD_PASSWORD)"],
  QM_ETCD_PASSWORD: ["", "cluster mode: the etcd user's password (never logged)"],
  QM_NATS_CREDS: ["", "cluster mode: NATS .creds file (user JWT and NKey seed) the node authenticates with"],
  QM_NATS_CA: ["", "cluster mode: PEM CA bundle that signed the NATS server's certificate; the connection then requires TLS"],
  QM_TLS_CERT: ["", "PEM certificate (chain) of the gRPC listener; with QM_TLS_KEY the listener serves TLS only"],
  QM_TLS_KEY: ["", "PEM private key (unencrypted) of QM_TLS_CERT; SIGHUP re-reads QM_TLS_CERT, QM_TLS_KEY and QM_TLS_CLIENT_CA for new connections"],
  QM_TLS_CLIENT_CA: ["", "PEM CA bundle: clients must present a certificate signed by it (mutual TLS); its subject CN names the caller"],
  QM_REDIS_URL: ["", "rate limits shared by all nodes: redis:// or rediss:// URL (user, password, db in it); empty: per node, the limit divided by the members"],
  OTEL_TRACES_EXPORTER: ["none", "tracing: none (off, no cost), otlp (to OTEL_EXPORTER_OTLP_ENDPOINT) or console (spans on stdout)"],
  OTEL_EXPORTER_OTLP_ENDPOINT: ["", "OTLP receiver base URL; empty: http://localhost:4318 (http/*) or http://localhost:4317 (grpc)"],
  OTEL_EXPORTER_OTLP_PROTOCOL: ["http/protobuf", "http/protobuf, http/json or grpc"],
  OTEL_SERVICE_NAME: ["quartermaster", "service.name of every span (service.instance.id is QM_NODE_ID)"],
  OTEL_RESOURCE_ATTRIBUTES: ["", "extra resource attributes, key=value pairs separated by commas (values percent-encoded)"],
  OTEL_TRACES_SAMPLER: [
    "parentbased_always_on",
    "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio",
  ],
  OTEL_TRACES_SAMPLER_ARG: ["1", "the ratio (0 to 1) of the traceidratio samplers"],
  OTEL_BSP_SCHEDULE_DELAY: ["5000", "ms between span exports"],
  OTEL_BSP_EXPORT_TIMEOUT: ["30000", "ms an export may take"],
  OTEL_BSP_MAX_QUEUE_SIZE: ["2048", "spans waiting for export at most; more are dropped"],
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: ["512", "spans per export at most (not above OTEL_BSP_MAX_QUEUE_SIZE)"],
  QM_FAULT_CRASH_POINTS: ["", `tests only: comma-separated crash points (${CRASH_POINT_NAMES.join(", ")}) where the process SIGKILLs itself`],
  QM_GRPC_CONNECTIONS_MAX: [String(GRPC_CONNECTIONS_MAX), "open gRPC connections at most; a new one beyond it is closed at once"],
  QM_GRPC_STREAMS_PER_CONNECTION_MAX: [String(GRPC_STREAMS_PER_CONNECTION_MAX), "concurrent calls per connection (HTTP/2 streams); more are refused"],
  QM_GRPC_HANDSHAKE_TIMEOUT_MS: [String(GRPC_HANDSHAKE_TIMEOUT_MS), "a connection that has not finished the TLS handshake (under TLS) and sent the HTTP/2 preface by then is closed"],
  QM_GRPC_IDLE_TIMEOUT_MS: [String(GRPC_IDLE_TIMEOUT_MS), "a connection without a call for this long is closed (GOAWAY)"],
  QM_GRPC_REQUEST_BODY_TIMEOUT_MS: [String(GRPC_REQUEST_BODY_TIMEOUT_MS), "a call whose request body is not complete by then is reset"],
  QM_GRPC_SEND_STALL_TIMEOUT_MS: [String(GRPC_SEND_STALL_TIMEOUT_MS), "a response the client has not read any of for this long is reset"],
  QM_GRPC_PENDING_REQUEST_MB: [String(GRPC_PENDING_REQUEST_BYTES_MAX / (1024 * 1024)), "MiB of unfinished request bodies held for all clients; a call beyond it is reset"],
  QM_GRPC_QUEUED_RESPONSE_MB: [String(GRPC_QUEUED_RESPONSE_BYTES_MAX / (1024 * 1024)), "MiB of responses waiting for clients that do not read; stalled ones are reset beyond it"],
  QM_GRPC_DIRECT_RESERVE: ["1", "1: Reserve is read and answered on the raw HTTP/2 stream, with grpc-js's semantics and bytes, at less CPU per call; 0: through grpc-js like every other method"],
  QM_AUTH_CONFIG: ["", "JSON file of token issuer, key set, roles, principals, rate limits and revoked credentials (SECURITY.md); set: every RPC but health needs an authenticated caller with the method's permission; SIGHUP re-reads it"],
} as const;

export type VariableName = keyof typeof CONFIG_VARIABLES;

export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const get = (name: VariableName): string => env[name] ?? CONFIG_VARIABLES[name][0];
  const int = (name: VariableName, min: number, max: number): number => {
    const raw = get(name);
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || value < min || value > max) {
      throw new ConfigError(`${name}=${raw}: expected a whole number from ${min} to ${max}`);
    }
    return value;
  };
  const address = (name: VariableName, allowEmpty: boolean): string => {
    const raw = get(name);
    if (allowEmpty && raw === "") return raw;
    if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(raw) || Number(raw.slice(raw.lastIndexOf(":") + 1)) > 65535) {
      throw new ConfigError(`${name}=${raw}: expected host:port`);
    }
    return raw;
  };
  const logLevel = get("QM_LOG_LEVEL");
  if (!["fatal", "error", "warn", "info", "debug", "trace"].includes(logLevel)) {
    throw new ConfigError(`QM_LOG_LEVEL=${logLevel}: expected fatal, error, warn, info, debug or trace`);
  }
  const nodeId = get("QM_NODE_ID");
  if (!(nodeId.length >= 1 && nodeId.length <= ID_LENGTH_MAX && ID_PATTERN.test(nodeId))) {
    throw new ConfigError(`QM_NODE_ID=${nodeId}: expected 1-${ID_LENGTH_MAX} characters of letters, digits and . _ : -`);
  }
  const faultDelays = (name: VariableName): FaultDelays => {
    try {
      return parseFaultDelays(get(name));
    } catch (error) {
      throw new ConfigError(`${name}=${get(name)}: ${(error as Error).message}`);
    }
  };
  const flag = (name: VariableName): boolean => {
    const raw = get(name);
    if (raw !== "0" && raw !== "1") throw new ConfigError(`${name}=${raw}: expected 0 or 1`);
    return raw === "1";
  };
  const allowEmptyJournal = get("QM_ALLOW_EMPTY_JOURNAL");
  if (allowEmptyJournal !== "0" && allowEmptyJournal !== "1") {
    throw new ConfigError(`QM_ALLOW_EMPTY_JOURNAL=${allowEmptyJournal}: expected 0 or 1`);
  }
  const crashPoints = get("QM_FAULT_CRASH_POINTS").split(",").filter((name) => name !== "");
  const unknownPoint = crashPoints.find((name) => !(CRASH_POINT_NAMES as readonly string[]).includes(name));
  if (unknownPoint !== undefined) {
    throw new ConfigError(`QM_FAULT_CRASH_POINTS: unknown crash point ${unknownPoint}; known: ${CRASH_POINT_NAMES.join(", ")}`);
  }
  const dataDir = get("QM_DATA_DIR");
  if (dataDir === "") throw new ConfigError("QM_DATA_DIR must not be empty");
  const cluster = clusterConfig(get, int, (name) => address(name, true));
  return {
    listen: address("QM_LISTEN", false),
    // A cluster's members need distinct ids: there the host name is the default.
    nodeId: cluster !== undefined && env.QM_NODE_ID === undefined ? hostNodeId() : nodeId,
    dataDir,
    metricsListen: address("QM_METRICS_LISTEN", true),
    logLevel: logLevel as Config["logLevel"],
    actorIdleMs: int("QM_ACTOR_IDLE_MS", 100, 24 * 3600 * 1000),
    activeActorsMax: int("QM_ACTIVE_ACTORS_MAX", 100, 10_000_000),
    idleGcGarbageBytes: int("QM_IDLE_GC_MIB", 0, 1024 * 1024) * 1024 * 1024,
    timerTickMs: int("QM_TIMER_TICK_MS", 10, 60_000),
    auditRetentionMs: int("QM_AUDIT_RETENTION_DAYS", 1, 36500) * 24 * 3600 * 1000,
    auditMaxPerSku: int("QM_AUDIT_MAX_PER_SKU", 1, 100_000_000),
    shutdownGraceMs: int("QM_SHUTDOWN_GRACE_MS", 0, 600_000),
    orderReservationGraceMs: int("QM_ORDER_RESERVATION_GRACE_MS", 0, 24 * 3600 * 1000),
    faultDelays: faultDelays("QM_FAULT_DELAYS"),
    allowEmptyJournal: allowEmptyJournal === "1",
    faultCrashPoints: crashPoints as CrashPointName[],
    cluster,
    grpcEdge: {
      connectionsMax: int("QM_GRPC_CONNECTIONS_MAX", 1, 1_000_000),
      streamsPerConnectionMax: int("QM_GRPC_STREAMS_PER_CONNECTION_MAX", 1, 1000),
      handshakeTimeoutMs: int("QM_GRPC_HANDSHAKE_TIMEOUT_MS", 10, 600_000),
      idleTimeoutMs: int("QM_GRPC_IDLE_TIMEOUT_MS", 100, 24 * 3600 * 1000),
      requestBodyTimeoutMs: int("QM_GRPC_REQUEST_BODY_TIMEOUT_MS", 10, 3600 * 1000),
      sendStallTimeoutMs: int("QM_GRPC_SEND_STALL_TIMEOUT_MS", 10, 3600 * 1000),
      pendingRequestBytesMax: int("QM_GRPC_PENDING_REQUEST_MB", 8, 64 * 1024) * 1024 * 1024,
      queuedResponseBytesMax: int("QM_GRPC_QUEUED_RESPONSE_MB", 8, 64 * 1024) * 1024 * 1024,
      directReserve: flag("QM_GRPC_DIRECT_RESERVE"),
    },
    tracing: tracingConfig(get, int),
    auth: authConfig(get("QM_AUTH_CONFIG").trim()),
    tls: listenerTlsConfig(get),
    redisUrl: redisUrl(get("QM_REDIS_URL").trim()),
  };
}

function authConfig(file: string): AuthConfig | undefined {
  if (file === "") return undefined;
  try {
    return loadAuthConfig(file);
  } catch (error) {
    if (error instanceof AuthConfigError) throw new ConfigError(`QM_AUTH_CONFIG=${file}: ${error.message}`);
    throw error;
  }
}

/** A file variable's failure, named: `QM_TLS_KEY=/etc/qm/key.pem: cannot read: no such file`. */
function fileVariable<T>(name: VariableName, path: string, read: (path: string) => T): T {
  try {
    return read(path);
  } catch (error) {
    const message = (error as Error).message;
    throw new ConfigError(`${name}=${message.startsWith(path) ? message : `${path}: ${message}`}`);
  }
}

function certificatesOf(name: VariableName, path: string): { file: PemFile; certificates: X509Certificate[] } {
  return fileVariable(name, path, readCertificates);
}

/** Also re-read on SIGHUP (security/listener_tls.ts), with the same checks and messages as at start. */
export function listenerTlsConfig(get: (name: VariableName) => string): ListenerTlsConfig | undefined {
  const certPath = get("QM_TLS_CERT");
  const keyPath = get("QM_TLS_KEY");
  const caPath = get("QM_TLS_CLIENT_CA");
  if (certPath === "" && keyPath === "") {
    if (caPath !== "") throw new ConfigError("QM_TLS_CLIENT_CA is set but QM_TLS_CERT and QM_TLS_KEY are not: mutual TLS needs the listener's own certificate and key");
    return undefined;
  }
  if (certPath === "" || keyPath === "") {
    const [set, unset] = certPath === "" ? ["QM_TLS_KEY", "QM_TLS_CERT"] : ["QM_TLS_CERT", "QM_TLS_KEY"];
    throw new ConfigError(`${set} is set but ${unset} is not: TLS needs both the certificate and its private key`);
  }
  const { file: cert, certificates } = certificatesOf("QM_TLS_CERT", certPath);
  const { file: key, key: privateKey } = fileVariable("QM_TLS_KEY", keyPath, readPrivateKey);
  // The first certificate of a chain is the listener's own; a key of another one would fail every handshake.
  if (!matches(certificates[0], privateKey)) {
    throw new ConfigError(`QM_TLS_KEY=${keyPath}: this key does not belong to the certificate in QM_TLS_CERT=${certPath}`);
  }
  const clientCa = caPath === "" ? undefined : certificatesOf("QM_TLS_CLIENT_CA", caPath).file;
  return { cert, key, clientCa };
}

function matches(certificate: X509Certificate | undefined, key: KeyObject): boolean {
  try {
    return certificate?.checkPrivateKey(key) ?? false;
  } catch {
    return false;
  }
}

function redisUrl(raw: string): string {
  if (raw === "") return raw;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError("QM_REDIS_URL: expected a redis:// or rediss:// URL");
  }
  // The message leaves the password out: it is printed at start-up.
  if ((url.protocol !== "redis:" && url.protocol !== "rediss:") || url.hostname === "") {
    throw new ConfigError(`QM_REDIS_URL: expected a redis:// or rediss:// URL with a host, got ${url.protocol}//${url.hostname}`);
  }
  return raw;
}

const SAMPLERS: readonly TraceSamplerName[] = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
];

/**
 * The OpenTelemetry SDK only warns about a value it does not know and goes on
 * with its default; here a typo (OTEL_TRACES_EXPORTER=otpl) stops the start
 * instead of silently exporting nothing.
 */
function tracingConfig(get: (name: VariableName) => string, int: (name: VariableName, min: number, max: number) => number): TracingConfig {
  const oneOf = <T extends string>(name: VariableName, allowed: readonly T[]): T => {
    const raw = get(name).trim();
    if (!(allowed as readonly string[]).includes(raw)) throw new ConfigError(`${name}=${raw}: expected ${allowed.join(", ")}`);
    return raw as T;
  };
  const exporter = oneOf("OTEL_TRACES_EXPORTER", ["none", "otlp", "console"] as const);
  const protocol = oneOf("OTEL_EXPORTER_OTLP_PROTOCOL", ["http/protobuf", "http/json", "grpc"] as const);
  const endpointRaw = get("OTEL_EXPORTER_OTLP_ENDPOINT").trim();
  const endpoint = endpointRaw === "" ? (protocol === "grpc" ? "http://localhost:4317" : "http://localhost:4318") : endpointRaw;
  if (!/^https?:\/\/[^\s/]+(\/\S*)?$/.test(endpoint)) {
    throw new ConfigError(`OTEL_EXPORTER_OTLP_ENDPOINT=${endpointRaw}: expected an http:// or https:// URL`);
  }
  const serviceName = get("OTEL_SERVICE_NAME").trim();
  if (serviceName === "") throw new ConfigError("OTEL_SERVICE_NAME must not be empty");
  const sampler = oneOf("OTEL_TRACES_SAMPLER", SAMPLERS);
  const ratioRaw = get("OTEL_TRACES_SAMPLER_ARG").trim();
  const samplerRatio = Number(ratioRaw);
  if (ratioRaw === "" || !Number.isFinite(samplerRatio) || samplerRatio < 0 || samplerRatio > 1) {
    throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG=${ratioRaw}: expected a number from 0 to 1`);
  }
  const bspMaxQueueSize = int("OTEL_BSP_MAX_QUEUE_SIZE", 1, 1_000_000);
  const bspMaxExportBatchSize = int("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 1, 1_000_000);
  if (bspMaxExportBatchSize > bspMaxQueueSize) {
    throw new ConfigError(`OTEL_BSP_MAX_EXPORT_BATCH_SIZE=${bspMaxExportBatchSize}: must not exceed OTEL_BSP_MAX_QUEUE_SIZE=${bspMaxQueueSize}`);
  }
  return {
    exporter,
    protocol,
    endpoint: endpoint.replace(/\/+$/, ""),
    serviceName,
    resourceAttributes: resourceAttributes(get("OTEL_RESOURCE_ATTRIBUTES")),
    sampler,
    samplerRatio,
    bspScheduleDelayMs: int("OTEL_BSP_SCHEDULE_DELAY", 0, 3_600_000),
    bspExportTimeoutMs: int("OTEL_BSP_EXPORT_TIMEOUT", 1, 3_600_000),
    bspMaxQueueSize,
    bspMaxExportBatchSize,
  };
}

/** The W3C Baggage-like list of the OpenTelemetry spec: k1=v1,k2=v2 with percent-encoded values. */
function resourceAttributes(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw.split(",")) {
    if (pair.trim() === "") continue;
    const eq = pair.indexOf("=");
    const key = eq > 0 ? pair.slice(0, eq).trim() : "";
    if (key === "" || !/^[\x21-\x7e]+$/.test(key)) {
      throw new ConfigError(`OTEL_RESOURCE_ATTRIBUTES: ${JSON.stringify(pair)} is not a key=value pair`);
    }
    try {
      out[key] = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      throw new ConfigError(`OTEL_RESOURCE_ATTRIBUTES: the value of ${key} is not valid percent-encoding`);
    }
  }
  return out;
}

function clusterConfig(
  get: (name: VariableName) => string,
  int: (name: VariableName, min: number, max: number) => number,
  address: (name: VariableName) => string,
): ClusterConfig | undefined {
  const etcd = get("QM_ETCD_ENDPOINTS").trim();
  const nats = get("QM_NATS_URL").trim();
  if (etcd === "" && nats === "") return undefined;
  if (etcd === "" || nats === "") {
    const [set, unset] = etcd === "" ? ["QM_NATS_URL", "QM_ETCD_ENDPOINTS"] : ["QM_ETCD_ENDPOINTS", "QM_NATS_URL"];
    throw new ConfigError(`${set} is set but ${unset} is not: cluster mode needs both (neither: the embedded single node)`);
  }
  const etcdEndpoints = etcd.split(",").map((e) => e.trim());
  for (const endpoint of etcdEndpoints) {
    if (!/^https?:\/\/[A-Za-z0-9.\-[\]:]+:\d{1,5}\/?$/.test(endpoint)) {
      throw new ConfigError(`QM_ETCD_ENDPOINTS: ${JSON.stringify(endpoint)} is not an etcd client URL like http://host:2379`);
    }
  }
  for (const url of nats.split(",").map((u) => u.trim())) {
    if (!/^(nats|tls):\/\/[A-Za-z0-9.\-[\]:@]+:\d{1,5}\/?$/.test(url)) {
      throw new ConfigError(`QM_NATS_URL: ${JSON.stringify(url)} is not a NATS URL like nats://host:4222`);
    }
  }
  const name = get("QM_CLUSTER");
  if (!(name.length >= 1 && name.length <= ID_LENGTH_MAX && /^[A-Za-z0-9_-]+$/.test(name))) {
    throw new ConfigError(`QM_CLUSTER=${name}: expected 1-${ID_LENGTH_MAX} characters of letters, digits, _ and -`);
  }
  const etcdCaPath = get("QM_ETCD_CA");
  if (etcdCaPath !== "" && etcdEndpoints.some((e) => !e.startsWith("https://"))) {
    throw new ConfigError(`QM_ETCD_CA is set but QM_ETCD_ENDPOINTS=${etcd} has an http:// endpoint: etcd over TLS needs https:// endpoints`);
  }
  const etcdClientCert = etcdClientCertificate(get, etcd, etcdEndpoints);
  const etcdUser = get("QM_ETCD_USER");
  const etcdPassword = get("QM_ETCD_PASSWORD");
  if ((etcdUser === "") !== (etcdPassword === "")) {
    throw new ConfigError(etcdUser === "" ? "QM_ETCD_PASSWORD is set but QM_ETCD_USER is not" : "QM_ETCD_USER is set but QM_ETCD_PASSWORD is not");
  }
  const natsCredsPath = get("QM_NATS_CREDS");
  const natsCaPath = get("QM_NATS_CA");
  return {
    etcdEndpoints,
    natsUrl: nats,
    name,
    leaseTtlS: int("QM_LEASE_TTL_S", 2, 3600),
    partitions: int("QM_PARTITIONS", 1, 65_536),
    advertise: address("QM_ADVERTISE"),
    journalReplicas: int("QM_JOURNAL_REPLICAS", 1, 5),
    etcdCa: etcdCaPath === "" ? undefined : certificatesOf("QM_ETCD_CA", etcdCaPath).file,
    etcdClientCert,
    etcdAuth: etcdUser === "" ? undefined : { username: etcdUser, password: new Secret(etcdPassword) },
    natsCreds: natsCredsPath === "" ? undefined : { path: natsCredsPath, contents: new Secret(fileVariable("QM_NATS_CREDS", natsCredsPath, natsCredsFile)) },
    natsCa: natsCaPath === "" ? undefined : certificatesOf("QM_NATS_CA", natsCaPath).file,
  };
}

/** Both or neither, over https:// only, and the key must be the certificate's: each mistake would otherwise surface as a bare handshake failure. */
function etcdClientCertificate(get: (name: VariableName) => string, etcd: string, endpoints: readonly string[]): ClusterConfig["etcdClientCert"] {
  const certPath = get("QM_ETCD_CERT");
  const keyPath = get("QM_ETCD_KEY");
  if (certPath === "" && keyPath === "") return undefined;
  if (certPath === "" || keyPath === "") {
    const [set, unset] = certPath === "" ? ["QM_ETCD_KEY", "QM_ETCD_CERT"] : ["QM_ETCD_CERT", "QM_ETCD_KEY"];
    throw new ConfigError(`${set} is set but ${unset} is not: an etcd client certificate needs both the certificate and its private key`);
  }
  if (endpoints.some((e) => !e.startsWith("https://"))) {
    throw new ConfigError(`QM_ETCD_CERT is set but QM_ETCD_ENDPOINTS=${etcd} has an http:// endpoint: a client certificate needs https:// endpoints`);
  }
  const { file: cert, certificates } = certificatesOf("QM_ETCD_CERT", certPath);
  const { file: key, key: privateKey } = fileVariable("QM_ETCD_KEY", keyPath, readPrivateKey);
  if (!matches(certificates[0], privateKey)) {
    throw new ConfigError(`QM_ETCD_KEY=${keyPath}: this key does not belong to the certificate in QM_ETCD_CERT=${certPath}`);
  }
  return { cert, key };
}

/** A .creds file holds a user JWT and an NKey seed between nats' BEGIN/END markers; anything else would fail only at connect. */
function natsCredsFile(path: string): Uint8Array {
  const bytes = readTlsFile(path);
  const text = bytes.toString("utf8");
  if (!/-----BEGIN NATS USER JWT-----/.test(text) || !/-----BEGIN USER NKEY SEED-----/.test(text)) {
    throw new Error(`${path}: not a NATS .creds file (expected a user JWT and an NKey seed)`);
  }
  return new Uint8Array(bytes);
}

/** The host name as a node id: characters an id may not hold become '-'. */
function hostNodeId(): string {
  const id = hostname().replace(/[^A-Za-z0-9._:-]/g, "-").slice(0, ID_LENGTH_MAX);
  return id === "" ? "node" : id;
}
