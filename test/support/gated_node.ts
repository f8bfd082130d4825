// An embedded node assembled in the test process with a gate the test gives
// it (GrpcServerOptions.gate), for tests that need distinct callers without
// QM_AUTH_CONFIG: TEST_SUBJECT_HEADER names the caller here, and the tenant
// tests' gate (support/tenant.ts) names its tenant too. The same parts as src/node.ts (journal, actors, placement, server),
// without the data-directory lock, backups and metrics endpoint.

import path from "node:path";
import type { Metadata } from "@grpc/grpc-js";
import pino from "pino";
import { systemClock } from "../../src/clock";
import { SingleNodeCluster } from "../../src/cluster/cluster_view";
import { partitionOf } from "../../src/cluster/placement";
import { PlacementRouter } from "../../src/cluster/placement_router";
import { loadConfig } from "../../src/config";
import { GrpcServer } from "../../src/grpc/server";
import type { ActorSystem } from "../../src/actors/runtime/actor_system";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { nodeActorSystem } from "../../src/node_parts";
import { Metrics } from "../../src/observability/metrics";
import { NodeObserver } from "../../src/observability/observer";
import type { CallGate } from "../../src/security/call_gate";
import { type Caller, DEFAULT_TENANT } from "../../src/security/caller";
import { makeTempDir } from "./server_process";

export const TEST_SUBJECT_HEADER = "x-test-subject";

/** Names the caller by TEST_SUBJECT_HEADER (tenant default); tests only, it trusts whatever the client says. */
export const TEST_SUBJECT_GATE: CallGate = {
  admit: (call) => {
    const subject = call.metadata.get(TEST_SUBJECT_HEADER)[0];
    return { subject: typeof subject === "string" ? subject : "anonymous", tenant: DEFAULT_TENANT, roles: [], authenticated: true } satisfies Caller;
  },
};

export function subjectMetadata(metadata: Metadata, subject: string): Metadata {
  metadata.set(TEST_SUBJECT_HEADER, subject);
  return metadata;
}

export interface GatedNode {
  readonly address: string;
  readonly journal: LmdbJournal;
  readonly system: ActorSystem;
  stop(): Promise<void>;
}

/** `dataDir` defaults to a new temp dir; give one to restart over a previous node's journal. */
export async function startGatedNode(gate: CallGate, dataDir?: string): Promise<GatedNode> {
  dataDir ??= await makeTempDir("qm-gated-");
  const config = loadConfig({ QM_DATA_DIR: dataDir, QM_LISTEN: "127.0.0.1:0", QM_METRICS_LISTEN: "" });
  const logger = pino({ level: "silent" });
  let address = "";
  const metrics = new Metrics({ journalStats: () => journal.stats(), activeActors: () => system.activeCount, actorFaults: () => system.bugCount });
  const observer = new NodeObserver(metrics, logger);
  const journal = new LmdbJournal({
    path: path.join(dataDir, "journal"),
    auditRetention: { maxAgeMs: config.auditRetentionMs, maxPerActor: config.auditMaxPerSku },
    clock: systemClock,
    logger,
    observer,
  });
  await journal.open();
  const cluster = new SingleNodeCluster(config.nodeId, () => address, systemClock.nowMs());
  const system = nodeActorSystem({ config, journal, metrics, observer, logger, clock: systemClock, partitionOf: (actorId) => partitionOf(actorId, cluster.partitionCount) });
  const router = new PlacementRouter(cluster, system);
  system.router = router;
  const server = new GrpcServer({
    listen: config.listen,
    router,
    cluster,
    logger,
    observe: () => undefined,
    reservationGraceMs: config.orderReservationGraceMs,
    edge: config.grpcEdge,
    gate,
  });
  await system.start();
  address = await server.start();
  server.setReady(true);
  return {
    address,
    journal,
    system,
    stop: async () => {
      await server.stop(0);
      await system.stop();
      await journal.close();
    },
  };
}
