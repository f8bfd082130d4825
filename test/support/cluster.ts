// A real cluster on loopback for integration and fault tests: one etcd, one
// nats-server with JetStream, and Quartermaster nodes as child processes,
// each on free ports. Short lease TTL and few partitions keep failover tests
// fast; everything else is as in production.

import { type EtcdProcess, type NatsProcess, startEtcd, startNats } from "./engines";
import { call, type Clients, createClients, type ServerProcess, startServer } from "./server_process";
import { ActorKind } from "../../src/gen/quartermaster/v1/cluster";

export const TEST_LEASE_TTL_S = 3;
export const TEST_PARTITIONS = 16;

export interface TestCluster {
  /** Replaced by a test that restarts an engine on the same store and ports; stop() stops the current one. */
  etcd: EtcdProcess;
  nats: NatsProcess;
  /** Live nodes by id. */
  readonly nodes: Map<string, ServerProcess>;
  /** Clients per node id (closed by stop()). */
  clients(nodeId: string): Clients;
  startNode(nodeId: string, env?: Record<string, string>): Promise<ServerProcess>;
  /** The node that owns an actor now, by LocateKey through the given node. */
  ownerOf(kind: "sku" | "order", id: string, via?: string): Promise<string>;
  /** Waits until every live node reports every partition owned by a live node. */
  settled(deadlineMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export async function startCluster(nodeIds: readonly string[], options: { cluster?: string } = {}): Promise<TestCluster> {
  const etcd = await startEtcd();
  const nats = await startNats();
  const nodes = new Map<string, ServerProcess>();
  const clientsByNode = new Map<string, Clients>();
  const cluster = options.cluster ?? "test";
  const env = (nodeId: string): Record<string, string> => ({
    QM_ETCD_ENDPOINTS: etcd.endpoint,
    QM_NATS_URL: nats.url,
    QM_CLUSTER: cluster,
    QM_NODE_ID: nodeId,
    QM_LEASE_TTL_S: String(TEST_LEASE_TTL_S),
    QM_PARTITIONS: String(TEST_PARTITIONS),
    QM_SHUTDOWN_GRACE_MS: "5000",
  });
  const self: TestCluster = {
    etcd,
    nats,
    nodes,
    clients(nodeId) {
      let c = clientsByNode.get(nodeId);
      if (c === undefined) {
        const node = nodes.get(nodeId);
        if (node === undefined) throw new Error(`no live node ${nodeId}`);
        c = createClients(node.addr);
        clientsByNode.set(nodeId, c);
      }
      return c;
    },
    async startNode(nodeId, extra = {}) {
      clientsByNode.get(nodeId)?.close();
      clientsByNode.delete(nodeId);
      const node = await startServer({ env: { ...env(nodeId), ...extra } });
      nodes.set(nodeId, node);
      return node;
    },
    async ownerOf(kind, id, via) {
      const through = via ?? [...nodes.keys()][0];
      if (through === undefined) throw new Error("no live node");
      const located = await call(self.clients(through).cluster, "locateKey", { kind: kind === "sku" ? ActorKind.ACTOR_KIND_SKU : ActorKind.ACTOR_KIND_ORDER, id });
      return located.ownerNodeId;
    },
    async settled(deadlineMs = 20_000) {
      const end = Date.now() + deadlineMs;
      let last = "";
      while (Date.now() < end) {
        let ok = true;
        for (const id of nodes.keys()) {
          const status = await call(self.clients(id).cluster, "getClusterStatus", {}).catch(() => undefined);
          const live = new Set(nodes.keys());
          if (status === undefined || status.members.length !== live.size || status.partitions.some((p) => !live.has(p.ownerNodeId))) {
            ok = false;
            last = status === undefined ? `${id} did not answer` : `${id}: members ${status.members.map((m) => m.nodeId).join(",")}`;
            break;
          }
        }
        if (ok) return;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`cluster did not settle within ${deadlineMs} ms (${last})`);
    },
    async stop() {
      for (const c of clientsByNode.values()) c.close();
      clientsByNode.clear();
      await Promise.all([...nodes.values()].map((n) => n.stop().catch(() => n.kill())));
      nodes.clear();
      await self.nats.stop();
      await self.etcd.stop();
    },
  };
  try {
    for (const id of nodeIds) await self.startNode(id);
    await self.settled();
  } catch (error) {
    await self.stop();
    throw error;
  }
  return self;
}

/** An id of the given kind whose actor the wanted node owns (probing ids prefix-0, prefix-1, …). */
export async function idOwnedBy(cluster: TestCluster, kind: "sku" | "order", owner: string, prefix: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const id = `${prefix}-${i}`;
    if ((await cluster.ownerOf(kind, id)) === owner) return id;
  }
  throw new Error(`no ${kind} id with prefix ${prefix} is owned by ${owner}`);
}
