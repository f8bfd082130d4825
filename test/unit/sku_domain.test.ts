import { expect } from "chai";
import { pack, unpack } from "msgpackr";
import { QmError } from "../../src/errors";
import {
  ADJUSTMENT_KEYS_PER_SKU_MAX,
  BACKORDER_UNITS_MAX,
  ENDED_RESERVATIONS_PER_SKU_MAX,
  LOCATIONS_PER_SKU_MAX,
  ON_HAND_MAX,
} from "../../src/limits";
import {
  type AdjustCommand,
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
  type SkuDefinition,
  type SkuEvent,
  type SkuSnapshot,
  type SkuState,
  skuFromSnapshot,
  skuToSnapshot,
  skuWeight,
  viewAvailability,
  viewLevel,
  viewReservation,
  viewSku,
} from "../../src/domain/sku";
import { qmErrorOf } from "../support/qm_error";

const T0 = 1_700_000_000_000;
const TTL_MS = 60_000;

function definition(overrides: Partial<SkuDefinition> = {}): SkuDefinition {
  return {
    title: "Widget",
    priceMinor: 1299,
    currency: "EUR",
    safetyStock: 0,
    lowStockThreshold: 0,
    allowBackorder: false,
    attributes: [["colour", "red"]],
    ...overrides,
  };
}

/** Applies decided events to the state, as the SKU actor does, and hands them back. */
function apply(state: SkuState, events: readonly SkuEvent[]): SkuEvent[] {
  for (const e of events) applySkuEvent(state, e);
  return [...events];
}

/** A defined SKU with the given on-hand stock per location. */
function skuWith(stock: Record<string, number>, overrides: Partial<SkuDefinition> = {}): SkuState {
  const state = newSkuState("sku-1");
  apply(state, decideDefine(state, definition(overrides), T0));
  for (const [locationId, units] of Object.entries(stock)) adjust(state, { locationId, delta: units, reason: "RECEIVED", key: "" });
  return state;
}

function adjust(state: SkuState, cmd: AdjustCommand, nowMs = T0): SkuEvent[] {
  return apply(state, decideAdjust(state, cmd, nowMs).events);
}

function reserve(state: SkuState, id: string, quantity: number, locationId = "", nowMs = T0, ttlMs = TTL_MS): SkuEvent[] {
  return apply(state, decideReserve(state, { id, quantity, locationId, ttlMs }, nowMs));
}


/** Everything a reply could show about the SKU, to check that a refused command changed nothing. */
function fingerprint(state: SkuState, reservationIds: readonly string[] = []): unknown {
  return {
    sku: viewSku(state),
    reservations: reservationIds.map((id) => viewReservation(state, id)),
    adjustmentSeq: state.adjustmentSeq,
    nextExpiryMs: nextExpiryMs(state),
  };
}

function totals(state: SkuState): { onHand: number; reserved: number; committed: number; available: number } {
  const v = viewSku(state);
  return { onHand: v.onHand, reserved: v.reserved, committed: v.committed, available: v.available };
}

