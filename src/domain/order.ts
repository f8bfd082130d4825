// The order state machine. Pure: no I/O, no timers; time is an argument.
//
// An order drives a saga over SKU actors. Every step that touches SKUs is
// first recorded as durable intent (`saga`), then carried out with idempotent
// SKU commands, then closed by an outcome event. After a crash the order actor
// finds the open step in its state and carries it out again, so a step is
// never half-done. Every legal transition is in TRANSITIONS below.

import { assert, illegalTransition, QmError, unknownEvent } from "../errors";
import { ORDER_HISTORY_MAX, RETURNS_PER_ORDER_MAX, SHIPMENTS_PER_ORDER_MAX, TRACKING_EVENTS_PER_SHIPMENT_MAX } from "../limits";

/** RESERVING is internal: the order's turn is still running its first saga step. */
export type OrderStatus =
  | "RESERVING"
  | "AWAITING_PAYMENT"
  | "REJECTED"
  | "PAID"
  | "PARTIALLY_SHIPPED"
  | "SHIPPED"
  | "DELIVERED"
  | "CANCELLED"
  | "EXPIRED"
  | "RETURNED";

export type TrackingStatus = "IN_TRANSIT" | "OUT_FOR_DELIVERY" | "DELIVERED" | "EXCEPTION";

/** `reserve` is the order's own first step (placing the order), never a caller's action on an existing order. */
export type OrderAction = "reserve" | "pay" | "cancel" | "expire" | "ship" | "track" | "return";

/** For one action: each state it may start from, and the states it may end in from there. */
export type ActionTransitions = Partial<Readonly<Record<OrderStatus, readonly OrderStatus[]>>>;

/**
 * Every legal order transition: action -> from -> the possible targets. A
 * state absent under an action refuses it (ILLEGAL_TRANSITION). Retries of a
 * finished action are answered before this check. A target equal to its
 * source means the action may leave the status as it is (a partial shipment
 * or return, a tracking event before delivery). A payment whose commit is
 * refused (a hold already gone) ends through `expire`.
 */
export const TRANSITIONS: Readonly<Record<OrderAction, ActionTransitions>> = {
  reserve: { RESERVING: ["AWAITING_PAYMENT", "REJECTED"] },
  pay: { AWAITING_PAYMENT: ["PAID"] },
  cancel: { AWAITING_PAYMENT: ["CANCELLED"], PAID: ["CANCELLED"] }, // no shipment yet
  expire: { AWAITING_PAYMENT: ["EXPIRED"] }, // by the payment timer, or a payment refused
  ship: { PAID: ["PARTIALLY_SHIPPED", "SHIPPED"], PARTIALLY_SHIPPED: ["PARTIALLY_SHIPPED", "SHIPPED"] },
  track: {
    PARTIALLY_SHIPPED: ["PARTIALLY_SHIPPED"],
    SHIPPED: ["SHIPPED", "DELIVERED"],
    DELIVERED: ["DELIVERED"],
    RETURNED: ["RETURNED"],
  },
  return: {
    PARTIALLY_SHIPPED: ["PARTIALLY_SHIPPED"],
    SHIPPED: ["SHIPPED", "RETURNED"],
    DELIVERED: ["DELIVERED", "RETURNED"],
  },
};

/** Moves the order to `target` by `action`, which the table must allow from where the order is. */
function enter(state: OrderState, action: OrderAction, target: OrderStatus): void {
  assert(
    TRANSITIONS[action][state.status]?.includes(target) === true,
    `order ${state.orderId}: ${action} cannot lead from ${state.status} to ${target}`,
  );
  state.status = target;
}

/** The one target the table gives `action` from where the order is. */
function onlyTarget(state: OrderState, action: OrderAction): OrderStatus {
  const targets = TRANSITIONS[action][state.status];
  assert(targets?.length === 1, `order ${state.orderId}: ${action} from ${state.status} has no single target`);
  return targets[0] as OrderStatus;
}

export interface LineQuantity {
  readonly skuId: string;
  readonly quantity: number;
}

export interface OrderLineState {
  readonly skuId: string;
  readonly quantity: number;
  readonly reservationId: string;
  locationId: string;
  shipped: number;
  returned: number;
}

