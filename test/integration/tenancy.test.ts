// Tenant isolation through the gRPC API: two tenants, one node. The node's
// gate is the test gate (test/support/tenant.ts), which names the caller from
// test metadata; everything behind it is the production path.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { AdjustmentReason, type ReserveRequest } from "../../src/gen/quartermaster/v1/inventory";
import { type CreateOrderRequest, OrderState, TrackingStatus } from "../../src/gen/quartermaster/v1/order";
import { ActorKind } from "../../src/gen/quartermaster/v1/cluster";
import { PARTITIONS_DEFAULT, partitionOf } from "../../src/cluster/placement";
import { renderAdjustments, renderOrder } from "../../src/cli/render";
import { expectFailure } from "../support/fixtures";
import { call, type CallOpts, type Clients } from "../support/server_process";
import { as, startTenantNode, type TenantNode } from "../support/tenant";

const ACME = as("acme", "alice");
const GLOBEX = as("globex", "mallory");

/**
 * Everything a caller learns from a failed call: code, message and every
 * metadata entry (status details included), as bytes; only the HTTP `date`
 * header is left out, since it tells the second of the answer.
 */
function statusBytes(error: ServiceError): string {
  const metadata = Object.entries(error.metadata.getMap())
    .filter(([k]) => k !== "date")
    .map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString("base64") : String(v)])
    .sort(([a], [b]) => String(a).localeCompare(String(b)));
  return JSON.stringify({ code: error.code, details: error.details, metadata });
}

/** An answer as bytes: the response, or the whole failure. */
async function answerBytes(promise: Promise<unknown>): Promise<string> {
  try {
    return JSON.stringify({ ok: await promise });
  } catch (error) {
    return statusBytes(error as ServiceError);
  }
}

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  return expectFailure(promise, GrpcStatus.NOT_FOUND);
}

