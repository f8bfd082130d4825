// The order actor: one per order. It runs the order's saga over the SKU
// actors. Each step is recorded as intent (durable) before any SKU is asked,
// so a crash at any point leaves a step that the next activation finishes:
// every SKU command it sends is idempotent (keyed by reservation id, shipment
// id or return id), so doing a step twice is the same as doing it once.

import {
  applyOrderEvent,
  decideCancel,
  decideExpire,
  decidePay,
  decidePlace,
  decideReturn,
  decideShip,
  decideTrack,
  type LineRejection,
  newOrderState,
  type OrderEvent,
  type OrderState,
  type OrderView,
  orderWakeAtMs,
  orderWeight,
  type PlaceCommand,
  type ReturnCommand,
  type ShipCommand,
  type TrackCommand,
  viewOrder,
} from "../../domain/order";
import { illegalTransition, QmError } from "../../errors";
import { crashPoint } from "../../fault/crash_points";
import { TTL_MS_MIN } from "../../limits";
import type { ActorBehavior, TurnContext } from "../runtime/behavior";
import type { LevelView, ReservationView } from "../../domain/sku";
import { skuActorId, type SkuMessage } from "../inventory/sku_actor";

export const ORDER_KIND = "order";

export function orderActorId(orderId: string): string {
  return `${ORDER_KIND}/${orderId}`;
}

export type OrderMessage =
  | { readonly op: "place"; readonly cmd: PlaceCommand }
  | { readonly op: "get" }
  | { readonly op: "pay"; readonly paymentReference: string }
  | { readonly op: "cancel"; readonly reason: string }
  | { readonly op: "ship"; readonly cmd: ShipCommand }
  | { readonly op: "track"; readonly cmd: TrackCommand }
  | { readonly op: "return"; readonly cmd: ReturnCommand };

type Ctx = TurnContext<OrderState>;

/** Errors after which a saga step is retried later rather than decided. */
const TRANSIENT = new Set<QmError["code"]>(["UNAVAILABLE", "OVERLOADED", "DEADLINE_EXCEEDED", "INTERNAL", "NOT_OWNER", "FENCED"]);

export const orderBehavior: ActorBehavior<OrderState, OrderMessage> = {
  kind: ORDER_KIND,
  initialState: newOrderState,
  applyEvent: (state, event) => applyOrderEvent(state, event as OrderEvent),
  // Order state is small and plain: the snapshot is the state itself.
  toSnapshot: (state) => state,
  fromSnapshot: (_key, snapshot) => snapshot as OrderState,
  snapshotWeight: orderWeight,
  wakeAtMs: orderWakeAtMs,

  async onTurnStart(ctx) {
    // A step left open by a crash or a transient failure is finished before
    // anything else; then an unpaid order past its deadline expires.
    if (ctx.state.saga !== null) await runSaga(ctx);
    if (ctx.state.saga === null) {
      emitAll(ctx, decideExpire(ctx.state, ctx.nowMs));
      if (ctx.state.saga !== null) await runSaga(ctx);
    }
  },

  async handle(ctx, m): Promise<unknown> {
    const state = ctx.state;
    switch (m.op) {
      case "get":
        return viewOrder(state);
      case "place":
        return step(ctx, decidePlace(state, m.cmd, ctx.nowMs));
      case "pay": {
        const reply = await step(ctx, decidePay(state, m.paymentReference, ctx.nowMs));
        // A pay that found the deadline passed expired the order instead.
        if (!(reply instanceof QmError) && state.status === "EXPIRED") return illegalTransition("order", state.status, "pay");
        return reply;
      }
      case "cancel":
        return step(ctx, decideCancel(state, m.reason, ctx.nowMs));
      case "ship":
        return step(ctx, decideShip(state, m.cmd, ctx.nowMs));
      case "track":
        return step(ctx, decideTrack(state, m.cmd, ctx.nowMs));
      case "return":
        return step(ctx, decideReturn(state, m.cmd, ctx.nowMs));
    }
  },
};

