// UpsertSku as a patch, backorder pre-orders before any stock, reservation TTL
// idempotency, attributes without special keys, and the bounded expiry heap.

import { expect } from "chai";
import { pack, unpack } from "msgpackr";
import { ATTRIBUTES_MAX, BACKORDER_UNITS_MAX, STALE_EXPIRIES_SLACK } from "../../src/limits";
import {
  applySkuEvent,
  BACKORDER_DEFAULT_LOCATION_ID,
  decideAdjust,
  decideCommit,
  decideDefine,
  decideExpiries,
  decideFulfil,
  decideRelease,
  decideReserve,
  newSkuState,
  type SkuDefinition,
  type SkuEvent,
  type SkuPatch,
  type SkuSnapshot,
  type SkuState,
  skuFromSnapshot,
  skuToSnapshot,
  viewReservation,
  viewSku,
} from "../../src/domain/sku";
import { qmErrorOf } from "../support/qm_error";

const T0 = 1_700_000_000_000;
const TTL_MS = 60_000;

function apply(state: SkuState, events: readonly SkuEvent[]): SkuEvent[] {
  for (const e of events) applySkuEvent(state, e);
  return [...events];
}

function define(state: SkuState, patch: SkuPatch, nowMs = T0): SkuEvent[] {
  return apply(state, decideDefine(state, patch, nowMs));
}

const MUG: SkuPatch = { title: "Blue mug", currency: "EUR", priceMinor: 1299, lowStockThreshold: 5, attributes: [["colour", "blue"]] };

function receive(state: SkuState, locationId: string, units: number, nowMs = T0): void {
  apply(state, decideAdjust(state, { locationId, delta: units, reason: "RECEIVED", key: "" }, nowMs).events);
}

function reserve(state: SkuState, id: string, quantity: number, locationId = "", nowMs = T0, ttlMs = TTL_MS): SkuEvent[] {
  return apply(state, decideReserve(state, { id, quantity, locationId, ttlMs }, nowMs));
}

