// What the embedded node (node.ts) and a cluster node (cluster_node.ts) build
// the same way: the actor system with its SKU and order actors, and the part
// that turns serving on last and off first.

import type { Logger } from "pino";
import { createOrderBehavior } from "./actors/order/order_actor";
import { observedSkuBehavior } from "./actors/inventory/sku_actor";
import { ActorSystem, type Ownership } from "./actors/runtime/actor_system";
import type { ActorBehavior } from "./actors/runtime/behavior";
import type { Clock } from "./clock";
import type { Config } from "./config";
import { withFaultDelays } from "./fault/fault_delays";
import type { GrpcServer } from "./grpc/server";
import type { Journal } from "./journal/journal";
import { type Lifecycle, lifecycle } from "./lifecycle";
import type { Metrics } from "./observability/metrics";
import type { NodeObserver } from "./observability/observer";
import { observeOrderExpiry } from "./observability/order_expiry";

export interface ActorSystemParts {
  readonly config: Config;
  readonly journal: Journal;
  readonly metrics: Metrics;
  readonly observer: NodeObserver;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Cluster mode: which actors this node owns now. */
  readonly ownership?: Ownership;
  /** The partition of an actor id, as Locate answers it (turn spans carry it). */
  readonly partitionOf: (actorId: string) => number;
}

/** The SKU and order actors over the journal, observed by the node's metrics and logs. */
export function nodeActorSystem(p: ActorSystemParts): ActorSystem {
  return new ActorSystem({
    journal: withFaultDelays(p.journal, p.config.faultDelays),
    clock: p.clock,
    logger: p.logger.child({ component: "actors" }),
    behaviors: [
      observedSkuBehavior(p.observer),
      observeOrderExpiry(createOrderBehavior({ logger: p.logger.child({ component: "saga" }), observer: p.observer }), p.observer),
    ] as ActorBehavior<unknown, unknown>[],
    idleMs: p.config.actorIdleMs,
    activeMax: p.config.activeActorsMax,
    timerTickMs: p.config.timerTickMs,
    onTurn: (kind, messages) => p.metrics.observeTurn(kind, messages),
    observer: p.observer,
    partitionOf: p.partitionOf,
    ...(p.ownership === undefined ? {} : { ownership: p.ownership }),
  });
}

/**
 * Last to start and first to stop: health turns SERVING once everything else
 * runs, and on stop turns NOT_SERVING, then calls in flight drain while the
 * actors (and, in a cluster, the transport and membership) still answer them.
 */
export function servingPart(server: GrpcServer, shutdownGraceMs: number, setReady: (ready: boolean) => void): Lifecycle {
  return lifecycle(
    "grpc-serving",
    async () => {
      server.setReady(true);
      setReady(true);
    },
    async () => {
      setReady(false);
      await server.stop(shutdownGraceMs);
    },
  );
}
