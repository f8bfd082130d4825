// The order saga as a table: for each step, which SKU command each line
// gets, how the SKUs' answers become the step's outcome event, and the step's
// retry policy. The order actor runs whichever step is open through the same
// loop (order_actor.ts); nothing here does I/O.
//
// Forward steps (reserve, commit, ship) decide: an error that cannot be
// retried is an answer (a rejected line, a refused payment), and their
// compensation follows. Compensating steps (release, unship, restock) cannot
// be given up, only parked: an error other than the ones that mean "nothing
// to undo" parks them at once, because repeating it would not help.

import type { LevelView, ReservationView } from "../../domain/sku";
import type { LineRejection, OrderEvent, OrderState, Saga } from "../../domain/order";
import { QmError } from "../../errors";
import {
  SAGA_COMPENSATION_ATTEMPTS_MAX,
  SAGA_COMPENSATION_INTERVAL_MAX_MS,
  SAGA_RETRY_BACKOFF_COEFFICIENT,
  SAGA_RETRY_INITIAL_INTERVAL_MS,
  SAGA_STEP_ATTEMPTS_MAX,
  SAGA_STEP_INTERVAL_MAX_MS,
  TTL_MS_MIN,
} from "../../limits";
import { retries, type RetryPolicy } from "../runtime/retry_policy";
import type { SkuMessage } from "../inventory/sku_actor";

export type SagaStepName = Saga["kind"];
type StepOf<K extends SagaStepName> = Extract<Saga, { readonly kind: K }>;

/** One SKU command of a step: the SKU and what it is asked. */
export type SkuAsk = readonly [skuId: string, message: SkuMessage];

/** How one attempt of a step came out. */
export type StepOutcome =
  /** The step is over: its event closes it (and may open the compensation). */
  | { readonly kind: "done"; readonly event: OrderEvent }
  /** Not decided: try again when the policy says. */
  | { readonly kind: "retry"; readonly error: QmError }
  /** Cannot be decided and must not be given up: park at once. */
  | { readonly kind: "park"; readonly error: QmError };

export interface SagaStep<K extends SagaStepName> {
  readonly retry: RetryPolicy;
  /**
   * The step's asks may go out while its intent is still being written, when
   * the journal makes no SKU's answer durable before the intent
   * (TurnContext.asksFollowAppends): one durable wait fewer per step. Only
   * for a step whose SKU effects undo themselves should the intent's own
   * append fail (a later SKU append can still land): a hold ends at its TTL.
   */
  readonly asksWithIntent: boolean;
  asks(state: OrderState, step: StepOf<K>, nowMs: number): readonly SkuAsk[];
  /** `results[i]` answers `asks(...)[i]`: the SKU's reply, or the QmError it failed with. */
  outcome(state: OrderState, step: StepOf<K>, results: readonly unknown[], nowMs: number): StepOutcome;
}

/** Forward steps: a customer is waiting, so they give up (park) after a couple of minutes of failures. */
const FORWARD: RetryPolicy = {
  initialIntervalMs: SAGA_RETRY_INITIAL_INTERVAL_MS,
  backoffCoefficient: SAGA_RETRY_BACKOFF_COEFFICIENT,
  maximumIntervalMs: SAGA_STEP_INTERVAL_MAX_MS,
  maximumAttempts: SAGA_STEP_ATTEMPTS_MAX,
  nonRetryableCodes: [],
};

/** Compensation gives stock back: it keeps trying for about an hour before it waits for an operator. */
const COMPENSATION: RetryPolicy = {
  initialIntervalMs: SAGA_RETRY_INITIAL_INTERVAL_MS,
  backoffCoefficient: SAGA_RETRY_BACKOFF_COEFFICIENT,
  maximumIntervalMs: SAGA_COMPENSATION_INTERVAL_MAX_MS,
  maximumAttempts: SAGA_COMPENSATION_ATTEMPTS_MAX,
  nonRetryableCodes: [],
};

