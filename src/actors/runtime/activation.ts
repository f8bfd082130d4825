// One live actor: its state, its mailbox and its turn loop.
//
// A turn takes everything queued (up to TURN_BATCH_MAX), handles each message
// against the in-memory state, persists all the events of the turn in ONE
// journal append, and only then replies. While that append is in flight new
// messages queue up and form the next turn's batch: that is group commit, and
// it is why a hot actor is not limited by one fsync per request.
//
// Turns are pipelined: the next turn may run while earlier turns' appends are
// still in flight (at most PIPELINE_DEPTH_MAX of them), so the journal always
// has the next batch ready when a sync finishes. Replies still wait for their
// own turn's append, appends of one actor complete in order, and a turn that
// wrote nothing (a read) waits for the appends before it, so nothing is ever
// answered from state that is not yet durable. If an append fails, every later
// one fails its compare-and-set too, and the activation is rebuilt.

import type { Clock } from "../../clock";
import { QmError } from "../../errors";
import type { AppendRequest, AuditRecord, Journal } from "../../journal/journal";
import { MAILBOX_DEPTH_MAX, PIPELINE_DEPTH_MAX, SNAPSHOT_EVENTS_MIN, TURN_BATCH_MAX } from "../../limits";
import { activeTraceparent } from "../../observability/tracing";
import { TurnSpans } from "../../observability/turn_tracing";
import type { ActorKindObserver } from "./actor_system";
import type { ActorBehavior, ActorRouter, AskOptions, TurnContext } from "./behavior";
import { type Envelope, Mailbox } from "./mailbox";
import { keyOfActorId, SYSTEM_SUBJECT, tenantOfActorId, type Who } from "../../security/tenancy";

export interface ActivationHost {
  readonly journal: Journal;
  readonly clock: Clock;
  readonly router: ActorRouter;
  /**
   * The activation is done (rebuilt after a fault): `leftover` goes to a fresh
   * activation, which with `wakeSuccessor` also runs a turn of its own.
   */
  retire(activation: Activation<unknown, unknown>, leftover: Envelope[], wakeSuccessor: boolean): void;
  reportBug(actorId: string, error: unknown): void;
  /**
   * The fencing epoch under which this node may run the actor now: undefined
   * on a single node (no fencing), or NOT_OWNER thrown when this node does not
   * own the actor's partition.
   */
  epochFor(actorId: string): number | undefined;
  /** The actor's partition for turn spans, or undefined when the node does not say. */
  partitionOf(actorId: string): number | undefined;
  observeTurn(kind: string, messages: number, events: number): void;
  /** Appends of every actor an ask can reach become durable in issue order (TurnContext.asksFollowAppends). */
  readonly appendsDurableInIssueOrder: boolean;
}

type Phase = "loading" | "ready" | "retired";

interface Reply {
  readonly envelope: Envelope;
  readonly value: unknown;
  readonly failed: boolean;
}

