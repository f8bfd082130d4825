// Partition → node by rendezvous (highest random weight) hashing: every member
// scores every partition, and the highest score owns it. A member that joins
// takes only the partitions it now scores highest on (about 1/N of them, all
// from different owners), and a member that leaves gives up only its own, each
// to its runner-up. No ring, no virtual nodes, no state beyond the member list:
// every node computes the same table from the same members.

import type { NodeId } from "./placement";

/**
 * A 32-bit score of (node, partition): FNV-1a over the node id's UTF-16 code
 * units, then the partition mixed in and finalised with murmur3's avalanche
 * step, so that neighbouring partitions and similar node names score
 * independently. Stable across processes and releases, like partitionOf.
 */
export function rendezvousScore(node: NodeId, partition: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < node.length; i++) {
    hash ^= node.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  hash ^= Math.imul(partition + 1, 0x9e3779b1);
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b);
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash >>> 0;
}

/** The member that owns the partition, or undefined when there are no members. Ties go to the smaller node id. */
export function rendezvousOwner(members: readonly NodeId[], partition: number): NodeId | undefined {
  let best: NodeId | undefined;
  let bestScore = -1;
  for (const node of members) {
    const score = rendezvousScore(node, partition);
    if (score > bestScore || (score === bestScore && best !== undefined && node < best)) {
      best = node;
      bestScore = score;
    }
  }
  return best;
}

/** The owner of every partition 0..partitions-1 (undefined entries when there are no members). */
export function assignPartitions(members: readonly NodeId[], partitions: number): (NodeId | undefined)[] {
  const table = new Array<NodeId | undefined>(partitions);
  for (let p = 0; p < partitions; p++) table[p] = rendezvousOwner(members, p);
  return table;
}
