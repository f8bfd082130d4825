// The ActorRouter that the gRPC handlers and the actors use: asks for an
// actor owned here go to the local actor system, the others over the
// transport to their owner. Single node: everything is local and no transport
// exists; the cluster supplies a Placement backed by etcd and a NATS Transport.

import type { ActorRouter, AskOptions } from "../actors/runtime/behavior";
import { QmError } from "../errors";
import type { NodeId, Placement } from "./placement";

/** Carries an ask to the actor system of another node and brings back its reply (or its QmError). */
export interface Transport {
  ask<R>(node: NodeId, actorId: string, message: unknown, options?: AskOptions): Promise<R>;
}

export class PlacementRouter implements ActorRouter {
  constructor(
    private readonly placement: Placement,
    private readonly local: ActorRouter,
    private readonly transport?: Transport,
  ) {}

  ask<R>(actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    const owner = this.placement.ownerOf(actorId);
    if (owner === this.placement.self) return this.local.ask<R>(actorId, message, options);
    if (owner === undefined || this.transport === undefined) {
      // Retryable: ownership is moving, or this node cannot reach the owner.
      return Promise.reject(new QmError("NOT_OWNER", `no reachable owner for ${actorId}`, { actor: actorId }));
    }
    return this.transport.ask<R>(owner, actorId, message, options);
  }
}
