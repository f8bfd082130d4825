// API semantics through a real server: UpsertSku as a patch (update_mask and
// field presence), backorder pre-orders before any stock, reused ids with other
// content, attribute keys without special meaning, and which resource is not found.

import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { AdjustmentReason, ReservationState, Sku, type UpsertSkuRequest } from "../../src/gen/quartermaster/v1/inventory";
import { OrderState, TrackingStatus } from "../../src/gen/quartermaster/v1/order";
import { expectFailure } from "../support/fixtures";
import { call, type Clients, createClients, decodeStatusDetails, REPO_ROOT, type ServerProcess, startServer } from "../support/server_process";

const QMCTL = path.join(REPO_ROOT, "bin/qmctl.js");

/** Only sku_id and what is given: every scalar unset, so nothing else is "present". */
function upsert(skuId: string, fields: Partial<UpsertSkuRequest> = {}): UpsertSkuRequest {
  return { skuId, attributes: {}, updateMask: undefined, ...fields };
}

describe("API semantics (integration)", function () {
  this.timeout(120_000);
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    server = await startServer();
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
  });

  function qmctl(...args: string[]): Promise<{ stdout: string; stderr: string }> {
    return promisify(execFile)(process.execPath, [QMCTL, "--addr", server.addr, ...args], { cwd: REPO_ROOT, timeout: 30_000 });
  }

  async function receive(skuId: string, locationId: string, delta: number): Promise<void> {
    await call(c.inventory, "adjustStock", { skuId, locationId, delta, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED, note: "", idempotencyKey: "" });
  }

  describe("UpsertSku", () => {
    it("renames without a mask and keeps price_minor 1299 and low_stock_threshold 5", async () => {
      await call(c.inventory, "upsertSku", upsert("sem-1", { title: "Blue mug", currency: "EUR", priceMinor: 1299, lowStockThreshold: 5 }));
      const renamed = await call(c.inventory, "upsertSku", upsert("sem-1", { title: "Blue mug v2", currency: "EUR" }));
      expect(renamed).to.deep.include({ title: "Blue mug v2", currency: "EUR", priceMinor: 1299, lowStockThreshold: 5 });
    });

    it("changes only the masked fields: a named field left unset becomes 0, an unnamed one that is set is ignored", async () => {
      await call(c.inventory, "upsertSku", upsert("sem-2", { title: "Mug", currency: "EUR", priceMinor: 1299, safetyStock: 3 }));
      const after = await call(c.inventory, "upsertSku", upsert("sem-2", { title: "ignored", updateMask: ["price_minor"] }));
      expect(after).to.deep.include({ title: "Mug", priceMinor: 0, safetyStock: 3 });
    });

    it("rejects an unknown update_mask path with INVALID_ARGUMENT naming update_mask, and changes nothing", async () => {
      await call(c.inventory, "upsertSku", upsert("sem-3", { title: "Mug", currency: "EUR", priceMinor: 5 }));
      const before = await call(c.inventory, "getSku", { skuId: "sem-3" });
      const e = await expectFailure(call(c.inventory, "upsertSku", upsert("sem-3", { priceMinor: 7, updateMask: ["price_minor", "colour"] })), GrpcStatus.INVALID_ARGUMENT);
      expect(decodeStatusDetails(e).badRequest?.fieldViolations.map((v) => v.field)).to.deep.equal(["update_mask"]);
      const after = await call(c.inventory, "getSku", { skuId: "sem-3" });
      expect(after.version).to.equal(before.version);
      expect(after.priceMinor).to.equal(5);
    });

    it("sets and removes one attribute key with an attributes.<key> mask and keeps the others", async () => {
      await call(c.inventory, "upsertSku", upsert("sem-4", { title: "Mug", currency: "EUR", attributes: { colour: "blue", size: "L" } }));
      const after = await call(c.inventory, "upsertSku", upsert("sem-4", { attributes: { material: "stoneware" }, updateMask: ["attributes.material", "attributes.size"] }));
      expect(after.attributes).to.deep.equal({ colour: "blue", material: "stoneware" });
    });

    it("refuses to create a SKU without a currency, naming currency, and does not create it", async () => {
      const e = await expectFailure(call(c.inventory, "upsertSku", upsert("sem-5", { title: "Mug" })), GrpcStatus.INVALID_ARGUMENT);
      expect(decodeStatusDetails(e).badRequest?.fieldViolations.map((v) => v.field)).to.deep.equal(["currency"]);
      await expectFailure(call(c.inventory, "getSku", { skuId: "sem-5" }), GrpcStatus.NOT_FOUND);
    });

    it("keeps an attribute named __proto__, and a change of only its value is a new version", async () => {
      const first = await call(c.inventory, "upsertSku", upsert("sem-6", { title: "Mug", currency: "EUR", attributes: Object.fromEntries([["__proto__", "a"]]) }));
      let sku = await call(c.inventory, "getSku", { skuId: "sem-6" });
      expect(Object.entries(sku.attributes)).to.deep.equal([["__proto__", "a"]]);
      await call(c.inventory, "upsertSku", upsert("sem-6", { attributes: Object.fromEntries([["__proto__", "b"]]) }));
      sku = await call(c.inventory, "getSku", { skuId: "sem-6" });
      expect(Object.entries(sku.attributes)).to.deep.equal([["__proto__", "b"]]);
      expect(sku.version).to.equal(first.version + 1);
      // qmctl sends and shows it too.
      await qmctl("sku", "upsert", "sem-6", "--attr", "__proto__=c");
      const { stdout } = await qmctl("sku", "get", "sem-6");
      expect(stdout).to.match(/attributes +__proto__=c\n/);
      const json = JSON.parse((await qmctl("--json", "sku", "get", "sem-6")).stdout) as { attributes: Record<string, string> };
      expect(Object.entries(json.attributes)).to.deep.equal([["__proto__", "c"]]);
    });

    it("qmctl sku upsert with only --title and --currency keeps price, threshold and backorder, and renames a backorder SKU holding pre-orders", async () => {
      const json = (...args: string[]) => qmctl("--json", ...args);
      await json("sku", "upsert", "SEM-Q", "--title", "Blue mug", "--currency", "EUR", "--price-minor", "1299", "--low-stock-threshold", "5", "--backorder");
      await json("reserve", "--sku", "SEM-Q", "--id", "pre-1", "--qty", "10");
      const { stdout } = await json("sku", "upsert", "SEM-Q", "--title", "Blue mug v2", "--currency", "EUR");
      const sku = Sku.fromJSON(JSON.parse(stdout));
      expect(sku).to.deep.include({ title: "Blue mug v2", priceMinor: 1299, lowStockThreshold: 5, allowBackorder: true, reserved: 10 });
    });
  });

  describe("backorder SKUs before any stock", () => {
    it("reserves 10 units of a backorder SKU that has no location, at the default location or at the one named", async () => {
      await call(c.inventory, "upsertSku", upsert("BO-1", { title: "Pre-order", currency: "EUR", allowBackorder: true }));
      const r = await call(c.inventory, "reserve", { reservationId: "pre-1", skuId: "BO-1", quantity: 10, locationId: "", ttl: undefined });
      expect(r).to.deep.include({ state: ReservationState.RESERVATION_STATE_RESERVED, locationId: "default", quantity: 10 });
      const named = await call(c.inventory, "reserve", { reservationId: "pre-2", skuId: "BO-1", quantity: 5, locationId: "WH1", ttl: undefined });
      expect(named.locationId).to.equal("WH1");
      const sku = await call(c.inventory, "getSku", { skuId: "BO-1" });
      expect([sku.onHand, sku.reserved, sku.available]).to.deep.equal([0, 15, 0]);
    });

    it("takes an order for a backorder SKU with no stock, and ships it once stock has arrived", async () => {
      await call(c.inventory, "upsertSku", upsert("BO-2", { title: "Pre-order", currency: "EUR", allowBackorder: true }));
      const o = await call(c.order, "createOrder", { orderId: "bo-ord", customerId: "c", lines: [{ skuId: "BO-2", quantity: 3 }], paymentTimeout: undefined });
      expect(o.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
      await call(c.order, "confirmPayment", { orderId: "bo-ord", paymentReference: "psp-1" });
      const early = await expectFailure(call(c.order, "createShipment", { orderId: "bo-ord", shipmentId: "s1", carrier: "ups", trackingNumber: "", lines: [] }), GrpcStatus.FAILED_PRECONDITION);
      expect(decodeStatusDetails(early).errorInfo?.reason).to.equal("INSUFFICIENT_STOCK");
      await receive("BO-2", o.lines[0]?.locationId ?? "", 3);
      const shipped = await call(c.order, "createShipment", { orderId: "bo-ord", shipmentId: "s2", carrier: "ups", trackingNumber: "", lines: [] });
      expect(shipped.state).to.equal(OrderState.ORDER_STATE_SHIPPED);
      const sku = await call(c.inventory, "getSku", { skuId: "BO-2" });
      expect([sku.onHand, sku.reserved, sku.committed]).to.deep.equal([0, 0, 0]);
    });
  });

  describe("reused ids with other content", () => {
    it("rejects Reserve with the same id but another TTL with ALREADY_EXISTS, and accepts the same TTL again", async () => {
      await call(c.inventory, "upsertSku", upsert("sem-r", { title: "Mug", currency: "EUR" }));
      await receive("sem-r", "WH1", 10);
      const req = { reservationId: "r-ttl", skuId: "sem-r", quantity: 1, locationId: "", ttl: { seconds: 600, nanos: 0 } };
      await call(c.inventory, "reserve", req);
      await call(c.inventory, "reserve", req);
      await expectFailure(call(c.inventory, "reserve", { ...req, ttl: { seconds: 60, nanos: 0 } }), GrpcStatus.ALREADY_EXISTS);
    });

    it("rejects CreateOrder with the same lines but another payment_timeout, CreateShipment with another carrier, and a tracking event with another status", async () => {
      await call(c.inventory, "upsertSku", upsert("sem-o", { title: "Mug", currency: "EUR" }));
      await receive("sem-o", "WH1", 10);
      const create = { orderId: "sem-ord", customerId: "c", lines: [{ skuId: "sem-o", quantity: 1 }], paymentTimeout: { seconds: 1800, nanos: 0 } };
      await call(c.order, "createOrder", create);
      await call(c.order, "createOrder", create);
      await expectFailure(call(c.order, "createOrder", { ...create, paymentTimeout: { seconds: 600, nanos: 0 } }), GrpcStatus.ALREADY_EXISTS);
      await call(c.order, "confirmPayment", { orderId: "sem-ord", paymentReference: "psp-1" });
      const ship = { orderId: "sem-ord", shipmentId: "s1", carrier: "ups", trackingNumber: "1Z9", lines: [] };
      await call(c.order, "createShipment", ship);
      await call(c.order, "createShipment", ship);
      await expectFailure(call(c.order, "createShipment", { ...ship, carrier: "dhl" }), GrpcStatus.ALREADY_EXISTS);
      await expectFailure(call(c.order, "createShipment", { ...ship, trackingNumber: "1Z0" }), GrpcStatus.ALREADY_EXISTS);
      const occurredAt = new Date("2026-01-01T10:00:00Z");
      const track = { orderId: "sem-ord", shipmentId: "s1", eventId: "e1", status: TrackingStatus.TRACKING_STATUS_IN_TRANSIT, location: "", description: "", occurredAt };
      await call(c.order, "recordTrackingEvent", track);
      await expectFailure(call(c.order, "recordTrackingEvent", { ...track, status: TrackingStatus.TRACKING_STATUS_DELIVERED, occurredAt: new Date("2026-01-02T10:00:00Z") }), GrpcStatus.ALREADY_EXISTS);
      const o = await call(c.order, "getOrder", { orderId: "sem-ord" });
      expect(o.state).to.equal(OrderState.ORDER_STATE_SHIPPED);
    });

    it("shows no payment_deadline on a REJECTED order", async () => {
      const o = await call(c.order, "createOrder", { orderId: "sem-rej", customerId: "c", lines: [{ skuId: "sem-missing", quantity: 1 }], paymentTimeout: undefined });
      expect(o.state).to.equal(OrderState.ORDER_STATE_REJECTED);
      expect(o.paymentDeadline).to.equal(undefined);
    });
  });

  it("answers GetReservation on an unknown SKU with NOT_FOUND for the SKU, metadata sku_id", async () => {
    const e = await expectFailure(call(c.inventory, "getReservation", { skuId: "NOPE", reservationId: "r1" }), GrpcStatus.NOT_FOUND);
    expect(e.details).to.contain("sku NOPE");
    expect(decodeStatusDetails(e).errorInfo?.metadata).to.deep.include({ sku_id: "NOPE" });
  });
});