export interface TrackingEventRecord {
  readonly eventId: string;
  readonly status: TrackingStatus;
  readonly location: string;
  readonly description: string;
  readonly occurredAtMs: number;
  readonly recordedAtMs: number;
}

export interface ShipmentState {
  readonly shipmentId: string;
  readonly carrier: string;
  readonly trackingNumber: string;
  readonly lines: readonly LineQuantity[];
  readonly createdAtMs: number;
  /** False while the shipment's saga step is open. */
  done: boolean;
  status: TrackingStatus | null;
  events: TrackingEventRecord[];
}

export interface ReturnState {
  readonly returnId: string;
  readonly lines: readonly LineQuantity[];
  readonly restock: boolean;
  readonly createdAtMs: number;
}

export interface LineRejection {
  readonly skuId: string;
  readonly reason: string;
  readonly message: string;
}

export type Saga =
  | { readonly kind: "reserve" }
  | { readonly kind: "commit" }
  | { readonly kind: "release"; readonly outcome: "REJECTED" | "CANCELLED" | "EXPIRED" }
  | { readonly kind: "ship"; readonly shipmentId: string }
  | { readonly kind: "unship"; readonly shipmentId: string }
  | { readonly kind: "restock"; readonly returnId: string };

/**
 * The failed attempts of the open saga step: when it is tried next, or that
 * it is parked (no attempt is made until a request to the order resumes it).
 * Durable, so backoff survives a restart; cleared when the step ends.
 */
export interface StepRetry {
  /** Attempts made so far, all failed. */
  readonly attempts: number;
  /** The last attempt's error code and message. */
  readonly code: string;
  readonly message: string;
  /** null: parked. */
  readonly nextAttemptAtMs: number | null;
}

export interface OrderState {
  readonly orderId: string;
  exists: boolean;
  customerId: string;
  status: OrderStatus;
  lines: OrderLineState[];
  shipments: ShipmentState[];
  returns: ReturnState[];
  rejections: LineRejection[];
  paymentReference: string;
  cancelReason: string;
  paymentDeadlineMs: number;
  reservationTtlMs: number;
  createdAtMs: number;
  updatedAtMs: number;
  version: number;
  /** The saga step recorded but not yet finished; resumed after a crash. */
  saga: Saga | null;
  /** Failed attempts of the open step; null while it has not failed (or none is open). */
  stepRetry: StepRetry | null;
  /** Why the last saga step failed, for the reply of the request that started it. */
  failure: LineRejection | null;
  /** The most recent changes, oldest first, at most ORDER_HISTORY_MAX: the audit trail GetOrder shows. */
  history: HistoryEntry[];
  /** Changes older than those in history, dropped from it (the journal still holds them). */
  historyOmitted: number;
}

/** Who made a change: the caller's subject and tenant, or the system. */
export interface ChangeAuthor {
  readonly subject: string;
  readonly tenant: string;
}

/** One change of the order: which event, when, by whom ("" for events recorded before the audit named anyone). */
export interface HistoryEntry {
  readonly event: OrderEvent["t"];
  readonly atMs: number;
  readonly subject: string;
  readonly tenant: string;
}

/** Every event may name who caused it (`by`); events written before the audit did not. */
export type OrderEvent = OrderChange & { readonly by?: ChangeAuthor };

