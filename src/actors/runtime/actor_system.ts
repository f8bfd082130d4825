// The registry of live actors on this node: activation on first message,
// passivation when idle or when memory is short, and the timer scheduler
// that wakes actors whose durable wake-up time has come (also after a restart,
// when they are not in memory at all).
//
// The number of live actors is a real bound. At the bound, idle actors are
// passivated to make room; when every actor is busy, an outside caller is
// refused with ACTORS_EXHAUSTED (RESOURCE_EXHAUSTED) at once rather than
// queued. Asks from actors (an order's saga asking its SKUs) may use a
// headroom above the bound, so a table full of busy order actors can still
// reach their SKUs and finish; past the headroom they are refused too, and
// since nobody waits on the bound, nothing can deadlock on it: the saga
// counts the refusal as retryable, ends its turn and backs off.
//
// Each timer tick answers DEADLINE_EXCEEDED to envelopes whose deadline has
// passed, then dispatches one page of due wake-ups. Pages rotate through the
// due list (the journal returns at most WAKEUPS_PER_TICK_MAX per call), so
// actors that stay due without clearing their time (a wake turn still
// running, an actor that cannot be activated) cannot keep others' timers
// from being served: every due actor is reached within a few ticks however
// many others are stuck ahead of it.
//
// Whether an actor lives on this node is the Placement's decision; in a
// single-node process every actor is local. A PlacementRouter (src/cluster/)
// stands in front of this class and forwards asks for other nodes' actors
// over the transport; `router` is what this node's actors ask through.

import type { Logger } from "pino";
import type { Clock } from "../../clock";
import { QmError } from "../../errors";
import type { Journal } from "../../journal/journal";
import {
  ACTIVE_ACTORS_EVICT_PERCENT,
  ACTIVE_ACTORS_HEADROOM_PERCENT,
  ACTIVE_ACTORS_MAX,
  LRU_MOVE_INTERVAL_MS,
  WAKEUPS_PER_TICK_MAX,
  WAKEUPS_SCAN_DEPTH_MAX,
} from "../../limits";
import { keyOfActorId, tenantOfActorId } from "../../security/tenancy";
import { Activation, type ActivationHost } from "./activation";
import type { ActorBehavior, ActorRouter, AskOptions } from "./behavior";
import type { Envelope } from "./mailbox";

export interface ActorSystemOptions {
  readonly journal: Journal;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly behaviors: readonly ActorBehavior<unknown, unknown>[];
  /** An actor untouched this long is passivated (its state dropped from memory). */
  readonly idleMs: number;
  /**
   * How often due wake-ups are polled from the journal and passed deadlines
   * answered. 0: only when tick() is called (a test driving a manual clock).
   */
  readonly timerTickMs: number;
  readonly activeMax?: number;
  readonly onTurn?: (kind: string, messages: number, events: number) => void;
  /**
   * Cluster mode: which actors this node owns, and under which fencing epoch.
   * Absent on a single node, which owns every actor and fences nothing.
   */
  readonly ownership?: Ownership;
  /**
   * The partition of an actor id, for turn spans: the same number Locate
   * answers, so a trace and `qmctl locate` agree. Absent: spans carry none.
   */
  readonly partitionOf?: (actorId: string) => number;
  /** Counts per actor kind; asked once per kind here, then called from the turn loop. */
  readonly observer?: RuntimeObserver;
}

/**
 * What the runtime reports of one actor kind as it happens. Asked for once
 * per kind, so the turn loop calls a method on an object it holds: no label
 * lookup and no allocation per message.
 */
export interface ActorKindObserver {
  activated(): void;
  /** The actor left memory, for whatever reason (idle, evicted, handed off, rebuilt after a fault). */
  passivated(): void;
  /** A message was refused because the actor's mailbox held MAILBOX_DEPTH_MAX already. */
  mailboxRejected(): void;
  /** One message waited this long between its enqueue and the start of its turn. */
  mailboxWait(seconds: number): void;
}

