// The cluster journal: the same Journal port as the embedded LMDB one, on NATS
// JetStream. Acknowledged means stored by JetStream with its ack (with the
// replicas and sync policy of the stream: see the README's durability notes).
//
// Streams of one cluster <c> (created if missing):
//   QM_<c>_JOURNAL    qm.<c>.j.<partition>.<kind>.<key>   one message per durable write of one actor
//   QM_<c>_SNAPSHOTS  qm.<c>.s.<partition>.<kind>.<key>   the actor's latest snapshot (one kept per subject)
//   QM_<c>_AUDIT      qm.<c>.a.<partition>.<kind>.<key>   audit records; JetStream enforces their retention
//                                                         (max messages per subject, max age)
// '.' in ids is escaped as %2E ('%' never occurs in an id), and the partition
// is in every subject, so a partition's actors are one wildcard.
//
// Compare-and-set. Every journal message is published with the stream
// sequence of the actor's previous message as its expected last subject
// sequence, which JetStream enforces: an append over a stale view fails with
// FENCED. Fencing by epoch builds on it: a new owner recovering an actor
// appends a fence message carrying its epoch, so every later append of the
// former owner (whose view of the last sequence predates the fence) fails.
//
// Group commit. Publishes of different actors are in flight together; the
// appends of one actor that queue while its previous publish is in flight go
// out as ONE message (their compare-and-set chains by construction).
//
// Wake-ups. Every journal message carries the actor's wake-up time as of that
// message, so the last message per subject of a partition is its wake-up
// index: an owner that claims a partition reads it once (a last-per-subject
// consumer) and keeps it in memory, updated by its own appends.

import type { SpanContext } from "@opentelemetry/api";
import { appendSpanContext, traceCommit } from "../observability/journal_tracing";
import { pack, unpack } from "msgpackr";
import {
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  type NatsConnection,
  NatsError,
  nanos,
  RetentionPolicy,
  StorageType,
  type StoredMsg,
} from "nats";
import type { Clock } from "../clock";
import { partitionOf } from "../cluster/placement";
import { assert, QmError } from "../errors";
import { JOURNAL_APPEND_BYTES_MAX, JOURNAL_QUEUE_APPENDS_MAX, PAGE_SIZE_MAX, WAKEUPS_PER_TICK_MAX, WAKEUPS_SCAN_DEPTH_MAX } from "../limits";
import type { JournalObserver } from "../observability/observer";
import type { ActorId, AppendRequest, AuditRecord, Journal, JournalStats, RecoverOptions, Recovered, Snapshot } from "./journal";
import { WakeupIndex } from "./wakeup_index";

const FORMAT = 1;
/** Actors whose tail (last sequence numbers) the journal keeps; an evicted one is re-read from JetStream on its next append. */
const TAILS_MAX = 100_000;
/** Publishes in flight at once across all actors: enough to hide the round trip, bounded so a burst cannot exhaust memory. */
const PUBLISHES_IN_FLIGHT_MAX = 1024;
/** A new owner's fence can race the former owner's last appends; it re-reads and retries this many times. */
const FENCE_ATTEMPTS_MAX = 16;
/** How long one JetStream request may take before the append fails as UNAVAILABLE. */
const REQUEST_TIMEOUT_MS = 5_000;
/** Messages fetched per request while loading a partition's wake-up index. */
const INDEX_FETCH_BATCH = 256;

export interface JetStreamJournalOptions {
  readonly nc: NatsConnection;
  readonly cluster: string;
  readonly partitions: number;
  readonly replicas: number;
  readonly auditRetention: { readonly maxAgeMs: number; readonly maxPerActor: number };
  readonly clock: Clock;
  /** Told of every fencing conflict: the sign of a former owner's late write, refused. */
  readonly observer?: JournalObserver;
}

/** One journal message: the durable write of one or more appends of one actor. */
interface JournalMessage {
  readonly f: number;
  /** Writer's fencing epoch. */
  readonly epoch: number;
  /** Logical sequence of the first event (lastSeq - events.length + 1). */
  readonly firstSeq: number;
  readonly lastSeq: number;
  readonly events: readonly unknown[];
  /** The actor's wake-up time after this write. */
  readonly wakeAtMs: number | null;
  /** A new owner's fence: no events, just the epoch. */
  readonly fence?: true;
  /**
   * Stream sequence of the actor's previous journal message (0: this is its
   * first), so recovery walks back from the last message by direct gets of
   * known sequences instead of scanning the stream for the subject. Absent
   * in messages of builds before it: recovery then scans as they did.
   */
  readonly prev?: number;
  /** 1 when a snapshot was written with this message or an earlier one, 0 when none ever was: recovery skips the snapshot read. Absent as prev. */
  readonly snap?: 0 | 1;
}

