import { expect } from "chai";
import * as fc from "fast-check";
import { MinHeap } from "../../src/util/min_heap";

describe("MinHeap", () => {
  it("answers undefined for peek and pop when empty, and size 0", () => {
    const heap = new MinHeap<string>();
    expect(heap.size).to.equal(0);
    expect(heap.peekKey()).to.equal(undefined);
    expect(heap.peekValue()).to.equal(undefined);
    expect(heap.pop()).to.equal(undefined);
    expect(heap.size).to.equal(0);
  });

  it("pops values in key order and keeps each value with its key", () => {
    const heap = new MinHeap<string>();
    for (const [key, value] of [[30, "c"], [10, "a"], [50, "e"], [20, "b"], [40, "d"]] as const) heap.push(key, value);
    expect(heap.size).to.equal(5);
    expect(heap.peekKey()).to.equal(10);
    expect(heap.peekValue()).to.equal("a");
    const popped: string[] = [];
    for (let v = heap.pop(); v !== undefined; v = heap.pop()) popped.push(v);
    expect(popped).to.deep.equal(["a", "b", "c", "d", "e"]);
    expect(heap.size).to.equal(0);
  });

  it("clear empties the heap, and it works again afterwards", () => {
    const heap = new MinHeap<number>();
    heap.push(2, 2);
    heap.push(1, 1);
    heap.clear();
    expect(heap.size).to.equal(0);
    expect(heap.peekKey()).to.equal(undefined);
    heap.push(7, 7);
    expect(heap.pop()).to.equal(7);
  });

  it("pops any multiset of keys (duplicates, negatives, fractions) in the order a sort gives", () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.integer({ min: -50, max: 50 }), fc.double({ min: -1e6, max: 1e6, noNaN: true }).map((x) => (x === 0 ? 0 : x))), { maxLength: 300 }), (keys) => {
        const heap = new MinHeap<{ key: number; index: number }>();
        keys.forEach((key, index) => heap.push(key, { key, index }));
        expect(heap.size).to.equal(keys.length);
        const poppedKeys: number[] = [];
        const seenIndexes = new Set<number>();
        for (let entry = heap.pop(); entry !== undefined; entry = heap.pop()) {
          poppedKeys.push(entry.key);
          seenIndexes.add(entry.index);
        }
        expect(poppedKeys).to.deep.equal([...keys].sort((a, b) => a - b));
        expect(seenIndexes.size).to.equal(keys.length);
      }),
      { numRuns: 300 },
    );
  });

  it("agrees with a sorted-array model under interleaved pushes and pops", () => {
    const op = fc.oneof(
      fc.record({ push: fc.integer({ min: 0, max: 20 }) }),
      fc.constant({ push: undefined }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const heap = new MinHeap<number>();
        const model: number[] = [];
        for (const o of ops) {
          if (o.push !== undefined) {
            heap.push(o.push, o.push);
            model.push(o.push);
            model.sort((a, b) => a - b);
          } else {
            expect(heap.pop()).to.equal(model.shift());
          }
          expect(heap.size).to.equal(model.length);
          expect(heap.peekKey()).to.equal(model[0]);
          expect(heap.peekValue()).to.equal(model[0]);
        }
      }),
      { numRuns: 300 },
    );
  });
});
