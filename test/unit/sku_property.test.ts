// Model-based property test of the SKU state machine: random command sequences
// run against the domain and against a plain-numbers model; after every step the
// invariants hold and the SKU agrees with the model. Then the emitted events,
// folded into a fresh state or into one restored from a mid-way snapshot, give
// the same views. fc.assert prints the seed and the shrunk counterexample on failure.

import { expect } from "chai";
import * as fc from "fast-check";
import { pack, unpack } from "msgpackr";
import { type ErrorCode, QmError } from "../../src/errors";
import { BACKORDER_UNITS_MAX, STALE_EXPIRIES_SLACK } from "../../src/limits";
import {
  BACKORDER_DEFAULT_LOCATION_ID,
  applySkuEvent,
  decideAdjust,
  decideCommit,
  decideDefine,
  decideExpiries,
  decideFulfil,
  decideRelease,
  decideReserve,
  decideUnfulfil,
  newSkuState,
  nextExpiryMs,
  type ReservationStatus,
  type SkuEvent,
  type SkuSnapshot,
  type SkuState,
  skuFromSnapshot,
  skuToSnapshot,
  viewReservation,
  viewSku,
} from "../../src/domain/sku";

const T0 = 1_700_000_000_000;
const SKU_ID = "sku-p";
const LOCATIONS = ["A", "B", "C"] as const;
const IDS = ["r0", "r1", "r2", "r3", "r4"] as const;
const SHIPMENTS = ["s1", "s2"] as const;
const TTLS_MS = [2_000, 30_000, 120_000, 600_000] as const;

type Command =
  | { readonly k: "adjust"; readonly loc: string; readonly delta: number }
  | { readonly k: "reserve"; readonly id: string; readonly qty: number; readonly loc: string; readonly ttlMs: number }
  | { readonly k: "commit"; readonly id: string }
  | { readonly k: "release"; readonly id: string }
  | { readonly k: "fulfil"; readonly id: string; readonly shipment: string; readonly qty: number }
  | { readonly k: "unfulfil"; readonly id: string; readonly shipment: string };

interface Step {
  /** Clock advance before the turn. */
  readonly advanceMs: number;
  /** Expiries the turn start may handle: small, so due holds are sometimes left for the command to meet. */
  readonly expiriesMax: number;
  readonly cmd: Command;
}

const id = fc.constantFrom(...IDS);
const qty = fc.integer({ min: 1, max: 4 });
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant("adjust" as const), loc: fc.constantFrom(...LOCATIONS), delta: fc.integer({ min: -8, max: 12 }).filter((d) => d !== 0) }) },
  {
    weight: 4,
    // Mostly the id's usual quantity, so a repeated id is usually a retry; sometimes another (ALREADY_EXISTS).
    arbitrary: fc
      .record({
        k: fc.constant("reserve" as const),
        id,
        qty: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: qty }),
        loc: fc.constantFrom("", "", "", ...LOCATIONS),
        // Likewise the id's usual TTL, sometimes another.
        ttlMs: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(...TTLS_MS) }),
      })
      .map((c) => {
        const usual = IDS.indexOf(c.id as (typeof IDS)[number]);
        return { ...c, qty: c.qty === 0 ? usual + 1 : c.qty, ttlMs: c.ttlMs === 0 ? (TTLS_MS[usual % TTLS_MS.length] as number) : c.ttlMs };
      }),
  },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("commit" as const), id }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant("release" as const), id }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant("fulfil" as const), id, shipment: fc.constantFrom(...SHIPMENTS), qty: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant("unfulfil" as const), id, shipment: fc.constantFrom(...SHIPMENTS) }) },
);
const step: fc.Arbitrary<Step> = fc.record({
  // Mostly small steps, so that holds live long enough to be committed; sometimes a jump past several expiries.
  advanceMs: fc.oneof({ weight: 2, arbitrary: fc.constant(0) }, { weight: 4, arbitrary: fc.integer({ min: 0, max: 3_000 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 70_000 }) }),
  expiriesMax: fc.integer({ min: 0, max: 2 }),
  cmd: command,
});

// ---- The model: plain numbers and plain records ------------------------------------

interface ModelLevel {
  onHand: number;
  reserved: number;
  committed: number;
}

interface ModelReservation {
  readonly loc: string;
  readonly qty: number;
  readonly ttlMs: number;
  status: ReservationStatus;
  expiresAtMs: number | null;
  fulfilled: number;
  readonly shipped: Map<string, number>;
}

