// Token-bucket arithmetic, shared by the in-memory store and (transcribed to
// Lua) the Redis script: a bucket holds up to `burst` tokens, refills at
// `perSecond`, and a call takes `cost` tokens or is refused with the time until
// the bucket will hold them. Pure: the time is passed in.

import { assert } from "../../errors";

/** A caller's limit: from QM_AUTH_CONFIG's rate_limits.default, or its principal's rate_per_second/burst. */
export interface BucketLimit {
  /** Tokens added per second; > 0. */
  readonly perSecond: number;
  /** Tokens the bucket holds at most (the calls a fresh caller may make at once); >= 1. */
  readonly burst: number;
}

export interface TakeOutcome {
  readonly allowed: boolean;
  /** 0 when allowed; else whole milliseconds until the bucket holds the tokens asked for. */
  readonly retryAfterMs: number;
}

/** A bucket as the in-memory store keeps it. Tokens are fractional: refill is continuous. */
export interface BucketState {
  tokens: number;
  /** Monotonic ms of the last refill. */
  updatedMs: number;
}

export const ALLOWED: TakeOutcome = Object.freeze({ allowed: true, retryAfterMs: 0 });

/**
 * What a call costs, clamped to the burst: a call that asks for more than the
 * bucket can ever hold (a large ReserveBatch) takes a full bucket instead of
 * being refused for ever.
 */
export function effectiveCost(cost: number, limit: BucketLimit): number {
  return Math.min(cost, limit.burst);
}

/**
 * Refills `state` to `nowMs` and takes `cost` tokens if it holds them. A
 * missing bucket is a full one, so a bucket that has refilled completely can be
 * forgotten without changing any answer. A clock that went back refills nothing.
 */
export function refillAndTake(state: BucketState, limit: BucketLimit, cost: number, nowMs: number): TakeOutcome {
  const elapsedMs = nowMs - state.updatedMs;
  if (elapsedMs > 0) {
    state.tokens = Math.min(limit.burst, state.tokens + (elapsedMs * limit.perSecond) / 1000);
    state.updatedMs = nowMs;
  }
  const need = effectiveCost(cost, limit);
  if (state.tokens >= need) {
    state.tokens -= need;
    return ALLOWED;
  }
  return { allowed: false, retryAfterMs: Math.max(1, Math.ceil(((need - state.tokens) * 1000) / limit.perSecond)) };
}

/** When a bucket will be full again, so that it may be forgotten (monotonic ms). */
export function fullAtMs(state: BucketState, limit: BucketLimit): number {
  return state.updatedMs + ((limit.burst - state.tokens) * 1000) / limit.perSecond;
}

/**
 * The limit each of `nodes` nodes enforces locally when there is no shared
 * store (a cluster without QM_REDIS_URL, or while Redis is unreachable): exact
 * when callers spread their calls over the nodes, stricter for a caller pinned
 * to one node.
 */
export function dividedLimit(limit: BucketLimit, nodes: number): BucketLimit {
  if (nodes <= 1) return limit;
  return { perSecond: limit.perSecond / nodes, burst: Math.max(1, limit.burst / nodes) };
}

/** Limits a store accepts: a positive, finite rate and a burst of at least one call (QM_AUTH_CONFIG's parser ensures it). */
export function checkLimit(limit: BucketLimit): void {
  assert(Number.isFinite(limit.perSecond) && limit.perSecond > 0 && Number.isFinite(limit.burst) && limit.burst >= 1, "rate limit has a positive rate and a burst >= 1");
}
