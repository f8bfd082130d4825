import { expect } from "chai";
import * as fc from "fast-check";
import { WAKEUP_INDEX_RUN_ENTRIES_MAX } from "../../src/limits";
import { WakeupIndex } from "../../src/journal/wakeup_index";
import { WakeupScan } from "../support/wakeup_scan";

const PARTITIONS = 4;
/** Actor ids fall into partitions by this, as placement's hash would; the index is told the partition. */
const partitionOfKey = (key: number): number => key % PARTITIONS;

type Op =
  | { kind: "claim" | "release"; partition: number }
  | { kind: "set"; key: number; atMs: number | null }
  | { kind: "due"; nowMs: number; limit: number; offset: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom("claim" as const, "release" as const), partition: fc.integer({ min: 0, max: PARTITIONS - 1 }) }) },
  // Few distinct due times, so ties broken by actor id are common.
  { weight: 12, arbitrary: fc.record({ kind: fc.constant("set" as const), key: fc.integer({ min: 0, max: 400 }), atMs: fc.option(fc.integer({ min: 0, max: 40 }), { freq: 5 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("due" as const),
      nowMs: fc.integer({ min: -1, max: 41 }),
      limit: fc.integer({ min: 1, max: 50 }),
      offset: fc.integer({ min: 0, max: 300 }),
    }),
  },
);

describe("WakeupIndex", () => {
  it("answers every page as the old scan and sort did, through random claims, releases, sets and clears", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
        const index = new WakeupIndex();
        const model = new WakeupScan();
        for (const o of ops) {
          if (o.kind === "claim") {
            index.claim(o.partition);
            model.claim(o.partition);
          } else if (o.kind === "release") {
            index.release(o.partition);
            model.release(o.partition);
          } else if (o.kind === "set") {
            const actorId = `sku/k${o.key}`;
            expect(index.set(partitionOfKey(o.key), actorId, o.atMs)).to.equal(model.set(partitionOfKey(o.key), actorId, o.atMs));
          } else if (o.kind === "due") {
            expect(index.due(o.nowMs, o.limit, o.offset)).to.deep.equal(model.due(o.nowMs, o.limit, o.offset));
          }
          expect(index.size).to.equal(model.size);
        }
        expect(index.due(Number.MAX_SAFE_INTEGER, 100_000, 0)).to.deep.equal(model.due(Number.MAX_SAFE_INTEGER, 100_000, 0));
      }),
      { numRuns: 300 },
    );
  });

  it("keeps the order across many runs: splits, merges and a release of a large share", () => {
    const index = new WakeupIndex();
    const model = new WakeupScan();
    for (let p = 0; p < PARTITIONS; p++) {
      index.claim(p);
      model.claim(p);
    }
    const n = WAKEUP_INDEX_RUN_ENTRIES_MAX * 20;
    let seed = 7;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < n; i++) {
      const key = Math.floor(random() * n);
      const atMs = Math.floor(random() * 1000);
      index.set(partitionOfKey(key), `order/o${key}`, atMs);
      model.set(partitionOfKey(key), `order/o${key}`, atMs);
    }
    // Clear most, so runs thin out and merge.
    for (let key = 0; key < n; key++) {
      if (key % 5 === 0) continue;
      index.set(partitionOfKey(key), `order/o${key}`, null);
      model.set(partitionOfKey(key), `order/o${key}`, null);
    }
    expect(index.size).to.equal(model.size);
    for (const offset of [0, 1, 511, 512, 513, 1000, 2047]) expect(index.due(600, 1000, offset)).to.deep.equal(model.due(600, 1000, offset));
    index.release(0);
    model.release(0);
    expect(index.owns(0)).to.equal(false);
    expect(index.set(0, "order/o0", 5)).to.equal(false);
    expect(index.size).to.equal(model.size);
    expect(index.due(Number.MAX_SAFE_INTEGER, 1000, 0)).to.deep.equal(model.due(Number.MAX_SAFE_INTEGER, 1000, 0));
    expect(index.due(Number.MAX_SAFE_INTEGER, 1000, 1000)).to.deep.equal(model.due(Number.MAX_SAFE_INTEGER, 1000, 1000));
  });

  it("claiming a partition again starts it empty, so entries of a former ownership do not come back", () => {
    const index = new WakeupIndex();
    index.claim(1);
    index.set(1, "sku/a", 10);
    index.claim(1);
    expect(index.due(100, 10, 0)).to.deep.equal([]);
    expect(index.size).to.equal(0);
    index.set(1, "sku/a", 10);
    expect(index.due(100, 10, 0)).to.deep.equal(["sku/a"]);
  });
});
