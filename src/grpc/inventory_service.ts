// InventoryService: validate, ask the SKU actor, convert the view.

import { skuActorId, type AdjustmentPage, type ReserveBatchOutcome, type SkuMessage } from "../actors/inventory/sku_actor";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import type { Caller } from "../security/caller";
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
    reserve: unary("Reserve", async (r: ReserveRequest, o, c) => {
      const { skuId, cmd } = validateReserve(r);
      return toReservation(await ask<ReservationView>(skuId, { op: "reserve", cmd }, o, c));
    }),
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

/**
 * One message per SKU carrying all its items, so one turn decides them and one
 * sync makes them durable. A SKU that cannot be asked (overloaded, deadline,
 * not owned here) fails its own items only. Anything but a QmError is a bug
 * and fails the call, which the caller may retry: every item is idempotent.
 */
async function reserveBatch(router: ActorRouter, items: readonly ValidReserve[], o: AskOptions, tenant: string): Promise<ReserveBatchResponse> {
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
        const outcomes = await router.ask<ReserveBatchOutcome[]>(skuActorId(skuId, tenant), message, o);
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