interface SnapshotMessage {
  readonly f: number;
  readonly seq: number;
  readonly state: unknown;
  /** Stream sequence of the journal message that carried it; recovery reads from there on. */
  readonly fromStreamSeq: number;
}

interface Tail {
  readonly lastSeq: number;
  readonly lastStreamSeq: number;
  readonly wakeAtMs: number | null;
  readonly epoch: number;
  /** Whether the actor has a snapshot (read, or written by this node); carried into each message as `snap`. */
  readonly snapshotted: boolean;
}

interface Pending {
  readonly request: AppendRequest;
  /** The journal.append span this append was issued under, linked from its commit span; undefined when untraced. */
  readonly spanContext: SpanContext | undefined;
  readonly resolve: () => void;
  readonly reject: (error: QmError) => void;
}

interface Stored {
  readonly seq: number;
  readonly data: Uint8Array;
}

export class JetStreamJournal implements Journal {
  private readonly names: StreamNames;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private direct: DirectGets | undefined;
  private state: "new" | "open" | "closed" = "new";

  /** Insertion order is recency: the oldest tail is evicted first. */
  private readonly tails = new Map<ActorId, Tail>();
  /** Appends waiting per actor while its previous publish is in flight. */
  private readonly waiting = new Map<ActorId, Pending[]>();
  private readonly inFlight = new Set<ActorId>();
  /** Actors with waiting appends that found every publish slot taken; bounded by `waiting`'s keys. */
  private readonly blocked = new Set<ActorId>();
  /** Actors with waiting appends whose publish starts at the next flush (bounded by `waiting`'s keys). */
  private readonly ready = new Set<ActorId>();
  private publishScheduled = false;
  private queued = 0;
  private publishing = 0;
  private idle: (() => void) | undefined;

  /** Wake-up index of the partitions this node owns. */
  private readonly wakeups = new WakeupIndex();
  /** Actors of a partition being claimed whose wake-up this node wrote during the scan (bounded by that partition's actors). */
  private readonly touchedDuringClaim = new Map<number, Set<ActorId>>();

  /** One per publish awaiting its ack (at most PUBLISHES_IN_FLIGHT_MAX): gives up on it when NATS disconnects. */
  private readonly abandoners = new Set<(error: QmError) => void>();
  private disconnected = false;

  private commits = 0;
  private appends = 0;
  private eventsWritten = 0;

  constructor(private readonly options: JetStreamJournalOptions) {
    this.names = streamNames(options.cluster);
  }

  async open(): Promise<void> {
    if (this.state === "open") return;
    const jsm = await this.options.nc.jetstreamManager({ timeout: REQUEST_TIMEOUT_MS });
    const { replicas } = this.options;
    await ensureStream(jsm, { name: this.names.journal, subjects: [`${this.names.prefix}.j.>`], num_replicas: replicas, allow_direct: true });
    await ensureStream(jsm, {
      name: this.names.snapshots,
      subjects: [`${this.names.prefix}.s.>`],
      num_replicas: replicas,
      max_msgs_per_subject: 1,
      allow_direct: true,
    });
    await ensureStream(jsm, {
      name: this.names.audit,
      subjects: [`${this.names.prefix}.a.>`],
      num_replicas: replicas,
      max_msgs_per_subject: Math.max(1, this.options.auditRetention.maxPerActor),
      max_age: nanos(this.options.auditRetention.maxAgeMs),
    });
    this.jsm = jsm;
    this.direct = directGetsOf(jsm);
    this.js = this.options.nc.jetstream({ timeout: REQUEST_TIMEOUT_MS });
    this.state = "open";
  }

