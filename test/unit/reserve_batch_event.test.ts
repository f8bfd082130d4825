// A ReserveBatch on one SKU is written as one event: reservedCols (journal
// format 5), before it reservedMany (format 4). Journals written before those
// hold one "reserved" event per item: all must replay to the same state, and
// snapshots must still be spaced by the holds written.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { type ReserveBatchOutcome, type ReserveManyReply, skuActorId, skuBehavior } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { forEachHold, type HoldTuple } from "../../src/domain/hold_columns";
import type { AvailabilityView, ReservationView, ReserveColumns, ReserveCommand, SkuEvent } from "../../src/domain/sku";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { DEFAULT_TENANT } from "../../src/security/caller";

const SKU = "batch-sku";
const ACTOR = skuActorId(SKU, DEFAULT_TENANT);
const HOUR_MS = 3_600_000;

function cmds(prefix: string, n: number): ReserveCommand[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}-${i}`, quantity: 1, locationId: "", ttlMs: HOUR_MS }));
}

/** The holds a batch's event carries, in either form; none for another event. */
function heldTuples(e: SkuEvent): HoldTuple[] {
  if (e.t === "reservedMany") return [...e.holds];
  const holds: HoldTuple[] = [];
  if (e.t === "reservedCols") forEachHold(e, (id, locationId, quantity, ttlMs) => holds.push([id, locationId, quantity, ttlMs]));
  return holds;
}

describe("ReserveBatch journal events", () => {
  let dir: string;
  let journal: LmdbJournal | undefined;
  let system: ActorSystem | undefined;

  async function boot(): Promise<{ journal: LmdbJournal; system: ActorSystem }> {
    const j = new LmdbJournal({ path: path.join(dir, "journal"), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock: systemClock });
    await j.open();
    const s = new ActorSystem({
      journal: j,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      behaviors: [skuBehavior as ActorBehavior<unknown, unknown>],
      idleMs: 60_000,
      activeMax: 100,
      timerTickMs: 20,
    });
    await s.start();
    journal = j;
    system = s;
    return { journal: j, system: s };
  }

  async function shutdown(): Promise<void> {
    await system?.stop();
    await journal?.close();
    system = undefined;
    journal = undefined;
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-batch-event-"));
  });

  afterEach(async () => {
    await shutdown();
    await rm(dir, { recursive: true, force: true });
  });

  /** Defines the SKU with 100 units at wh-1, as the journal stores it. */
  function setupEvents(atMs: number): SkuEvent[] {
    return [
      { t: "defined", def: { title: "T", priceMinor: 1, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] }, atMs },
      { t: "adjusted", seq: 1, locationId: "wh-1", delta: 100, reason: "RECEIVED", key: "", atMs },
    ];
  }

  it("replays per-item reserved events written before reservedMany, then a batch's one event on top, to the same stock and version", async () => {
    const atMs = Date.now();
    const { journal: j } = await boot();
    // What an earlier build wrote for a batch of three: one event per item.
    const old: SkuEvent[] = ["old-0", "old-1", "old-2"].map((id) => ({ t: "reserved", id, locationId: "wh-1", quantity: 2, expiresAtMs: atMs + HOUR_MS, ttlMs: HOUR_MS, atMs }));
    await j.append({ actorId: ACTOR, expectedLastSeq: 0, events: [...setupEvents(atMs), ...old] });
    await shutdown();
    const { system: s1 } = await boot();
    const outcomes = await s1.ask<ReserveBatchOutcome[]>(ACTOR, { op: "reserveBatch", cmds: [...cmds("new", 3), { id: "old-1", quantity: 2, locationId: "", ttlMs: HOUR_MS }] });
    expect(outcomes.map((o) => (o.ok ? o.view.state : o.error.code))).to.deep.equal(["RESERVED", "RESERVED", "RESERVED", "RESERVED"]);
    const live = await s1.ask<AvailabilityView>(ACTOR, { op: "availability" });
    expect(live).to.deep.include({ onHand: 100, reserved: 9, available: 91, version: 2 + 3 + 3 });

    await shutdown();
    const { journal: j2, system: s2 } = await boot();
    const recovered = await j2.recover(ACTOR);
    const last = recovered.events[recovered.events.length - 1] as SkuEvent;
    expect(recovered.lastSeq).to.equal(6); // 2 setup + 3 old + 1 reservedCols
    expect(last.t).to.equal("reservedCols");
    expect(heldTuples(last).map((h) => h[0])).to.deep.equal(["new-0", "new-1", "new-2"]);
    expect(await s2.ask<AvailabilityView>(ACTOR, { op: "availability" })).to.deep.equal(live);
    const view = await s2.ask<ReservationView>(ACTOR, { op: "getReservation", id: "new-2" });
    const answered = outcomes[2];
    expect(answered?.ok === true ? answered.view : undefined).to.deep.equal(view);
    expect(await s2.ask<ReservationView>(ACTOR, { op: "getReservation", id: "old-0" })).to.deep.include({ state: "RESERVED", quantity: 2 });
  });

  it("replays reservedMany events a format 4 build wrote, then a batch's reservedCols on top, to the same stock, version and holds", async () => {
    const atMs = Date.now();
    const { journal: j } = await boot();
    // What the previous build wrote for a batch of three at two locations.
    const old: SkuEvent = { t: "reservedMany", holds: [["old-0", "wh-1", 2, HOUR_MS], ["old-1", "wh-2", 3, 60_000], ["old-2", "wh-1", 1, HOUR_MS]], atMs };
    await j.append({ actorId: ACTOR, expectedLastSeq: 0, events: [...setupEvents(atMs), { t: "adjusted", seq: 2, locationId: "wh-2", delta: 10, reason: "RECEIVED", key: "", atMs }, old] });
    await shutdown();
    const { system: s1 } = await boot();
    expect(await s1.ask<ReservationView>(ACTOR, { op: "getReservation", id: "old-1" })).to.deep.include({ locationId: "wh-2", quantity: 3, state: "RESERVED", expiresAtMs: atMs + 60_000 });
    // A retry of an old hold is answered from it; a changed one is refused; new ones are granted.
    const outcomes = await s1.ask<ReserveBatchOutcome[]>(ACTOR, {
      op: "reserveBatch",
      cmds: [...cmds("new", 2), { id: "old-1", quantity: 3, locationId: "", ttlMs: 60_000 }, { id: "old-0", quantity: 5, locationId: "", ttlMs: HOUR_MS }, { id: "new-wh-2", quantity: 4, locationId: "wh-2", ttlMs: 600_000 }],
    });
    expect(outcomes.map((o) => (o.ok ? `${o.view.reservationId}@${o.view.locationId}` : o.error.code))).to.deep.equal(["new-0@wh-1", "new-1@wh-1", "old-1@wh-2", "ALREADY_EXISTS", "new-wh-2@wh-2"]);
    const live = await s1.ask<AvailabilityView>(ACTOR, { op: "availability" });
    expect(live).to.deep.include({ onHand: 110, reserved: 2 + 3 + 1 + 2 + 4, version: 3 + 3 + 3 });
    const views = await Promise.all(["old-0", "old-1", "new-1", "new-wh-2"].map((id) => s1.ask<ReservationView>(ACTOR, { op: "getReservation", id })));

    await shutdown();
    const { journal: j2, system: s2 } = await boot();
    const recovered = await j2.recover(ACTOR);
    expect(recovered.events.map((e) => (e as SkuEvent).t)).to.deep.equal(["defined", "adjusted", "adjusted", "reservedMany", "reservedCols"]);
    expect(heldTuples(recovered.events.at(-1) as SkuEvent)).to.deep.equal([["new-0", "wh-1", 1, HOUR_MS], ["new-1", "wh-1", 1, HOUR_MS], ["new-wh-2", "wh-2", 4, 600_000]]);
    expect(await s2.ask<AvailabilityView>(ACTOR, { op: "availability" })).to.deep.equal(live);
    expect(await Promise.all(["old-0", "old-1", "new-1", "new-wh-2"].map((id) => s2.ask<ReservationView>(ACTOR, { op: "getReservation", id })))).to.deep.equal(views);
  });

  it("leaves refused items out of the event: a batch of 120 on 100 units writes 100 holds and refuses 20", async () => {
    const { journal: j, system: s } = await boot();
    await j.append({ actorId: ACTOR, expectedLastSeq: 0, events: setupEvents(Date.now()) });
    const outcomes = await s.ask<ReserveBatchOutcome[]>(ACTOR, { op: "reserveBatch", cmds: cmds("x", 120) });
    expect(outcomes.filter((o) => o.ok)).to.have.length(100);
    expect(outcomes.slice(100).map((o) => (o.ok ? "ok" : o.error.code))).to.deep.equal(Array<string>(20).fill("INSUFFICIENT_STOCK"));
    await shutdown();
    const { journal: j2, system: s2 } = await boot();
    const recovered = await j2.recover(ACTOR);
    const last = recovered.events[recovered.events.length - 1] as SkuEvent;
    expect(last.t).to.equal("reservedCols");
    expect(heldTuples(last)).to.have.length(100);
    expect(await s2.ask<AvailabilityView>(ACTOR, { op: "availability" })).to.deep.include({ reserved: 100, available: 0, version: 102 });
  });

  it("spaces snapshots by the holds events carry: two batches of 300 holds write a snapshot, so recovery replays at most one event", async () => {
    const { journal: j, system: s } = await boot();
    const atMs = Date.now();
    await j.append({ actorId: ACTOR, expectedLastSeq: 0, events: [setupEvents(atMs)[0] as SkuEvent, { t: "adjusted", seq: 1, locationId: "wh-1", delta: 10_000, reason: "RECEIVED", key: "", atMs }] });
    await s.ask(ACTOR, { op: "reserveBatch", cmds: cmds("a", 300) });
    await s.ask(ACTOR, { op: "reserveBatch", cmds: cmds("b", 300) });
    await shutdown();
    const { journal: j2 } = await boot();
    const recovered = await j2.recover(ACTOR);
    // 2 + 300 + 300 changes reach max(SNAPSHOT_EVENTS_MIN, 600 live holds) on the second batch.
    expect(recovered.snapshot?.seq).to.equal(4);
    expect(recovered.events).to.have.length(0);
  });

  it("decides a batch given as columns (reserveMany) exactly as reserveBatch does: same answers, same journal, same state after recovery", async () => {
    const atMs = Date.now();
    const { journal: j, system: s } = await boot();
    const other = skuActorId("batch-sku-2", DEFAULT_TENANT);
    for (const actor of [ACTOR, other]) {
      await j.append({ actorId: actor, expectedLastSeq: 0, events: [...setupEvents(atMs), { t: "reserved", id: "known", locationId: "wh-1", quantity: 3, expiresAtMs: atMs + HOUR_MS, ttlMs: HOUR_MS, atMs }] });
    }
    // New holds, a known id asked again, the same id with another quantity, a location with no stock, more than is left.
    const batch: ReserveCommand[] = [
      ...cmds("c", 5),
      { id: "known", quantity: 3, locationId: "", ttlMs: HOUR_MS },
      { id: "known", quantity: 4, locationId: "", ttlMs: HOUR_MS },
      { id: "nowhere", quantity: 1, locationId: "wh-9", ttlMs: HOUR_MS },
      { id: "too-many", quantity: 95, locationId: "", ttlMs: HOUR_MS },
      { id: "last", quantity: 2, locationId: "wh-1", ttlMs: 60_000 },
    ];
    const cols: ReserveColumns = { ids: batch.map((c) => c.id), quantities: batch.map((c) => c.quantity), locationIds: batch.map((c) => c.locationId), ttlsMs: batch.map((c) => c.ttlMs) };
    const many = await s.ask<ReserveManyReply>(ACTOR, { op: "reserveMany", cols });
    const outcomes = await s.ask<ReserveBatchOutcome[]>(other, { op: "reserveBatch", cmds: batch });
    // As reserveBatch's outcomes: a granted item's view is made of its command, the SKU and the reply's time.
    const asOutcomes = batch.map((cmd, i): unknown => {
      const locationId = many.locations[i];
      if (locationId === null || locationId === undefined) return many.others[i];
      return { ok: true, view: { reservationId: cmd.id, skuId: "batch-sku-2", locationId, quantity: cmd.quantity, state: "RESERVED", expiresAtMs: many.atMs + cmd.ttlMs, createdAtMs: many.atMs, updatedAtMs: many.atMs, fulfilledQuantity: 0 } };
    });
    const normalised = (list: readonly unknown[]): unknown => JSON.parse(JSON.stringify(list).replace(/batch-sku(-2)?/g, "S").replace(/"(expiresAtMs|createdAtMs|updatedAtMs)":\d+/g, '"$1":0'));
    expect(normalised(asOutcomes)).to.deep.equal(normalised(outcomes));
    expect(many.locations.map((l) => l ?? "-")).to.deep.equal(["wh-1", "wh-1", "wh-1", "wh-1", "wh-1", "-", "-", "-", "-", "wh-1"]);
    expect(many.others.map((o) => (o === null ? "-" : o.ok ? o.view.state : o.error.code))).to.deep.equal(["-", "-", "-", "-", "-", "RESERVED", "ALREADY_EXISTS", "INSUFFICIENT_STOCK", "INSUFFICIENT_STOCK", "-"]);
    const live = await s.ask<AvailabilityView>(ACTOR, { op: "availability" });
    expect(live).to.deep.include({ onHand: 100, reserved: 3 + 5 + 2, version: 3 + 6 });

    await shutdown();
    const { journal: j2, system: s2 } = await boot();
    const last = (await j2.recover(ACTOR)).events.at(-1) as SkuEvent;
    expect(heldTuples(last)).to.deep.equal([...cmds("c", 5).map((c) => [c.id, "wh-1", 1, HOUR_MS]), ["last", "wh-1", 2, 60_000]]);
    expect(await s2.ask<AvailabilityView>(ACTOR, { op: "availability" })).to.deep.equal(live);
    expect(await s2.ask<ReservationView>(ACTOR, { op: "getReservation", id: "last" })).to.deep.include({ state: "RESERVED", expiresAtMs: many.atMs + 60_000, createdAtMs: many.atMs });
  });

  it("refuses to rebuild a SKU whose journal holds an event kind this build does not know (a newer release's), instead of replaying it as nothing", async () => {
    const atMs = Date.now();
    const { journal: j, system: s } = await boot();
    const newer = { t: "reservedEvenMore", holds: [["n-0", "wh-1", 5, HOUR_MS]], atMs } as unknown as SkuEvent;
    await j.append({ actorId: ACTOR, expectedLastSeq: 0, events: [...setupEvents(atMs), newer] });
    let error: unknown;
    try {
      await s.ask(ACTOR, { op: "availability" });
    } catch (caught) {
      error = caught;
    }
    expect(error).to.deep.include({ code: "FAILED_PRECONDITION" });
    expect((error as { metadata: Record<string, string> }).metadata).to.deep.include({ reason: "UNKNOWN_EVENT", event: "reservedEvenMore" });
    // Nothing was written on top of what the newer release left.
    expect((await j.recover(ACTOR)).lastSeq).to.equal(3);
  });
});
