// What the runtime needs from an actor kind. The runtime knows nothing of SKUs
// or orders: it activates state from the journal, runs one turn at a time,
// persists what a turn emitted in one append, and only then replies.

import type { AuditRecord } from "../../journal/journal";
import type { QmError } from "../../errors";
import type { Who } from "../../security/tenancy";

export interface AskOptions {
  /**
   * Absolute wall-clock deadline. Once it passes, the runtime answers
   * DEADLINE_EXCEEDED (within one timer tick): a message still queued is
   * dropped unprocessed; one being handled may still take effect.
   */
  readonly deadlineMs?: number;
  /** W3C traceparent of the caller, carried across actor and node hops. */
  readonly traceparent?: string;
  /** The asking actor, set by the runtime on an actor's asks; absent for outside callers. */
  readonly fromActorId?: string;
  /**
   * Whom the ask is made for: an RPC's caller, or (on an actor's asks) the
   * caller of the message that actor is handling, or the system with the
   * actor's tenant. The actor system refuses an ask whose tenant is not the
   * target's, as NOT_FOUND. Absent only for in-process tools and tests.
   */
  readonly caller?: Who;
}

/** How an actor reaches other actors, wherever they live. */
export interface ActorRouter {
  ask<R>(actorId: string, message: unknown, options?: AskOptions): Promise<R>;
}

export interface TurnContext<S> {
  readonly actorId: string;
  readonly key: string;
  readonly state: S;
  /** Wall-clock time at the start of this message; one value per message so a decision is consistent. */
  readonly nowMs: number;
  /**
   * Who the change being made is for, as the audit trail records it: the
   * caller of the message being handled, or the system (SYSTEM_SUBJECT, the
   * actor's tenant) in turn-start work such as expiries and timer-driven saga steps.
   */
  readonly who: Who;
  /** Wall-clock time now, for what is measured across an await (when a saga ask came back); decisions use nowMs. */
  currentTimeMs(): number;
  /** Applies the event to the state now and queues it for the turn's durable append. */
  emit(event: unknown): void;
  /**
   * Queues an event the handler has already applied to the state, for the same append: a
   * handler that decides many items one after another on the state, and records them as one
   * event whose applyEvent leaves the state exactly as those steps did. Should the handler
   * throw after queueing it, the turn treats the message as half done (rebuilt from the journal).
   */
  emitApplied(event: unknown): void;
  /** Queues an audit record for the same append as the events. */
  audit(record: AuditRecord): void;
  /** Makes everything emitted so far durable before going on (a saga records intent before acting). */
  persist(): Promise<void>;
  /**
   * True when nothing an ask sent now makes durable can become durable
   * before the appends this actor has already issued (or their failure): the
   * node's journal is durable in issue order and every actor is on this node.
   */
  readonly asksFollowAppends: boolean;
  /** Give every ask a deadline: a reply that never comes would otherwise hold this actor's turn forever. */
  ask<R>(actorId: string, message: unknown, options?: AskOptions): Promise<R>;
  readAudit(afterSeq: number, limit: number): Promise<AuditRecord[]>;
}

export interface ActorBehavior<S, M> {
  /** The first segment of the actor id: `${kind}/${key}`. */
  readonly kind: string;
  initialState(key: string): S;
  applyEvent(state: S, event: unknown): void;
  /** A plain value for the journal; encoded at once, so it may share structure with the state. */
  toSnapshot(state: S): unknown;
  fromSnapshot(key: string, snapshot: unknown): S;
  /** Roughly how many events' worth a snapshot costs to write; snapshots are spaced at least this far apart. */
  snapshotWeight(state: S): number;
  /**
   * How many events' worth replaying this event costs (1 when absent): snapshot spacing counts
   * this, so an event that carries many changes does not let recovery replay many times more.
   */
  eventWeight?(event: unknown): number;
  /** When the actor must run next without a message (expiry, a saga step to resume), or null. */
  wakeAtMs(state: S): number | null;
  /** Runs at the start of every turn, before its messages, and on wake-ups: expiries, saga resumption. */
  onTurnStart?(ctx: TurnContext<S>): void | Promise<void>;
  /**
   * Handles one message and returns the reply. Throwing a QmError before
   * emitting anything fails only this message. Returning a QmError fails the
   * message after the turn's events are durable (for a decision whose events
   * must be kept, such as an expiry found while committing). Anything else
   * thrown is a bug: the message fails with INTERNAL and the activation is
   * rebuilt from the journal.
   */
  handle(ctx: TurnContext<S>, message: M): unknown;
  /**
   * The error an ask for a missing object of this kind answers with. The
   * actor system answers an ask from another tenant with exactly this, so it
   * cannot tell another tenant's object from one that does not exist.
   */
  notFound(key: string): QmError;
}
