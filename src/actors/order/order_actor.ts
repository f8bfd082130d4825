// The order actor: one per order. It runs the order's saga over the SKU
// actors. Each step is recorded as intent, durable before any SKU's answer to
// it is (before the SKUs are asked, or for the reserve step on the embedded
// journal, which is durable in issue order, while they are asked), so a
// crash at any point leaves a step that the next activation finishes:
// every SKU command it sends is idempotent (keyed by reservation id, shipment
// id or return id), so doing a step twice is the same as doing it once.
//
// What each step asks and how its answers become events is the step table
// (saga_steps.ts). A failed attempt is recorded (stepStalled) with the time of
// the next one, per the step's retry policy; that time is the order's durable
// wake-up, so backoff survives restarts and a failing order is not due (and
// costs the timer nothing) in between. When the attempts run out the step is
// parked: no more automatic attempts, shown in GetOrder, until a request that
// acts on the order resumes it.

import {
  applyOrderEvent,
  decideCancel,
  decideExpire,
  decidePay,
  decidePlace,
  decideReturn,
  decideShip,
  decideTrack,
  type LineRejection,
  newOrderState,
  orderNotFound,
  type OrderEvent,
  type OrderState,
  type OrderView,
  orderWakeAtMs,
  orderWeight,
  type PlaceCommand,
  type ReturnCommand,
  type ShipCommand,
  type TrackCommand,
  viewOrder,
} from "../../domain/order";
import { illegalTransition, QmError, unknownOp } from "../../errors";
import { crashPoint } from "../../fault/crash_points";
import { SAGA_ASK_TIMEOUT_MS } from "../../limits";
import type { ActorBehavior, TurnContext } from "../runtime/behavior";
import { retryDelayMs } from "../runtime/retry_policy";
import { skuActorId } from "../inventory/sku_actor";
import { tenantActorId, tenantOfActorId } from "../../security/tenancy";
import { SAGA_STEPS, type SagaStep, type SagaStepName, type SkuAsk, type StepOutcome } from "./saga_steps";

export const ORDER_KIND = "order";

/** The order's actor id in its tenant: `order/ID` in the default tenant, `order/TENANT/ID` in another. */
export function orderActorId(orderId: string, tenant: string): string {
  return tenantActorId(ORDER_KIND, tenant, orderId);
}

export type OrderMessage =
  | { readonly op: "place"; readonly cmd: PlaceCommand }
  | { readonly op: "get" }
  | { readonly op: "pay"; readonly paymentReference: string }
  | { readonly op: "cancel"; readonly reason: string }
  | { readonly op: "ship"; readonly cmd: ShipCommand }
  | { readonly op: "track"; readonly cmd: TrackCommand }
  | { readonly op: "return"; readonly cmd: ReturnCommand };

type Ctx = TurnContext<OrderState>;

/** How a saga step attempt ended, for metrics: decided well, decided as a failure, to be retried, or parked. */
export type SagaStepResult = "completed" | "failed" | "retrying" | "parked";

/** What the order actor reports of its saga; the node wires it to Prometheus counters. */
export interface SagaObserver {
  sagaStep(step: SagaStepName, result: SagaStepResult): void;
}

