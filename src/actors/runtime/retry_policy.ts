// A retry policy as data, as Temporal defines one for an activity: the
// interval before the second attempt, how it grows, its ceiling, how many
// attempts in all, and which errors are never retried. The runtime knows
// nothing of what is retried; the order saga attaches one to each step.

import { type ErrorCode, isRetryable } from "../../errors";

export interface RetryPolicy {
  /** Wait before the second attempt. */
  readonly initialIntervalMs: number;
  /** Each wait is this many times the one before. */
  readonly backoffCoefficient: number;
  /** No wait is longer than this. */
  readonly maximumIntervalMs: number;
  /** Attempts in all, the first included; after the last one fails the work is parked. */
  readonly maximumAttempts: number;
  /** Codes that isRetryable() would retry but this work must not (Temporal's non-retryable error types). */
  readonly nonRetryableCodes: readonly ErrorCode[];
}

/** The wait after the `failedAttempts`-th failed attempt (1 = after the first) before the next one. */
export function retryDelayMs(policy: RetryPolicy, failedAttempts: number): number {
  const exponent = Math.max(0, failedAttempts - 1);
  return Math.min(policy.maximumIntervalMs, policy.initialIntervalMs * policy.backoffCoefficient ** exponent);
}

/** Whether an error with this code may be retried under the policy. */
export function retries(policy: RetryPolicy, code: ErrorCode): boolean {
  return isRetryable(code) && !policy.nonRetryableCodes.includes(code);
}