describe("UpsertSku as a patch", () => {
  it("creates with defaults for every field not given", () => {
    const state = newSkuState("SKU-1");
    define(state, { title: "Blue mug", currency: "EUR" });
    expect(viewSku(state).def).to.deep.equal({
      title: "Blue mug",
      currency: "EUR",
      priceMinor: 0,
      safetyStock: 0,
      lowStockThreshold: 0,
      allowBackorder: false,
      attributes: [],
    });
  });

  it("refuses to create a SKU without title and currency with INVALID_ARGUMENT naming both, and creates nothing", () => {
    const state = newSkuState("SKU-1");
    const error = qmErrorOf(() => decideDefine(state, { priceMinor: 5 }, T0));
    expect(error.code).to.equal("INVALID_ARGUMENT");
    expect(error.violations.map((v) => v.field)).to.deep.equal(["title", "currency"]);
    expect(state.def).to.equal(null);
  });

  it("renames without resetting price, low-stock threshold, safety stock, backorder or attributes", () => {
    const state = newSkuState("SKU-1");
    define(state, { ...MUG, safetyStock: 2, allowBackorder: true });
    define(state, { title: "Blue mug v2", currency: "EUR" }, T0 + 1);
    expect(viewSku(state).def).to.deep.equal({
      title: "Blue mug v2",
      currency: "EUR",
      priceMinor: 1299,
      safetyStock: 2,
      lowStockThreshold: 5,
      allowBackorder: true,
      attributes: [["colour", "blue"]],
    });
  });

  it("renames a backorder SKU that holds more than it has, which a full replacement without backorder refuses", () => {
    const state = newSkuState("BO-1");
    define(state, { title: "Pre-order", currency: "EUR", allowBackorder: true });
    reserve(state, "pre-1", 10);
    define(state, { title: "Pre-order, v2" }, T0 + 1);
    expect(viewSku(state).def.title).to.equal("Pre-order, v2");
    const full: SkuDefinition = { title: "x", currency: "EUR", priceMinor: 0, safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
    expect(qmErrorOf(() => decideDefine(state, full, T0 + 2)).code).to.equal("FAILED_PRECONDITION");
  });

  it("emits nothing and keeps the version when the patch changes nothing", () => {
    const state = newSkuState("SKU-1");
    define(state, MUG);
    expect(decideDefine(state, { title: "Blue mug", priceMinor: 1299 }, T0 + 1)).to.deep.equal([]);
    expect(decideDefine(state, {}, T0 + 1)).to.deep.equal([]);
    expect(viewSku(state).version).to.equal(1);
  });

  it("sets and removes single attribute keys and keeps the others; a list replaces them all", () => {
    const state = newSkuState("SKU-1");
    define(state, { ...MUG, attributes: [["colour", "blue"], ["size", "L"]] });
    define(state, { attributes: { set: [["material", "stoneware"]], remove: ["size"] } }, T0 + 1);
    expect(viewSku(state).def.attributes).to.deep.equal([["colour", "blue"], ["material", "stoneware"]]);
    define(state, { attributes: [["only", "this"]] }, T0 + 2);
    expect(viewSku(state).def.attributes).to.deep.equal([["only", "this"]]);
  });

  it(`refuses per-key edits that would leave more than ${ATTRIBUTES_MAX} attributes, naming attributes`, () => {
    const state = newSkuState("SKU-1");
    define(state, { ...MUG, attributes: Array.from({ length: ATTRIBUTES_MAX }, (_, i) => [`k${i}`, "v"] as const) });
    const error = qmErrorOf(() => decideDefine(state, { attributes: { set: [["one-more", "v"]], remove: [] } }, T0 + 1));
    expect(error.code).to.equal("INVALID_ARGUMENT");
    expect(error.violations.map((v) => v.field)).to.deep.equal(["attributes"]);
  });

  it("keeps an attribute named __proto__, counts a change of its value, and keeps it through a msgpack snapshot and event", () => {
    const state = newSkuState("SKU-1");
    const events = define(state, { ...MUG, attributes: [["__proto__", "a"]] });
    expect(viewSku(state).def.attributes).to.deep.equal([["__proto__", "a"]]);
    expect(define(state, { attributes: [["__proto__", "b"]] }, T0 + 1)).to.have.length(1);
    expect(viewSku(state).version).to.equal(2);
    const restored = skuFromSnapshot("SKU-1", unpack(pack(skuToSnapshot(state))) as SkuSnapshot);
    expect(viewSku(restored).def.attributes).to.deep.equal([["__proto__", "b"]]);
    const replayed = newSkuState("SKU-1");
    apply(replayed, unpack(pack(events)) as SkuEvent[]);
    expect(viewSku(replayed).def.attributes).to.deep.equal([["__proto__", "a"]]);
  });

  it("reads a definition journalled with attributes as an object (the earlier form) as sorted pairs", () => {
    const state = newSkuState("SKU-1");
    const legacy = { ...MUG, priceMinor: 1, safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: { size: "L", colour: "red" } };
    applySkuEvent(state, { t: "defined", def: legacy as unknown as SkuDefinition, atMs: T0 });
    expect(viewSku(state).def.attributes).to.deep.equal([["colour", "red"], ["size", "L"]]);
  });
});

describe("backorder SKUs before the first delivery", () => {
  function preorderSku(): SkuState {
    const state = newSkuState("BO-1");
    define(state, { title: "Pre-order", currency: "EUR", allowBackorder: true });
    return state;
  }

  it("reserves at the default location when no location is named and none exists", () => {
    const state = preorderSku();
    reserve(state, "pre-1", 10);
    expect(viewReservation(state, "pre-1")).to.deep.include({ locationId: BACKORDER_DEFAULT_LOCATION_ID, quantity: 10, state: "RESERVED" });
    expect(viewSku(state)).to.deep.include({ onHand: 0, reserved: 10, available: 0 });
  });

  it("reserves at a named location that has received nothing yet", () => {
    const state = preorderSku();
    reserve(state, "pre-1", 10, "WH1");
    expect(viewReservation(state, "pre-1").locationId).to.equal("WH1");
    expect(viewSku(state).levels).to.deep.equal([{ locationId: "WH1", onHand: 0, reserved: 10, committed: 0, available: 0 }]);
  });

  it(`reserves up to the backorder limit of ${BACKORDER_UNITS_MAX} and refuses one unit more`, () => {
    const state = preorderSku();
    reserve(state, "pre-1", BACKORDER_UNITS_MAX);
    const error = qmErrorOf(() => decideReserve(state, { id: "pre-2", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0));
    expect(error.code).to.equal("INSUFFICIENT_STOCK");
    expect(error.metadata.available).to.equal("0");
  });

  it("commits a pre-order, refuses to ship it before stock arrives, ships it after, and keeps reserved + committed <= on_hand + allowance", () => {
    const state = preorderSku();
    reserve(state, "pre-1", 10, "WH1");
    apply(state, decideCommit(state, "pre-1", T0 + 1));
    expect(viewSku(state)).to.deep.include({ onHand: 0, reserved: 0, committed: 10 });
    expect(qmErrorOf(() => decideFulfil(state, "pre-1", "s1", 10, T0 + 2)).code).to.equal("INSUFFICIENT_STOCK");
    // A write-off below zero is refused; a receipt is not.
    expect(qmErrorOf(() => decideAdjust(state, { locationId: "WH1", delta: -1, reason: "DAMAGED", key: "" }, T0 + 3)).code).to.equal(
      "FAILED_PRECONDITION",
    );
    receive(state, "WH1", 4, T0 + 4);
    apply(state, decideFulfil(state, "pre-1", "s1", 4, T0 + 5));
    receive(state, "WH1", 6, T0 + 6);
    apply(state, decideFulfil(state, "pre-1", "s2", 6, T0 + 7));
    expect(viewReservation(state, "pre-1")).to.deep.include({ state: "FULFILLED", fulfilledQuantity: 10 });
    expect(viewSku(state)).to.deep.include({ onHand: 0, reserved: 0, committed: 0 });
  });

  it("still refuses a SKU without backorder and without stock, with 0 available", () => {
    const state = newSkuState("SKU-1");
    define(state, { title: "Mug", currency: "EUR" });
    const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0));
    expect(error.code).to.equal("INSUFFICIENT_STOCK");
    expect(error.metadata.available).to.equal("0");
  });
});

