// The embedded journal: one LMDB environment per data directory.
//
// Durability. A resolved append() is on disk: the environment is opened with
// overlappingSync off (and never noSync), so lmdb-js resolves a transaction
// only after mdb_txn_commit has written the pages, fdatasync'ed the data file
// and written the meta page through LMDB's O_DSYNC descriptor. With lmdb-js's
// default (overlappingSync on) the promise resolves at commit, before the
// flush, and a power loss could take back an acknowledged write.
// bench/journal_sync_count.ts counts the sync calls per commit under strace.
//
// Group commit is ours, not lmdb-js's: appends wait in a bounded queue, and
// one write at a time takes everything queued (up to JOURNAL_BATCH_APPENDS_MAX)
// into ONE transaction, so N appends cost one fsync. The batch is taken from
// the queue inside the transaction callback, so appends that arrive while the
// write lock is being taken still join it. lmdb-js's own event-turn batching
// is switched off: we never issue loose puts, and with it on lmdb-js leaves an
// internal promise unhandled when a commit fails, which would crash the
// process on the first disk error (seen with lmdb 3.5.6).
//
// Atomicity. The batch runs in a child transaction: if anything throws half
// way, LMDB aborts the child, nothing of the batch is written, and every
// append of the batch is rejected with UNAVAILABLE. A per-append failure that
// we can decide before writing (FENCED, a stale snapshot, a repeated audit
// seq) rejects only that append and writes none of it.
//
// Key layout: named sub-databases (openDB), one per keyspace, all in one
// environment so one transaction spans them. We chose them over one database
// with tagged array keys (['e', actorId, seq]) because
//   - every keyspace is its own B-tree, so a range scan or a key count (the
//     compaction check) touches only its own entries and no tag byte is stored
//     in every key;
//   - each keyspace picks its value format: payloads are msgpack bytes encoded
//     by us at append() time, the meta record is a fixed 48-byte layout, the
//     wake-up index has empty values;
//   - keys stay lmdb's ordered-binary arrays, so (actorId, seq) and
//     (wakeAtMs, actorId) sort the way the scans need.
// The keyspaces:
//   meta      actorId            -> ActorMeta (lastSeq, snapshotSeq, wakeAtMs, audit count/last seq)
//   events    [actorId, seq]     -> packed event; only seq > snapshotSeq are kept
//   snapshots actorId            -> packed state of the snapshot at meta.snapshotSeq
//   wakeups   [wakeAtMs, actorId] -> empty; exactly one entry per actor with a wake-up time
//   audit     [actorId, seq]     -> float64 atMs (big endian) followed by the packed data
//
// Actor ids are restricted to `kind/key` with ID_PATTERN characters. Besides
// rejecting unknown input, this keeps every character above the separator
// byte of lmdb's array keys, so the range [actorId, 0]..[actorId, MAX] of one
// actor can never contain a key of another actor whose id extends it.

import { open, type Database, type RootDatabase } from "lmdb";
import { pack, unpack } from "msgpackr";
import type { Clock } from "../clock";
import { QmError, assert } from "../errors";
import {
  ID_LENGTH_MAX,
  JOURNAL_APPEND_BYTES_MAX,
  JOURNAL_BATCH_APPENDS_MAX,
  JOURNAL_QUEUE_APPENDS_MAX,
  PAGE_SIZE_MAX,
  WAKEUPS_PER_TICK_MAX,
  WAKEUPS_SCAN_DEPTH_MAX,
} from "../limits";
import type {
  ActorId,
  AppendRequest,
  AuditRecord,
  Journal,
  JournalStats,
  Recovered,
  Snapshot,
} from "./journal";

/** `kind/key`: the kind is short; the key is an id of at most ID_LENGTH_MAX. */
const ACTOR_ID_LENGTH_MAX = 2 * ID_LENGTH_MAX + 1;
const ACTOR_ID_PATTERN = /^[A-Za-z0-9._:-]+\/[A-Za-z0-9._:-]+$/;
/**
 * Audit records one append may delete beyond those it adds. Adding the
 * append's own records keeps the per-actor count from ever growing past
 * maxPerActor; the extra allowance drains a backlog (expired records, or a
 * lowered maxPerActor) in bounded steps.
 */
