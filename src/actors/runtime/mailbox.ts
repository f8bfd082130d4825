// A bounded FIFO of pending asks. A full mailbox refuses new work at once
// (OVERLOADED) instead of letting memory grow with the backlog.

import { QmError } from "../../errors";
import type { Who } from "../../security/tenancy";

export interface Envelope {
  readonly message: unknown;
  readonly deadlineMs: number | undefined;
  readonly traceparent: string | undefined;
  /** Whom the ask is for; undefined for in-process callers that name nobody (then the system). */
  readonly caller: Who | undefined;
  /** performance.now() at enqueue, for the turn span's mailbox wait; set only on traced envelopes. */
  readonly enqueuedAtMs: number | undefined;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class Mailbox {
  private items: (Envelope | undefined)[] = [];
  private head = 0;
  /**
   * No queued envelope's deadline is earlier than this (a lower bound: taking
   * envelopes does not raise it), so the deadline sweep skips a mailbox in
   * O(1) until one may have passed.
   */
  earliestDeadlineMs = Number.POSITIVE_INFINITY;

  constructor(private readonly depthMax: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  push(envelope: Envelope, actorId: string): void {
    if (this.length >= this.depthMax) {
      throw new QmError("OVERLOADED", `actor ${actorId} has ${this.depthMax} requests queued`, { actor: actorId });
    }
    this.items.push(envelope);
    if (envelope.deadlineMs !== undefined && envelope.deadlineMs < this.earliestDeadlineMs) {
      this.earliestDeadlineMs = envelope.deadlineMs;
    }
  }

  /** Takes out every queued envelope whose deadline is before nowMs, keeping the others in order. */
  removeExpired(nowMs: number): Envelope[] {
    if (this.earliestDeadlineMs >= nowMs) return [];
    const expired: Envelope[] = [];
    const kept: Envelope[] = [];
    let earliest = Number.POSITIVE_INFINITY;
    for (let i = this.head; i < this.items.length; i++) {
      const envelope = this.items[i] as Envelope;
      const deadlineMs = envelope.deadlineMs;
      if (deadlineMs !== undefined && nowMs > deadlineMs) expired.push(envelope);
      else {
        kept.push(envelope);
        if (deadlineMs !== undefined && deadlineMs < earliest) earliest = deadlineMs;
      }
    }
    this.items = kept;
    this.head = 0;
    this.earliestDeadlineMs = earliest;
    return expired;
  }

  take(max: number): Envelope[] {
    const n = Math.min(max, this.length);
    const out: Envelope[] = new Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = this.items[this.head] as Envelope;
      this.items[this.head] = undefined;
      this.head++;
    }
    this.compact();
    return out;
  }

  drain(): Envelope[] {
    return this.take(this.length);
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
      this.earliestDeadlineMs = Number.POSITIVE_INFINITY;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