type OrderChange =
  | {
      readonly t: "placed";
      readonly customerId: string;
      readonly lines: readonly { readonly skuId: string; readonly quantity: number; readonly reservationId: string }[];
      readonly paymentDeadlineMs: number;
      readonly reservationTtlMs: number;
      readonly atMs: number;
    }
  | { readonly t: "reserved"; readonly locations: readonly string[]; readonly atMs: number }
  | { readonly t: "reserveFailed"; readonly rejections: readonly LineRejection[]; readonly atMs: number }
  | { readonly t: "payStarted"; readonly paymentReference: string; readonly atMs: number }
  | { readonly t: "paid"; readonly atMs: number }
  | { readonly t: "payFailed"; readonly failure: LineRejection; readonly atMs: number }
  | { readonly t: "cancelStarted"; readonly reason: string; readonly atMs: number }
  | { readonly t: "expireStarted"; readonly atMs: number }
  | { readonly t: "released"; readonly atMs: number }
  | {
      readonly t: "shipStarted";
      readonly shipmentId: string;
      readonly carrier: string;
      readonly trackingNumber: string;
      readonly lines: readonly LineQuantity[];
      readonly atMs: number;
    }
  | { readonly t: "shipped"; readonly shipmentId: string; readonly atMs: number }
  | { readonly t: "shipFailed"; readonly shipmentId: string; readonly failure: LineRejection; readonly atMs: number }
  | { readonly t: "unshipped"; readonly shipmentId: string; readonly atMs: number }
  | { readonly t: "tracked"; readonly shipmentId: string; readonly event: TrackingEventRecord; readonly atMs: number }
  | {
      readonly t: "returnStarted";
      readonly returnId: string;
      readonly lines: readonly LineQuantity[];
      readonly restock: boolean;
      readonly atMs: number;
    }
  | { readonly t: "returned"; readonly returnId: string; readonly atMs: number }
  | {
      readonly t: "stepStalled";
      readonly attempts: number;
      readonly code: string;
      readonly message: string;
      /** null: the step is parked. */
      readonly nextAttemptAtMs: number | null;
      readonly atMs: number;
    }
  | { readonly t: "stepResumed"; readonly atMs: number };

export function newOrderState(orderId: string): OrderState {
  return {
    orderId,
    exists: false,
    customerId: "",
    status: "RESERVING",
    lines: [],
    shipments: [],
    returns: [],
    rejections: [],
    paymentReference: "",
    cancelReason: "",
    paymentDeadlineMs: 0,
    reservationTtlMs: 0,
    createdAtMs: 0,
    updatedAtMs: 0,
    version: 0,
    saga: null,
    stepRetry: null,
    failure: null,
    history: [],
    historyOmitted: 0,
  };
}

/** The NOT_FOUND of an order id that names no order (of the caller's tenant). */
export function orderNotFound(orderId: string): QmError {
  return new QmError("NOT_FOUND", `order ${orderId} not found`, { order_id: orderId });
}

/** The id of the reservation that holds an order line's units on its SKU. */
export function lineReservationId(orderId: string, lineIndex: number): string {
  // "/" is not allowed in client-chosen ids, so these can never collide with
  // a client's own reservations, nor be committed or released behind the order's back.
  return `order/${orderId}/${lineIndex}`;
}

function requireExists(state: OrderState): void {
  if (!state.exists) throw orderNotFound(state.orderId);
}

function requireAllowed(state: OrderState, action: OrderAction): void {
  if (TRANSITIONS[action][state.status] === undefined) throw illegalTransition("order", state.status, action);
}

/**
 * A step left open (its SKU calls stalled) is resumed by the order's wake-up;
 * a new step would replace it, so one that starts another step waits until then.
 */
function requireNoOpenStep(state: OrderState, action: OrderAction): void {
  if (state.saga !== null) {
    throw new QmError("UNAVAILABLE", `cannot ${action} yet: order ${state.orderId} is finishing its ${state.saga.kind} step`, {
      reason: "STEP_IN_PROGRESS",
      state: state.status,
      step: state.saga.kind,
    });
  }
}

// ---- Decisions ------------------------------------------------------------------

export interface PlaceCommand {
  readonly customerId: string;
  readonly lines: readonly LineQuantity[];
  readonly paymentTimeoutMs: number;
  readonly reservationGraceMs: number;
}

/** No events when the order exists with the same content (an idempotent retry). */
export function decidePlace(state: OrderState, cmd: PlaceCommand, nowMs: number): OrderEvent[] {
  if (state.exists) {
    // The deadline was placed at creation + payment_timeout, so their difference is the timeout asked for.
    const same =
      state.customerId === cmd.customerId &&
      state.paymentDeadlineMs - state.createdAtMs === cmd.paymentTimeoutMs &&
      state.lines.length === cmd.lines.length &&
      state.lines.every((l, i) => l.skuId === cmd.lines[i]?.skuId && l.quantity === cmd.lines[i]?.quantity);
    if (!same) {
      throw new QmError("ALREADY_EXISTS", `order ${state.orderId} exists with different content`, {
        reason: "IDEMPOTENCY_KEY_REUSED",
      });
    }
    return [];
  }
  const reservationTtlMs = cmd.paymentTimeoutMs + cmd.reservationGraceMs;
  return [
    {
      t: "placed",
      customerId: cmd.customerId,
      lines: cmd.lines.map((l, i) => ({ skuId: l.skuId, quantity: l.quantity, reservationId: lineReservationId(state.orderId, i) })),
      paymentDeadlineMs: nowMs + cmd.paymentTimeoutMs,
      reservationTtlMs,
      atMs: nowMs,
    },
  ];
}