class Model {
  readonly levels = new Map<string, ModelLevel>();
  readonly reservations = new Map<string, ModelReservation>();
  adjustmentSeq = 0;

  constructor(
    readonly safety: number,
    /** A backorder SKU reserves up to BACKORDER_UNITS_MAX beyond its stock, at any location. */
    readonly backorder: boolean,
  ) {}

  allowance(): number {
    return this.backorder ? BACKORDER_UNITS_MAX : 0;
  }

  total(field: keyof ModelLevel): number {
    let sum = 0;
    for (const level of this.levels.values()) sum += level[field];
    return sum;
  }

  free(loc: string): number {
    const l = this.levels.get(loc);
    return l === undefined ? 0 : l.onHand - l.reserved - l.committed;
  }

  /** Holds due at nowMs, earliest first. */
  due(nowMs: number): [string, number][] {
    const due: [string, number][] = [];
    for (const [rid, r] of this.reservations) {
      if (r.status === "RESERVED" && r.expiresAtMs !== null && r.expiresAtMs <= nowMs) due.push([rid, r.expiresAtMs]);
    }
    return due.sort((a, b) => a[1] - b[1]);
  }

  nextExpiryMs(): number | null {
    let next: number | null = null;
    for (const r of this.reservations.values()) {
      if (r.status === "RESERVED" && r.expiresAtMs !== null && (next === null || r.expiresAtMs < next)) next = r.expiresAtMs;
    }
    return next;
  }

  level(loc: string): ModelLevel {
    const l = this.levels.get(loc);
    if (l === undefined) throw new Error(`model: no level ${loc}`);
    return l;
  }

  /** Ends a RESERVED or COMMITTED reservation, giving its open units back. */
  end(r: ModelReservation, status: "RELEASED" | "EXPIRED"): void {
    const l = this.level(r.loc);
    if (r.status === "RESERVED") l.reserved -= r.qty;
    else l.committed -= r.qty - r.fulfilled;
    r.status = status;
    r.expiresAtMs = null;
  }