export class Activation<S, M> implements TurnContext<S> {
  readonly key: string;
  private phase: Phase = "loading";
  private readonly mailbox = new Mailbox(MAILBOX_DEPTH_MAX);
  private running = false;
  private wakeRequested = false;
  private current!: S;
  private lastSeq = 0;
  private storedWakeAtMs: number | null = null;
  private eventsSinceSnapshot = 0;
  private pendingEvents: unknown[] = [];
  private pendingAudit: AuditRecord[] = [];
  /** Bumped by every persist, so a handler that persisted midway is known to have made part of its work durable. */
  private persistCount = 0;
  private persistFailed = false;
  private persistFailure: QmError | undefined;
  /**
   * Set when a message failed half way: its events are dropped from the
   * append, but the in-memory state still holds them, so nothing derived
   * from that state (a snapshot, the wake-up time) may be written.
   */
  private tainted = false;
  /** Resolves when the latest append issued is durable (appends of one actor complete in order). */
  private lastAppend: Promise<void> = Promise.resolve();
  /** Turns whose append is in flight, oldest first; each settles after its replies are sent. */
  private inflight: Promise<void>[] = [];
  private idleWaiters: (() => void)[] = [];
  /** The messages whose handlers the running turn is executing; swept for passed deadlines like the mailbox. */
  private turnBatch: readonly Envelope[] = [];
  /** No envelope of turnBatch has a deadline before this (a lower bound). */
  private turnDeadlineMs = Number.POSITIVE_INFINITY;
  /** The running turn's spans; undefined when tracing is off or nothing in the turn is traced. */
  private turnSpans: TurnSpans | undefined;
  nowMs = 0;
  /** Whom the running handler (or the turn-start work, the system) acts for. */
  who: Who;
  /** The system acting in this actor's tenant: expiries and saga steps run by a timer. */
  private readonly system: Who;
  /** The tenant this actor belongs to (src/security/tenancy.ts). */
  readonly tenant: string;
  lastUsedMs = 0;
  /** When the ActorSystem last moved this actor to the new end of its LRU order. */
  lruMovedAtMs = 0;
  /** The partition epoch this activation recovered and writes under (cluster mode). */
  epoch: number | undefined;
  /** The actor's partition, for turn spans and hand-offs; undefined before load or when the node does not say. */
  private partition: number | undefined;

  constructor(
    private readonly host: ActivationHost,
    private readonly behavior: ActorBehavior<S, M>,
    readonly actorId: string,
    readonly observer: ActorKindObserver,
  ) {
    this.key = keyOfActorId(actorId);
    this.tenant = tenantOfActorId(actorId);
    this.system = { subject: SYSTEM_SUBJECT, tenant: this.tenant };
    this.who = this.system;
  }

  get state(): S {
    return this.current;
  }

  /** Messages waiting in the mailbox (not those of a running turn). */
  get queued(): number {
    return this.mailbox.length;
  }

  get partitionId(): number | undefined {
    return this.partition;
  }

  /** Busy actors are never passivated: they hold queued work or a turn in flight. */
  get busy(): boolean {
    return this.phase === "loading" || this.running || this.mailbox.length > 0 || this.inflight.length > 0;
  }

  async load(): Promise<void> {
    try {
      this.epoch = this.host.epochFor(this.actorId);
      this.partition = this.host.partitionOf(this.actorId);
      const recovered = await this.host.journal.recover(this.actorId, this.epoch === undefined ? undefined : { epoch: this.epoch });
      const state =
        recovered.snapshot === undefined
          ? this.behavior.initialState(this.key)
          : this.behavior.fromSnapshot(this.key, recovered.snapshot.state);
      for (const event of recovered.events) this.behavior.applyEvent(state, event);
      this.current = state;
      this.lastSeq = recovered.lastSeq;
      this.storedWakeAtMs = recovered.wakeAtMs;
      this.eventsSinceSnapshot = this.weightOf(recovered.events);
      this.phase = "ready";
      this.schedule();
    } catch (error) {
      // A damaged journal record is no bug of ours (the journal logs it once per
      // actor), and neither is a partition that moved away while we loaded.
      const expected = error instanceof QmError && (error.code === "DATA_LOSS" || error.code === "NOT_OWNER");
      if (!expected) this.host.reportBug(this.actorId, error);
      this.phase = "retired";
      const failure = asQmError(error, "UNAVAILABLE", `actor ${this.actorId} could not be recovered`);
      for (const envelope of this.mailbox.drain()) envelope.reject(failure);
      this.host.retire(this as Activation<unknown, unknown>, [], false);
    }
  }

  enqueue(envelope: Envelope): void {
    try {
      this.mailbox.push(envelope, this.actorId);
    } catch (error) {
      this.observer.mailboxRejected();
      throw error;
    }
    this.schedule();
  }

  requestWake(): void {
    this.wakeRequested = true;
    this.schedule();
  }

