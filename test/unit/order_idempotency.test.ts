// Reused order idempotency keys: the same id with other content is ALREADY_EXISTS,
// the same content is a retry that changes nothing. Also what a rejected order shows.

import { expect } from "chai";
import {
  applyOrderEvent,
  decidePay,
  decidePlace,
  decideShip,
  decideTrack,
  newOrderState,
  type OrderEvent,
  type OrderState,
  type TrackCommand,
  viewOrder,
} from "../../src/domain/order";
import { qmErrorOf } from "../support/qm_error";

const T0 = 1_700_000_000_000;
const PAY_MS = 30 * 60_000;
const LINES = [{ skuId: "sku-a", quantity: 3 }];

function apply(state: OrderState, events: readonly OrderEvent[]): void {
  for (const e of events) applyOrderEvent(state, e);
}

function placed(): OrderState {
  const state = newOrderState("o1");
  apply(state, decidePlace(state, { customerId: "c1", lines: LINES, paymentTimeoutMs: PAY_MS, reservationGraceMs: 0 }, T0));
  return state;
}

function shipped(): OrderState {
  const state = placed();
  apply(state, [{ t: "reserved", locations: ["wh-1"], atMs: T0 + 1 }]);
  apply(state, decidePay(state, "pay-1", T0 + 2));
  apply(state, [{ t: "paid", atMs: T0 + 3 }]);
  apply(state, decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "trk-1", lines: [] }, T0 + 4));
  apply(state, [{ t: "shipped", shipmentId: "s1", atMs: T0 + 5 }]);
  return state;
}

describe("order idempotency keys", () => {
  it("answers CreateOrder again with the same lines and payment_timeout with no events, even minutes later", () => {
    const state = placed();
    expect(decidePlace(state, { customerId: "c1", lines: LINES, paymentTimeoutMs: PAY_MS, reservationGraceMs: 0 }, T0 + 300_000)).to.deep.equal([]);
  });

  it("rejects CreateOrder with the same lines but another payment_timeout with ALREADY_EXISTS", () => {
    const state = placed();
    const error = qmErrorOf(() => decidePlace(state, { customerId: "c1", lines: LINES, paymentTimeoutMs: PAY_MS + 1000, reservationGraceMs: 0 }, T0));
    expect(error.code).to.equal("ALREADY_EXISTS");
    expect(error.metadata).to.deep.equal({ reason: "IDEMPOTENCY_KEY_REUSED" });
  });

  it("rejects CreateShipment with the same id but another carrier or tracking number with ALREADY_EXISTS, and accepts the same again", () => {
    const state = shipped();
    for (const cmd of [
      { shipmentId: "s1", carrier: "UPS", trackingNumber: "trk-1", lines: [] },
      { shipmentId: "s1", carrier: "DHL", trackingNumber: "trk-2", lines: [] },
    ]) {
      expect(qmErrorOf(() => decideShip(state, cmd, T0 + 10)).code, JSON.stringify(cmd)).to.equal("ALREADY_EXISTS");
    }
    expect(decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "trk-1", lines: [] }, T0 + 10)).to.deep.equal([]);
    expect(decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "trk-1", lines: LINES }, T0 + 10)).to.deep.equal([]);
  });

  it("rejects RecordTrackingEvent with the same event_id but another status, time, location or description with ALREADY_EXISTS", () => {
    const state = shipped();
    const first: TrackCommand = { shipmentId: "s1", eventId: "e1", status: "IN_TRANSIT", location: "Berlin", description: "hub", occurredAtMs: T0 + 100 };
    apply(state, decideTrack(state, first, T0 + 200));
    expect(decideTrack(state, first, T0 + 300), "the same event again").to.deep.equal([]);
    const changes: Partial<TrackCommand>[] = [{ status: "DELIVERED" }, { occurredAtMs: T0 + 101 }, { location: "Paris" }, { description: "other" }];
    for (const change of changes) {
      const error = qmErrorOf(() => decideTrack(state, { ...first, ...change }, T0 + 300));
      expect(error.code, JSON.stringify(change)).to.equal("ALREADY_EXISTS");
    }
    expect(viewOrder(state).shipments[0]?.status).to.equal("IN_TRANSIT");
  });
});

describe("order view", () => {
  it("shows no payment deadline for a REJECTED order, and the deadline for one awaiting payment", () => {
    const rejected = placed();
    apply(rejected, [{ t: "reserveFailed", rejections: [{ skuId: "sku-a", reason: "INSUFFICIENT_STOCK", message: "" }], atMs: T0 + 1 }]);
    apply(rejected, [{ t: "released", atMs: T0 + 2 }]);
    expect(viewOrder(rejected).state).to.equal("REJECTED");
    expect(viewOrder(rejected).paymentDeadlineMs).to.equal(0);
    const awaiting = placed();
    apply(awaiting, [{ t: "reserved", locations: ["wh-1"], atMs: T0 + 1 }]);
    expect(viewOrder(awaiting).paymentDeadlineMs).to.equal(T0 + PAY_MS);
  });
});
