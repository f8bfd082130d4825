// qmctl's --json output: the contract for scripts. ts-proto's toJSON leaves
// out every field that holds its default (`"found": false`, `"reserved": 0`),
// so a script cannot tell "zero" from "this build has no such field". These
// builders print every field. Their return types list every key of the
// generated message, so a field added to the proto fails the build here until
// it is printed.
//
// Spelling follows protobuf's JSON mapping, so that any protobuf JSON parser
// (ts-proto's fromJSON, grpcurl's output) reads the same thing: lowerCamelCase
// field names, enums by their full proto name (`ORDER_STATE_PAID`), times as
// RFC 3339 strings. Two choices differ from the mapping: an unset message field
// prints as null rather than being left out (every field, always), and 64-bit
// integers print as JSON numbers rather than strings, because every count and
// version here stays far below 2^53 and jq compares numbers, not strings.

import type {
  Adjustment,
  AvailabilityItem,
  GetAvailabilityResponse,
  ListAdjustmentsResponse,
  Reservation,
  ReserveBatchError,
  ReserveBatchResponse,
  ReserveBatchResult,
  Sku,
  StockLevel,
} from "../gen/quartermaster/v1/inventory";
import type { LineItem, LineRejection, Order, OrderLine, Return, Shipment, TrackingEvent } from "../gen/quartermaster/v1/order";
import { ADJUSTMENT_REASONS, ORDER_STATES, RESERVATION_STATES, TRACKING_STATUSES } from "./args";

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Every key of the message, none optional: leaving a field out is a compile error. */
export type JsonOf<T> = { [K in keyof T]-?: JsonValue };

function time(date: Date | undefined): string | null {
  return date === undefined ? null : date.toISOString();
}

/** Map keys sorted, so that the output of one state is byte-for-byte the same every time. */
function stringMap(map: Readonly<Record<string, string>>): { [key: string]: string } {
  // No prototype, so that a key "__proto__" is a key like any other.
  const out = Object.create(null) as { [key: string]: string };
  for (const key of Object.keys(map).sort()) out[key] = map[key] ?? "";
  return out;
}

export function stockLevelJson(l: StockLevel): JsonOf<StockLevel> {
  return { locationId: l.locationId, onHand: l.onHand, reserved: l.reserved, committed: l.committed, available: l.available };
}

export function skuJson(s: Sku): JsonOf<Sku> {
  return {
    skuId: s.skuId,
    title: s.title,
    priceMinor: s.priceMinor,
    currency: s.currency,
    safetyStock: s.safetyStock,
    lowStockThreshold: s.lowStockThreshold,
    allowBackorder: s.allowBackorder,
    attributes: stringMap(s.attributes),
    levels: s.levels.map(stockLevelJson),
    onHand: s.onHand,
    reserved: s.reserved,
    committed: s.committed,
    available: s.available,
    lowStock: s.lowStock,
    version: s.version,
    createdAt: time(s.createdAt),
    updatedAt: time(s.updatedAt),
  };
}

export function adjustmentJson(a: Adjustment): JsonOf<Adjustment> {
  return {
    sequence: a.sequence,
    skuId: a.skuId,
    locationId: a.locationId,
    delta: a.delta,
    reason: ADJUSTMENT_REASONS.protoName(a.reason),
    note: a.note,
    idempotencyKey: a.idempotencyKey,
    onHandAfter: a.onHandAfter,
    createdAt: time(a.createdAt),
    subject: a.subject,
    tenant: a.tenant,
  };
}

export function listAdjustmentsJson(r: ListAdjustmentsResponse): JsonOf<ListAdjustmentsResponse> {
  return { adjustments: r.adjustments.map(adjustmentJson), nextPageToken: r.nextPageToken };
}

export function availabilityItemJson(i: AvailabilityItem): JsonOf<AvailabilityItem> {
  return {
    skuId: i.skuId,
    found: i.found,
    onHand: i.onHand,
    reserved: i.reserved,
    committed: i.committed,
    available: i.available,
    version: i.version,
  };
}

export function availabilityJson(r: GetAvailabilityResponse): JsonOf<GetAvailabilityResponse> {
  return { items: r.items.map(availabilityItemJson) };
}