describe("Tenancy (integration, in-process node behind a test gate)", function () {
  this.timeout(60_000);
  let dir: string;
  let node: TenantNode;
  let c: Clients;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-tenancy-"));
    node = await startTenantNode(dir);
    c = node.clients;
  });

  after(async () => {
    await node?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function seed(skuId: string, onHand: number, who: CallOpts): Promise<void> {
    await call(
      c.inventory,
      "upsertSku",
      { skuId, title: `Item ${skuId}`, priceMinor: 100, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: {}, updateMask: undefined },
      who,
    );
    const adjust = { skuId, locationId: "wh-1", delta: onHand, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED, note: "seed", idempotencyKey: "" };
    if (onHand > 0) await call(c.inventory, "adjustStock", adjust, who);
  }

  const orderOf = (orderId: string, skuId: string, quantity: number): CreateOrderRequest => ({
    orderId,
    customerId: "c-1",
    lines: [{ skuId, quantity }],
    paymentTimeout: undefined,
  });
  const reserveOf = (skuId: string, reservationId: string, quantity: number): ReserveRequest => ({ skuId, reservationId, quantity, locationId: "", ttl: undefined });

  /** Every way another tenant may touch a SKU or an order by its id; each must fail. */
  function probes(skuId: string, orderId: string, who: CallOpts): Record<string, () => Promise<unknown>> {
    return {
      getSku: () => call(c.inventory, "getSku", { skuId }, who),
      getAvailability: () => call(c.inventory, "getAvailability", { skuIds: [skuId] }, who),
      listAdjustments: () => call(c.inventory, "listAdjustments", { skuId, pageSize: 0, pageToken: "" }, who),
      adjustStock: () =>
        call(c.inventory, "adjustStock", { skuId, locationId: "wh-1", delta: -1, reason: AdjustmentReason.ADJUSTMENT_REASON_DAMAGED, note: "", idempotencyKey: "" }, who),
      reserve: () => call(c.inventory, "reserve", reserveOf(skuId, "steal-1", 1), who),
      getReservation: () => call(c.inventory, "getReservation", { skuId, reservationId: "b-res" }, who),
      commitReservation: () => call(c.inventory, "commitReservation", { skuId, reservationId: "b-res" }, who),
      releaseReservation: () => call(c.inventory, "releaseReservation", { skuId, reservationId: "b-res" }, who),
      getOrder: () => call(c.order, "getOrder", { orderId }, who),
      confirmPayment: () => call(c.order, "confirmPayment", { orderId, paymentReference: "pay-x" }, who),
      cancelOrder: () => call(c.order, "cancelOrder", { orderId, reason: "mine now" }, who),
      createShipment: () => call(c.order, "createShipment", { orderId, shipmentId: "s-x", lines: [], carrier: "dhl", trackingNumber: "" }, who),
      recordTrackingEvent: () =>
        call(
          c.order,
          "recordTrackingEvent",
          { orderId, shipmentId: "s-1", eventId: "e-x", status: TrackingStatus.TRACKING_STATUS_DELIVERED, location: "", description: "", occurredAt: new Date() },
          who,
        ),
      returnItems: () => call(c.order, "returnItems", { orderId, returnId: "ret-x", lines: [{ skuId, quantity: 1 }], restock: true }, who),
    };
  }

  it("lets two tenants own the same SKU id with different stock, each seeing only its own", async () => {
    await seed("same-1", 10, ACME);
    await seed("same-1", 3, GLOBEX);
    expect((await call(c.inventory, "getSku", { skuId: "same-1" }, ACME)).onHand).to.equal(10);
    expect((await call(c.inventory, "getSku", { skuId: "same-1" }, GLOBEX)).onHand).to.equal(3);
    await call(c.inventory, "reserve", reserveOf("same-1", "r-1", 4), ACME);
    const globexView = await call(c.inventory, "getAvailability", { skuIds: ["same-1"] }, GLOBEX);
    expect(globexView.items.map((i) => [i.skuId, i.available])).to.deep.equal([["same-1", 3]]);
    expect((await call(c.inventory, "getAvailability", { skuIds: ["same-1"] }, ACME)).items[0]?.available).to.equal(6);
    // The default tenant (no credentials) has no SKU of that id at all.
    await failure(call(c.inventory, "getSku", { skuId: "same-1" }));
  });

  it("answers another tenant's SKU and order ids byte for byte like ids that do not exist (NOT_FOUND), and changes nothing", async () => {
    // Globex's answers while acme's objects do not exist yet...
    const probeSet = probes("b-sku", "b-order", GLOBEX);
    const before = new Map<string, string>();
    for (const [name, probe] of Object.entries(probeSet)) before.set(name, await answerBytes(probe()));
    // Every probe but GetAvailability (which answers found=false for an unknown SKU) is NOT_FOUND.
    const notFound = [...before].filter(([, bytes]) => JSON.parse(bytes).code === GrpcStatus.NOT_FOUND).map(([name]) => name);
    expect(notFound).to.deep.equal(Object.keys(probeSet).filter((name) => name !== "getAvailability"));
    expect(JSON.parse(before.get("getAvailability") ?? "{}")).to.deep.include({ ok: { items: [{ skuId: "b-sku", found: false, onHand: 0, reserved: 0, committed: 0, available: 0, version: 0 }] } });
    // ...then acme creates exactly those objects: a SKU with a reservation, and a paid, shipped order.
    await seed("b-sku", 5, ACME);
    await call(c.inventory, "reserve", reserveOf("b-sku", "b-res", 1), ACME);
    await call(c.order, "createOrder", orderOf("b-order", "b-sku", 2), ACME);
    await call(c.order, "confirmPayment", { orderId: "b-order", paymentReference: "pay-1" }, ACME);
    await call(c.order, "createShipment", { orderId: "b-order", shipmentId: "s-1", lines: [], carrier: "dhl", trackingNumber: "" }, ACME);
    const acmeSku = await call(c.inventory, "getSku", { skuId: "b-sku" }, ACME);
    const acmeOrder = await call(c.order, "getOrder", { orderId: "b-order" }, ACME);
    for (const [name, probe] of Object.entries(probeSet)) {
      expect(await answerBytes(probe()), name).to.equal(before.get(name));
    }
    expect(await call(c.inventory, "getSku", { skuId: "b-sku" }, ACME)).to.deep.equal(acmeSku);
    expect(await call(c.order, "getOrder", { orderId: "b-order" }, ACME)).to.deep.equal(acmeOrder);
    expect([acmeSku.onHand, acmeSku.reserved, acmeSku.committed]).to.deep.equal([3, 1, 0]);
    expect(acmeOrder.state).to.equal(OrderState.ORDER_STATE_SHIPPED);
  });

  it("reserves in a batch only the caller's SKUs: another tenant's fail as NOT_FOUND items, and its stock stays", async () => {
    await seed("batch-a", 2, ACME);
    await seed("batch-g", 2, GLOBEX);
    const r = await call(
      c.inventory,
      "reserveBatch",
      { items: [reserveOf("batch-g", "x-1", 1), reserveOf("batch-a", "x-2", 1)] },
      GLOBEX,
    );
    expect(r.results[0]?.outcome?.$case).to.equal("reservation");
    const item = r.results[1]?.outcome;
    expect(item?.$case === "error" ? item.error.code : -1).to.equal(GrpcStatus.NOT_FOUND);
    expect((await call(c.inventory, "getSku", { skuId: "batch-a" }, ACME)).reserved).to.equal(0);
  });

  it("runs an order's saga over its own tenant's SKUs only: another tenant's SKU of that id is SKU_NOT_FOUND", async () => {
    await seed("saga-only-acme", 4, ACME);
    const g = await call(c.order, "createOrder", orderOf("g-ord", "saga-only-acme", 1), GLOBEX);
    expect(g.state).to.equal(OrderState.ORDER_STATE_REJECTED);
    expect(g.rejectionReasons.map((x) => x.reason)).to.deep.equal(["SKU_NOT_FOUND"]);
    const acme = await call(c.inventory, "getSku", { skuId: "saga-only-acme" }, ACME);
    expect([acme.onHand, acme.reserved]).to.deep.equal([4, 0]);
  });

  it("keeps the default tenant's actor ids as before (sku/ID, order/ID) and gives other tenants sku/TENANT/ID", async () => {
    await seed("legacy-1", 2, {});
    await call(c.order, "createOrder", orderOf("legacy-o", "legacy-1", 1), {});
    await seed("legacy-1", 7, ACME);
    expect((await node.journal.recover("sku/legacy-1")).lastSeq).to.be.greaterThan(0);
    expect((await node.journal.recover("order/legacy-o")).lastSeq).to.be.greaterThan(0);
    expect((await node.journal.recover("sku/acme/legacy-1")).lastSeq).to.be.greaterThan(0);
    expect((await node.journal.recover("order/acme/legacy-o")).lastSeq).to.equal(0);
    // A restarted node recovers both from the journal, each in its tenant.
    await node.stop();
    node = await startTenantNode(dir);
    c = node.clients;
    const defaultSku = await call(c.inventory, "getSku", { skuId: "legacy-1" });
    expect([defaultSku.onHand, defaultSku.reserved]).to.deep.equal([2, 1]);
    expect((await call(c.inventory, "getSku", { skuId: "legacy-1" }, ACME)).onHand).to.equal(7);
    expect((await call(c.order, "getOrder", { orderId: "legacy-o" })).state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
  });

  it("locates a key in the caller's tenant: LocateKey hashes the tenant's actor id", async () => {
    // Ids chosen so the two tenants' actors fall in different partitions: the answer depends on the tenant.
    const id = ["loc-1", "loc-2", "loc-3", "loc-4"].find((x) => partitionOf(`sku/${x}`, PARTITIONS_DEFAULT) !== partitionOf(`sku/acme/${x}`, PARTITIONS_DEFAULT));
    if (id === undefined) throw new Error("no id whose tenants' partitions differ");
    const plain = await call(c.cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_SKU, id });
    const acme = await call(c.cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_SKU, id }, ACME);
    expect(plain.partition).to.equal(partitionOf(`sku/${id}`, PARTITIONS_DEFAULT));
    expect(acme.partition).to.equal(partitionOf(`sku/acme/${id}`, PARTITIONS_DEFAULT));
    const order = await call(c.cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_ORDER, id }, ACME);
    expect(order.partition).to.equal(partitionOf(`order/acme/${id}`, PARTITIONS_DEFAULT));
  });

  it("records who adjusted stock in the adjustment log, and who changed an order in its history", async () => {
    await seed("audit-1", 6, as("acme", "receiver"));
    await call(
      c.inventory,
      "adjustStock",
      { skuId: "audit-1", locationId: "wh-1", delta: -1, reason: AdjustmentReason.ADJUSTMENT_REASON_DAMAGED, note: "dropped", idempotencyKey: "" },
      as("acme", "auditor"),
    );
    const log = await call(c.inventory, "listAdjustments", { skuId: "audit-1", pageSize: 0, pageToken: "" }, ACME);
    expect(log.adjustments.map((a) => [a.delta, a.subject, a.tenant])).to.deep.equal([
      [6, "receiver", "acme"],
      [-1, "auditor", "acme"],
    ]);
    expect(renderAdjustments(log)).to.contain("auditor (acme)");

    await call(c.order, "createOrder", orderOf("audit-o", "audit-1", 2), as("acme", "checkout"));
    await call(c.order, "cancelOrder", { orderId: "audit-o", reason: "changed mind" }, as("acme", "support"));
    const order = await call(c.order, "getOrder", { orderId: "audit-o" }, ACME);
    expect(order.history.map((h) => [h.change, h.subject, h.tenant])).to.deep.equal([
      ["placed", "checkout", "acme"],
      ["reserved", "checkout", "acme"],
      ["cancelStarted", "support", "acme"],
      ["released", "support", "acme"],
    ]);
    expect(order.historyOmitted).to.equal(0);
    expect(order.history.every((h) => h.at !== undefined && h.at.getTime() > 0)).to.equal(true);
    expect(renderOrder(order)).to.match(/HISTORY[\s\S]*cancelStarted\s+\S+\s+support \(acme\)/);
    expect((await call(c.inventory, "getSku", { skuId: "audit-1" }, ACME)).available).to.equal(5);

    // A restock is an adjustment the order's saga makes on the SKU: it names the caller whose return caused it.
    await call(c.order, "createOrder", orderOf("audit-r", "audit-1", 1), as("acme", "checkout"));
    await call(c.order, "confirmPayment", { orderId: "audit-r", paymentReference: "p" }, as("acme", "checkout"));
    await call(c.order, "createShipment", { orderId: "audit-r", shipmentId: "s-1", lines: [], carrier: "dhl", trackingNumber: "" }, as("acme", "warehouse"));
    await call(c.order, "returnItems", { orderId: "audit-r", returnId: "ret-1", lines: [{ skuId: "audit-1", quantity: 1 }], restock: true }, as("acme", "returns-desk"));
    const after = await call(c.inventory, "listAdjustments", { skuId: "audit-1", pageSize: 0, pageToken: "" }, ACME);
    const restock = after.adjustments[after.adjustments.length - 1];
    expect([restock?.reason, restock?.delta, restock?.subject, restock?.tenant]).to.deep.equal([AdjustmentReason.ADJUSTMENT_REASON_RETURNED, 1, "returns-desk", "acme"]);
  });
});
