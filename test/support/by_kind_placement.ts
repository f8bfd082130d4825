import type { NodeId, Placement } from "../../src/cluster/placement";

/** A two-node placement for tests: orders on A, SKUs on B, anything else nowhere. */
export class ByKindPlacement implements Placement {
  constructor(readonly self: NodeId) {}
  ownerOf(actorId: string): NodeId | undefined {
    if (actorId.startsWith("order/")) return "A";
    if (actorId.startsWith("sku/")) return "B";
    return undefined;
  }
}
