// A bounded FIFO of pending asks. A full mailbox refuses new work at once
// (OVERLOADED) instead of letting memory grow with the backlog.

import { QmError } from "../../errors";

export interface Envelope {
  readonly message: unknown;
  readonly deadlineMs: number | undefined;
  readonly traceparent: string | undefined;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

export class Mailbox {
  private items: (Envelope | undefined)[] = [];
  private head = 0;

  constructor(private readonly depthMax: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  push(envelope: Envelope, actorId: string): void {
    if (this.length >= this.depthMax) {
      throw new QmError("OVERLOADED", `actor ${actorId} has ${this.depthMax} requests queued`, { actor: actorId });
    }
    this.items.push(envelope);
  }

  /** Puts envelopes back at the front, in order (a turn that stopped early). */
  unshift(envelopes: readonly Envelope[]): void {
    this.compact();
    this.items.unshift(...envelopes);
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
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