const AUDIT_PRUNE_PER_APPEND_MAX = 256;
/** readAudit serves pages of at most PAGE_SIZE_MAX; callers ask for one more to learn whether another page follows. */
const READ_AUDIT_LIMIT_MAX = PAGE_SIZE_MAX + 1;
/** Bytes of the audit value header: the record's atMs, so retention reads it without decoding the data. */
const AUDIT_HEADER_BYTES = 8;
/** Sub-databases we open, plus room for a later one without reopening the environment differently. */
const SUB_DATABASES_MAX = 8;

const META_FORMAT = 1;
const META_BYTES = 6 * 8;
/** wakeAtMs is validated >= 0, so a negative value marks "no wake-up" in the fixed layout. */
const META_NO_WAKE = -1;
const EMPTY = Buffer.alloc(0);

export interface AuditRetention {
  /** Records older than this (by their atMs, against the clock) are dropped. */
  readonly maxAgeMs: number;
  /** At most this many records are kept per actor, oldest dropped first. */
  readonly maxPerActor: number;
}

export interface JournalLogger {
  warn(obj: object, msg: string): void;
}

export interface LmdbJournalOptions {
  /** Directory of the LMDB environment; created if missing. */
  readonly path: string;
  readonly auditRetention: AuditRetention;
  readonly clock: Clock;
  readonly logger?: JournalLogger;
}

interface ActorMeta {
  readonly lastSeq: number;
  readonly snapshotSeq: number;
  readonly wakeAtMs: number | null;
  readonly auditCount: number;
  readonly auditLastSeq: number;
}

const NEW_ACTOR: ActorMeta = { lastSeq: 0, snapshotSeq: 0, wakeAtMs: null, auditCount: 0, auditLastSeq: 0 };

interface EncodedAudit {
  readonly seq: number;
  /** AUDIT_HEADER_BYTES of atMs, then the packed data. */
  readonly value: Buffer;
}

/** An append with its values already encoded, so later mutation by the caller cannot change what is written. */
interface PendingAppend {
  readonly actorId: ActorId;
  readonly expectedLastSeq: number;
  readonly events: readonly Buffer[];
  readonly snapshot: { readonly seq: number; readonly state: Buffer } | undefined;
  readonly wakeAtMs: number | null | undefined;
  readonly audit: readonly EncodedAudit[];
  readonly resolve: () => void;
  readonly reject: (error: QmError) => void;
}

type EventKey = [ActorId, number];
type WakeKey = [number, ActorId];
type AuditKey = [ActorId, number];

interface Stores {
  readonly meta: Database<Buffer, ActorId>;
  readonly events: Database<Buffer, EventKey>;
  readonly snapshots: Database<Buffer, ActorId>;
  readonly wakeups: Database<Buffer, WakeKey>;
  readonly audit: Database<Buffer, AuditKey>;
}

type State = "new" | "open" | "closing" | "closed";

export class LmdbJournal implements Journal {
  private readonly path: string;
  private readonly retention: AuditRetention;
  private readonly clock: Clock;
  private readonly logger: JournalLogger | undefined;

  private state: State = "new";
  private root: RootDatabase<Buffer, string> | undefined;
  private stores: Stores | undefined;

  /** Bounded by JOURNAL_QUEUE_APPENDS_MAX. */
  private queue: PendingAppend[] = [];
  /** The write loop, while one runs; at most one at a time. */
  private writing: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  private commits = 0;
  private appends = 0;
  private eventsWritten = 0;

  constructor(options: LmdbJournalOptions) {
    const { maxAgeMs, maxPerActor } = options.auditRetention;
    if (!(Number.isFinite(maxAgeMs) && maxAgeMs >= 0) || !(Number.isSafeInteger(maxPerActor) && maxPerActor >= 0)) {
      throw new QmError("INVALID_ARGUMENT", "auditRetention needs maxAgeMs >= 0 and an integer maxPerActor >= 0");
    }
    this.path = options.path;
    this.retention = { maxAgeMs, maxPerActor };
    this.clock = options.clock;
    this.logger = options.logger;
  }

