// Buckets shared by every node of a cluster, in Redis (QM_REDIS_URL). One Lua
// script refills and takes atomically, on Redis's clock (TIME), so nodes whose
// clocks disagree still share one rate; each key expires once its bucket would
// be full, so idle callers leave nothing behind. ioredis sends the script with
// EVALSHA and, on NOSCRIPT (a restarted or flushed Redis), with EVAL again.
//
// Redis is a rate-limit store, never the decider of anything durable: when it
// does not answer within RATE_LIMIT_REDIS_TIMEOUT_MS, or is unreachable, the
// call is answered by this node's own bucket with the limit divided by the
// cluster's members (counted in qm_rate_limit_fallbacks_total, logged at warn).
// Failing open would lift every limit exactly when a flood may be what took
// Redis down; failing closed would refuse every call for a cache's outage.

import { Redis } from "ioredis";
import type { Logger } from "pino";
import { QmError } from "../../errors";
import type { Lifecycle } from "../../lifecycle";
import { RATE_LIMIT_REDIS_RECONNECT_MAX_MS, RATE_LIMIT_REDIS_TIMEOUT_MS } from "../../limits";
import { type BucketLimit, dividedLimit, effectiveCost, type TakeOutcome } from "./bucket";
import type { MemoryBucketStore, RateLimitStore } from "./memory_store";

/**
 * KEYS[1] the bucket (a hash: t = tokens, ts = ms of the last refill);
 * ARGV perSecond, burst, cost (already clamped to burst).
 * Returns {allowed (0|1), retry_after_ms}. Mirrors refillAndTake (bucket.ts).
 */
export const REFILL_AND_TAKE_LUA = `
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local bucket = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(bucket[1])
local ts = tonumber(bucket[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = math.max(1, math.ceil((cost - tokens) * 1000 / rate))
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {allowed, retry}
`;

type ScriptedRedis = Redis & {
  qmRefillAndTake(key: string, perSecond: number, burst: number, cost: number): Promise<[number, number]>;
};

export interface RedisBucketStoreOptions {
  readonly url: string;
  /** Every key starts with it: clusters sharing one Redis keep apart. */
  readonly keyPrefix: string;
  /** This node's buckets, used while Redis does not answer. */
  readonly fallback: MemoryBucketStore;
  /** Members of the cluster now: the fallback enforces limit / members. */
  readonly nodeCount: () => number;
  readonly logger: Logger;
  /** Each call the fallback answered. */
  readonly onFallback?: () => void;
  readonly timeoutMs?: number;
}

export class RedisBucketStore implements RateLimitStore, Lifecycle {
  readonly name = "rate-limit-redis";
  private readonly redis: ScriptedRedis;
  private fallbacks = 0;

  constructor(private readonly options: RedisBucketStoreOptions) {
    const redis = new Redis(options.url, {
      lazyConnect: true,
      // A call while disconnected fails at once (and takes the local bucket) instead of queueing.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.timeoutMs ?? RATE_LIMIT_REDIS_TIMEOUT_MS,
      // Calls of one event-loop turn go out as one write: one round trip for a burst of RPCs.
      enableAutoPipelining: true,
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 10), RATE_LIMIT_REDIS_RECONNECT_MAX_MS),
    });
    redis.defineCommand("qmRefillAndTake", { numberOfKeys: 1, lua: REFILL_AND_TAKE_LUA });
    redis.on("error", (error: Error) => this.options.logger.debug({ err: error }, "redis connection error"));
    this.redis = redis as ScriptedRedis;
  }

  /** Connects once, so a wrong QM_REDIS_URL stops the start naming it; later outages only fall back. */
  async start(): Promise<void> {
    try {
      await this.redis.connect();
      await this.redis.ping();
    } catch (error) {
      this.redis.disconnect();
      throw new QmError("UNAVAILABLE", `QM_REDIS_URL=${redactedUrl(this.options.url)}: cannot reach Redis: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  async stop(): Promise<void> {
    this.redis.disconnect();
  }

  async take(key: string, limit: BucketLimit, cost: number): Promise<TakeOutcome> {
    try {
      const [allowed, retryAfterMs] = await this.redis.qmRefillAndTake(this.options.keyPrefix + key, limit.perSecond, limit.burst, effectiveCost(cost, limit));
      return allowed === 1 ? { allowed: true, retryAfterMs: 0 } : { allowed: false, retryAfterMs };
    } catch (error) {
      this.fellBack(error);
      return this.options.fallback.take(key, dividedLimit(limit, this.options.nodeCount()), cost);
    }
  }

  private fellBack(error: unknown): void {
    this.fallbacks += 1;
    this.options.onFallback?.();
    // 1st, 2nd, 4th, 8th…: an outage is visible in the log without a line per call.
    if ((this.fallbacks & (this.fallbacks - 1)) === 0) {
      this.options.logger.warn(
        { err: error, fallbacks: this.fallbacks },
        "rate limiter: Redis did not answer; this node's own bucket (limit divided by the members) answers instead",
      );
    }
  }
}

/** The URL without its password, for messages and logs. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== "") parsed.password = "redacted";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}