export interface RuntimeObserver {
  actorKind(kind: string): ActorKindObserver;
}

/** The mailboxes of every actor in memory at one moment. */
export interface MailboxStats {
  /** The deepest single mailbox. */
  readonly depthMax: number;
  /** Messages queued across all mailboxes (not counting those in a running turn). */
  readonly messages: number;
}

const unobserved: ActorKindObserver = {
  activated: () => undefined,
  passivated: () => undefined,
  mailboxRejected: () => undefined,
  mailboxWait: () => undefined,
};

export interface Ownership {
  /** The epoch under which this node owns the actor's partition now, or undefined when it does not own it. */
  epochOf(actorId: string): number | undefined;
}

type AnyActivation = Activation<unknown, unknown>;

/** Who wants an actor activated; it decides how far past the bound it may go. */
type Admission = "outside" | "actor" | "replacement";

export class ActorSystem implements ActorRouter, ActivationHost {
  readonly journal: Journal;
  readonly clock: Clock;
  /** What this node's actors ask through: the PlacementRouter in front of this system, or the system itself. */
  router: ActorRouter = this;
  private readonly logger: Logger;
  private readonly behaviors = new Map<string, ActorBehavior<unknown, unknown>>();
  private readonly kindObservers = new Map<string, ActorKindObserver>();
  /**
   * Insertion order is recency order to within lruMoveIntervalMs: a use moves
   * an actor to the end unless it was moved there less than that long ago.
   */
  private readonly active = new Map<string, AnyActivation>();
  private readonly lruMoveIntervalMs: number;
  private readonly activeMax: number;
  private readonly headroom: number;
  /** Idle actors passivated at once when the bound is reached. */
  private readonly evictBatch: number;
  /** Where in the due list the next tick's page starts. */
  private wakeOffset = 0;
  private timers: NodeJS.Timeout[] = [];
  private ticking = false;
  private accepting = false;
  /** The last entry of `active` (the most recently used), so a repeat ask for it skips the move. */
  private newest: AnyActivation | undefined = undefined;
  private bugs = 0;

  constructor(private readonly options: ActorSystemOptions) {
    this.journal = options.journal;
    this.clock = options.clock;
    this.logger = options.logger;
    this.activeMax = options.activeMax ?? ACTIVE_ACTORS_MAX;
    this.headroom = Math.max(1, Math.ceil((this.activeMax * ACTIVE_ACTORS_HEADROOM_PERCENT) / 100));
    this.evictBatch = Math.max(2, Math.ceil((this.activeMax * ACTIVE_ACTORS_EVICT_PERCENT) / 100));
    this.lruMoveIntervalMs = Math.min(LRU_MOVE_INTERVAL_MS, options.idleMs / 4);
    for (const b of options.behaviors) {
      this.behaviors.set(b.kind, b);
      this.kindObservers.set(b.kind, options.observer?.actorKind(b.kind) ?? unobserved);
    }
  }

  get activeCount(): number {
    return this.active.size;
  }

  get bugCount(): number {
    return this.bugs;
  }

  /** Whether the actor is in memory now (tests of passivation and eviction). */
  isResident(actorId: string): boolean {
    return this.active.has(actorId);
  }

  /** One pass over the actors in memory: O(active), for a metrics scrape, not for the hot path. */
  mailboxStats(): MailboxStats {
    let depthMax = 0;
    let messages = 0;
    for (const activation of this.active.values()) {
      const queued = activation.queued;
      messages += queued;
      if (queued > depthMax) depthMax = queued;
    }
    return { depthMax, messages };
  }

  /** Begins serving and runs one pass of due wake-ups (expiries and sagas left by the last run). */
  async start(): Promise<void> {
    this.accepting = true;
    await this.dispatchDueWakeups();
    if (this.options.timerTickMs > 0) this.timers.push(setInterval(() => void this.tick(), this.options.timerTickMs));
    this.timers.push(setInterval(() => this.passivateIdle(), Math.max(100, Math.min(1000, this.options.idleMs / 2))));
    for (const t of this.timers) t.unref();
  }

