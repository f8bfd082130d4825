// ClusterService on the embedded node: one member that owns every partition at
// epoch 1. Cluster mode answers the same RPCs from etcd; these pin the shape
// and the single node's honest answers (it cannot drain itself).

import { status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { ActorKind } from "../../src/gen/quartermaster/v1/cluster";
import { expectFailure, seedSku } from "../support/fixtures";
import { call, type Clients, createClients, decodeStatusDetails, type ServerProcess, startServer } from "../support/server_process";

describe("ClusterService on the embedded node (integration)", () => {
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    server = await startServer({ env: { QM_NODE_ID: "node-a" } });
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
  });

  it("shows one member at its bound address owning all 256 partitions at epoch 1", async () => {
    const status = await call(c.cluster, "getClusterStatus", {});
    expect(status.partitionCount).to.equal(256);
    expect(status.members).to.have.length(1);
    const [member] = status.members;
    expect(member?.nodeId).to.equal("node-a");
    expect(member?.address).to.equal(server.addr);
    expect(member?.partitionCount).to.equal(256);
    expect(member?.draining).to.equal(false);
    expect(Math.abs(Date.now() - (member?.startedAt?.getTime() ?? 0))).to.be.below(10 * 60_000);
    expect(status.partitions.map((p) => p.partition)).to.deep.equal(Array.from({ length: 256 }, (_, i) => i));
    for (const p of status.partitions) expect([p.ownerNodeId, p.epoch]).to.deep.equal(["node-a", 1]);
  });

  it("locates a SKU and an order on their partitions (the hash the journal and placement use)", async () => {
    // The same values test/unit/placement_router.test.ts pins for partitionOf.
    expect(await call(c.cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_SKU, id: "ABC-1" })).to.deep.equal({
      partition: 143,
      ownerNodeId: "node-a",
      epoch: 1,
    });
    expect(await call(c.cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_ORDER, id: "o-17" })).to.deep.equal({
      partition: 148,
      ownerNodeId: "node-a",
      epoch: 1,
    });
  });

  it("rejects a LocateKey without a kind or with a bad id, naming each field", async () => {
    const e = await expectFailure(call(c.cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_UNSPECIFIED, id: "bad id" }), GrpcStatus.INVALID_ARGUMENT);
    const fields = (decodeStatusDetails(e).badRequest?.fieldViolations ?? []).map((v) => v.field).sort();
    expect(fields).to.deep.equal(["id", "kind"]);
  });

  it("refuses to drain the only member with FAILED_PRECONDITION (NO_OTHER_MEMBER) and keeps serving", async () => {
    await seedSku(c, "CL-1", 5);
    const e = await expectFailure(call(c.cluster, "drainNode", { nodeId: "node-a" }), GrpcStatus.FAILED_PRECONDITION);
    expect(decodeStatusDetails(e).errorInfo?.reason).to.equal("NO_OTHER_MEMBER");
    const status = await call(c.cluster, "getClusterStatus", {});
    expect(status.members[0]?.partitionCount).to.equal(256);
    const held = await call(c.inventory, "reserve", { skuId: "CL-1", reservationId: "r-1", quantity: 2, locationId: "", ttl: undefined });
    expect(held.quantity).to.equal(2);
  });

  it("answers NOT_FOUND for a node that is not a member, INVALID_ARGUMENT for a bad node id, and undrains idempotently", async () => {
    await expectFailure(call(c.cluster, "drainNode", { nodeId: "node-z" }), GrpcStatus.NOT_FOUND);
    await expectFailure(call(c.cluster, "undrainNode", { nodeId: "node-z" }), GrpcStatus.NOT_FOUND);
    const e = await expectFailure(call(c.cluster, "drainNode", { nodeId: "" }), GrpcStatus.INVALID_ARGUMENT);
    expect(decodeStatusDetails(e).badRequest?.fieldViolations.map((v) => v.field)).to.deep.equal(["node_id"]);
    expect(await call(c.cluster, "undrainNode", { nodeId: "node-a" })).to.deep.equal({});
    expect(await call(c.cluster, "undrainNode", { nodeId: "node-a" })).to.deep.equal({});
  });
});
