// The registry of live actors on this node: activation on first message,
// passivation when idle or when memory is short, and the timer scheduler
// that wakes actors whose durable wake-up time has come (also after a restart,
// when they are not in memory at all).
//
// Whether an actor lives on this node is the Placement's decision; in a
// single-node process every actor is local. A PlacementRouter (src/cluster/)
// stands in front of this class and forwards asks for other nodes' actors
// over the transport; `router` is what this node's actors ask through.

import type { Logger } from "pino";
import type { Clock } from "../../clock";
import { QmError } from "../../errors";
import type { Journal } from "../../journal/journal";
import { ACTIVE_ACTORS_MAX, WAKEUPS_PER_TICK_MAX } from "../../limits";
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
  /** How often due wake-ups are polled from the journal. */
  readonly timerTickMs: number;
  readonly activeMax?: number;
  readonly onTurn?: (kind: string, messages: number, events: number) => void;
}

type AnyActivation = Activation<unknown, unknown>;

export class ActorSystem implements ActorRouter, ActivationHost {
  readonly journal: Journal;
  readonly clock: Clock;
  /** What this node's actors ask through: the PlacementRouter in front of this system, or the system itself. */
  router: ActorRouter = this;
  private readonly logger: Logger;
  private readonly behaviors = new Map<string, ActorBehavior<unknown, unknown>>();
  /** Insertion order is recency order: every use moves an actor to the end (LRU). */
  private readonly active = new Map<string, AnyActivation>();
  private readonly activeMax: number;
  private timers: NodeJS.Timeout[] = [];
  private ticking = false;
  private accepting = false;
  private bugs = 0;

  constructor(private readonly options: ActorSystemOptions) {
    this.journal = options.journal;
    this.clock = options.clock;
    this.logger = options.logger;
    this.activeMax = options.activeMax ?? ACTIVE_ACTORS_MAX;
    for (const b of options.behaviors) this.behaviors.set(b.kind, b);
  }

  get activeCount(): number {
    return this.active.size;
  }

  get bugCount(): number {
    return this.bugs;
  }

  /** Begins serving and runs one pass of due wake-ups (expiries and sagas left by the last run). */
  async start(): Promise<void> {
    this.accepting = true;
    await this.dispatchDueWakeups();
    this.timers.push(setInterval(() => void this.dispatchDueWakeups(), this.options.timerTickMs));
    this.timers.push(setInterval(() => this.passivateIdle(), Math.max(100, Math.min(1000, this.options.idleMs / 2))));
    for (const t of this.timers) t.unref();
  }

  /** Stops taking new asks and waits for every queued and running turn to finish. Idempotent. */
  async stop(): Promise<void> {
    this.accepting = false;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all([...this.active.values()].map((a) => a.whenIdle()));
  }

  ask<R>(actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    if (!this.accepting) return Promise.reject(new QmError("UNAVAILABLE", "node is not serving"));
    let activation: AnyActivation;
    try {
      activation = this.activation(actorId);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise<R>((resolve, reject) => {
      const envelope: Envelope = {
        message,
        deadlineMs: options?.deadlineMs,
        traceparent: options?.traceparent,
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      activation.enqueue(envelope);
    });
  }

  /** Runs a turn on the actor without a message (its timer is due). */
  wake(actorId: string): void {
    try {
      this.activation(actorId).requestWake();
    } catch (error) {
      this.logger.warn({ err: error, actorId }, "wake-up for an actor that cannot be activated");
    }
  }

  // ---- ActivationHost -------------------------------------------------------

  retire(activation: AnyActivation, leftover: Envelope[], wakeSuccessor: boolean): void {
    if (this.active.get(activation.actorId) === activation) this.active.delete(activation.actorId);
    if (leftover.length === 0 && !wakeSuccessor) return;
    const fresh = this.activation(activation.actorId);
    if (wakeSuccessor) fresh.requestWake();
    for (const envelope of leftover) {
      try {
        fresh.enqueue(envelope);
      } catch (error) {
        envelope.reject(error as Error);
      }
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

  private activation(actorId: string): AnyActivation {
    let activation = this.active.get(actorId);
    if (activation !== undefined) {
      this.active.delete(actorId);
      this.active.set(actorId, activation);
      return activation;
    }
    const slash = actorId.indexOf("/");
    const behavior = slash > 0 ? this.behaviors.get(actorId.slice(0, slash)) : undefined;
    if (behavior === undefined) throw new QmError("INTERNAL", `no actor kind for ${actorId}`);
    if (this.active.size >= this.activeMax) this.evictLeastRecent(2);
    activation = new Activation(this, behavior, actorId);
    activation.lastUsedMs = this.clock.monotonicMs();
    this.active.set(actorId, activation);
    void activation.load();
    return activation;
  }

  /** Passivates up to `count` of the least recently used idle actors. */
  private evictLeastRecent(count: number): void {
    let evicted = 0;
    for (const [id, activation] of this.active) {
      if (evicted >= count) break;
      if (activation.busy) continue;
      activation.markRetired();
      this.active.delete(id);
      evicted++;
    }
  }

  private passivateIdle(): void {
    const cutoff = this.clock.monotonicMs() - this.options.idleMs;
    for (const [id, activation] of this.active) {
      const overFull = this.active.size > this.activeMax;
      if (!overFull && activation.lastUsedMs > cutoff) break; // LRU order: the rest are newer
      if (activation.busy) continue;
      activation.markRetired();
      this.active.delete(id);
    }
  }

  private async dispatchDueWakeups(): Promise<void> {
    if (this.ticking || !this.accepting) return;
    this.ticking = true;
    try {
      const due = await this.journal.dueWakeups(this.clock.nowMs(), WAKEUPS_PER_TICK_MAX);
      for (const actorId of due) this.wake(actorId);
    } catch (error) {
      this.logger.error({ err: error }, "reading due wake-ups failed");
    } finally {
      this.ticking = false;
    }
  }
}
