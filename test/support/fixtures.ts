// Small helpers the integration and fault tests share.

import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { AdjustmentReason } from "../../src/gen/quartermaster/v1/inventory";
import { call, type Clients } from "./server_process";

/** Awaits a call that must fail with `code`; returns the error for further assertions. */
export async function expectFailure(promise: Promise<unknown>, code: GrpcStatus): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    const e = error as ServiceError;
    expect(e.code, e.details).to.equal(code);
    return e;
  }
  throw new Error(`expected status ${GrpcStatus[code]}, the call succeeded`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface SkuOptions {
  readonly safetyStock?: number;
  readonly allowBackorder?: boolean;
  readonly currency?: string;
}

/** Defines a SKU and, if onHand > 0, receives that many units at wh-1. */
export async function seedSku(c: Clients, skuId: string, onHand: number, options: SkuOptions = {}): Promise<void> {
  await call(c.inventory, "upsertSku", {
    skuId,
    title: `Item ${skuId}`,
    priceMinor: 1299,
    currency: options.currency ?? "EUR",
    safetyStock: options.safetyStock ?? 0,
    lowStockThreshold: 5,
    allowBackorder: options.allowBackorder ?? false,
    attributes: { colour: "blue" },
    updateMask: undefined,
  });
  if (onHand > 0) {
    await call(c.inventory, "adjustStock", {
      skuId,
      locationId: "wh-1",
      delta: onHand,
      reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
      note: "initial",
      idempotencyKey: "",
    });
  }
}