export const SAGA_STEPS: { readonly [K in SagaStepName]: SagaStep<K> } = {
  reserve: {
    retry: FORWARD,
    // Deterministic hold ids, each with a TTL: were the intent lost, a retry
    // finds the same holds, and a caller who gives up leaves them to expire.
    asksWithIntent: true,
    asks: (state, _step, nowMs) => {
      // The hold ends with the payment deadline plus its grace, however late this attempt runs.
      const ttlMs = Math.max(TTL_MS_MIN, state.createdAtMs + state.reservationTtlMs - nowMs);
      return state.lines.map((l) => [l.skuId, { op: "reserve", cmd: { id: l.reservationId, quantity: l.quantity, locationId: "", ttlMs } }]);
    },
    outcome: (state, _step, results, nowMs) =>
      forward(FORWARD, results, () => {
        const rejections: LineRejection[] = [];
        results.forEach((r, i) => {
          const line = state.lines[i];
          if (line === undefined) return;
          if (r instanceof QmError) rejections.push(rejection(line.skuId, r));
          else if ((r as ReservationView).state !== "RESERVED") {
            rejections.push({ skuId: line.skuId, reason: "RESERVATION_ENDED", message: `reservation is ${(r as ReservationView).state}` });
          }
        });
        return rejections.length === 0
          ? { t: "reserved", locations: results.map((r) => (r as ReservationView).locationId), atMs: nowMs }
          : { t: "reserveFailed", rejections, atMs: nowMs };
      }),
  },
  commit: {
    retry: FORWARD,
    // A commit lasts: landed without its intent, an order that then expires
    // would find nothing to release and leave the units sold.
    asksWithIntent: false,
    asks: (state) => state.lines.map((l) => [l.skuId, { op: "commit", id: l.reservationId }]),
    outcome: (state, _step, results, nowMs) =>
      forward(FORWARD, results, () => {
        const failedAt = results.findIndex((r) => r instanceof QmError);
        if (failedAt < 0) return { t: "paid", atMs: nowMs };
        const failure = rejection(state.lines[failedAt]?.skuId ?? "", results[failedAt] as QmError);
        return { t: "payFailed", failure, atMs: nowMs };
      }),
  },
  release: {
    retry: COMPENSATION,
    asksWithIntent: false,
    asks: (state) => state.lines.map((l) => [l.skuId, { op: "release", id: l.reservationId }]),
    // A reservation that was never made (its SKU refused it) or has already ended has nothing to release.
    outcome: (_state, _step, results, nowMs) =>
      compensation(COMPENSATION, results, ["NOT_FOUND", "ILLEGAL_TRANSITION"], { t: "released", atMs: nowMs }),
  },
  ship: {
    retry: FORWARD,
    asksWithIntent: false,
    asks: (state, step) =>
      shipmentOf(state, step.shipmentId).lines.map((sl) => [
        sl.skuId,
        { op: "fulfil", id: reservationOf(state, sl.skuId), shipmentId: step.shipmentId, quantity: sl.quantity },
      ]),
    outcome: (state, step, results, nowMs) =>
      forward(FORWARD, results, () => {
        const shipment = shipmentOf(state, step.shipmentId);
        const failedAt = results.findIndex((r) => r instanceof QmError);
        if (failedAt < 0) return { t: "shipped", shipmentId: step.shipmentId, atMs: nowMs };
        const failure = rejection(shipment.lines[failedAt]?.skuId ?? "", results[failedAt] as QmError);
        return { t: "shipFailed", shipmentId: step.shipmentId, failure, atMs: nowMs };
      }),
  },
  unship: {
    retry: COMPENSATION,
    asksWithIntent: false,
    asks: (state, step) =>
      (state.shipments.find((s) => s.shipmentId === step.shipmentId)?.lines ?? []).map((sl) => [
        sl.skuId,
        { op: "unfulfil", id: reservationOf(state, sl.skuId), shipmentId: step.shipmentId },
      ]),
    outcome: (_state, step, results, nowMs) =>
      compensation(COMPENSATION, results, [], { t: "unshipped", shipmentId: step.shipmentId, atMs: nowMs }),
  },
  restock: {
    retry: COMPENSATION,
    asksWithIntent: false,
    asks: (state, step) => {
      const ret = returnOf(state, step.returnId);
      if (!ret.restock) return [];
      return ret.lines.map((rl) => [
        rl.skuId,
        {
          op: "adjust",
          cmd: {
            locationId: lineOf(state, rl.skuId).locationId,
            delta: rl.quantity,
            reason: "RETURNED",
            key: `return/${state.orderId}/${ret.returnId}`,
          },
          note: `return ${ret.returnId} of order ${state.orderId}`,
        },
      ]);
    },
    outcome: (_state, step, results: readonly (LevelView | QmError)[], nowMs) =>
      compensation(COMPENSATION, results, [], { t: "returned", returnId: step.returnId, atMs: nowMs }),
  },
};

/** A forward step waits for every line's definite answer: any retryable error retries the whole (idempotent) step. */
function forward(policy: RetryPolicy, results: readonly unknown[], decide: () => OrderEvent): StepOutcome {
  const retryable = results.find((r): r is QmError => r instanceof QmError && retries(policy, r.code));
  return retryable === undefined ? { kind: "done", event: decide() } : { kind: "retry", error: retryable };
}

/** A compensation is done when every line answered well or with a code in `nothingToUndo`. */
function compensation(
  policy: RetryPolicy,
  results: readonly unknown[],
  nothingToUndo: readonly QmError["code"][],
  done: OrderEvent,
): StepOutcome {
  const errors = results.filter((r): r is QmError => r instanceof QmError && !nothingToUndo.includes(r.code));
  const final = errors.find((e) => !retries(policy, e.code));
  if (final !== undefined) return { kind: "park", error: final };
  const first = errors[0];
  return first === undefined ? { kind: "done", event: done } : { kind: "retry", error: first };
}

function rejection(skuId: string, error: QmError): LineRejection {
  const reason = error.code === "NOT_FOUND" ? "SKU_NOT_FOUND" : error.code;
  return { skuId, reason, message: error.message };
}

function lineOf(state: OrderState, skuId: string): OrderState["lines"][number] {
  const line = state.lines.find((l) => l.skuId === skuId);
  if (line === undefined) throw new QmError("INTERNAL", `order ${state.orderId} has no line for ${skuId}`);
  return line;
}

function reservationOf(state: OrderState, skuId: string): string {
  return lineOf(state, skuId).reservationId;
}

function shipmentOf(state: OrderState, shipmentId: string): OrderState["shipments"][number] {
  const shipment = state.shipments.find((s) => s.shipmentId === shipmentId);
  if (shipment === undefined) throw new QmError("INTERNAL", `ship step for unknown shipment ${shipmentId}`);
  return shipment;
}

function returnOf(state: OrderState, returnId: string): OrderState["returns"][number] {
  const ret = state.returns.find((r) => r.returnId === returnId);
  if (ret === undefined) throw new QmError("INTERNAL", `restock step for unknown return ${returnId}`);
  return ret;
}
