// A batch's holds in columns (reservedCols, journal format 5) must come back
// from the journal exactly as they went in, and applying them must leave the
// SKU exactly as reservedMany's tuples of the same holds did. fc.assert prints
// the seed and the shrunk counterexample on failure.

import { expect } from "chai";
import fc from "fast-check";
import { pack, unpack } from "msgpackr";
import { forEachHold, HoldColumns, type HoldTuple, type ReservedColsEvent } from "../../src/domain/hold_columns";
import { applySkuEvent, newSkuState, type SkuEvent, type SkuState } from "../../src/domain/sku";

const AT_MS = 1_764_625_000_123;
const LOCATIONS = ["wh-1", "wh-2", "store:3"];

function stocked(): SkuState {
  const state = newSkuState("S");
  applySkuEvent(state, { t: "defined", def: { title: "T", priceMinor: 1, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] }, atMs: AT_MS - 1 });
  for (const [i, locationId] of LOCATIONS.entries()) applySkuEvent(state, { t: "adjusted", seq: i + 1, locationId, delta: 1_000_000, reason: "RECEIVED", key: "", atMs: AT_MS - 1 });
  return state;
}

/** What the journal hands back: the event through msgpack, as lmdb_journal.ts and jetstream_journal.ts store it. */
function throughJournal(e: SkuEvent): SkuEvent {
  return unpack(pack(e)) as SkuEvent;
}

function eventOf(holds: readonly HoldTuple[]): SkuEvent {
  const columns = new HoldColumns();
  for (const [id, locationId, quantity, ttlMs] of holds) columns.add(id, locationId, quantity, ttlMs);
  return columns.event(AT_MS);
}

function tuplesOf(e: ReservedColsEvent): HoldTuple[] {
  const holds: HoldTuple[] = [];
  forEachHold(e, (id, locationId, quantity, ttlMs) => holds.push([id, locationId, quantity, ttlMs]));
  return holds;
}

// Ids as the edge lets them through, and any other string a caller inside the process could use.
const id = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 40 }) },
);
const hold = fc.tuple(
  id,
  fc.constantFrom(...LOCATIONS),
  fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 1000 })),
  fc.oneof(fc.constant(3_600_000), fc.integer({ min: 1, max: 2_147_483_647 })),
);
const holds = fc.uniqueArray(hold, { minLength: 1, maxLength: 60, selector: (h) => h[0] });

describe("reservedCols: a batch's holds in columns", () => {
  it("gives back every hold in order after msgpack, and applies to the same state as reservedMany's tuples", () => {
    fc.assert(
      fc.property(holds, (granted) => {
        const e = throughJournal(eventOf(granted));
        const back = e.t === "reservedCols" ? tuplesOf(e) : e.t === "reservedMany" ? e.holds : [];
        expect(back).to.deep.equal(granted);
        const viaEvent = stocked();
        applySkuEvent(viaEvent, e);
        const viaTuples = stocked();
        applySkuEvent(viaTuples, { t: "reservedMany", holds: granted, atMs: AT_MS });
        expect(viaEvent).to.deep.equal(viaTuples);
        expect(viaEvent.version).to.equal(1 + LOCATIONS.length + granted.length);
        expect(viaEvent.reserved).to.equal(granted.reduce((sum, h) => sum + h[2], 0));
      }),
      { numRuns: 500 },
    );
  });

  it("writes one location, quantity and TTL once when every hold shares them", () => {
    const e = eventOf(Array.from({ length: 1000 }, (_, i): HoldTuple => [`bench-r1-${String(i).padStart(9, "0")}`, "wh-1", 1, 3_600_000]));
    expect(e).to.deep.include({ t: "reservedCols", locations: ["wh-1"], locationOf: "", quantities: 1, ttlsMs: 3_600_000 });
    // 1000 ids of 18 characters, one length character each, and about 100 bytes of fields: 19 bytes per hold.
    expect(pack(e).length).to.be.within(19_000, 19_200);
    // reservedMany's tuples of the same holds: 31 bytes per hold.
    const tuples = e.t === "reservedCols" ? tuplesOf(e) : [];
    expect(pack({ t: "reservedMany", holds: tuples, atMs: AT_MS }).length).to.be.within(31_000, 31_200);
  });

  it("writes reservedMany's tuples when an id has a character above 255, which the columns do not carry", () => {
    const granted: HoldTuple[] = [["plain", "wh-1", 1, 60_000], ["euro-€", "wh-2", 2, 60_000]];
    const e = throughJournal(eventOf(granted));
    expect(e).to.deep.equal({ t: "reservedMany", holds: granted, atMs: AT_MS });
  });

  it("refuses a damaged event whose columns disagree, instead of applying part of it", () => {
    const e = throughJournal(eventOf([["a", "wh-1", 1, 1], ["b", "wh-1", 1, 1]])) as ReservedColsEvent;
    const state = stocked();
    expect(() => applySkuEvent(state, { ...e, idLengths: "\u0001\u0005" })).to.throw(/id lengths cover 6 of 2 characters/);
    expect(() => applySkuEvent(state, { ...e, quantities: [1] })).to.throw(/quantities of another length/);
    expect(() => applySkuEvent(state, { ...e, locationOf: "\u0000\u0001" })).to.throw(/hold 1 names no location/);
    expect(() => applySkuEvent(state, { ...e, ids: "a\u0100" })).to.throw(/an id character above 255/);
    expect(state.reserved).to.equal(0);
  });
});