  /** Resolves when no turn is running and nothing is queued. */
  whenIdle(): Promise<void> {
    if (!this.busy) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- TurnContext ------------------------------------------------------------

  currentTimeMs(): number {
    return this.host.clock.nowMs();
  }

  get asksFollowAppends(): boolean {
    return this.host.appendsDurableInIssueOrder;
  }

  emit(event: unknown): void {
    this.behavior.applyEvent(this.current, event);
    this.pendingEvents.push(event);
  }

  emitApplied(event: unknown): void {
    this.pendingEvents.push(event);
  }

  private weightOf(events: readonly unknown[]): number {
    const weight = this.behavior.eventWeight;
    if (weight === undefined) return events.length;
    let sum = 0;
    for (const e of events) sum += weight(e);
    return sum;
  }

  audit(record: AuditRecord): void {
    this.pendingAudit.push(record);
  }

  ask<R>(actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    // The runtime lets an actor's asks activate actors beyond the bound that
    // refuses outside callers (see ActorSystem): it needs to know who asks.
    const traceparent = options?.traceparent ?? activeTraceparent();
    return this.host.router.ask<R>(actorId, message, {
      ...options,
      fromActorId: this.actorId,
      caller: this.who,
      ...(traceparent === undefined ? {} : { traceparent }),
    });
  }

  readAudit(afterSeq: number, limit: number): Promise<AuditRecord[]> {
    return this.host.journal.readAudit(this.actorId, afterSeq, limit);
  }

  /**
   * Issues one append with everything emitted since the last one and returns
   * when it is durable. With nothing to write it returns when the appends
   * already in flight are durable, so a reply never reports undurable state.
   */
  persist(): Promise<void> {
    const events = this.pendingEvents;
    const audit = this.pendingAudit;
    const wakeAtMs = this.tainted ? this.storedWakeAtMs : this.behavior.wakeAtMs(this.current);
    if (events.length === 0 && audit.length === 0 && wakeAtMs === this.storedWakeAtMs) return this.lastAppend;
    this.pendingEvents = [];
    this.pendingAudit = [];
    this.persistCount++;
    const expectedLastSeq = this.lastSeq;
    const lastSeq = expectedLastSeq + events.length;
    const sinceSnapshot = this.eventsSinceSnapshot + this.weightOf(events);
    // Snapshot spacing grows with the state, so snapshotting costs O(1) per
    // event however large the state is, and recovery replays at most that many.
    const snapshot =
      !this.tainted && sinceSnapshot >= Math.max(SNAPSHOT_EVENTS_MIN, this.behavior.snapshotWeight(this.current))
        ? { seq: lastSeq, state: this.behavior.toSnapshot(this.current) }
        : undefined;
    // One object of one shape, absent fields undefined (every journal reads
    // undefined as absent): four conditional spreads built a dictionary-mode
    // object per append, and across many SKUs every reserve is its own append.
    const request: AppendRequest = {
      actorId: this.actorId,
      expectedLastSeq,
      events,
      snapshot,
      wakeAtMs: wakeAtMs === this.storedWakeAtMs ? undefined : wakeAtMs,
      audit: audit.length === 0 ? undefined : audit,
      epoch: this.epoch,
    };
    // The closure only when traced: untraced turns are the common case.
    const journal = this.host.journal;
    const append = this.turnSpans === undefined ? journal.append(request) : this.turnSpans.append(events.length, () => journal.append(request));
    // Later appends chain on these numbers at once; should this append fail,
    // theirs fail its compare-and-set and the activation is rebuilt.
    this.lastSeq = lastSeq;
    this.storedWakeAtMs = wakeAtMs;
    this.eventsSinceSnapshot = snapshot === undefined ? sinceSnapshot : 0;
    this.lastAppend = append.catch((error: unknown) => {
      // The state now runs ahead of the journal: this activation must not serve again.
      this.persistFailed = true;
      // Pipelined appends issued before the first failure chain on its
      // sequence numbers and fail their compare-and-set (FENCED, ABORTED to
      // clients); their callers get the first failure, the real cause (a
      // full disk, say). Appends of one actor complete in order, so the
      // first failure is recorded before the later ones arrive here.
      this.persistFailure ??= asQmError(error, "UNAVAILABLE", `journal append for ${this.actorId} failed`);
      throw this.persistFailure;
    });
    return this.lastAppend;
  }

  /**
   * Answers DEADLINE_EXCEEDED to every envelope whose deadline passed before
   * nowMs and that is still queued, or whose handler is still running: its
   * caller has given up, and an actor stuck on a slow turn must not hold the
   * callers queued behind it past their deadlines. A late reply to an
   * envelope answered here is dropped (a promise settles once).
   */
  expireDeadlines(nowMs: number): number {
    const queued = this.mailbox.removeExpired(nowMs);
    for (const envelope of queued) envelope.reject(deadlineExceeded());
    let answered = queued.length;
    if (this.turnDeadlineMs < nowMs) {
      let earliest = Number.POSITIVE_INFINITY;
      for (const envelope of this.turnBatch) {
        const deadlineMs = envelope.deadlineMs;
        if (deadlineMs === undefined) continue;
        if (nowMs > deadlineMs) {
          envelope.reject(deadlineExceeded());
          answered++;
        } else if (deadlineMs < earliest) earliest = deadlineMs;
      }
      this.turnDeadlineMs = earliest;
    }
    return answered;
  }

  // ---- Turn loop ----------------------------------------------------------------

  private schedule(): void {
    if (this.running || this.phase !== "ready") return;
    if (this.mailbox.length === 0 && !this.wakeRequested) return;
    this.running = true;
    // The turn starts after the current event-loop phase, not inside the
    // caller: every request that arrived in the same socket read joins it, so
    // a burst is one turn and one append instead of one each (measured on the
    // hot SKU: about 15% less CPU per reservation).
    setImmediate(this.runFromSchedule);
  }

  private readonly runFromSchedule = (): void => {
    void this.run();
  };

  private async run(): Promise<void> {
    try {
      while (this.phase === "ready" && !this.persistFailed && (this.mailbox.length > 0 || this.wakeRequested)) {
        if (this.inflight.length >= PIPELINE_DEPTH_MAX) {
          await this.inflight[0];
          continue;
        }
        this.wakeRequested = false;
        await this.turn(this.mailbox.take(TURN_BATCH_MAX));
      }
    } finally {
      this.running = false;
      this.lastUsedMs = this.host.clock.monotonicMs();
      this.notifyIfIdle();
    }
  }

  private notifyIfIdle(): void {
    if (this.busy) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private async turn(batch: Envelope[]): Promise<void> {
    const replies: Reply[] = [];
    let faulted = false;
    let unhandled: Envelope[] = [];
    // Swept from now on: turn-start work (a saga step) may wait on other actors.
    this.turnBatch = batch;
    this.turnDeadlineMs = Number.NEGATIVE_INFINITY;
    this.observeWaits(batch);
    const spans = TurnSpans.start(this.behavior.kind, this.actorId, this.epoch, this.partition, batch);
    this.turnSpans = spans;
    try {
      this.nowMs = this.host.clock.nowMs();
      this.who = this.system;
      const started = this.behavior.onTurnStart?.(this);
      if (started instanceof Promise) await started;
    } catch (error) {
      // Without its turn-start work (expiries, saga resumption) the state is not
      // fit to serve. Fail this batch (not retried: the fault may repeat) and
      // rebuild from the journal on the next message.
      if (!this.persistFailed) this.host.reportBug(this.actorId, error);
      const failure = asQmError(error, "INTERNAL", "internal error");
      for (const envelope of batch) envelope.reject(failure);
      spans?.end([], failure);
      this.turnSpans = undefined;
      this.turnBatch = [];
      this.pendingEvents = [];
      this.pendingAudit = [];
      // Earlier turns' appends land first, so that the fresh activation recovers them.
      await this.lastAppend.catch(() => undefined);
      this.retire([]);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      const envelope = batch[i] as Envelope;
      this.nowMs = this.host.clock.nowMs();
      this.who = envelope.caller ?? this.system;
      if (envelope.deadlineMs !== undefined && this.nowMs > envelope.deadlineMs) {
        replies.push({ envelope, value: deadlineExceeded(), failed: true });
        continue;
      }
      const mark = this.pendingEvents.length;
      const persistsBefore = this.persistCount;
      try {
        let value = spans === undefined ? this.behavior.handle(this, envelope.message as M) : spans.run(i, () => this.behavior.handle(this, envelope.message as M));
        if (value instanceof Promise) value = await value;
        replies.push({ envelope, value, failed: value instanceof QmError });
      } catch (error) {
        const clean =
          error instanceof QmError &&
          error.code !== "INTERNAL" &&
          !this.persistFailed &&
          this.persistCount === persistsBefore &&
          this.pendingEvents.length === mark;
        if (clean) {
          replies.push({ envelope, value: error, failed: true });
          continue;
        }
        // A bug, or a failed write midway: the state may hold part of this
        // message's work. Keep what earlier messages did, fail this one, and
        // hand the rest of the batch to a fresh activation.
        if (!this.persistFailed) this.host.reportBug(this.actorId, error);
        replies.push({ envelope, value: asQmError(error, "INTERNAL", "internal error"), failed: true });
        if (this.persistCount === persistsBefore) this.pendingEvents.length = mark;
        else this.pendingEvents = [];
        this.tainted = true;
        unhandled = batch.slice(i + 1);
        faulted = true;
        break;
      }
    }
    this.turnBatch = [];
    this.turnDeadlineMs = Number.POSITIVE_INFINITY;
    this.host.observeTurn(this.behavior.kind, batch.length, this.pendingEvents.length);
    const durable = this.persistFailed ? this.lastAppend : this.persist();
    this.turnSpans = undefined;
    if (faulted) {
      // A fresh activation must recover what this turn kept, so wait for it before handing over.
      await this.settle(durable, replies, spans);
      // The fresh activation runs a turn at once, which recomputes and stores
      // the wake-up time this one could not trust.
      this.retire(unhandled, true);
      return;
    }
    const settled = this.settle(durable, replies, spans).then(() => {
      // Drops this turn's own entry (the promise now settling): nothing to await.
      void this.inflight.shift();
      if (this.persistFailed && this.phase === "ready") this.retire([]);
      else this.schedule();
      this.lastUsedMs = this.host.clock.monotonicMs();
      this.notifyIfIdle();
    });
    this.inflight.push(settled);
  }

  /** Each message's time in the mailbox, up to now (its turn starts). */
  private observeWaits(batch: readonly Envelope[]): void {
    const nowMs = performance.now();
    for (let i = 0; i < batch.length; i++) {
      const enqueuedAtMs = (batch[i] as Envelope).enqueuedAtMs;
      if (enqueuedAtMs !== undefined) this.observer.mailboxWait((nowMs - enqueuedAtMs) / 1000);
    }
  }

  /** Sends the turn's replies once its append is durable, or fails them all if it is not. */
  private async settle(durable: Promise<void>, replies: readonly Reply[], spans: TurnSpans | undefined): Promise<void> {
    let failure: QmError | undefined;
    try {
      await durable;
    } catch (error) {
      failure = asQmError(error, "UNAVAILABLE", "write failed");
    }
    for (const reply of replies) {
      if (failure !== undefined && !reply.failed) reply.envelope.reject(failure);
      else if (reply.failed) reply.envelope.reject(reply.value as Error);
      else reply.envelope.resolve(reply.value);
    }
    spans?.end(replies, failure);
  }

  private retire(leftover: Envelope[], wakeSuccessor = false): void {
    this.phase = "retired";
    this.host.retire(this as Activation<unknown, unknown>, [...leftover, ...this.mailbox.drain()], wakeSuccessor);
  }

  markRetired(): void {
    this.phase = "retired";
  }
}

function deadlineExceeded(): QmError {
  return new QmError("DEADLINE_EXCEEDED", "deadline passed before the actor answered");
}

function asQmError(error: unknown, code: QmError["code"], message: string): QmError {
  if (error instanceof QmError) return error;
  const detail = error instanceof Error ? error.message : String(error);
  return new QmError(code, `${message}: ${detail}`);
}
