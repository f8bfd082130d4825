// Seeds a running cluster's catalogue straight through its JetStream journal,
// as bench/growth_data.ts builds the embedded node's through the LMDB journal:
// seeding 100,000 SKUs over gRPC took about 160 s per bench:compare family.
//
// Honest by construction: each SKU's events are the ones the SKU actor decides
// (growth_data.ts's skuAppend), written with the compare-and-set and the
// fencing epoch that the owner of the SKU's partition holds now (read from
// etcd), so the owner activates them through its normal recovery path, and no
// fence publish is added that a SKU created over gRPC would not have had. The
// cluster must be settled (every partition owned) before, and no node may have
// touched these SKUs.

import { Etcd3 } from "etcd3";
import { connect } from "nats";
import { systemClock } from "../src/clock";
import { ClusterKeys } from "../src/cluster/etcd_keys";
import { partitionOf } from "../src/cluster/placement";
import { JetStreamJournal } from "../src/journal/jetstream_journal";
import { skuAppend } from "./growth_data";

/** Appends issued before waiting: the journal keeps at most 1,024 publishes in flight, so this keeps it full. */
const APPENDS_IN_FLIGHT = 2_048;
/** Events per SKU: defined and received, as a SKU seeded over gRPC has. */
const EVENTS_PER_SKU = 2;

export interface ClusterCatalogueOptions {
  readonly etcdEndpoint: string;
  readonly natsUrl: string;
  readonly clusterName: string;
  readonly skus: number;
}

/** The fencing epoch of each owned partition: its ownership key's create revision. */
async function epochs(etcd: Etcd3, keys: ClusterKeys): Promise<{ partitions: number; epochOf: Map<number, number> }> {
  const config = JSON.parse((await etcd.get(keys.config).string()) ?? "null") as { partitions?: unknown } | null;
  const partitions = config?.partitions;
  if (typeof partitions !== "number") throw new Error(`${keys.config} names no partition count: is the cluster up?`);
  const epochOf = new Map<number, number>();
  const owned = await etcd.getAll().prefix(keys.partitionsPrefix).exec();
  for (const kv of owned.kvs) {
    const parsed = keys.parse(kv.key.toString());
    if (parsed?.kind === "partition") epochOf.set(parsed.partition, Number(kv.create_revision));
  }
  if (epochOf.size !== partitions) throw new Error(`${epochOf.size} of ${partitions} partitions are owned: the cluster has not settled`);
  return { partitions, epochOf };
}

/** Writes skuIdFor(0 .. skus-1) with BUILT_SKU_UNITS each; returns the seconds it took. */
export async function seedClusterCatalogue(options: ClusterCatalogueOptions): Promise<number> {
  const began = performance.now();
  const etcd = new Etcd3({ hosts: options.etcdEndpoint });
  const nc = await connect({ servers: options.natsUrl, noAsyncTraces: true });
  try {
    const { partitions, epochOf } = await epochs(etcd, new ClusterKeys(options.clusterName));
    const journal = new JetStreamJournal({
      nc,
      cluster: options.clusterName,
      partitions,
      replicas: 1,
      auditRetention: { maxAgeMs: 90 * 24 * 3600 * 1000, maxPerActor: 1000 },
      clock: systemClock,
    });
    await journal.open();
    try {
      const nowMs = systemClock.nowMs();
      for (let first = 0; first < options.skus; first += APPENDS_IN_FLIGHT) {
        const appends: Promise<void>[] = [];
        for (let i = first; i < Math.min(options.skus, first + APPENDS_IN_FLIGHT); i++) {
          const request = skuAppend(i, EVENTS_PER_SKU, nowMs, false);
          const epoch = epochOf.get(partitionOf(request.actorId, partitions));
          appends.push(journal.append({ ...request, epoch }));
        }
        await Promise.all(appends);
      }
    } finally {
      await journal.close();
    }
  } finally {
    await nc.drain().catch(() => nc.close());
    etcd.close();
  }
  return (performance.now() - began) / 1000;
}