export function reservationJson(r: Reservation): JsonOf<Reservation> {
  return {
    reservationId: r.reservationId,
    skuId: r.skuId,
    locationId: r.locationId,
    quantity: r.quantity,
    state: RESERVATION_STATES.protoName(r.state),
    expiresAt: time(r.expiresAt),
    createdAt: time(r.createdAt),
    updatedAt: time(r.updatedAt),
    fulfilledQuantity: r.fulfilledQuantity,
  };
}

function reserveBatchErrorJson(e: ReserveBatchError): JsonOf<ReserveBatchError> {
  return { code: e.code, reason: e.reason, message: e.message, metadata: stringMap(e.metadata) };
}

/**
 * The oneof prints as each of its fields, the ones not taken as null, so that
 * every result has the same keys; a case added to the oneof fails the build here.
 */
function reserveBatchResultJson(r: ReserveBatchResult): { [C in NonNullable<ReserveBatchResult["outcome"]>["$case"]]: JsonValue } {
  const o = r.outcome;
  return {
    reservation: o?.$case === "reservation" ? reservationJson(o.reservation) : null,
    error: o?.$case === "error" ? reserveBatchErrorJson(o.error) : null,
  };
}

export function reserveBatchJson(r: ReserveBatchResponse): JsonOf<ReserveBatchResponse> {
  return { results: r.results.map(reserveBatchResultJson), succeeded: r.succeeded, failed: r.failed };
}

function lineItemJson(l: LineItem): JsonOf<LineItem> {
  return { skuId: l.skuId, quantity: l.quantity };
}

function orderLineJson(l: OrderLine): JsonOf<OrderLine> {
  return {
    skuId: l.skuId,
    quantity: l.quantity,
    reservationId: l.reservationId,
    locationId: l.locationId,
    shippedQuantity: l.shippedQuantity,
    returnedQuantity: l.returnedQuantity,
  };
}

function lineRejectionJson(r: LineRejection): JsonOf<LineRejection> {
  return { skuId: r.skuId, reason: r.reason, message: r.message };
}

function trackingEventJson(e: TrackingEvent): JsonOf<TrackingEvent> {
  return {
    eventId: e.eventId,
    status: TRACKING_STATUSES.protoName(e.status),
    location: e.location,
    description: e.description,
    occurredAt: time(e.occurredAt),
    recordedAt: time(e.recordedAt),
  };
}

function shipmentJson(s: Shipment): JsonOf<Shipment> {
  return {
    shipmentId: s.shipmentId,
    lines: s.lines.map(lineItemJson),
    carrier: s.carrier,
    trackingNumber: s.trackingNumber,
    status: TRACKING_STATUSES.protoName(s.status),
    events: s.events.map(trackingEventJson),
    createdAt: time(s.createdAt),
  };
}

function returnJson(r: Return): JsonOf<Return> {
  return { returnId: r.returnId, lines: r.lines.map(lineItemJson), restock: r.restock, createdAt: time(r.createdAt) };
}

export function orderJson(o: Order): JsonOf<Order> {
  return {
    orderId: o.orderId,
    customerId: o.customerId,
    state: ORDER_STATES.protoName(o.state),
    lines: o.lines.map(orderLineJson),
    shipments: o.shipments.map(shipmentJson),
    rejectionReasons: o.rejectionReasons.map(lineRejectionJson),
    returns: o.returns.map(returnJson),
    paymentReference: o.paymentReference,
    cancelReason: o.cancelReason,
    paymentDeadline: time(o.paymentDeadline),
    createdAt: time(o.createdAt),
    updatedAt: time(o.updatedAt),
    version: o.version,
    stalledStep:
      o.stalledStep === undefined
        ? null
        : {
            step: o.stalledStep.step,
            attempts: o.stalledStep.attempts,
            reason: o.stalledStep.reason,
            message: o.stalledStep.message,
            nextAttemptAt: time(o.stalledStep.nextAttemptAt),
            parked: o.stalledStep.parked,
          },
    history: o.history.map((h) => ({ change: h.change, at: time(h.at), subject: h.subject, tenant: h.tenant })),
    historyOmitted: o.historyOmitted,
  };
}
