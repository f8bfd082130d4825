// Recovery is lazy: start-up (the journal's identity and format checks, then
// the actor system's first pass over due wake-ups, as src/node.ts runs them)
// reads the same few journal records whether the journal holds 10 actors or
// thousands; an actor's records are read on its first message. Counted with
// the journal's read counter, not timed.

import { DEFAULT_TENANT } from "../../src/security/caller";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { skuActorId, skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { ManualClock } from "../../src/clock";
import { applySkuEvent, decideAdjust, decideDefine, decideReserve, newSkuState, nextExpiryMs, type SkuEvent } from "../../src/domain/sku";
import { openJournalWithIdentity } from "../../src/journal/identity";
import { LMDB_DATA_FILE, LmdbJournal } from "../../src/journal/lmdb_journal";
import { JOURNAL_FORMAT } from "../../src/journal/record_codec";

const RETENTION = { maxAgeMs: 1e12, maxPerActor: 100 };
const HOUR_MS = 3_600_000;

/** Each SKU defined, stocked and holding one reservation, so every one has a stored wake-up time (not yet due). */
async function writeSkus(journal: LmdbJournal, count: number, nowMs: number): Promise<void> {
  const appends: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    const state = newSkuState(`s-${i}`);
    const events: SkuEvent[] = [];
    const emit = (decided: readonly SkuEvent[]): void => {
      for (const e of decided) {
        applySkuEvent(state, e);
        events.push(e);
      }
    };
    emit(decideDefine(state, { title: `item ${i}`, priceMinor: 100, currency: "EUR" }, nowMs));
    emit(decideAdjust(state, { locationId: "wh", delta: 10, reason: "RECEIVED", key: "" }, nowMs).events);
    emit(decideReserve(state, { id: "r-1", quantity: 1, locationId: "wh", ttlMs: HOUR_MS }, nowMs));
    appends.push(journal.append({ actorId: skuActorId(`s-${i}`, DEFAULT_TENANT), expectedLastSeq: 0, events, wakeAtMs: nextExpiryMs(state) }));
  }
  await Promise.all(appends);
}

interface Started {
  readonly journal: LmdbJournal;
  readonly system: ActorSystem;
  readonly startReads: number;
}

/** What src/node.ts does at start, on an existing data directory. */
async function startOn(dataDir: string, clock: ManualClock): Promise<Started> {
  const journalDir = path.join(dataDir, "journal");
  const journal = new LmdbJournal({ path: journalDir, auditRetention: RETENTION, clock });
  await openJournalWithIdentity({
    dataDir,
    journalFile: path.join(journalDir, LMDB_DATA_FILE),
    journal,
    allowEmpty: false,
    journalFormat: JOURNAL_FORMAT,
    clock,
  });
  const system = new ActorSystem({
    journal,
    clock,
    logger: pino({ level: "silent" }),
    behaviors: [skuBehavior as ActorBehavior<unknown, unknown>],
    idleMs: 60_000,
    timerTickMs: 0,
  });
  await system.start();
  return { journal, system, startReads: journal.readStats().recordsRead };
}

describe("lazy recovery", function () {
  this.timeout(60_000);
  const dirs: string[] = [];

  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  async function dataDirWith(count: number, clock: ManualClock): Promise<string> {
    const dataDir = await mkdtemp(path.join(tmpdir(), "qm-lazy-"));
    dirs.push(dataDir);
    const { journal, system } = await startOn(dataDir, clock);
    await writeSkus(journal, count, clock.nowMs());
    await system.stop();
    await journal.close();
    return dataDir;
  }

  it("reads the same 3 journal records at start-up with 10 or 3,000 SKUs on disk, and an SKU's 5 records (meta, 3 events and its wake-up entry) on its first message", async () => {
    const clock = new ManualClock();
    const reads: number[] = [];
    for (const count of [10, 3_000]) {
      const dataDir = await dataDirWith(count, clock);
      const { journal, system, startReads } = await startOn(dataDir, clock);
      try {
        reads.push(startReads);
        expect(system.activeCount).to.equal(0);
        // The format record, the identity record, and the earliest wake-up entry (not due, so the scan stops there).
        expect(startReads).to.equal(3);
        const view = await system.ask<{ available: number }>(skuActorId(`s-${count - 1}`, DEFAULT_TENANT), { op: "availability" } satisfies SkuMessage);
        expect(view.available).to.equal(9);
        // Its meta record, its three events, and its wake-up entry (looked up to fail the SKU if a damaged page lost its timers).
        expect(journal.readStats().recordsRead - startReads).to.equal(5);
      } finally {
        await system.stop();
        await journal.close();
      }
    }
    expect(reads).to.deep.equal([3, 3]);
  });
});