  async open(): Promise<void> {
    if (this.state === "open") return;
    if (this.state !== "new") throw new QmError("FAILED_PRECONDITION", `journal ${this.path} was closed; open a new one`);
    try {
      const root = open<Buffer, string>({
        path: this.path,
        maxDbs: SUB_DATABASES_MAX,
        // See the top of the file: a resolved write must already be flushed.
        overlappingSync: false,
        noSync: false,
        // We batch ourselves, inside one transaction callback.
        eventTurnBatching: false,
        encoding: "binary",
      });
      this.root = root;
      this.stores = {
        meta: root.openDB<Buffer, ActorId>("meta", { encoding: "binary" }),
        events: root.openDB<Buffer, EventKey>("events", { encoding: "binary" }),
        snapshots: root.openDB<Buffer, ActorId>("snapshots", { encoding: "binary" }),
        wakeups: root.openDB<Buffer, WakeKey>("wakeups", { encoding: "binary" }),
        audit: root.openDB<Buffer, AuditKey>("audit", { encoding: "binary" }),
      };
    } catch (error) {
      await this.root?.close();
      this.root = undefined;
      throw new QmError("UNAVAILABLE", `cannot open journal at ${this.path}: ${messageOf(error)}`);
    }
    this.state = "open";
  }

  close(): Promise<void> {
    if (this.closing === null) this.closing = this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    this.state = "closing";
    // Appends accepted before close() are still written and answered.
    while (this.writing !== null) await this.writing;
    const root = this.root;
    this.root = undefined;
    this.stores = undefined;
    this.state = "closed";
    if (root !== undefined) await root.close();
  }

  /**
   * commits: writes that stored at least one append (a batch of only rejected
   * appends writes nothing). appends: appends carried by committed writes,
   * FENCED ones included; appends of a failed write are not counted.
   */
  stats(): JournalStats {
    return { commits: this.commits, appends: this.appends, events: this.eventsWritten };
  }

  // ---- Reads ----------------------------------------------------------------
  // Each read method runs synchronously to its end against lmdb-js's shared
  // read transaction, which lmdb-js renews only when it processes a commit
  // (a callback or microtask, never in the middle of synchronous code), so
  // one call sees one consistent snapshot.

  async recover(actorId: ActorId): Promise<Recovered> {
    checkActorId(actorId);
    const { meta: metaDb, snapshots, events } = this.openStores();
    const meta = decodeMeta(actorId, metaDb.get(actorId));
    let snapshot: Snapshot | undefined;
    if (meta.snapshotSeq > 0) {
      const stored = snapshots.get(actorId);
      assert(stored !== undefined, `snapshot of ${actorId} at seq ${meta.snapshotSeq} is stored`);
      snapshot = { seq: meta.snapshotSeq, state: decodeValue(actorId, stored) };
    }
    const recovered: unknown[] = [];
    let expectedSeq = meta.snapshotSeq + 1;
    if (meta.lastSeq > meta.snapshotSeq) {
      for (const { key, value } of events.getRange({
        start: [actorId, meta.snapshotSeq + 1],
        end: [actorId, meta.lastSeq],
        inclusiveEnd: true,
      })) {
        assert(key[1] === expectedSeq, `event ${expectedSeq} of ${actorId} is stored (found ${key[1]})`);
        recovered.push(decodeValue(actorId, value));
        expectedSeq++;
      }
    }
    assert(expectedSeq === meta.lastSeq + 1, `events ${meta.snapshotSeq + 1}..${meta.lastSeq} of ${actorId} are stored`);
    return { snapshot, events: recovered, lastSeq: meta.lastSeq, wakeAtMs: meta.wakeAtMs };
  }

  async dueWakeups(nowMs: number, limit: number, offset = 0): Promise<ActorId[]> {
    if (!Number.isFinite(nowMs)) throw new QmError("INVALID_ARGUMENT", "nowMs must be a finite number");
    checkLimit("limit", limit, WAKEUPS_PER_TICK_MAX);
    if (!(Number.isSafeInteger(offset) && offset >= 0 && offset <= WAKEUPS_SCAN_DEPTH_MAX)) {
      throw new QmError("INVALID_ARGUMENT", `offset must be an integer from 0 to ${WAKEUPS_SCAN_DEPTH_MAX}`);
    }
    const { wakeups } = this.openStores();
    const due: ActorId[] = [];
    // A cursor walk from the earliest entry that stops at the first one not
    // yet due: it reads at most limit + 1 keys however many actors wait.
    for (const [wakeAtMs, actorId] of wakeups.getKeys({ offset, limit: limit + 1 })) {
      if (wakeAtMs > nowMs || due.length === limit) break;
      due.push(actorId);
    }
    return due;
  }

