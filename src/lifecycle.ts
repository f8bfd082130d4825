// One lifecycle for every long-lived part of a node (the data-directory lock,
// the journal, the metrics endpoint, the gRPC listener, the actor system, and
// in cluster mode etcd, NATS and JetStream): start() acquires, stop() lets go.
// A node composes its parts in one list, started in order and stopped in
// reverse, so what was started last (the part that takes traffic) is the first
// to stop, and a part never outlives what it depends on.

import type { Logger } from "pino";

export interface Lifecycle {
  /** Names the part in logs. */
  readonly name: string;
  start(): Promise<void>;
  /** Idempotent, and safe after a failed start: releases whatever start acquired. */
  stop(): Promise<void>;
}

/** A part from two functions, for classes whose own methods are spelled otherwise (open/close, acquire/release). */
export function lifecycle(name: string, start: () => Promise<void>, stop: () => Promise<void>): Lifecycle {
  return { name, start, stop };
}

/**
 * Starts parts in list order; if one fails, stops those already started (in
 * reverse) and rethrows. stop() stops every started part in reverse order, goes
 * on past a part that fails to stop (logging it), and is idempotent.
 */
export class LifecycleList implements Lifecycle {
  readonly name = "node";
  private readonly started: Lifecycle[] = [];
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly parts: readonly Lifecycle[],
    private readonly logger: Logger,
    private readonly monotonicMs: () => number,
  ) {}

  async start(): Promise<void> {
    if (this.stopping !== undefined || this.started.length > 0) throw new Error("a lifecycle list starts once");
    for (const part of this.parts) {
      const begin = this.monotonicMs();
      try {
        await part.start();
      } catch (error) {
        // The failed part may hold something half-acquired; its stop() is safe to call.
        this.started.push(part);
        await this.stop();
        throw error;
      }
      this.started.push(part);
      this.logger.debug({ part: part.name, ms: Math.round(this.monotonicMs() - begin) }, "part started");
    }
  }

  stop(): Promise<void> {
    this.stopping ??= this.stopAll();
    return this.stopping;
  }

  private async stopAll(): Promise<void> {
    while (this.started.length > 0) {
      const part = this.started.pop() as Lifecycle;
      const begin = this.monotonicMs();
      try {
        await part.stop();
        this.logger.debug({ part: part.name, ms: Math.round(this.monotonicMs() - begin) }, "part stopped");
      } catch (error) {
        this.logger.error({ err: error, part: part.name }, "error during shutdown");
      }
    }
  }
}
