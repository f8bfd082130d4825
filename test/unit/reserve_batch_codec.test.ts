// ReserveBatch's own codecs must write exactly the generated encoder's bytes and read exactly what the generated decoder reads.

import { expect } from "chai";
import fc from "fast-check";
import { ReservationState, ReserveBatchRequest, ReserveBatchResponse, type ReserveBatchResult } from "../../src/gen/quartermaster/v1/inventory";
import { decodeReserveBatchRequest, encodeReserveBatchResponse } from "../../src/grpc/reserve_batch_codec";
import { ReserveBatchColumns } from "../../src/grpc/reserve_batch_columns";
import { ReserveBatchReply } from "../../src/grpc/reserve_batch_reply";
import { QmError } from "../../src/errors";
import { validateReserveBatch } from "../../src/grpc/validation";
import { TTL_MS_MAX, TTL_MS_MIN } from "../../src/limits";
import type { GateCall } from "../../src/security/call_gate";
import { callCost, RESERVE_BATCH_PATH } from "../../src/security/rate_limit/gate";

const generated = (m: ReserveBatchResponse): Buffer => Buffer.from(ReserveBatchResponse.encode(m).finish());

const time = fc.oneof(
  fc.constant(undefined),
  fc.integer({ min: 0, max: 4_102_444_800_000 }).map((ms) => new Date(ms)),
  fc.constantFrom(new Date(0), new Date(1_000), new Date(999), new Date(-1_500)),
);
const count = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1_000_000 }), fc.constantFrom(127, 128, 16_383, 16_384, Number.MAX_SAFE_INTEGER, -1));
const int32 = fc.oneof(fc.integer({ min: 0, max: 2_000 }), fc.constantFrom(-1, 2_147_483_647));
const text = fc.oneof(fc.constant(""), fc.string({ maxLength: 40 }), fc.string({ unit: "binary", maxLength: 20 }), fc.string({ minLength: 130, maxLength: 300 }));

const reservationResult = fc.record({
  reservationId: text,
  skuId: text,
  locationId: text,
  quantity: count,
  state: fc.constantFrom(ReservationState.RESERVATION_STATE_UNSPECIFIED, ReservationState.RESERVATION_STATE_RESERVED, ReservationState.RESERVATION_STATE_COMMITTED),
  expiresAt: time,
  createdAt: time,
  updatedAt: time,
  fulfilledQuantity: count,
}).map((reservation): ReserveBatchResult => ({ outcome: { $case: "reservation", reservation } }));

const errorResult = fc
  .record({ code: fc.integer({ min: 0, max: 16 }), reason: text, message: text, metadata: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }) })
  .map((error): ReserveBatchResult => ({ outcome: { $case: "error", error } }));

const response = fc.record({
  results: fc.array(fc.oneof({ weight: 4, arbitrary: reservationResult }, { weight: 1, arbitrary: errorResult }, { weight: 1, arbitrary: fc.constant<ReserveBatchResult>({ outcome: undefined }) }), { maxLength: 30 }),
  succeeded: int32,
  failed: int32,
});