function emitAll(ctx: Ctx, events: readonly OrderEvent[]): void {
  for (const e of events) ctx.emit(e);
}

/** Emits a decision, runs the saga step it opened, and answers with the order or the step's failure. */
async function step(ctx: Ctx, events: readonly OrderEvent[]): Promise<OrderView | QmError> {
  emitAll(ctx, events);
  const stalled = await runSaga(ctx);
  if (stalled !== undefined) return stalled;
  const failure = ctx.state.failure;
  if (failure !== null) return failureError(failure, ctx.state);
  return viewOrder(ctx.state);
}

function failureError(failure: LineRejection, state: OrderState): QmError {
  const code = failure.reason === "INSUFFICIENT_STOCK" ? "INSUFFICIENT_STOCK" : "FAILED_PRECONDITION";
  return new QmError(code, `${failure.message}; order ${state.orderId} is ${viewOrder(state).state}`, {
    sku_id: failure.skuId,
    state: viewOrder(state).state,
  });
}

/**
 * Carries out open saga steps until none is left. Returns the error that
 * stalled a step (a SKU actor unavailable or overloaded): the step stays open
 * and durable, and the order's wake-up retries it shortly.
 */
async function runSaga(ctx: Ctx): Promise<QmError | undefined> {
  for (let guard = 0; ctx.state.saga !== null; guard++) {
    if (guard > 8) throw new QmError("INTERNAL", `order ${ctx.state.orderId}: saga does not settle`);
    await ctx.persist(); // intent is durable before any SKU hears of it
    crashPoint("order.saga.intent");
    const saga = ctx.state.saga;
    const state = ctx.state;
    switch (saga.kind) {
      case "reserve": {
        const ttlMs = Math.max(TTL_MS_MIN, state.createdAtMs + state.reservationTtlMs - ctx.nowMs);
        const results = await askAll(
          ctx,
          state.lines.map((l) => [l.skuId, { op: "reserve", cmd: { id: l.reservationId, quantity: l.quantity, locationId: "", ttlMs } }]),
        );
        const stalled = firstTransient(results);
        if (stalled !== undefined) return stalled;
        const rejections: LineRejection[] = [];
        results.forEach((r, i) => {
          const line = state.lines[i];
          if (line === undefined) return;
          if (r instanceof QmError) rejections.push(rejection(line.skuId, r));
          else if (r.state !== "RESERVED") {
            rejections.push({ skuId: line.skuId, reason: "RESERVATION_ENDED", message: `reservation is ${r.state}` });
          }
        });
        if (rejections.length === 0) {
          ctx.emit({ t: "reserved", locations: results.map((r) => (r as ReservationView).locationId), atMs: ctx.nowMs });
        } else {
          ctx.emit({ t: "reserveFailed", rejections, atMs: ctx.nowMs });
        }
        break;
      }
      case "commit": {
        const results = await askAll(ctx, state.lines.map((l) => [l.skuId, { op: "commit", id: l.reservationId }]));
        const stalled = firstTransient(results);
        if (stalled !== undefined) return stalled;
        const failedAt = results.findIndex((r) => r instanceof QmError);
        if (failedAt < 0) ctx.emit({ t: "paid", atMs: ctx.nowMs });
        else {
          const line = state.lines[failedAt];
          ctx.emit({ t: "payFailed", failure: rejection(line?.skuId ?? "", results[failedAt] as QmError), atMs: ctx.nowMs });
        }
        break;
      }
      case "release": {
        const results = await askAll(ctx, state.lines.map((l) => [l.skuId, { op: "release", id: l.reservationId }]));
        // A reservation that was never made (its SKU refused it) has nothing to release.
        const blocking = results.find((r) => r instanceof QmError && r.code !== "NOT_FOUND" && r.code !== "ILLEGAL_TRANSITION");
        if (blocking instanceof QmError) return blocking;
        ctx.emit({ t: "released", atMs: ctx.nowMs });
        break;
      }
      case "ship": {
        const shipment = state.shipments.find((s) => s.shipmentId === saga.shipmentId);
        if (shipment === undefined) throw new QmError("INTERNAL", `ship step for unknown shipment ${saga.shipmentId}`);
        const results = await askAll(
          ctx,
          shipment.lines.map((sl) => [
            sl.skuId,
            { op: "fulfil", id: reservationOf(state, sl.skuId), shipmentId: shipment.shipmentId, quantity: sl.quantity },
          ]),
        );
        const stalled = firstTransient(results);
        if (stalled !== undefined) return stalled;
        const failedAt = results.findIndex((r) => r instanceof QmError);
        if (failedAt < 0) ctx.emit({ t: "shipped", shipmentId: shipment.shipmentId, atMs: ctx.nowMs });
        else {
          const failure = rejection(shipment.lines[failedAt]?.skuId ?? "", results[failedAt] as QmError);
          ctx.emit({ t: "shipFailed", shipmentId: shipment.shipmentId, failure, atMs: ctx.nowMs });
        }
        break;
      }
      case "unship": {
        const shipment = state.shipments.find((s) => s.shipmentId === saga.shipmentId);
        const lines = shipment?.lines ?? [];
        const results = await askAll(
          ctx,
          lines.map((sl) => [sl.skuId, { op: "unfulfil", id: reservationOf(state, sl.skuId), shipmentId: saga.shipmentId }]),
        );
        const blocking = results.find((r) => r instanceof QmError);
        if (blocking instanceof QmError) return blocking;
        ctx.emit({ t: "unshipped", shipmentId: saga.shipmentId, atMs: ctx.nowMs });
        break;
      }
      case "restock": {
        const ret = state.returns.find((r) => r.returnId === saga.returnId);
        if (ret === undefined) throw new QmError("INTERNAL", `restock step for unknown return ${saga.returnId}`);
        if (ret.restock) {
          const results = await askAll<LevelView>(
            ctx,
            ret.lines.map((rl) => [
              rl.skuId,
              {
                op: "adjust",
                cmd: {
                  locationId: lineOf(state, rl.skuId).locationId,
                  delta: rl.quantity,
                  reason: "RETURNED",
                  key: `return/${state.orderId}/${ret.returnId}`,
                },
                note: `return ${ret.returnId} of order ${state.orderId}`,
              },
            ]),
          );
          const blocking = results.find((r) => r instanceof QmError);
          if (blocking instanceof QmError) return blocking;
        }
        ctx.emit({ t: "returned", returnId: ret.returnId, atMs: ctx.nowMs });
        break;
      }
    }
  }
  return undefined;
}

