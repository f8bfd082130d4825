// Cluster membership and partition ownership on etcd.
//
// Membership. The node holds ONE lease (TTL QM_LEASE_TTL_S, kept alive by
// etcd3) and registers members/<node> under it; the member list is the live
// keys under members/, watched. A node id whose key exists and keeps being
// renewed is another live process with the same id: refused at start.
//
// Ownership. Every node computes the same desired table (rendezvous hashing
// over live members that are not drained). A node claims a partition it is
// desired for only while the partition key is absent (a transaction
// "create_revision == 0 → put under my lease"), so at most one node holds a
// key at any revision; the key's create revision is the partition's epoch,
// which only grows. A node gives up a partition it is no longer desired for
// by first stopping to serve it (the handoff hook), then deleting the key if
// it is still its own (same create revision). A dead node's keys vanish with
// its lease, and the desired owners then claim them.
//
// Fencing. A node serves a partition only while its lease is valid by its own
// monotonic clock: validUntil = (when the last successful keepalive was sent)
// + TTL − safety margin. Past that, it stops serving every partition at once,
// before etcd can expire the lease and let another node claim them. The
// journal's per-append compare-and-set with the epoch closes the remaining
// window for a process paused mid-write.
//
// The view (members, drains, partition owners) is etcd's keys read at one
// revision, then kept by a watch from the next. A lost watch is never trusted
// to resume: etcd3 resumes one after a reconnection from the revision of the
// last header it saw, which can be past events it has not delivered yet, and a
// watch whose revision etcd compacted meanwhile is cancelled for good. So after
// a disconnection, a cancel or an end the node reads the keys again at one
// revision, REPLACES its view with them (a key deleted meanwhile goes too, and
// a partition of ours that is gone or taken stops being served), watches anew
// from the next revision, and reconciles. The same re-read runs every
// CLUSTER_VIEW_RESYNC_INTERVAL_MS as a backstop (etcd_mirror.ts). Stale views cost availability
// (asks routed to an owner that is gone), never safety: fencing refuses a stale
// owner's appends. security/cluster_revocations.ts does the same for revoked/.

import type { ClusterObserver } from "../observability/observer";
import { annotateOwnership, ownershipEvent, traceOwnership } from "../observability/ownership_tracing";
import { type Etcd3, type IKeyValue, type Lease, Range } from "etcd3";
import type { Logger } from "pino";
import type { Clock } from "../clock";
import { QmError } from "../errors";
import { CLUSTER_VIEW_READ_PAGE_KEYS, CLUSTER_VIEW_RESYNC_INTERVAL_MS, CLUSTER_VIEW_RETRY_MS } from "../limits";
import type { ClusterView, MemberInfo, PartitionOwnership } from "./cluster_view";
import { ClusterKeys } from "./etcd_keys";
import { EtcdMirror } from "./etcd_mirror";
import { type NodeId, partitionOf } from "./placement";
import { rendezvousOwner } from "./rendezvous";

/**
 * A node stops serving this long before its lease could expire on etcd: covers
 * clock-rate drift and a slow stop. At most a quarter of the TTL, so a short
 * TTL (tests) still leaves most of each keepalive period (TTL/3) usable.
 */
export const LEASE_SAFETY_MARGIN_MS = 2_000;

export function leaseSafetyMarginMs(leaseTtlS: number): number {
  return Math.min(LEASE_SAFETY_MARGIN_MS, (leaseTtlS * 1000) / 4);
}
/** How often the local lease deadline is checked. */
const LEASE_CHECK_INTERVAL_MS = 100;
/** A drain waits this long at most for the node's partitions to be taken by others. */
export const DRAIN_WAIT_MS_MAX = 60_000;
/** Pause between attempts to re-establish a lost lease. */
const LEASE_RETRY_MS = 500;

