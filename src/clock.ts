// Time comes from an injected clock so that expiry logic can be tested and
// simulated without sleeping.

export interface Clock {
  /** Wall-clock milliseconds since the epoch: deadlines and timestamps that are persisted. */
  nowMs(): number;
  /** Monotonic milliseconds: durations and lease deadlines, never persisted. */
  monotonicMs(): number;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  monotonicMs: () => performance.now(),
};

/** A clock that moves only when told to; for tests and simulation. */
export class ManualClock implements Clock {
  constructor(private wallMs = 1_700_000_000_000, private monoMs = 0) {}
  nowMs(): number {
    return this.wallMs;
  }
  monotonicMs(): number {
    return this.monoMs;
  }
  advance(ms: number): void {
    this.wallMs += ms;
    this.monoMs += ms;
  }
}
