// The PostgreSQL contender: the stateless service users would write, one
// transaction per call, the hot SKU's row locked with SELECT ... FOR UPDATE.
// Each call is one round trip to a plpgsql function, the cheapest form of that
// design (the same logic as several statements from the client costs a round
// trip each while the row stays locked). synchronous_commit stays on: every
// answer is durable, as Quartermaster's are.

import pg from "pg";
import { skuIdFor } from "../reserve_frames";
import type { CheckoutLine, StockTotals, Store, StoreAdmin, StoreOutcome } from "./store";

/** Connections the service keeps: enough for 64 callers on 2 cores, few enough that PostgreSQL's per-backend cost does not dominate. */
export const PG_POOL_SIZE_DEFAULT = 32;
/** Rows per INSERT while seeding. */
const SEED_CHUNK = 50_000;

export const PG_SCHEMA = `
CREATE TABLE sku (id text PRIMARY KEY, on_hand bigint NOT NULL, reserved bigint NOT NULL DEFAULT 0, committed bigint NOT NULL DEFAULT 0);
CREATE TABLE reservation (sku_id text NOT NULL, id text NOT NULL, quantity bigint NOT NULL, state text NOT NULL,
  expires_at timestamptz NOT NULL, PRIMARY KEY (sku_id, id));
CREATE TABLE orders (id text PRIMARY KEY, state text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_line (order_id text NOT NULL, sku_id text NOT NULL, quantity bigint NOT NULL, PRIMARY KEY (order_id, sku_id));

CREATE FUNCTION reserve(p_id text, p_sku text, p_qty bigint, p_ttl_s int) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s sku%ROWTYPE; q bigint;
BEGIN
  SELECT * INTO s FROM sku WHERE id = p_sku FOR UPDATE;
  IF NOT FOUND THEN RETURN 'NOT_FOUND'; END IF;
  SELECT quantity INTO q FROM reservation WHERE sku_id = p_sku AND id = p_id;
  IF FOUND THEN RETURN CASE WHEN q = p_qty THEN 'OK' ELSE 'ALREADY_EXISTS' END; END IF;
  IF s.on_hand - s.reserved - s.committed < p_qty THEN RETURN 'INSUFFICIENT_STOCK'; END IF;
  UPDATE sku SET reserved = reserved + p_qty WHERE id = p_sku;
  INSERT INTO reservation VALUES (p_sku, p_id, p_qty, 'RESERVED', now() + make_interval(secs => p_ttl_s));
  RETURN 'OK';
END $$;

-- Locks the lines' SKUs in id order, so two orders never wait on each other in a cycle.
CREATE FUNCTION create_order(p_id text, p_skus text[], p_qtys bigint[]) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s record; n int;
BEGIN
  PERFORM 1 FROM orders WHERE id = p_id;
  IF FOUND THEN RETURN 'OK'; END IF;
  SELECT count(*) INTO n FROM (SELECT id FROM sku WHERE id = ANY(p_skus) ORDER BY id FOR UPDATE) locked;
  IF n <> cardinality(p_skus) THEN RETURN 'NOT_FOUND'; END IF;
  FOR s IN SELECT sku.id, sku.on_hand - sku.reserved - sku.committed AS free, l.qty
           FROM sku JOIN unnest(p_skus, p_qtys) AS l(id, qty) ON l.id = sku.id LOOP
    IF s.free < s.qty THEN RETURN 'INSUFFICIENT_STOCK'; END IF;
  END LOOP;
  UPDATE sku SET reserved = reserved + l.qty FROM unnest(p_skus, p_qtys) AS l(id, qty) WHERE sku.id = l.id;
  INSERT INTO orders (id, state) VALUES (p_id, 'AWAITING_PAYMENT');
  INSERT INTO order_line SELECT p_id, l.id, l.qty FROM unnest(p_skus, p_qtys) AS l(id, qty);
  RETURN 'OK';
END $$;

CREATE FUNCTION confirm_payment(p_id text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text;
BEGIN
  SELECT state INTO st FROM orders WHERE id = p_id FOR UPDATE;
  IF NOT FOUND THEN RETURN 'NOT_FOUND'; END IF;
  IF st = 'PAID' THEN RETURN 'OK'; END IF;
  IF st <> 'AWAITING_PAYMENT' THEN RETURN 'ILLEGAL_STATE'; END IF;
  PERFORM 1 FROM sku WHERE id IN (SELECT sku_id FROM order_line WHERE order_id = p_id) ORDER BY id FOR UPDATE;
  UPDATE sku SET reserved = reserved - l.quantity, committed = committed + l.quantity
    FROM order_line l WHERE l.order_id = p_id AND sku.id = l.sku_id;
  UPDATE orders SET state = 'PAID' WHERE id = p_id;
  RETURN 'OK';
END $$;
`;