export interface EtcdClusterOptions {
  readonly client: Etcd3;
  readonly cluster: string;
  readonly self: NodeId;
  /** The address other nodes and clients use for this node; read when the member key is written. */
  readonly address: () => string;
  readonly version: string;
  readonly leaseTtlS: number;
  /** Used when the cluster is created; a node with another value is refused. */
  readonly partitions: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Told of partitions acquired, released and lost, and of lease renewals. */
  readonly observer?: ClusterObserver;
  /**
   * Called after this node stopped serving a partition and before its key is
   * deleted: finish the partition's turns so the next owner reads everything.
   */
  readonly beforeRelease?: (partition: number) => Promise<void>;
  /**
   * Called after this node claimed a partition and before it serves it: load
   * what the partition needs (its wake-ups). A failure leaves the partition
   * unserved; its key is then released and claimed afresh.
   */
  readonly beforeServe?: (partition: number, epoch: number) => Promise<void>;
  /** Tests shorten the periodic re-read of the view; production uses CLUSTER_VIEW_RESYNC_INTERVAL_MS. */
  readonly resyncIntervalMs?: number;
}

interface MemberRecord {
  readonly address: string;
  readonly version: string;
  readonly startedAtMs: number;
}

interface OwnerRecord {
  readonly owner: NodeId;
  readonly epoch: number;
}

export type ClusterChange = { readonly kind: "gained" | "lost"; readonly partition: number; readonly epoch: number };

export class EtcdCluster implements ClusterView {
  readonly self: NodeId;
  private readonly keys: ClusterKeys;
  private readonly client: Etcd3;
  private readonly logger: Logger;
  private readonly startedAtMs: number;
  private partitionTotal: number;

  private lease: Lease | undefined;
  /** Monotonic ms until which this node may serve its partitions. */
  private leaseValidUntilMs = 0;
  private leaseTimer: NodeJS.Timeout | undefined;
  /** The view's source: members/, drain/ and partitions/ read at one revision, then watched (etcd_mirror.ts). */
  private readonly mirror: EtcdMirror;

  private readonly memberRecords = new Map<NodeId, MemberRecord>();
  private readonly drained = new Set<NodeId>();
  /** Every partition's key holder as etcd shows it (index = partition). */
  private owners: (OwnerRecord | undefined)[] = [];
  /** Partitions this node serves now, with their epoch: held keys while the lease is valid. */
  private readonly serving = new Map<number, number>();
  private readonly listeners = new Set<(change: ClusterChange) => void>();

  private reconciling: Promise<void> | null = null;
  private reconcileAgain = false;
  private stopped = false;

  constructor(private readonly options: EtcdClusterOptions) {
    this.self = options.self;
    this.keys = new ClusterKeys(options.cluster);
    this.client = options.client;
    this.logger = options.logger;
    this.startedAtMs = options.clock.nowMs();
    this.partitionTotal = options.partitions;
    this.mirror = new EtcdMirror({
      client: this.client,
      prefix: this.keys.root,
      logger: this.logger,
      what: "the cluster's view",
      read: () => this.readView(),
      onPut: (kv) => {
        this.applyPut(kv.key.toString(), kv.value.toString(), Number(kv.create_revision));
        this.scheduleReconcile();
      },
      onDelete: (kv) => {
        this.applyDelete(kv.key.toString());
        this.scheduleReconcile();
      },
      afterResync: () => this.scheduleReconcile(),
      retryMs: CLUSTER_VIEW_RETRY_MS,
      resyncIntervalMs: options.resyncIntervalMs ?? CLUSTER_VIEW_RESYNC_INTERVAL_MS,
    });
  }

  get partitionCount(): number {
    return this.partitionTotal;
  }

  // ---- Lifecycle --------------------------------------------------------------

  async start(): Promise<void> {
    this.partitionTotal = await this.ensureClusterConfig();
    this.owners = new Array<OwnerRecord | undefined>(this.partitionTotal);
    await this.acquireLease();
    // The first read must succeed: a node does not serve before it knows the cluster.
    await this.mirror.start();
    this.leaseTimer = setInterval(() => this.checkLease(), LEASE_CHECK_INTERVAL_MS);
    this.leaseTimer.unref();
    this.scheduleReconcile();
    await this.reconciling;
  }

