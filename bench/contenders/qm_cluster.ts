// Quartermaster as a 3-node cluster for bench:compare: one etcd, one
// nats-server with JetStream (the journal), and three nodes, every process on
// the server's core as the other contenders' processes are. Production
// settings (lease TTL, partition count) are the defaults; each node serves
// gRPC, so a call for an actor another node owns takes one NATS hop there and
// back. The generator spreads its sessions over the three nodes, so with one
// hot SKU two calls in three take that hop, as behind a load balancer.
//
// etcd and nats-server are started by the test support (readiness polled,
// killed when this process exits) and then pinned; the nodes are the driver's
// own children (processes.ts), so its emergency cleanup reaches them.

import { execFileSync } from "node:child_process";
import path from "node:path";
import { credentials, Metadata } from "@grpc/grpc-js";
import { ClusterServiceClient, type GetClusterStatusResponse } from "../../src/gen/quartermaster/v1/cluster";
import { type EtcdProcess, type NatsProcess, startEtcd, startNats } from "../../test/support/engines";
import { waitUntilServing } from "../health_client";
import { LOOPBACK_HOST } from "../load_session";
import { type Child, freeLoopbackPort, spawnNode, stopChild } from "../processes";

export const CLUSTER_NODE_IDS = ["n1", "n2", "n3"] as const;
const CLUSTER_NAME = "bench";
/** A node's first health answer; the JetStream stream and etcd lease come first. */
const NODE_SERVING_DEADLINE_MS = 60_000;
/** Every node sees three members and every partition owned; handoff at start takes a few lease rounds. */
const SETTLE_DEADLINE_MS = 60_000;
const SETTLE_POLL_MS = 100;
const STATUS_DEADLINE_MS = 2_000;

export interface QmCluster {
  /** The nodes' gRPC addresses, comma-separated, as h2_load's --target takes them. */
  readonly targets: string;
  /** One node's address, for admin calls (they route to the owners). */
  readonly address: string;
  /** Each node's gRPC and /metrics address, in CLUSTER_NODE_IDS order. */
  readonly addresses: readonly string[];
  readonly metricsAddresses: readonly string[];
  readonly nodes: readonly Child[];
  /** Where the cluster's etcd and NATS listen, and its name (QM_CLUSTER): for seeding through the journal (cluster_catalogue.ts). */
  readonly etcdEndpoint: string;
  readonly natsUrl: string;
  readonly clusterName: string;
  /** etcd and nats-server: the cluster's "database" processes. */
  enginePids(): number[];
  nodePids(): number[];
  stop(): Promise<void>;
}

function pin(pid: number, cpu: number | null): void {
  if (cpu === null || pid <= 0) return;
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

function clusterStatus(client: ClusterServiceClient): Promise<GetClusterStatusResponse | null> {
  return new Promise((resolve) => {
    client.getClusterStatus({}, new Metadata(), { deadline: Date.now() + STATUS_DEADLINE_MS }, (error, response) => resolve(error === null ? response : null));
  });
}

/** Until every node reports all three members and every partition owned by one of them. */
async function settled(addresses: readonly string[]): Promise<void> {
  const clients = addresses.map((a) => new ClusterServiceClient(a, credentials.createInsecure()));
  const giveUpAt = Date.now() + SETTLE_DEADLINE_MS;
  let last = "no answer yet";
  try {
    for (;;) {
      const statuses = await Promise.all(clients.map(clusterStatus));
      const problem = statuses
        .map((s, i) => {
          if (s === null) return `${addresses[i] ?? "?"} did not answer`;
          const members = new Set(s.members.map((m) => m.nodeId));
          if (members.size !== CLUSTER_NODE_IDS.length) return `${addresses[i] ?? "?"} sees ${members.size} members`;
          const orphan = s.partitions.find((p) => !members.has(p.ownerNodeId));
          return orphan === undefined ? null : `${addresses[i] ?? "?"}: a partition has no live owner`;
        })
        .find((p) => p !== null);
      if (problem === undefined) return;
      last = problem;
      if (Date.now() > giveUpAt) throw new Error(`cluster did not settle within ${SETTLE_DEADLINE_MS} ms: ${last}`);
      await new Promise((resolve) => setTimeout(resolve, SETTLE_POLL_MS));
    }
  } finally {
    for (const c of clients) c.close();
  }
}

export async function startQmCluster(
  root: string,
  cpu: number | null,
  mainScript: string,
  env: NodeJS.ProcessEnv,
  nodeArgs: readonly string[] = [],
): Promise<QmCluster> {
  let etcd: EtcdProcess | null = null;
  let nats: NatsProcess | null = null;
  const nodes: Child[] = [];
  const stop = async (): Promise<void> => {
    // Nodes first, concurrently: each hands its partitions to no one once the others are gone too.
    await Promise.all(nodes.map((n) => stopChild(n)));
    await nats?.stop();
    await etcd?.stop();
  };
  try {
    etcd = await startEtcd({ dataDir: path.join(root, "etcd") });
    nats = await startNats({ dataDir: path.join(root, "nats") });
    pin(etcd.pid, cpu);
    pin(nats.pid, cpu);
    const addresses: string[] = [];
    const metricsAddresses: string[] = [];
    for (const nodeId of CLUSTER_NODE_IDS) {
      const address = `${LOOPBACK_HOST}:${await freeLoopbackPort()}`;
      const metrics = `${LOOPBACK_HOST}:${await freeLoopbackPort()}`;
      const child = spawnNode({
        name: `qm-cluster ${nodeId}`,
        script: mainScript,
        args: [],
        nodeArgs,
        cpu,
        env: {
          ...env,
          QM_LISTEN: address,
          QM_METRICS_LISTEN: metrics,
          QM_DATA_DIR: path.join(root, nodeId),
          QM_NODE_ID: nodeId,
          QM_ETCD_ENDPOINTS: etcd.endpoint,
          QM_NATS_URL: nats.url,
          QM_CLUSTER: CLUSTER_NAME,
        },
      });
      nodes.push(child);
      addresses.push(address);
      metricsAddresses.push(metrics);
    }
    for (const [i, child] of nodes.entries()) {
      const address = addresses[i] ?? "";
      try {
        await waitUntilServing(address, NODE_SERVING_DEADLINE_MS, () => child.running);
      } catch (error) {
        throw new Error(`${child.name}: ${error instanceof Error ? error.message : String(error)}\n${child.outputTail()}`);
      }
    }
    await settled(addresses);
    const engines = [etcd.pid, nats.pid];
    return {
      targets: addresses.join(","),
      address: addresses[0] ?? "",
      addresses,
      metricsAddresses,
      nodes,
      etcdEndpoint: etcd.endpoint,
      natsUrl: nats.url,
      clusterName: CLUSTER_NAME,
      enginePids: () => engines,
      nodePids: () => nodes.map((n) => n.pid),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