  async readAudit(actorId: ActorId, afterSeq: number, limit: number): Promise<AuditRecord[]> {
    checkActorId(actorId);
    if (!(Number.isSafeInteger(afterSeq) && afterSeq >= 0)) {
      throw new QmError("INVALID_ARGUMENT", "afterSeq must be an integer >= 0");
    }
    checkLimit("limit", limit, READ_AUDIT_LIMIT_MAX);
    const { audit } = this.openStores();
    // Retention runs on append; an idle actor may still hold expired records,
    // so they are skipped here too. The scan is bounded by what retention
    // keeps per actor (maxPerActor plus a drained-in-steps backlog).
    const cutoffMs = this.clock.nowMs() - this.retention.maxAgeMs;
    const page: AuditRecord[] = [];
    for (const { key, value } of audit.getRange({
      start: [actorId, afterSeq],
      exclusiveStart: true,
      end: [actorId, Number.MAX_SAFE_INTEGER],
      inclusiveEnd: true,
    })) {
      const atMs = value.readDoubleBE(0);
      if (atMs < cutoffMs) continue;
      page.push({ seq: key[1], atMs, data: decodeValue(actorId, value.subarray(AUDIT_HEADER_BYTES)) });
      if (page.length === limit) break;
    }
    return page;
  }

  // ---- Appends ----------------------------------------------------------------