  /**
   * Leaves the cluster gracefully, then revokes the lease. Idempotent. The
   * member key goes first, so the others stop counting this node and desire
   * its partitions; then each partition is handed off (turns finished, key
   * deleted), so the next owners claim it at once rather than after the TTL.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.leaseTimer);
    // The watch goes on delivering during the handoff below; only re-reads stop.
    this.mirror.stopResyncs();
    while (this.reconciling !== null) await this.reconciling;
    try {
      await this.client.delete().key(this.keys.member(this.self));
      await Promise.all([...this.serving.keys()].map((p) => this.release(p)));
    } catch (error) {
      this.logger.warn({ err: error }, "graceful handoff failed; the partitions free up when the lease ends");
    }
    this.dropAll("stopping");
    await this.mirror.stop();
    const lease = this.lease;
    this.lease = undefined;
    await lease?.revoke().catch((error: unknown) => this.logger.warn({ err: error }, "lease revoke failed; it expires by itself"));
  }

  onChange(listener: (change: ClusterChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---- ClusterView ----------------------------------------------------------------

  ownerOf(actorId: string): NodeId | undefined {
    const partition = partitionOf(actorId, this.partitionTotal);
    if (this.serving.has(partition)) return this.self;
    const owner = this.owners[partition]?.owner;
    // A key of ours that we do not serve (lease past its local deadline, or a
    // handoff under way) has no owner right now: callers retry.
    return owner === this.self ? undefined : owner;
  }

  unavailable(): QmError | undefined {
    if (this.leaseValid()) return undefined;
    return new QmError(
      "UNAVAILABLE",
      `node ${this.self} has no valid etcd lease (etcd unreachable for about the lease TTL, or the lease expired): it serves nothing until the lease is renewed`,
      { reason: "NO_LEASE", node_id: this.self },
    );
  }

  private leaseValid(): boolean {
    return this.lease !== undefined && this.options.clock.monotonicMs() < this.leaseValidUntilMs;
  }

  /**
   * Partitions this node serves, and those without a serving owner as routing
   * sees them (no key, or a key of ours we do not serve): read at scrape time.
   */
  partitionCounts(): { owned: number; unowned: number } {
    let unowned = 0;
    for (let p = 0; p < this.partitionTotal; p++) {
      const owner = this.owners[p]?.owner;
      if (owner === undefined || (owner === this.self && !this.serving.has(p))) unowned++;
    }
    return { owned: this.serving.size, unowned };
  }

  /** The epoch under which this node serves the partition, or undefined if it does not serve it. */
  epochOf(partition: number): number | undefined {
    return this.serving.get(partition);
  }

  members(): readonly MemberInfo[] {
    const counts = new Map<NodeId, number>();
    for (const record of this.owners) if (record !== undefined) counts.set(record.owner, (counts.get(record.owner) ?? 0) + 1);
    return [...this.memberRecords.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([nodeId, m]) => ({
        nodeId,
        address: m.address,
        startedAtMs: m.startedAtMs,
        partitionCount: counts.get(nodeId) ?? 0,
        draining: this.drained.has(nodeId),
      }));
  }

  partitions(): readonly PartitionOwnership[] {
    return Array.from({ length: this.partitionTotal }, (_, partition) => this.ownership(partition));
  }

  locate(actorId: string): PartitionOwnership {
    return this.ownership(partitionOf(actorId, this.partitionTotal));
  }

  async drain(nodeId: NodeId): Promise<number> {
    this.checkMember(nodeId);
    const others = [...this.memberRecords.keys()].filter((n) => n !== nodeId && !this.drained.has(n));
    if (others.length === 0) {
      throw new QmError("FAILED_PRECONDITION", `node ${nodeId} is the only undrained member: no other node can take its partitions`, {
        reason: "NO_OTHER_MEMBER",
        node_id: nodeId,
      });
    }
    const owned = this.owners.filter((o) => o?.owner === nodeId).length;
    await this.client.put(this.keys.drain(nodeId)).value(new Date(this.options.clock.nowMs()).toISOString());
    await this.waitFor(() => this.owners.every((o) => o?.owner !== nodeId), DRAIN_WAIT_MS_MAX, `node ${nodeId} to hand off its partitions`);
    return owned;
  }

