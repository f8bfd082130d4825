// The buckets of one node, in memory: the store of an embedded node, of a
// cluster node without QM_REDIS_URL (with the limit divided by the members),
// and the fallback of the Redis store while Redis is unreachable.

import type { Clock } from "../../clock";
import { RATE_LIMIT_BUCKETS_MAX, RATE_LIMIT_EVICTION_SCAN_MAX } from "../../limits";
import { type BucketLimit, type BucketState, fullAtMs, refillAndTake, type TakeOutcome } from "./bucket";

/** Where buckets live. A local store answers at once; a shared one (Redis) with a promise. */
export interface RateLimitStore {
  take(key: string, limit: BucketLimit, cost: number): TakeOutcome | Promise<TakeOutcome>;
}

interface Entry extends BucketState {
  /** When the bucket is full again: from then on it is the same as no bucket, and may be dropped. */
  fullAtMs: number;
}

/**
 * Bounded by `bucketsMax`. Only a new bucket makes the map grow, so only a new
 * bucket pays for eviction, clock-style over the map's order: the oldest
 * entries are inspected, a full (idle) one is dropped, a live one moves to the
 * back. Calls on an existing bucket pay nothing for it.
 */
export class MemoryBucketStore implements RateLimitStore {
  private readonly buckets = new Map<string, Entry>();

  constructor(
    private readonly clock: Clock,
    private readonly bucketsMax: number = RATE_LIMIT_BUCKETS_MAX,
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  take(key: string, limit: BucketLimit, cost: number): TakeOutcome {
    const nowMs = this.clock.monotonicMs();
    let entry = this.buckets.get(key);
    if (entry === undefined) {
      this.evict(nowMs);
      entry = { tokens: limit.burst, updatedMs: nowMs, fullAtMs: nowMs };
      this.buckets.set(key, entry);
    }
    const outcome = refillAndTake(entry, limit, cost, nowMs);
    entry.fullAtMs = fullAtMs(entry, limit);
    return outcome;
  }

  /**
   * Drops idle buckets among the oldest few; at the bound, if none of them is
   * idle, drops the oldest anyway (its caller starts again from a full burst:
   * a bounded leniency, preferred to refusing a caller the store cannot hold).
   */
  private evict(nowMs: number): void {
    const atBound = this.buckets.size >= this.bucketsMax;
    let scanned = 0;
    for (const [key, entry] of this.buckets) {
      if (scanned >= RATE_LIMIT_EVICTION_SCAN_MAX || (!atBound && scanned >= 1)) break;
      scanned += 1;
      this.buckets.delete(key);
      if (nowMs >= entry.fullAtMs) return;
      this.buckets.set(key, entry);
    }
    if (this.buckets.size >= this.bucketsMax) {
      const oldest = this.buckets.keys().next();
      if (oldest.done !== true) this.buckets.delete(oldest.value);
    }
  }
}
