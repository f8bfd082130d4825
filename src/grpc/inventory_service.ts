// InventoryService: validate, ask the SKU actor, convert the view.

import { skuActorId, type AdjustmentPage, type ReserveManyReply, type SkuMessage } from "../actors/inventory/sku_actor";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import type { Caller } from "../security/caller";
import type { AvailabilityView, LevelView, ReservationView, ReserveColumns, SkuView } from "../domain/sku";
import { QmError } from "../errors";
import type {
  AdjustStockRequest,
  CommitReservationRequest,
  GetAvailabilityRequest,
  GetAvailabilityResponse,
  GetReservationRequest,
  GetSkuRequest,
  InventoryServiceServer,
  ListAdjustmentsRequest,
  ReleaseReservationRequest,
  ReserveBatchRequest,
  ReserveBatchResponse,
  ReserveBatchResult,
  Reservation,
  ReserveRequest,
  UpsertSkuRequest,
} from "../gen/quartermaster/v1/inventory";
import { toAvailabilityItem, toListAdjustmentsResponse, toReservation, toSku, toStockLevel } from "./convert";
import { ReserveBatchReply } from "./reserve_batch_reply";
import { toItemError } from "./status_mapping";
import type { Handler, UnaryFactory } from "./unary";
import {
  validateAdjustStock,
  validateGetAvailability,
  validateListAdjustments,
  validateReservationRef,
  validateReserve,
  validateReserveBatch,
  type ValidReserveBatch,
  validateSkuId,
  validateUpsertSku,
} from "./validation";

export function inventoryService(router: ActorRouter, unary: UnaryFactory): InventoryServiceServer {
  // Every id names a SKU of the caller's tenant; another tenant's SKU of the same id is a different actor.
  const ask = <R>(skuId: string, message: SkuMessage, options: AskOptions, caller: Caller): Promise<R> =>
    router.ask<R>(skuActorId(skuId, caller.tenant), message, options);
  return {
    upsertSku: unary("UpsertSku", async (r: UpsertSkuRequest, o, c) => {
      const { skuId, patch } = validateUpsertSku(r);
      return toSku(await ask<SkuView>(skuId, { op: "define", patch }, o, c));
    }),
    getSku: unary("GetSku", async (r: GetSkuRequest, o, c) => toSku(await ask<SkuView>(validateSkuId(r.skuId), { op: "get" }, o, c))),
    adjustStock: unary("AdjustStock", async (r: AdjustStockRequest, o, c) => {
      const { skuId, cmd, note } = validateAdjustStock(r);
      return toStockLevel(await ask<LevelView>(skuId, { op: "adjust", cmd, note }, o, c));
    }),
    listAdjustments: unary("ListAdjustments", async (r: ListAdjustmentsRequest, o, c) => {
      const { skuId, afterSeq, limit } = validateListAdjustments(r);
      return toListAdjustmentsResponse(skuId, await ask<AdjustmentPage>(skuId, { op: "listAdjustments", afterSeq, limit }, o, c));
    }),
    getAvailability: unary("GetAvailability", async (r: GetAvailabilityRequest, o, c): Promise<GetAvailabilityResponse> => {
      const skuIds = validateGetAvailability(r);
      const views = await Promise.all(skuIds.map((id) => ask<AvailabilityView>(id, { op: "availability" }, o, c)));
      return { items: views.map(toAvailabilityItem) };
    }),
    reserve: unary("Reserve", reserveHandler(router)),
    reserveBatch: unary("ReserveBatch", async (r: ReserveBatchRequest, o, c) => reserveBatch(router, validateReserveBatch(r), o, c.tenant)),
    getReservation: unary("GetReservation", async (r: GetReservationRequest, o, c) => {
      const { skuId, id } = validateReservationRef(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "getReservation", id }, o, c));
    }),
    commitReservation: unary("CommitReservation", async (r: CommitReservationRequest, o, c) => {
      const { skuId, id } = validateReservationRef(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "commit", id }, o, c));
    }),
    releaseReservation: unary("ReleaseReservation", async (r: ReleaseReservationRequest, o, c) => {
      const { skuId, id } = validateReservationRef(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "release", id }, o, c));
    }),
  };
}