  async undrain(nodeId: NodeId): Promise<void> {
    this.checkMember(nodeId);
    await this.client.delete().key(this.keys.drain(nodeId));
  }

  // ---- Start-up ---------------------------------------------------------------------

  /** Creates the cluster's config on first start; later nodes must agree on the partition count. */
  private async ensureClusterConfig(): Promise<number> {
    const wanted = JSON.stringify({ partitions: this.options.partitions, created_at: new Date(this.options.clock.nowMs()).toISOString() });
    const created = await this.client.if(this.keys.config, "Create", "==", 0).then(this.client.put(this.keys.config).value(wanted)).commit();
    if (created.succeeded) return this.options.partitions;
    const stored = await this.client.get(this.keys.config).string();
    const partitions = parsePartitions(stored);
    if (partitions !== this.options.partitions) {
      throw new QmError(
        "FAILED_PRECONDITION",
        `cluster ${this.options.cluster} was created with ${partitions} partitions; QM_PARTITIONS=${this.options.partitions} does not match`,
        { reason: "PARTITIONS_MISMATCH" },
      );
    }
    return partitions;
  }

  /**
   * Grants the node's lease and registers the member key under it. A member
   * key left by a crashed process with our id vanishes within the TTL, so we
   * wait that long before calling the id taken.
   */
  private async acquireLease(): Promise<void> {
    const lease = this.client.lease(this.options.leaseTtlS);
    let firedAtMs = this.options.clock.monotonicMs();
    lease.on("keepaliveFired", () => {
      firedAtMs = this.options.clock.monotonicMs();
    });
    lease.on("keepaliveSucceeded", () => {
      if (this.lease !== lease) return;
      this.options.observer?.leaseRenewed((this.options.clock.monotonicMs() - firedAtMs) / 1000);
      const wasValid = this.options.clock.monotonicMs() < this.leaseValidUntilMs;
      this.leaseValidUntilMs = firedAtMs + this.options.leaseTtlS * 1000 - leaseSafetyMarginMs(this.options.leaseTtlS);
      // Back from a lapse: take the partitions up again (under new epochs).
      if (!wasValid) this.scheduleReconcile();
    });
    lease.on("keepaliveFailed", () => {
      if (this.lease === lease && !this.stopped) this.options.observer?.leaseRenewalFailed();
    });
    lease.on("lost", (error) => {
      if (this.lease !== lease || this.stopped) return;
      this.options.observer?.leaseLost();
      this.logger.error({ err: error }, "etcd lease lost: stopped serving every partition; re-registering");
      this.lease = undefined;
      this.dropAll("lease lost");
      void this.reacquire();
    });
    const grantedAtMs = this.options.clock.monotonicMs();
    await lease.grant();
    this.lease = lease;
    this.leaseValidUntilMs = grantedAtMs + this.options.leaseTtlS * 1000 - leaseSafetyMarginMs(this.options.leaseTtlS);

    const record = JSON.stringify({ address: this.options.address(), version: this.options.version, started_at: new Date(this.startedAtMs).toISOString() });
    const deadline = this.options.clock.monotonicMs() + this.options.leaseTtlS * 1000 + LEASE_SAFETY_MARGIN_MS;
    for (;;) {
      const claimed = await this.client.if(this.keys.member(this.self), "Create", "==", 0).then(lease.put(this.keys.member(this.self)).value(record)).commit();
      if (claimed.succeeded) return;
      if (this.options.clock.monotonicMs() > deadline) {
        await lease.revoke().catch(() => undefined);
        this.lease = undefined;
        throw new QmError("ALREADY_EXISTS", `node id ${this.self} is already a live member of cluster ${this.options.cluster}; set a distinct QM_NODE_ID`, {
          reason: "DUPLICATE_NODE_ID",
        });
      }
      await sleep(LEASE_RETRY_MS);
    }
  }

