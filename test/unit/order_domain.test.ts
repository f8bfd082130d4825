import { expect } from "chai";
import { ORDER_RESERVATION_GRACE_MS, PAYMENT_TIMEOUT_MS_DEFAULT, RETURNS_PER_ORDER_MAX, SHIPMENTS_PER_ORDER_MAX, TRACKING_EVENTS_PER_SHIPMENT_MAX } from "../../src/limits";
import {
  applyOrderEvent,
  decideCancel,
  decideExpire,
  decidePay,
  decidePlace,
  decideReturn,
  decideShip,
  decideTrack,
  type LineQuantity,
  lineReservationId,
  newOrderState,
  type OrderEvent,
  type OrderState,
  type OrderStatus,
  orderWakeAtMs,
  type TrackingStatus,
  viewOrder,
} from "../../src/domain/order";
import { qmErrorOf } from "../support/qm_error";

const T0 = 1_700_000_000_000;
const PAY_MS = PAYMENT_TIMEOUT_MS_DEFAULT;
const GRACE_MS = ORDER_RESERVATION_GRACE_MS;
const DEADLINE = T0 + PAY_MS;
const LINES: readonly LineQuantity[] = [
  { skuId: "sku-a", quantity: 3 },
  { skuId: "sku-b", quantity: 2 },
];

/** Applies decided events to the state, as the order actor does, and hands them back. */
function apply(state: OrderState, events: readonly OrderEvent[]): OrderEvent[] {
  for (const e of events) applyOrderEvent(state, e);
  return [...events];
}


// ---- Building orders in every status, through the events the actor would emit ----------

function placed(lines: readonly LineQuantity[] = LINES, orderId = "o1"): OrderState {
  const state = newOrderState(orderId);
  apply(state, decidePlace(state, { customerId: "c1", lines, paymentTimeoutMs: PAY_MS, reservationGraceMs: GRACE_MS }, T0));
  return state;
}

function awaitingPayment(lines: readonly LineQuantity[] = LINES): OrderState {
  const state = placed(lines);
  apply(state, [{ t: "reserved", locations: lines.map((_, i) => `wh-${i}`), atMs: T0 + 1 }]);
  return state;
}

function paid(lines: readonly LineQuantity[] = LINES): OrderState {
  const state = awaitingPayment(lines);
  apply(state, decidePay(state, "pay-1", T0 + 10));
  apply(state, [{ t: "paid", atMs: T0 + 11 }]);
  return state;
}

function ship(state: OrderState, shipmentId: string, lines: readonly LineQuantity[], atMs = T0 + 100): void {
  apply(state, decideShip(state, { shipmentId, carrier: "DHL", trackingNumber: `trk-${shipmentId}`, lines }, atMs));
  apply(state, [{ t: "shipped", shipmentId, atMs }]);
}

function track(state: OrderState, shipmentId: string, eventId: string, status: TrackingStatus, occurredAtMs: number, nowMs = T0 + 1000): OrderEvent[] {
  return apply(state, decideTrack(state, { shipmentId, eventId, status, location: "Berlin", description: status, occurredAtMs }, nowMs));
}

function released(state: OrderState, atMs: number): OrderState {
  apply(state, [{ t: "released", atMs }]);
  return state;
}

const BUILD: Readonly<Record<OrderStatus, () => OrderState>> = {
  RESERVING: () => placed(),
  AWAITING_PAYMENT: () => awaitingPayment(),
  REJECTED: () => {
    const state = placed();
    apply(state, [{ t: "reserveFailed", rejections: [{ skuId: "sku-b", reason: "INSUFFICIENT_STOCK", message: "2 requested, 1 available" }], atMs: T0 + 1 }]);
    return released(state, T0 + 2);
  },
  PAID: () => paid(),
  PARTIALLY_SHIPPED: () => {
    const state = paid();
    ship(state, "s1", [{ skuId: "sku-a", quantity: 1 }]);
    return state;
  },
  SHIPPED: () => {
    const state = paid();
    ship(state, "s1", []);
    return state;
  },
  DELIVERED: () => {
    const state = BUILD.SHIPPED();
    track(state, "s1", "ev-1", "DELIVERED", T0 + 500);
    return state;
  },
  CANCELLED: () => {
    const state = awaitingPayment();
    apply(state, decideCancel(state, "changed my mind", T0 + 20));
    return released(state, T0 + 21);
  },
  EXPIRED: () => {
    const state = awaitingPayment();
    apply(state, decideExpire(state, DEADLINE));
    return released(state, DEADLINE + 1);
  },
  RETURNED: () => {
    const state = BUILD.SHIPPED();
    apply(state, decideReturn(state, { returnId: "ret-1", lines: LINES, restock: true }, T0 + 2000));
    apply(state, [{ t: "returned", returnId: "ret-1", atMs: T0 + 2001 }]);
    return state;
  },
};
const ALL_STATUSES = Object.keys(BUILD) as OrderStatus[];

