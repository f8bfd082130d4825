import { assert } from "../errors";
import { WAKEUP_INDEX_RUN_ENTRIES_MAX } from "../limits";
import type { ActorId } from "./journal";

interface Entry {
  readonly atMs: number;
  readonly actorId: ActorId;
  readonly partition: number;
}

/** Due time, then actor id: the order the LMDB journal's [wakeAtMs, actorId] key gives its range reads. */
function compare(a: Entry, b: Entry): number {
  return a.atMs - b.atMs || (a.actorId < b.actorId ? -1 : a.actorId > b.actorId ? 1 : 0);
}

/**
 * The wake-ups of the partitions a cluster node owns, ordered by due time.
 *
 * A timer tick asks for one page of the due list; scanning and sorting every
 * owned actor with a wake-up for it cost O(n log n) per tick, and every SKU
 * with a live hold and every unpaid order has one. Here the entries are kept
 * sorted in runs of at most WAKEUP_INDEX_RUN_ENTRIES_MAX, so a page costs
 * (runs stepped over to reach its offset) + (its length), and a change moves
 * at most one run's entries.
 */
export class WakeupIndex {
  /** Per owned partition, each actor's entry: the runs hold the same objects. */
  private readonly partitions = new Map<number, Map<ActorId, Entry>>();
  /** Sorted, each non-empty; concatenated they are the whole order. */
  private runs: Entry[][] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  owns(partition: number): boolean {
    return this.partitions.has(partition);
  }

  /** Starts an empty index for the partition, dropping what it had. */
  claim(partition: number): void {
    this.release(partition);
    this.partitions.set(partition, new Map());
  }

  release(partition: number): void {
    const entries = this.partitions.get(partition);
    if (entries === undefined) return;
    this.partitions.delete(partition);
    if (entries.size * 8 < this.count) {
      for (const entry of entries.values()) this.remove(entry);
      return;
    }
    // A large share of the index: one pass that keeps the rest beats a
    // delete per entry.
    const kept: Entry[] = [];
    for (const run of this.runs) for (const entry of run) if (entry.partition !== partition) kept.push(entry);
    this.runs = [];
    for (let i = 0; i < kept.length; i += WAKEUP_INDEX_RUN_ENTRIES_MAX / 2) this.runs.push(kept.slice(i, i + WAKEUP_INDEX_RUN_ENTRIES_MAX / 2));
    this.count = kept.length;
  }

  /** Sets (null: clears) the actor's wake-up; false when the partition is not owned here. */
  set(partition: number, actorId: ActorId, atMs: number | null): boolean {
    const entries = this.partitions.get(partition);
    if (entries === undefined) return false;
    const old = entries.get(actorId);
    if (old !== undefined) {
      if (old.atMs === atMs) return true;
      entries.delete(actorId);
      this.remove(old);
    }
    if (atMs !== null) {
      const entry: Entry = { atMs, actorId, partition };
      entries.set(actorId, entry);
      this.insert(entry);
    }
    return true;
  }

  /** Entries offset..offset+limit-1 of those due at nowMs, in due-time-then-actor order. */
  due(nowMs: number, limit: number, offset: number): ActorId[] {
    const page: ActorId[] = [];
    let r = 0;
    let skip = offset;
    const runs = this.runs;
    while (r < runs.length && (runs[r] as Entry[]).length <= skip) skip -= (runs[r++] as Entry[]).length;
    for (; r < runs.length && page.length < limit; r++, skip = 0) {
      const run = runs[r] as Entry[];
      for (let i = skip; i < run.length && page.length < limit; i++) {
        const entry = run[i] as Entry;
        if (entry.atMs > nowMs) return page;
        page.push(entry.actorId);
      }
    }
    return page;
  }

  /** Every entry in order; for tests. */
  entries(): { atMs: number; actorId: ActorId; partition: number }[] {
    return this.runs.flat().map((e) => ({ ...e }));
  }

  private insert(entry: Entry): void {
    this.count++;
    if (this.runs.length === 0) {
      this.runs.push([entry]);
      return;
    }
    const r = this.runOf(entry);
    const run = this.runs[r] as Entry[];
    run.splice(lowerBound(run, entry), 0, entry);
    if (run.length > WAKEUP_INDEX_RUN_ENTRIES_MAX) this.runs.splice(r + 1, 0, run.splice(run.length >> 1));
  }

  private remove(entry: Entry): void {
    const r = this.runOf(entry);
    const run = this.runs[r] as Entry[];
    const i = lowerBound(run, entry);
    assert(run[i] === entry, `wake-up index holds ${entry.actorId} at ${entry.atMs}`);
    run.splice(i, 1);
    this.count--;
    if (run.length === 0) this.runs.splice(r, 1);
    else if (run.length < WAKEUP_INDEX_RUN_ENTRIES_MAX / 4 && r + 1 < this.runs.length) {
      const next = this.runs[r + 1] as Entry[];
      if (run.length + next.length <= WAKEUP_INDEX_RUN_ENTRIES_MAX) {
        // Keeps runs from thinning out into many tiny ones that a page must step over.
        this.runs[r] = run.concat(next);
        this.runs.splice(r + 1, 1);
      }
    }
  }

  /** The last run whose first entry is not after the entry (run 0 when none is). */
  private runOf(entry: Entry): number {
    let lo = 0;
    let hi = this.runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (compare((this.runs[mid] as Entry[])[0] as Entry, entry) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

function lowerBound(run: readonly Entry[], entry: Entry): number {
  let lo = 0;
  let hi = run.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compare(run[mid] as Entry, entry) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