  /** Idempotent. Waits for appends in flight. */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.state = "closed";
    if (this.publishing > 0 || this.queued > 0) await new Promise<void>((resolve) => (this.idle = resolve));
  }

  stats(): JournalStats {
    return { commits: this.commits, appends: this.appends, events: this.eventsWritten };
  }

  // ---- Ownership of partitions -----------------------------------------------------

  /** Loads the partition's wake-up index (the last message of each of its actors). Call on claiming it. */
  async claimPartition(partition: number): Promise<void> {
    // Installed before the scan, so this node's own appends during it land in
    // the index; the scan then fills in only the actors they did not touch.
    const touched = new Set<ActorId>();
    this.wakeups.claim(partition);
    this.touchedDuringClaim.set(partition, touched);
    const consumer = await this.jetstream().consumers.get(this.names.journal, {
      filterSubjects: `${this.names.prefix}.j.${partition}.>`,
      deliver_policy: DeliverPolicy.LastPerSubject,
    });
    try {
      let remaining = (await consumer.info()).num_pending;
      while (remaining > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(remaining, INDEX_FETCH_BATCH), expires: REQUEST_TIMEOUT_MS });
        let got = 0;
        for await (const m of batch) {
          got++;
          const actorId = actorIdOfSubject(m.subject);
          const message = decodeJournalMessage(actorId, m.data);
          if (message.wakeAtMs !== null && !touched.has(actorId)) this.wakeups.set(partition, actorId, message.wakeAtMs);
        }
        if (got === 0) break;
        remaining -= got;
      }
    } catch (error) {
      this.wakeups.release(partition);
      throw error;
    } finally {
      this.touchedDuringClaim.delete(partition);
      await consumer.delete().catch(() => undefined);
    }
  }

  /** Forgets the partition's wake-ups and actor tails. Call on handing it off. */
  releasePartition(partition: number): void {
    this.wakeups.release(partition);
    for (const actorId of [...this.tails.keys()]) if (this.partitionOf(actorId) === partition) this.tails.delete(actorId);
  }

  // ---- Reads ---------------------------------------------------------------------------

  /**
   * With an epoch newer than the actor's, appends a fence first, so that no
   * writer with an older view can append after this read.
   */
  async recover(actorId: ActorId, options: RecoverOptions = {}): Promise<Recovered> {
    for (let attempt = 1; ; attempt++) {
      const { tail, result } = await this.read(actorId);
      const epoch = options.epoch;
      if (epoch === undefined || tail.epoch >= epoch) {
        this.remember(actorId, tail);
        return result;
      }
      const fence: JournalMessage = {
        f: FORMAT,
        epoch,
        firstSeq: tail.lastSeq + 1,
        lastSeq: tail.lastSeq,
        events: [],
        wakeAtMs: tail.wakeAtMs,
        fence: true,
        prev: tail.lastStreamSeq,
        snap: tail.snapshotted ? 1 : 0,
      };
      try {
        const ack = await this.jetstream().publish(this.subject("j", actorId), pack(fence), { expect: { lastSubjectSequence: tail.lastStreamSeq } });
        this.remember(actorId, { ...tail, lastStreamSeq: ack.seq, epoch });
        return result;
      } catch (error) {
        // The former owner appended after our read: those writes were acknowledged, so read again to include them.
        if (!isWrongLastSequence(error) || attempt >= FENCE_ATTEMPTS_MAX) throw unavailable(`cannot fence ${actorId} at epoch ${epoch}`, error);
      }
    }
  }

  async dueWakeups(nowMs: number, limit: number, offset = 0): Promise<ActorId[]> {
    if (!Number.isFinite(nowMs)) throw new QmError("INVALID_ARGUMENT", "nowMs must be a finite number");
    checkLimit(limit, WAKEUPS_PER_TICK_MAX);
    if (!(Number.isSafeInteger(offset) && offset >= 0 && offset <= WAKEUPS_SCAN_DEPTH_MAX)) {
      throw new QmError("INVALID_ARGUMENT", `offset must be an integer from 0 to ${WAKEUPS_SCAN_DEPTH_MAX}`);
    }
    // An index ordered by due time: the page costs its offset's runs and its length, not every owned wake-up.
    return this.wakeups.due(nowMs, limit, offset);
  }

  async readAudit(actorId: ActorId, afterSeq: number, limit: number): Promise<AuditRecord[]> {
    checkLimit(limit, PAGE_SIZE_MAX + 1);
    const subject = this.subject("a", actorId);
    const cutoffMs = this.options.clock.nowMs() - this.options.auditRetention.maxAgeMs;
    const page: AuditRecord[] = [];
    // One stored-message request per record: bounded by the stream's per-actor retention and by the page.
    for (let streamSeq = 1; page.length < limit; ) {
      const stored = await this.getNext(this.names.audit, subject, streamSeq);
      if (stored === undefined) break;
      streamSeq = stored.seq + 1;
      const record = decodeAudit(actorId, stored.data);
      if (record.seq > afterSeq && record.atMs >= cutoffMs) page.push(record);
    }
    return page;
  }

  // ---- Appends ---------------------------------------------------------------------------

  append(original: AppendRequest): Promise<void> {
    if (this.state !== "open") return Promise.reject(new QmError("UNAVAILABLE", `journal is ${this.state === "new" ? "not open" : "closed"}`));
    if (this.queued >= JOURNAL_QUEUE_APPENDS_MAX) {
      return Promise.reject(new QmError("OVERLOADED", `journal queue is full (${JOURNAL_QUEUE_APPENDS_MAX} appends waiting)`));
    }
    // A snapshot's state may share objects with the actor's live state (the
    // order actor's is the live state), and it is serialised only after the
    // events are stored, when later turns may have changed it: a snapshot
    // ahead of its sequence counts their events twice on recovery. Copied now
    // (snapshots are rare: one per many events), as the LMDB journal encodes
    // at append.
    const request: AppendRequest =
      original.snapshot === undefined ? original : { ...original, snapshot: { seq: original.snapshot.seq, state: unpack(pack(original.snapshot.state)) as unknown } };
    return new Promise<void>((resolve, reject) => {
      const list = this.waiting.get(request.actorId);
      const pending: Pending = { request, spanContext: appendSpanContext(), resolve, reject };
      if (list === undefined) this.waiting.set(request.actorId, [pending]);
      else list.push(pending);
      this.queued++;
      this.pump(request.actorId);
    });
  }

  /**
   * Publishes start once per event-loop turn, all in one synchronous run:
   * nats.js writes its outbound buffer to the socket once per microtask
   * checkpoint, so the publishes of every actor that wrote in this turn leave
   * in one socket write instead of one each. Each still has its own ack, and
   * each actor's callers still wait for their own.
   */
  private pump(actorId: ActorId): void {
    if (this.inFlight.has(actorId) || !this.waiting.has(actorId)) return;
    this.ready.add(actorId);
    if (this.publishScheduled) return;
    this.publishScheduled = true;
    setImmediate(() => {
      this.publishScheduled = false;
      for (const ready of this.ready) {
        this.ready.delete(ready);
        this.startPublish(ready);
      }
    });
  }

  private startPublish(actorId: ActorId): void {
    if (this.inFlight.has(actorId)) return;
    const batch = this.waiting.get(actorId);
    if (batch === undefined) return;
    if (this.publishing >= PUBLISHES_IN_FLIGHT_MAX) {
      this.blocked.add(actorId);
      return;
    }
    this.waiting.delete(actorId);
    this.blocked.delete(actorId);
    this.queued -= batch.length;
    this.inFlight.add(actorId);
    this.publishing++;
    void this.publishBatch(actorId, batch).finally(() => {
      this.inFlight.delete(actorId);
      this.publishing--;
      this.pump(actorId);
      const next = this.blocked.values().next();
      if (!next.done) this.pump(next.value);
      if (this.publishing === 0 && this.queued === 0) this.idle?.();
    });
  }

  /** One journal message for every queued append of one actor; all succeed or all fail. */
  private async publishBatch(actorId: ActorId, batch: readonly Pending[]): Promise<void> {
    const beganMs = performance.now();
    try {
      const tail = this.tails.get(actorId) ?? (await this.read(actorId)).tail;
      const merged = mergeAppends(actorId, tail, batch.map((p) => p.request));
      const body = pack(merged.message);
      if (body.length > JOURNAL_APPEND_BYTES_MAX) throw new QmError("LIMIT_EXCEEDED", `append to ${actorId} encodes to ${body.length} bytes`);
      let streamSeq: number;
      try {
        streamSeq = (await this.abandonable(this.jetstream().publish(this.subject("j", actorId), body, { expect: { lastSubjectSequence: tail.lastStreamSeq } }))).seq;
      } catch (error) {
        if (!isWrongLastSequence(error)) {
          // The write may still land (an abandoned publish, a lost ack): read the tail afresh next time.
          this.tails.delete(actorId);
          throw error;
        }
        this.tails.delete(actorId);
        throw new QmError("FENCED", `append to ${actorId} lost its compare-and-set: another writer (a newer owner) appended first`, { actorId });
      }
      this.remember(actorId, {
        lastSeq: merged.message.lastSeq,
        lastStreamSeq: streamSeq,
        wakeAtMs: merged.message.wakeAtMs,
        epoch: merged.message.epoch,
        snapshotted: merged.message.snap === 1,
      });
      this.indexWakeup(actorId, merged.message.wakeAtMs);
      await this.writeSideRecords(actorId, merged, streamSeq);
      this.commits++;
      this.appends += batch.length;
      this.eventsWritten += merged.message.events.length;
      const seconds = (performance.now() - beganMs) / 1000;
      // Like the LMDB journal's, so commit latency and its alert cover cluster nodes too.
      this.options.observer?.journalCommit(seconds, batch.length, traceCommit("jetstream", batch, batch.length, seconds, body.length));
      for (const p of batch) p.resolve();
    } catch (error) {
      const failure = error instanceof QmError ? error : unavailable(`journal write of ${actorId} failed`, error);
      if (failure.code === "FENCED") this.options.observer?.fencingConflict(actorId, failure.message);
      for (const p of batch) p.reject(failure);
    }
  }

  natsReconnected(): void {
    this.disconnected = false;
  }

  /**
   * The connection to NATS dropped: every publish awaiting its ack fails now
   * with UNAVAILABLE instead of at its 5 s timeout, so its actor's callers
   * learn at once that the outcome is unknown, and the actor's later appends
   * are not held behind it; until it reconnects, every read and write fails
   * at once rather than at its timeout. The write may still land once NATS is back; the
   * next append re-reads the actor's tail, and its compare-and-set keeps the
   * order.
   */
  natsDisconnected(): void {
    this.disconnected = true;
    const error = new QmError("UNAVAILABLE", "NATS disconnected while a journal write awaited its ack: its outcome is unknown");
    for (const abandon of [...this.abandoners]) abandon(error);
  }

  private abandonable<T>(publish: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const abandon = (error: QmError): void => reject(error);
      this.abandoners.add(abandon);
      publish.then(resolve, reject).finally(() => this.abandoners.delete(abandon));
    });
  }

  /**
   * Snapshot (then compaction of the events it covers) and audit records,
   * after the events are stored. A crash between the two leaves an older
   * snapshot and more events to replay, never a wrong state.
   */
  private async writeSideRecords(actorId: ActorId, merged: Merged, streamSeq: number): Promise<void> {
    const js = this.jetstream();
    if (merged.snapshot !== undefined) {
      const snapshot: SnapshotMessage = { f: FORMAT, seq: merged.snapshot.seq, state: merged.snapshot.state, fromStreamSeq: streamSeq };
      await js.publish(this.subject("s", actorId), pack(snapshot));
      // Messages before the one that carried the snapshot are covered by it.
      await this.manager().streams.purge(this.names.journal, { filter: this.subject("j", actorId), seq: streamSeq });
    }
    for (const record of merged.audit) {
      await js.publish(this.subject("a", actorId), pack({ f: FORMAT, seq: record.seq, atMs: record.atMs, data: record.data }));
    }
  }

  // ---- Internals ---------------------------------------------------------------------------

  /**
   * Round trips: the last message, the snapshot only when the last message
   * does not say there is none, and each earlier message still needed, by its
   * sequence (`prev`). An actor written in one message costs one direct get.
   */
  private async read(actorId: ActorId): Promise<{ tail: Tail; result: Recovered }> {
    const journalSubject = this.subject("j", actorId);
    const last = await this.getLast(this.names.journal, journalSubject);
    if (last === undefined) {
      return {
        tail: { lastSeq: 0, lastStreamSeq: 0, wakeAtMs: null, epoch: 0, snapshotted: false },
        result: { snapshot: undefined, events: [], lastSeq: 0, wakeAtMs: null },
      };
    }
    const lastMessage = decodeJournalMessage(actorId, last.data);
    const storedSnapshot = lastMessage.snap === 0 ? undefined : await this.getLast(this.names.snapshots, this.subject("s", actorId));
    let snapshot: Snapshot | undefined;
    let fromStreamSeq = 1;
    if (storedSnapshot !== undefined) {
      const s = decodeSnapshot(actorId, storedSnapshot.data);
      snapshot = { seq: s.seq, state: s.state };
      fromStreamSeq = s.fromStreamSeq;
    }
    const firstNeeded = (snapshot?.seq ?? 0) + 1;
    const messages =
      (await this.walkBack(actorId, journalSubject, last, firstNeeded)) ?? (await this.scanForward(actorId, journalSubject, fromStreamSeq, last.seq));
    const events: unknown[] = [];
    let expectedSeq = firstNeeded;
    for (const message of messages) {
      for (let i = 0; i < message.events.length; i++) {
        const eventSeq = message.firstSeq + i;
        if (eventSeq < expectedSeq) continue; // covered by the snapshot
        assert(eventSeq === expectedSeq, `event ${expectedSeq} of ${actorId} is stored (found ${eventSeq})`);
        events.push(message.events[i]);
        expectedSeq++;
      }
    }
    assert(expectedSeq === lastMessage.lastSeq + 1, `events up to ${lastMessage.lastSeq} of ${actorId} are stored (read to ${expectedSeq - 1})`);
    const tail: Tail = {
      lastSeq: lastMessage.lastSeq,
      lastStreamSeq: last.seq,
      wakeAtMs: lastMessage.wakeAtMs,
      epoch: lastMessage.epoch,
      snapshotted: storedSnapshot !== undefined || lastMessage.snap === 1,
    };
    return { tail, result: { snapshot, events, lastSeq: lastMessage.lastSeq, wakeAtMs: lastMessage.wakeAtMs } };
  }

  /**
   * The messages from the one holding event firstNeeded to the last, oldest
   * first, following `prev`; undefined when a message on the way predates
   * `prev` or the chain breaks (the caller scans instead).
   */
  private async walkBack(actorId: ActorId, subject: string, last: Stored, firstNeeded: number): Promise<JournalMessage[] | undefined> {
    let current = decodeJournalMessage(actorId, last.data);
    let currentStreamSeq = last.seq;
    const newestFirst = [current];
    while (current.firstSeq > firstNeeded) {
      // Strictly decreasing, so a damaged prev cannot loop.
      if (current.prev === undefined || current.prev <= 0 || current.prev >= currentStreamSeq) return undefined;
      const stored = await this.getBySeq(this.names.journal, subject, current.prev);
      if (stored === undefined) return undefined;
      current = decodeJournalMessage(actorId, stored.data);
      currentStreamSeq = stored.seq;
      newestFirst.push(current);
    }
    return newestFirst.reverse();
  }

  /** Every message of the subject from fromStreamSeq to lastStreamSeq, one next-by-subject read each (messages without `prev`). */
  private async scanForward(actorId: ActorId, subject: string, fromStreamSeq: number, lastStreamSeq: number): Promise<JournalMessage[]> {
    const messages: JournalMessage[] = [];
    for (let seq = fromStreamSeq; seq <= lastStreamSeq; ) {
      const stored = await this.getNext(this.names.journal, subject, seq);
      if (stored === undefined || stored.seq > lastStreamSeq) break;
      seq = stored.seq + 1;
      messages.push(decodeJournalMessage(actorId, stored.data));
    }
    return messages;
  }

  private async getLast(stream: string, subject: string): Promise<Stored | undefined> {
    return this.getMessage(stream, subject, { last_by_subj: subject });
  }

  private async getNext(stream: string, subject: string, fromSeq: number): Promise<Stored | undefined> {
    return this.getMessage(stream, subject, { next_by_subj: subject, seq: fromSeq });
  }

  /** The message at streamSeq, if it is on subject (else undefined, as if absent). */
  private async getBySeq(stream: string, subject: string, streamSeq: number): Promise<Stored | undefined> {
    return this.getMessage(stream, subject, { seq: streamSeq });
  }

  private async getMessage(
    stream: string,
    subject: string,
    query: { last_by_subj: string } | { next_by_subj: string; seq: number } | { seq: number },
  ): Promise<Stored | undefined> {
    try {
      // Direct gets on the journal and snapshot streams (allow_direct since their first release): a raw reply the
      // stream answers itself, where the API's MSG.GET goes through the JetStream API and answers base64 in JSON.
      // The audit stream was created without allow_direct; its reads are rare (a paged RPC).
      // nats.js types MSG.GET requests without next_by_subj; the server (2.9+) honours it.
      const m = stream === this.names.audit ? await this.manager().streams.getMessage(stream, query) : await this.directGets().getMessage(stream, query);
      if (m.subject !== subject) return undefined;
      return { seq: m.seq, data: m.data };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw unavailable(`cannot read ${subject}`, error);
    }
  }

  private remember(actorId: ActorId, tail: Tail): void {
    this.tails.delete(actorId);
    this.tails.set(actorId, tail);
    if (this.tails.size > TAILS_MAX) {
      const oldest = this.tails.keys().next();
      if (!oldest.done && !this.inFlight.has(oldest.value)) this.tails.delete(oldest.value);
    }
  }

  private indexWakeup(actorId: ActorId, wakeAtMs: number | null): void {
    const partition = this.partitionOf(actorId);
    // Not (or no longer) ours: the owner's index has it.
    if (!this.wakeups.set(partition, actorId, wakeAtMs)) return;
    this.touchedDuringClaim.get(partition)?.add(actorId);
  }

  private partitionOf(actorId: ActorId): number {
    return partitionOf(actorId, this.options.partitions);
  }

  private subject(kind: "j" | "s" | "a", actorId: ActorId): string {
    const slash = actorId.indexOf("/");
    if (slash <= 0 || !ACTOR_ID_PATTERN.test(actorId)) throw new QmError("INVALID_ARGUMENT", `actor id ${actorId} is not kind/key`);
    return `${this.names.prefix}.${kind}.${this.partitionOf(actorId)}.${escapeToken(actorId.slice(0, slash))}.${escapeToken(actorId.slice(slash + 1))}`;
  }

  private jetstream(): JetStreamClient {
    if (this.js === undefined) throw new QmError("UNAVAILABLE", "journal is not open");
    // A request now would only sit in the client's reconnect buffer until its timeout.
    if (this.disconnected) throw new QmError("UNAVAILABLE", "NATS is disconnected: the journal cannot be read or written now", { reason: "NATS_DISCONNECTED" });
    return this.js;
  }

  private directGets(): DirectGets {
    if (this.direct === undefined) throw new QmError("UNAVAILABLE", "journal is not open");
    return this.direct;
  }

  private manager(): JetStreamManager {
    if (this.jsm === undefined) throw new QmError("UNAVAILABLE", "journal is not open");
    return this.jsm;
  }
}