function lineOf(state: OrderState, skuId: string): OrderState["lines"][number] {
  const line = state.lines.find((l) => l.skuId === skuId);
  if (line === undefined) throw new QmError("INTERNAL", `order ${state.orderId} has no line for ${skuId}`);
  return line;
}

function reservationOf(state: OrderState, skuId: string): string {
  return lineOf(state, skuId).reservationId;
}

/** Asks every SKU at once; each result is the reply or the QmError it failed with. */
async function askAll<R = ReservationView>(
  ctx: Ctx,
  requests: readonly (readonly [string, SkuMessage])[],
): Promise<(R | QmError)[]> {
  const settled = await Promise.allSettled(requests.map(([skuId, message]) => ctx.ask<R>(skuActorId(skuId), message)));
  crashPoint("order.saga.outcome");
  return settled.map((s) =>
    s.status === "fulfilled"
      ? s.value
      : s.reason instanceof QmError
        ? s.reason
        : new QmError("INTERNAL", s.reason instanceof Error ? s.reason.message : String(s.reason)),
  );
}

function firstTransient(results: readonly unknown[]): QmError | undefined {
  return results.find((r): r is QmError => r instanceof QmError && TRANSIENT.has(r.code));
}

function rejection(skuId: string, error: QmError): LineRejection {
  const reason = error.code === "NOT_FOUND" ? "SKU_NOT_FOUND" : error.code;
  return { skuId, reason, message: error.message };
}
