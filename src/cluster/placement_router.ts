// The ActorRouter that the gRPC handlers and the actors use: asks for an
// actor owned here go to the local actor system, the others over the
// transport to their owner. Single node: everything is local and no transport
// exists; the cluster supplies a Placement backed by etcd and a NATS Transport.
//
// Re-routing. While a partition moves (no owner yet, or an owner that answers
// NOT_OWNER because its view changed first), the ask is retried with jittered
// exponential backoff until the caller's deadline: NOT_OWNER means the actor
// never saw the message, so a retry cannot apply it twice. The caller only
// ever sees success, a domain error, DEADLINE_EXCEEDED (an unknown outcome
// from a lost reply), or UNAVAILABLE when no owner answered in time (reason
// NO_OWNER), or at once when this node's own etcd lease has lapsed (reason
// NO_LEASE: etcd is unreachable, so no ownership it knows of is current).
//
// Failing nodes. Each remote node has a circuit breaker over transport
// failures (UNAVAILABLE: NATS down or the node gone): once open, asks to that
// node fail at once with UNAVAILABLE (reason BREAKER_OPEN) instead of each
// waiting out its own timeout, and it closes by itself after a probe succeeds.

import {
  BrokenCircuitError,
  circuitBreaker,
  CircuitState,
  ConsecutiveBreaker,
  ExponentialBackoff,
  handleWhen,
  retry,
  type CircuitBreakerPolicy,
  type RetryPolicy,
} from "cockatiel";
import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import { QmError } from "../errors";
import type { NodeId, Placement } from "./placement";

/** Carries an ask to the actor system of another node and brings back its reply (or its QmError). */
export interface Transport {
  ask<R>(node: NodeId, actorId: string, message: unknown, options?: AskOptions): Promise<R>;
}

/** Deadline of an ask whose caller gave none; the single node never needs it. */
export const ROUTED_ASK_DEADLINE_MS_DEFAULT = 10_000;
/** Re-routing attempts of one ask at most; the deadline usually ends them first. */
const REROUTE_ATTEMPTS_MAX = 100;
/** Consecutive transport failures that open a node's breaker, and how long it stays open before a probe. */
const BREAKER_FAILURES = 5;
const BREAKER_HALF_OPEN_AFTER_MS = 1_000;
/** Remote nodes with a breaker; a node id beyond it shares none (members are few, ids come from etcd). */
const BREAKERS_MAX = 1_024;

const isNotOwner = (error: Error): boolean => error instanceof QmError && error.code === "NOT_OWNER";
const isTransportFailure = (error: Error): boolean => error instanceof QmError && error.code === "UNAVAILABLE";

export class PlacementRouter implements ActorRouter {
  private readonly reroute: RetryPolicy | undefined;
  private readonly breakers = new Map<NodeId, CircuitBreakerPolicy>();

  constructor(
    private readonly placement: Placement,
    private readonly local: ActorRouter,
    private readonly transport?: Transport,
    private readonly nowMs: () => number = Date.now,
  ) {
    if (transport !== undefined) {
      this.reroute = retry(handleWhen(isNotOwner), {
        maxAttempts: REROUTE_ATTEMPTS_MAX,
        backoff: new ExponentialBackoff({ initialDelay: 10, maxDelay: 500 }),
      });
    }
  }

  ask<R>(actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    const reroute = this.reroute;
    // One node: every actor is here, and nothing on the hot path pays for routing.
    if (reroute === undefined) return this.local.ask<R>(actorId, message, options);
    const deadlineMs = options?.deadlineMs ?? this.nowMs() + ROUTED_ASK_DEADLINE_MS_DEFAULT;
    const routed: AskOptions = { ...options, deadlineMs };
    return reroute.execute(() => {
      // Checked on every attempt: a lease can lapse while an ask is being re-routed.
      const refusal = this.placement.unavailable?.();
      if (refusal !== undefined) throw refusal;
      if (this.nowMs() >= deadlineMs) {
        throw new QmError("UNAVAILABLE", `no owner of ${actorId} answered within the deadline`, { reason: "NO_OWNER", actor: actorId });
      }
      return this.askOnce<R>(actorId, message, routed);
    });
  }

  private askOnce<R>(actorId: string, message: unknown, options: AskOptions): Promise<R> {
    const owner = this.placement.ownerOf(actorId);
    if (owner === this.placement.self) return this.local.ask<R>(actorId, message, options);
    if (owner === undefined || this.transport === undefined) {
      return Promise.reject(new QmError("NOT_OWNER", `no owner for ${actorId} right now`, { actor: actorId }));
    }
    const transport = this.transport;
    return this.breakerOf(owner)
      .execute(() => transport.ask<R>(owner, actorId, message, options))
      .catch((error: unknown) => {
        if (error instanceof BrokenCircuitError) {
          throw new QmError("UNAVAILABLE", `node ${owner} is failing; not asking it for ${actorId} for now`, {
            reason: "BREAKER_OPEN",
            node_id: owner,
            actor: actorId,
          });
        }
        throw error;
      });
  }

  /** Each remote node's breaker as a number for the qm_breaker_state gauge: 0 closed, 1 half-open, 2 open. */
  breakerStates(): [NodeId, number][] {
    const out: [NodeId, number][] = [];
    for (const [node, breaker] of this.breakers) out.push([node, breakerLevel(breaker.state)]);
    return out;
  }

  private breakerOf(node: NodeId): CircuitBreakerPolicy {
    let breaker = this.breakers.get(node);
    if (breaker === undefined) {
      if (this.breakers.size >= BREAKERS_MAX) this.breakers.clear();
      breaker = circuitBreaker(handleWhen(isTransportFailure), {
        halfOpenAfter: BREAKER_HALF_OPEN_AFTER_MS,
        breaker: new ConsecutiveBreaker(BREAKER_FAILURES),
      });
      this.breakers.set(node, breaker);
    }
    return breaker;
  }
}

function breakerLevel(state: CircuitState): number {
  switch (state) {
    case CircuitState.Closed:
      return 0;
    case CircuitState.HalfOpen:
      return 1;
    case CircuitState.Open:
    case CircuitState.Isolated:
      return 2;
  }
}