/** nats.js 2.29's JetStreamManager implementation has `direct`; its declared interface does not name it. */
interface DirectGets {
  getMessage(stream: string, query: { seq: number } | { last_by_subj: string } | { next_by_subj: string; seq: number }): Promise<StoredMsg>;
}

function directGetsOf(jsm: JetStreamManager): DirectGets {
  const direct: unknown = (jsm as JetStreamManager & { direct?: unknown }).direct;
  if (typeof direct !== "object" || direct === null || typeof (direct as { getMessage?: unknown }).getMessage !== "function") {
    throw new QmError("UNAVAILABLE", "this nats.js has no direct get API");
  }
  return direct as DirectGets;
}

/** `kind/key`, or `kind/tenant/key` (src/security/tenancy.ts): `tenant/key` is one subject token, since '/' is legal in one. */
const ACTOR_ID_PATTERN = /^[A-Za-z0-9._:-]+\/(?:[A-Za-z0-9._:-]+\/)?[A-Za-z0-9._:-]+$/;

// ---- Merging appends of one actor into one message --------------------------------------------

interface Merged {
  readonly message: JournalMessage;
  readonly snapshot: Snapshot | undefined;
  readonly audit: readonly AuditRecord[];
}

function mergeAppends(actorId: ActorId, tail: Tail, requests: readonly AppendRequest[]): Merged {
  const events: unknown[] = [];
  const audit: AuditRecord[] = [];
  let lastSeq = tail.lastSeq;
  let wakeAtMs = tail.wakeAtMs;
  let snapshot: Snapshot | undefined;
  let epoch = tail.epoch;
  for (const r of requests) {
    if (r.expectedLastSeq !== lastSeq) {
      throw new QmError("FENCED", `append to ${actorId} expected last seq ${r.expectedLastSeq}, journal has ${lastSeq}`, {
        actorId,
        expectedLastSeq: String(r.expectedLastSeq),
        lastSeq: String(lastSeq),
      });
    }
    if (r.epoch !== undefined && r.epoch < tail.epoch) {
      throw new QmError("FENCED", `append to ${actorId} at epoch ${r.epoch}, but the actor is fenced at epoch ${tail.epoch}`, { actorId });
    }
    events.push(...r.events);
    lastSeq += r.events.length;
    if (r.wakeAtMs !== undefined) wakeAtMs = r.wakeAtMs;
    if (r.snapshot !== undefined) snapshot = r.snapshot;
    if (r.audit !== undefined) audit.push(...r.audit);
    if (r.epoch !== undefined) epoch = Math.max(epoch, r.epoch);
  }
  const snap = tail.snapshotted || snapshot !== undefined ? 1 : 0;
  return { message: { f: FORMAT, epoch, firstSeq: lastSeq - events.length + 1, lastSeq, events, wakeAtMs, prev: tail.lastStreamSeq, snap }, snapshot, audit };
}

