// Assembles one node of a cluster: the same actors, gRPC API and metrics as
// the embedded node (node.ts), with the cluster's implementations behind the
// seams: etcd membership and partition ownership (EtcdCluster) as placement,
// the NATS transport between nodes, and the JetStream journal. No local data
// directory is used: the journal is JetStream's.
//
// Start order (stopped in reverse): NATS, etcd, journal streams, metrics, the
// gRPC listener (NOT_SERVING), actors, the transport (asks from other nodes),
// membership and partition claims, then serving. On stop, serving ends first,
// then the node leaves the cluster handing every partition off (turns
// finished, keys deleted), so the next owners take over at once.

import { rootCertificates } from "node:tls";
import { Etcd3, isRecoverableError } from "etcd3";
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry } from "cockatiel";
import { connect, type ConnectionOptions, credsAuthenticator, type NatsConnection } from "nats";
import type { Logger } from "pino";
import type { ActorSystem } from "./actors/runtime/actor_system";
import { type Clock, systemClock } from "./clock";
import { EtcdCluster } from "./cluster/etcd_cluster";
import { NatsLink } from "./cluster/nats_link";
import { NatsTransport } from "./cluster/nats_transport";
import { skipCancelErrorOnAnswer } from "./cluster/nats_requests";
import { writeOncePerTurn } from "./cluster/nats_writes";
import { partitionOf } from "./cluster/placement";
import { PlacementRouter } from "./cluster/placement_router";
import type { ClusterConfig, Config } from "./config";
import { QmError } from "./errors";
import { GrpcServer } from "./grpc/server";
import { JetStreamJournal } from "./journal/jetstream_journal";
import { type Lifecycle, LifecycleList, lifecycle } from "./lifecycle";
import { Metrics } from "./observability/metrics";
import { idleCollector } from "./observability/idle_collector";
import type { RunningNode } from "./node";
import { NodeObserver } from "./observability/observer";
import { nodeActorSystem, servingPart } from "./node_parts";
import { AuthGate, closeRevokedConnections, reloadOnSighup } from "./security/auth_gate";
import { warnIfExposed } from "./security/exposure";
import { ReloadableServerCredentials, reloadListenerTlsOnSighup } from "./security/listener_tls";
import { OPEN_GATE } from "./security/call_gate";
import { ClusterRevocations, clusterRevocationsPart } from "./security/cluster_revocations";
import { ClusterKeys } from "./cluster/etcd_keys";
import { RateLimiter } from "./security/rate_limit/limiter";
import { VERSION } from "./version";

/** How long start-up waits for etcd or NATS before it names the variable and exits: a wrong endpoint must never hang. */
export const DEPENDENCY_CONNECT_MS = 5_000;
/** etcd calls: a breaker per etcd host, and retries of recoverable errors with jittered backoff (etcd3 runs them through cockatiel). */
const ETCD_BREAKER_FAILURES = 3;
const ETCD_BREAKER_HALF_OPEN_MS = 5_000;
const ETCD_RETRY_ATTEMPTS = 3;
/**
 * Pause between NATS reconnect attempts, which never stop: a node that gave up
 * on NATS would serve nothing until restarted. Short, because every ask is
 * refused while disconnected.
 */
const NATS_RECONNECT_WAIT_MS = 250;

