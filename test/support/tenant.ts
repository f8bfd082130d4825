// A node in this process whose gate names the caller from test metadata, so
// tests can act as several tenants before an authenticating gate exists. Only
// tests build this gate: the production node never lets a request choose its
// tenant; its gate derives the tenant from credentials.

import { Metadata } from "@grpc/grpc-js";
import pino from "pino";
import { orderBehavior } from "../../src/actors/order/order_actor";
import { skuBehavior } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { SingleNodeCluster } from "../../src/cluster/cluster_view";
import { PlacementRouter } from "../../src/cluster/placement_router";
import { loadConfig } from "../../src/config";
import { GrpcServer } from "../../src/grpc/server";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { type Caller, DEFAULT_TENANT } from "../../src/security/caller";
import type { CallGate } from "../../src/security/call_gate";
import { type Clients, createClients } from "./server_process";

export const TEST_TENANT_HEADER = "x-test-tenant";
export const TEST_SUBJECT_HEADER = "x-test-subject";

/** Admits every call as the subject and tenant its test metadata names (default tenant, subject "anonymous" when absent). */
export const TEST_TENANT_GATE: CallGate = {
  admit(call): Caller {
    const first = (key: string): string | undefined => {
      const value = call.metadata.get(key)[0];
      return typeof value === "string" ? value : undefined;
    };
    const tenant = first(TEST_TENANT_HEADER) ?? DEFAULT_TENANT;
    return { subject: first(TEST_SUBJECT_HEADER) ?? "anonymous", tenant, roles: [], authenticated: tenant !== DEFAULT_TENANT };
  },
};

/** Metadata that makes TEST_TENANT_GATE admit the call as `subject` of `tenant`. */
export function as(tenant: string, subject = `${tenant}-user`): { metadata: Metadata } {
  const metadata = new Metadata();
  metadata.set(TEST_TENANT_HEADER, tenant);
  metadata.set(TEST_SUBJECT_HEADER, subject);
  return { metadata };
}

export interface TenantNode {
  readonly addr: string;
  readonly clients: Clients;
  readonly journal: LmdbJournal;
  readonly system: ActorSystem;
  stop(): Promise<void>;
}

/** Journal, actors and gRPC server over `dataDir`, behind TEST_TENANT_GATE. */
export async function startTenantNode(dataDir: string): Promise<TenantNode> {
  const config = loadConfig({ QM_DATA_DIR: dataDir, QM_LISTEN: "127.0.0.1:0" });
  const logger = pino({ level: "silent" });
  const journal = new LmdbJournal({
    path: dataDir,
    auditRetention: { maxAgeMs: config.auditRetentionMs, maxPerActor: config.auditMaxPerSku },
    clock: systemClock,
  });
  await journal.open();
  const system = new ActorSystem({
    journal,
    clock: systemClock,
    logger,
    behaviors: [skuBehavior, orderBehavior] as ActorBehavior<unknown, unknown>[],
    idleMs: 60_000,
    timerTickMs: 50,
  });
  let addr = "";
  const cluster = new SingleNodeCluster("tenant-test", () => addr, systemClock.nowMs());
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
    gate: TEST_TENANT_GATE,
  });
  addr = await server.start();
  await system.start();
  server.setReady(true);
  const clients = createClients(addr);
  return {
    addr,
    clients,
    journal,
    system,
    stop: async () => {
      clients.close();
      await server.stop(1_000);
      await system.stop();
      await journal.close();
    },
  };
}
