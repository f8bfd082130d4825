// What the cluster looks like from one node: its members, the owner and epoch
// of every partition, and the operator's levers (drain, undrain). ClusterService
// serves it; the embedded single node implements it trivially, and cluster mode
// backs it with etcd (members under leases, partition keys whose create
// revision is the epoch).

import { QmError } from "../errors";
import { type NodeId, PARTITIONS_DEFAULT, type Placement, partitionOf } from "./placement";

export interface MemberInfo {
  readonly nodeId: NodeId;
  /** The address other nodes and clients use. */
  readonly address: string;
  readonly startedAtMs: number;
  /** Partitions the member owns now. */
  readonly partitionCount: number;
  readonly draining: boolean;
}

export interface PartitionOwnership {
  readonly partition: number;
  /** undefined while the partition has no owner (a handoff in progress). */
  readonly owner: NodeId | undefined;
  /** The owner's fencing epoch; it only grows. 0 while there is no owner. */
  readonly epoch: number;
}

export interface ClusterView extends Placement {
  readonly partitionCount: number;
  /** Ordered by node id. */
  members(): readonly MemberInfo[];
  /** One entry per partition, ordered by partition. */
  partitions(): readonly PartitionOwnership[];
  locate(actorId: string): PartitionOwnership;
  /** Hands the node's partitions to other members; resolves with how many moved. */
  drain(nodeId: NodeId): Promise<number>;
  undrain(nodeId: NodeId): Promise<void>;
}

/** The embedded node's epoch for every partition: it never changes hands. */
export const SINGLE_NODE_EPOCH = 1;

/** One member that owns every partition at epoch 1, for ever. */
export class SingleNodeCluster implements ClusterView {
  readonly partitionCount: number;

  constructor(
    readonly self: NodeId,
    /** The bound gRPC address, known only once the server listens. */
    private readonly address: () => string,
    private readonly startedAtMs: number,
    partitionCount: number = PARTITIONS_DEFAULT,
  ) {
    this.partitionCount = partitionCount;
  }

  ownerOf(): NodeId {
    return this.self;
  }

  members(): readonly MemberInfo[] {
    return [{ nodeId: this.self, address: this.address(), startedAtMs: this.startedAtMs, partitionCount: this.partitionCount, draining: false }];
  }

  partitions(): readonly PartitionOwnership[] {
    return Array.from({ length: this.partitionCount }, (_, partition) => ({ partition, owner: this.self, epoch: SINGLE_NODE_EPOCH }));
  }

  locate(actorId: string): PartitionOwnership {
    return { partition: partitionOf(actorId, this.partitionCount), owner: this.self, epoch: SINGLE_NODE_EPOCH };
  }

  async drain(nodeId: NodeId): Promise<number> {
    this.checkMember(nodeId);
    // Refusing is the honest answer: draining the only member would leave
    // every actor without an owner, and nothing would be served.
    throw new QmError("FAILED_PRECONDITION", `node ${nodeId} is the only member: no other node can take its partitions`, {
      reason: "NO_OTHER_MEMBER",
      node_id: nodeId,
    });
  }

  async undrain(nodeId: NodeId): Promise<void> {
    // Never drained, so there is nothing to undo; idempotent like the cluster's.
    this.checkMember(nodeId);
  }

  private checkMember(nodeId: NodeId): void {
    if (nodeId !== this.self) throw new QmError("NOT_FOUND", `node ${nodeId} is not a member of this cluster`, { node_id: nodeId });
  }
}