  /** What the SKU should do: the events it emits, or the error code it refuses with (and the available units it names). */
  run(cmd: Command, nowMs: number): SkuEvent[] | { code: ErrorCode; available?: string } {
    switch (cmd.k) {
      case "adjust": {
        const l = this.levels.get(cmd.loc) ?? { onHand: 0, reserved: 0, committed: 0 };
        const held = this.total("reserved") + this.total("committed");
        const refused = this.backorder
          ? l.onHand + cmd.delta < 0 || this.total("onHand") + cmd.delta < held - this.allowance()
          : l.onHand + cmd.delta < l.reserved + l.committed;
        if (cmd.delta < 0 && refused) return { code: "FAILED_PRECONDITION" };
        this.levels.set(cmd.loc, { ...l, onHand: l.onHand + cmd.delta });
        this.adjustmentSeq += 1;
        return [{ t: "adjusted", seq: this.adjustmentSeq, locationId: cmd.loc, delta: cmd.delta, reason: cmd.delta > 0 ? "RECEIVED" : "DAMAGED", key: "", atMs: nowMs }];
      }
      case "reserve": {
        const existing = this.reservations.get(cmd.id);
        if (existing !== undefined) {
          if (existing.qty !== cmd.qty || (cmd.loc !== "" && cmd.loc !== existing.loc) || existing.ttlMs !== cmd.ttlMs) {
            return { code: "ALREADY_EXISTS" };
          }
          return [];
        }
        let target: string | undefined;
        if (cmd.loc !== "") target = this.levels.has(cmd.loc) || this.backorder ? cmd.loc : undefined;
        else {
          for (const loc of [...this.levels.keys()].sort()) if (target === undefined || this.free(loc) > this.free(target)) target = loc;
          // Pre-orders before any delivery go to the default location.
          if (target === undefined && this.backorder) target = BACKORDER_DEFAULT_LOCATION_ID;
        }
        const skuRoom = this.total("onHand") + this.allowance() - this.total("reserved") - this.total("committed") - this.safety;
        const levelRoom = this.backorder ? Number.MAX_SAFE_INTEGER : target === undefined ? 0 : this.free(target);
        if (target === undefined || cmd.qty > skuRoom || cmd.qty > levelRoom) {
          return { code: "INSUFFICIENT_STOCK", available: String(Math.max(0, Math.min(skuRoom, levelRoom))) };
        }
        this.reservations.set(cmd.id, { loc: target, qty: cmd.qty, ttlMs: cmd.ttlMs, status: "RESERVED", expiresAtMs: nowMs + cmd.ttlMs, fulfilled: 0, shipped: new Map() });
        if (!this.levels.has(target)) this.levels.set(target, { onHand: 0, reserved: 0, committed: 0 });
        this.level(target).reserved += cmd.qty;
        return [{ t: "reserved", id: cmd.id, locationId: target, quantity: cmd.qty, expiresAtMs: nowMs + cmd.ttlMs, ttlMs: cmd.ttlMs, atMs: nowMs }];
      }
      case "commit": {
        const r = this.reservations.get(cmd.id);
        if (r === undefined) return { code: "NOT_FOUND" };
        if (r.status === "COMMITTED" || r.status === "FULFILLED") return [];
        if (r.status !== "RESERVED") return { code: "ILLEGAL_TRANSITION" };
        if (r.expiresAtMs !== null && r.expiresAtMs <= nowMs) {
          this.end(r, "EXPIRED");
          return [{ t: "expired", id: cmd.id, atMs: nowMs }];
        }
        const l = this.level(r.loc);
        l.reserved -= r.qty;
        l.committed += r.qty;
        r.status = "COMMITTED";
        r.expiresAtMs = null;
        return [{ t: "committed", id: cmd.id, atMs: nowMs }];
      }
      case "release": {
        const r = this.reservations.get(cmd.id);
        if (r === undefined) return { code: "NOT_FOUND" };
        if (r.status === "RELEASED" || r.status === "EXPIRED") return [];
        if (r.status === "FULFILLED" || r.fulfilled > 0) return { code: "ILLEGAL_TRANSITION" };
        this.end(r, "RELEASED");
        return [{ t: "released", id: cmd.id, atMs: nowMs }];
      }
      case "fulfil": {
        const r = this.reservations.get(cmd.id);
        if (r === undefined) return { code: "NOT_FOUND" };
        if (r.shipped.has(cmd.shipment)) return [];
        if (r.status !== "COMMITTED") return { code: "ILLEGAL_TRANSITION" };
        if (cmd.qty > r.qty - r.fulfilled) return { code: "FAILED_PRECONDITION" };
        const l = this.level(r.loc);
        if (l.onHand < cmd.qty) return { code: "INSUFFICIENT_STOCK" };
        r.shipped.set(cmd.shipment, cmd.qty);
        r.fulfilled += cmd.qty;
        l.onHand -= cmd.qty;
        l.committed -= cmd.qty;
        if (r.fulfilled === r.qty) r.status = "FULFILLED";
        return [{ t: "fulfilled", id: cmd.id, shipmentId: cmd.shipment, quantity: cmd.qty, atMs: nowMs }];
      }
      case "unfulfil": {
        const r = this.reservations.get(cmd.id);
        if (r === undefined) return { code: "NOT_FOUND" };
        const shipped = r.shipped.get(cmd.shipment);
        if (shipped === undefined) return [];
        r.shipped.delete(cmd.shipment);
        r.fulfilled -= shipped;
        const l = this.level(r.loc);
        l.onHand += shipped;
        l.committed += shipped;
        if (r.status === "FULFILLED") r.status = "COMMITTED";
        return [{ t: "unfulfilled", id: cmd.id, shipmentId: cmd.shipment, atMs: nowMs }];
      }
    }
  }
}

// ---- Running a command against the domain ------------------------------------------

function decide(state: SkuState, cmd: Command, nowMs: number): SkuEvent[] {
  switch (cmd.k) {
    case "adjust":
      return decideAdjust(state, { locationId: cmd.loc, delta: cmd.delta, reason: cmd.delta > 0 ? "RECEIVED" : "DAMAGED", key: "" }, nowMs).events;
    case "reserve":
      return decideReserve(state, { id: cmd.id, quantity: cmd.qty, locationId: cmd.loc, ttlMs: cmd.ttlMs }, nowMs);
    case "commit":
      return decideCommit(state, cmd.id, nowMs);
    case "release":
      return decideRelease(state, cmd.id, nowMs);
    case "fulfil":
      return decideFulfil(state, cmd.id, cmd.shipment, cmd.qty, nowMs);
    case "unfulfil":
      return decideUnfulfil(state, cmd.id, cmd.shipment, nowMs);
  }
}

function fold(state: SkuState, events: readonly SkuEvent[]): SkuState {
  for (const e of events) applySkuEvent(state, e);
  return state;
}

