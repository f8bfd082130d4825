// Assembles one Quartermaster node from its long-lived parts, composed as one
// Lifecycle list: started in order, stopped in reverse. Health stays
// NOT_SERVING until recovery (due expiries and interrupted sagas) has been
// dispatched, and turns NOT_SERVING first on stop.

import { hostname } from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import type { ActorSystem } from "./actors/runtime/actor_system";
import { DataDirBackup } from "./backup/data_dir_backup";
import { type Clock, systemClock } from "./clock";
import { SingleNodeCluster } from "./cluster/cluster_view";
import { partitionOf } from "./cluster/placement";
import { PlacementRouter } from "./cluster/placement_router";
import { type Config, CONFIG_VARIABLES } from "./config";
import { QmError } from "./errors";
import { GrpcServer } from "./grpc/server";
import { acquireDataDirLock, type DataDirLock } from "./journal/data_dir_lock";
import { openJournalWithIdentity } from "./journal/identity";
import { LMDB_DATA_FILE, LmdbJournal } from "./journal/lmdb_journal";
import { JOURNAL_FORMAT } from "./journal/record_codec";
import { type Lifecycle, LifecycleList, lifecycle } from "./lifecycle";
import { idleCollector } from "./observability/idle_collector";
import { Metrics } from "./observability/metrics";
import { NodeObserver } from "./observability/observer";
import { nodeActorSystem, servingPart } from "./node_parts";
import { AuthGate, closeRevokedConnections, reloadOnSighup } from "./security/auth_gate";
import { warnIfExposed } from "./security/exposure";
import { ReloadableServerCredentials, reloadListenerTlsOnSighup } from "./security/listener_tls";
import { OPEN_GATE } from "./security/call_gate";
import { RateLimiter } from "./security/rate_limit/limiter";
import { VERSION } from "./version";

export interface RunningNode {
  readonly grpcAddress: string;
  /** Empty when metrics are off. */
  readonly metricsAddress: string;
  /** Drains calls in flight, finishes running turns, closes the journal. Idempotent. */
  stop(): Promise<void>;
  /**
   * Settles once the embedded journal has failed (an EIO at commit): the node
   * is already NOT_SERVING and refuses calls, and the process should stop
   * and exit for its supervisor to restart it (main.ts). Absent in cluster mode.
   */
  readonly journalFailed?: Promise<QmError>;
}