  append(request: AppendRequest): Promise<void> {
    if (this.state !== "open") {
      return Promise.reject(new QmError("UNAVAILABLE", `journal ${this.path} is ${this.state === "new" ? "not open" : "closed"}`));
    }
    if (this.queue.length >= JOURNAL_QUEUE_APPENDS_MAX) {
      return Promise.reject(new QmError("OVERLOADED", `journal queue is full (${JOURNAL_QUEUE_APPENDS_MAX} appends waiting)`));
    }
    let encoded: Omit<PendingAppend, "resolve" | "reject">;
    try {
      encoded = encodeAppend(request);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ ...encoded, resolve, reject });
      if (this.writing === null) this.writing = this.writeLoop();
    });
  }

  /** Writes batches until the queue is empty. Never rejects: every outcome goes to the appends. */
  private async writeLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.writeBatch();
    } catch (error) {
      // Only a broken invariant gets here (writeBatch answers every append it
      // took); fail what is queued rather than leave callers waiting forever.
      this.failBatch(this.queue.splice(0, this.queue.length), error);
    } finally {
      this.writing = null;
    }
  }

  private async writeBatch(): Promise<void> {
    const root = this.root;
    assert(root !== undefined, "the journal is open while appends are queued");
    // Filled inside the transaction callback; a holder object because the
    // catch below must know whether the callback took a batch.
    const taken: { batch?: PendingAppend[] } = {};
    let outcomes: (QmError | null)[];
    try {
      const stores = this.openStores();
      outcomes = await root.childTransaction(() => {
        const batch = this.queue.splice(0, JOURNAL_BATCH_APPENDS_MAX);
        taken.batch = batch;
        return batch.map((pending) => this.applyAppend(stores, pending));
      });
    } catch (error) {
      // The transaction failed before or after our callback ran; either way
      // nothing of this batch is on disk. If the callback never ran, the
      // appends are still queued: fail the next batch's worth so the loop
      // always makes progress instead of retrying a broken disk forever.
      this.failBatch(taken.batch ?? this.queue.splice(0, JOURNAL_BATCH_APPENDS_MAX), error);
      return;
    }
    const batch = taken.batch;
    if (batch === undefined) {
      // lmdb-js resolved without running the callback: the appends are still
      // queued, but fail them rather than spin on empty transactions.
      this.failBatch(this.queue.splice(0, JOURNAL_BATCH_APPENDS_MAX), new Error("transaction ended without running the batch"));
      return;
    }
    assert(outcomes.length === batch.length, "one outcome per append of the batch");
    let applied = 0;
    for (let i = 0; i < batch.length; i++) {
      const pending = batch[i]!;
      const outcome = outcomes[i];
      if (outcome === null) {
        applied++;
        this.eventsWritten += pending.events.length;
        pending.resolve();
      } else {
        pending.reject(outcome ?? new QmError("INTERNAL", "append outcome missing"));
      }
    }
    // A batch of rejected appends writes nothing, so it is no durable write.
    if (applied > 0) this.commits++;
    this.appends += batch.length;
  }

  private failBatch(batch: readonly PendingAppend[], error: unknown): void {
    // lmdb-js rejects with "Commit failed (see commitError for details)" and
    // rejects error.commitError with the errno; that second promise must be
    // handled or the process dies of an unhandled rejection.
    const commitError = commitErrorOf(error);
    if (commitError !== undefined) {
      void commitError.then(undefined, (detail: unknown) =>
        this.logger?.warn({ err: detail, path: this.path }, "journal commit failed: cause"),
      );
    }
    this.logger?.warn({ err: error, path: this.path, appends: batch.length }, "journal write failed; its appends are rejected");
    const message = `journal write failed: ${messageOf(error)}`;
    for (const pending of batch) pending.reject(new QmError("UNAVAILABLE", message, { actorId: pending.actorId }));
  }

  /**
   * Runs inside the write transaction. Returns null when the append was
   * written, or the error that rejects it alone (then nothing of it is
   * written). Throws only for a failure of the transaction itself.
   */
  private applyAppend(stores: Stores, pending: PendingAppend): QmError | null {
    const { actorId } = pending;
    let meta: ActorMeta;
    try {
      // Reads inside the write transaction see this batch's earlier writes,
      // so two appends of one actor in one batch chain.
      meta = decodeMeta(actorId, stores.meta.get(actorId));
    } catch (error) {
      return error instanceof QmError ? error : new QmError("INTERNAL", messageOf(error));
    }
    if (meta.lastSeq !== pending.expectedLastSeq) {
      return new QmError("FENCED", `append to ${actorId} expected last seq ${pending.expectedLastSeq}, journal has ${meta.lastSeq}`, {
        actorId,
        expectedLastSeq: String(pending.expectedLastSeq),
        lastSeq: String(meta.lastSeq),
      });
    }
    if (pending.snapshot !== undefined && pending.snapshot.seq < meta.snapshotSeq) {
      return new QmError("INVALID_ARGUMENT", `snapshot of ${actorId} at seq ${pending.snapshot.seq} is older than the stored one at ${meta.snapshotSeq}`);
    }
    const firstAudit = pending.audit[0];
    if (firstAudit !== undefined && firstAudit.seq <= meta.auditLastSeq) {
      return new QmError("INVALID_ARGUMENT", `audit seq ${firstAudit.seq} of ${actorId} is not after the stored ${meta.auditLastSeq}`);
    }

    // Events the snapshot in this same append already covers are never written.
    const coveredSeq = pending.snapshot?.seq ?? 0;
    const lastSeq = pending.expectedLastSeq + pending.events.length;
    for (let i = 0; i < pending.events.length; i++) {
      const seq = pending.expectedLastSeq + 1 + i;
      if (seq > coveredSeq) stores.events.putSync([actorId, seq], pending.events[i]!);
    }

    let snapshotSeq = meta.snapshotSeq;
    if (pending.snapshot !== undefined) {
      stores.snapshots.putSync(actorId, pending.snapshot.state);
      // Compaction: events up to the previous snapshot are already gone, so
      // this deletes exactly the stored events the new snapshot covers, work
      // proportional to events written since the last snapshot.
      const deleteThrough = Math.min(pending.snapshot.seq, pending.expectedLastSeq);
      for (let seq = meta.snapshotSeq + 1; seq <= deleteThrough; seq++) stores.events.removeSync([actorId, seq]);
      snapshotSeq = pending.snapshot.seq;
    }

    let wakeAtMs = meta.wakeAtMs;
    if (pending.wakeAtMs !== undefined && pending.wakeAtMs !== meta.wakeAtMs) {
      if (meta.wakeAtMs !== null) stores.wakeups.removeSync([meta.wakeAtMs, actorId]);
      if (pending.wakeAtMs !== null) stores.wakeups.putSync([pending.wakeAtMs, actorId], EMPTY);
      wakeAtMs = pending.wakeAtMs;
    }

    let auditCount = meta.auditCount;
    let auditLastSeq = meta.auditLastSeq;
    for (const record of pending.audit) {
      stores.audit.putSync([actorId, record.seq], record.value);
      auditCount++;
      auditLastSeq = record.seq;
    }
    if (auditCount > 0) {
      auditCount -= this.pruneAudit(stores.audit, actorId, auditCount, AUDIT_PRUNE_PER_APPEND_MAX + pending.audit.length);
    }

    stores.meta.putSync(actorId, encodeMeta({ lastSeq, snapshotSeq, wakeAtMs, auditCount, auditLastSeq }));
    return null;
  }

  /**
   * Drops the actor's oldest audit records while they are over maxPerActor or
   * older than maxAgeMs, at most budget of them. Returns how many it dropped.
   * Age is judged in seq order and stops at the first record still young: the
   * actor stamps atMs from its clock as seq grows, so the expired ones form
   * the oldest prefix.
   */
  private pruneAudit(audit: Database<Buffer, AuditKey>, actorId: ActorId, count: number, budget: number): number {
    const cutoffMs = this.clock.nowMs() - this.retention.maxAgeMs;
    const doomed: AuditKey[] = [];
    let remaining = count;
    for (const { key, value } of audit.getRange({
      start: [actorId, 0],
      end: [actorId, Number.MAX_SAFE_INTEGER],
      inclusiveEnd: true,
      limit: budget,
    })) {
      if (remaining <= this.retention.maxPerActor && value.readDoubleBE(0) >= cutoffMs) break;
      doomed.push(key);
      remaining--;
    }
    // Deleting after the walk: the cursor must not see its own deletions.
    for (const key of doomed) audit.removeSync(key);
    return doomed.length;
  }

  private openStores(): Stores {
    if (this.stores === undefined) throw new QmError("UNAVAILABLE", `journal ${this.path} is not open`);
    return this.stores;
  }
}

