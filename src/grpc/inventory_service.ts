// InventoryService: validate, ask the SKU actor, convert the view.

import { skuActorId, type AdjustmentPage, type SkuMessage } from "../actors/inventory/sku_actor";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import type { AvailabilityView, LevelView, ReservationView, SkuView } from "../domain/sku";
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
  ReserveRequest,
  UpsertSkuRequest,
} from "../gen/quartermaster/v1/inventory";
import { toAvailabilityItem, toListAdjustmentsResponse, toReservation, toSku, toStockLevel } from "./convert";
import type { UnaryFactory } from "./unary";
import {
  validateAdjustStock,
  validateGetAvailability,
  validateListAdjustments,
  validateReservationRef,
  validateReserve,
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
