// The authenticating gate on cluster nodes (cluster_node.ts wires it like
// node.ts): two nodes with one QM_AUTH_CONFIG, calls through the node that does
// not own the SKU, refusals before anything is forwarded, SIGHUP on a cluster node.

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { ActorKind } from "../../src/gen/quartermaster/v1/cluster";
import { AdjustmentReason, ReserveRequest } from "../../src/gen/quartermaster/v1/inventory";
import { startCluster, type TestCluster } from "../support/cluster";
import { grpcOutcomeOf } from "../support/grpc_outcome";
import { call, makeTempDir } from "../support/server_process";
import { bearer, generateTestKey, jwksText, signToken, type TestKey, writeAuthFiles } from "../support/security";

const RELOAD_DEADLINE_MS = 10_000;

describe("authentication on cluster nodes (integration)", function () {
  this.timeout(120_000);
  let cluster: TestCluster | undefined;
  let key: TestKey;
  let dir: string;

  before(async () => {
    dir = await makeTempDir("qm-auth-cluster-");
    key = await generateTestKey("c-1", "ES256");
    const file = await writeAuthFiles(dir, { keys: [key] });
    // No nodes yet: the helper's settling check calls without a token.
    cluster = await startCluster([], { cluster: "auth" });
    await cluster.startNode("a", { QM_AUTH_CONFIG: file });
    await cluster.startNode("b", { QM_AUTH_CONFIG: file });
  });

  after(async () => {
    await cluster?.stop();
  });

  it("serves a caller with the permission through the node that does not own the SKU, and refuses one without", async () => {
    const c = cluster;
    if (c === undefined) throw new Error("no cluster");
    const warehouse = bearer(await signToken(key, { sub: "scanner", tenant: "acme", roles: ["warehouse", "operator"] }));
    // LocateKey needs cluster.read, so the helper's idOwnedBy (no token) cannot be used; "b" may take a moment to own partitions.
    let skuId = "";
    const deadline = Date.now() + 20_000;
    while (skuId === "" && Date.now() < deadline) {
      for (let i = 0; i < 200 && skuId === ""; i++) {
        const located = await call(c.clients("a").cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_SKU, id: `C-${i}` }, { metadata: warehouse }).catch(() => undefined);
        if (located?.ownerNodeId === "b") skuId = `C-${i}`;
      }
    }
    expect(skuId, "an id owned by node b").not.to.equal("");
    await call(c.clients("a").inventory, "upsertSku", { skuId, title: "Kettle", currency: "EUR", updateMask: ["title", "currency"], attributes: {} }, { metadata: warehouse });
    const level = await call(
      c.clients("a").inventory,
      "adjustStock",
      { skuId, locationId: "WH1", delta: 4, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED, note: "", idempotencyKey: "" },
      { metadata: warehouse },
    );
    expect(level.onHand).to.equal(4);

    const reader = bearer(await signToken(key, { sub: "dashboard", tenant: "acme", roles: ["reader"] }));
    const refused = await grpcOutcomeOf(call(c.clients("a").inventory, "reserve", ReserveRequest.fromPartial({ skuId, reservationId: "r-1", quantity: 1 }), { metadata: reader }));
    expect(refused.code).to.equal(GrpcStatus.PERMISSION_DENIED);
    const anonymous = await grpcOutcomeOf(call(c.clients("b").inventory, "getSku", { skuId }));
    expect(anonymous).to.deep.equal({ code: GrpcStatus.UNAUTHENTICATED, reason: "TOKEN_MISSING" });
    const availability = await call(c.clients("a").inventory, "getAvailability", { skuIds: [skuId] }, { metadata: reader });
    expect(availability.items[0]).to.include({ onHand: 4, reserved: 0 });
  });

  it("takes a rotated key set on SIGHUP to a cluster node", async () => {
    const c = cluster;
    const node = c?.nodes.get("b");
    if (c === undefined || node === undefined) throw new Error("no node b");
    const rotated = await generateTestKey("c-2", "RS256");
    await writeFile(path.join(dir, "jwks.json"), jwksText([rotated]));
    process.kill(node.pid, "SIGHUP");
    const metadata = bearer(await signToken(rotated, { sub: "dashboard", tenant: "acme", roles: ["reader"] }));
    const end = Date.now() + RELOAD_DEADLINE_MS;
    let last = await grpcOutcomeOf(call(c.clients("b").cluster, "getClusterStatus", {}, { metadata }));
    while (last.code !== GrpcStatus.PERMISSION_DENIED && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      last = await grpcOutcomeOf(call(c.clients("b").cluster, "getClusterStatus", {}, { metadata }));
    }
    // A reader lacks cluster.read: PERMISSION_DENIED (not UNAUTHENTICATED) proves the new key was accepted.
    expect(last.code).to.equal(GrpcStatus.PERMISSION_DENIED);
    // Node a was not signalled: it still knows only the old key.
    expect((await grpcOutcomeOf(call(c.clients("a").cluster, "getClusterStatus", {}, { metadata }))).reason).to.equal("TOKEN_KEY_UNKNOWN");
  });
});