// ---- Streams, subjects, decoding ---------------------------------------------------------------

interface StreamNames {
  readonly prefix: string;
  readonly journal: string;
  readonly snapshots: string;
  readonly audit: string;
}

function streamNames(cluster: string): StreamNames {
  // Stream names cannot hold '.', '*', '>' or spaces; cluster names are ids.
  const token = cluster.replaceAll(".", "_");
  return { prefix: `qm.${escapeToken(cluster)}`, journal: `QM_${token}_JOURNAL`, snapshots: `QM_${token}_SNAPSHOTS`, audit: `QM_${token}_AUDIT` };
}

/** A subject token cannot hold '.'; ids never hold '%', so the escape is unambiguous. */
function escapeToken(s: string): string {
  return s.replaceAll(".", "%2E");
}

async function ensureStream(
  jsm: JetStreamManager,
  config: { name: string; subjects: string[]; num_replicas: number; allow_direct?: boolean; max_msgs_per_subject?: number; max_age?: number },
): Promise<void> {
  try {
    await jsm.streams.info(config.name);
    return;
  } catch (error) {
    if (!isNotFound(error)) throw unavailable(`cannot look up stream ${config.name}`, error);
  }
  await jsm.streams.add({ ...config, storage: StorageType.File, retention: RetentionPolicy.Limits });
}

