// Assembles one Quartermaster node: data-directory lock, journal, actor
// system, gRPC server, metrics. Started in dependency order, stopped in
// reverse. Health stays NOT_SERVING until recovery (due expiries and
// interrupted sagas) has been dispatched.

import { hostname } from "node:os";
import path from "node:path";
import type { Logger } from "pino";
import { createOrderBehavior } from "./actors/order/order_actor";
import { skuBehavior } from "./actors/inventory/sku_actor";
import { ActorSystem } from "./actors/runtime/actor_system";
import type { ActorBehavior } from "./actors/runtime/behavior";
import { DataDirBackup } from "./backup/data_dir_backup";
import { type Clock, systemClock } from "./clock";
import { SingleNodeCluster } from "./cluster/cluster_view";
import { PlacementRouter } from "./cluster/placement_router";
import type { Config } from "./config";
import { withFaultDelays } from "./fault/fault_delays";
import { GrpcServer } from "./grpc/server";
import { acquireDataDirLock, type DataDirLock } from "./journal/data_dir_lock";
import { openJournalWithIdentity } from "./journal/identity";
import { LMDB_DATA_FILE, LmdbJournal } from "./journal/lmdb_journal";
import { JOURNAL_FORMAT } from "./journal/record_codec";
import { Metrics } from "./observability/metrics";

export interface RunningNode {
  readonly grpcAddress: string;
  /** Empty when metrics are off. */
  readonly metricsAddress: string;
  /** Drains calls in flight, finishes running turns, closes the journal. Idempotent. */
  stop(): Promise<void>;
}

export async function startNode(config: Config, logger: Logger, clock: Clock = systemClock): Promise<RunningNode> {
  const stack: (() => Promise<void>)[] = [];
  const unwind = async (): Promise<void> => {
    while (stack.length > 0) {
      const stop = stack.pop() as () => Promise<void>;
      try {
        await stop();
      } catch (error) {
        logger.error({ err: error }, "error during shutdown");
      }
    }
  };
  try {
    const lock: DataDirLock = await acquireDataDirLock(config.dataDir);
    stack.push(() => lock.release());

    const journalDir = path.join(config.dataDir, "journal");
    const journal = new LmdbJournal({
      path: journalDir,
      auditRetention: { maxAgeMs: config.auditRetentionMs, maxPerActor: config.auditMaxPerSku },
      clock,
      logger,
    });
    // Refuses a directory whose journal was lost or swapped (identity.ts).
    await openJournalWithIdentity({
      dataDir: config.dataDir,
      journalFile: path.join(journalDir, LMDB_DATA_FILE),
      journal,
      allowEmpty: config.allowEmptyJournal,
      nodeId: config.nodeId,
      journalFormat: JOURNAL_FORMAT,
      clock,
      logger,
    });
    stack.push(() => journal.close());

    let metrics: Metrics | undefined;
    const system: ActorSystem = new ActorSystem({
      journal: withFaultDelays(journal, config.faultDelays),
      clock,
      logger,
      behaviors: [
        skuBehavior,
        createOrderBehavior({ logger, observer: { sagaStep: (step, result) => metrics?.sagaStep(step, result) } }),
      ] as ActorBehavior<unknown, unknown>[],
      idleMs: config.actorIdleMs,
      activeMax: config.activeActorsMax,
      timerTickMs: config.timerTickMs,
      onTurn: (kind, messages) => metrics?.observeTurn(kind, messages),
    });
    // Every ask, from a handler or from an actor, goes through placement; on
    // one node it always answers "here".
    let boundAddress = config.listen;
    const cluster = new SingleNodeCluster(config.nodeId, () => boundAddress, clock.nowMs());
    const backups = new DataDirBackup({
      dataDir: lock.dir,
      journalDir: path.relative(config.dataDir, journalDir),
      copyJournal: (target) => journal.copyTo(target),
      sourceNode: () => ({ nodeId: config.nodeId, hostname: hostname(), address: boundAddress, dataDir: lock.dir, pid: process.pid }),
      clock,
    });
    await backups.start();
    // Stopped before the journal closes: a running copy must end first.
    stack.push(() => backups.stop());
    const router = new PlacementRouter(cluster, system);
    system.router = router;
    metrics = new Metrics({
      journalStats: () => journal.stats(),
      journalIntegrity: () => journal.integrityStats(),
      activeActors: () => system.activeCount,
      actorFaults: () => system.bugCount,
    });

    const server = new GrpcServer({
      listen: config.listen,
      router,
      cluster,
      logger,
      observe: (method, code, seconds) => metrics?.observeCall(method, code, seconds),
      reservationGraceMs: config.orderReservationGraceMs,
      backups,
    });
    const grpcAddress = await server.start();
    boundAddress = grpcAddress;
    stack.push(() => system.stop());
    stack.push(() => server.stop(config.shutdownGraceMs));

    let metricsAddress = "";
    if (config.metricsListen !== "") {
      const m = metrics;
      metricsAddress = await m.listen(config.metricsListen);
      stack.splice(stack.length - 1, 0, () => m.close());
    }

    await system.start();
    server.setReady(true);
    logger.info({ grpcAddress, metricsAddress, dataDir: config.dataDir }, "quartermaster serving");

    let stopping: Promise<void> | undefined;
    return {
      grpcAddress,
      metricsAddress,
      stop: () => (stopping ??= unwind()),
    };
  } catch (error) {
    await unwind();
    throw error;
  }
}