export async function startClusterNode(config: Config, cc: ClusterConfig, logger: Logger, clock: Clock = systemClock): Promise<RunningNode> {
  const startedMs = clock.monotonicMs();
  const log = logger.child({ component: "node" });
  let grpcAddress = "";

  const nc = await connectNats(cc);
  const etcd = await connectEtcd(cc).catch(async (error: unknown) => {
    await nc.close();
    throw error;
  });

  let ready = false;
  const metrics = new Metrics(
    {
      journalStats: () => journal.stats(),
      activeActors: () => system.activeCount,
      actorFaults: () => system.bugCount,
      mailboxes: () => system.mailboxStats(),
      partitions: () => cluster.partitionCounts(),
      // Members only: the breaker of a node that left stays as it was (open, say) until asked again, which never happens.
      breakers: () => {
        const members = new Set(cluster.members().map((m) => m.nodeId));
        return routed.breakerStates().filter(([peer]) => members.has(peer));
      },
      ready: () => ready,
      version: VERSION,
    },
    config.metricsListen,
  );
  const observer = new NodeObserver(metrics, logger);
  const journal = new JetStreamJournal({
    nc,
    cluster: cc.name,
    partitions: cc.partitions,
    replicas: cc.journalReplicas,
    auditRetention: { maxAgeMs: config.auditRetentionMs, maxPerActor: config.auditMaxPerSku },
    clock,
    observer,
  });
  const system: ActorSystem = nodeActorSystem({
    config,
    journal,
    metrics,
    observer,
    logger,
    clock,
    ownership: { epochOf: (actorId) => cluster.epochOf(partitionOf(actorId, cluster.partitionCount)) },
    partitionOf: (actorId) => partitionOf(actorId, cluster.partitionCount),
  });
  // A hand-off releases partitions one at a time, each over every active
  // actor: hashing each id again made it cost partitions x actors hashes.
  const inPartition =
    (partition: number) =>
    (actorId: string, noted: number | undefined): boolean =>
      (noted ?? partitionOf(actorId, cluster.partitionCount)) === partition;
  const cluster: EtcdCluster = new EtcdCluster({
    client: etcd,
    cluster: cc.name,
    self: config.nodeId,
    // Read when the member key is written, after the listener has its port.
    address: () => (cc.advertise !== "" ? cc.advertise : grpcAddress),
    version: VERSION,
    leaseTtlS: cc.leaseTtlS,
    partitions: cc.partitions,
    clock,
    logger: logger.child({ component: "cluster" }),
    observer,
    beforeServe: (partition) => journal.claimPartition(partition),
    beforeRelease: async (partition) => {
      await system.retireWhere(inPartition(partition));
      journal.releasePartition(partition);
    },
  });
  cluster.onChange((change) => {
    // A lease lapse takes partitions without a handoff: drop their actors (their late writes fail the fence).
    if (change.kind === "lost") void system.retireWhere(inPartition(change.partition));
  });
  const transport = new NatsTransport({ nc, cluster: cc.name, self: config.nodeId, placement: cluster, local: system, clock, logger: logger.child({ component: "transport" }), observer });
  const link = new NatsLink(nc, logger.child({ component: "nats" }));
  link.onChange((connected) => (connected ? journal.natsReconnected() : journal.natsDisconnected()));
  // Refuse at once what could only wait for its deadline: no lease (etcd unreachable) or no NATS.
  const routed = new PlacementRouter(
    { self: cluster.self, ownerOf: (actorId) => cluster.ownerOf(actorId), unavailable: () => link.unavailable() ?? cluster.unavailable() },
    system,
    transport,
  );
  system.router = routed;
  // QM_AUTH_CONFIG: every call but health needs a caller with the method's permission (SECURITY.md).
  const auth = config.auth === undefined ? undefined : new AuthGate({ config: config.auth, clock, logger: logger.child({ component: "auth" }) });
  warnIfExposed(log, { listen: config.listen, tls: config.tls !== undefined, authenticating: auth !== undefined });
  const limiter = new RateLimiter({
    redisUrl: config.redisUrl,
    clusterName: cc.name,
    // Without Redis each node enforces its share of a caller's limit.
    nodeCount: () => Math.max(1, cluster.members().length),
    clock,
    logger: logger.child({ component: "rate-limit" }),
    onLimited: (tenant) => metrics.rateLimited(tenant),
    onFallback: () => metrics.rateLimitFallback(),
  });
  // Kept to swap the certificate on SIGHUP (security/listener_tls.ts).
  const listenerCredentials = config.tls === undefined ? undefined : new ReloadableServerCredentials(config.tls);
  const server = new GrpcServer({
    listen: config.listen,
    router: routed,
    cluster,
    logger: logger.child({ component: "grpc" }),
    observe: (method, code, seconds) => metrics.observeCall(method, code, seconds),
    reservationGraceMs: config.orderReservationGraceMs,
    edge: config.grpcEdge,
    onEdgeDrop: (drop) => metrics.observeEdgeDrop(drop),
    // The limit is taken once the caller is named and allowed; without QM_AUTH_CONFIG nobody is limited.
    gate: limiter.gate(auth ?? OPEN_GATE, auth?.rateLimitPolicy()),
    tls: config.tls,
    credentials: listenerCredentials,
  });
  // A revocation (SIGHUP, or the cluster's list in etcd) also closes the open connections of the certificates it names.
  if (auth !== undefined) closeRevokedConnections(auth, server, logger.child({ component: "auth" }));

  const parts: Lifecycle[] = [
    ...(auth === undefined ? [] : [reloadOnSighup(auth, log)]),
    ...(listenerCredentials === undefined || config.tls === undefined ? [] : [reloadListenerTlsOnSighup(listenerCredentials, config.tls, logger.child({ component: "tls" }))]),
    lifecycle(
      "nats",
      async () => link.start(),
      async () => {
        await nc.drain().catch(() => nc.close());
      },
    ),
    lifecycle("etcd", async () => undefined, async () => etcd.close()),
    // Before the listener: no call is admitted until the cluster's revocations are read (security/cluster_revocations.ts).
    ...(auth === undefined
      ? []
      : [
          clusterRevocationsPart(
            new ClusterRevocations({ client: etcd, prefix: new ClusterKeys(cc.name).revokedPrefix, sink: auth, logger: logger.child({ component: "auth" }) }),
          ),
        ]),
    lifecycle("journal", () => journal.open(), () => journal.close()),
    lifecycle("metrics", () => metrics.start(), () => metrics.stop()),
    ...limiter.lifecycleParts,
    lifecycle(
      "grpc-listener",
      async () => {
        grpcAddress = await server.start();
      },
      () => server.stop(config.shutdownGraceMs),
    ),
    lifecycle("actors", () => system.start(), () => system.stop()),
    lifecycle("transport", () => transport.start(), () => transport.stop()),
    lifecycle("membership", () => cluster.start(), () => cluster.stop()),
    // As on the embedded node: passivation and partition hand-offs free actors
    // without allocating, so an idle cluster node kept their garbage for good.
    ...idleCollectorPart(logger, config.idleGcGarbageBytes, () => system.activeCount),
    servingPart(server, config.shutdownGraceMs, (on) => {
      ready = on;
    }),
  ];
  const node = new LifecycleList(parts, log, () => clock.monotonicMs());
  await node.start();
  log.info(
    {
      version: VERSION,
      pid: process.pid,
      nodeId: config.nodeId,
      cluster: cc.name,
      grpcAddress,
      metricsAddress: metrics.address,
      partitionsServed: cluster.partitions().filter((p) => p.owner === config.nodeId).length,
      startupMs: Math.round(clock.monotonicMs() - startedMs),
    },
    "quartermaster cluster node serving",
  );
  return { grpcAddress, metricsAddress: metrics.address, stop: () => node.stop() };
}