/** The part of a pino logger the saga uses. */
export interface SagaLogger {
  debug(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface OrderBehaviorOptions {
  readonly observer?: SagaObserver;
  readonly logger?: SagaLogger;
}

/** Outcome events that close a forward step as a failure (its compensation follows). */
const FAILURE_EVENTS: ReadonlySet<OrderEvent["t"]> = new Set<OrderEvent["t"]>(["reserveFailed", "payFailed", "shipFailed"]);

const quiet: SagaObserver & SagaLogger = { sagaStep: () => undefined, debug: () => undefined, warn: () => undefined };

export function createOrderBehavior(options: OrderBehaviorOptions = {}): ActorBehavior<OrderState, OrderMessage> {
  const saga = new SagaRunner(options.observer ?? quiet, options.logger ?? quiet);
  return {
    kind: ORDER_KIND,
    initialState: newOrderState,
    applyEvent: (state, event) => applyOrderEvent(state, event as OrderEvent),
    // Order state is small and plain: the snapshot is the state itself.
    toSnapshot: (state) => state,
    // Snapshots written before step retries existed have no stepRetry; before the audit, no history.
    fromSnapshot: (_key, snapshot) => {
      const state = snapshot as OrderState;
      state.stepRetry ??= null;
      state.history ??= [];
      state.historyOmitted ??= 0;
      return state;
    },
    notFound: orderNotFound,
    snapshotWeight: orderWeight,
    wakeAtMs: orderWakeAtMs,

    async onTurnStart(ctx) {
      // A step that is due (left open by a crash, or its backoff is over) is
      // tried before anything else; then an unpaid order past its deadline expires.
      if (ctx.state.saga !== null) await saga.run(ctx);
      if (ctx.state.saga === null) {
        emitAll(ctx, decideExpire(ctx.state, ctx.nowMs));
        if (ctx.state.saga !== null) await saga.run(ctx);
      }
    },

    async handle(ctx, m): Promise<unknown> {
      const state = ctx.state;
      if (m.op === "get") return viewOrder(state);
      // Any request that acts on the order resumes a parked step, with fresh attempts, before it is decided.
      if (state.saga !== null && state.stepRetry !== null && state.stepRetry.nextAttemptAtMs === null) {
        record(ctx, { t: "stepResumed", atMs: ctx.nowMs });
        const stalled = await saga.run(ctx);
        if (stalled !== undefined) return stalled;
      }
      switch (m.op) {
        case "place":
          return step(ctx, saga, decidePlace(state, m.cmd, ctx.nowMs));
        case "pay": {
          const reply = await step(ctx, saga, decidePay(state, m.paymentReference, ctx.nowMs));
          // A pay that found the deadline passed expired the order instead.
          if (!(reply instanceof QmError) && state.status === "EXPIRED") return illegalTransition("order", state.status, "pay");
          return reply;
        }
        case "cancel":
          return step(ctx, saga, decideCancel(state, m.reason, ctx.nowMs));
        case "ship":
          return step(ctx, saga, decideShip(state, m.cmd, ctx.nowMs));
        case "track":
          return step(ctx, saga, decideTrack(state, m.cmd, ctx.nowMs));
        case "return":
          return step(ctx, saga, decideReturn(state, m.cmd, ctx.nowMs));
        default:
          throw unknownOp("order", m);
      }
    },
  };
}

function emitAll(ctx: Ctx, events: readonly OrderEvent[]): void {
  for (const e of events) record(ctx, e);
}

/**
 * Emits the event naming who caused it: the caller of the request being
 * handled (its saga steps run in the same turn included), or the system for
 * expiries and steps a timer runs. A copy of subject and tenant only: the
 * caller's roles are not the order's business.
 */
function record(ctx: Ctx, event: OrderEvent): void {
  ctx.emit({ ...event, by: { subject: ctx.who.subject, tenant: ctx.who.tenant } });
}

/** Emits a decision, runs the saga step it opened, and answers with the order or the step's failure. */
async function step(ctx: Ctx, saga: SagaRunner, events: readonly OrderEvent[]): Promise<OrderView | QmError> {
  emitAll(ctx, events);
  const stalled = await saga.run(ctx);
  if (stalled !== undefined) return stalled;
  const failure = ctx.state.failure;
  if (failure !== null) return failureError(failure, ctx.state);
  return viewOrder(ctx.state);
}

function failureError(failure: LineRejection, state: OrderState): QmError {
  const code = failure.reason === "INSUFFICIENT_STOCK" ? "INSUFFICIENT_STOCK" : "FAILED_PRECONDITION";
  return new QmError(code, `${failure.message}; order ${state.orderId} is ${viewOrder(state).state}`, {
    sku_id: failure.skuId,
    state: viewOrder(state).state,
  });
}

class SagaRunner {
  constructor(
    private readonly observer: SagaObserver,
    private readonly logger: SagaLogger,
  ) {}

  /**
   * Carries out open saga steps that are due until none is left. Returns the
   * error that stalled a step: the step stays open and durable, with the time
   * of its next attempt (or parked), and the order's wake-up retries it then.
   */
  async run(ctx: Ctx): Promise<QmError | undefined> {
    for (let guard = 0; ctx.state.saga !== null; guard++) {
      if (guard > 8) throw new QmError("INTERNAL", `order ${ctx.state.orderId}: saga does not settle`);
      const waiting = notDue(ctx.state, ctx.nowMs);
      if (waiting !== undefined) return waiting;
      const name = ctx.state.saga.kind;
      const spec = SAGA_STEPS[name] as SagaStep<SagaStepName>;
      const attempt = (ctx.state.stepRetry?.attempts ?? 0) + 1;
      const outcome = await this.intentThenAttempt(ctx, spec);
      if (outcome.kind === "done") {
        const result = FAILURE_EVENTS.has(outcome.event.t) ? "failed" : "completed";
        this.logger.debug({ orderId: ctx.state.orderId, step: name, attempt, outcome: result }, "saga step");
        this.observer.sagaStep(name, result);
        record(ctx, outcome.event);
        continue;
      }
      this.recordFailure(ctx, name, spec, attempt, outcome);
      return outcome.error;
    }
    return undefined;
  }

  /**
   * The step's intent is durable before any SKU's answer to it is: written
   * first and awaited, or, where the step allows it and the journal makes
   * appends durable in issue order, written while the asks already go out
   * (the SKUs' appends queue behind it, so their answers imply it).
   */
  private async intentThenAttempt(ctx: Ctx, spec: SagaStep<SagaStepName>): Promise<StepOutcome> {
    const intent = ctx.persist();
    if (!(spec.asksWithIntent && ctx.asksFollowAppends)) {
      await intent;
      crashPoint("order.saga.intent");
      return this.attempt(ctx, spec);
    }
    // Promise.all: a failed intent fails the step at once, and the asks' late settling is handled.
    const [, outcome] = await Promise.all([intent.then(() => crashPoint("order.saga.intent")), this.attempt(ctx, spec)]);
    return outcome;
  }

  private async attempt(ctx: Ctx, spec: SagaStep<SagaStepName>): Promise<StepOutcome> {
    const state = ctx.state;
    const current = state.saga as NonNullable<OrderState["saga"]>;
    const results = await askAll(ctx, spec.asks(state, current, ctx.nowMs));
    crashPoint("order.saga.outcome");
    return spec.outcome(state, current, results, ctx.nowMs);
  }

  private recordFailure(
    ctx: Ctx,
    name: SagaStepName,
    spec: SagaStep<SagaStepName>,
    attempt: number,
    outcome: Exclude<StepOutcome, { readonly kind: "done" }>,
  ): void {
    const parked = outcome.kind === "park" || attempt >= spec.retry.maximumAttempts;
    // Backoff counts from when the attempt failed, which may be a whole ask timeout after the turn began.
    const failedAtMs = Math.max(ctx.nowMs, ctx.currentTimeMs());
    const nextAttemptAtMs = parked ? null : failedAtMs + retryDelayMs(spec.retry, attempt);
    const { code, message } = outcome.error;
    record(ctx, { t: "stepStalled", attempts: attempt, code, message, nextAttemptAtMs, atMs: failedAtMs });
    const fields = { orderId: ctx.state.orderId, step: name, attempt, outcome: parked ? "parked" : "retrying", code, message };
    if (parked) {
      this.logger.warn({ ...fields }, "saga step parked: no more attempts until a request to the order resumes it");
    } else this.logger.debug({ ...fields, nextAttemptAtMs }, "saga step");
    this.observer.sagaStep(name, parked ? "parked" : "retrying");
  }
}

/** Why an open step is not tried now: it waits for its next attempt, or is parked. */
function notDue(state: OrderState, nowMs: number): QmError | undefined {
  const retry = state.stepRetry;
  const saga = state.saga;
  if (retry === null || saga === null) return undefined;
  if (retry.nextAttemptAtMs !== null && retry.nextAttemptAtMs <= nowMs) return undefined;
  const parked = retry.nextAttemptAtMs === null;
  const when = parked ? "it is parked until a request resumes it" : `next attempt at ${new Date(retry.nextAttemptAtMs as number).toISOString()}`;
  return new QmError(
    "UNAVAILABLE",
    `order ${state.orderId}: its ${saga.kind} step failed ${retry.attempts} times (${retry.code}: ${retry.message}); ${when}`,
    {
      reason: parked ? "STEP_PARKED" : "STEP_RETRYING",
      step: saga.kind,
      attempts: String(retry.attempts),
      state: viewOrder(state).state,
    },
  );
}

/** Asks every SKU at once, each with a deadline; each result is the reply or the QmError it failed with. */
async function askAll(ctx: Ctx, requests: readonly SkuAsk[]): Promise<unknown[]> {
  const options = { deadlineMs: ctx.nowMs + SAGA_ASK_TIMEOUT_MS };
  // An order's lines name SKUs of its own tenant, whoever asks.
  const tenant = tenantOfActorId(ctx.actorId);
  const settled = await Promise.allSettled(requests.map(([skuId, message]) => ctx.ask(skuActorId(skuId, tenant), message, options)));
  return settled.map((s) =>
    s.status === "fulfilled"
      ? s.value
      : s.reason instanceof QmError
        ? s.reason
        : new QmError("INTERNAL", s.reason instanceof Error ? s.reason.message : String(s.reason)),
  );
}

/** The order behavior without metrics or logs (tests, tools); the node builds its own with createOrderBehavior. */
export const orderBehavior: ActorBehavior<OrderState, OrderMessage> = createOrderBehavior();