describe("ReserveBatch reply encoder", () => {
  it("writes the generated encoder's bytes for any response: reservations, errors, empty outcomes, unicode, large and negative numbers", () => {
    fc.assert(
      fc.property(response, (m) => {
        expect(encodeReserveBatchResponse(m).equals(generated(m))).to.equal(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it("writes 1000 reservations sharing their times as the generated encoder does, and they decode back", () => {
    const at = new Date(1_764_625_000_123);
    const expires = new Date(at.getTime() + 3_600_000);
    const results: ReserveBatchResult[] = Array.from({ length: 1000 }, (_, i) => ({
      outcome: {
        $case: "reservation",
        reservation: { reservationId: `r-${i}`, skuId: "hot-0", locationId: "wh-1", quantity: 1, state: ReservationState.RESERVATION_STATE_RESERVED, expiresAt: expires, createdAt: at, updatedAt: at, fulfilledQuantity: 0 },
      },
    }));
    const m: ReserveBatchResponse = { results, succeeded: 1000, failed: 0 };
    const bytes = encodeReserveBatchResponse(m);
    expect(bytes.equals(generated(m))).to.equal(true);
    const back = ReserveBatchResponse.decode(bytes);
    expect(back.succeeded).to.equal(1000);
    const last = back.results[999]?.outcome;
    expect(last?.$case === "reservation" ? [last.reservation.reservationId, last.reservation.expiresAt?.getTime()] : []).to.deep.equal(["r-999", expires.getTime()]);
  });
});

describe("ReserveBatch reply held as columns", () => {
  // Items granted now (as columns), errors and known ids' reservations (as results), in any order.
  const answer = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant("grant" as const), locationId: text, atMs: fc.oneof(fc.integer({ min: 0, max: 4_102_444_800_000 }), fc.constantFrom(0, 999, 1_000)) }) },
    { weight: 1, arbitrary: errorResult.map((result) => ({ kind: "answer" as const, result })) },
    { weight: 1, arbitrary: reservationResult.map((result) => ({ kind: "answer" as const, result })) },
  );
  const item = fc.record({ id: text, skuId: text, quantity: count, ttlMs: fc.oneof(fc.integer({ min: TTL_MS_MIN, max: TTL_MS_MAX }), fc.constantFrom(TTL_MS_MIN, 3_600_000, TTL_MS_MAX)) });
  const reply = fc.array(fc.tuple(item, answer), { maxLength: 30 }).map((pairs) => {
    const items = pairs.map(([i]) => i);
    const r = new ReserveBatchReply({
      ids: items.map((i) => i.id),
      skuIds: items.map((i) => i.skuId),
      quantities: items.map((i) => i.quantity),
      locationIds: items.map(() => ""),
      ttlsMs: items.map((i) => i.ttlMs),
    });
    pairs.forEach(([, a], i) => (a.kind === "grant" ? r.grant(i, a.locationId, a.atMs) : r.answer(i, a.result)));
    return r;
  });

  it("writes the generated encoder's bytes for its own results, granted holds and other answers mixed", () => {
    fc.assert(
      fc.property(reply, (m) => {
        const expected = generated({ results: m.results, succeeded: m.succeeded, failed: m.failed });
        expect(encodeReserveBatchResponse(m).equals(expected)).to.equal(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it("writes a granted hold's id byte for byte whatever it is: ASCII, non-ASCII at its start, middle or end, over 127 bytes, empty", () => {
    const ids = ["r-1", "é-2", "r-\u20ac-3", "r-4\u{1F600}", "x".repeat(127), "y".repeat(128), "z".repeat(200) + "ß", "", "\u007f", "\u0080"];
    const n = 1000;
    const items = Array.from({ length: n }, (_, i) => (ids[i % ids.length] as string) + (i < ids.length ? "" : `-${i}`));
    const r = new ReserveBatchReply({ ids: items, skuIds: items.map(() => "hot-0"), quantities: items.map(() => 1), locationIds: items.map(() => ""), ttlsMs: items.map(() => 3_600_000) });
    items.forEach((_, i) => r.grant(i, i % 7 === 0 ? "wh-\u00e9" : "wh-1", 1_764_625_000_123 + (i % 3)));
    const bytes = encodeReserveBatchResponse(r);
    expect(bytes.equals(generated({ results: r.results, succeeded: r.succeeded, failed: r.failed }))).to.equal(true);
    const back = ReserveBatchResponse.decode(bytes).results.map((x) => (x.outcome?.$case === "reservation" ? x.outcome.reservation.reservationId : undefined));
    expect(back).to.deep.equal(items);
  });

  it("reads back as the reservations it granted: times from its time and ttl, state RESERVED, counts of both kinds", () => {
    const r = new ReserveBatchReply({ ids: ["a", "b"], skuIds: ["hot-0", "hot-0"], quantities: [2, 1], locationIds: ["", ""], ttlsMs: [60_000, 60_000] });
    r.grant(0, "wh-1", 1_764_625_000_123);
    r.answer(1, { outcome: { $case: "error", error: { code: 9, reason: "INSUFFICIENT_STOCK", message: "none left", metadata: {} } } });
    const back = ReserveBatchResponse.decode(encodeReserveBatchResponse(r));
    expect([back.succeeded, back.failed]).to.deep.equal([1, 1]);
    const first = back.results[0]?.outcome;
    expect(first?.$case === "reservation" ? first.reservation : undefined).to.deep.equal({
      reservationId: "a",
      skuId: "hot-0",
      locationId: "wh-1",
      quantity: 2,
      state: ReservationState.RESERVATION_STATE_RESERVED,
      expiresAt: new Date(1_764_625_060_123),
      createdAt: new Date(1_764_625_000_123),
      updatedAt: new Date(1_764_625_000_123),
      fulfilledQuantity: 0,
    });
    expect(back.results[1]?.outcome?.$case).to.equal("error");
  });
});

describe("ReserveBatch request reader", () => {
  const duration = fc.oneof(
    fc.constant(undefined),
    fc.record({ seconds: fc.oneof(fc.integer({ min: 0, max: 100_000 }), fc.constantFrom(-1, 2 ** 50, Number.MAX_SAFE_INTEGER)), nanos: fc.oneof(fc.constant(0), fc.integer({ min: -5, max: 999_999_999 })) }),
  );
  const item = fc.record({ reservationId: text, skuId: fc.oneof(fc.constantFrom("hot-0", "sku-1"), text), quantity: count, locationId: fc.oneof(fc.constant(""), fc.constant("wh-1"), text), ttl: duration });
  const request = fc.record({ items: fc.array(item, { maxLength: 20 }) });
  const generatedDecode = (bytes: Uint8Array): unknown => {
    try {
      return ReserveBatchRequest.decode(bytes);
    } catch (error) {
      return { threw: String(error) };
    }
  };
  // The fast reader answers with columns; read as the generated type, they must be the generated decoder's items.
  const ownDecode = (bytes: Uint8Array): unknown => {
    try {
      return { items: decodeReserveBatchRequest(bytes).items };
    } catch (error) {
      return { threw: String(error) };
    }
  };

  it("reads every request as the generated decoder does: unicode, negative and huge numbers, missing fields", () => {
    fc.assert(
      fc.property(request, (r) => {
        const bytes = Buffer.from(ReserveBatchRequest.encode(r).finish());
        expect(ownDecode(bytes)).to.deep.equal(generatedDecode(bytes));
      }),
      { numRuns: 2_000 },
    );
  });

  it("answers damaged bytes (cut, changed, extended) exactly as the generated decoder does, error or message", () => {
    const damaged = fc
      .tuple(request, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom("cut", "flip", "append"), fc.uint8Array({ maxLength: 8 }))
      .map(([r, at, byte, how, extra]) => {
        const bytes = Buffer.from(ReserveBatchRequest.encode(r).finish());
        if (bytes.length === 0) return Buffer.from(extra);
        const i = at % bytes.length;
        if (how === "cut") return bytes.subarray(0, i);
        if (how === "append") return Buffer.concat([bytes, extra]);
        const copy = Buffer.from(bytes);
        copy[i] = byte;
        return copy;
      });
    fc.assert(
      fc.property(damaged, (bytes) => {
        expect(ownDecode(bytes)).to.deep.equal(generatedDecode(bytes));
      }),
      { numRuns: 3_000 },
    );
  });

  it("validates what it reads as the generated decoder's message validates: the same columns, or the same violations in the same order", () => {
    // Ids near and off the pattern: its every character, others of ASCII and beyond, lengths around the limit.
    const idChar = fc.constantFrom(..."aZ09._:-".split(""), " ", "!", "/", "\u007f", "\t", "é", "\u20ac");
    const id = fc.oneof(
      fc.constantFrom("", "hot-0", "r-1", "x".repeat(128), "x".repeat(129)),
      fc.array(idChar, { maxLength: 12 }).map((cs) => cs.join("")),
      fc.stringMatching(/^[A-Za-z0-9._:-]{1,140}$/),
    );
    const ttl = fc.oneof(fc.constant(undefined), fc.record({ seconds: fc.constantFrom(0, 1, 60, 3600, 10_000_000), nanos: fc.constantFrom(0, 5, 999_999_999) }));
    const validItem = fc.record({ reservationId: id, skuId: fc.oneof(fc.constant("hot-0"), id), quantity: fc.constantFrom(0, 1, 2, 1_000_001), locationId: fc.oneof(fc.constant(""), fc.constant("wh-1"), id), ttl });
    const validated = (m: ReserveBatchRequest): unknown => {
      try {
        const v = validateReserveBatch(m);
        return { ids: [...v.ids], skuIds: [...v.skuIds], quantities: [...v.quantities], locationIds: [...v.locationIds], ttlsMs: [...v.ttlsMs] };
      } catch (error) {
        return error instanceof QmError ? error.toJSON() : { threw: String(error) };
      }
    };
    fc.assert(
      fc.property(fc.array(validItem, { minLength: 1, maxLength: 12 }), (items) => {
        const bytes = Buffer.from(ReserveBatchRequest.encode({ items }).finish());
        expect(validated(decodeReserveBatchRequest(bytes))).to.deep.equal(validated(ReserveBatchRequest.decode(bytes)));
      }),
      { numRuns: 3_000 },
    );
  });

  it("reads a 1000-item batch on one SKU as the generated decoder does", () => {
    const r: ReserveBatchRequest = { items: Array.from({ length: 1000 }, (_, i) => ({ reservationId: `r-${i}`, skuId: "hot-0", quantity: 1, locationId: "", ttl: { seconds: 3600, nanos: 0 } })) };
    const bytes = Buffer.from(ReserveBatchRequest.encode(r).finish());
    const own = decodeReserveBatchRequest(bytes);
    expect(own).to.be.instanceOf(ReserveBatchColumns);
    expect(own instanceof ReserveBatchColumns ? [own.length, own.reservationIds[999], own.ttlSeconds[999], own.skuIds[0] === own.skuIds[999]] : []).to.deep.equal([1000, "r-999", 3600, true]);
    // The rate limiter charges a token per item from the columns' length.
    expect(callCost({ path: RESERVE_BATCH_PATH, request: own } as GateCall)).to.equal(1000);
    expect({ items: own.items }).to.deep.equal(ReserveBatchRequest.decode(bytes));
    expect(own.items[999]?.reservationId).to.equal("r-999");
  });
});