/** States an order reaches only after payment: a retried payment with the same reference is answered as done. */
const PAID_STATES: readonly OrderStatus[] = ["PAID", "PARTIALLY_SHIPPED", "SHIPPED", "DELIVERED", "RETURNED"];

export function decidePay(state: OrderState, paymentReference: string, nowMs: number): OrderEvent[] {
  requireExists(state);
  if (PAID_STATES.includes(state.status) || (state.saga?.kind === "commit" && state.paymentReference === paymentReference)) {
    if (state.paymentReference !== paymentReference) {
      throw new QmError("FAILED_PRECONDITION", `order ${state.orderId} is already paid with another payment reference`, {
        reason: "ALREADY_PAID",
        state: state.status,
      });
    }
    return [];
  }
  requireAllowed(state, "pay");
  requireNoOpenStep(state, "pay");
  if (state.status === "AWAITING_PAYMENT" && nowMs >= state.paymentDeadlineMs) {
    // The deadline has passed even if the timer has not fired yet: expire now.
    return [{ t: "expireStarted", atMs: nowMs }];
  }
  return [{ t: "payStarted", paymentReference, atMs: nowMs }];
}

export function decideCancel(state: OrderState, reason: string, nowMs: number): OrderEvent[] {
  requireExists(state);
  if (state.status === "CANCELLED") return [];
  if (state.saga?.kind === "release" && state.saga.outcome === "CANCELLED") return []; // a retry: its step is resumed
  requireAllowed(state, "cancel");
  requireNoOpenStep(state, "cancel");
  return [{ t: "cancelStarted", reason, atMs: nowMs }];
}

export function decideExpire(state: OrderState, nowMs: number): OrderEvent[] {
  if (!state.exists || state.saga !== null || state.status !== "AWAITING_PAYMENT" || nowMs < state.paymentDeadlineMs) {
    return [];
  }
  return [{ t: "expireStarted", atMs: nowMs }];
}

export interface ShipCommand {
  readonly shipmentId: string;
  readonly carrier: string;
  readonly trackingNumber: string;
  /** Empty: everything not yet shipped. */
  readonly lines: readonly LineQuantity[];
}

export function decideShip(state: OrderState, cmd: ShipCommand, nowMs: number): OrderEvent[] {
  requireExists(state);
  const existing = state.shipments.find((s) => s.shipmentId === cmd.shipmentId);
  if (existing !== undefined) {
    // Empty lines ask for "all that remains", which the first call resolved into its lines.
    const differs =
      existing.carrier !== cmd.carrier ||
      existing.trackingNumber !== cmd.trackingNumber ||
      (cmd.lines.length > 0 && !sameLines(existing.lines, cmd.lines));
    if (differs) {
      throw new QmError("ALREADY_EXISTS", `shipment ${cmd.shipmentId} exists with a different carrier, tracking number or lines`, {
        reason: "IDEMPOTENCY_KEY_REUSED",
      });
    }
    return [];
  }
  requireAllowed(state, "ship");
  requireNoOpenStep(state, "ship");
  if (state.shipments.length >= SHIPMENTS_PER_ORDER_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `order ${state.orderId} already has ${SHIPMENTS_PER_ORDER_MAX} shipments`);
  }
  const lines =
    cmd.lines.length > 0
      ? cmd.lines
      : state.lines.filter((l) => l.shipped < l.quantity).map((l) => ({ skuId: l.skuId, quantity: l.quantity - l.shipped }));
  checkLines(state, lines, "lines", (l) => l.quantity - l.shipped, "left to ship");
  return [
    { t: "shipStarted", shipmentId: cmd.shipmentId, carrier: cmd.carrier, trackingNumber: cmd.trackingNumber, lines, atMs: nowMs },
  ];
}

