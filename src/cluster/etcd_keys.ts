// The cluster's key layout in etcd, in one place, so that operators can read
// and steer a cluster with etcdctl:
//
//   /quartermaster/<cluster>/config            {"partitions":256,"created_at":"…"}  written once
//   /quartermaster/<cluster>/members/<node>    {"address","version","started_at"}   under the node's lease
//   /quartermaster/<cluster>/partitions/<p>    {"node_id"}  under the owner's lease; its create revision is the epoch
//   /quartermaster/<cluster>/drain/<node>      any value: the node hands off its partitions; delete to undrain
//   /quartermaster/<cluster>/revoked/<name>    one revocation, as an entry of QM_AUTH_CONFIG's "revoked" list;
//                                              every node refuses it within about a second; delete to lift it
//                                              (src/security/cluster_revocations.ts)
//
// Several clusters may share one etcd: everything of one lives under its prefix.

import type { NodeId } from "./placement";

export class ClusterKeys {
  readonly root: string;

  constructor(readonly cluster: string) {
    this.root = `/quartermaster/${cluster}/`;
  }

  get config(): string {
    return `${this.root}config`;
  }

  get membersPrefix(): string {
    return `${this.root}members/`;
  }

  member(node: NodeId): string {
    return `${this.membersPrefix}${node}`;
  }

  get partitionsPrefix(): string {
    return `${this.root}partitions/`;
  }

  partition(partition: number): string {
    return `${this.partitionsPrefix}${partition}`;
  }

  get drainPrefix(): string {
    return `${this.root}drain/`;
  }

  drain(node: NodeId): string {
    return `${this.drainPrefix}${node}`;
  }

  get revokedPrefix(): string {
    return `${this.root}revoked/`;
  }

  revoked(name: string): string {
    return `${this.revokedPrefix}${name}`;
  }

  /** What a key under root names, or undefined for a key this version does not know (ignored, not fatal). */
  parse(key: string): ParsedKey | undefined {
    if (!key.startsWith(this.root)) return undefined;
    if (key === this.config) return { kind: "config" };
    if (key.startsWith(this.membersPrefix)) return nonEmpty(key.slice(this.membersPrefix.length), (node) => ({ kind: "member", node }));
    if (key.startsWith(this.drainPrefix)) return nonEmpty(key.slice(this.drainPrefix.length), (node) => ({ kind: "drain", node }));
    if (key.startsWith(this.partitionsPrefix)) {
      const suffix = key.slice(this.partitionsPrefix.length);
      return /^(0|[1-9][0-9]{0,5})$/.test(suffix) ? { kind: "partition", partition: Number(suffix) } : undefined;
    }
    return undefined;
  }
}

export type ParsedKey =
  | { readonly kind: "config" }
  | { readonly kind: "member"; readonly node: NodeId }
  | { readonly kind: "drain"; readonly node: NodeId }
  | { readonly kind: "partition"; readonly partition: number };

function nonEmpty(node: string, make: (node: string) => ParsedKey): ParsedKey | undefined {
  return node.length > 0 && !node.includes("/") ? make(node) : undefined;
}