  /** Stops taking new asks and waits for every queued and running turn to finish. Idempotent. */
  async stop(): Promise<void> {
    this.accepting = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    // A turn waiting on another actor's answer still gets its deadline while the others finish.
    const sweep = this.options.timerTickMs > 0 ? setInterval(() => this.expireDeadlines(), this.options.timerTickMs) : undefined;
    sweep?.unref();
    try {
      await Promise.all([...this.active.values()].map((a) => a.whenIdle()));
    } finally {
      if (sweep !== undefined) clearInterval(sweep);
    }
  }

  /** Resolves when every actor in memory is idle (tests that drive tick() by hand). */
  async whenIdle(): Promise<void> {
    for (;;) {
      const busy = [...this.active.values()].filter((a) => a.busy);
      if (busy.length === 0) return;
      await Promise.all(busy.map((a) => a.whenIdle()));
    }
  }

  /** One timer tick: answers passed deadlines, then dispatches a page of due wake-ups. */
  async tick(): Promise<void> {
    this.expireDeadlines();
    await this.dispatchDueWakeups();
  }

  ask<R>(actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    if (!this.accepting) return Promise.reject(new QmError("UNAVAILABLE", "node is not serving"));
    // Tenancy is enforced here, where every ask arrives (from a handler, an
    // actor, or another node), so a node that built the wrong id cannot reach
    // another tenant's object: the answer is the one for a missing object.
    const caller = options?.caller;
    // Looked up once, for the tenant check and the activation.
    const live = this.active.get(actorId);
    // A live actor knows its tenant: reading it from the id would flatten a
    // freshly built id string on every ask (measured: about 150 ns more per ask).
    if (caller !== undefined && (live === undefined ? tenantOfActorId(actorId) : live.tenant) !== caller.tenant) {
      return Promise.reject(this.notFound(actorId));
    }
    // Never forwarded from here: the router in front re-routes on NOT_OWNER.
    if (this.options.ownership !== undefined && this.options.ownership.epochOf(actorId) === undefined) {
      return Promise.reject(notOwner(actorId));
    }
    let activation: AnyActivation;
    try {
      activation = this.activation(actorId, options?.fromActorId === undefined ? "outside" : "actor", live);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<R>((resolve, reject) => {
      const envelope: Envelope = {
        message,
        deadlineMs: options?.deadlineMs,
        traceparent: options?.traceparent,
        caller,
        // Every envelope, traced or not: the mailbox wait histogram observes each message.
        enqueuedAtMs: performance.now(),
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      activation.enqueue(envelope);
    });
  }

  /** Runs a turn on the actor without a message (its timer is due). */
  wake(actorId: string): void {
    // A busy actor runs its turn-start work (where timers are served) in the
    // turn it has coming; if that turn has already started, the time stays
    // due and a later page brings the actor round again.
    const live = this.active.get(actorId);
    if (live?.busy === true) return;
    try {
      this.activation(actorId, "outside", live).requestWake();
    } catch (error) {
      // At the bound the time simply stays due: not worth a warning per actor per tick.
      const exhausted = error instanceof QmError && error.code === "ACTORS_EXHAUSTED";
      this.logger[exhausted ? "debug" : "warn"]({ err: error, actorId }, "wake-up for an actor that cannot be activated");
    }
  }

  // ---- ActivationHost -------------------------------------------------------

  retire(activation: AnyActivation, leftover: Envelope[], wakeSuccessor: boolean): void {
    if (this.active.get(activation.actorId) === activation) this.drop(activation);
    if (leftover.length === 0 && !wakeSuccessor) return;
    const fresh = this.activation(activation.actorId, "replacement", this.active.get(activation.actorId));
    if (wakeSuccessor) fresh.requestWake();
    for (const envelope of leftover) {
      try {
        fresh.enqueue(envelope);
      } catch (error) {
        envelope.reject(error as Error);
      }
    }
  }

  partitionOf(actorId: string): number | undefined {
    return this.options.partitionOf?.(actorId);
  }

  /** In cluster mode an ask may reach another node's journal, which keeps no order with ours. */
  get appendsDurableInIssueOrder(): boolean {
    return this.journal.durableInIssueOrder === true && this.options.ownership === undefined;
  }

  epochFor(actorId: string): number | undefined {
    const ownership = this.options.ownership;
    if (ownership === undefined) return undefined;
    const epoch = ownership.epochOf(actorId);
    if (epoch === undefined) throw notOwner(actorId);
    return epoch;
  }

  /**
   * Handoff of a partition: lets the matching actors finish what they hold
   * (queued and running turns, appends in flight), then drops them from
   * memory. New asks for them are already refused, since ownership moved
   * first; the next owner recovers everything they wrote.
   */
  /** `partition` is the one the activation noted when it loaded (undefined before): a hand-off need not hash every id again. */
  async retireWhere(belongs: (actorId: string, partition: number | undefined) => boolean): Promise<void> {
    const leaving = [...this.active.values()].filter((a) => belongs(a.actorId, a.partitionId));
    await Promise.all(leaving.map((a) => a.whenIdle()));
    for (const activation of leaving) {
      if (this.active.get(activation.actorId) !== activation) continue;
      activation.markRetired();
      this.drop(activation);
    }
  }

  reportBug(actorId: string, error: unknown): void {
    this.bugs++;
    this.logger.error({ err: error, actorId }, "actor fault: the request failed and the actor is rebuilt from its journal");
  }

  observeTurn(kind: string, messages: number, events: number): void {
    this.options.onTurn?.(kind, messages, events);
  }

  // ---- Internals -------------------------------------------------------------

  /** `live`: what `active` holds for actorId now (the caller has looked it up already). */
  private activation(actorId: string, admission: Admission, live: AnyActivation | undefined): AnyActivation {
    let activation = live;
    if (activation !== undefined && this.options.ownership !== undefined && !activation.busy) {
      // The partition was claimed again under a newer epoch (after a lease
      // lapse): a fresh activation recovers, and fences, under the new one.
      if (activation.epoch !== this.options.ownership.epochOf(actorId)) {
        activation.markRetired();
        this.drop(activation);
        activation = undefined;
      }
    }
    if (activation !== undefined) {
      // V8's Map keeps a deleted entry in its bucket chain until the table is
      // rehashed, and a bigger table rehashes less often: moving the same hot
      // actor to the end on every ask made each move walk up to ~160,000 dead
      // entries on a node holding 100,000 actors (bench/README.md, "Why a hot
      // Reserve costs more beside 100,000 resident actors"). The newest entry
      // is already where the move would put it, and any other actor moves at
      // most once per lruMoveIntervalMs (X). So the Map is ordered by each
      // actor's last move M, and its last use u (an ask, or the end of a turn
      // one started) is at least M and less than M + X, plus the turn.
      // - Eviction takes the idle actors of least M: an actor E evicted while
      //   F stays has u(E) < M(E) + X <= M(F) + X <= u(F) + X, so it was the
      //   least recent to within X.
      // - passivateIdle stops at the first entry B used after the cutoff. An
      //   actor E behind B, idle since u(E), has M(B) <= M(E) <= u(E), so
      //   u(B) < u(E) + X (+ B's turn, as before): once u(E) + idleMs + X has
      //   passed, nothing ahead of E stops the walk, so E is passivated at
      //   most X late, never early (the walk checks E's own lastUsedMs).
      if (this.newest !== activation) {
        const nowMs = this.clock.monotonicMs();
        if (nowMs - activation.lruMovedAtMs >= this.lruMoveIntervalMs) {
          this.active.delete(actorId);
          this.active.set(actorId, activation);
          this.newest = activation;
          activation.lruMovedAtMs = nowMs;
        }
      }
      return activation;
    }
    const behavior = this.behaviorOf(actorId);
    if (behavior === undefined) throw new QmError("INTERNAL", `no actor kind for ${actorId}`);
    if (this.active.size >= this.activeMax) this.evictLeastRecent(this.evictBatch);
    // A replacement takes the place of the activation it rebuilds, so it never counts against the bound.
    const bound = admission === "actor" ? this.activeMax + this.headroom : this.activeMax;
    if (admission !== "replacement" && this.active.size >= bound) {
      throw new QmError("ACTORS_EXHAUSTED", `all ${this.active.size} actors in memory are busy; try again shortly`, {
        actor: actorId,
        active_max: String(this.activeMax),
      });
    }
    const observer = this.kindObservers.get(behavior.kind) ?? unobserved;
    activation = new Activation(this, behavior, actorId, observer);
    activation.lastUsedMs = this.clock.monotonicMs();
    activation.lruMovedAtMs = activation.lastUsedMs;
    this.active.set(actorId, activation);
    this.newest = activation;
    observer.activated();
    void activation.load();
    return activation;
  }

  private behaviorOf(actorId: string): ActorBehavior<unknown, unknown> | undefined {
    const slash = actorId.indexOf("/");
    return slash > 0 ? this.behaviors.get(actorId.slice(0, slash)) : undefined;
  }

  private notFound(actorId: string): QmError {
    const behavior = this.behaviorOf(actorId);
    const key = keyOfActorId(actorId);
    return behavior === undefined ? new QmError("NOT_FOUND", `${key} not found`) : behavior.notFound(key);
  }

  /** Passivates up to `count` of the least recently used idle actors. */
  private evictLeastRecent(count: number): void {
    let evicted = 0;
    for (const activation of this.active.values()) {
      if (evicted >= count) break;
      if (activation.busy) continue;
      activation.markRetired();
      this.drop(activation);
      evicted++;
    }
  }

  /** Passivates the actors idle for longer than idleMs. Run by a timer; public for tests that drive a manual clock. */
  passivateIdle(): void {
    const cutoff = this.clock.monotonicMs() - this.options.idleMs;
    for (const activation of this.active.values()) {
      const overFull = this.active.size > this.activeMax;
      // LRU order to within lruMoveIntervalMs: the rest were used less than that after this one (see activation()).
      if (!overFull && activation.lastUsedMs > cutoff) break;
      if (activation.busy) continue;
      activation.markRetired();
      this.drop(activation);
    }
  }

  /** Every way out of memory goes through here, so activations minus passivations is the count in memory. */
  private drop(activation: AnyActivation): void {
    if (this.newest === activation) this.newest = undefined;
    this.active.delete(activation.actorId);
    activation.observer.passivated();
  }

  private expireDeadlines(): void {
    const nowMs = this.clock.nowMs();
    for (const activation of this.active.values()) activation.expireDeadlines(nowMs);
  }

  private async dispatchDueWakeups(): Promise<void> {
    if (this.ticking || !this.accepting) return;
    this.ticking = true;
    try {
      const nowMs = this.clock.nowMs();
      let offset = this.wakeOffset;
      let due = await this.journal.dueWakeups(nowMs, WAKEUPS_PER_TICK_MAX, offset);
      if (due.length === 0 && offset > 0) {
        // The actors ahead cleared their times since the last page: start over now, not a tick later.
        offset = 0;
        due = await this.journal.dueWakeups(nowMs, WAKEUPS_PER_TICK_MAX, 0);
      }
      // A full page means more may be due behind it: the next tick reads on
      // from there instead of the same earliest entries, and a short page
      // (the end of the due list) starts the round again.
      const next = offset + due.length;
      this.wakeOffset = due.length === WAKEUPS_PER_TICK_MAX && next < WAKEUPS_SCAN_DEPTH_MAX ? next : 0;
      for (const actorId of due) this.wake(actorId);
    } catch (error) {
      this.logger.error({ err: error }, "reading due wake-ups failed");
    } finally {
      this.ticking = false;
    }
  }
}

function notOwner(actorId: string): QmError {
  return new QmError("NOT_OWNER", `this node does not own ${actorId} now`, { actor: actorId });
}