describe("SKU state machine", () => {
  describe("define", () => {
    it("emits one defined event for a new SKU and starts it at version 1 with createdAtMs set", () => {
      const state = newSkuState("sku-1");
      const events = apply(state, decideDefine(state, definition(), T0));
      expect(events).to.deep.equal([{ t: "defined", def: definition(), atMs: T0 }]);
      const view = viewSku(state);
      expect(view.version).to.equal(1);
      expect(view.createdAtMs).to.equal(T0);
      expect(view.updatedAtMs).to.equal(T0);
      expect(view.onHand).to.equal(0);
      expect(view.levels).to.deep.equal([]);
    });

    it("emits nothing when the same definition is upserted again (attribute order aside), and the version stays 1", () => {
      const state = skuWith({});
      const same = definition({ attributes: [["colour", "red"]] });
      expect(decideDefine(state, same, T0 + 1000)).to.deep.equal([]);
      expect(viewSku(state).version).to.equal(1);
    });

    it("emits a defined event for a changed definition: version grows, createdAtMs stays, updatedAtMs moves", () => {
      const state = skuWith({});
      const events = apply(state, decideDefine(state, definition({ priceMinor: 1499 }), T0 + 5000));
      expect(events).to.have.length(1);
      const view = viewSku(state);
      expect(view.def.priceMinor).to.equal(1499);
      expect(view.version).to.equal(2);
      expect(view.createdAtMs).to.equal(T0);
      expect(view.updatedAtMs).to.equal(T0 + 5000);
      // An attribute added is a change too.
      expect(decideDefine(state, definition({ priceMinor: 1499, attributes: [["colour", "red"], ["size", "L"]] }), T0)).to.have.length(1);
    });

    it("answers NOT_FOUND for reads and commands on a SKU that was never defined", () => {
      const state = newSkuState("ghost");
      expect(viewAvailability(state)).to.deep.include({ found: false, onHand: 0, available: 0, version: 0 });
      const commands: (() => unknown)[] = [
        () => viewSku(state),
        () => decideAdjust(state, { locationId: "A", delta: 1, reason: "RECEIVED", key: "" }, T0),
        () => decideReserve(state, { id: "r1", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0),
        () => decideCommit(state, "r1", T0),
        () => decideRelease(state, "r1", T0),
        () => decideFulfil(state, "r1", "s1", 1, T0),
      ];
      for (const command of commands) {
        const error = qmErrorOf(command);
        expect(error.code).to.equal("NOT_FOUND");
        expect(error.metadata).to.deep.equal({ sku_id: "ghost" });
      }
      expect(state.version).to.equal(0);
    });

    it("refuses to turn backorders off while more units are held than on hand, with FAILED_PRECONDITION, changing nothing", () => {
      const state = skuWith({ A: 10 }, { allowBackorder: true });
      reserve(state, "r1", 25);
      const before = fingerprint(state, ["r1"]);
      const error = qmErrorOf(() => decideDefine(state, definition({ allowBackorder: false }), T0 + 1000));
      expect(error.code).to.equal("FAILED_PRECONDITION");
      expect(error.metadata).to.include({ reason: "STOCK_HELD" });
      expect(fingerprint(state, ["r1"])).to.deep.equal(before);
      // Once stock covers the holds, backorders can be turned off.
      adjust(state, { locationId: "A", delta: 15, reason: "RECEIVED", key: "" });
      apply(state, decideDefine(state, definition({ allowBackorder: false }), T0 + 2000));
      expect(viewSku(state).def.allowBackorder).to.equal(false);
    });
  });

  describe("adjust", () => {
    it("adds stock per location and keeps SKU totals, the audit seq and the version in step", () => {
      const state = skuWith({});
      const e1 = adjust(state, { locationId: "A", delta: 100, reason: "RECEIVED", key: "" }, T0 + 1);
      const e2 = adjust(state, { locationId: "B", delta: 50, reason: "RECEIVED", key: "" }, T0 + 2);
      const e3 = adjust(state, { locationId: "A", delta: -7, reason: "DAMAGED", key: "" }, T0 + 3);
      expect(e1).to.deep.equal([{ t: "adjusted", seq: 1, locationId: "A", delta: 100, reason: "RECEIVED", key: "", atMs: T0 + 1 }]);
      expect(e2.map((e) => (e.t === "adjusted" ? e.seq : -1))).to.deep.equal([2]);
      expect(e3.map((e) => (e.t === "adjusted" ? e.seq : -1))).to.deep.equal([3]);
      expect(state.adjustmentSeq).to.equal(3);
      const view = viewSku(state);
      expect(view.levels).to.deep.equal([
        { locationId: "A", onHand: 93, reserved: 0, committed: 0, available: 93 },
        { locationId: "B", onHand: 50, reserved: 0, committed: 0, available: 50 },
      ]);
      expect(totals(state)).to.deep.equal({ onHand: 143, reserved: 0, committed: 0, available: 143 });
      expect(view.version).to.equal(4); // defined + 3 adjustments
      expect(view.updatedAtMs).to.equal(T0 + 3);
    });

    it("answers a repeated idempotency key with the first outcome and emits nothing", () => {
      const state = skuWith({});
      const first = decideAdjust(state, { locationId: "A", delta: 10, reason: "RECEIVED", key: "k1" }, T0);
      expect(first.replay).to.equal(undefined);
      apply(state, first.events);
      adjust(state, { locationId: "A", delta: 5, reason: "RECEIVED", key: "" });
      const retry = decideAdjust(state, { locationId: "A", delta: 10, reason: "RECEIVED", key: "k1" }, T0 + 1000);
      expect(retry.events).to.deep.equal([]);
      // The level as the first call left it, not as it is now (15).
      expect(retry.replay).to.deep.equal({ locationId: "A", onHand: 10, reserved: 0, committed: 0, available: 10 });
      expect(viewLevel(state, "A").onHand).to.equal(15);
      expect(state.adjustmentSeq).to.equal(2);
    });

    it("rejects an idempotency key reused with another delta, location or reason with ALREADY_EXISTS", () => {
      const state = skuWith({});
      adjust(state, { locationId: "A", delta: 10, reason: "RECEIVED", key: "k1" });
      const before = fingerprint(state);
      for (const cmd of [
        { locationId: "A", delta: 11, reason: "RECEIVED", key: "k1" },
        { locationId: "B", delta: 10, reason: "RECEIVED", key: "k1" },
        { locationId: "A", delta: 10, reason: "CORRECTION", key: "k1" },
      ] as const) {
        const error = qmErrorOf(() => decideAdjust(state, cmd, T0));
        expect(error.code).to.equal("ALREADY_EXISTS");
        expect(error.metadata).to.deep.equal({ reason: "IDEMPOTENCY_KEY_REUSED" });
      }
      expect(fingerprint(state)).to.deep.equal(before);
    });

    it("rejects writing stock off below what is reserved plus committed at the location with FAILED_PRECONDITION, changing nothing", () => {
      const state = skuWith({ A: 100, B: 100 });
      reserve(state, "r1", 40, "A");
      apply(state, decideCommit(state, "r1", T0));
      reserve(state, "r2", 30, "A");
      const before = fingerprint(state, ["r1", "r2"]);
      const error = qmErrorOf(() => decideAdjust(state, { locationId: "A", delta: -31, reason: "DAMAGED", key: "k" }, T0));
      expect(error.code).to.equal("FAILED_PRECONDITION");
      expect(error.metadata).to.deep.equal({ reason: "STOCK_HELD", on_hand: "100", held: "70" });
      expect(fingerprint(state, ["r1", "r2"])).to.deep.equal(before);
      // The refused key was not remembered: using it for a smaller write-off works.
      adjust(state, { locationId: "A", delta: -30, reason: "DAMAGED", key: "k" });
      expect(viewLevel(state, "A")).to.deep.equal({ locationId: "A", onHand: 70, reserved: 30, committed: 40, available: 0 });
    });

    it("refuses a location beyond LOCATIONS_PER_SKU_MAX with LIMIT_EXCEEDED but still adjusts existing ones", () => {
      const state = skuWith({});
      for (let i = 0; i < LOCATIONS_PER_SKU_MAX; i++) adjust(state, { locationId: `L${i}`, delta: 1, reason: "RECEIVED", key: "" });
      expect(viewSku(state).levels).to.have.length(LOCATIONS_PER_SKU_MAX);
      const error = qmErrorOf(() => decideAdjust(state, { locationId: "one-too-many", delta: 1, reason: "RECEIVED", key: "" }, T0));
      expect(error.code).to.equal("LIMIT_EXCEEDED");
      adjust(state, { locationId: "L0", delta: 4, reason: "RECEIVED", key: "" });
      expect(viewLevel(state, "L0").onHand).to.equal(5);
      expect(viewSku(state).onHand).to.equal(LOCATIONS_PER_SKU_MAX + 4);
    });

    it("accepts on_hand up to ON_HAND_MAX at a location and refuses one unit more with LIMIT_EXCEEDED", () => {
      const state = skuWith({ A: ON_HAND_MAX - 1 });
      adjust(state, { locationId: "A", delta: 1, reason: "RECEIVED", key: "" });
      expect(viewLevel(state, "A").onHand).to.equal(ON_HAND_MAX);
      expect(qmErrorOf(() => decideAdjust(state, { locationId: "A", delta: 1, reason: "RECEIVED", key: "" }, T0)).code).to.equal(
        "LIMIT_EXCEEDED",
      );
    });

    it("remembers ADJUSTMENT_KEYS_PER_SKU_MAX idempotency keys and forgets the oldest beyond that", () => {
      const state = skuWith({});
      for (let i = 0; i <= ADJUSTMENT_KEYS_PER_SKU_MAX; i++) adjust(state, { locationId: "A", delta: 1, reason: "RECEIVED", key: `k${i}` });
      expect(state.adjustmentKeys?.size).to.equal(ADJUSTMENT_KEYS_PER_SKU_MAX);
      // k1 is still known: replayed, no event.
      expect(decideAdjust(state, { locationId: "A", delta: 1, reason: "RECEIVED", key: "k1" }, T0).events).to.deep.equal([]);
      // k0 was evicted: the same request is applied again.
      expect(decideAdjust(state, { locationId: "A", delta: 1, reason: "RECEIVED", key: "k0" }, T0).events).to.have.length(1);
    });

    it("lets a backorder SKU write stock down to zero while more is held, but not below zero", () => {
      const state = skuWith({ A: 10 }, { allowBackorder: true });
      reserve(state, "r1", 50, "A");
      adjust(state, { locationId: "A", delta: -10, reason: "CYCLE_COUNT", key: "" });
      expect(viewLevel(state, "A")).to.deep.equal({ locationId: "A", onHand: 0, reserved: 50, committed: 0, available: 0 });
      expect(qmErrorOf(() => decideAdjust(state, { locationId: "A", delta: -1, reason: "CYCLE_COUNT", key: "" }, T0)).code).to.equal(
        "FAILED_PRECONDITION",
      );
    });

    it("accepts a receipt at a location that holds more than it has (left by a former backorder SKU)", () => {
      // A backorder SKU may hold units at A beyond A's stock (only the SKU total is
      // limited); after backorders are turned off, A must still be able to receive stock.
      const state = skuWith({ A: 10, B: 100 }, { allowBackorder: true });
      reserve(state, "r1", 50, "A");
      apply(state, decideDefine(state, definition({ allowBackorder: false }), T0 + 1));
      adjust(state, { locationId: "A", delta: 5, reason: "RECEIVED", key: "" }, T0 + 2);
      expect(viewLevel(state, "A")).to.deep.equal({ locationId: "A", onHand: 15, reserved: 50, committed: 0, available: 0 });
      // Writing off at A is still refused: it is all held.
      expect(qmErrorOf(() => decideAdjust(state, { locationId: "A", delta: -1, reason: "DAMAGED", key: "" }, T0 + 3)).code).to.equal(
        "FAILED_PRECONDITION",
      );
    });
  });

  describe("reserve", () => {
    it("reserves exactly the 100 units on hand", () => {
      const state = skuWith({ A: 100 });
      const events = reserve(state, "r1", 100);
      expect(events).to.deep.equal([{ t: "reserved", id: "r1", locationId: "A", quantity: 100, expiresAtMs: T0 + TTL_MS, ttlMs: TTL_MS, atMs: T0 }]);
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 100, committed: 0, available: 0 });
      expect(viewReservation(state, "r1")).to.deep.equal({
        reservationId: "r1",
        skuId: "sku-1",
        locationId: "A",
        quantity: 100,
        state: "RESERVED",
        expiresAtMs: T0 + TTL_MS,
        createdAtMs: T0,
        updatedAtMs: T0,
        fulfilledQuantity: 0,
      });
    });

    it("rejects the 101st unit of 100 with INSUFFICIENT_STOCK naming the 100 available, changing nothing", () => {
      const state = skuWith({ A: 100 });
      const before = fingerprint(state);
      const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 101, locationId: "", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata).to.deep.equal({ sku_id: "sku-1", requested: "101", available: "100" });
      expect(fingerprint(state)).to.deep.equal(before);
      expect(() => viewReservation(state, "r1")).to.throw(QmError);
    });

    it("rejects the 101st unit of 100 at an explicit location with INSUFFICIENT_STOCK naming the 100 available", () => {
      const state = skuWith({ A: 100 });
      const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 101, locationId: "A", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata).to.deep.equal({ sku_id: "sku-1", requested: "101", available: "100" });
    });

    it("rejects the 31st unit once 70 of 100 are reserved, with 30 available", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 70);
      const error = qmErrorOf(() => decideReserve(state, { id: "r2", quantity: 31, locationId: "", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata.available).to.equal("30");
      reserve(state, "r2", 30);
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 100, committed: 0, available: 0 });
    });

    it("holds back safety stock: 90 of 100 with safety 10 are reservable, the 91st is refused with 90 available", () => {
      const state = skuWith({ A: 100 }, { safetyStock: 10, lowStockThreshold: 5 });
      expect(viewSku(state).available).to.equal(90);
      expect(viewSku(state).lowStock).to.equal(false);
      const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 91, locationId: "A", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata.available).to.equal("90");
      reserve(state, "r1", 90);
      const view = viewSku(state);
      expect(view.available).to.equal(0);
      expect(view.lowStock).to.equal(true);
      // The location itself still shows the safety units as free.
      expect(viewLevel(state, "A").available).to.equal(10);
      expect(qmErrorOf(() => decideReserve(state, { id: "r2", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0)).code).to.equal(
        "INSUFFICIENT_STOCK",
      );
    });

    it("without a location picks the location with the most free units, ties to the smallest id", () => {
      const state = skuWith({ A: 30, C: 50, B: 80 });
      expect(reserve(state, "r1", 10)).to.deep.include.members([
        { t: "reserved", id: "r1", locationId: "B", quantity: 10, expiresAtMs: T0 + TTL_MS, ttlMs: TTL_MS, atMs: T0 },
      ]);
      // B has 70 free, C 50, A 30.
      reserve(state, "r2", 60);
      expect(viewReservation(state, "r2").locationId).to.equal("B");
      // Now C 50, A 30, B 10.
      reserve(state, "r3", 20);
      expect(viewReservation(state, "r3").locationId).to.equal("C");
      // C 30 and A 30 tie: A wins.
      reserve(state, "r4", 1);
      expect(viewReservation(state, "r4").locationId).to.equal("A");
      expect(viewSku(state).levels.map((l) => [l.locationId, l.reserved])).to.deep.equal([
        ["A", 1],
        ["B", 70],
        ["C", 20],
      ]);
    });

    it("without a location refuses a quantity no single location holds, even if the SKU total does, naming the largest", () => {
      const state = skuWith({ A: 60, B: 50 });
      const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 70, locationId: "", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata.available).to.equal("60");
    });

    it("at an explicit location refuses more than that location has even though another location has enough", () => {
      const state = skuWith({ A: 5, B: 100 });
      const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 10, locationId: "A", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata.available).to.equal("5");
      expect(totals(state).reserved).to.equal(0);
    });

    it("refuses a location the SKU has no stock record for with INSUFFICIENT_STOCK and 0 available", () => {
      const state = skuWith({ A: 100 });
      const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 1, locationId: "Z", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata.available).to.equal("0");
    });

    it("answers a retry with the same id and quantity with the same reservation and no events, even after it ended", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 10);
      const before = fingerprint(state, ["r1"]);
      expect(decideReserve(state, { id: "r1", quantity: 10, locationId: "", ttlMs: TTL_MS }, T0 + 5000)).to.deep.equal([]);
      expect(decideReserve(state, { id: "r1", quantity: 10, locationId: "A", ttlMs: TTL_MS }, T0 + 5000)).to.deep.equal([]);
      expect(fingerprint(state, ["r1"])).to.deep.equal(before);
      apply(state, decideRelease(state, "r1", T0 + 6000));
      // The released id does not make a new hold.
      expect(decideReserve(state, { id: "r1", quantity: 10, locationId: "", ttlMs: TTL_MS }, T0 + 7000)).to.deep.equal([]);
      expect(viewReservation(state, "r1").state).to.equal("RELEASED");
      expect(totals(state).reserved).to.equal(0);
    });

    it("rejects a known id with another quantity or another explicit location with ALREADY_EXISTS", () => {
      const state = skuWith({ A: 100, B: 100 });
      reserve(state, "r1", 10, "A");
      for (const cmd of [
        { id: "r1", quantity: 11, locationId: "", ttlMs: TTL_MS },
        { id: "r1", quantity: 10, locationId: "B", ttlMs: TTL_MS },
      ]) {
        const error = qmErrorOf(() => decideReserve(state, cmd, T0));
        expect(error.code).to.equal("ALREADY_EXISTS");
        expect(error.metadata).to.deep.equal({ reason: "IDEMPOTENCY_KEY_REUSED" });
      }
      expect(totals(state).reserved).to.equal(10);
    });

    it("answers NOT_FOUND for an unknown SKU", () => {
      const error = qmErrorOf(() => decideReserve(newSkuState("nope"), { id: "r1", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("NOT_FOUND");
      expect(error.metadata).to.deep.equal({ sku_id: "nope" });
    });

    it("answers NOT_FOUND for a reservation id the SKU does not know", () => {
      const state = skuWith({ A: 1 });
      for (const fn of [
        () => viewReservation(state, "nope"),
        () => decideCommit(state, "nope", T0),
        () => decideRelease(state, "nope", T0),
        () => decideFulfil(state, "nope", "s1", 1, T0),
        () => decideUnfulfil(state, "nope", "s1", T0),
      ]) {
        const error = qmErrorOf(fn);
        expect(error.code).to.equal("NOT_FOUND");
        expect(error.metadata).to.deep.equal({ reservation_id: "nope" });
      }
    });
  });

  describe("backorder", () => {
    it("lets a backorder SKU reserve beyond on-hand up to BACKORDER_UNITS_MAX and refuses one unit more", () => {
      const state = skuWith({ A: 10 }, { allowBackorder: true });
      reserve(state, "r1", 10 + BACKORDER_UNITS_MAX);
      expect(totals(state)).to.deep.equal({ onHand: 10, reserved: 10 + BACKORDER_UNITS_MAX, committed: 0, available: 0 });
      expect(viewLevel(state, "A").available).to.equal(0);
      const error = qmErrorOf(() => decideReserve(state, { id: "r2", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0));
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata.available).to.equal("0");
      // Receiving stock makes room again, unit for unit.
      adjust(state, { locationId: "A", delta: 3, reason: "RECEIVED", key: "" });
      reserve(state, "r2", 3);
      expect(totals(state).reserved).to.equal(13 + BACKORDER_UNITS_MAX);
    });

    it("still holds back safety stock on a backorder SKU", () => {
      const state = skuWith({ A: 10 }, { allowBackorder: true, safetyStock: 4 });
      const error = qmErrorOf(() =>
        decideReserve(state, { id: "r1", quantity: 7 + BACKORDER_UNITS_MAX, locationId: "", ttlMs: TTL_MS }, T0),
      );
      expect(error.code).to.equal("INSUFFICIENT_STOCK");
      expect(error.metadata.available).to.equal(String(6 + BACKORDER_UNITS_MAX));
    });
  });

  describe("commit, release and expiry", () => {
    it("commit moves the units from reserved to committed and ends the expiry", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 30);
      const events = apply(state, decideCommit(state, "r1", T0 + 1000));
      expect(events).to.deep.equal([{ t: "committed", id: "r1", atMs: T0 + 1000 }]);
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 0, committed: 30, available: 70 });
      expect(viewLevel(state, "A")).to.deep.equal({ locationId: "A", onHand: 100, reserved: 0, committed: 30, available: 70 });
      expect(viewReservation(state, "r1")).to.deep.include({ state: "COMMITTED", expiresAtMs: null, updatedAtMs: T0 + 1000 });
      expect(nextExpiryMs(state)).to.equal(null);
      // Committed units never expire.
      expect(decideExpiries(state, T0 + 10 * TTL_MS, 100)).to.deep.equal([]);
    });

    it("answers a second commit with no events", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 30);
      apply(state, decideCommit(state, "r1", T0));
      expect(decideCommit(state, "r1", T0 + 1)).to.deep.equal([]);
      expect(totals(state).committed).to.equal(30);
    });

    it("releasing a held reservation returns its units", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 30);
      expect(apply(state, decideRelease(state, "r1", T0 + 1))).to.deep.equal([{ t: "released", id: "r1", atMs: T0 + 1 }]);
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 0, committed: 0, available: 100 });
      expect(viewReservation(state, "r1")).to.deep.include({ state: "RELEASED", expiresAtMs: null });
      expect(nextExpiryMs(state)).to.equal(null);
    });

    it("releasing a committed reservation returns its units", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 30);
      apply(state, decideCommit(state, "r1", T0));
      apply(state, decideRelease(state, "r1", T0 + 1));
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 0, committed: 0, available: 100 });
      expect(viewReservation(state, "r1").state).to.equal("RELEASED");
    });

    it("commit of a hold whose expiry has come emits expired instead, and its units come back", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 30);
      reserve(state, "r2", 30);
      // One millisecond before the expiry the commit goes through.
      expect(decideCommit(state, "r2", T0 + TTL_MS - 1)).to.deep.equal([{ t: "committed", id: "r2", atMs: T0 + TTL_MS - 1 }]);
      const events = apply(state, decideCommit(state, "r1", T0 + TTL_MS));
      expect(events).to.deep.equal([{ t: "expired", id: "r1", atMs: T0 + TTL_MS }]);
      expect(viewReservation(state, "r1").state).to.equal("EXPIRED");
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 30, committed: 0, available: 70 });
      const error = qmErrorOf(() => decideCommit(state, "r1", T0 + TTL_MS));
      expect(error.code).to.equal("ILLEGAL_TRANSITION");
      expect(error.metadata).to.deep.equal({ state: "EXPIRED", action: "commit" });
    });

    it("commit of a released reservation is an ILLEGAL_TRANSITION naming RELEASED", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 30);
      apply(state, decideRelease(state, "r1", T0));
      const error = qmErrorOf(() => decideCommit(state, "r1", T0));
      expect(error.code).to.equal("ILLEGAL_TRANSITION");
      expect(error.metadata).to.deep.equal({ state: "RELEASED", action: "commit" });
    });

    it("release of a released or expired reservation is a no-op", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 30);
      reserve(state, "r2", 30, "", T0, 1000);
      apply(state, decideRelease(state, "r1", T0));
      apply(state, decideExpiries(state, T0 + 1000, 10));
      expect(viewReservation(state, "r2").state).to.equal("EXPIRED");
      const version = state.version;
      expect(decideRelease(state, "r1", T0 + 2000)).to.deep.equal([]);
      expect(decideRelease(state, "r2", T0 + 2000)).to.deep.equal([]);
      expect(state.version).to.equal(version);
      expect(totals(state).reserved).to.equal(0);
    });

    it("refuses to release a FULFILLED reservation, or a committed one with units shipped, with ILLEGAL_TRANSITION", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 10);
      reserve(state, "r2", 10);
      apply(state, decideCommit(state, "r1", T0));
      apply(state, decideCommit(state, "r2", T0));
      apply(state, decideFulfil(state, "r1", "s1", 10, T0));
      apply(state, decideFulfil(state, "r2", "s1", 4, T0));
      const fulfilled = qmErrorOf(() => decideRelease(state, "r1", T0));
      expect(fulfilled.code).to.equal("ILLEGAL_TRANSITION");
      expect(fulfilled.metadata.state).to.equal("FULFILLED");
      const partly = qmErrorOf(() => decideRelease(state, "r2", T0));
      expect(partly.code).to.equal("ILLEGAL_TRANSITION");
      expect(partly.metadata.state).to.equal("COMMITTED");
      expect(totals(state)).to.deep.equal({ onHand: 86, reserved: 0, committed: 6, available: 80 });
    });
  });

  describe("decideExpiries and nextExpiryMs", () => {
    function withHolds(): SkuState {
      const state = skuWith({ A: 100 });
      reserve(state, "r30", 1, "", T0, 30_000);
      reserve(state, "r10", 2, "", T0, 10_000);
      reserve(state, "r20", 3, "", T0, 20_000);
      reserve(state, "r60", 4, "", T0, 60_000);
      return state;
    }

    it("expires exactly the holds that are due, earliest first", () => {
      const state = withHolds();
      expect(nextExpiryMs(state)).to.equal(T0 + 10_000);
      // Not yet due one millisecond before.
      expect(decideExpiries(state, T0 + 9_999, 100)).to.deep.equal([]);
      const events = apply(state, decideExpiries(state, T0 + 20_000, 100));
      expect(events).to.deep.equal([
        { t: "expired", id: "r10", atMs: T0 + 20_000 },
        { t: "expired", id: "r20", atMs: T0 + 20_000 },
      ]);
      expect(viewReservation(state, "r10").state).to.equal("EXPIRED");
      expect(viewReservation(state, "r20").state).to.equal("EXPIRED");
      expect(viewReservation(state, "r30").state).to.equal("RESERVED");
      expect(viewReservation(state, "r60").state).to.equal("RESERVED");
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 5, committed: 0, available: 95 });
      expect(nextExpiryMs(state)).to.equal(T0 + 30_000);
    });

    it("emits at most max expiries per call, earliest first, and the next call takes the rest", () => {
      const state = withHolds();
      const first = apply(state, decideExpiries(state, T0 + 60_000, 2));
      expect(first.map((e) => (e.t === "expired" ? e.id : ""))).to.deep.equal(["r10", "r20"]);
      expect(nextExpiryMs(state)).to.equal(T0 + 30_000);
      const rest = apply(state, decideExpiries(state, T0 + 60_000, 2));
      expect(rest.map((e) => (e.t === "expired" ? e.id : ""))).to.deep.equal(["r30", "r60"]);
      expect(decideExpiries(state, T0 + 60_000, 2)).to.deep.equal([]);
      expect(nextExpiryMs(state)).to.equal(null);
      expect(totals(state).reserved).to.equal(0);
    });

    it("nextExpiryMs and decideExpiries skip holds that were committed or released since", () => {
      const state = withHolds();
      apply(state, decideCommit(state, "r10", T0 + 1));
      apply(state, decideRelease(state, "r20", T0 + 2));
      expect(nextExpiryMs(state)).to.equal(T0 + 30_000);
      expect(decideExpiries(state, T0 + 29_999, 100)).to.deep.equal([]);
      const events = apply(state, decideExpiries(state, T0 + 30_000, 100));
      expect(events).to.deep.equal([{ t: "expired", id: "r30", atMs: T0 + 30_000 }]);
      expect(viewReservation(state, "r10").state).to.equal("COMMITTED");
      expect(viewReservation(state, "r20").state).to.equal("RELEASED");
      apply(state, decideRelease(state, "r60", T0 + 31_000));
      expect(nextExpiryMs(state)).to.equal(null);
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 0, committed: 2, available: 98 });
    });
  });

  describe("fulfil and unfulfil", () => {
    function committed(quantity: number): SkuState {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", quantity);
      apply(state, decideCommit(state, "r1", T0));
      return state;
    }

    it("ships part, then the rest: FULFILLED, with on_hand and committed down by the units shipped", () => {
      const state = committed(10);
      const first = apply(state, decideFulfil(state, "r1", "s1", 4, T0 + 1));
      expect(first).to.deep.equal([{ t: "fulfilled", id: "r1", shipmentId: "s1", quantity: 4, atMs: T0 + 1 }]);
      expect(viewReservation(state, "r1")).to.deep.include({ state: "COMMITTED", fulfilledQuantity: 4 });
      expect(totals(state)).to.deep.equal({ onHand: 96, reserved: 0, committed: 6, available: 90 });
      apply(state, decideFulfil(state, "r1", "s2", 6, T0 + 2));
      expect(viewReservation(state, "r1")).to.deep.include({ state: "FULFILLED", fulfilledQuantity: 10, updatedAtMs: T0 + 2 });
      expect(totals(state)).to.deep.equal({ onHand: 90, reserved: 0, committed: 0, available: 90 });
      expect(viewLevel(state, "A")).to.deep.equal({ locationId: "A", onHand: 90, reserved: 0, committed: 0, available: 90 });
      // Nothing more to ship.
      expect(qmErrorOf(() => decideFulfil(state, "r1", "s3", 1, T0)).code).to.equal("ILLEGAL_TRANSITION");
      expect(decideCommit(state, "r1", T0)).to.deep.equal([]);
    });

    it("refuses to ship more than the reservation has left with FAILED_PRECONDITION", () => {
      const state = committed(10);
      apply(state, decideFulfil(state, "r1", "s1", 4, T0));
      const error = qmErrorOf(() => decideFulfil(state, "r1", "s2", 7, T0));
      expect(error.code).to.equal("FAILED_PRECONDITION");
      expect(totals(state)).to.deep.equal({ onHand: 96, reserved: 0, committed: 6, available: 90 });
    });

    it("refuses to ship a hold that is not committed with ILLEGAL_TRANSITION naming RESERVED", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "r1", 10);
      const error = qmErrorOf(() => decideFulfil(state, "r1", "s1", 1, T0));
      expect(error.code).to.equal("ILLEGAL_TRANSITION");
      expect(error.metadata).to.deep.equal({ state: "RESERVED", action: "fulfil" });
    });

    it("is idempotent per shipment id: the same shipment again emits nothing and changes nothing", () => {
      const state = committed(10);
      apply(state, decideFulfil(state, "r1", "s1", 4, T0));
      const before = fingerprint(state, ["r1"]);
      expect(decideFulfil(state, "r1", "s1", 4, T0 + 1)).to.deep.equal([]);
      expect(fingerprint(state, ["r1"])).to.deep.equal(before);
      apply(state, decideFulfil(state, "r1", "s2", 6, T0));
      // Also once the reservation is FULFILLED.
      expect(decideFulfil(state, "r1", "s2", 6, T0 + 1)).to.deep.equal([]);
    });

    it("unfulfil restores on_hand and committed and reopens a FULFILLED reservation as COMMITTED", () => {
      const state = committed(10);
      apply(state, decideFulfil(state, "r1", "s1", 4, T0));
      apply(state, decideFulfil(state, "r1", "s2", 6, T0));
      expect(viewReservation(state, "r1").state).to.equal("FULFILLED");
      const events = apply(state, decideUnfulfil(state, "r1", "s2", T0 + 5));
      expect(events).to.deep.equal([{ t: "unfulfilled", id: "r1", shipmentId: "s2", atMs: T0 + 5 }]);
      expect(viewReservation(state, "r1")).to.deep.include({ state: "COMMITTED", fulfilledQuantity: 4 });
      expect(totals(state)).to.deep.equal({ onHand: 96, reserved: 0, committed: 6, available: 90 });
      // Again: nothing left to undo for s2, and an unknown shipment is nothing to undo either.
      expect(decideUnfulfil(state, "r1", "s2", T0)).to.deep.equal([]);
      expect(decideUnfulfil(state, "r1", "never", T0)).to.deep.equal([]);
      apply(state, decideUnfulfil(state, "r1", "s1", T0 + 6));
      expect(totals(state)).to.deep.equal({ onHand: 100, reserved: 0, committed: 10, available: 90 });
      // With nothing shipped the reservation may be released again, and s2 may ship again.
      expect(decideRelease(state, "r1", T0 + 7)).to.have.length(1);
      apply(state, decideFulfil(state, "r1", "s2", 10, T0 + 8));
      expect(viewReservation(state, "r1").state).to.equal("FULFILLED");
      expect(totals(state)).to.deep.equal({ onHand: 90, reserved: 0, committed: 0, available: 90 });
    });
  });

  describe("ended reservation memory", () => {
    it(`remembers ENDED_RESERVATIONS_PER_SKU_MAX (${ENDED_RESERVATIONS_PER_SKU_MAX}) ended reservations and forgets the oldest beyond`, function () {
      this.timeout(20_000);
      const state = skuWith({ A: 10 });
      for (let i = 0; i <= ENDED_RESERVATIONS_PER_SKU_MAX; i++) {
        reserve(state, `r${i}`, 1);
        apply(state, decideRelease(state, `r${i}`, T0));
      }
      expect(state.ended?.size).to.equal(ENDED_RESERVATIONS_PER_SKU_MAX);
      expect(state.live.size).to.equal(0);
      // The second oldest is still answered as it ended...
      expect(viewReservation(state, "r1").state).to.equal("RELEASED");
      expect(decideReserve(state, { id: "r1", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0)).to.deep.equal([]);
      // ...the oldest is forgotten: its id would make a new hold.
      expect(qmErrorOf(() => viewReservation(state, "r0")).code).to.equal("NOT_FOUND");
      expect(decideReserve(state, { id: "r0", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0)).to.have.length(1);
      expect(totals(state)).to.deep.equal({ onHand: 10, reserved: 0, committed: 0, available: 10 });
    });
  });

  describe("snapshots", () => {
    /** As the journal stores it: msgpack bytes, so nothing is shared with the live state. */
    function roundTrip(state: SkuState): SkuState {
      return skuFromSnapshot(state.skuId, unpack(pack(skuToSnapshot(state))) as SkuSnapshot);
    }

    it("takes a snapshot that later turns cannot change: the journal may serialise it after they ran", () => {
      const state = skuWith({ A: 100 });
      reserve(state, "before", 3, "A");
      const snapshot = skuToSnapshot(state);
      const afterEvents = reserve(state, "after", 2, "A", T0 + 1);
      // Recovery: the snapshot (packed only now), then the events after it.
      const recovered = skuFromSnapshot(state.skuId, unpack(pack(snapshot)) as SkuSnapshot);
      apply(recovered, afterEvents);
      expect([recovered.reserved, recovered.live.size]).to.deep.equal([5, 2]);
      expect(viewSku(recovered)).to.deep.equal(viewSku(state));
    });

    /** A state with every kind of record: levels, holds, commits, partial and full shipments, ended ones, keys. */
    function richState(): SkuState {
      const state = skuWith({ A: 100, B: 40 }, { safetyStock: 5 });
      adjust(state, { locationId: "B", delta: 10, reason: "RECEIVED", key: "k-b" }, T0 + 1);
      reserve(state, "held-late", 10, "A", T0 + 2, 90_000);
      reserve(state, "held-early", 5, "B", T0 + 3, 20_000);
      reserve(state, "committed", 20, "A", T0 + 4);
      apply(state, decideCommit(state, "committed", T0 + 5));
      apply(state, decideFulfil(state, "committed", "s1", 8, T0 + 6));
      reserve(state, "shipped", 3, "B", T0 + 7);
      apply(state, decideCommit(state, "shipped", T0 + 8));
      apply(state, decideFulfil(state, "shipped", "s1", 3, T0 + 9));
      reserve(state, "released", 4, "A", T0 + 10, 5_000);
      apply(state, decideRelease(state, "released", T0 + 11));
      reserve(state, "expired", 2, "A", T0 + 12, 1_000);
      apply(state, decideExpiries(state, T0 + 2_000, 10));
      return state;
    }
    const IDS = ["held-late", "held-early", "committed", "shipped", "released", "expired"];

    it("restores a state with equal views, the same next expiry, weight and adjustment replays", () => {
      const state = richState();
      const restored = roundTrip(state);
      expect(viewSku(restored)).to.deep.equal(viewSku(state));
      expect(viewAvailability(restored)).to.deep.equal(viewAvailability(state));
      for (const id of IDS) expect(viewReservation(restored, id)).to.deep.equal(viewReservation(state, id));
      expect(nextExpiryMs(restored)).to.equal(T0 + 3 + 20_000);
      expect(nextExpiryMs(restored)).to.equal(nextExpiryMs(state));
      expect(skuWeight(restored)).to.equal(skuWeight(state));
      expect(restored.adjustmentSeq).to.equal(state.adjustmentSeq);
      const retry: AdjustCommand = { locationId: "B", delta: 10, reason: "RECEIVED", key: "k-b" };
      expect(decideAdjust(restored, retry, T0).replay).to.deep.equal(decideAdjust(state, retry, T0).replay);
      expect(totals(restored)).to.deep.equal({ onHand: 139, reserved: 15, committed: 12, available: 107 });
    });

    it("a restored state decides and applies further commands exactly as the original", () => {
      const state = richState();
      const restored = roundTrip(state);
      const steps: ((s: SkuState) => SkuEvent[])[] = [
        (s) => decideExpiries(s, T0 + 30_000, 10),
        (s) => decideReserve(s, { id: "held-late", quantity: 10, locationId: "", ttlMs: 90_000 }, T0 + 30_001),
        (s) => decideReserve(s, { id: "new", quantity: 30, locationId: "", ttlMs: TTL_MS }, T0 + 30_002),
        (s) => decideCommit(s, "held-late", T0 + 30_003),
        (s) => decideFulfil(s, "committed", "s2", 12, T0 + 30_004),
        (s) => decideUnfulfil(s, "shipped", "s1", T0 + 30_005),
        (s) => decideAdjust(s, { locationId: "C", delta: 7, reason: "RECEIVED", key: "k-c" }, T0 + 30_006).events,
        (s) => decideExpiries(s, T0 + 200_000, 10),
      ];
      for (const step of steps) {
        const a = apply(state, step(state));
        const b = apply(restored, step(restored));
        expect(b).to.deep.equal(a);
        expect(viewSku(restored)).to.deep.equal(viewSku(state));
        expect(nextExpiryMs(restored)).to.equal(nextExpiryMs(state));
      }
      for (const id of [...IDS, "new"]) expect(viewReservation(restored, id)).to.deep.equal(viewReservation(state, id));
      expect(viewReservation(state, "new").state).to.equal("EXPIRED");
      expect(viewReservation(state, "committed").state).to.equal("FULFILLED");
      expect(viewReservation(state, "shipped").state).to.equal("COMMITTED");
    });

    it("stores each reservation as a tuple, in fewer bytes than the object form it replaced", () => {
      const state = skuWith({ A: 10_000 });
      for (let i = 0; i < 1_000; i++) reserve(state, `hold-${i}`, 1, "A", T0 + i);
      const snapshot = skuToSnapshot(state);
      expect(snapshot.live[0]).to.deep.equal(["hold-0", "A", 1, TTL_MS, "RESERVED", T0 + TTL_MS, T0, T0, 0, []]);
      const asObjects = {
        ...snapshot,
        live: [...state.live.values()].map((r) => ({ ...r, shipped: [] })),
      };
      // 1,000 holds: about 60 bytes each as tuples, about 150 as objects.
      expect(pack(snapshot).length).to.be.below(70_000);
      expect(pack(asObjects).length).to.be.above(140_000);
      expect(viewSku(roundTrip(state))).to.deep.equal(viewSku(state));
    });

    it("reads snapshots written with reservations as objects (the earlier form), with shipments as entries or an object", () => {
      // Written out as the previous release stored them: levels, a RESERVED hold, a COMMITTED one
      // partly shipped (entries), an ended one shipped in full (an object, and no TTL: older still).
      const earlier = {
        def: definition(),
        createdAtMs: T0,
        updatedAtMs: T0 + 9,
        version: 7,
        levels: [["A", { onHand: 92, reserved: 5, committed: 12 }]],
        live: [
          { id: "held", locationId: "A", quantity: 5, ttlMs: 30_000, status: "RESERVED", expiresAtMs: T0 + 30_001, createdAtMs: T0 + 1, updatedAtMs: T0 + 1, shipped: [], fulfilled: 0 },
          { id: "part", locationId: "A", quantity: 20, ttlMs: TTL_MS, status: "COMMITTED", expiresAtMs: null, createdAtMs: T0 + 2, updatedAtMs: T0 + 4, shipped: [["s1", 8]], fulfilled: 8 },
        ],
        ended: [{ id: "done", locationId: "A", quantity: 3, status: "FULFILLED", expiresAtMs: null, createdAtMs: T0 + 5, updatedAtMs: T0 + 9, shipped: { s2: 3 }, fulfilled: 3 }],
        adjustmentSeq: 1,
        adjustmentKeys: [],
      };
      const restored = skuFromSnapshot("sku-1", unpack(pack(earlier)) as SkuSnapshot);
      expect(totals(restored)).to.deep.equal({ onHand: 92, reserved: 5, committed: 12, available: 75 });
      expect(viewReservation(restored, "held")).to.deep.include({ state: "RESERVED", quantity: 5, expiresAtMs: T0 + 30_001 });
      expect(viewReservation(restored, "part")).to.deep.include({ state: "COMMITTED", fulfilledQuantity: 8 });
      expect(viewReservation(restored, "done")).to.deep.include({ state: "FULFILLED", fulfilledQuantity: 3 });
      expect(nextExpiryMs(restored)).to.equal(T0 + 30_001);
      // Shipments restored: a repeated one is a no-op, an undo gives its units back, a new one ships.
      expect(decideFulfil(restored, "part", "s1", 8, T0 + 10)).to.deep.equal([]);
      expect(decideUnfulfil(restored, "done", "s2", T0 + 10)).to.have.length(1);
      expect(apply(restored, decideFulfil(restored, "part", "s3", 12, T0 + 11))).to.have.length(1);
      expect(viewReservation(restored, "part").state).to.equal("FULFILLED");
      // The retried hold with its recorded TTL is the same request; another TTL is not.
      expect(decideReserve(restored, { id: "held", quantity: 5, locationId: "", ttlMs: 30_000 }, T0 + 12)).to.deep.equal([]);
      expect(qmErrorOf(() => decideReserve(restored, { id: "held", quantity: 5, locationId: "", ttlMs: 1_000 }, T0 + 12)).code).to.equal("ALREADY_EXISTS");
    });
  });
});