  private async reacquire(): Promise<void> {
    while (!this.stopped && this.lease === undefined) {
      try {
        await this.acquireLease();
        this.logger.warn("etcd lease re-established: claiming partitions again");
        this.scheduleReconcile();
      } catch (error) {
        this.logger.warn({ err: error }, "cannot re-establish the etcd lease yet");
        await sleep(LEASE_RETRY_MS);
      }
    }
  }

  // ---- The view's source: one read at one revision, then a watch from the next ------------------

  /**
   * Reads members/, drain/ and partitions/ at one revision and replaces the view with them (the mirror then watches
   * from the next revision). The revoked/ keys (up to 10,000 values of 8 KiB) are not read: they are not the view's.
   */
  private async readView(): Promise<bigint> {
    const members = await this.readPrefix(this.keys.membersPrefix, undefined);
    const revision = members.revision;
    const [drains, partitions] = await Promise.all([this.readPrefix(this.keys.drainPrefix, revision), this.readPrefix(this.keys.partitionsPrefix, revision)]);
    if (!this.stopped) this.replaceView(Number(revision), [...members.kvs, ...drains.kvs, ...partitions.kvs]);
    return BigInt(revision);
  }

  /**
   * Every key under `prefix` at `revision` (undefined: the current one, which is returned), CLUSTER_VIEW_READ_PAGE_KEYS
   * per request. Ends: each page starts past the last key of the one before, and the keys under a prefix are finite.
   */
  private async readPrefix(prefix: string, revision: string | undefined): Promise<{ kvs: IKeyValue[]; revision: string }> {
    const whole = Range.prefix(prefix);
    const kvs: IKeyValue[] = [];
    let from = whole.start;
    let at = revision;
    for (;;) {
      const request = this.client.getAll().inRange(new Range(from, whole.end)).limit(CLUSTER_VIEW_READ_PAGE_KEYS);
      const page = await (at === undefined ? request : request.revision(at)).exec();
      at ??= page.header.revision;
      kvs.push(...page.kvs);
      const last = page.kvs[page.kvs.length - 1];
      if (!page.more || last === undefined) return { kvs, revision: at };
      from = Buffer.concat([last.key, Buffer.from([0])]);
    }
  }

  /** The view becomes exactly `kvs` (read at `revision`), but for what this node itself claimed after that revision. */
  private replaceView(revision: number, kvs: readonly IKeyValue[]): void {
    const before = this.owners;
    this.memberRecords.clear();
    this.drained.clear();
    this.owners = new Array<OwnerRecord | undefined>(this.partitionTotal);
    for (const kv of kvs) this.applyPut(kv.key.toString(), kv.value.toString(), Number(kv.create_revision));
    // A claim that committed after the read is newer than it (epochs only grow); the new watch confirms or deletes it.
    for (let p = 0; p < this.partitionTotal; p++) {
      const known = before[p];
      if (known !== undefined && known.epoch > revision) this.owners[p] = known;
    }
    // A partition we serve whose key is gone, or held by another node or under another epoch: not ours any more.
    for (const [partition, epoch] of [...this.serving]) {
      const held = this.owners[partition];
      if (held?.owner !== this.self || held.epoch !== epoch) this.lose(partition, epoch, "partition key gone or taken (re-read from etcd)", "lost");
    }
  }

  // ---- The view, from etcd's keys -------------------------------------------------------

  private applyPut(key: string, value: string, createRevision: number): void {
    const parsed = this.keys.parse(key);
    if (parsed === undefined) return;
    switch (parsed.kind) {
      case "member": {
        const record = parseMember(value);
        if (record !== undefined) this.memberRecords.set(parsed.node, record);
        return;
      }
      case "drain":
        this.drained.add(parsed.node);
        return;
      case "partition": {
        if (parsed.partition >= this.partitionTotal) return;
        const owner = parseOwner(value);
        if (owner !== undefined) this.owners[parsed.partition] = { owner, epoch: createRevision };
        return;
      }
      case "config":
        return;
    }
  }