describe("order state machine", () => {
  it("builds an order in every status through events (the fixtures the other tests rely on)", () => {
    for (const status of ALL_STATUSES) {
      const state = BUILD[status]();
      expect(state.status, status).to.equal(status);
      expect(state.saga, status).to.deep.equal(status === "RESERVING" ? { kind: "reserve" } : null);
    }
  });

  describe("place and reserve", () => {
    it("place records RESERVING with a reserve step, deterministic reservation ids, the payment deadline and the hold's ttl", () => {
      const state = newOrderState("o1");
      const events = apply(state, decidePlace(state, { customerId: "c1", lines: LINES, paymentTimeoutMs: PAY_MS, reservationGraceMs: GRACE_MS }, T0));
      expect(events).to.deep.equal([
        {
          t: "placed",
          customerId: "c1",
          lines: [
            { skuId: "sku-a", quantity: 3, reservationId: "order/o1/0" },
            { skuId: "sku-b", quantity: 2, reservationId: "order/o1/1" },
          ],
          paymentDeadlineMs: DEADLINE,
          reservationTtlMs: PAY_MS + GRACE_MS,
          atMs: T0,
        },
      ]);
      expect(lineReservationId("o1", 1)).to.equal("order/o1/1");
      expect(state.status).to.equal("RESERVING");
      expect(state.saga).to.deep.equal({ kind: "reserve" });
      expect(state.version).to.equal(1);
      // The same order decided again from scratch names the same reservations.
      const again = newOrderState("o1");
      expect(decidePlace(again, { customerId: "c1", lines: LINES, paymentTimeoutMs: PAY_MS, reservationGraceMs: GRACE_MS }, T0)).to.deep.equal(events);
      // RESERVING is internal; a reply shows AWAITING_PAYMENT.
      expect(viewOrder(state).state).to.equal("AWAITING_PAYMENT");
    });

    it("reserved moves to AWAITING_PAYMENT with the locations, closes the step, and wakes at the payment deadline", () => {
      const state = placed();
      expect(orderWakeAtMs(state)).to.equal(T0);
      apply(state, [{ t: "reserved", locations: ["wh-1", "wh-2"], atMs: T0 + 1 }]);
      expect(state.status).to.equal("AWAITING_PAYMENT");
      expect(state.saga).to.equal(null);
      expect(state.lines.map((l) => l.locationId)).to.deep.equal(["wh-1", "wh-2"]);
      expect(orderWakeAtMs(state)).to.equal(DEADLINE);
    });

    it("reserveFailed opens a release step toward REJECTED; released makes it REJECTED with the rejections", () => {
      const state = placed();
      const rejections = [{ skuId: "sku-b", reason: "INSUFFICIENT_STOCK", message: "2 requested, 1 available" }];
      apply(state, [{ t: "reserveFailed", rejections, atMs: T0 + 1 }]);
      expect(state.saga).to.deep.equal({ kind: "release", outcome: "REJECTED" });
      expect(state.status).to.equal("RESERVING");
      expect(orderWakeAtMs(state)).to.equal(T0 + 1);
      released(state, T0 + 2);
      expect(state.status).to.equal("REJECTED");
      expect(state.saga).to.equal(null);
      const view = viewOrder(state);
      expect(view.state).to.equal("REJECTED");
      expect(view.rejections).to.deep.equal(rejections);
      expect(orderWakeAtMs(state)).to.equal(null);
    });

    it("answers a place with the same content with no events, and with other content with ALREADY_EXISTS", () => {
      const state = awaitingPayment();
      const version = state.version;
      // The reservation grace is the server's, not the caller's: it may differ on a retry.
      expect(decidePlace(state, { customerId: "c1", lines: LINES, paymentTimeoutMs: PAY_MS, reservationGraceMs: 0 }, T0 + 5)).to.deep.equal([]);
      for (const cmd of [
        { customerId: "c2", lines: LINES },
        { customerId: "c1", lines: [{ skuId: "sku-a", quantity: 4 }, { skuId: "sku-b", quantity: 2 }] },
        { customerId: "c1", lines: [{ skuId: "sku-a", quantity: 3 }] },
        { customerId: "c1", lines: [{ skuId: "sku-b", quantity: 2 }, { skuId: "sku-a", quantity: 3 }] },
      ]) {
        const error = qmErrorOf(() => decidePlace(state, { ...cmd, paymentTimeoutMs: PAY_MS, reservationGraceMs: GRACE_MS }, T0 + 5));
        expect(error.code).to.equal("ALREADY_EXISTS");
        expect(error.metadata).to.deep.equal({ reason: "IDEMPOTENCY_KEY_REUSED" });
      }
      expect(state.version).to.equal(version);
    });

    it("answers NOT_FOUND for commands and views of an order that was never placed", () => {
      const state = newOrderState("ghost");
      for (const fn of [
        () => viewOrder(state),
        () => decidePay(state, "p", T0),
        () => decideCancel(state, "r", T0),
        () => decideShip(state, { shipmentId: "s", carrier: "c", trackingNumber: "t", lines: [] }, T0),
        () => decideTrack(state, { shipmentId: "s", eventId: "e", status: "IN_TRANSIT", location: "", description: "", occurredAtMs: T0 }, T0),
        () => decideReturn(state, { returnId: "r", lines: LINES, restock: false }, T0),
      ]) {
        const error = qmErrorOf(fn);
        expect(error.code).to.equal("NOT_FOUND");
        expect(error.metadata).to.deep.equal({ order_id: "ghost" });
      }
      expect(decideExpire(state, DEADLINE)).to.deep.equal([]);
      expect(orderWakeAtMs(state)).to.equal(null);
    });
  });

  describe("pay", () => {
    it("pay opens a commit step with the reference; paid makes the order PAID and stops the wake-ups", () => {
      const state = awaitingPayment();
      const events = apply(state, decidePay(state, "pay-1", T0 + 10));
      expect(events).to.deep.equal([{ t: "payStarted", paymentReference: "pay-1", atMs: T0 + 10 }]);
      expect(state.saga).to.deep.equal({ kind: "commit" });
      expect(state.status).to.equal("AWAITING_PAYMENT");
      expect(orderWakeAtMs(state)).to.equal(T0 + 10);
      apply(state, [{ t: "paid", atMs: T0 + 11 }]);
      expect(state.status).to.equal("PAID");
      expect(state.saga).to.equal(null);
      expect(viewOrder(state).paymentReference).to.equal("pay-1");
      expect(orderWakeAtMs(state)).to.equal(null);
    });

    it("pay one millisecond before the deadline pays; at the deadline it emits expireStarted instead", () => {
      expect(decidePay(awaitingPayment(), "pay-1", DEADLINE - 1)).to.deep.equal([{ t: "payStarted", paymentReference: "pay-1", atMs: DEADLINE - 1 }]);
      const state = awaitingPayment();
      const events = apply(state, decidePay(state, "pay-1", DEADLINE));
      expect(events).to.deep.equal([{ t: "expireStarted", atMs: DEADLINE }]);
      expect(state.saga).to.deep.equal({ kind: "release", outcome: "EXPIRED" });
      released(state, DEADLINE + 1);
      expect(state.status).to.equal("EXPIRED");
    });

    it("answers the same payment reference again with no events, while the commit runs and once PAID", () => {
      const state = awaitingPayment();
      apply(state, decidePay(state, "pay-1", T0 + 10));
      expect(decidePay(state, "pay-1", T0 + 11)).to.deep.equal([]);
      apply(state, [{ t: "paid", atMs: T0 + 12 }]);
      expect(decidePay(state, "pay-1", T0 + 13)).to.deep.equal([]);
      // Even past the deadline: a paid order does not expire.
      expect(decidePay(state, "pay-1", DEADLINE + 1)).to.deep.equal([]);
      expect(state.version).to.equal(4);
    });

    it("refuses another payment reference on a PAID order with FAILED_PRECONDITION ALREADY_PAID", () => {
      const state = paid();
      const error = qmErrorOf(() => decidePay(state, "pay-2", T0 + 20));
      expect(error.code).to.equal("FAILED_PRECONDITION");
      expect(error.metadata).to.deep.equal({ reason: "ALREADY_PAID", state: "PAID" });
      expect(state.paymentReference).to.equal("pay-1");
    });

    it("payFailed opens a release step toward EXPIRED and keeps the failure for the reply", () => {
      const state = awaitingPayment();
      apply(state, decidePay(state, "pay-1", T0 + 10));
      const failure = { skuId: "sku-a", reason: "RESERVATION_ENDED", message: "reservation is EXPIRED" };
      apply(state, [{ t: "payFailed", failure, atMs: T0 + 11 }]);
      expect(state.saga).to.deep.equal({ kind: "release", outcome: "EXPIRED" });
      expect(state.failure).to.deep.equal(failure);
      released(state, T0 + 12);
      expect(state.status).to.equal("EXPIRED");
      expect(state.failure).to.deep.equal(failure);
    });
  });

  describe("cancel and expire", () => {
    for (const from of ["AWAITING_PAYMENT", "PAID"] as const) {
      it(`cancel from ${from} opens a release step; released makes it CANCELLED with the reason`, () => {
        const state = BUILD[from]();
        const events = apply(state, decideCancel(state, "changed my mind", T0 + 50));
        expect(events).to.deep.equal([{ t: "cancelStarted", reason: "changed my mind", atMs: T0 + 50 }]);
        expect(state.saga).to.deep.equal({ kind: "release", outcome: "CANCELLED" });
        released(state, T0 + 51);
        expect(state.status).to.equal("CANCELLED");
        expect(viewOrder(state).cancelReason).to.equal("changed my mind");
        expect(decideCancel(state, "again", T0 + 52)).to.deep.equal([]);
      });
    }

    it("refuses to cancel once a shipment has gone out, with ILLEGAL_TRANSITION naming PARTIALLY_SHIPPED", () => {
      const state = BUILD.PARTIALLY_SHIPPED();
      const error = qmErrorOf(() => decideCancel(state, "too late", T0 + 200));
      expect(error.code).to.equal("ILLEGAL_TRANSITION");
      expect(error.metadata).to.deep.equal({ state: "PARTIALLY_SHIPPED", action: "cancel" });
    });

    it("expire fires only for an unpaid order at or after its deadline with no step open", () => {
      const state = awaitingPayment();
      expect(decideExpire(state, DEADLINE - 1)).to.deep.equal([]);
      expect(decideExpire(state, DEADLINE)).to.deep.equal([{ t: "expireStarted", atMs: DEADLINE }]);
      apply(state, decidePay(state, "pay-1", DEADLINE - 1));
      // The commit step is open: the timer waits for it.
      expect(decideExpire(state, DEADLINE + 1)).to.deep.equal([]);
    });
  });

  describe("the transition matrix (written out here, not read from the table under test)", () => {
    // Each column is one concrete command. `lines` is computed from the order
    // only to name what is there to ship or return; the outcome is not.
    type Column = "pay" | "payRetry" | "cancel" | "expire" | "shipAll" | "shipPart" | "trackDelivered" | "trackInTransit" | "returnAll" | "returnPart";
    const left = (s: OrderState, of: (l: OrderState["lines"][number]) => number): LineQuantity[] => {
      const lines = s.lines.filter((l) => of(l) > 0).map((l) => ({ skuId: l.skuId, quantity: of(l) }));
      return lines.length > 0 ? lines : [{ skuId: "sku-a", quantity: 1 }];
    };
    const COMMAND: Readonly<Record<Column, (s: OrderState) => OrderEvent[]>> = {
      pay: (s) => decidePay(s, "pay-new", T0 + 5000),
      payRetry: (s) => decidePay(s, "pay-1", T0 + 5000),
      cancel: (s) => decideCancel(s, "why not", T0 + 5000),
      expire: (s) => decideExpire(s, DEADLINE + 1),
      shipAll: (s) => decideShip(s, { shipmentId: "s-new", carrier: "UPS", trackingNumber: "t", lines: [] }, T0 + 5000),
      shipPart: (s) => decideShip(s, { shipmentId: "s-new", carrier: "UPS", trackingNumber: "t", lines: [{ skuId: "sku-a", quantity: 1 }] }, T0 + 5000),
      trackDelivered: (s) => decideTrack(s, { shipmentId: "s1", eventId: "ev-new", status: "DELIVERED", location: "", description: "", occurredAtMs: T0 + 4000 }, T0 + 5000),
      trackInTransit: (s) => decideTrack(s, { shipmentId: "s1", eventId: "ev-new", status: "IN_TRANSIT", location: "", description: "", occurredAtMs: T0 + 4000 }, T0 + 5000),
      returnAll: (s) => decideReturn(s, { returnId: "ret-new", lines: left(s, (l) => l.shipped - l.returned), restock: false }, T0 + 5000),
      returnPart: (s) => decideReturn(s, { returnId: "ret-new", lines: [{ skuId: "sku-a", quantity: 1 }], restock: false }, T0 + 5000),
    };
    /** A status: legal, and the order ends there once its saga step (if any) succeeds. */
    type Outcome =
      | OrderStatus
      | "ILLEGAL" // ILLEGAL_TRANSITION naming the status and the action, order unchanged
      | "NOOP" // a retry or a timer with nothing to do: no events
      | "NO_SHIPMENT" // NOT_FOUND: no completed shipment s1 exists in this status
      | "ALREADY_PAID"; // FAILED_PRECONDITION: paid already, with another reference
    const I = "ILLEGAL";
    const N = "NOOP";
    const S = "NO_SHIPMENT";
    const P = "ALREADY_PAID";
    const EXPECTED: Readonly<Record<OrderStatus, Readonly<Record<Column, Outcome>>>> = {
      //                  pay                payRetry          cancel            expire          shipAll            shipPart                     trackDelivered                 trackInTransit                 returnAll                    returnPart
      RESERVING:         { pay: I,           payRetry: I,      cancel: I,        expire: N,      shipAll: I,        shipPart: I,                 trackDelivered: S,             trackInTransit: S,             returnAll: I,                returnPart: I },
      AWAITING_PAYMENT:  { pay: "PAID",      payRetry: "PAID", cancel: "CANCELLED", expire: "EXPIRED", shipAll: I,  shipPart: I,                 trackDelivered: S,             trackInTransit: S,             returnAll: I,                returnPart: I },
      REJECTED:          { pay: I,           payRetry: I,      cancel: I,        expire: N,      shipAll: I,        shipPart: I,                 trackDelivered: S,             trackInTransit: S,             returnAll: I,                returnPart: I },
      PAID:              { pay: P,           payRetry: N,      cancel: "CANCELLED", expire: N,   shipAll: "SHIPPED", shipPart: "PARTIALLY_SHIPPED", trackDelivered: S,           trackInTransit: S,             returnAll: I,                returnPart: I },
      PARTIALLY_SHIPPED: { pay: P,           payRetry: N,      cancel: I,        expire: N,      shipAll: "SHIPPED", shipPart: "PARTIALLY_SHIPPED", trackDelivered: "PARTIALLY_SHIPPED", trackInTransit: "PARTIALLY_SHIPPED", returnAll: "PARTIALLY_SHIPPED", returnPart: "PARTIALLY_SHIPPED" },
      SHIPPED:           { pay: P,           payRetry: N,      cancel: I,        expire: N,      shipAll: I,        shipPart: I,                 trackDelivered: "DELIVERED",   trackInTransit: "SHIPPED",     returnAll: "RETURNED",       returnPart: "SHIPPED" },
      DELIVERED:         { pay: P,           payRetry: N,      cancel: I,        expire: N,      shipAll: I,        shipPart: I,                 trackDelivered: "DELIVERED",   trackInTransit: "DELIVERED",   returnAll: "RETURNED",       returnPart: "DELIVERED" },
      CANCELLED:         { pay: I,           payRetry: I,      cancel: N,        expire: N,      shipAll: I,        shipPart: I,                 trackDelivered: S,             trackInTransit: S,             returnAll: I,                returnPart: I },
      EXPIRED:           { pay: I,           payRetry: I,      cancel: I,        expire: N,      shipAll: I,        shipPart: I,                 trackDelivered: S,             trackInTransit: S,             returnAll: I,                returnPart: I },
      RETURNED:          { pay: P,           payRetry: N,      cancel: I,        expire: N,      shipAll: I,        shipPart: I,                 trackDelivered: "RETURNED",    trackInTransit: "RETURNED",    returnAll: I,                returnPart: I },
    };
    const ACTION_NAME: Readonly<Record<Column, string>> = {
      pay: "pay",
      payRetry: "pay",
      cancel: "cancel",
      expire: "expire",
      shipAll: "ship",
      shipPart: "ship",
      trackDelivered: "track",
      trackInTransit: "track",
      returnAll: "return",
      returnPart: "return",
    };

    /** The event with which the order actor closes a step once every SKU said yes. */
    function stepSucceeded(state: OrderState, atMs: number): OrderEvent {
      const saga = state.saga;
      if (saga === null) throw new Error("no step is open");
      switch (saga.kind) {
        case "reserve":
          return { t: "reserved", locations: state.lines.map(() => "wh-1"), atMs };
        case "commit":
          return { t: "paid", atMs };
        case "release":
          return { t: "released", atMs };
        case "ship":
          return { t: "shipped", shipmentId: saga.shipmentId, atMs };
        case "unship":
          return { t: "unshipped", shipmentId: saga.shipmentId, atMs };
        case "restock":
          return { t: "returned", returnId: saga.returnId, atMs };
      }
    }

    it("covers every status the fixtures build", () => {
      expect(Object.keys(EXPECTED).sort()).to.deep.equal([...ALL_STATUSES].sort());
    });

    for (const status of ALL_STATUSES) {
      for (const column of Object.keys(COMMAND) as Column[]) {
        const outcome = EXPECTED[status][column];
        const action = ACTION_NAME[column];
        const title = `${column} on a ${status} order: ${outcome}`;
        it(title, () => {
          const state = BUILD[status]();
          const before = JSON.stringify(state);
          const unchanged = (): void => {
            expect(JSON.stringify(state), "the order is unchanged").to.equal(before);
          };
          switch (outcome) {
            case "ILLEGAL": {
              const error = qmErrorOf(() => COMMAND[column](state));
              expect(error.code).to.equal("ILLEGAL_TRANSITION");
              expect(error.metadata).to.deep.equal({ state: status, action });
              return unchanged();
            }
            case "NO_SHIPMENT": {
              const error = qmErrorOf(() => COMMAND[column](state));
              expect(error.code).to.equal("NOT_FOUND");
              expect(error.metadata).to.deep.equal({ shipment_id: "s1" });
              return unchanged();
            }
            case "ALREADY_PAID": {
              const error = qmErrorOf(() => COMMAND[column](state));
              expect(error.code).to.equal("FAILED_PRECONDITION");
              expect(error.metadata).to.deep.equal({ reason: "ALREADY_PAID", state: status });
              return unchanged();
            }
            case "NOOP":
              expect(COMMAND[column](state)).to.deep.equal([]);
              return unchanged();
            default: {
              const events = apply(state, COMMAND[column](state));
              expect(events, "one event starts the action").to.have.length(1);
              if (state.saga !== null) {
                // A saga step changes the status only once its SKUs answered.
                expect(state.status, "while the step is open").to.equal(status);
                applyOrderEvent(state, stepSucceeded(state, T0 + 6000));
              }
              expect(state.saga).to.equal(null);
              expect(state.status).to.equal(outcome);
            }
          }
        });
      }
    }
  });

  describe("ship", () => {
    it("ships part (PARTIALLY_SHIPPED), then with empty lines everything that remains (SHIPPED)", () => {
      const state = paid();
      const first = apply(state, decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "t1", lines: [{ skuId: "sku-a", quantity: 1 }] }, T0 + 100));
      expect(first).to.deep.equal([
        { t: "shipStarted", shipmentId: "s1", carrier: "DHL", trackingNumber: "t1", lines: [{ skuId: "sku-a", quantity: 1 }], atMs: T0 + 100 },
      ]);
      expect(state.saga).to.deep.equal({ kind: "ship", shipmentId: "s1" });
      // The shipment is not shown while its step runs.
      expect(viewOrder(state).shipments).to.deep.equal([]);
      apply(state, [{ t: "shipped", shipmentId: "s1", atMs: T0 + 101 }]);
      expect(state.status).to.equal("PARTIALLY_SHIPPED");
      expect(state.lines.map((l) => l.shipped)).to.deep.equal([1, 0]);

      const rest = apply(state, decideShip(state, { shipmentId: "s2", carrier: "DHL", trackingNumber: "t2", lines: [] }, T0 + 200));
      expect(rest[0]).to.deep.include({ t: "shipStarted", lines: [{ skuId: "sku-a", quantity: 2 }, { skuId: "sku-b", quantity: 2 }] });
      apply(state, [{ t: "shipped", shipmentId: "s2", atMs: T0 + 201 }]);
      expect(state.status).to.equal("SHIPPED");
      expect(state.lines.map((l) => l.shipped)).to.deep.equal([3, 2]);
      expect(viewOrder(state).shipments.map((s) => s.shipmentId)).to.deep.equal(["s1", "s2"]);
      expect(orderWakeAtMs(state)).to.equal(null);
    });

    it("refuses to ship more than is left with FAILED_PRECONDITION, a SKU not on the order or named twice with INVALID_ARGUMENT", () => {
      const state = BUILD.PARTIALLY_SHIPPED();
      const cmd = (lines: LineQuantity[]) => () => decideShip(state, { shipmentId: "s9", carrier: "DHL", trackingNumber: "t", lines }, T0 + 300);
      const tooMany = qmErrorOf(cmd([{ skuId: "sku-a", quantity: 3 }]));
      expect(tooMany.code).to.equal("FAILED_PRECONDITION");
      expect(tooMany.metadata).to.deep.equal({ sku_id: "sku-a", state: "PARTIALLY_SHIPPED" });
      const unknown = qmErrorOf(cmd([{ skuId: "sku-z", quantity: 1 }]));
      expect(unknown.code).to.equal("INVALID_ARGUMENT");
      expect(unknown.violations.map((v) => v.field)).to.deep.equal(["lines[0].sku_id"]);
      const twice = qmErrorOf(cmd([{ skuId: "sku-b", quantity: 1 }, { skuId: "sku-b", quantity: 1 }]));
      expect(twice.code).to.equal("INVALID_ARGUMENT");
      expect(twice.violations.map((v) => v.field)).to.deep.equal(["lines[1].sku_id"]);
      // Exactly what is left is fine.
      expect(cmd([{ skuId: "sku-a", quantity: 2 }, { skuId: "sku-b", quantity: 2 }])()).to.have.length(1);
    });

    it("answers a repeated shipment id with no events, and with other lines with ALREADY_EXISTS", () => {
      const state = BUILD.PARTIALLY_SHIPPED();
      const version = state.version;
      expect(decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "trk-s1", lines: [{ skuId: "sku-a", quantity: 1 }] }, T0 + 300)).to.deep.equal([]);
      expect(decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "trk-s1", lines: [] }, T0 + 300)).to.deep.equal([]);
      const error = qmErrorOf(() => decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "trk-s1", lines: [{ skuId: "sku-a", quantity: 2 }] }, T0 + 300));
      expect(error.code).to.equal("ALREADY_EXISTS");
      expect(state.version).to.equal(version);
    });

    it("shipFailed opens an unship step; unshipped removes the shipment and its id can ship again", () => {
      const state = paid();
      apply(state, decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "t1", lines: [] }, T0 + 100));
      const failure = { skuId: "sku-b", reason: "INSUFFICIENT_STOCK", message: "2 to ship, 1 on hand" };
      apply(state, [{ t: "shipFailed", shipmentId: "s1", failure, atMs: T0 + 101 }]);
      expect(state.saga).to.deep.equal({ kind: "unship", shipmentId: "s1" });
      expect(state.failure).to.deep.equal(failure);
      apply(state, [{ t: "unshipped", shipmentId: "s1", atMs: T0 + 102 }]);
      expect(state.shipments).to.deep.equal([]);
      expect(state.saga).to.equal(null);
      expect(state.status).to.equal("PAID");
      expect(state.lines.map((l) => l.shipped)).to.deep.equal([0, 0]);
      expect(state.failure).to.deep.equal(failure);
      expect(decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "t1", lines: [] }, T0 + 103)).to.have.length(1);
    });
  });

  describe("tracking", () => {
    it("ignores a tracking event id it has already recorded", () => {
      const state = BUILD.SHIPPED();
      expect(track(state, "s1", "ev-1", "IN_TRANSIT", T0 + 200)).to.have.length(1);
      expect(track(state, "s1", "ev-1", "IN_TRANSIT", T0 + 200, T0 + 2000)).to.deep.equal([]);
      // The same id with other content is not a retry.
      expect(qmErrorOf(() => track(state, "s1", "ev-1", "OUT_FOR_DELIVERY", T0 + 300)).code).to.equal("ALREADY_EXISTS");
      expect(viewOrder(state).shipments[0]?.events.map((e) => e.eventId)).to.deep.equal(["ev-1"]);
      expect(state.shipments[0]?.status).to.equal("IN_TRANSIT");
    });

    it("keeps events sorted by occurrence and takes the status of the latest, whatever the arrival order", () => {
      const state = BUILD.SHIPPED();
      track(state, "s1", "ev-3", "OUT_FOR_DELIVERY", T0 + 300);
      track(state, "s1", "ev-1", "IN_TRANSIT", T0 + 100);
      track(state, "s1", "ev-2", "EXCEPTION", T0 + 200);
      const shipment = viewOrder(state).shipments[0];
      expect(shipment?.events.map((e) => e.eventId)).to.deep.equal(["ev-1", "ev-2", "ev-3"]);
      expect(shipment?.status).to.equal("OUT_FOR_DELIVERY");
      expect(state.status).to.equal("SHIPPED");
    });

    it("treats DELIVERED as final even if an older IN_TRANSIT arrives later, and the order becomes DELIVERED", () => {
      const state = BUILD.SHIPPED();
      track(state, "s1", "ev-2", "DELIVERED", T0 + 500);
      expect(state.status).to.equal("DELIVERED");
      track(state, "s1", "ev-1", "IN_TRANSIT", T0 + 400);
      // Even one that claims to be newer.
      track(state, "s1", "ev-3", "IN_TRANSIT", T0 + 600);
      expect(state.shipments[0]?.status).to.equal("DELIVERED");
      expect(state.status).to.equal("DELIVERED");
      expect(viewOrder(state).shipments[0]?.events.map((e) => e.eventId)).to.deep.equal(["ev-1", "ev-2", "ev-3"]);
    });

    it("marks the order DELIVERED only when everything is shipped and every shipment delivered", () => {
      const state = paid();
      ship(state, "s1", [{ skuId: "sku-a", quantity: 3 }]);
      track(state, "s1", "a-1", "DELIVERED", T0 + 150);
      // Delivered, but sku-b has not shipped yet.
      expect(state.status).to.equal("PARTIALLY_SHIPPED");
      ship(state, "s2", [{ skuId: "sku-b", quantity: 1 }], T0 + 200);
      ship(state, "s3", [], T0 + 210);
      expect(state.status).to.equal("SHIPPED");
      track(state, "s2", "b-1", "DELIVERED", T0 + 300);
      expect(state.status).to.equal("SHIPPED");
      track(state, "s3", "c-1", "IN_TRANSIT", T0 + 300);
      expect(state.status).to.equal("SHIPPED");
      track(state, "s3", "c-2", "DELIVERED", T0 + 400);
      expect(state.status).to.equal("DELIVERED");
      expect(orderWakeAtMs(state)).to.equal(null);
    });

    it("answers NOT_FOUND for an unknown shipment and for one whose ship step is still open", () => {
      const state = BUILD.PARTIALLY_SHIPPED();
      expect(qmErrorOf(() => track(state, "nope", "e", "IN_TRANSIT", T0)).code).to.equal("NOT_FOUND");
      apply(state, decideShip(state, { shipmentId: "s2", carrier: "DHL", trackingNumber: "t2", lines: [] }, T0 + 300));
      expect(qmErrorOf(() => track(state, "s2", "e", "IN_TRANSIT", T0)).metadata).to.deep.equal({ shipment_id: "s2" });
    });

    it("records tracking on a RETURNED order without changing its status", () => {
      const state = BUILD.RETURNED();
      track(state, "s1", "late", "DELIVERED", T0 + 3000);
      expect(state.status).to.equal("RETURNED");
      expect(state.shipments[0]?.status).to.equal("DELIVERED");
    });
  });

  describe("returns", () => {
    it("refuses to return more than was shipped with FAILED_PRECONDITION", () => {
      const state = BUILD.PARTIALLY_SHIPPED();
      const error = qmErrorOf(() => decideReturn(state, { returnId: "ret-1", lines: [{ skuId: "sku-a", quantity: 2 }], restock: true }, T0 + 300));
      expect(error.code).to.equal("FAILED_PRECONDITION");
      expect(error.metadata).to.deep.equal({ sku_id: "sku-a", state: "PARTIALLY_SHIPPED" });
      const nothing = qmErrorOf(() => decideReturn(state, { returnId: "ret-1", lines: [{ skuId: "sku-b", quantity: 1 }], restock: true }, T0 + 300));
      expect(nothing.code).to.equal("FAILED_PRECONDITION");
    });

    it("a partial return opens a restock step and leaves a SHIPPED order SHIPPED; returning the rest makes it RETURNED", () => {
      const state = BUILD.SHIPPED();
      const events = apply(state, decideReturn(state, { returnId: "ret-1", lines: [{ skuId: "sku-a", quantity: 1 }], restock: true }, T0 + 300));
      expect(events).to.deep.equal([{ t: "returnStarted", returnId: "ret-1", lines: [{ skuId: "sku-a", quantity: 1 }], restock: true, atMs: T0 + 300 }]);
      expect(state.saga).to.deep.equal({ kind: "restock", returnId: "ret-1" });
      expect(orderWakeAtMs(state)).to.equal(T0 + 300);
      apply(state, [{ t: "returned", returnId: "ret-1", atMs: T0 + 301 }]);
      expect(state.status).to.equal("SHIPPED");
      expect(state.lines.map((l) => l.returned)).to.deep.equal([1, 0]);
      // Again more than remains to return is refused.
      expect(qmErrorOf(() => decideReturn(state, { returnId: "ret-2", lines: [{ skuId: "sku-a", quantity: 3 }], restock: false }, T0 + 302)).code).to.equal(
        "FAILED_PRECONDITION",
      );
      apply(state, decideReturn(state, { returnId: "ret-2", lines: [{ skuId: "sku-a", quantity: 2 }, { skuId: "sku-b", quantity: 2 }], restock: false }, T0 + 303));
      apply(state, [{ t: "returned", returnId: "ret-2", atMs: T0 + 304 }]);
      expect(state.status).to.equal("RETURNED");
      expect(viewOrder(state).returns.map((r) => r.returnId)).to.deep.equal(["ret-1", "ret-2"]);
      expect(orderWakeAtMs(state)).to.equal(null);
    });

    it("returning everything from DELIVERED makes the order RETURNED", () => {
      const state = BUILD.DELIVERED();
      apply(state, decideReturn(state, { returnId: "ret-1", lines: LINES, restock: false }, T0 + 3000));
      apply(state, [{ t: "returned", returnId: "ret-1", atMs: T0 + 3001 }]);
      expect(state.status).to.equal("RETURNED");
    });

    it("returning everything shipped so far from PARTIALLY_SHIPPED leaves it PARTIALLY_SHIPPED", () => {
      const state = BUILD.PARTIALLY_SHIPPED();
      apply(state, decideReturn(state, { returnId: "ret-1", lines: [{ skuId: "sku-a", quantity: 1 }], restock: true }, T0 + 300));
      apply(state, [{ t: "returned", returnId: "ret-1", atMs: T0 + 301 }]);
      expect(state.status).to.equal("PARTIALLY_SHIPPED");
    });

    it("answers a repeated return id with no events, and with other content with ALREADY_EXISTS", () => {
      const state = BUILD.RETURNED();
      expect(decideReturn(state, { returnId: "ret-1", lines: LINES, restock: true }, T0 + 3000)).to.deep.equal([]);
      expect(qmErrorOf(() => decideReturn(state, { returnId: "ret-1", lines: LINES, restock: false }, T0 + 3000)).code).to.equal("ALREADY_EXISTS");
    });
  });

  describe("wake-up time", () => {
    it("is the step's own time while a step is open, the deadline while awaiting payment, and null otherwise", () => {
      expect(orderWakeAtMs(newOrderState("o1"))).to.equal(null);
      expect(orderWakeAtMs(placed())).to.equal(T0);
      expect(orderWakeAtMs(awaitingPayment())).to.equal(DEADLINE);
      const cancelling = awaitingPayment();
      apply(cancelling, decideCancel(cancelling, "r", T0 + 77));
      expect(orderWakeAtMs(cancelling)).to.equal(T0 + 77);
      for (const status of ["PAID", "PARTIALLY_SHIPPED", "SHIPPED", "DELIVERED", "REJECTED", "CANCELLED", "EXPIRED", "RETURNED"] as const) {
        expect(orderWakeAtMs(BUILD[status]()), status).to.equal(null);
      }
    });
  });

  describe("an open step", () => {
    it("refuses to ship while a cancel's release step is open, instead of replacing it, with UNAVAILABLE", () => {
      // A release that stalled (a SKU overloaded) stays open until the next wake-up.
      const state = paid();
      apply(state, decideCancel(state, "changed my mind", T0 + 50));
      const error = qmErrorOf(() => decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "t1", lines: [] }, T0 + 60));
      expect(error.code).to.equal("UNAVAILABLE");
      expect(state.saga).to.deep.equal({ kind: "release", outcome: "CANCELLED" });
      expect(state.shipments).to.deep.equal([]);
    });

    it("refuses a second shipment while the first one's ship step is open", () => {
      const state = paid();
      apply(state, decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "t1", lines: [] }, T0 + 100));
      expect(qmErrorOf(() => decideShip(state, { shipmentId: "s2", carrier: "DHL", trackingNumber: "t2", lines: [] }, T0 + 101)).code).to.equal("UNAVAILABLE");
      expect(state.saga).to.deep.equal({ kind: "ship", shipmentId: "s1" });
      // The retry of s1 itself is answered (its step is resumed by the actor).
      expect(decideShip(state, { shipmentId: "s1", carrier: "DHL", trackingNumber: "t1", lines: [] }, T0 + 101)).to.deep.equal([]);
    });

    it("refuses pay while a cancel's release step is open, even past the deadline, and keeps the CANCELLED outcome", () => {
      const state = awaitingPayment();
      apply(state, decideCancel(state, "changed my mind", T0 + 50));
      expect(qmErrorOf(() => decidePay(state, "pay-1", T0 + 60)).code).to.equal("UNAVAILABLE");
      expect(qmErrorOf(() => decidePay(state, "pay-1", DEADLINE + 1)).code).to.equal("UNAVAILABLE");
      expect(state.saga).to.deep.equal({ kind: "release", outcome: "CANCELLED" });
    });

    it("refuses another payment reference while a commit step is open", () => {
      const state = awaitingPayment();
      apply(state, decidePay(state, "pay-1", T0 + 10));
      expect(qmErrorOf(() => decidePay(state, "pay-2", T0 + 11)).code).to.equal("UNAVAILABLE");
      expect(state.paymentReference).to.equal("pay-1");
    });

    it("answers a cancel retried while its own release step is open with no events, and refuses cancel during an expiry", () => {
      const state = awaitingPayment();
      apply(state, decideCancel(state, "changed my mind", T0 + 50));
      expect(decideCancel(state, "changed my mind", T0 + 51)).to.deep.equal([]);
      const expiring = awaitingPayment();
      apply(expiring, decideExpire(expiring, DEADLINE));
      expect(qmErrorOf(() => decideCancel(expiring, "too late", DEADLINE + 1)).code).to.equal("UNAVAILABLE");
      expect(expiring.saga).to.deep.equal({ kind: "release", outcome: "EXPIRED" });
    });

    it("refuses a second return while the first one's restock step is open", () => {
      const state = BUILD.SHIPPED();
      apply(state, decideReturn(state, { returnId: "ret-1", lines: [{ skuId: "sku-a", quantity: 1 }], restock: true }, T0 + 300));
      expect(qmErrorOf(() => decideReturn(state, { returnId: "ret-2", lines: [{ skuId: "sku-b", quantity: 1 }], restock: true }, T0 + 301)).code).to.equal(
        "UNAVAILABLE",
      );
      expect(state.saga).to.deep.equal({ kind: "restock", returnId: "ret-1" });
    });
  });

  describe("limits", () => {
    it(`refuses shipment ${SHIPMENTS_PER_ORDER_MAX + 1} with LIMIT_EXCEEDED but still answers retries of earlier ones`, () => {
      const state = paid([{ skuId: "sku-a", quantity: SHIPMENTS_PER_ORDER_MAX + 5 }]);
      for (let i = 0; i < SHIPMENTS_PER_ORDER_MAX; i++) ship(state, `s${i}`, [{ skuId: "sku-a", quantity: 1 }]);
      expect(state.status).to.equal("PARTIALLY_SHIPPED");
      const error = qmErrorOf(() => decideShip(state, { shipmentId: "one-more", carrier: "DHL", trackingNumber: "t", lines: [] }, T0 + 500));
      expect(error.code).to.equal("LIMIT_EXCEEDED");
      expect(decideShip(state, { shipmentId: "s0", carrier: "DHL", trackingNumber: "trk-s0", lines: [{ skuId: "sku-a", quantity: 1 }] }, T0 + 500)).to.deep.equal([]);
    });

    it(`refuses tracking event ${TRACKING_EVENTS_PER_SHIPMENT_MAX + 1} of a shipment with LIMIT_EXCEEDED but still answers repeats`, () => {
      const state = BUILD.SHIPPED();
      for (let i = 0; i < TRACKING_EVENTS_PER_SHIPMENT_MAX; i++) track(state, "s1", `ev-${i}`, "IN_TRANSIT", T0 + i);
      expect(state.shipments[0]?.events).to.have.length(TRACKING_EVENTS_PER_SHIPMENT_MAX);
      expect(qmErrorOf(() => track(state, "s1", "one-more", "DELIVERED", T0 + 10_000)).code).to.equal("LIMIT_EXCEEDED");
      expect(track(state, "s1", "ev-0", "IN_TRANSIT", T0)).to.deep.equal([]);
    });

    it(`refuses return ${RETURNS_PER_ORDER_MAX + 1} with LIMIT_EXCEEDED`, () => {
      const state = paid([{ skuId: "sku-a", quantity: RETURNS_PER_ORDER_MAX + 5 }]);
      ship(state, "s1", []);
      for (let i = 0; i < RETURNS_PER_ORDER_MAX; i++) {
        apply(state, decideReturn(state, { returnId: `ret-${i}`, lines: [{ skuId: "sku-a", quantity: 1 }], restock: false }, T0 + 1000));
        apply(state, [{ t: "returned", returnId: `ret-${i}`, atMs: T0 + 1001 }]);
      }
      const error = qmErrorOf(() => decideReturn(state, { returnId: "one-more", lines: [{ skuId: "sku-a", quantity: 1 }], restock: false }, T0 + 2000));
      expect(error.code).to.equal("LIMIT_EXCEEDED");
    });
  });

  describe("views", () => {
    it("a view is a copy: later events do not change an answer already given", () => {
      const state = BUILD.PARTIALLY_SHIPPED();
      const view = viewOrder(state);
      const copy = JSON.parse(JSON.stringify(view)) as unknown;
      track(state, "s1", "ev-1", "IN_TRANSIT", T0 + 150);
      ship(state, "s2", [], T0 + 200);
      apply(state, decideReturn(state, { returnId: "ret-1", lines: [{ skuId: "sku-b", quantity: 1 }], restock: false }, T0 + 300));
      expect(view).to.deep.equal(copy);
      expect(viewOrder(state).version).to.be.greaterThan(view.version);
    });
  });
});
