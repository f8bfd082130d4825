// What a comparison contender does behind the shared gRPC contract: the
// designs users could assemble themselves (a stateless service over
// PostgreSQL or Redis), reduced to the calls bench/compare.ts drives. Every
// outcome is a code the gRPC layer maps, so both stores answer exactly as
// Quartermaster would for the same case.

export type StoreOutcome = "OK" | "NOT_FOUND" | "ALREADY_EXISTS" | "INSUFFICIENT_STOCK" | "ILLEGAL_STATE";

export interface CheckoutLine {
  readonly skuId: string;
  readonly quantity: number;
}

export interface StockTotals {
  readonly onHand: number;
  readonly reserved: number;
  readonly committed: number;
  /** SKUs whose reserved + committed exceed on_hand: must be 0. */
  readonly oversold: number;
}

export interface Store {
  start(): Promise<void>;
  /** One durable decision: a row lock (pg) or one Lua script (Redis). Idempotent on (skuId, id). */
  reserve(id: string, skuId: string, quantity: number, ttlSeconds: number): Promise<StoreOutcome>;
  /** All lines or none, in one transaction; idempotent on orderId. */
  createOrder(orderId: string, lines: readonly CheckoutLine[]): Promise<StoreOutcome>;
  /** Moves the order's units from reserved to committed, in one transaction. */
  confirmPayment(orderId: string): Promise<StoreOutcome>;
  stop(): Promise<void>;
}

/** Seeding and checking, done by the driver straight against the database. */
export interface StoreAdmin {
  /** hot-0 with hotUnits, and sku-000000.. with skuUnits each. */
  seed(hotSkuId: string, hotUnits: number, skuCount: number, skuUnits: number): Promise<void>;
  totals(skuIds: "hot" | "catalogue", hotSkuId: string, skuCount: number): Promise<StockTotals>;
  close(): Promise<void>;
}