  private applyDelete(key: string): void {
    const parsed = this.keys.parse(key);
    if (parsed === undefined) return;
    if (parsed.kind === "member") this.memberRecords.delete(parsed.node);
    else if (parsed.kind === "drain") this.drained.delete(parsed.node);
    else if (parsed.kind === "partition" && parsed.partition < this.partitionTotal) {
      this.owners[parsed.partition] = undefined;
      // Our key gone behind our back (an operator, or the lease): stop serving it.
      const epoch = this.serving.get(parsed.partition);
      if (epoch !== undefined) this.lose(parsed.partition, epoch, "partition key deleted", "lost");
    }
  }

  private ownership(partition: number): PartitionOwnership {
    const record = this.owners[partition];
    return record === undefined ? { partition, owner: undefined, epoch: 0 } : { partition, owner: record.owner, epoch: record.epoch };
  }

  // ---- Reconciliation: claim what is ours, hand off what is not ----------------------------

  private scheduleReconcile(): void {
    if (this.stopped) return;
    if (this.reconciling !== null) {
      this.reconcileAgain = true;
      return;
    }
    this.reconciling = (async () => {
      try {
        do {
          this.reconcileAgain = false;
          await this.reconcileOnce();
        } while (this.reconcileAgain && !this.stopped);
      } catch (error) {
        this.logger.warn({ err: error }, "partition reconciliation failed; retrying on the next change");
        setTimeout(() => this.scheduleReconcile(), LEASE_RETRY_MS).unref();
      } finally {
        this.reconciling = null;
      }
    })();
  }

  private async reconcileOnce(): Promise<void> {
    const live = [...this.memberRecords.keys()].filter((n) => !this.drained.has(n));
    const leaseValid = this.leaseValid();
    const claims: Promise<void>[] = [];
    const releases: Promise<void>[] = [];
    for (let p = 0; p < this.partitionTotal; p++) {
      const desired = rendezvousOwner(live, p);
      const held = this.owners[p];
      if (desired === this.self && held === undefined && leaseValid) claims.push(this.claim(p));
      else if (desired !== this.self && this.serving.has(p)) releases.push(this.release(p));
      else if (held?.owner === this.self && !this.serving.has(p) && leaseValid) releases.push(this.dropStaleKey(p, held.epoch));
    }
    await Promise.all([...releases, ...claims]);
  }

  private claim(partition: number): Promise<void> {
    return traceOwnership("etcd.partition.claim", this.self, partition, () => this.claimKey(partition));
  }

  private async claimKey(partition: number): Promise<void> {
    const lease = this.lease;
    if (lease === undefined) return;
    const key = this.keys.partition(partition);
    const result = await this.client.if(key, "Create", "==", 0).then(lease.put(key).value(JSON.stringify({ node_id: this.self }))).commit();
    annotateOwnership({ "qm.claimed": result.succeeded });
    if (!result.succeeded) return; // Someone else holds it; the watch will tell whom.
    // The put ran at the transaction's revision, so that is the key's create revision: the epoch.
    const epoch = Number(result.header.revision);
    annotateOwnership({ "qm.epoch": epoch });
    this.owners[partition] = { owner: this.self, epoch };
    await this.options.beforeServe?.(partition, epoch);
    if (this.stopped || this.lease !== lease) return;
    this.serving.set(partition, epoch);
    this.options.observer?.partitionChange("acquired");
    this.logger.info({ partition, epoch }, "partition claimed");
    this.emit({ kind: "gained", partition, epoch });
  }

  private release(partition: number): Promise<void> {
    return traceOwnership("etcd.partition.release", this.self, partition, () => this.releaseKey(partition));
  }

