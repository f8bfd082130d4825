// A full garbage collection once the node goes idle after work. V8 collects
// only when JavaScript allocates, so a node that passivated its actors and then
// went quiet kept their garbage, and the pages under it, for good: after a
// sweep over 100,000 SKUs, 76-144 MiB of heap used over about 21 MiB live, and
// a median 147 MiB of private memory where this collector leaves 106
// (bench/README.md, "Idle memory"). A heap snapshot of such a node shows
// nothing of ours held beyond the start-up baseline: the memory is garbage,
// not a cache, so collecting it is the cut.
//
// It waits for IDLE_GC_QUIET_MS of quiet, not one check: V8 shrinks its young
// generation at the end of a full collection only when the allocation rate it
// measured over the last 5 s is low. Collected a second after a burst, the
// node kept 32 MiB of empty semi-spaces, and whether bench:compare read
// 49 or 99 MiB of idle memory depended on when the collection happened
// (bench/README.md, "Idle memory: why the figure moved between 49 and 99 MiB").
//
// Growth of the heap is not the only trigger: passivation frees memory without
// allocating, so actors that go idle after a collection (a minute after the
// burst, by default) leave garbage the heap's growth never shows. Actors that
// left memory since the last collection count as well.

import { performance, type EventLoopUtilization } from "node:perf_hooks";
import v8 from "node:v8";
import vm from "node:vm";
import type { Logger } from "pino";
import { IDLE_GC_ACTORS_DROPPED_MIN, IDLE_GC_BUSY_SHARE_MAX, IDLE_GC_CHECK_INTERVAL_MS, IDLE_GC_GARBAGE_MIN_BYTES, IDLE_GC_QUIET_MS } from "../limits";

/** What the collector reads and does; the real one is v8's heap, the event loop and a full collection. */
export interface IdleCollectorProbe {
  heapUsedBytes(): number;
  /** Share of the time since the previous call that the event loop was busy, 0 to 1. */
  busyShare(): number;
  /** A full, synchronous collection. */
  collect(): void;
  /** Actors in memory now; absent where nothing passivates actors. */
  residentActors?(): number;
}

/**
 * V8's gc() without starting node with --expose-gc: the flag, set now, gives
 * contexts created from now on a `gc` function, and one such context hands it
 * over. Null when this V8 refuses (the collector then stays off).
 */
export function exposedGc(): (() => void) | null {
  const existing: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof existing === "function") return () => void existing();
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("gc");
    return typeof gc === "function" ? () => void gc() : null;
  } catch {
    return null;
  }
}

export function processProbe(gc: () => void, residentActors?: () => number): IdleCollectorProbe {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  return {
    ...(residentActors === undefined ? {} : { residentActors }),
    heapUsedBytes: () => v8.getHeapStatistics().used_heap_size,
    busyShare: () => {
      const now = performance.eventLoopUtilization();
      const share = performance.eventLoopUtilization(now, last).utilization;
      last = now;
      return share;
    },
    collect: gc,
  };
}

export class IdleCollector {
  private timer: NodeJS.Timeout | null = null;
  /** Heap used right after the last collection (or at start): what is live, near enough. */
  private liveBytes = 0;
  private collections = 0;
  /** Consecutive checks that found the loop idle. */
  private quietChecks = 0;
  /** The most actors in memory since the last collection: those passivated since are garbage the heap's growth does not show. */
  private residentPeak = 0;
  /** Idle checks in a row before a collection: IDLE_GC_QUIET_MS, in this collector's intervals. */
  private readonly quietChecksMin: number;

  constructor(
    private readonly probe: IdleCollectorProbe,
    private readonly logger: Logger,
    private readonly intervalMs = IDLE_GC_CHECK_INTERVAL_MS,
    private readonly garbageBytes = IDLE_GC_GARBAGE_MIN_BYTES,
    quietMs = IDLE_GC_QUIET_MS,
  ) {
    this.quietChecksMin = Math.max(1, Math.ceil(quietMs / intervalMs));
  }

  get collectionCount(): number {
    return this.collections;
  }

  start(): Promise<void> {
    if (this.timer !== null) return Promise.resolve();
    this.liveBytes = this.probe.heapUsedBytes();
    this.residentPeak = this.probe.residentActors?.() ?? 0;
    this.probe.busyShare();
    this.timer = setInterval(() => this.check(), this.intervalMs);
    // Never the reason the process stays up.
    this.timer.unref();
    return Promise.resolve();
  }

  stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    return Promise.resolve();
  }

  /**
   * One look: collects when the loop was idle over the last quiet period and,
   * since the last collection, the heap grew enough or enough actors left memory.
   */
  check(): boolean {
    const busy = this.probe.busyShare();
    const resident = this.probe.residentActors?.() ?? 0;
    if (resident > this.residentPeak) this.residentPeak = resident;
    this.quietChecks = busy > IDLE_GC_BUSY_SHARE_MAX ? 0 : this.quietChecks + 1;
    if (this.quietChecks < this.quietChecksMin) return false;
    const used = this.probe.heapUsedBytes();
    if (used - this.liveBytes < this.garbageBytes && this.residentPeak - resident < IDLE_GC_ACTORS_DROPPED_MIN) return false;
    const begin = performance.now();
    this.probe.collect();
    this.liveBytes = this.probe.heapUsedBytes();
    this.residentPeak = resident;
    this.collections += 1;
    // The pause itself is busy time; the next interval must not count it.
    this.probe.busyShare();
    this.logger.debug({ heapUsedBefore: used, heapUsedAfter: this.liveBytes, pauseMs: Math.round(performance.now() - begin) }, "idle: collected garbage");
    return true;
  }
}

/** The node's collector, or null when turned off (QM_IDLE_GC_MIB=0) or V8 does not hand out gc(). */
export function idleCollector(logger: Logger, garbageBytes: number, residentActors?: () => number): IdleCollector | null {
  if (garbageBytes === 0) return null;
  const gc = exposedGc();
  if (gc === null) {
    logger.warn("idle garbage collection unavailable: an idle node keeps the garbage of its last burst");
    return null;
  }
  return new IdleCollector(processProbe(gc, residentActors), logger, IDLE_GC_CHECK_INTERVAL_MS, garbageBytes);
}