export interface TrackCommand {
  readonly shipmentId: string;
  readonly eventId: string;
  readonly status: TrackingStatus;
  readonly location: string;
  readonly description: string;
  readonly occurredAtMs: number;
}

export function decideTrack(state: OrderState, cmd: TrackCommand, nowMs: number): OrderEvent[] {
  requireExists(state);
  const shipment = state.shipments.find((s) => s.shipmentId === cmd.shipmentId && s.done);
  if (shipment === undefined) {
    throw new QmError("NOT_FOUND", `shipment ${cmd.shipmentId} not found on order ${state.orderId}`, {
      shipment_id: cmd.shipmentId,
    });
  }
  const earlier = shipment.events.find((e) => e.eventId === cmd.eventId);
  if (earlier !== undefined) {
    const same =
      earlier.status === cmd.status &&
      earlier.occurredAtMs === cmd.occurredAtMs &&
      earlier.location === cmd.location &&
      earlier.description === cmd.description;
    if (!same) {
      throw new QmError("ALREADY_EXISTS", `tracking event ${cmd.eventId} exists with different content`, {
        reason: "IDEMPOTENCY_KEY_REUSED",
      });
    }
    return [];
  }
  requireAllowed(state, "track");
  if (shipment.events.length >= TRACKING_EVENTS_PER_SHIPMENT_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `shipment ${cmd.shipmentId} already has ${TRACKING_EVENTS_PER_SHIPMENT_MAX} events`);
  }
  const event: TrackingEventRecord = {
    eventId: cmd.eventId,
    status: cmd.status,
    location: cmd.location,
    description: cmd.description,
    occurredAtMs: cmd.occurredAtMs,
    recordedAtMs: nowMs,
  };
  return [{ t: "tracked", shipmentId: cmd.shipmentId, event, atMs: nowMs }];
}

export interface ReturnCommand {
  readonly returnId: string;
  readonly lines: readonly LineQuantity[];
  readonly restock: boolean;
}

export function decideReturn(state: OrderState, cmd: ReturnCommand, nowMs: number): OrderEvent[] {
  requireExists(state);
  const existing = state.returns.find((r) => r.returnId === cmd.returnId);
  if (existing !== undefined) {
    if (!sameLines(existing.lines, cmd.lines) || existing.restock !== cmd.restock) {
      throw new QmError("ALREADY_EXISTS", `return ${cmd.returnId} exists with different content`, {
        reason: "IDEMPOTENCY_KEY_REUSED",
      });
    }
    return [];
  }
  requireAllowed(state, "return");
  requireNoOpenStep(state, "return");
  if (state.returns.length >= RETURNS_PER_ORDER_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `order ${state.orderId} already has ${RETURNS_PER_ORDER_MAX} returns`);
  }
  checkLines(state, cmd.lines, "lines", (l) => l.shipped - l.returned, "shipped and not yet returned");
  return [{ t: "returnStarted", returnId: cmd.returnId, lines: cmd.lines, restock: cmd.restock, atMs: nowMs }];
}

function sameLines(a: readonly LineQuantity[], b: readonly LineQuantity[]): boolean {
  return a.length === b.length && a.every((l, i) => l.skuId === b[i]?.skuId && l.quantity === b[i]?.quantity);
}

/** Every line names a SKU of the order, once, within what `room` leaves. */
function checkLines(
  state: OrderState,
  lines: readonly LineQuantity[],
  field: string,
  room: (line: OrderLineState) => number,
  what: string,
): void {
  if (lines.length === 0) {
    throw new QmError("FAILED_PRECONDITION", `order ${state.orderId} has nothing ${what}`, { state: state.status });
  }
  const seen = new Set<string>();
  lines.forEach((l, i) => {
    const line = state.lines.find((x) => x.skuId === l.skuId);
    if (line === undefined) {
      throw new QmError("INVALID_ARGUMENT", `${field}[${i}].sku_id: ${l.skuId} is not on order ${state.orderId}`, {}, [
        { field: `${field}[${i}].sku_id`, description: `${l.skuId} is not on the order` },
      ]);
    }
    if (seen.has(l.skuId)) {
      throw new QmError("INVALID_ARGUMENT", `${field}[${i}].sku_id: ${l.skuId} appears twice`, {}, [
        { field: `${field}[${i}].sku_id`, description: "appears twice" },
      ]);
    }
    seen.add(l.skuId);
    if (l.quantity > room(line)) {
      throw new QmError(
        "FAILED_PRECONDITION",
        `${field}[${i}].quantity: ${l.quantity} exceeds the ${room(line)} units ${what} of ${l.skuId}`,
        { sku_id: l.skuId, state: state.status },
      );
    }
  });
}

