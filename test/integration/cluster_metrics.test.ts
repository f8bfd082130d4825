// The cluster's metrics on a real cluster (etcd, nats-server, Quartermaster
// nodes as processes): partitions owned and moving when a node joins, lease
// renewals, asks forwarded over NATS and the breaker of the peer asked, and
// reservations counted on the node that owns the SKU.

import { status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { idOwnedBy, startCluster, TEST_PARTITIONS, type TestCluster } from "../support/cluster";
import { expectFailure, seedSku } from "../support/fixtures";
import { pollUntil } from "../support/metrics";
import { CONTRACT_ADDED, families, PROMETHEUS_ACCEPT, sample, scrape } from "../support/scrape";
import { call } from "../support/server_process";

const POLL_MS = 20_000;

describe("cluster metrics (integration)", function () {
  this.timeout(180_000);
  let cluster: TestCluster;

  const metricsOf = (node: string): string => {
    const server = cluster.nodes.get(node);
    if (server === undefined) throw new Error(`no node ${node}`);
    return server.metricsAddr;
  };
  const read = async (node: string, series: string): Promise<number> => sample((await scrape(metricsOf(node))).text, series) ?? Number.NaN;
  const sum = async (nodes: readonly string[], series: string): Promise<number> => {
    let total = 0;
    for (const node of nodes) total += await read(node, series);
    return total;
  };
  const reserve = (via: string, skuId: string, id: string, quantity: number): Promise<unknown> =>
    call(cluster.clients(via).inventory, "reserve", { reservationId: id, skuId, quantity, locationId: "", ttl: undefined });

  before(async () => {
    cluster = await startCluster(["n1", "n2"], { cluster: "metrics" });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("serves every metric of the contract on a cluster node, in both formats", async () => {
    const classic = families((await scrape(metricsOf("n1"))).text);
    for (const [name, type] of CONTRACT_ADDED) expect(classic.get(name), name).to.equal(type);
    const open = await scrape(metricsOf("n1"), PROMETHEUS_ACCEPT);
    expect(open.text.endsWith("# EOF\n")).to.equal(true);
    expect(families(open.text).get("qm_partition_ownership_changes")).to.equal("counter");
  });

  it("shows every partition owned by one node and none unowned; acquisitions minus releases equal the partition count", async () => {
    const nodes = ["n1", "n2"];
    const settled = await pollUntil(async () => (await sum(nodes, "qm_partitions_owned")) === TEST_PARTITIONS && (await sum(nodes, "qm_partitions_unowned")) === 0, Date.now() + POLL_MS, 100);
    expect(settled, "partitions owned and unowned").to.equal(true);
    for (const node of nodes) expect(await read(node, "qm_partitions_owned"), node).to.be.above(0);
    const acquired = await sum(nodes, 'qm_partition_ownership_changes_total{change="acquired"}');
    const released = await sum(nodes, 'qm_partition_ownership_changes_total{change="released"}');
    // A node that started alone took every partition, then handed some to the second.
    expect(acquired - released).to.equal(TEST_PARTITIONS);
    expect(await sum(nodes, 'qm_partition_ownership_changes_total{change="lost"}')).to.equal(0);
  });

  it("times lease renewals, with no failure and no lease lost", async () => {
    // TTL 3 s: etcd3 renews every second.
    expect(await pollUntil(async () => (await read("n1", "qm_lease_renewal_duration_seconds_count")) >= 1, Date.now() + POLL_MS, 200)).to.equal(true);
    expect(await read("n1", "qm_lease_renewal_duration_seconds_sum")).to.be.above(0);
    expect(await read("n1", "qm_lease_renewal_failures_total")).to.equal(0);
    expect(await read("n1", "qm_lease_lost_total")).to.equal(0);
  });

  it("times each ask forwarded over NATS (a domain refusal is an answered ask), counts the reservation on the owner, and shows the peer's breaker closed", async () => {
    const sku = await idOwnedBy(cluster, "sku", "n2", "cm-sku");
    await seedSku(cluster.clients("n2"), sku, 5);
    const ok = 'qm_nats_ask_duration_seconds_count{outcome="ok"}';
    const asksBefore = await read("n1", ok);
    const reservedBefore = await read("n2", 'qm_reservations_total{outcome="reserved"}');
    const shortBefore = await read("n2", 'qm_reservations_total{outcome="insufficient_stock"}');
    const n1ReservedBefore = await read("n1", 'qm_reservations_total{outcome="reserved"}');
    await reserve("n1", sku, "cm-r1", 2);
    await expectFailure(reserve("n1", sku, "cm-r2", 4), GrpcStatus.FAILED_PRECONDITION);
    expect(await read("n1", ok)).to.equal(asksBefore + 2);
    expect(await read("n1", 'qm_nats_ask_duration_seconds_count{outcome="error"}')).to.equal(0);
    expect(await read("n1", "qm_nats_ask_timeouts_total")).to.equal(0);
    expect(await read("n2", 'qm_reservations_total{outcome="reserved"}')).to.equal(reservedBefore + 1);
    expect(await read("n2", 'qm_reservations_total{outcome="insufficient_stock"}')).to.equal(shortBefore + 1);
    expect(await read("n1", 'qm_reservations_total{outcome="reserved"}')).to.equal(n1ReservedBefore);
    expect(await read("n1", 'qm_breaker_state{peer="n2"}')).to.equal(0);
    // The JetStream journal reports its commits like the embedded one.
    expect(await read("n2", "qm_journal_commit_duration_seconds_count")).to.be.at.least(3);
  });

  it("counts the partitions a joining node acquires as released by the others", async () => {
    await cluster.startNode("n3");
    await cluster.settled();
    const nodes = ["n1", "n2", "n3"];
    const moved = await pollUntil(
      async () =>
        (await read("n3", 'qm_partition_ownership_changes_total{change="acquired"}')) > 0 &&
        (await sum(nodes, "qm_partitions_owned")) === TEST_PARTITIONS &&
        (await sum(nodes, 'qm_partition_ownership_changes_total{change="acquired"}')) - (await sum(nodes, 'qm_partition_ownership_changes_total{change="released"}')) === TEST_PARTITIONS,
      Date.now() + POLL_MS,
      100,
    );
    expect(moved, "ownership changes after n3 joined").to.equal(true);
    expect(await read("n3", 'qm_partition_ownership_changes_total{change="released"}')).to.equal(0);
    expect(await read("n3", "qm_partitions_owned")).to.equal(await read("n3", 'qm_partition_ownership_changes_total{change="acquired"}'));
    expect(await sum(["n1", "n2"], 'qm_partition_ownership_changes_total{change="released"}')).to.be.at.least(await read("n3", 'qm_partition_ownership_changes_total{change="acquired"}'));
  });
});