function outcome(value: unknown): StoreOutcome {
  if (value === "OK" || value === "NOT_FOUND" || value === "ALREADY_EXISTS" || value === "INSUFFICIENT_STOCK" || value === "ILLEGAL_STATE") return value;
  throw new Error(`unexpected answer from PostgreSQL: ${String(value)}`);
}

export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly database: string;
}

export class PgStore implements Store {
  private readonly pool: pg.Pool;

  constructor(target: PgTarget, poolSize = PG_POOL_SIZE_DEFAULT) {
    this.pool = new pg.Pool({ ...target, max: poolSize });
  }

  async start(): Promise<void> {
    await this.pool.query("SELECT 1");
  }

  private async call(text: string, values: unknown[]): Promise<StoreOutcome> {
    const result = await this.pool.query<{ r: string }>({ text, values });
    return outcome(result.rows[0]?.r);
  }

  reserve(id: string, skuId: string, quantity: number, ttlSeconds: number): Promise<StoreOutcome> {
    return this.call("SELECT reserve($1, $2, $3, $4) AS r", [id, skuId, quantity, ttlSeconds]);
  }

  createOrder(orderId: string, lines: readonly CheckoutLine[]): Promise<StoreOutcome> {
    return this.call("SELECT create_order($1, $2, $3) AS r", [orderId, lines.map((l) => l.skuId), lines.map((l) => l.quantity)]);
  }

  confirmPayment(orderId: string): Promise<StoreOutcome> {
    return this.call("SELECT confirm_payment($1) AS r", [orderId]);
  }

  async stop(): Promise<void> {
    await this.pool.end();
  }
}

export class PgAdmin implements StoreAdmin {
  private readonly client: pg.Client;
  private connected = false;

  constructor(target: PgTarget) {
    this.client = new pg.Client(target);
  }

  private async ready(): Promise<pg.Client> {
    if (!this.connected) {
      await this.client.connect();
      this.connected = true;
    }
    return this.client;
  }

  async createSchema(): Promise<void> {
    await (await this.ready()).query(PG_SCHEMA);
  }

  async seed(hotSkuId: string, hotUnits: number, skuCount: number, skuUnits: number): Promise<void> {
    const c = await this.ready();
    await c.query("TRUNCATE sku, reservation, orders, order_line");
    await c.query("INSERT INTO sku (id, on_hand) VALUES ($1, $2)", [hotSkuId, hotUnits]);
    for (let from = 0; from < skuCount; from += SEED_CHUNK) {
      const to = Math.min(skuCount, from + SEED_CHUNK);
      await c.query("INSERT INTO sku (id, on_hand) SELECT 'sku-' || lpad(i::text, 6, '0'), $3 FROM generate_series($1::int, $2::int - 1) i", [from, to, skuUnits]);
    }
    // The first lookups would otherwise plan against an empty table's statistics.
    await c.query("ANALYZE");
    if (skuCount > 0 && skuIdFor(0) !== "sku-000000") throw new Error("SKU ids out of step with reserve_frames");
  }

  async totals(which: "hot" | "catalogue", hotSkuId: string): Promise<StockTotals> {
    const c = await this.ready();
    const where = which === "hot" ? "id = $1" : "id <> $1";
    const r = await c.query<{ on_hand: string; reserved: string; committed: string; oversold: string }>(
      `SELECT coalesce(sum(on_hand), 0) AS on_hand, coalesce(sum(reserved), 0) AS reserved, coalesce(sum(committed), 0) AS committed,
              count(*) FILTER (WHERE reserved + committed > on_hand) AS oversold FROM sku WHERE ${where}`,
      [hotSkuId],
    );
    const row = r.rows[0];
    return {
      onHand: Number(row?.on_hand ?? 0),
      reserved: Number(row?.reserved ?? 0),
      committed: Number(row?.committed ?? 0),
      oversold: Number(row?.oversold ?? 0),
    };
  }

  async close(): Promise<void> {
    if (this.connected) await this.client.end();
    this.connected = false;
  }
}
