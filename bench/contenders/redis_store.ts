// The Redis contender: each call one Lua script, which Redis runs atomically,
// so the check and the decrement cannot interleave with another caller's.
// Durability is the server's: with `appendfsync always` Redis writes and
// fsyncs the AOF before it answers (one fsync per event-loop turn, shared by
// the clients served in it); with persistence off an answer may be lost.
// Key layout is for one Redis server (the scripts read keys they are not
// passed, which Redis Cluster would refuse).

import { Redis } from "ioredis";
import { skuIdFor } from "../reserve_frames";
import type { CheckoutLine, StockTotals, Store, StoreAdmin, StoreOutcome } from "./store";

/** Pipelined commands per round trip while seeding and reading totals. */
const PIPELINE_CHUNK = 10_000;

const RESERVE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 'NOT_FOUND' end
local q = redis.call('HGET', KEYS[2], 'q')
if q then if tonumber(q) == tonumber(ARGV[1]) then return 'OK' else return 'ALREADY_EXISTS' end end
local h = redis.call('HMGET', KEYS[1], 'on_hand', 'reserved', 'committed')
if tonumber(h[1]) - tonumber(h[2]) - tonumber(h[3]) < tonumber(ARGV[1]) then return 'INSUFFICIENT_STOCK' end
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[1])
redis.call('HSET', KEYS[2], 'q', ARGV[1], 'state', 'RESERVED', 'expires', ARGV[2])
return 'OK'`;

// KEYS[1] the order, KEYS[2..] the SKUs; ARGV the quantities in the same order.
const CREATE_ORDER = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 'OK' end
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'on_hand', 'reserved', 'committed')
  if not h[1] then return 'NOT_FOUND' end
  if tonumber(h[1]) - tonumber(h[2]) - tonumber(h[3]) < tonumber(ARGV[i - 1]) then return 'INSUFFICIENT_STOCK' end
end
redis.call('HSET', KEYS[1], '_state', 'AWAITING_PAYMENT')
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], 'reserved', ARGV[i - 1])
  redis.call('HSET', KEYS[1], KEYS[i], ARGV[i - 1])
end
return 'OK'`;

const CONFIRM_PAYMENT = `
local state = redis.call('HGET', KEYS[1], '_state')
if not state then return 'NOT_FOUND' end
if state == 'PAID' then return 'OK' end
if state ~= 'AWAITING_PAYMENT' then return 'ILLEGAL_STATE' end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] ~= '_state' then
    redis.call('HINCRBY', fields[i], 'reserved', -tonumber(fields[i + 1]))
    redis.call('HINCRBY', fields[i], 'committed', tonumber(fields[i + 1]))
  end
end
redis.call('HSET', KEYS[1], '_state', 'PAID')
return 'OK'`;

type ScriptedRedis = Redis & {
  qmReserve(sku: string, reservation: string, quantity: number, expires: number): Promise<string>;
  qmCreateOrder(...args: (string | number)[]): Promise<string>;
  qmConfirmPayment(order: string): Promise<string>;
};

function outcome(value: string): StoreOutcome {
  if (value === "OK" || value === "NOT_FOUND" || value === "ALREADY_EXISTS" || value === "INSUFFICIENT_STOCK" || value === "ILLEGAL_STATE") return value;
  throw new Error(`unexpected answer from Redis: ${value}`);
}

const skuKey = (skuId: string): string => `sku:${skuId}`;

export class RedisStore implements Store {
  private readonly redis: ScriptedRedis;

  constructor(host: string, port: number) {
    const redis = new Redis({ host, port, lazyConnect: true, enableAutoPipelining: true, maxRetriesPerRequest: 1 });
    redis.defineCommand("qmReserve", { numberOfKeys: 2, lua: RESERVE });
    redis.defineCommand("qmCreateOrder", { lua: CREATE_ORDER });
    redis.defineCommand("qmConfirmPayment", { numberOfKeys: 1, lua: CONFIRM_PAYMENT });
    this.redis = redis as ScriptedRedis;
  }

  async start(): Promise<void> {
    await this.redis.connect();
  }

  async reserve(id: string, skuId: string, quantity: number, ttlSeconds: number): Promise<StoreOutcome> {
    return outcome(await this.redis.qmReserve(skuKey(skuId), `res:${skuId}:${id}`, quantity, Date.now() + ttlSeconds * 1000));
  }

  async createOrder(orderId: string, lines: readonly CheckoutLine[]): Promise<StoreOutcome> {
    const keys = [`order:${orderId}`, ...lines.map((l) => skuKey(l.skuId))];
    return outcome(await this.redis.qmCreateOrder(keys.length, ...keys, ...lines.map((l) => l.quantity)));
  }

  async confirmPayment(orderId: string): Promise<StoreOutcome> {
    return outcome(await this.redis.qmConfirmPayment(`order:${orderId}`));
  }

  async stop(): Promise<void> {
    await this.redis.quit();
  }
}

export class RedisAdmin implements StoreAdmin {
  private readonly redis: Redis;

  constructor(host: string, port: number) {
    this.redis = new Redis({ host, port, maxRetriesPerRequest: 1 });
  }

  async seed(hotSkuId: string, hotUnits: number, skuCount: number, skuUnits: number): Promise<void> {
    await this.redis.flushall();
    await this.redis.hset(skuKey(hotSkuId), { on_hand: hotUnits, reserved: 0, committed: 0 });
    for (let from = 0; from < skuCount; from += PIPELINE_CHUNK) {
      const pipeline = this.redis.pipeline();
      for (let i = from; i < Math.min(skuCount, from + PIPELINE_CHUNK); i++) pipeline.hset(skuKey(skuIdFor(i)), { on_hand: skuUnits, reserved: 0, committed: 0 });
      await pipeline.exec();
    }
  }

  async totals(which: "hot" | "catalogue", hotSkuId: string, skuCount: number): Promise<StockTotals> {
    const ids = which === "hot" ? [hotSkuId] : Array.from({ length: skuCount }, (_, i) => skuIdFor(i));
    let onHand = 0;
    let reserved = 0;
    let committed = 0;
    let oversold = 0;
    for (let from = 0; from < ids.length; from += PIPELINE_CHUNK) {
      const pipeline = this.redis.pipeline();
      for (const id of ids.slice(from, from + PIPELINE_CHUNK)) pipeline.hmget(skuKey(id), "on_hand", "reserved", "committed");
      for (const [error, value] of (await pipeline.exec()) ?? []) {
        if (error !== null) throw error;
        const [h, r, c] = value as (string | null)[];
        onHand += Number(h ?? 0);
        reserved += Number(r ?? 0);
        committed += Number(c ?? 0);
        if (Number(r ?? 0) + Number(c ?? 0) > Number(h ?? 0)) oversold += 1;
      }
    }
    return { onHand, reserved, committed, oversold };
  }

  async close(): Promise<void> {
    await this.redis.quit();
  }
}