async function connectNats(cc: ClusterConfig): Promise<NatsConnection> {
  try {
    const nc = await connect(natsOptions(cc));
    writeOncePerTurn(nc);
    skipCancelErrorOnAnswer();
    return nc;
  } catch (error) {
    throw new QmError("UNAVAILABLE", `QM_NATS_URL=${cc.natsUrl}: cannot connect to NATS${natsSecurity(cc)}: ${messageOf(error)}`);
  }
}

/** The node's NATS connection; with QM_NATS_CA it refuses a server that does not offer TLS, or one whose certificate the CA did not sign. */
export function natsOptions(cc: ClusterConfig): ConnectionOptions {
  return {
    servers: cc.natsUrl.split(","),
    timeout: DEPENDENCY_CONNECT_MS,
    name: "quartermaster",
    maxReconnectAttempts: -1,
    reconnectTimeWait: NATS_RECONNECT_WAIT_MS,
    // nats.js otherwise builds an Error, for its stack, for every request and every JetStream publish (about 10% of a
    // node's CPU under checkouts, profiled); a failed request becomes a QmError here anyway, which drops that stack.
    noAsyncTraces: true,
    ...(cc.natsCa === undefined ? {} : { tls: { ca: cc.natsCa.bytes.toString("utf8") } }),
    ...(cc.natsCreds === undefined ? {} : { authenticator: credsAuthenticator(cc.natsCreds.contents.reveal()) }),
  };
}