describe("reservation idempotency", () => {
  function stocked(): SkuState {
    const state = newSkuState("SKU-1");
    define(state, MUG);
    receive(state, "A", 100);
    return state;
  }

  it("rejects a reused id with another TTL with ALREADY_EXISTS, and answers the same TTL later with no events", () => {
    const state = stocked();
    reserve(state, "r1", 2, "", T0, TTL_MS);
    expect(decideReserve(state, { id: "r1", quantity: 2, locationId: "", ttlMs: TTL_MS }, T0 + 5_000)).to.deep.equal([]);
    const error = qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 2, locationId: "", ttlMs: TTL_MS * 2 }, T0 + 5_000));
    expect(error.code).to.equal("ALREADY_EXISTS");
    expect(error.message).to.contain("ttl");
    // Also once committed, when the hold no longer has an expiry.
    apply(state, decideCommit(state, "r1", T0 + 6_000));
    expect(qmErrorOf(() => decideReserve(state, { id: "r1", quantity: 2, locationId: "", ttlMs: 1_000 }, T0 + 7_000)).code).to.equal("ALREADY_EXISTS");
  });

  it("accepts an order's hold asked again with the time its order has left (ids with '/')", () => {
    const state = stocked();
    reserve(state, "order/o1/0", 2, "", T0, TTL_MS);
    expect(decideReserve(state, { id: "order/o1/0", quantity: 2, locationId: "", ttlMs: TTL_MS - 5_000 }, T0 + 5_000)).to.deep.equal([]);
  });

  it("keeps the requested TTL through a snapshot, and derives it for holds journalled before it was recorded", () => {
    const state = stocked();
    reserve(state, "r1", 2, "", T0, TTL_MS);
    const restored = skuFromSnapshot("SKU-1", unpack(pack(skuToSnapshot(state))) as SkuSnapshot);
    expect(qmErrorOf(() => decideReserve(restored, { id: "r1", quantity: 2, locationId: "", ttlMs: 1_000 }, T0)).code).to.equal("ALREADY_EXISTS");
    const legacy = stocked();
    applySkuEvent(legacy, { t: "reserved", id: "old", locationId: "A", quantity: 1, expiresAtMs: T0 + TTL_MS, atMs: T0 });
    expect(decideReserve(legacy, { id: "old", quantity: 1, locationId: "", ttlMs: TTL_MS }, T0 + 1)).to.deep.equal([]);
  });

  it("answers a reservation read on an unknown SKU with NOT_FOUND naming sku_id, not the reservation", () => {
    const error = qmErrorOf(() => viewReservation(newSkuState("NOPE"), "r1"));
    expect(error.code).to.equal("NOT_FOUND");
    expect(error.metadata).to.deep.equal({ sku_id: "NOPE" });
  });

  it("keeps a shipment id __proto__ through a msgpack snapshot, so its undo is still known", () => {
    const state = stocked();
    reserve(state, "r1", 4);
    apply(state, decideCommit(state, "r1", T0 + 1));
    apply(state, decideFulfil(state, "r1", "__proto__", 4, T0 + 2));
    const restored = skuFromSnapshot("SKU-1", unpack(pack(skuToSnapshot(state))) as SkuSnapshot);
    expect(decideFulfil(restored, "r1", "__proto__", 4, T0 + 3)).to.deep.equal([]);
    expect(viewReservation(restored, "r1")).to.deep.include({ state: "FULFILLED", fulfilledQuantity: 4 });
  });
});