// ---- Encoding ------------------------------------------------------------------

function encodeAppend(request: AppendRequest): Omit<PendingAppend, "resolve" | "reject"> {
  const { actorId, expectedLastSeq } = request;
  checkActorId(actorId);
  if (!(Number.isSafeInteger(expectedLastSeq) && expectedLastSeq >= 0)) {
    throw new QmError("INVALID_ARGUMENT", "expectedLastSeq must be an integer >= 0");
  }
  if (!Array.isArray(request.events)) throw new QmError("INVALID_ARGUMENT", "events must be an array");
  const lastSeq = expectedLastSeq + request.events.length;
  let bytes = 0;
  const events: Buffer[] = new Array<Buffer>(request.events.length);
  for (let i = 0; i < request.events.length; i++) {
    const packed = packValue(`events[${i}]`, request.events[i]);
    bytes += packed.length;
    events[i] = packed;
  }

  let snapshot: PendingAppend["snapshot"];
  if (request.snapshot !== undefined) {
    const { seq } = request.snapshot;
    if (!(Number.isSafeInteger(seq) && seq >= 1 && seq <= lastSeq)) {
      throw new QmError("INVALID_ARGUMENT", `snapshot.seq must be an integer in 1..${lastSeq}`);
    }
    const state = packValue("snapshot.state", request.snapshot.state);
    bytes += state.length;
    snapshot = { seq, state };
  }

  const { wakeAtMs } = request;
  if (wakeAtMs !== undefined && wakeAtMs !== null && !(Number.isFinite(wakeAtMs) && wakeAtMs >= 0)) {
    throw new QmError("INVALID_ARGUMENT", "wakeAtMs must be null or a finite number >= 0");
  }

  const audit: EncodedAudit[] = [];
  if (request.audit !== undefined) {
    let previousSeq = 0;
    for (let i = 0; i < request.audit.length; i++) {
      const record = request.audit[i]!;
      if (!(Number.isSafeInteger(record.seq) && record.seq > previousSeq)) {
        throw new QmError("INVALID_ARGUMENT", `audit[${i}].seq must be an integer above the previous one and above 0`);
      }
      if (!Number.isFinite(record.atMs)) throw new QmError("INVALID_ARGUMENT", `audit[${i}].atMs must be a finite number`);
      const data = packValue(`audit[${i}].data`, record.data);
      const value = Buffer.allocUnsafe(AUDIT_HEADER_BYTES + data.length);
      value.writeDoubleBE(record.atMs, 0);
      data.copy(value, AUDIT_HEADER_BYTES);
      bytes += value.length;
      audit.push({ seq: record.seq, value });
      previousSeq = record.seq;
    }
  }

  if (bytes > JOURNAL_APPEND_BYTES_MAX) {
    throw new QmError("LIMIT_EXCEEDED", `append to ${actorId} encodes to ${bytes} bytes, more than ${JOURNAL_APPEND_BYTES_MAX}`, {
      bytes: String(bytes),
      bytesMax: String(JOURNAL_APPEND_BYTES_MAX),
    });
  }
  return { actorId, expectedLastSeq, events, snapshot, wakeAtMs, audit };
}

