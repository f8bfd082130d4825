// Membership, partition ownership and fencing on a real etcd: several
// EtcdCluster instances in this process, each with its own etcd client and
// lease, as separate nodes would have.

import { expect } from "chai";
import { Etcd3 } from "etcd3";
import pino from "pino";
import { systemClock } from "../../src/clock";
import { EtcdCluster } from "../../src/cluster/etcd_cluster";
import { assignPartitions } from "../../src/cluster/rendezvous";
import { QmError } from "../../src/errors";
import { type EtcdProcess, startEtcd } from "../support/engines";

const PARTITIONS = 32;
const TTL_S = 3;
const silent = pino({ level: "silent" });

interface TestNode {
  readonly id: string;
  readonly cluster: EtcdCluster;
  readonly client: Etcd3;
}

async function until(what: string, condition: () => boolean, deadlineMs = 15_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("etcd membership and partition ownership (integration, real etcd)", function () {
  this.timeout(90_000);
  let etcd: EtcdProcess;
  const started: TestNode[] = [];
  let clusterSeq = 0;
  let clusterName = "";

  before(async () => {
    etcd = await startEtcd();
  });

  beforeEach(() => {
    clusterName = `t${++clusterSeq}`;
  });

  afterEach(async () => {
    for (const n of started.splice(0)) {
      await n.cluster.stop();
      n.client.close();
    }
  });

  after(async () => {
    etcd?.resume();
    await etcd?.stop();
  });

  async function startNode(id: string, partitions = PARTITIONS): Promise<TestNode> {
    const client = new Etcd3({ hosts: etcd.endpoint });
    const cluster = new EtcdCluster({
      client,
      cluster: clusterName,
      self: id,
      address: () => `${id}.test:50051`,
      version: "test",
      leaseTtlS: TTL_S,
      partitions,
      clock: systemClock,
      logger: silent,
    });
    try {
      await cluster.start();
    } catch (error) {
      client.close();
      throw error;
    }
    const node = { id, cluster, client };
    started.push(node);
    return node;
  }

  const table = (n: TestNode): (string | undefined)[] => n.cluster.partitions().map((p) => p.owner);
  /**
   * Every view shows the rendezvous table, and every owner serves what the views say it owns. The
   * views learn an ownership key from etcd's watch, which can arrive before the owner's own
   * transaction answers and it starts serving, so agreeing tables alone are not settled.
   */
  const settled = (nodes: readonly TestNode[], ids: readonly string[]): boolean => {
    const want = assignPartitions(ids, PARTITIONS);
    if (!nodes.every((n) => JSON.stringify(table(n)) === JSON.stringify(want))) return false;
    return nodes[0]!.cluster.partitions().every((p) => nodes.find((n) => n.id === p.owner)?.cluster.epochOf(p.partition) === p.epoch);
  };

  it("places every partition on its rendezvous owner, the same in every node's view, with a positive epoch served by the owner", async () => {
    const nodes = [await startNode("n1"), await startNode("n2"), await startNode("n3")];
    await until("three nodes to agree on the table", () => settled(nodes, ["n1", "n2", "n3"]));
    for (const p of nodes[0]!.cluster.partitions()) {
      expect(p.epoch, `partition ${p.partition}`).to.be.greaterThan(0);
      const owner = nodes.find((n) => n.id === p.owner)!;
      expect(owner.cluster.epochOf(p.partition)).to.equal(p.epoch);
      for (const other of nodes.filter((n) => n !== owner)) expect(other.cluster.epochOf(p.partition)).to.equal(undefined);
    }
    const members = nodes[1]!.cluster.members();
    expect(members.map((m) => [m.nodeId, m.address])).to.deep.equal([
      ["n1", "n1.test:50051"],
      ["n2", "n2.test:50051"],
      ["n3", "n3.test:50051"],
    ]);
    expect(members.reduce((sum, m) => sum + m.partitionCount, 0)).to.equal(PARTITIONS);
  });

  it("moves only the joiner's partitions when a node joins, keeping every other epoch", async () => {
    const nodes = [await startNode("n1"), await startNode("n2")];
    await until("two nodes to settle", () => settled(nodes, ["n1", "n2"]));
    const before = nodes[0]!.cluster.partitions();
    nodes.push(await startNode("n3"));
    await until("three nodes to settle", () => settled(nodes, ["n1", "n2", "n3"]));
    const after = nodes[0]!.cluster.partitions();
    for (let p = 0; p < PARTITIONS; p++) {
      if (after[p]!.owner === "n3") expect(after[p]!.epoch, `partition ${p} re-claimed`).to.be.greaterThan(before[p]!.epoch);
      else expect(after[p], `partition ${p} stayed`).to.deep.equal(before[p]);
    }
  });

  it("refuses a second live node with the same id", async () => {
    await startNode("dup");
    let refused: unknown;
    try {
      await startNode("dup");
    } catch (error) {
      refused = error;
    }
    expect(refused).to.be.instanceOf(QmError);
    expect((refused as QmError).metadata.reason).to.equal("DUPLICATE_NODE_ID");
  });

  it("refuses a node whose partition count differs from the cluster's", async () => {
    await startNode("n1");
    let refused: unknown;
    try {
      await startNode("n2", PARTITIONS * 2);
    } catch (error) {
      refused = error;
    }
    expect((refused as QmError).metadata.reason).to.equal("PARTITIONS_MISMATCH");
  });

  it("drains a node through its etcd key (DrainNode), reports how many moved, and undrains it", async () => {
    const nodes = [await startNode("n1"), await startNode("n2"), await startNode("n3")];
    await until("three nodes to settle", () => settled(nodes, ["n1", "n2", "n3"]));
    const owned = table(nodes[0]!).filter((o) => o === "n2").length;
    expect(await nodes[0]!.cluster.drain("n2")).to.equal(owned);
    await until("the drained node to own nothing in every view", () => settled(nodes, ["n1", "n3"]));
    expect(nodes[2]!.cluster.members().find((m) => m.nodeId === "n2")?.draining).to.equal(true);
    await nodes[2]!.cluster.undrain("n2");
    await until("the undrained node to take its partitions back", () => settled(nodes, ["n1", "n2", "n3"]));
  });

  it("gives a stopped node's partitions to the others at larger epochs", async () => {
    const nodes = [await startNode("n1"), await startNode("n2"), await startNode("n3")];
    await until("three nodes to settle", () => settled(nodes, ["n1", "n2", "n3"]));
    const before = nodes[0]!.cluster.partitions();
    const leaver = started.splice(started.indexOf(nodes[1]!), 1)[0]!;
    await leaver.cluster.stop();
    leaver.client.close();
    const rest = [nodes[0]!, nodes[2]!];
    await until("the two others to take over", () => settled(rest, ["n1", "n3"]));
    const after = nodes[0]!.cluster.partitions();
    for (let p = 0; p < PARTITIONS; p++) if (before[p]!.owner === "n2") expect(after[p]!.epoch).to.be.greaterThan(before[p]!.epoch);
  });

  it("stops serving every partition before the lease can expire while etcd is unreachable, and serves again when it returns", async () => {
    const nodes = [await startNode("n1"), await startNode("n2")];
    await until("two nodes to settle", () => settled(nodes, ["n1", "n2"]));
    const servedCount = (): number => nodes.reduce((sum, n) => sum + n.cluster.partitions().filter((p) => n.cluster.epochOf(p.partition) !== undefined).length, 0);
    expect(servedCount()).to.equal(PARTITIONS);
    etcd.pause();
    const pausedAt = Date.now();
    try {
      await until("both nodes to stop serving", () => servedCount() === 0, TTL_S * 1000);
      // Within the TTL: before etcd could have let anyone else claim the partitions.
      expect(Date.now() - pausedAt).to.be.below(TTL_S * 1000);
    } finally {
      etcd.resume();
    }
    await until("both nodes to serve everything again", () => servedCount() === PARTITIONS, 20_000);
  });
});