  private async releaseKey(partition: number): Promise<void> {
    const epoch = this.serving.get(partition);
    if (epoch === undefined) return;
    this.lose(partition, epoch, "handoff", "released");
    await this.options.beforeRelease?.(partition);
    // Delete only our own key: if it is already gone (lease) or re-created by another node, leave it.
    const key = this.keys.partition(partition);
    await this.client.if(key, "Create", "==", epoch).then(this.client.delete().key(key)).commit();
    this.logger.info({ partition, epoch }, "partition handed off");
  }

  /**
   * Our key for a partition we stopped serving (the lease lapsed locally but
   * not on etcd). Serving it again under the same epoch could let writes of the
   * lapsed period's turns interleave with new ones, so the key is deleted and
   * the partition claimed afresh: the new epoch fences everything before it.
   */
  private async dropStaleKey(partition: number, epoch: number): Promise<void> {
    const key = this.keys.partition(partition);
    await this.client.if(key, "Create", "==", epoch).then(this.client.delete().key(key)).commit();
  }

  /** `change`: released when this node handed the partition off (or stops), lost when it was taken from it. */
  private lose(partition: number, epoch: number, why: string, change: "released" | "lost"): void {
    if (!this.serving.delete(partition)) return;
    this.options.observer?.partitionChange(change);
    this.logger.info({ partition, epoch, why }, "partition no longer served here");
    this.emit({ kind: "lost", partition, epoch });
  }

  private dropAll(why: string): void {
    if (this.serving.size > 0) ownershipEvent("etcd.lease.lost", this.self, { "qm.reason": why, "qm.partitions": this.serving.size });
    const change = why === "stopping" ? "released" : "lost";
    for (const [partition, epoch] of [...this.serving]) this.lose(partition, epoch, why, change);
  }

  private checkLease(): void {
    if (this.serving.size === 0 || this.options.clock.monotonicMs() < this.leaseValidUntilMs) return;
    this.logger.error(
      { partitions: this.serving.size, ttlS: this.options.leaseTtlS },
      "etcd lease not renewed within its TTL minus the safety margin: stopped serving every partition",
    );
    this.dropAll("lease deadline passed");
  }

  private emit(change: ClusterChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.logger.error({ err: error }, "cluster change listener failed");
      }
    }
  }

  private checkMember(nodeId: NodeId): void {
    if (!this.memberRecords.has(nodeId)) throw new QmError("NOT_FOUND", `node ${nodeId} is not a member of cluster ${this.options.cluster}`, { node_id: nodeId });
  }

  private async waitFor(condition: () => boolean, deadlineMs: number, what: string): Promise<void> {
    const until = this.options.clock.monotonicMs() + deadlineMs;
    while (!condition()) {
      if (this.options.clock.monotonicMs() > until) throw new QmError("DEADLINE_EXCEEDED", `timed out waiting for ${what}`);
      await sleep(50);
    }
  }
}

function parsePartitions(stored: string | null): number {
  try {
    const value: unknown = JSON.parse(stored ?? "");
    if (typeof value === "object" && value !== null && "partitions" in value && Number.isSafeInteger(value.partitions)) return value.partitions as number;
  } catch {
    // fall through
  }
  throw new QmError("FAILED_PRECONDITION", `the cluster's config key holds ${JSON.stringify(stored)}, not {"partitions": N}`);
}

function parseMember(value: string): MemberRecord | undefined {
  try {
    const v: unknown = JSON.parse(value);
    if (typeof v !== "object" || v === null) return undefined;
    const r = v as Record<string, unknown>;
    return {
      address: typeof r.address === "string" ? r.address : "",
      version: typeof r.version === "string" ? r.version : "",
      startedAtMs: typeof r.started_at === "string" ? Date.parse(r.started_at) || 0 : 0,
    };
  } catch {
    return undefined;
  }
}

function parseOwner(value: string): NodeId | undefined {
  try {
    const v: unknown = JSON.parse(value);
    return typeof v === "object" && v !== null && "node_id" in v && typeof v.node_id === "string" ? v.node_id : undefined;
  } catch {
    return undefined;
  }
}


function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
