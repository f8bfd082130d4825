// What the node's parts report as it happens: a small typed API that actors
// and the journal call, so they need neither prom-client nor the logger's
// shape. One implementation (NodeObserver) counts each report in the metrics
// and logs it at its level; tests and tools use `quietObserver`.

import type { Logger } from "pino";
import type { ActorKindObserver, RuntimeObserver } from "../actors/runtime/actor_system";
import type { Metrics, NatsAskOutcome, OwnershipChange, ReservationOutcome } from "./metrics";

export type { NatsAskOutcome, OwnershipChange, ReservationOutcome };

/** The order saga's steps report each attempt (outcome e.g. completed, failed, retrying, parked). */
export interface SagaObserver {
  sagaStep(step: string, outcome: string): void;
}

/** Timers firing: holds released and unpaid orders expired at their deadline. */
export interface ExpiryObserver {
  reservationsExpired(skuId: string, count: number): void;
  orderExpired(orderId: string): void;
}

/** The journal's durable writes and the appends it refused. */
export interface JournalObserver {
  /** One durable write (one fsync) carrying `appends` actor appends took `seconds`; `traceId` a sampled trace it carried. */
  journalCommit(seconds: number, appends: number, traceId?: string): void;
  /** An append lost its compare-and-set: another writer got there first, or a stale activation wrote. */
  fencingConflict(actorId: string, detail: string): void;
}

/** The SKU actor decided a reservation request (Reserve, a batch item, an order's saga). */
export interface ReservationObserver {
  reservation(outcome: ReservationOutcome): void;
}

/** Partition ownership and the etcd lease (EtcdCluster). */
export interface ClusterObserver {
  partitionChange(change: OwnershipChange): void;
  /** A lease keepalive was answered `seconds` after it was sent. */
  leaseRenewed(seconds: number): void;
  leaseRenewalFailed(): void;
  leaseLost(): void;
}

/** Asks sent to other nodes over NATS (NatsTransport). */
export interface TransportObserver {
  natsAsk(outcome: NatsAskOutcome, seconds: number): void;
}

export type ActorObserver = SagaObserver & ExpiryObserver & JournalObserver & ReservationObserver;

export const quietObserver: ActorObserver = {
  sagaStep: () => undefined,
  reservationsExpired: () => undefined,
  orderExpired: () => undefined,
  journalCommit: () => undefined,
  fencingConflict: () => undefined,
  reservation: () => undefined,
};

export class NodeObserver implements ActorObserver, RuntimeObserver, ClusterObserver, TransportObserver {
  private readonly timers: Logger;
  private readonly journal: Logger;

  constructor(
    private readonly metrics: Metrics,
    logger: Logger,
  ) {
    this.timers = logger.child({ component: "timers" });
    this.journal = logger.child({ component: "journal" });
  }

  sagaStep(step: string, outcome: string): void {
    this.metrics.sagaStep(step, outcome);
  }

  reservationsExpired(skuId: string, count: number): void {
    this.metrics.reservationsExpired(count);
    this.timers.debug({ skuId, count }, "reservations expired");
  }

  orderExpired(orderId: string): void {
    this.metrics.orderExpired();
    this.timers.debug({ orderId }, "payment deadline passed: order expires");
  }

  journalCommit(seconds: number, appends: number, traceId?: string): void {
    this.metrics.journalCommit(seconds, appends, traceId);
  }

  actorKind(kind: string): ActorKindObserver {
    return this.metrics.actorKind(kind);
  }

  reservation(outcome: ReservationOutcome): void {
    this.metrics.reservation(outcome);
  }

  partitionChange(change: OwnershipChange): void {
    this.metrics.partitionChange(change);
  }

  leaseRenewed(seconds: number): void {
    this.metrics.leaseRenewed(seconds);
  }

  leaseRenewalFailed(): void {
    this.metrics.leaseRenewalFailed();
  }

  leaseLost(): void {
    this.metrics.leaseLost();
  }

  natsAsk(outcome: NatsAskOutcome, seconds: number): void {
    this.metrics.natsAsk(outcome, seconds);
  }

  fencingConflict(actorId: string, detail: string): void {
    this.metrics.fencingConflict();
    this.journal.warn({ actorId, detail }, "fencing conflict: append refused");
  }
}
