// Domain views to protobuf messages. Enum names line up one to one, so each
// mapping is a table rather than logic.

import type { AdjustmentRecord, AdjustmentPage } from "../actors/inventory/sku_actor";
import type { OrderView, OrderStatus, TrackingStatus as DomainTracking } from "../domain/order";
import type { AdjustmentReason as DomainReason, AvailabilityView, LevelView, ReservationStatus, ReservationView, SkuView } from "../domain/sku";
import {
  type Adjustment,
  AdjustmentReason,
  type AvailabilityItem,
  type ListAdjustmentsResponse,
  type Reservation,
  ReservationState,
  type Sku,
  type StockLevel,
} from "../gen/quartermaster/v1/inventory";
import { type Order, OrderState, TrackingStatus } from "../gen/quartermaster/v1/order";
import { attributeObject } from "./attribute_map";
import { encodePageToken } from "./validation";

const RESERVATION_STATES: Readonly<Record<ReservationStatus, ReservationState>> = {
  RESERVED: ReservationState.RESERVATION_STATE_RESERVED,
  COMMITTED: ReservationState.RESERVATION_STATE_COMMITTED,
  RELEASED: ReservationState.RESERVATION_STATE_RELEASED,
  EXPIRED: ReservationState.RESERVATION_STATE_EXPIRED,
  FULFILLED: ReservationState.RESERVATION_STATE_FULFILLED,
};

const ADJUSTMENT_REASONS: Readonly<Record<DomainReason, AdjustmentReason>> = {
  RECEIVED: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
  CORRECTION: AdjustmentReason.ADJUSTMENT_REASON_CORRECTION,
  DAMAGED: AdjustmentReason.ADJUSTMENT_REASON_DAMAGED,
  CYCLE_COUNT: AdjustmentReason.ADJUSTMENT_REASON_CYCLE_COUNT,
  RETURNED: AdjustmentReason.ADJUSTMENT_REASON_RETURNED,
};

const ORDER_STATES: Readonly<Record<Exclude<OrderStatus, "RESERVING">, OrderState>> = {
  AWAITING_PAYMENT: OrderState.ORDER_STATE_AWAITING_PAYMENT,
  REJECTED: OrderState.ORDER_STATE_REJECTED,
  PAID: OrderState.ORDER_STATE_PAID,
  PARTIALLY_SHIPPED: OrderState.ORDER_STATE_PARTIALLY_SHIPPED,
  SHIPPED: OrderState.ORDER_STATE_SHIPPED,
  DELIVERED: OrderState.ORDER_STATE_DELIVERED,
  CANCELLED: OrderState.ORDER_STATE_CANCELLED,
  EXPIRED: OrderState.ORDER_STATE_EXPIRED,
  RETURNED: OrderState.ORDER_STATE_RETURNED,
};

const TRACKING_STATUSES: Readonly<Record<DomainTracking, TrackingStatus>> = {
  IN_TRANSIT: TrackingStatus.TRACKING_STATUS_IN_TRANSIT,
  OUT_FOR_DELIVERY: TrackingStatus.TRACKING_STATUS_OUT_FOR_DELIVERY,
  DELIVERED: TrackingStatus.TRACKING_STATUS_DELIVERED,
  EXCEPTION: TrackingStatus.TRACKING_STATUS_EXCEPTION,
};

function time(ms: number): Date | undefined {
  return ms > 0 ? new Date(ms) : undefined;
}

export function toStockLevel(v: LevelView): StockLevel {
  return { locationId: v.locationId, onHand: v.onHand, reserved: v.reserved, committed: v.committed, available: v.available };
}

export function toSku(v: SkuView): Sku {
  return {
    skuId: v.skuId,
    title: v.def.title,
    priceMinor: v.def.priceMinor,
    currency: v.def.currency,
    safetyStock: v.def.safetyStock,
    lowStockThreshold: v.def.lowStockThreshold,
    allowBackorder: v.def.allowBackorder,
    attributes: attributeObject(v.def.attributes),
    levels: v.levels.map(toStockLevel),
    onHand: v.onHand,
    reserved: v.reserved,
    committed: v.committed,
    available: v.available,
    lowStock: v.lowStock,
    version: v.version,
    createdAt: time(v.createdAtMs),
    updatedAt: time(v.updatedAtMs),
  };
}

