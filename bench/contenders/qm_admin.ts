// Seeding and stock totals for Quartermaster, through its public API only:
// seeding as bench/run.ts does it, totals through GetAvailability.

import { credentials, Metadata } from "@grpc/grpc-js";
import { type GetAvailabilityResponse, InventoryServiceClient } from "../../src/gen/quartermaster/v1/inventory";
import { AVAILABILITY_SKUS_MAX } from "../../src/limits";
import { skuIdFor } from "../reserve_frames";
import { seedCatalogue, seedHotSku } from "../seed";
import type { StockTotals, StoreAdmin } from "./store";

const CALL_DEADLINE_MS = 30_000;

export class QmAdmin implements StoreAdmin {
  private readonly client: InventoryServiceClient;

  constructor(
    private readonly address: string,
    /** Extra hot SKUs to create with the hot SKU's stock (ReserveBatch runs on its own hot SKU). */
    private readonly extraHotSkuIds: readonly string[] = [],
    /** Where the seeding load goes: several comma-separated nodes of a cluster, or the address. */
    private readonly seedTargets: string = address,
  ) {
    this.client = new InventoryServiceClient(address, credentials.createInsecure());
  }

  async seed(hotSkuId: string, hotUnits: number, skuCount: number, skuUnits: number): Promise<void> {
    if (skuCount > 0) await seedCatalogue(this.seedTargets, skuCount, hotUnits, skuUnits);
    else await seedHotSku(this.address, hotUnits, hotSkuId);
    for (const id of this.extraHotSkuIds) await seedHotSku(this.address, hotUnits, id);
  }

  private availability(skuIds: string[]): Promise<GetAvailabilityResponse> {
    return new Promise((resolve, reject) => {
      this.client.getAvailability({ skuIds }, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (error, response) =>
        error !== null ? reject(error) : resolve(response),
      );
    });
  }

  async totals(which: "hot" | "catalogue", hotSkuId: string, skuCount: number): Promise<StockTotals> {
    const ids = which === "hot" ? [hotSkuId] : Array.from({ length: skuCount }, (_, i) => skuIdFor(i));
    let onHand = 0;
    let reserved = 0;
    let committed = 0;
    let oversold = 0;
    for (let from = 0; from < ids.length; from += AVAILABILITY_SKUS_MAX) {
      const response = await this.availability(ids.slice(from, from + AVAILABILITY_SKUS_MAX));
      for (const item of response.items) {
        if (!item.found) throw new Error(`${item.skuId} not found`);
        onHand += item.onHand;
        reserved += item.reserved;
        committed += item.committed;
        if (item.reserved + item.committed > item.onHand) oversold += 1;
      }
    }
    return { onHand, reserved, committed, oversold };
  }

  close(): Promise<void> {
    this.client.close();
    return Promise.resolve();
  }
}
