// InventoryService: validate, ask the SKU actor, convert the view.

import { skuActorId, type AdjustmentPage, type ReserveBatchOutcome, type SkuMessage } from "../actors/inventory/sku_actor";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import type { AvailabilityView, LevelView, ReservationView, SkuView } from "../domain/sku";
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
  ReserveRequest,
  UpsertSkuRequest,
} from "../gen/quartermaster/v1/inventory";
import { toAvailabilityItem, toListAdjustmentsResponse, toReservation, toSku, toStockLevel } from "./convert";
import { toItemError } from "./status_mapping";
import type { UnaryFactory } from "./unary";
import {
  validateAdjustStock,
  validateGetAvailability,
  validateListAdjustments,
  validateReservationRef,
  validateReserve,
  validateReserveBatch,
  type ValidReserve,
  validateSkuId,
  validateUpsertSku,
} from "./validation";

export function inventoryService(router: ActorRouter, unary: UnaryFactory): InventoryServiceServer {
  const ask = <R>(skuId: string, message: SkuMessage, options: AskOptions): Promise<R> =>
    router.ask<R>(skuActorId(skuId), message, options);
  return {
    upsertSku: unary("UpsertSku", async (r: UpsertSkuRequest, o) => {
      const { skuId, patch } = validateUpsertSku(r);
      return toSku(await ask<SkuView>(skuId, { op: "define", patch }, o));
    }),
    getSku: unary("GetSku", async (r: GetSkuRequest, o) => toSku(await ask<SkuView>(validateSkuId(r.skuId), { op: "get" }, o))),
    adjustStock: unary("AdjustStock", async (r: AdjustStockRequest, o) => {
      const { skuId, cmd, note } = validateAdjustStock(r);
      return toStockLevel(await ask<LevelView>(skuId, { op: "adjust", cmd, note }, o));
    }),
    listAdjustments: unary("ListAdjustments", async (r: ListAdjustmentsRequest, o) => {
      const { skuId, afterSeq, limit } = validateListAdjustments(r);
      return toListAdjustmentsResponse(skuId, await ask<AdjustmentPage>(skuId, { op: "listAdjustments", afterSeq, limit }, o));
    }),
    getAvailability: unary("GetAvailability", async (r: GetAvailabilityRequest, o): Promise<GetAvailabilityResponse> => {
      const skuIds = validateGetAvailability(r);
      const views = await Promise.all(skuIds.map((id) => ask<AvailabilityView>(id, { op: "availability" }, o)));
      return { items: views.map(toAvailabilityItem) };
    }),
    reserve: unary("Reserve", async (r: ReserveRequest, o) => {
      const { skuId, cmd } = validateReserve(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "reserve", cmd }, o));
    }),
    reserveBatch: unary("ReserveBatch", async (r: ReserveBatchRequest, o) => reserveBatch(router, validateReserveBatch(r), o)),
    getReservation: unary("GetReservation", async (r: GetReservationRequest, o) => {
      const { skuId, id } = validateReservationRef(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "getReservation", id }, o));
    }),
    commitReservation: unary("CommitReservation", async (r: CommitReservationRequest, o) => {
      const { skuId, id } = validateReservationRef(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "commit", id }, o));
    }),
    releaseReservation: unary("ReleaseReservation", async (r: ReleaseReservationRequest, o) => {
      const { skuId, id } = validateReservationRef(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "release", id }, o));
    }),
  };
}

/**
 * One message per SKU carrying all its items, so one turn decides them and one
 * sync makes them durable. A SKU that cannot be asked (overloaded, deadline,
 * not owned here) fails its own items only. Anything but a QmError is a bug
 * and fails the call, which the caller may retry: every item is idempotent.
 */
async function reserveBatch(router: ActorRouter, items: readonly ValidReserve[], o: AskOptions): Promise<ReserveBatchResponse> {
  const groups = new Map<string, { readonly indexes: number[]; readonly cmds: ValidReserve["cmd"][] }>();
  items.forEach((item, i) => {
    let group = groups.get(item.skuId);
    if (group === undefined) {
      group = { indexes: [], cmds: [] };
      groups.set(item.skuId, group);
    }
    group.indexes.push(i);
    group.cmds.push(item.cmd);
  });
  const results = new Array<ReserveBatchResult>(items.length);
  const failed = (error: QmError): ReserveBatchResult => ({ outcome: { $case: "error", error: toItemError(error) } });
  await Promise.all(
    [...groups].map(async ([skuId, group]) => {
      try {
        const message: SkuMessage = { op: "reserveBatch", cmds: group.cmds };
        const outcomes = await router.ask<ReserveBatchOutcome[]>(skuActorId(skuId), message, o);
        group.indexes.forEach((i, k) => {
          const outcome = outcomes[k];
          if (outcome === undefined) throw new Error(`sku ${skuId} answered ${outcomes.length} of ${group.indexes.length} items`);
          results[i] = outcome.ok
            ? { outcome: { $case: "reservation", reservation: toReservation(outcome.view) } }
            : failed(QmError.fromJSON(outcome.error));
        });
      } catch (error) {
        if (!(error instanceof QmError)) throw error;
        for (const i of group.indexes) results[i] = failed(error);
      }
    }),
  );
  const succeeded = results.reduce((n, r) => n + (r.outcome?.$case === "reservation" ? 1 : 0), 0);
  return { results, succeeded, failed: results.length - succeeded };
}