export function toAvailabilityItem(v: AvailabilityView): AvailabilityItem {
  return { ...v };
}

export function toReservation(v: ReservationView): Reservation {
  return {
    reservationId: v.reservationId,
    skuId: v.skuId,
    locationId: v.locationId,
    quantity: v.quantity,
    state: RESERVATION_STATES[v.state],
    expiresAt: v.expiresAtMs === null ? undefined : new Date(v.expiresAtMs),
    createdAt: time(v.createdAtMs),
    updatedAt: time(v.updatedAtMs),
    fulfilledQuantity: v.fulfilledQuantity,
  };
}

export function toListAdjustmentsResponse(skuId: string, page: AdjustmentPage): ListAdjustmentsResponse {
  const adjustments: Adjustment[] = page.records.map((r) => {
    const d = r.data as AdjustmentRecord;
    return {
      sequence: r.seq,
      skuId,
      locationId: d.locationId,
      delta: d.delta,
      reason: ADJUSTMENT_REASONS[d.reason],
      note: d.note,
      idempotencyKey: d.key,
      onHandAfter: d.onHandAfter,
      createdAt: time(r.atMs),
      // Records from before the audit named anyone carry neither: empty, i.e. unknown.
      subject: d.subject ?? "",
      tenant: d.tenant ?? "",
    };
  });
  return { adjustments, nextPageToken: encodePageToken(page.nextAfterSeq) };
}

export function toOrder(v: OrderView): Order {
  return {
    orderId: v.orderId,
    customerId: v.customerId,
    state: ORDER_STATES[v.state],
    lines: v.lines.map((l) => ({
      skuId: l.skuId,
      quantity: l.quantity,
      reservationId: l.reservationId,
      locationId: l.locationId,
      shippedQuantity: l.shipped,
      returnedQuantity: l.returned,
    })),
    shipments: v.shipments.map((s) => ({
      shipmentId: s.shipmentId,
      lines: s.lines.map((l) => ({ ...l })),
      carrier: s.carrier,
      trackingNumber: s.trackingNumber,
      status: s.status === null ? TrackingStatus.TRACKING_STATUS_UNSPECIFIED : TRACKING_STATUSES[s.status],
      events: s.events.map((e) => ({
        eventId: e.eventId,
        status: TRACKING_STATUSES[e.status],
        location: e.location,
        description: e.description,
        occurredAt: new Date(e.occurredAtMs),
        recordedAt: new Date(e.recordedAtMs),
      })),
      createdAt: time(s.createdAtMs),
    })),
    rejectionReasons: v.rejections.map((r) => ({ ...r })),
    returns: v.returns.map((r) => ({ returnId: r.returnId, lines: r.lines.map((l) => ({ ...l })), restock: r.restock, createdAt: time(r.createdAtMs) })),
    paymentReference: v.paymentReference,
    cancelReason: v.cancelReason,
    paymentDeadline: time(v.paymentDeadlineMs),
    createdAt: time(v.createdAtMs),
    updatedAt: time(v.updatedAtMs),
    version: v.version,
    stalledStep:
      v.stalledStep === null
        ? undefined
        : {
            step: v.stalledStep.step,
            attempts: v.stalledStep.attempts,
            reason: v.stalledStep.reason,
            message: v.stalledStep.message,
            nextAttemptAt: v.stalledStep.nextAttemptAtMs === null ? undefined : new Date(v.stalledStep.nextAttemptAtMs),
            parked: v.stalledStep.parked,
          },
    history: v.history.map((h) => ({ change: h.event, at: time(h.atMs), subject: h.subject, tenant: h.tenant })),
    historyOmitted: v.historyOmitted,
  };
}