// ---- Applying events ----------------------------------------------------------

/** Events that keep the failure of the step before them: it is still the answer of the request that started that step. */
const KEEPS_FAILURE: ReadonlySet<OrderEvent["t"]> = new Set<OrderEvent["t"]>([
  "payFailed",
  "shipFailed",
  "released",
  "unshipped",
  "stepStalled",
  "stepResumed",
]);

export function applyOrderEvent(state: OrderState, e: OrderEvent): void {
  const step = state.saga;
  switch (e.t) {
    case "placed":
    case "reserved":
    case "reserveFailed":
      applyPlacement(state, e);
      break;
    case "payStarted":
    case "paid":
    case "payFailed":
    case "cancelStarted":
    case "expireStarted":
    case "released":
      applyPaymentOrRelease(state, e);
      break;
    case "shipStarted":
    case "shipped":
    case "shipFailed":
    case "unshipped":
    case "tracked":
      applyShipping(state, e);
      break;
    case "returnStarted":
    case "returned":
      applyReturn(state, e);
      break;
    case "stepStalled":
    case "stepResumed":
      applyStepRetry(state, e);
      break;
    default:
      throw unknownEvent("order", e);
  }
  // A step that ended or gave way to another takes its failed attempts with it.
  if (state.saga !== step) state.stepRetry = null;
  if (!KEEPS_FAILURE.has(e.t)) state.failure = null;
  state.version += 1;
  state.updatedAtMs = e.atMs;
  recordHistory(state, e);
}

function recordHistory(state: OrderState, e: OrderEvent): void {
  state.history.push({ event: e.t, atMs: e.atMs, subject: e.by?.subject ?? "", tenant: e.by?.tenant ?? "" });
  if (state.history.length > ORDER_HISTORY_MAX) {
    state.history.shift();
    state.historyOmitted++;
  }
}

type EventOf<T extends OrderEvent["t"]> = Extract<OrderEvent, { readonly t: T }>;

function applyPlacement(state: OrderState, e: EventOf<"placed" | "reserved" | "reserveFailed">): void {
  switch (e.t) {
    case "placed":
      state.exists = true;
      state.customerId = e.customerId;
      state.status = "RESERVING";
      state.lines = e.lines.map((l) => ({ ...l, locationId: "", shipped: 0, returned: 0 }));
      state.paymentDeadlineMs = e.paymentDeadlineMs;
      state.reservationTtlMs = e.reservationTtlMs;
      state.createdAtMs = e.atMs;
      state.saga = { kind: "reserve" };
      break;
    case "reserved":
      e.locations.forEach((loc, i) => {
        const line = state.lines[i];
        if (line !== undefined) line.locationId = loc;
      });
      enter(state, "reserve", "AWAITING_PAYMENT");
      state.saga = null;
      break;
    case "reserveFailed":
      state.rejections = [...e.rejections];
      state.saga = { kind: "release", outcome: "REJECTED" };
      break;
  }
}

/** Which action a release step completes, by the status it ends in. */
const RELEASE_ACTION: Readonly<Record<"REJECTED" | "CANCELLED" | "EXPIRED", OrderAction>> = {
  REJECTED: "reserve",
  CANCELLED: "cancel",
  EXPIRED: "expire",
};

