// The idle collector: one full collection once the event loop has gone quiet
// after the heap grew, none while busy or when little garbage is there; and
// the real one returns a burst's garbage (the passivated actors' case) without
// node being started with --expose-gc.

import { expect } from "chai";
import pino from "pino";
import { ConfigError, loadConfig } from "../../src/config";
import { exposedGc, IdleCollector, idleCollector, type IdleCollectorProbe, processProbe } from "../../src/observability/idle_collector";
import { IDLE_GC_ACTORS_DROPPED_MIN, IDLE_GC_BUSY_SHARE_MAX, IDLE_GC_GARBAGE_MIN_BYTES, IDLE_GC_QUIET_MS } from "../../src/limits";

const silent = pino({ level: "silent" });
const MIB = 1024 * 1024;

/** A heap whose used bytes and busy share the test sets; collect() brings used back to live. */
class FakeProbe implements IdleCollectorProbe {
  used = 20 * MIB;
  live = 20 * MIB;
  busy = 0;
  collections = 0;
  resident = 0;
  residentActors(): number {
    return this.resident;
  }
  heapUsedBytes(): number {
    return this.used;
  }
  busyShare(): number {
    return this.busy;
  }
  collect(): void {
    this.collections += 1;
    this.used = this.live;
  }
}

describe("IdleCollector", () => {
  let collector: IdleCollector | null = null;

  afterEach(async () => {
    await collector?.stop();
    collector = null;
  });

  it("collects once when the loop is idle and the heap grew by the threshold since start, then not again until it grows again", async () => {
    const probe = new FakeProbe();
    collector = new IdleCollector(probe, silent, 60_000);
    await collector.start();
    probe.used += IDLE_GC_GARBAGE_MIN_BYTES;
    expect(collector.check()).to.equal(true);
    expect(probe.collections).to.equal(1);
    expect(probe.used).to.equal(20 * MIB);
    expect(collector.check()).to.equal(false);
    probe.used += IDLE_GC_GARBAGE_MIN_BYTES - 1;
    expect(collector.check()).to.equal(false);
    probe.used += 1;
    expect(collector.check()).to.equal(true);
    expect(collector.collectionCount).to.equal(2);
  });

  it("leaves a busy loop alone however much garbage there is", async () => {
    const probe = new FakeProbe();
    collector = new IdleCollector(probe, silent, 60_000);
    await collector.start();
    probe.used += 10 * IDLE_GC_GARBAGE_MIN_BYTES;
    probe.busy = IDLE_GC_BUSY_SHARE_MAX + 0.01;
    expect(collector.check()).to.equal(false);
    expect(probe.collections).to.equal(0);
    probe.busy = IDLE_GC_BUSY_SHARE_MAX;
    expect(collector.check()).to.equal(true);
  });

  it("measures growth from the heap after its own last collection, not from zero", async () => {
    const probe = new FakeProbe();
    probe.used = 200 * MIB;
    probe.live = 190 * MIB;
    collector = new IdleCollector(probe, silent, 60_000);
    await collector.start();
    expect(collector.check()).to.equal(false);
    probe.used = 200 * MIB + IDLE_GC_GARBAGE_MIN_BYTES;
    expect(collector.check()).to.equal(true);
    expect(probe.used).to.equal(190 * MIB);
  });

  it("waits for IDLE_GC_QUIET_MS of idle checks in a row, and a busy check starts the count again", async () => {
    const probe = new FakeProbe();
    // 6 s of quiet in checks of 1 s: the sixth idle check in a row collects.
    expect(IDLE_GC_QUIET_MS).to.equal(6_000);
    collector = new IdleCollector(probe, silent, 1_000);
    await collector.start();
    probe.used += IDLE_GC_GARBAGE_MIN_BYTES;
    for (let i = 0; i < 5; i++) expect(collector.check(), `idle check ${i + 1}`).to.equal(false);
    probe.busy = IDLE_GC_BUSY_SHARE_MAX + 0.01;
    expect(collector.check()).to.equal(false);
    probe.busy = 0;
    for (let i = 0; i < 5; i++) expect(collector.check(), `idle check ${i + 1} after the busy one`).to.equal(false);
    expect(probe.collections).to.equal(0);
    expect(collector.check()).to.equal(true);
    expect(probe.collections).to.equal(1);
    expect(probe.used).to.equal(20 * MIB);
  });

  it("collects once IDLE_GC_ACTORS_DROPPED_MIN actors left memory since the last collection, though the heap did not grow", async () => {
    expect(IDLE_GC_ACTORS_DROPPED_MIN).to.equal(1_000);
    const probe = new FakeProbe();
    probe.resident = 10_000;
    collector = new IdleCollector(probe, silent, 60_000);
    await collector.start();
    // A burst grows the heap; collected while the actors are still resident.
    probe.used += IDLE_GC_GARBAGE_MIN_BYTES;
    expect(collector.check()).to.equal(true);
    // They passivate: their memory turns to garbage, heap used does not move.
    probe.resident = 9_001;
    expect(collector.check()).to.equal(false);
    probe.resident = 9_000;
    expect(collector.check()).to.equal(true);
    expect(probe.collections).to.equal(2);
    // Counted from the last collection: nothing more left, nothing more to do.
    expect(collector.check()).to.equal(false);
    // Actors that came and went since (the peak, not the count at the collection) count too.
    probe.resident = 9_500;
    expect(collector.check()).to.equal(false);
    probe.resident = 8_500;
    expect(collector.check()).to.equal(true);
    expect(probe.collections).to.equal(3);
  });

  it("runs its check on its interval once started, and not after stop", async () => {
    const probe = new FakeProbe();
    collector = new IdleCollector(probe, silent, 10, IDLE_GC_GARBAGE_MIN_BYTES, 30);
    await collector.start();
    probe.used += IDLE_GC_GARBAGE_MIN_BYTES;
    const deadline = Date.now() + 5_000;
    while (probe.collections === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(probe.collections).to.equal(1);
    await collector.stop();
    probe.used += IDLE_GC_GARBAGE_MIN_BYTES;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(probe.collections).to.equal(1);
  });

  it("gets V8's gc() without --expose-gc and returns a burst's garbage with it", () => {
    const gc = exposedGc();
    expect(gc, "gc() handed over").to.be.a("function");
    if (gc === null) return;
    const probe = processProbe(gc);
    gc();
    const baseline = probe.heapUsedBytes();
    // Garbage shaped like passivated actors' state: small objects and Maps, dropped at once.
    let burst: Map<number, { id: string }>[] | null = [];
    for (let i = 0; i < 200_000; i++) burst.push(new Map([[i, { id: `sku-${i}` }]]));
    const withGarbage = probe.heapUsedBytes();
    expect(burst.length).to.equal(200_000);
    burst = null;
    expect(withGarbage - baseline, "the burst was on the heap").to.be.greaterThan(IDLE_GC_GARBAGE_MIN_BYTES);
    probe.collect();
    expect(probe.heapUsedBytes() - baseline, "what is left of it after the collection").to.be.lessThan(IDLE_GC_GARBAGE_MIN_BYTES / 4);
  });

  it("QM_IDLE_GC_MIB sets the growth that triggers it, 32 MiB unless told, and 0 turns the collector off", () => {
    expect(loadConfig({}).idleGcGarbageBytes).to.equal(IDLE_GC_GARBAGE_MIN_BYTES);
    expect(loadConfig({ QM_IDLE_GC_MIB: "64" }).idleGcGarbageBytes).to.equal(64 * MIB);
    expect(loadConfig({ QM_IDLE_GC_MIB: "0" }).idleGcGarbageBytes).to.equal(0);
    expect(idleCollector(silent, 0)).to.equal(null);
    expect(idleCollector(silent, 64 * MIB)).to.be.instanceOf(IdleCollector);
    for (const bad of ["-1", "lots", "1.5"]) expect(() => loadConfig({ QM_IDLE_GC_MIB: bad })).to.throw(ConfigError, "QM_IDLE_GC_MIB");
  });

  it("with a threshold of its own, collects at that growth and not below", async () => {
    const probe = new FakeProbe();
    collector = new IdleCollector(probe, silent, 60_000, 64 * MIB);
    await collector.start();
    probe.used += 63 * MIB;
    expect(collector.check()).to.equal(false);
    probe.used += MIB;
    expect(collector.check()).to.equal(true);
  });
});
