// Seeds the catalogue the scenarios reserve from, through the public gRPC API.
//
// The hot SKU is created with a grpc-js client (two calls; its errors come
// with full messages). The numbered SKUs go through the load generator's raw
// HTTP/2 client instead: measured here, a grpc-js client spends about 360 us
// of CPU per call, so 200,000 seeding calls would take over a minute on the
// client alone. They are seeded in two passes (all UpsertSku, then all
// AdjustStock), so no SKU receives stock before it exists.

import { Metadata, type ServiceError, credentials } from "@grpc/grpc-js";
import {
  AdjustStockRequest,
  AdjustmentReason,
  InventoryServiceClient,
  UpsertSkuRequest,
} from "../src/gen/quartermaster/v1/inventory";
import { runLoad, type LoadResult } from "./h2_load";
import { grpcFrame, skuIdFor } from "./reserve_frames";

export const HOT_SKU_ID = "hot-0";
export const SEED_LOCATION_ID = "wh-1";
/** Enough for every reservation a hot run can make (the driver caps a hot run below LIVE_RESERVATIONS_PER_SKU_MAX). */
export const HOT_SKU_UNITS = 900_000_000;
/** A random run reserves about one unit per SKU; this leaves a wide margin. */
export const SKU_UNITS = 1_000;
/** Calls in flight while seeding: keeps the server busy without a deep queue in front of it. */
export const SEED_CONCURRENCY = 256;
const SEED_SESSIONS = 4;
/** Each seeding pass gives up after this long, whatever is left. */
export const SEED_PASS_TIMEOUT_MS = 10 * 60 * 1000;
const CALL_DEADLINE_MS = 30_000;
const PRICE_MINOR = 1_999;
const UPSERT_PATH = "/quartermaster.v1.InventoryService/UpsertSku";
const ADJUST_PATH = "/quartermaster.v1.InventoryService/AdjustStock";

export interface SeedResult {
  readonly skus: number;
  readonly elapsedMs: number;
  readonly callsPerSecond: number;
}

function upsertRequest(skuId: string): UpsertSkuRequest {
  return {
    skuId,
    title: `Benchmark item ${skuId}`,
    priceMinor: PRICE_MINOR,
    currency: "EUR",
    safetyStock: 0,
    lowStockThreshold: 0,
    allowBackorder: false,
    attributes: {},
    updateMask: undefined,
  };
}

function receiveRequest(skuId: string, units: number): AdjustStockRequest {
  return {
    skuId,
    locationId: SEED_LOCATION_ID,
    delta: units,
    reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
    note: "benchmark seed",
    // A rerun against the same data dir must not add the stock twice.
    idempotencyKey: `bench-seed-${skuId}`,
  };
}

function describe(error: ServiceError): string {
  return `${error.message} (grpc ${error.code})`;
}

/** Creates one SKU with hotUnits at wh-1 through grpc-js. */
export async function seedHotSku(address: string, hotUnits: number, skuId = HOT_SKU_ID): Promise<void> {
  const client = new InventoryServiceClient(address, credentials.createInsecure());
  try {
    await new Promise<void>((resolve, reject) => {
      client.upsertSku(upsertRequest(skuId), new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (error) =>
        error !== null ? reject(new Error(`UpsertSku ${skuId}: ${describe(error)}`)) : resolve(),
      );
    });
    await new Promise<void>((resolve, reject) => {
      client.adjustStock(
        receiveRequest(skuId, hotUnits),
        new Metadata(),
        { deadline: Date.now() + CALL_DEADLINE_MS },
        (error) => (error !== null ? reject(new Error(`AdjustStock ${skuId}: ${describe(error)}`)) : resolve()),
      );
    });
  } finally {
    client.close();
  }
}

async function seedPass(address: string, label: string, path: string, skuCount: number, body: (index: number) => Buffer): Promise<LoadResult> {
  const result = await runLoad({
    target: address,
    path,
    transport: "raw",
    sessions: SEED_SESSIONS,
    concurrency: Math.min(SEED_CONCURRENCY, skuCount),
    warmupMs: 0,
    durationMs: SEED_PASS_TIMEOUT_MS,
    requestsMax: skuCount,
    frameFactory: body,
  });
  if (result.fatal !== null) throw new Error(`seeding (${label}): ${result.fatal}`);
  if (result.errorTotal > 0) {
    throw new Error(`seeding (${label}): ${result.errorTotal} of ${skuCount} calls failed; first: ${result.firstError ?? "?"}`);
  }
  if (result.okTotal !== skuCount) {
    throw new Error(`seeding (${label}): only ${result.okTotal} of ${skuCount} calls done (stopped by ${result.stoppedBy})`);
  }
  return result;
}

/**
 * Creates the hot SKU and skuCount numbered SKUs with stock, and throws on any
 * failure: scenarios on a half-seeded catalogue would measure NOT_FOUND
 * answers, not reservations.
 */
export async function seedCatalogue(address: string, skuCount: number, hotUnits = HOT_SKU_UNITS, skuUnits = SKU_UNITS): Promise<SeedResult> {
  const startedAt = Date.now();
  // address may list several nodes (h2_load spreads its sessions over them); one grpc-js call needs one.
  await seedHotSku(address.split(",")[0] ?? address, hotUnits);
  await seedPass(address, "UpsertSku", UPSERT_PATH, skuCount, (index) =>
    grpcFrame(UpsertSkuRequest.encode(upsertRequest(skuIdFor(index))).finish()),
  );
  await seedPass(address, "AdjustStock", ADJUST_PATH, skuCount, (index) =>
    grpcFrame(AdjustStockRequest.encode(receiveRequest(skuIdFor(index), skuUnits)).finish()),
  );
  const elapsedMs = Date.now() - startedAt;
  // Two calls per SKU, the hot SKU's included.
  return { skus: skuCount + 1, elapsedMs, callsPerSecond: ((2 * skuCount + 2) * 1000) / elapsedMs };
}