/** `qm.<c>.j.<p>.<kind>.<key>` → `kind/key`; a tenant's key token is `tenant/key`. */
function actorIdOfSubject(subject: string): ActorId {
  const parts = subject.split(".");
  const kind = parts[parts.length - 2] ?? "";
  const key = parts[parts.length - 1] ?? "";
  return `${kind.replaceAll("%2E", ".")}/${key.replaceAll("%2E", ".")}`;
}

function corrupt(actorId: string, what: string): QmError {
  return new QmError("DATA_LOSS", `${what} of ${actorId}`, { reason: "JOURNAL_CORRUPT", actor_id: actorId });
}

function decodeJournalMessage(actorId: string, data: Uint8Array): JournalMessage {
  const value = decodeRecord(actorId, data);
  if (value.f !== FORMAT || !Array.isArray(value.events) || typeof value.lastSeq !== "number" || typeof value.firstSeq !== "number") {
    throw corrupt(actorId, `a journal message is not in format ${FORMAT}`);
  }
  return value as unknown as JournalMessage;
}

function decodeSnapshot(actorId: string, data: Uint8Array): SnapshotMessage {
  const value = decodeRecord(actorId, data);
  if (value.f !== FORMAT || typeof value.seq !== "number" || typeof value.fromStreamSeq !== "number") {
    throw corrupt(actorId, `the snapshot is not in format ${FORMAT}`);
  }
  return value as unknown as SnapshotMessage;
}

