// qmctl cluster …: where actors live, and draining nodes. Thin wrappers of
// ClusterService, with the same --json contract as the API commands.

import { ActorKind, type GetClusterStatusResponse, type LocateKeyResponse, type Member, type PartitionOwner } from "../gen/quartermaster/v1/cluster";
import { UsageError } from "./args";
import { type CommandSpec, prepare } from "./command_spec";
import type { JsonOf } from "./json";
import { call } from "./rpc";
import { renderFields, renderTable } from "./table";

const KINDS: Readonly<Record<string, ActorKind>> = { sku: ActorKind.ACTOR_KIND_SKU, order: ActorKind.ACTOR_KIND_ORDER };

function memberJson(m: Member): JsonOf<Member> {
  return { nodeId: m.nodeId, address: m.address, startedAt: m.startedAt?.toISOString() ?? null, partitionCount: m.partitionCount, draining: m.draining };
}

function ownerJson(p: PartitionOwner | LocateKeyResponse): JsonOf<PartitionOwner> {
  return { partition: p.partition, ownerNodeId: p.ownerNodeId, epoch: p.epoch };
}

function statusJson(s: GetClusterStatusResponse): JsonOf<GetClusterStatusResponse> {
  return { members: s.members.map(memberJson), partitions: s.partitions.map(ownerJson), partitionCount: s.partitionCount };
}

function renderStatus(s: GetClusterStatusResponse): string {
  const members = renderTable(
    [{ header: "NODE" }, { header: "ADDRESS" }, { header: "STARTED" }, { header: "PARTITIONS", align: "right" }, { header: "DRAINING" }],
    s.members.map((m) => [m.nodeId, m.address, m.startedAt?.toISOString() ?? "-", String(m.partitionCount), m.draining ? "yes" : "no"]),
  );
  const unowned = s.partitions.filter((p) => p.ownerNodeId === "").length;
  return `${members}\n\npartitions  ${s.partitionCount} (${unowned} without an owner)`;
}

function renderLocation(r: LocateKeyResponse): string {
  return renderFields([
    ["partition", String(r.partition)],
    ["owner", r.ownerNodeId === "" ? "(none: a handoff is under way)" : r.ownerNodeId],
    ["epoch", String(r.epoch)],
  ]);
}

export const CLUSTER_COMMANDS: readonly CommandSpec[] = [
  {
    name: "cluster status",
    summary: "members, their addresses and partition counts",
    args: [],
    options: {},
    build() {
      return prepare("ClusterService/GetClusterStatus", {}, (c, r, o) => call(c.cluster, "getClusterStatus", r, o), statusJson, renderStatus);
    },
  },
  {
    name: "cluster locate",
    summary: "the partition, owner node and epoch of one SKU or order",
    args: ["<sku|order>", "<id>"],
    options: {},
    build(f) {
      const word = f.positional(0);
      const kind = KINDS[word];
      if (kind === undefined) throw new UsageError(`the first argument must be sku or order, not "${word}"`);
      const request = { kind, id: f.positional(1) };
      return prepare("ClusterService/LocateKey", request, (c, r, o) => call(c.cluster, "locateKey", r, o), ownerJson, renderLocation);
    },
  },
  {
    name: "cluster drain",
    summary: "hand every partition of a node to the other members",
    args: ["<node-id>"],
    options: {},
    build(f) {
      return prepare(
        "ClusterService/DrainNode",
        { nodeId: f.positional(0) },
        (c, r, o) => call(c.cluster, "drainNode", r, o),
        (r) => ({ movedPartitions: r.movedPartitions }),
        (r) => `moved_partitions  ${r.movedPartitions}`,
      );
    },
  },
  {
    name: "cluster undrain",
    summary: "let a drained node take partitions again",
    args: ["<node-id>"],
    options: {},
    build(f) {
      return prepare("ClusterService/UndrainNode", { nodeId: f.positional(0) }, (c, r, o) => call(c.cluster, "undrainNode", r, o), () => ({}), () => "undrained");
    },
  },
];