/** Everything a reply or the actor's timer could see, for comparing two states. */
function observe(state: SkuState, ids: Iterable<string>): unknown {
  return {
    sku: viewSku(state),
    reservations: [...ids].sort().map((rid) => viewReservation(state, rid)),
    nextExpiryMs: nextExpiryMs(state),
    adjustmentSeq: state.adjustmentSeq,
  };
}

/**
 * The invariants, then agreement with the model. Checked with plain comparisons
 * and one assertion each, so that thousands of steps stay fast.
 */
function checkInvariants(state: SkuState, model: Model, safety: number): void {
  const allowance = model.allowance();
  const view = viewSku(state);
  const broken: string[] = [];
  const check = (ok: boolean, what: string): void => {
    if (!ok) broken.push(what);
  };
  check(
    view.reserved + view.committed <= view.onHand + allowance,
    `reserved ${view.reserved} + committed ${view.committed} > on_hand ${view.onHand} + allowance ${allowance}`,
  );
  check(
    state.expiries.size <= 2 * state.reservedHolds + STALE_EXPIRIES_SLACK,
    `expiry heap of ${state.expiries.size} for ${state.reservedHolds} held reservations`,
  );
  check([view.onHand, view.reserved, view.committed, view.available].every((n) => n >= 0), "a SKU counter is negative");
  let onHand = 0;
  let reserved = 0;
  let committed = 0;
  for (const l of view.levels) {
    check([l.onHand, l.reserved, l.committed, l.available].every((n) => n >= 0), `a counter of level ${l.locationId} is negative`);
    // A backorder SKU's allowance is SKU-wide: one of its levels may hold more than it has.
    check(model.backorder || l.reserved + l.committed <= l.onHand, `level ${l.locationId}: reserved + committed > on_hand`);
    check(l.available === Math.max(0, l.onHand - l.reserved - l.committed), `level ${l.locationId}: available ${l.available}`);
    onHand += l.onHand;
    reserved += l.reserved;
    committed += l.committed;
  }
  check(onHand === view.onHand && reserved === view.reserved && committed === view.committed, "totals are not the sums of the levels");
  check(view.available === Math.max(0, view.onHand - view.reserved - view.committed - safety), `available ${view.available}`);
  expect(broken, "invariants").to.deep.equal([]);

  // The SKU's numbers are the model's.
  const actual = {
    levels: view.levels,
    totals: [view.onHand, view.reserved, view.committed],
    adjustmentSeq: state.adjustmentSeq,
    reservations: [...model.reservations.keys()].map((rid) => {
      const r = viewReservation(state, rid);
      return [rid, r.locationId, r.quantity, r.state, r.expiresAtMs, r.fulfilledQuantity];
    }),
    nextExpiryMs: nextExpiryMs(state),
  };
  const expected = {
    levels: [...model.levels.entries()]
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([locationId, l]) => ({ locationId, onHand: l.onHand, reserved: l.reserved, committed: l.committed, available: Math.max(0, l.onHand - l.reserved - l.committed) })),
    totals: [model.total("onHand"), model.total("reserved"), model.total("committed")],
    adjustmentSeq: model.adjustmentSeq,
    reservations: [...model.reservations.entries()].map(([rid, r]) => [rid, r.loc, r.qty, r.status, r.expiresAtMs, r.fulfilled]),
    nextExpiryMs: model.nextExpiryMs(),
  };
  expect(actual, "the SKU agrees with the model").to.deep.equal(expected);
}

describe("SKU state machine (property)", () => {
  it("agrees with a plain-numbers model, keeps its invariants, and replays from events and from a mid-way snapshot", function () {
    this.timeout(60_000);
    checkAgainstModel(false, fc.array(fc.integer({ min: 0, max: 30 }), { minLength: LOCATIONS.length, maxLength: LOCATIONS.length }));
  });

  it("does the same for backorder SKUs, also ones that take pre-orders before any stock is received", function () {
    this.timeout(60_000);
    const noStock = fc.constant(LOCATIONS.map(() => 0));
    const someStock = fc.array(fc.integer({ min: 0, max: 10 }), { minLength: LOCATIONS.length, maxLength: LOCATIONS.length });
    checkAgainstModel(true, fc.oneof(noStock, someStock));
  });
});

