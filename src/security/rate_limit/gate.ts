// The rate-limiting gate: admits through the inner gate (which names the
// caller), then takes tokens from the caller's bucket. A bucket belongs to one
// subject within one tenant: two tenants' "checkout-svc" are two callers.

import { QmError, RETRY_AFTER_MS_KEY } from "../../errors";
import { ReserveBatchColumns } from "../../grpc/reserve_batch_columns";
import type { CallGate, GateCall } from "../call_gate";
import type { Caller } from "../caller";
import { type BucketLimit, checkLimit, type TakeOutcome } from "./bucket";
import type { RateLimitStore } from "./memory_store";

/** The caller's limit; undefined: not limited (no QM_AUTH_CONFIG, or no rate_limits in it). */
export type RateLimitPolicy = (caller: Caller) => BucketLimit | undefined;

export const RESERVE_BATCH_PATH = "/quartermaster.v1.InventoryService/ReserveBatch";

/**
 * Tokens a call takes: one, and one per item for ReserveBatch, so that batching
 * does not multiply a caller's rate (each item is a reservation the SKU actors
 * work for, as much as a Reserve call). The store clamps it to the burst.
 */
export function callCost(call: GateCall): number {
  if (call.path !== RESERVE_BATCH_PATH) return 1;
  const request = call.request;
  // The fast reader's columns: their length, without building an object per item.
  if (request instanceof ReserveBatchColumns) return Math.max(1, request.length);
  if (typeof request === "object" && request !== null && "items" in request && Array.isArray(request.items)) {
    return Math.max(1, request.items.length);
  }
  return 1;
}

/** The key of a caller's bucket; the tenant's length comes first, so no pair of names can spell another pair. */
export function bucketKey(caller: Caller): string {
  return `${caller.tenant.length}:${caller.tenant}:${caller.subject}`;
}

export function rateLimited(caller: Caller, limit: BucketLimit, retryAfterMs: number): QmError {
  return new QmError("RATE_LIMITED", `rate limit of ${limit.perSecond} calls/s (burst ${limit.burst}) exceeded by ${caller.subject}`, {
    reason: "RATE_LIMITED",
    [RETRY_AFTER_MS_KEY]: String(retryAfterMs),
  });
}

/**
 * Wraps `inner`. A limited call is refused with QmError RATE_LIMITED (gRPC
 * RESOURCE_EXHAUSTED with a google.rpc.RetryInfo); `onLimited` counts it. With
 * a local store and a synchronous inner gate the call stays synchronous.
 */
export function rateLimitedGate(inner: CallGate, policy: RateLimitPolicy, store: RateLimitStore, onLimited?: (caller: Caller) => void): CallGate {
  const decide = (caller: Caller, limit: BucketLimit, outcome: TakeOutcome): Caller => {
    if (outcome.allowed) return caller;
    onLimited?.(caller);
    throw rateLimited(caller, limit, outcome.retryAfterMs);
  };
  const limitCall = (call: GateCall, caller: Caller): Caller | Promise<Caller> => {
    // Unauthenticated callers share one name ("anonymous"): a bucket for them would let one of them starve
    // the others. They are the caller of a node without QM_AUTH_CONFIG, or of the methods that are open.
    if (!caller.authenticated) return caller;
    const limit = policy(caller);
    if (limit === undefined) return caller;
    checkLimit(limit);
    const outcome = store.take(bucketKey(caller), limit, callCost(call));
    return outcome instanceof Promise ? outcome.then((taken) => decide(caller, limit, taken)) : decide(caller, limit, outcome);
  };
  return {
    admit(call: GateCall): Caller | Promise<Caller> {
      const admitted = inner.admit(call);
      return admitted instanceof Promise ? admitted.then((caller) => limitCall(call, caller)) : limitCall(call, admitted);
    },
  };
}