describe("expiry heap", () => {
  const CYCLES = 200_000;

  it(`stays within 2 x held reservations + ${STALE_EXPIRIES_SLACK} over one live hold and ${CYCLES} reserve, commit, fulfil cycles`, function () {
    this.timeout(60_000);
    const state = newSkuState("SKU-1");
    define(state, MUG);
    receive(state, "A", CYCLES + 1);
    reserve(state, "live", 1, "", T0, 3_600_000);
    let largest = 0;
    for (let i = 0; i < CYCLES; i++) {
      const id = `c${i}`;
      reserve(state, id, 1, "", T0 + i);
      apply(state, decideCommit(state, id, T0 + i));
      apply(state, decideFulfil(state, id, "s", 1, T0 + i));
      largest = Math.max(largest, state.expiries.size);
    }
    expect(state.reservedHolds).to.equal(1);
    expect(largest).to.be.at.most(2 * 2 + STALE_EXPIRIES_SLACK);
    expect(state.expiries.size).to.be.at.most(2 * 1 + STALE_EXPIRIES_SLACK);
    // The live hold still expires on time.
    const due = decideExpiries(state, T0 + 3_600_000, 10);
    expect(due).to.deep.equal([{ t: "expired", id: "live", atMs: T0 + 3_600_000 }]);
  });

  it("stays bounded when holds are released while many others stay held, and every held one still expires", () => {
    const state = newSkuState("SKU-1");
    define(state, MUG);
    receive(state, "A", 100_000);
    for (let i = 0; i < 1000; i++) reserve(state, `held-${i}`, 1, "", T0, TTL_MS);
    for (let i = 0; i < 20_000; i++) {
      reserve(state, `gone-${i}`, 1, "", T0 + i);
      apply(state, decideRelease(state, `gone-${i}`, T0 + i));
      expect(state.expiries.size).to.be.at.most(2 * state.reservedHolds + STALE_EXPIRIES_SLACK);
    }
    const due = decideExpiries(state, T0 + TTL_MS, 10_000);
    expect(due.map((e) => (e as { id: string }).id).sort()).to.deep.equal(Array.from({ length: 1000 }, (_, i) => `held-${i}`).sort());
  });

  it("is rebuilt from the live holds after a snapshot, so a restored SKU has no stale entries", () => {
    const state = newSkuState("SKU-1");
    define(state, MUG);
    receive(state, "A", 10);
    reserve(state, "a", 1);
    reserve(state, "b", 1);
    apply(state, decideCommit(state, "a", T0));
    const restored = skuFromSnapshot("SKU-1", unpack(pack(skuToSnapshot(state))) as SkuSnapshot);
    expect(restored.expiries.size).to.equal(1);
    expect(restored.reservedHolds).to.equal(1);
  });
});