function applyPaymentOrRelease(
  state: OrderState,
  e: EventOf<"payStarted" | "paid" | "payFailed" | "cancelStarted" | "expireStarted" | "released">,
): void {
  switch (e.t) {
    case "payStarted":
      state.paymentReference = e.paymentReference;
      state.saga = { kind: "commit" };
      break;
    case "paid":
      enter(state, "pay", onlyTarget(state, "pay"));
      state.saga = null;
      break;
    case "payFailed":
      state.failure = e.failure;
      state.saga = { kind: "release", outcome: onlyTarget(state, "expire") as "EXPIRED" };
      break;
    case "cancelStarted":
      state.cancelReason = e.reason;
      state.saga = { kind: "release", outcome: onlyTarget(state, "cancel") as "CANCELLED" };
      break;
    case "expireStarted":
      state.saga = { kind: "release", outcome: onlyTarget(state, "expire") as "EXPIRED" };
      break;
    case "released":
      assert(state.saga?.kind === "release", `released without a release step on order ${state.orderId}`);
      enter(state, RELEASE_ACTION[state.saga.outcome], state.saga.outcome);
      state.saga = null;
      break;
  }
}

function applyShipping(state: OrderState, e: EventOf<"shipStarted" | "shipped" | "shipFailed" | "unshipped" | "tracked">): void {
  switch (e.t) {
    case "shipStarted":
      state.shipments.push({
        shipmentId: e.shipmentId,
        carrier: e.carrier,
        trackingNumber: e.trackingNumber,
        lines: e.lines,
        createdAtMs: e.atMs,
        done: false,
        status: null,
        events: [],
      });
      state.saga = { kind: "ship", shipmentId: e.shipmentId };
      break;
    case "shipped": {
      const shipment = findShipment(state, e.shipmentId);
      shipment.done = true;
      for (const l of shipment.lines) {
        const line = findLine(state, l.skuId);
        line.shipped += l.quantity;
        assert(line.shipped <= line.quantity, `order ${state.orderId}: shipped more than ordered of ${l.skuId}`);
      }
      enter(state, "ship", state.lines.every((l) => l.shipped === l.quantity) ? "SHIPPED" : "PARTIALLY_SHIPPED");
      state.saga = null;
      break;
    }
    case "shipFailed":
      state.failure = e.failure;
      state.saga = { kind: "unship", shipmentId: e.shipmentId };
      break;
    case "unshipped":
      state.shipments = state.shipments.filter((s) => s.shipmentId !== e.shipmentId);
      state.saga = null;
      break;
    case "tracked":
      applyTracked(state, e);
      break;
  }
}

function applyTracked(state: OrderState, e: EventOf<"tracked">): void {
  const shipment = findShipment(state, e.shipmentId);
  const events = shipment.events;
  let at = events.length;
  while (at > 0 && (events[at - 1] as TrackingEventRecord).occurredAtMs > e.event.occurredAtMs) at--;
  events.splice(at, 0, e.event);
  // Carriers report out of order: the latest event by occurrence wins,
  // except that a delivery is final.
  shipment.status = events.some((x) => x.status === "DELIVERED")
    ? "DELIVERED"
    : (events[events.length - 1] as TrackingEventRecord).status;
  const delivered = state.status === "SHIPPED" && state.shipments.every((s) => s.status === "DELIVERED");
  enter(state, "track", delivered ? "DELIVERED" : state.status);
}

function applyReturn(state: OrderState, e: EventOf<"returnStarted" | "returned">): void {
  switch (e.t) {
    case "returnStarted":
      state.returns.push({ returnId: e.returnId, lines: e.lines, restock: e.restock, createdAtMs: e.atMs });
      for (const l of e.lines) {
        const line = findLine(state, l.skuId);
        line.returned += l.quantity;
        assert(line.returned <= line.shipped, `order ${state.orderId}: returned more than shipped of ${l.skuId}`);
      }
      state.saga = { kind: "restock", returnId: e.returnId };
      break;
    case "returned": {
      const all = (state.status === "SHIPPED" || state.status === "DELIVERED") && state.lines.every((l) => l.returned === l.shipped);
      enter(state, "return", all ? "RETURNED" : state.status);
      state.saga = null;
      break;
    }
  }
}

function applyStepRetry(state: OrderState, e: EventOf<"stepStalled" | "stepResumed">): void {
  assert(state.saga !== null, `order ${state.orderId}: ${e.t} without an open step`);
  if (e.t === "stepResumed") {
    state.stepRetry = null;
    return;
  }
  state.stepRetry = { attempts: e.attempts, code: e.code, message: e.message, nextAttemptAtMs: e.nextAttemptAtMs };
}

