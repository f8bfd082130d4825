// Builds a data directory with many SKUs and their journals directly through
// the LmdbJournal API, for the growth and activation benchmarks.
//
// Seeding 1,000,000 SKUs through gRPC would take longer than the runs it
// prepares (two calls per SKU at a few thousand calls/s). Here each SKU's
// events are decided by the same domain functions the SKU actor uses
// (src/domain/sku.ts), so the journal holds exactly what a served SKU would
// have written, and the appends go in large groups so that one commit (one
// fsync) carries thousands of them.
//
// Every SKU gets: `defined`, `adjusted` (RECEIVE of SKU_UNITS at wh-1, with
// its audit record), then reservations of one unit until it has
// eventsPerSku events. The holds have the longest TTL the API allows, so
// every SKU has a stored wake-up time far in the future: a restart has a
// full wake-up index to ignore, none of it due.

import { DEFAULT_TENANT } from "../src/security/caller";
import { existsSync } from "node:fs";
import path from "node:path";
import { skuActorId } from "../src/actors/inventory/sku_actor";
import type { AdjustmentRecord } from "../src/actors/inventory/sku_actor";
import type { Clock } from "../src/clock";
import {
  applySkuEvent,
  decideAdjust,
  decideDefine,
  decideReserve,
  newSkuState,
  nextExpiryMs,
  type SkuEvent,
  skuToSnapshot,
} from "../src/domain/sku";
import { openJournalWithIdentity } from "../src/journal/identity";
import { LMDB_DATA_FILE, LmdbJournal } from "../src/journal/lmdb_journal";
import { JOURNAL_FORMAT } from "../src/journal/record_codec";
import { JOURNAL_BATCH_APPENDS_MAX, TTL_MS_MAX } from "../src/limits";
import { skuIdFor } from "./reserve_frames";
import { SEED_LOCATION_ID } from "./seed";

/** Units each built SKU receives: more than any run reserves from one SKU. */
export const BUILT_SKU_UNITS = 1_000_000;
/** Appends issued before waiting: two journal batches, so the next one is queued while one commits. */
const APPENDS_IN_FLIGHT = 2 * JOURNAL_BATCH_APPENDS_MAX;

export interface BuildOptions {
  /** The data directory (QM_DATA_DIR); the journal goes to <dir>/journal as the node puts it. */
  readonly dir: string;
  readonly skus: number;
  /** At least 2 (defined, adjusted); the rest are reservations. */
  readonly eventsPerSku: number;
  /** Stores a snapshot covering all events (as an actor does past its snapshot interval), instead of events only. */
  readonly snapshot?: boolean;
  readonly clock: Clock;
  /** Called after each group of appends with the SKUs written so far. */
  readonly progress?: (skusDone: number) => void;
}

export interface BuildResult {
  readonly skus: number;
  readonly events: number;
  readonly seconds: number;
}

export function journalDirOf(dataDir: string): string {
  return path.join(dataDir, "journal");
}

/** One SKU's append: its events decided against a fresh state, in order (also the cluster's catalogue, cluster_catalogue.ts). */
export function skuAppend(index: number, eventsPerSku: number, nowMs: number, withSnapshot: boolean): Parameters<LmdbJournal["append"]>[0] {
  const skuId = skuIdFor(index);
  const state = newSkuState(skuId);
  const events: SkuEvent[] = [];
  const emit = (decided: readonly SkuEvent[]): void => {
    for (const e of decided) {
      applySkuEvent(state, e);
      events.push(e);
    }
  };
  emit(decideDefine(state, { title: `Benchmark item ${skuId}`, priceMinor: 1_999, currency: "EUR" }, nowMs));
  const adjust = { locationId: SEED_LOCATION_ID, delta: BUILT_SKU_UNITS, reason: "RECEIVED" as const, key: "" };
  emit(decideAdjust(state, adjust, nowMs).events);
  const record: AdjustmentRecord = { ...adjust, note: "growth build", onHandAfter: BUILT_SKU_UNITS };
  for (let n = 2; n < eventsPerSku; n++) {
    emit(decideReserve(state, { id: `g-${n}`, quantity: 1, locationId: SEED_LOCATION_ID, ttlMs: TTL_MS_MAX }, nowMs));
  }
  return {
    actorId: skuActorId(skuId, DEFAULT_TENANT),
    expectedLastSeq: 0,
    events,
    ...(withSnapshot ? { snapshot: { seq: events.length, state: skuToSnapshot(state) } } : {}),
    wakeAtMs: nextExpiryMs(state),
    audit: [{ seq: state.adjustmentSeq, atMs: nowMs, data: record }],
  };
}

/**
 * Writes skus × eventsPerSku events into a new data directory (identity file
 * included, so the node starts on it as on its own). Refuses a directory that
 * already holds a journal.
 */
export async function buildCatalogue(options: BuildOptions): Promise<BuildResult> {
  if (!(Number.isInteger(options.eventsPerSku) && options.eventsPerSku >= 2)) throw new Error("eventsPerSku must be an integer >= 2");
  const journalDir = journalDirOf(options.dir);
  const journal = new LmdbJournal({
    path: journalDir,
    auditRetention: { maxAgeMs: 90 * 24 * 3600 * 1000, maxPerActor: 1000 },
    clock: options.clock,
  });
  if (existsSync(path.join(journalDir, LMDB_DATA_FILE))) throw new Error(`${options.dir} already holds a journal`);
  const began = performance.now();
  await openJournalWithIdentity({
    dataDir: options.dir,
    journalFile: path.join(journalDir, LMDB_DATA_FILE),
    journal,
    allowEmpty: false,
    journalFormat: JOURNAL_FORMAT,
    clock: options.clock,
  });
  try {
    const nowMs = options.clock.nowMs();
    let events = 0;
    for (let first = 0; first < options.skus; first += APPENDS_IN_FLIGHT) {
      const last = Math.min(options.skus, first + APPENDS_IN_FLIGHT);
      const appends: Promise<void>[] = [];
      for (let i = first; i < last; i++) {
        const request = skuAppend(i, options.eventsPerSku, nowMs, options.snapshot === true);
        events += request.events.length;
        appends.push(journal.append(request));
      }
      await Promise.all(appends);
      options.progress?.(last);
    }
    return { skus: options.skus, events, seconds: (performance.now() - began) / 1000 };
  } finally {
    await journal.close();
  }
}
