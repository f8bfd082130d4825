// OrderService against a real server process: the saga over SKU actors.

import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { type CreateOrderRequest, OrderState, TrackingStatus } from "../../src/gen/quartermaster/v1/order";
import { expectFailure, seedSku, sleep } from "../support/fixtures";
import { call, type Clients, createClients, decodeStatusDetails, type ServerProcess, startServer } from "../support/server_process";

describe("OrderService (integration)", function () {
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    server = await startServer({ env: { QM_TIMER_TICK_MS: "50" } });
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
  });

  const sku = (skuId: string, onHand: number): Promise<void> => seedSku(c, skuId, onHand);

  async function stock(skuId: string): Promise<[number, number, number, number]> {
    const s = await call(c.inventory, "getSku", { skuId });
    return [s.onHand, s.reserved, s.committed, s.available];
  }

  function order(orderId: string, lines: [string, number][], paymentTimeoutS?: number): CreateOrderRequest {
    return {
      orderId,
      customerId: "cust-1",
      lines: lines.map(([skuId, quantity]) => ({ skuId, quantity })),
      paymentTimeout: paymentTimeoutS === undefined ? undefined : { seconds: paymentTimeoutS, nanos: 0 },
    };
  }

  it("reserves every line and waits for payment", async () => {
    await sku("o-a", 10);
    await sku("o-b", 10);
    const o = await call(c.order, "createOrder", order("ord-1", [["o-a", 2], ["o-b", 3]]));
    expect(o.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    expect(o.lines.map((l) => [l.skuId, l.quantity, l.locationId])).to.deep.equal([
      ["o-a", 2, "wh-1"],
      ["o-b", 3, "wh-1"],
    ]);
    expect(o.lines[0]?.reservationId).to.not.equal("");
    expect(await stock("o-a")).to.deep.equal([10, 2, 0, 8]);
    expect(await stock("o-b")).to.deep.equal([10, 3, 0, 7]);
    // Idempotent on order_id.
    const again = await call(c.order, "createOrder", order("ord-1", [["o-a", 2], ["o-b", 3]]));
    expect(again.version).to.equal(o.version);
    expect(await stock("o-a")).to.deep.equal([10, 2, 0, 8]);
    await expectFailure(call(c.order, "createOrder", order("ord-1", [["o-a", 1]])), GrpcStatus.ALREADY_EXISTS);
  });

  it("rejects the whole order when one line cannot be reserved, and releases the others", async () => {
    await sku("r-a", 5);
    await sku("r-b", 1);
    const o = await call(c.order, "createOrder", order("ord-rej", [["r-a", 2], ["r-b", 2], ["r-missing", 1]]));
    expect(o.state).to.equal(OrderState.ORDER_STATE_REJECTED);
    expect(o.rejectionReasons.map((r) => [r.skuId, r.reason])).to.deep.equal([
      ["r-b", "INSUFFICIENT_STOCK"],
      ["r-missing", "SKU_NOT_FOUND"],
    ]);
    expect(await stock("r-a")).to.deep.equal([5, 0, 0, 5]);
    expect(await stock("r-b")).to.deep.equal([1, 0, 0, 1]);
    const got = await call(c.order, "getOrder", { orderId: "ord-rej" });
    expect(got.state).to.equal(OrderState.ORDER_STATE_REJECTED);
  });

  it("runs the lifecycle: pay, split shipments, tracking out of order, delivery, returns with restock", async () => {
    await sku("l-a", 10);
    await sku("l-b", 10);
    await call(c.order, "createOrder", order("ord-life", [["l-a", 4], ["l-b", 1]]));
    const paid = await call(c.order, "confirmPayment", { orderId: "ord-life", paymentReference: "psp-123" });
    expect(paid.state).to.equal(OrderState.ORDER_STATE_PAID);
    expect(paid.paymentReference).to.equal("psp-123");
    expect(await stock("l-a")).to.deep.equal([10, 0, 4, 6]);
    const res = await call(c.inventory, "getReservation", { reservationId: "x", skuId: "l-a" }).catch((e: ServiceError) => e);
    expect((res as ServiceError).code).to.equal(GrpcStatus.NOT_FOUND);

    const s1 = await call(c.order, "createShipment", {
      orderId: "ord-life",
      shipmentId: "shp-1",
      lines: [{ skuId: "l-a", quantity: 3 }],
      carrier: "ups",
      trackingNumber: "1Z1",
    });
    expect(s1.state).to.equal(OrderState.ORDER_STATE_PARTIALLY_SHIPPED);
    expect(await stock("l-a")).to.deep.equal([7, 0, 1, 6]);
    const s2 = await call(c.order, "createShipment", { orderId: "ord-life", shipmentId: "shp-2", lines: [], carrier: "dhl", trackingNumber: "" });
    expect(s2.state).to.equal(OrderState.ORDER_STATE_SHIPPED);
    expect(s2.shipments[1]?.lines).to.deep.equal([
      { skuId: "l-a", quantity: 1 },
      { skuId: "l-b", quantity: 1 },
    ]);
    expect(await stock("l-a")).to.deep.equal([6, 0, 0, 6]);
    expect(await stock("l-b")).to.deep.equal([9, 0, 0, 9]);
    // Shipping again with the same id changes nothing.
    const s2again = await call(c.order, "createShipment", { orderId: "ord-life", shipmentId: "shp-2", lines: [], carrier: "dhl", trackingNumber: "" });
    expect(s2again.version).to.equal(s2.version);

    const t0 = Date.now();
    const track = (shipmentId: string, eventId: string, status: TrackingStatus, offsetMs: number) =>
      call(c.order, "recordTrackingEvent", {
        orderId: "ord-life",
        shipmentId,
        eventId,
        status,
        location: "hub",
        description: "",
        occurredAt: new Date(t0 + offsetMs),
      });
    await track("shp-1", "e-2", TrackingStatus.TRACKING_STATUS_DELIVERED, 2000);
    // An older event arriving late does not undo the delivery; a duplicate is ignored.
    const late = await track("shp-1", "e-1", TrackingStatus.TRACKING_STATUS_IN_TRANSIT, 1000);
    const dup = await track("shp-1", "e-1", TrackingStatus.TRACKING_STATUS_IN_TRANSIT, 1000);
    expect(dup.version).to.equal(late.version);
    expect(late.shipments[0]?.events.map((e) => e.eventId)).to.deep.equal(["e-1", "e-2"]);
    expect(late.shipments[0]?.status).to.equal(TrackingStatus.TRACKING_STATUS_DELIVERED);
    expect(late.state).to.equal(OrderState.ORDER_STATE_SHIPPED);
    const delivered = await track("shp-2", "e-3", TrackingStatus.TRACKING_STATUS_DELIVERED, 3000);
    expect(delivered.state).to.equal(OrderState.ORDER_STATE_DELIVERED);

    await expectFailure(
      call(c.order, "returnItems", { orderId: "ord-life", returnId: "ret-0", lines: [{ skuId: "l-b", quantity: 2 }], restock: true }),
      GrpcStatus.FAILED_PRECONDITION,
    );
    const r1 = await call(c.order, "returnItems", { orderId: "ord-life", returnId: "ret-1", lines: [{ skuId: "l-a", quantity: 4 }], restock: true });
    expect(r1.state).to.equal(OrderState.ORDER_STATE_DELIVERED);
    expect(await stock("l-a")).to.deep.equal([10, 0, 0, 10]);
    const r2 = await call(c.order, "returnItems", { orderId: "ord-life", returnId: "ret-2", lines: [{ skuId: "l-b", quantity: 1 }], restock: false });
    expect(r2.state).to.equal(OrderState.ORDER_STATE_RETURNED);
    expect(await stock("l-b")).to.deep.equal([9, 0, 0, 9]);
    // A retried return does not restock twice.
    await call(c.order, "returnItems", { orderId: "ord-life", returnId: "ret-1", lines: [{ skuId: "l-a", quantity: 4 }], restock: true });
    expect(await stock("l-a")).to.deep.equal([10, 0, 0, 10]);
  });

  it("refuses illegal transitions with FAILED_PRECONDITION naming the current state", async () => {
    await sku("ill-a", 5);
    await call(c.order, "createOrder", order("ord-ill", [["ill-a", 1]]));
    const ship = await expectFailure(
      call(c.order, "createShipment", { orderId: "ord-ill", shipmentId: "s", lines: [], carrier: "ups", trackingNumber: "" }),
      GrpcStatus.FAILED_PRECONDITION,
    );
    expect(ship.details).to.contain("AWAITING_PAYMENT");
    expect(decodeStatusDetails(ship).errorInfo?.metadata.state).to.equal("AWAITING_PAYMENT");
    const cancelled = await call(c.order, "cancelOrder", { orderId: "ord-ill", reason: "changed mind" });
    expect(cancelled.state).to.equal(OrderState.ORDER_STATE_CANCELLED);
    expect(cancelled.cancelReason).to.equal("changed mind");
    expect(await stock("ill-a")).to.deep.equal([5, 0, 0, 5]);
    const pay = await expectFailure(call(c.order, "confirmPayment", { orderId: "ord-ill", paymentReference: "p" }), GrpcStatus.FAILED_PRECONDITION);
    expect(pay.details).to.contain("CANCELLED");
  });

  it("cancels a paid order before shipment and un-commits its stock", async () => {
    await sku("cp-a", 5);
    await call(c.order, "createOrder", order("ord-cp", [["cp-a", 2]]));
    await call(c.order, "confirmPayment", { orderId: "ord-cp", paymentReference: "p1" });
    expect(await stock("cp-a")).to.deep.equal([5, 0, 2, 3]);
    const o = await call(c.order, "cancelOrder", { orderId: "ord-cp", reason: "" });
    expect(o.state).to.equal(OrderState.ORDER_STATE_CANCELLED);
    expect(await stock("cp-a")).to.deep.equal([5, 0, 0, 5]);
  });

  it("answers NOT_FOUND for unknown orders and shipments", async () => {
    await expectFailure(call(c.order, "getOrder", { orderId: "no-such" }), GrpcStatus.NOT_FOUND);
    await expectFailure(call(c.order, "confirmPayment", { orderId: "no-such", paymentReference: "p" }), GrpcStatus.NOT_FOUND);
    await sku("nf-a", 2);
    await call(c.order, "createOrder", order("ord-nf", [["nf-a", 1]]));
    await call(c.order, "confirmPayment", { orderId: "ord-nf", paymentReference: "p" });
    await expectFailure(
      call(c.order, "recordTrackingEvent", {
        orderId: "ord-nf",
        shipmentId: "ghost",
        eventId: "e",
        status: TrackingStatus.TRACKING_STATUS_IN_TRANSIT,
        location: "",
        description: "",
        occurredAt: new Date(),
      }),
      GrpcStatus.NOT_FOUND,
    );
  });

  it("expires an unpaid order at its payment timeout and releases its stock by itself", async () => {
    await sku("ex-a", 3);
    const o = await call(c.order, "createOrder", order("ord-exp", [["ex-a", 3]], 1));
    expect(o.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    expect(await stock("ex-a")).to.deep.equal([3, 3, 0, 0]);
    // Poll the SKU, not the order: the order must expire without being asked,
    // and its holds outlive the deadline by the grace period (5 min), so only
    // the order's own expiry can free the units this soon.
    const deadline = Date.now() + 5000;
    while ((await stock("ex-a"))[1] !== 0 && Date.now() < deadline) await sleep(100);
    expect(await stock("ex-a")).to.deep.equal([3, 0, 0, 3]);
    const got = await call(c.order, "getOrder", { orderId: "ord-exp" });
    expect(got.state).to.equal(OrderState.ORDER_STATE_EXPIRED);
    const res = await call(c.inventory, "getSku", { skuId: "ex-a" });
    expect(res.reserved).to.equal(0);
    await expectFailure(call(c.order, "confirmPayment", { orderId: "ord-exp", paymentReference: "late" }), GrpcStatus.FAILED_PRECONDITION);
  });

  it("keeps a reservation made for an order out of reach of direct commit and release calls", async () => {
    await sku("own-a", 2);
    const o = await call(c.order, "createOrder", order("ord-own", [["own-a", 1]]));
    const reservationId = o.lines[0]?.reservationId ?? "";
    const e = await expectFailure(call(c.inventory, "releaseReservation", { reservationId, skuId: "own-a" }), GrpcStatus.INVALID_ARGUMENT);
    expect(decodeStatusDetails(e).badRequest?.fieldViolations[0]?.field).to.equal("reservation_id");
    expect(await stock("own-a")).to.deep.equal([2, 1, 0, 1]);
  });
});