function findShipment(state: OrderState, shipmentId: string): ShipmentState {
  const s = state.shipments.find((x) => x.shipmentId === shipmentId);
  assert(s !== undefined, `order ${state.orderId}: unknown shipment ${shipmentId}`);
  return s;
}

function findLine(state: OrderState, skuId: string): OrderLineState {
  const line = state.lines.find((l) => l.skuId === skuId);
  assert(line !== undefined, `order ${state.orderId}: no line for ${skuId}`);
  return line;
}

/** When the order actor must next run without being asked: an open saga step now, or the payment deadline. */
export function orderWakeAtMs(state: OrderState): number | null {
  if (!state.exists) return null;
  if (state.saga !== null) {
    // Not yet failed: the step's own time, already due, and stable, so it is
    // stored once per step. After a failure: the attempt its retry policy set,
    // or none while it is parked.
    const retry = state.stepRetry;
    return retry === null ? state.updatedAtMs : retry.nextAttemptAtMs;
  }
  if (state.status === "AWAITING_PAYMENT") return state.paymentDeadlineMs;
  return null;
}

export function orderWeight(state: OrderState): number {
  return state.lines.length + state.shipments.reduce((n, s) => n + s.events.length + 1, 0) + state.returns.length;
}

// ---- View ----------------------------------------------------------------------------

/** What a reply carries: a copy, so later turns cannot change an answer already given. */
export interface OrderView {
  readonly orderId: string;
  readonly customerId: string;
  /** RESERVING is never shown: it only exists inside the order's first turn, or before a crashed one resumes. */
  readonly state: Exclude<OrderStatus, "RESERVING">;
  readonly lines: readonly Readonly<OrderLineState>[];
  readonly shipments: readonly {
    readonly shipmentId: string;
    readonly carrier: string;
    readonly trackingNumber: string;
    readonly lines: readonly LineQuantity[];
    readonly status: TrackingStatus | null;
    readonly events: readonly TrackingEventRecord[];
    readonly createdAtMs: number;
  }[];
  readonly returns: readonly ReturnState[];
  readonly rejections: readonly LineRejection[];
  readonly paymentReference: string;
  readonly cancelReason: string;
  readonly paymentDeadlineMs: number;
  readonly createdAtMs: number;
  readonly updatedAtMs: number;
  readonly version: number;
  /** The open saga step that failed and waits for its next attempt or is parked; null when none. */
  readonly stalledStep: StalledStepView | null;
  readonly history: readonly HistoryEntry[];
  readonly historyOmitted: number;
}

export interface StalledStepView {
  readonly step: Saga["kind"];
  readonly attempts: number;
  /** The last attempt's error code. */
  readonly reason: string;
  readonly message: string;
  /** null when parked. */
  readonly nextAttemptAtMs: number | null;
  readonly parked: boolean;
}

export function viewOrder(state: OrderState): OrderView {
  requireExists(state);
  return {
    orderId: state.orderId,
    customerId: state.customerId,
    state: state.status === "RESERVING" ? "AWAITING_PAYMENT" : state.status,
    lines: state.lines.map((l) => ({ ...l })),
    shipments: state.shipments
      .filter((s) => s.done)
      .map((s) => ({
        shipmentId: s.shipmentId,
        carrier: s.carrier,
        trackingNumber: s.trackingNumber,
        lines: s.lines,
        status: s.status,
        events: [...s.events],
        createdAtMs: s.createdAtMs,
      })),
    returns: [...state.returns],
    rejections: state.rejections,
    paymentReference: state.paymentReference,
    cancelReason: state.cancelReason,
    // A rejected order never awaited payment, so it shows no deadline.
    paymentDeadlineMs: state.status === "REJECTED" ? 0 : state.paymentDeadlineMs,
    createdAtMs: state.createdAtMs,
    updatedAtMs: state.updatedAtMs,
    version: state.version,
    stalledStep:
      state.saga === null || state.stepRetry === null
        ? null
        : {
            step: state.saga.kind,
            attempts: state.stepRetry.attempts,
            reason: state.stepRetry.code,
            message: state.stepRetry.message,
            nextAttemptAtMs: state.stepRetry.nextAttemptAtMs,
            parked: state.stepRetry.nextAttemptAtMs === null,
          },
    history: [...state.history],
    historyOmitted: state.historyOmitted,
  };
}