function decodeAudit(actorId: string, data: Uint8Array): AuditRecord {
  const value = decodeRecord(actorId, data);
  if (typeof value.seq !== "number" || typeof value.atMs !== "number") throw corrupt(actorId, "an audit record is malformed");
  return { seq: value.seq, atMs: value.atMs, data: value.data };
}

function decodeRecord(actorId: string, data: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = unpack(data);
  } catch {
    throw corrupt(actorId, "a stored record cannot be decoded");
  }
  if (typeof value !== "object" || value === null) throw corrupt(actorId, "a stored record is not a map");
  return value as Record<string, unknown>;
}

function isWrongLastSequence(error: unknown): boolean {
  return error instanceof Error && /wrong last sequence/i.test(error.message);
}

function isNotFound(error: unknown): boolean {
  if (error instanceof NatsError && error.code === "404") return true;
  return error instanceof Error && /not found/i.test(error.message);
}

function unavailable(what: string, error: unknown): QmError {
  return new QmError("UNAVAILABLE", `${what}: ${error instanceof Error ? error.message : String(error)}`);
}

function checkLimit(limit: number, max: number): void {
  if (!(Number.isSafeInteger(limit) && limit >= 1 && limit <= max)) throw new QmError("INVALID_ARGUMENT", `limit must be an integer in 1..${max}`);
}
