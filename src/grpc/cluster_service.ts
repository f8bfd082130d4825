// ClusterService: membership, partition owners and epochs, drain and undrain,
// answered from this node's ClusterView.

import { orderActorId } from "../actors/order/order_actor";
import { skuActorId } from "../actors/inventory/sku_actor";
import type { ClusterView, PartitionOwnership } from "../cluster/cluster_view";
import type {
  ClusterServiceServer,
  DrainNodeRequest,
  GetClusterStatusResponse,
  LocateKeyRequest,
  LocateKeyResponse,
  UndrainNodeRequest,
} from "../gen/quartermaster/v1/cluster";
import type { UnaryFactory } from "./unary";
import { validateLocateKey, validateNodeId } from "./validation";

export function clusterService(view: ClusterView, unary: UnaryFactory): ClusterServiceServer {
  return {
    getClusterStatus: unary("GetClusterStatus", async (): Promise<GetClusterStatusResponse> => ({
      members: view.members().map((m) => ({
        nodeId: m.nodeId,
        address: m.address,
        startedAt: new Date(m.startedAtMs),
        partitionCount: m.partitionCount,
        draining: m.draining,
      })),
      partitions: view.partitions().map(toPartitionOwner),
      partitionCount: view.partitionCount,
    })),
    // Locates the caller's tenant's object of that id: another tenant's of the same id may live elsewhere.
    locateKey: unary("LocateKey", async (r: LocateKeyRequest, _o, caller): Promise<LocateKeyResponse> => {
      const { kind, id } = validateLocateKey(r);
      return toPartitionOwner(view.locate(kind === "sku" ? skuActorId(id, caller.tenant) : orderActorId(id, caller.tenant)));
    }),
    drainNode: unary("DrainNode", async (r: DrainNodeRequest) => ({ movedPartitions: await view.drain(validateNodeId(r.nodeId)) })),
    undrainNode: unary("UndrainNode", async (r: UndrainNodeRequest) => {
      await view.undrain(validateNodeId(r.nodeId));
      return {};
    }),
  };
}

function toPartitionOwner(p: PartitionOwnership): { partition: number; ownerNodeId: string; epoch: number } {
  return { partition: p.partition, ownerNodeId: p.owner ?? "", epoch: p.owner === undefined ? 0 : p.epoch };
}