function packValue(field: string, value: unknown): Buffer {
  try {
    return pack(value);
  } catch (error) {
    throw new QmError("INVALID_ARGUMENT", `${field} cannot be encoded: ${messageOf(error)}`);
  }
}

function decodeValue(actorId: ActorId, bytes: Buffer): unknown {
  try {
    return unpack(bytes);
  } catch (error) {
    throw new QmError("INTERNAL", `stored record of ${actorId} cannot be decoded: ${messageOf(error)}`, { actorId });
  }
}

function encodeMeta(meta: ActorMeta): Buffer {
  const bytes = Buffer.allocUnsafe(META_BYTES);
  bytes.writeDoubleLE(META_FORMAT, 0);
  bytes.writeDoubleLE(meta.lastSeq, 8);
  bytes.writeDoubleLE(meta.snapshotSeq, 16);
  bytes.writeDoubleLE(meta.wakeAtMs ?? META_NO_WAKE, 24);
  bytes.writeDoubleLE(meta.auditCount, 32);
  bytes.writeDoubleLE(meta.auditLastSeq, 40);
  return bytes;
}

function decodeMeta(actorId: ActorId, bytes: Buffer | undefined): ActorMeta {
  if (bytes === undefined) return NEW_ACTOR;
  if (bytes.length !== META_BYTES || bytes.readDoubleLE(0) !== META_FORMAT) {
    throw new QmError("INTERNAL", `meta record of ${actorId} is corrupt (${bytes.length} bytes)`, { actorId });
  }
  const wakeAtMs = bytes.readDoubleLE(24);
  const meta: ActorMeta = {
    lastSeq: bytes.readDoubleLE(8),
    snapshotSeq: bytes.readDoubleLE(16),
    wakeAtMs: wakeAtMs === META_NO_WAKE ? null : wakeAtMs,
    auditCount: bytes.readDoubleLE(32),
    auditLastSeq: bytes.readDoubleLE(40),
  };
  assert(meta.snapshotSeq <= meta.lastSeq, `snapshot seq ${meta.snapshotSeq} <= last seq ${meta.lastSeq} of ${actorId}`);
  return meta;
}

// ---- Validation ----------------------------------------------------------------

function checkActorId(actorId: unknown): asserts actorId is ActorId {
  if (typeof actorId !== "string" || actorId.length > ACTOR_ID_LENGTH_MAX || !ACTOR_ID_PATTERN.test(actorId)) {
    throw new QmError("INVALID_ARGUMENT", `actor id must be kind/key of at most ${ACTOR_ID_LENGTH_MAX} characters [A-Za-z0-9._:-]`);
  }
}

function checkLimit(name: string, limit: number, max: number): void {
  if (!(Number.isSafeInteger(limit) && limit >= 1 && limit <= max)) {
    throw new QmError("INVALID_ARGUMENT", `${name} must be an integer in 1..${max}`);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function commitErrorOf(error: unknown): Promise<unknown> | undefined {
  if (typeof error !== "object" || error === null || !("commitError" in error)) return undefined;
  const commitError: unknown = error.commitError;
  return commitError instanceof Promise ? commitError : undefined;
}