function checkAgainstModel(backorder: boolean, stock: fc.Arbitrary<number[]>): void {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 3 }),
      stock,
      fc.array(step, { maxLength: 60, size: "max" }),
      fc.nat(),
      (safety, initialStock, steps, snapshotAt) => {
        const state = newSkuState(SKU_ID);
        const model = new Model(safety, backorder);
        const events: SkuEvent[] = [];
        const emit = (es: readonly SkuEvent[]): void => {
          fold(state, es);
          events.push(...es);
        };
        emit(decideDefine(state, { title: "P", priceMinor: 1, currency: "EUR", safetyStock: safety, lowStockThreshold: 0, allowBackorder: backorder, attributes: [] }, T0));
        initialStock.forEach((units, i) => {
          if (units === 0) return;
          const receipt: Command = { k: "adjust", loc: LOCATIONS[i] as string, delta: units };
          const expected = model.run(receipt, T0);
          const actual = decide(state, receipt, T0);
          expect(actual).to.deep.equal(expected);
          emit(actual);
        });

        const snapshotIndex = snapshotAt % (steps.length + 1);
        let snapshot: { bytes: Buffer; eventCount: number } | undefined;
        let nowMs = T0;
        steps.forEach((s, i) => {
          if (i === snapshotIndex) snapshot = { bytes: pack(skuToSnapshot(state)), eventCount: events.length };
          nowMs += s.advanceMs;

          // Turn start: due holds expire, earliest first, at most expiriesMax of them.
          const due = model.due(nowMs);
          const expiries = decideExpiries(state, nowMs, s.expiriesMax);
          const expiredIds = expiries.map((e) => (e.t === "expired" ? e.id : `not an expiry: ${e.t}`));
          const dueAt = new Map(due);
          const times = expiredIds.map((rid) => dueAt.get(rid) ?? Number.NaN);
          const left = due.filter(([rid]) => !expiredIds.includes(rid));
          const problems: string[] = [];
          if (expiries.length !== Math.min(s.expiriesMax, due.length)) problems.push(`${expiries.length} expired of ${due.length} due, max ${s.expiriesMax}`);
          if (new Set(expiredIds).size !== expiredIds.length) problems.push("an id expired twice");
          if (times.some((t) => Number.isNaN(t))) problems.push("expired a hold that was not due");
          if (times.some((t, j) => j > 0 && t < (times[j - 1] as number))) problems.push("not earliest first");
          if (times.length > 0 && left.length > 0 && (left[0]?.[1] as number) < (times[times.length - 1] as number)) problems.push("skipped an earlier due hold");
          if (expiries.some((e) => e.atMs !== nowMs)) problems.push("expiry not stamped with now");
          expect(problems, `expiries at ${nowMs - T0} of ${JSON.stringify(due)}: ${JSON.stringify(expiredIds)}`).to.deep.equal([]);
          emit(expiries);
          for (const rid of expiredIds) model.end(model.reservations.get(rid) as ModelReservation, "EXPIRED");
          checkInvariants(state, model, safety);

          // The command.
          const expected = model.run(s.cmd, nowMs);
          let actual: SkuEvent[] | QmError;
          const versionBefore = state.version;
          try {
            actual = decide(state, s.cmd, nowMs);
          } catch (error) {
            if (!(error instanceof QmError)) throw error;
            actual = error;
          }
          if (actual instanceof QmError) {
            expect(expected, `${JSON.stringify(s.cmd)} was refused with ${actual.code}: ${actual.message}`).to.not.be.an("array");
            expect(actual.code).to.equal((expected as { code: ErrorCode }).code);
            const available = (expected as { available?: string }).available;
            if (available !== undefined) expect(actual.metadata.available).to.equal(available);
            expect(state.version, "a refused command changes nothing").to.equal(versionBefore);
          } else {
            expect(actual, `${JSON.stringify(s.cmd)}`).to.deep.equal(expected);
            emit(actual);
          }
          checkInvariants(state, model, safety);
        });

        const ids = [...model.reservations.keys()];
        const final = observe(state, ids);
        // Replay: the events alone rebuild the same SKU.
        expect(observe(fold(newSkuState(SKU_ID), events), ids)).to.deep.equal(final);
        // Recovery: a snapshot plus the events after it rebuild the same SKU.
        if (snapshot === undefined) snapshot = { bytes: pack(skuToSnapshot(state)), eventCount: events.length };
        const restored = skuFromSnapshot(SKU_ID, unpack(snapshot.bytes) as SkuSnapshot);
        expect(observe(fold(restored, events.slice(snapshot.eventCount)), ids)).to.deep.equal(final);
      },
    ),
    { numRuns: 300 },
  );
}
