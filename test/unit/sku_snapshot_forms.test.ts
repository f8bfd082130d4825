// A SKU snapshot written before reservations were stored as tuples (each one an
// object with named fields) is still recovered: written through the journal as
// the previous release wrote it, then read by a SKU actor of this release.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { skuActorId, skuBehavior } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { ManualClock } from "../../src/clock";
import type { ReservationView, SkuView } from "../../src/domain/sku";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { DEFAULT_TENANT } from "../../src/security/caller";

const T0 = 1_700_000_000_000;
const TTL_MS = 3_600_000;
const RETENTION = { maxAgeMs: 1e12, maxPerActor: 100 };

/** The SKU's state as the previous release's skuToSnapshot wrote it: reservations as objects. */
const EARLIER_SNAPSHOT = {
  def: { title: "Mug", priceMinor: 1299, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] },
  createdAtMs: T0,
  updatedAtMs: T0 + 4,
  version: 5,
  levels: [["wh-1", { onHand: 100, reserved: 3, committed: 2 }]],
  live: [
    { id: "r-held", locationId: "wh-1", quantity: 3, ttlMs: TTL_MS, status: "RESERVED", expiresAtMs: T0 + 2 + TTL_MS, createdAtMs: T0 + 2, updatedAtMs: T0 + 2, shipped: [], fulfilled: 0 },
    { id: "r-committed", locationId: "wh-1", quantity: 2, ttlMs: TTL_MS, status: "COMMITTED", expiresAtMs: null, createdAtMs: T0 + 3, updatedAtMs: T0 + 4, shipped: [], fulfilled: 0 },
  ],
  ended: [],
  adjustmentSeq: 1,
  adjustmentKeys: [],
};

describe("SKU snapshots in the earlier form", function () {
  this.timeout(30_000);
  let dir = "";
  let journal: LmdbJournal | undefined;
  let system: ActorSystem | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-snapshot-forms-"));
  });

  after(async () => {
    await system?.stop();
    await journal?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("recovers a SKU from a journalled snapshot with reservations as objects, and serves and changes it", async () => {
    const clock = new ManualClock(T0 + 10);
    journal = new LmdbJournal({ path: dir, auditRetention: RETENTION, clock });
    await journal.open();
    const actorId = skuActorId("mug", DEFAULT_TENANT);
    // The events the snapshot covers; the journal keeps only the snapshot of them.
    const events = [1, 2, 3, 4, 5].map((i) => ({ t: "placeholder", i }));
    await journal.append({ actorId, expectedLastSeq: 0, events, snapshot: { seq: 5, state: EARLIER_SNAPSHOT }, wakeAtMs: T0 + 2 + TTL_MS });
    const recovered = await journal.recover(actorId);
    expect(recovered.snapshot?.seq).to.equal(5);
    expect(recovered.events).to.have.length(0);

    system = new ActorSystem({
      journal,
      clock,
      logger: pino({ level: "silent" }),
      behaviors: [skuBehavior as ActorBehavior<unknown, unknown>],
      idleMs: 60_000,
      timerTickMs: 0,
    });
    await system.start();
    const sku = await system.ask<SkuView>(actorId, { op: "get" });
    expect([sku.onHand, sku.reserved, sku.committed, sku.available, sku.version]).to.deep.equal([100, 3, 2, 95, 5]);
    const held = await system.ask<ReservationView>(actorId, { op: "getReservation", id: "r-held" });
    expect(held).to.deep.include({ state: "RESERVED", quantity: 3, expiresAtMs: T0 + 2 + TTL_MS });
    // The restored hold keeps its TTL: the same request again is the same reservation.
    const retried = await system.ask<ReservationView>(actorId, { op: "reserve", cmd: { id: "r-held", quantity: 3, locationId: "", ttlMs: TTL_MS } });
    expect(retried.createdAtMs).to.equal(T0 + 2);
    const committed = await system.ask<ReservationView>(actorId, { op: "commit", id: "r-held" });
    expect(committed.state).to.equal("COMMITTED");
    const after = await system.ask<SkuView>(actorId, { op: "get" });
    expect([after.reserved, after.committed, after.available, after.version]).to.deep.equal([0, 5, 95, 6]);
  });
});
