// Request builders for the workloads bench/compare.ts runs beyond the hot and
// uniform Reserve of reserve_frames.ts: Zipf-distributed SKUs, 3-line
// checkouts (CreateOrder, then ConfirmPayment of the same order), and
// ReserveBatch calls. Checkout and batch bodies are encoded per call with the
// generated encoder: at their call rates (hundreds to a few thousand per
// second) that costs the generator's core a few percent, and they vary in more
// places than a template would be worth.

import { ReserveBatchRequest } from "../src/gen/quartermaster/v1/inventory";
import { ConfirmPaymentRequest, CreateOrderRequest } from "../src/gen/quartermaster/v1/order";
import { RESERVE_BATCH_ITEMS_MAX } from "../src/limits";
import { BENCH_TTL_SECONDS, type FrameFactory, grpcFrame, skuIdFor } from "./reserve_frames";

export const CREATE_ORDER_PATH = "/quartermaster.v1.OrderService/CreateOrder";
export const CONFIRM_PAYMENT_PATH = "/quartermaster.v1.OrderService/ConfirmPayment";
export const RESERVE_BATCH_PATH = "/quartermaster.v1.InventoryService/ReserveBatch";
/** Lines per checkout, as the product owner's workload states it. */
export const CHECKOUT_LINES = 3;
/** Orders wait this long for payment: far beyond a run, so no expiry adds work while it is measured. */
const CHECKOUT_PAYMENT_TIMEOUT_SECONDS = 3600;

/**
 * Zipf(s) over ranks 1..n as a cumulative table, sampled by binary search:
 * O(log n) per draw and 8n bytes once (800 KB for 100,000 SKUs). Rank 1 is
 * sku-000000, so the hottest SKUs are the lowest ids.
 */
export function zipfSampler(n: number, s: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let k = 1; k <= n; k++) {
    sum += 1 / k ** s;
    cdf[k - 1] = sum;
  }
  for (let i = 0; i < n; i++) cdf[i] = (cdf[i] ?? 0) / sum;
  return (): number => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((cdf[mid] ?? 1) < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

export function orderIdFor(runTag: string, sequence: number): string {
  return `bench-${runTag}-${sequence}`;
}

/** CreateOrder of 3 distinct SKUs of the first skuCount, 1 unit each. */
export function createOrderFrameFactory(runTag: string, skuCount: number, random: () => number): FrameFactory {
  if (skuCount < CHECKOUT_LINES) throw new Error(`checkout needs at least ${CHECKOUT_LINES} SKUs`);
  return (sequence: number): Buffer => {
    const picked: number[] = [];
    while (picked.length < CHECKOUT_LINES) {
      const index = Math.floor(random() * skuCount);
      if (!picked.includes(index)) picked.push(index);
    }
    return grpcFrame(
      CreateOrderRequest.encode({
        orderId: orderIdFor(runTag, sequence),
        customerId: "bench",
        lines: picked.map((i) => ({ skuId: skuIdFor(i), quantity: 1 })),
        paymentTimeout: { seconds: CHECKOUT_PAYMENT_TIMEOUT_SECONDS, nanos: 0 },
      }).finish(),
    );
  };
}

export function confirmPaymentFrameFactory(runTag: string): FrameFactory {
  return (sequence: number): Buffer =>
    grpcFrame(ConfirmPaymentRequest.encode({ orderId: orderIdFor(runTag, sequence), paymentReference: `pay-${sequence}` }).finish());
}

/** ReserveBatch of `items` one-unit reservations: all on hotSkuId, or on SKUs skuIndexFor picks. */
export function reserveBatchFrameFactory(runTag: string, items: number, hotSkuId: string | null, skuIndexFor: () => number): FrameFactory {
  if (!Number.isInteger(items) || items < 1 || items > RESERVE_BATCH_ITEMS_MAX) throw new Error(`batch items must be in [1, ${RESERVE_BATCH_ITEMS_MAX}]`);
  return (sequence: number): Buffer =>
    grpcFrame(
      ReserveBatchRequest.encode({
        items: Array.from({ length: items }, (_, i) => ({
          reservationId: `bench-${runTag}-${sequence}-${i}`,
          skuId: hotSkuId ?? skuIdFor(skuIndexFor()),
          quantity: 1,
          locationId: "",
          ttl: { seconds: BENCH_TTL_SECONDS, nanos: 0 },
        })),
      }).finish(),
    );
}
