// The persistence port of the actor runtime. The embedded implementation is
// LMDB (lmdb_journal.ts); the cluster implements the same interface on NATS
// JetStream, so actors never know where their events live.
//
// Model: every actor (id "kind/key") owns an ordered event log with sequence
// numbers 1, 2, 3..., an optional snapshot that covers a prefix of the log,
// one optional wake-up time, and an optional audit log with its own retention.

/** An actor's id: `${kind}/${key}`, e.g. `sku/ABC-1` or `order/o-17`. */
export type ActorId = string;

export interface Snapshot {
  /** The snapshot covers events 1..seq. */
  readonly seq: number;
  readonly state: unknown;
}

export interface Recovered {
  readonly snapshot: Snapshot | undefined;
  /** Events after the snapshot, oldest first. */
  readonly events: readonly unknown[];
  /** Sequence number of the last event (0 for a new actor). */
  readonly lastSeq: number;
  /** The stored wake-up time, if any. */
  readonly wakeAtMs: number | null;
}

export interface RecoverOptions {
  readonly epoch?: number;
}

export interface AuditRecord {
  /** Per-actor sequence, chosen by the actor, strictly increasing. */
  readonly seq: number;
  readonly atMs: number;
  readonly data: unknown;
}

export interface AppendRequest {
  readonly actorId: ActorId;
  /**
   * Compare-and-set: the append applies only if the actor's stored last
   * sequence equals this. It is what fences a stale writer (a second
   * activation, a zombie owner in the cluster): it fails with FENCED.
   */
  readonly expectedLastSeq: number;
  /** Stored as expectedLastSeq+1, +2, ... May be empty (a wake-up change alone). */
  readonly events: readonly unknown[];
  /** Written atomically with the events; the log up to snapshot.seq may then be compacted. */
  readonly snapshot?: Snapshot;
  /** undefined: unchanged; null: cleared; a number: replaces the stored time. */
  readonly wakeAtMs?: number | null;
  readonly audit?: readonly AuditRecord[];
  /**
   * The fencing epoch of the writer. The embedded journal has one writer per
   * data directory and ignores it; the cluster journal rejects an append whose
   * epoch is older than the partition's.
   */
  readonly epoch?: number;
}

export interface JournalStats {
  /** Durable writes (one fsync or one replicated publish each). */
  readonly commits: number;
  /** Appends those writes carried. appends / commits is the group-commit factor. */
  readonly appends: number;
  readonly events: number;
  /**
   * Seconds appends waited in the write queue before a write took them,
   * summed; the embedded journal's only. Over appends, the mean wait.
   */
  readonly queueWaitSeconds?: number;
}

export interface Journal {
  open(): Promise<void>;
  /** Idempotent. Waits for appends in flight. */
  close(): Promise<void>;
  /**
   * The actor's snapshot and events. With an epoch (cluster mode: the
   * partition's fencing epoch as this node holds it), a journal that stores
   * epochs first makes every writer with an older epoch fail from now on, so
   * nothing can be appended behind this read; the embedded journal has one
   * writer per data directory and ignores it.
   */
  recover(actorId: ActorId, options?: RecoverOptions): Promise<Recovered>;
  /**
   * Resolves once the append is durable. Appends issued while a write is in
   * flight are folded into the next write (group commit). Each append succeeds
   * or fails on its own: a failed compare-and-set rejects only that append.
   */
  append(request: AppendRequest): Promise<void>;
  /**
   * True when appends become durable in the order they were issued, across
   * every actor: an append is never durable before each append issued ahead
   * of it is durable too (or has failed). An order's saga relies on it to
   * send a step's asks while the step's intent is still being written.
   */
  readonly durableInIssueOrder?: boolean;
  /**
   * Actors whose wake-up time is at or before nowMs, earliest first, at most
   * limit, after skipping the first `offset` due ones (so that a scheduler can
   * page past actors that stay due).
   */
  dueWakeups(nowMs: number, limit: number, offset?: number): Promise<ActorId[]>;
  /** Audit records with seq > afterSeq, oldest first, at most limit. */
  readAudit(actorId: ActorId, afterSeq: number, limit: number): Promise<AuditRecord[]>;
  stats(): JournalStats;
}