/** Reserve's handler: grpc-js's path and the direct path (direct_reserve.ts) both run this one. */
export function reserveHandler(router: ActorRouter): Handler<ReserveRequest, Reservation> {
  return async (r, o, c) => {
    const { skuId, cmd } = validateReserve(r);
    return toReservation(await router.ask<ReservationView>(skuActorId(skuId, c.tenant), { op: "reserve", cmd }, o));
  };
}

/**
 * One message per SKU carrying all its items, so one turn decides them and one
 * sync makes them durable. A SKU that cannot be asked (overloaded, deadline,
 * not owned here) fails its own items only. Anything but a QmError is a bug
 * and fails the call, which the caller may retry: every item is idempotent.
 * The answer stays in columns until it is encoded (ReserveBatchReply).
 */
async function reserveBatch(router: ActorRouter, items: ValidReserveBatch, o: AskOptions, tenant: string): Promise<ReserveBatchResponse> {
  const reply = new ReserveBatchReply(items);
  const failed = (error: QmError): ReserveBatchResult => ({ outcome: { $case: "error", error: toItemError(error) } });
  await Promise.all(
    [...groupBySku(items)].map(async ([skuId, group]) => {
      try {
        const answer = await router.ask<ReserveManyReply>(skuActorId(skuId, tenant), { op: "reserveMany", cols: group.cols } satisfies SkuMessage, o);
        const n = group.indexes.length;
        if (answer.locations.length !== n || answer.others.length !== n) throw new Error(`sku ${skuId} answered ${answer.locations.length} of ${n} items`);
        for (let k = 0; k < n; k++) {
          const i = group.indexes[k] as number;
          const locationId = answer.locations[k];
          if (locationId !== null && locationId !== undefined) {
            reply.grant(i, locationId, answer.atMs);
            continue;
          }
          const outcome = answer.others[k];
          if (outcome === null || outcome === undefined) throw new Error(`sku ${skuId} gave no answer for item ${k}`);
          reply.answer(i, outcome.ok ? { outcome: { $case: "reservation", reservation: toReservation(outcome.view) } } : failed(QmError.fromJSON(outcome.error)));
        }
      } catch (error) {
        if (!(error instanceof QmError)) throw error;
        for (const i of group.indexes) reply.answer(i, failed(error));
      }
    }),
  );
  return reply;
}

interface SkuGroup {
  /** The request positions of this SKU's items, in request order. */
  readonly indexes: readonly number[];
  readonly cols: ReserveColumns;
}

/** The items per SKU, in request order; a batch on one SKU (the usual one) passes its columns on as they are. */
function groupBySku(items: ValidReserveBatch): Map<string, SkuGroup> {
  const n = items.ids.length;
  const first = items.skuIds[0] ?? "";
  let oneSku = true;
  for (let i = 1; i < n && oneSku; i++) oneSku = items.skuIds[i] === first;
  if (oneSku) {
    const indexes = Array.from({ length: n }, (_, i) => i);
    return new Map([[first, { indexes, cols: { ids: items.ids, quantities: items.quantities, locationIds: items.locationIds, ttlsMs: items.ttlsMs } }]]);
  }
  const groups = new Map<string, { indexes: number[]; cols: { ids: string[]; quantities: number[]; locationIds: string[]; ttlsMs: number[] } }>();
  for (let i = 0; i < n; i++) {
    const skuId = items.skuIds[i] as string;
    let group = groups.get(skuId);
    if (group === undefined) {
      group = { indexes: [], cols: { ids: [], quantities: [], locationIds: [], ttlsMs: [] } };
      groups.set(skuId, group);
    }
    group.indexes.push(i);
    group.cols.ids.push(items.ids[i] as string);
    group.cols.quantities.push(items.quantities[i] as number);
    group.cols.locationIds.push(items.locationIds[i] as string);
    group.cols.ttlsMs.push(items.ttlsMs[i] as number);
  }
  return groups;
}