/** What a connection failure message adds about the security settings in use (names and paths, never contents). */
function natsSecurity(cc: ClusterConfig): string {
  const parts = [cc.natsCa === undefined ? "" : `QM_NATS_CA=${cc.natsCa.path}`, cc.natsCreds === undefined ? "" : `QM_NATS_CREDS=${cc.natsCreds.path}`];
  const set = parts.filter((p) => p !== "");
  return set.length === 0 ? "" : ` (with ${set.join(", ")})`;
}

async function connectEtcd(cc: ClusterConfig): Promise<Etcd3> {
  const client = new Etcd3({
    hosts: [...cc.etcdEndpoints],
    dialTimeout: DEPENDENCY_CONNECT_MS,
    ...etcdCredentials(cc),
    ...(cc.etcdAuth === undefined ? {} : { auth: { username: cc.etcdAuth.username, password: cc.etcdAuth.password.reveal() } }),
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: ETCD_BREAKER_HALF_OPEN_MS, breaker: new ConsecutiveBreaker(ETCD_BREAKER_FAILURES) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: ETCD_RETRY_ATTEMPTS, backoff: new ExponentialBackoff() }),
    },
  });
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.get("/quartermaster/connect-probe").string(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${DEPENDENCY_CONNECT_MS} ms`)), DEPENDENCY_CONNECT_MS);
      }),
    ]);
    return client;
  } catch (error) {
    client.close();
    const security = [
      cc.etcdCa === undefined ? "" : `QM_ETCD_CA=${cc.etcdCa.path}`,
      cc.etcdClientCert === undefined ? "" : `QM_ETCD_CERT=${cc.etcdClientCert.cert.path}`,
      cc.etcdAuth === undefined ? "" : `QM_ETCD_USER=${cc.etcdAuth.username}`,
    ].filter((p) => p !== "");
    const withSecurity = security.length === 0 ? "" : ` (with ${security.join(", ")})`;
    // etcd3 may quote a failed Authenticate call; the password is never part of its message, nor of ours.
    throw new QmError("UNAVAILABLE", `QM_ETCD_ENDPOINTS=${cc.etcdEndpoints.join(",")}: cannot reach etcd${withSecurity}: ${etcdClientCertHint(cc)(messageOf(error))}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * TLS for etcd: its CA, and the node's client certificate when etcd checks one. Without either, etcd3 speaks plaintext
 * unless an endpoint is https://, and then trusts the system's roots; a client certificate without QM_ETCD_CA trusts
 * them too (etcd3's options insist on a root bundle, so it is handed Node's own).
 */
function etcdCredentials(cc: ClusterConfig): { credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer } } {
  if (cc.etcdCa === undefined && cc.etcdClientCert === undefined) return {};
  return {
    credentials: {
      rootCertificate: cc.etcdCa?.bytes ?? Buffer.from(rootCertificates.join("\n")),
      ...(cc.etcdClientCert === undefined ? {} : { privateKey: cc.etcdClientCert.key.bytes, certChain: cc.etcdClientCert.cert.bytes }),
    },
  };
}

/** TLS alerts by which a server refuses the client's certificate: bad_certificate (42), unknown_ca (48), certificate_required (116). */
const CLIENT_CERT_REFUSED = /alert (bad certificate|unknown ca|certificate required)|SSL alert number (42|48|116)\b/;

/** OpenSSL's alert says only "bad certificate": which of ours it was, and what to do. */
function etcdClientCertHint(cc: ClusterConfig): (message: string) => string {
  return (message) => {
    if (!CLIENT_CERT_REFUSED.test(message)) return message;
    const why =
      cc.etcdClientCert === undefined
        ? "etcd refused the connection for want of a client certificate (etcd runs with --client-cert-auth): set QM_ETCD_CERT and QM_ETCD_KEY"
        : `etcd refused the client certificate QM_ETCD_CERT=${cc.etcdClientCert.cert.path}: is it signed by a CA in etcd's --trusted-ca-file, and valid for client authentication?`;
    return `${why}; ${message}`;
  };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function idleCollectorPart(logger: Logger, garbageBytes: number, residentActors: () => number): Lifecycle[] {
  const collector = idleCollector(logger.child({ component: "memory" }), garbageBytes, residentActors);
  return collector === null ? [] : [lifecycle("idle-collector", () => collector.start(), () => collector.stop())];
}
