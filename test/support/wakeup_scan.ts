// The scan-and-sort that JetStreamJournal.dueWakeups ran before the
// WakeupIndex (stop 9): every owned partition's due times in a Map, scanned
// and sorted on every page. It is kept as the reference answer the index is
// checked against (test/unit/wakeup_index.test.ts) and as the old cost the
// index is measured against (bench/wakeup_tick.ts). It lives here, beside the
// other test harnesses, because its first job is to be the test's oracle;
// bench/ already imports test/support/, and tests do not import bench/.

/** The old due wake-up page: a Map of due times per owned partition, scanned and sorted per call. */
export class WakeupScan {
  private readonly partitions = new Map<number, Map<string, number>>();

  claim(partition: number): void {
    this.partitions.set(partition, new Map());
  }

  release(partition: number): void {
    this.partitions.delete(partition);
  }

  /** Sets (or with null clears) an actor's due time; false when its partition is not owned. */
  set(partition: number, actorId: string, atMs: number | null): boolean {
    const index = this.partitions.get(partition);
    if (index === undefined) return false;
    if (atMs === null) index.delete(actorId);
    else index.set(actorId, atMs);
    return true;
  }

  /** The actors due at nowMs, earliest first and by id among equals, from offset, at most limit. */
  due(nowMs: number, limit: number, offset: number): string[] {
    const due: [number, string][] = [];
    for (const index of this.partitions.values()) for (const [actorId, at] of index) if (at <= nowMs) due.push([at, actorId]);
    due.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
    return due.slice(offset, offset + limit).map(([, actorId]) => actorId);
  }

  get size(): number {
    let n = 0;
    for (const index of this.partitions.values()) n += index.size;
    return n;
  }
}