export async function startNode(config: Config, logger: Logger, clock: Clock = systemClock): Promise<RunningNode> {
  const startedMs = clock.monotonicMs();
  // The bound address, once the listener has it (QM_LISTEN may ask for port 0).
  let grpcAddress = "";
  const cluster = new SingleNodeCluster(config.nodeId, () => grpcAddress || config.listen, clock.nowMs());
  const log = logger.child({ component: "node" });

  let lock: DataDirLock | undefined;
  const lockPart = lifecycle(
    "data-dir-lock",
    async () => {
      lock = await acquireDataDirLock(config.dataDir);
    },
    async () => lock?.release(),
  );

  let ready = false;
  // The sources are read at scrape time, after every part below exists.
  const metrics = new Metrics(
    {
      journalStats: () => journal.stats(),
      journalIntegrity: () => journal.integrityStats(),
      activeActors: () => system.activeCount,
      actorFaults: () => system.bugCount,
      mailboxes: () => system.mailboxStats(),
      // The embedded node owns every partition, for ever.
      partitions: () => ({ owned: cluster.partitionCount, unowned: 0 }),
      ready: () => ready,
      version: VERSION,
    },
    config.metricsListen,
  );
  const observer = new NodeObserver(metrics, logger);
  const journalDir = path.join(config.dataDir, "journal");
  let journalFailed!: (error: QmError) => void;
  const failedJournal = new Promise<QmError>((resolve) => {
    journalFailed = resolve;
  });
  const journal: LmdbJournal = new LmdbJournal({
    path: journalDir,
    auditRetention: { maxAgeMs: config.auditRetentionMs, maxPerActor: config.auditMaxPerSku },
    clock,
    logger: logger.child({ component: "journal" }),
    observer,
    // NOT_SERVING at once, before the drain main.ts starts: probes and load
    // balancers move away, and no call is answered from here any more.
    onFailed: (error) => {
      ready = false;
      server.setReady(false);
      journalFailed(error);
    },
  });
  const backups = new DataDirBackup({
    dataDir: config.dataDir,
    journalDir: path.relative(config.dataDir, journalDir),
    copyJournal: (target) => journal.copyTo(target),
    sourceNode: () => ({ nodeId: config.nodeId, hostname: hostname(), address: grpcAddress || config.listen, dataDir: lock?.dir ?? config.dataDir, pid: process.pid }),
    clock,
  });
  // Partitions mean nothing to one node, but Locate answers one (hash mod the default count): turn spans say the same.
  const system: ActorSystem = nodeActorSystem({ config, journal, metrics, observer, logger, clock, partitionOf: (actorId) => partitionOf(actorId, cluster.partitionCount) });
  // Every ask, from a handler or from an actor, goes through placement; on
  // one node it always answers "here".
  const router = new PlacementRouter(cluster, system);
  system.router = router;
  // QM_AUTH_CONFIG: every call but health needs a caller with the method's permission (SECURITY.md).
  const auth = config.auth === undefined ? undefined : new AuthGate({ config: config.auth, clock, logger: logger.child({ component: "auth" }) });
  warnIfExposed(log, { listen: config.listen, tls: config.tls !== undefined, authenticating: auth !== undefined });
  const limiter = new RateLimiter({
    redisUrl: config.redisUrl,
    clusterName: CONFIG_VARIABLES.QM_CLUSTER[0],
    nodeCount: () => 1,
    clock,
    logger: logger.child({ component: "rate-limit" }),
    onLimited: (tenant) => metrics.rateLimited(tenant),
    onFallback: () => metrics.rateLimitFallback(),
  });
  // Kept to swap the certificate on SIGHUP (security/listener_tls.ts).
  const listenerCredentials = config.tls === undefined ? undefined : new ReloadableServerCredentials(config.tls);
  const server = new GrpcServer({
    listen: config.listen,
    router,
    cluster,
    logger: logger.child({ component: "grpc" }),
    observe: (method, code, seconds) => metrics.observeCall(method, code, seconds),
    reservationGraceMs: config.orderReservationGraceMs,
    backups,
    edge: config.grpcEdge,
    onEdgeDrop: (drop) => metrics.observeEdgeDrop(drop),
    // The limit is taken once the caller is named and allowed; without QM_AUTH_CONFIG nobody is limited.
    gate: limiter.gate(auth ?? OPEN_GATE, auth?.rateLimitPolicy()),
    tls: config.tls,
    credentials: listenerCredentials,
  });
  // A revocation (SIGHUP, or the cluster's list in etcd) also closes the open connections of the certificates it names.
  if (auth !== undefined) closeRevokedConnections(auth, server, logger.child({ component: "auth" }));

  let recoveryMs = 0;
  const parts: Lifecycle[] = [
    lockPart,
    ...(auth === undefined ? [] : [reloadOnSighup(auth, log)]),
    ...(listenerCredentials === undefined || config.tls === undefined ? [] : [reloadListenerTlsOnSighup(listenerCredentials, config.tls, logger.child({ component: "tls" }))]),
    lifecycle(
      "journal",
      async () => {
        const begin = clock.monotonicMs();
        // Refuses a directory whose journal was lost or swapped (identity.ts).
        await openJournalWithIdentity({
          dataDir: config.dataDir,
          journalFile: path.join(journalDir, LMDB_DATA_FILE),
          journal,
          allowEmpty: config.allowEmptyJournal,
          nodeId: config.nodeId,
          journalFormat: JOURNAL_FORMAT,
          clock,
          logger: logger.child({ component: "journal" }),
        });
        recoveryMs += clock.monotonicMs() - begin;
      },
      () => journal.close(),
    ),
    // Stopped before the journal closes: a running copy must end first.
    lifecycle("backups", () => backups.start(), () => backups.stop()),
    lifecycle("metrics", () => listening("QM_METRICS_LISTEN", config.metricsListen, () => metrics.start()), () => metrics.stop()),
    ...limiter.lifecycleParts,
    // Bound before recovery, so a probe sees NOT_SERVING rather than a refused connection.
    lifecycle(
      "grpc-listener",
      async () => {
        grpcAddress = await listening("QM_LISTEN", config.listen, () => server.start());
      },
      () => server.stop(config.shutdownGraceMs),
    ),
    lifecycle(
      "actors",
      async () => {
        const begin = clock.monotonicMs();
        await system.start();
        recoveryMs += clock.monotonicMs() - begin;
      },
      () => system.stop(),
    ),
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
      nodeId: cluster.self,
      dataDir: lock?.dir ?? config.dataDir,
      grpcAddress,
      metricsAddress: metrics.address,
      recoveryMs: Math.round(recoveryMs),
      startupMs: Math.round(clock.monotonicMs() - startedMs),
    },
    "quartermaster serving",
  );
  return { grpcAddress, metricsAddress: metrics.address, stop: () => node.stop(), journalFailed: failedJournal };
}

/**
 * Binds through `bind`; a failure names the variable and the address, so a
 * port conflict reads `QM_LISTEN=127.0.0.1:50051: address already in use`.
 */
async function listening<T>(variable: string, address: string, bind: () => Promise<T>): Promise<T> {
  try {
    return await bind();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // grpc-js wraps the cause: "No address added out of total 1 resolved errors: [listen EADDRINUSE: ...]".
    const cause = /errors: \[(.*)\]$/.exec(message)?.[1] ?? message;
    const reason = /EADDRINUSE/.test(cause) ? "address already in use" : cause;
    throw new QmError("UNAVAILABLE", `${variable}=${address}: cannot listen: ${reason}`, { variable, address });
  }
}

/** Returns an idle node's garbage (passivated actors above all) to the system; see idle_collector.ts. */
function idleCollectorPart(logger: Logger, garbageBytes: number, residentActors: () => number): Lifecycle[] {
  const collector = idleCollector(logger.child({ component: "memory" }), garbageBytes, residentActors);
  return collector === null ? [] : [lifecycle("idle-collector", () => collector.start(), () => collector.stop())];
}
