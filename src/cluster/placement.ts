// Where an actor lives. Two levels, as the cluster design has it: actor id →
// partition (a stable hash, mod a partition count fixed at cluster creation),
// partition → node (the cluster's placement over live members). Partitions
// are the unit of ownership, handoff and fencing; a single node owns them all.

import type { QmError } from "../errors";

export type NodeId = string;

/** Partitions of a cluster unless configured otherwise; fixed for the cluster's life. */
export const PARTITIONS_DEFAULT = 256;

export interface Placement {
  /** This node. */
  readonly self: NodeId;
  /** The node that owns the actor now, or undefined while its partition has no owner (a handoff). */
  ownerOf(actorId: string): NodeId | undefined;
  /**
   * Why this node cannot route any ask right now, or undefined. Cluster mode:
   * its etcd lease lapsed, so whatever it believes about owners is stale and
   * waiting for an owner to answer would only run into the caller's deadline.
   */
  unavailable?(): QmError | undefined;
}

/** Every actor is here: the single-node process. */
export class SingleNodePlacement implements Placement {
  constructor(readonly self: NodeId = "local") {}

  ownerOf(): NodeId {
    return this.self;
  }
}

/**
 * The partition of an actor id: FNV-1a (32-bit) of its UTF-16 code units, mod
 * `partitions`. Stable across processes and releases, since ownership and the
 * journal's streams are keyed by it; never change it for a live cluster.
 */
export function partitionOf(actorId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < actorId.length; i++) {
    hash ^= actorId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}
