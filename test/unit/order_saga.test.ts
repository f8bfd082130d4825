// The order saga's retry policies on the real runtime and an LMDB journal,
// with a manual clock whose ticks the test drives. SKU actors are the real
// ones, except that the test can make chosen SKUs fail every request (or
// never answer) before they touch their state.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { createOrderBehavior, type SagaStepResult } from "../../src/actors/order/order_actor";
import { skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { ManualClock } from "../../src/clock";
import type { OrderView } from "../../src/domain/order";
import type { ReservationView, SkuState } from "../../src/domain/sku";
import { type ErrorCode, QmError } from "../../src/errors";
import { Order } from "../../src/gen/quartermaster/v1/order";
import { toOrder } from "../../src/grpc/convert";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { Metrics } from "../../src/observability/metrics";
import { SAGA_ASK_TIMEOUT_MS, WAKEUPS_PER_TICK_MAX } from "../../src/limits";

const HOUR_MS = 3_600_000;

describe("order saga retry policies (manual clock)", function () {
  this.timeout(120_000);
  let dir: string;
  let journal: LmdbJournal;
  let system: ActorSystem;
  let clock: ManualClock;
  /** SKUs that fail every request with this code. */
  const failing = new Map<string, ErrorCode>();
  /** SKUs that never answer until `releaseHung` runs. */
  const hanging = new Set<string>();
  let hung: (() => void)[] = [];
  const asksTo = new Map<string, number>();
  const steps: [string, SagaStepResult][] = [];
  const warnings: Record<string, unknown>[] = [];
  let maxActive = 0;

  const testSku: ActorBehavior<SkuState, SkuMessage> = {
    ...skuBehavior,
    handle(ctx, m) {
      asksTo.set(ctx.key, (asksTo.get(ctx.key) ?? 0) + 1);
      maxActive = Math.max(maxActive, system.activeCount);
      const code = failing.get(ctx.key);
      if (code !== undefined) throw new QmError(code, `injected ${code} from ${ctx.key}`);
      if (hanging.has(ctx.key)) return new Promise((resolve) => hung.push(() => resolve(new QmError("UNAVAILABLE", "released"))));
      return skuBehavior.handle(ctx, m);
    },
  };

  async function boot(activeMax = 100_000): Promise<void> {
    journal = new LmdbJournal({ path: path.join(dir, "journal"), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock });
    await journal.open();
    const order = createOrderBehavior({
      observer: { sagaStep: (step, result) => steps.push([step, result]) },
      logger: { debug: () => undefined, warn: (fields) => warnings.push(fields as Record<string, unknown>) },
    });
    system = new ActorSystem({
      journal,
      clock,
      logger: pino({ level: "silent" }),
      behaviors: [testSku, order] as ActorBehavior<unknown, unknown>[],
      idleMs: 10 * HOUR_MS,
      activeMax,
      timerTickMs: 0,
    });
    await system.start();
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-saga-"));
    clock = new ManualClock();
    failing.clear();
    hanging.clear();
    asksTo.clear();
    steps.length = 0;
    warnings.length = 0;
    maxActive = 0;
  });

  afterEach(async () => {
    for (const release of hung.splice(0)) release();
    await system.stop();
    await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function defineSku(skuId: string, onHand: number): Promise<void> {
    const def = { title: skuId, priceMinor: 100, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
    await system.ask(`sku/${skuId}`, { op: "define", patch: def } satisfies SkuMessage);
    await system.ask(`sku/${skuId}`, { op: "adjust", cmd: { locationId: "wh-1", delta: onHand, reason: "RECEIVED", key: "" }, note: "" });
  }

  function place(orderId: string, skuId: string): Promise<OrderView> {
    const cmd = { customerId: "c-1", lines: [{ skuId, quantity: 1 }], paymentTimeoutMs: HOUR_MS, reservationGraceMs: 60_000 };
    return system.ask<OrderView>(`order/${orderId}`, { op: "place", cmd });
  }

  async function failureOf(p: Promise<unknown>): Promise<QmError> {
    try {
      await p;
    } catch (error) {
      expect(error).to.be.instanceOf(QmError);
      return error as QmError;
    }
    throw new Error("expected a failure");
  }

  /** One timer tick, and every turn it started run to the end. */
  async function tick(): Promise<void> {
    await system.tick();
    await system.whenIdle();
  }

  it("retries a failing reserve step at 1, 2, 4 ... 60 s, parks it after 8 attempts (GetOrder, metric, warning), and resumes it on the next request", async () => {
    await boot();
    failing.set("flaky", "UNAVAILABLE");
    const t0 = clock.nowMs();
    expect((await failureOf(place("o-1", "flaky"))).code).to.equal("UNAVAILABLE");
    const first = await system.ask<OrderView>("order/o-1", { op: "get" });
    expect(first.stalledStep).to.deep.include({ step: "reserve", attempts: 1, reason: "UNAVAILABLE", nextAttemptAtMs: t0 + 1000, parked: false });
    expect((await journal.recover("order/o-1")).wakeAtMs).to.equal(t0 + 1000);

    // Written out, not read from the policy under test: 1 s doubling, at most 60 s.
    const waits = [1000, 2000, 4000, 8000, 16_000, 32_000, 60_000];
    for (const [i, waitMs] of waits.entries()) {
      clock.advance(waitMs - 1);
      await tick();
      expect(asksTo.get("flaky"), `no attempt 1 ms before attempt ${i + 2}`).to.equal(i + 1);
      clock.advance(1);
      await tick();
      expect(asksTo.get("flaky"), `attempt ${i + 2} at +${waitMs} ms`).to.equal(i + 2);
    }
    const parked = await system.ask<OrderView>("order/o-1", { op: "get" });
    expect(parked.stalledStep).to.deep.include({ step: "reserve", attempts: 8, reason: "UNAVAILABLE", nextAttemptAtMs: null, parked: true });
    expect((await journal.recover("order/o-1")).wakeAtMs).to.equal(null);
    // What GetOrder sends, through the wire format.
    const wire = Order.decode(Order.encode(toOrder(parked)).finish());
    expect(wire.stalledStep).to.deep.equal({
      step: "reserve",
      attempts: 8,
      reason: "UNAVAILABLE",
      message: "injected UNAVAILABLE from flaky",
      nextAttemptAt: undefined,
      parked: true,
    });
    expect(steps).to.deep.equal([...Array.from({ length: 7 }, () => ["reserve", "retrying"]), ["reserve", "parked"]]);
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.deep.include({ orderId: "o-1", step: "reserve", attempt: 8, outcome: "parked", code: "UNAVAILABLE" });

    // Parked: the timer leaves it alone for good.
    clock.advance(10 * HOUR_MS);
    await tick();
    expect(asksTo.get("flaky")).to.equal(8);

    // The SKU is back; the client repeats CreateOrder, which resumes the step.
    failing.delete("flaky");
    await defineSku("flaky", 5);
    const placed = await place("o-1", "flaky");
    expect(placed.state).to.equal("AWAITING_PAYMENT");
    expect(placed.stalledStep).to.equal(null);
    expect(steps[steps.length - 1]).to.deep.equal(["reserve", "completed"]);
  });

  it("counts saga steps by step and outcome, and parked steps, in the Prometheus registry", async () => {
    await boot();
    const metrics = new Metrics({
      journalStats: () => journal.stats(),
      activeActors: () => system.activeCount,
      actorFaults: () => system.bugCount,
    });
    metrics.sagaStep("reserve", "retrying");
    metrics.sagaStep("reserve", "retrying");
    metrics.sagaStep("release", "parked");
    const text = await metrics.registry.metrics();
    expect(text).to.include('qm_saga_steps_total{step="reserve",outcome="retrying"} 2');
    expect(text).to.include('qm_saga_steps_total{step="release",outcome="parked"} 1');
    expect(text).to.include('qm_saga_steps_parked_total{step="release"} 1');
  });

  it("parks a release step at once on an error that retrying cannot fix, and keeps the order's holds until a request resumes it", async () => {
    await boot();
    await defineSku("s-1", 5);
    await place("o-2", "s-1");
    failing.set("s-1", "INTERNAL");
    expect((await failureOf(system.ask("order/o-2", { op: "cancel", reason: "changed mind" }))).code).to.equal("INTERNAL");
    const view = await system.ask<OrderView>("order/o-2", { op: "get" });
    expect(view.stalledStep).to.deep.include({ step: "release", attempts: 1, reason: "INTERNAL", parked: true });
    expect(view.state).to.equal("AWAITING_PAYMENT");
    expect(steps).to.deep.include(["release", "parked"]);
    failing.delete("s-1");
    // The hold is still there (reserved), until the repeated cancel resumes the release.
    const held = await system.ask<ReservationView>("sku/s-1", { op: "getReservation", id: "order/o-2/0" });
    expect(held.state).to.equal("RESERVED");
    const cancelled = await system.ask<OrderView>("order/o-2", { op: "cancel", reason: "changed mind" });
    expect(cancelled.state).to.equal("CANCELLED");
    expect(cancelled.stalledStep).to.equal(null);
    const released = await system.ask<ReservationView>("sku/s-1", { op: "getReservation", id: "order/o-2/0" });
    expect(released.state).to.equal("RELEASED");
  });

  it("expires another reservation on time while 1,000 orders' sagas stall on the same node, and retries each stalled order by its backoff, not every tick", async () => {
    await boot();
    failing.set("dead", "UNAVAILABLE");
    await defineSku("live", 10);
    const t0 = clock.nowMs();
    await system.ask("sku/live", { op: "reserve", cmd: { id: "r-live", quantity: 3, locationId: "", ttlMs: 1000 } });
    const stalled = 1000;
    const outcomes = await Promise.allSettled(Array.from({ length: stalled }, (_, i) => place(`stall-${String(i).padStart(4, "0")}`, "dead")));
    expect(outcomes.filter((o) => o.status === "rejected")).to.have.length(stalled);
    expect(asksTo.get("dead")).to.equal(stalled);
    // Every stalled order and the reservation are due by now.
    clock.advance(1500);
    expect(await journal.dueWakeups(clock.nowMs(), WAKEUPS_PER_TICK_MAX)).to.have.length(WAKEUPS_PER_TICK_MAX);
    let ticks = 0;
    while ((await journal.recover("sku/live")).wakeAtMs !== null && ticks < 10) {
      await tick();
      ticks++;
    }
    expect(ticks, "ticks until the reservation expired").to.be.at.most(2);
    const expired = await system.ask<ReservationView>("sku/live", { op: "getReservation", id: "r-live" });
    expect(expired.state).to.equal("EXPIRED");
    expect(expired.updatedAtMs).to.equal(t0 + 1500);
    // A few more ticks inside the 2 s backoff: no stalled order is tried again.
    for (let i = 0; i < 5; i++) {
      clock.advance(250);
      await tick();
    }
    expect(asksTo.get("dead")).to.equal(2 * stalled);
  });

  it("gives a saga ask with no reply DEADLINE_EXCEEDED after SAGA_ASK_TIMEOUT_MS, records the failed attempt, and frees the order's turn", async () => {
    await boot();
    await defineSku("slow", 5);
    hanging.add("slow");
    const placing = place("o-3", "slow");
    // A read queued behind the stuck turn is answered too once its own deadline passes.
    const read = system.ask("order/o-3", { op: "get" }, { deadlineMs: clock.nowMs() + 100 });
    const waitUntil = Date.now() + 5000;
    while (hung.length === 0 && Date.now() < waitUntil) await new Promise((r) => setImmediate(r));
    expect(hung, "the SKU is holding the saga's ask").to.have.length(1);
    clock.advance(SAGA_ASK_TIMEOUT_MS + 1);
    await system.tick();
    expect((await failureOf(read)).code).to.equal("DEADLINE_EXCEEDED");
    expect((await failureOf(placing)).code).to.equal("DEADLINE_EXCEEDED");
    const view = await system.ask<OrderView>("order/o-3", { op: "get" });
    // The backoff counts from when the ask gave up, not from when the turn began.
    expect(view.stalledStep).to.deep.include({
      step: "reserve",
      attempts: 1,
      reason: "DEADLINE_EXCEEDED",
      nextAttemptAtMs: clock.nowMs() + 1000,
      parked: false,
    });
  });

  it("finishes every saga when order actors fill the active-actor bound: their SKU asks use the headroom or back off, none waits on the bound", async () => {
    const activeMax = 20;
    await boot(activeMax);
    for (let i = 0; i < activeMax; i++) await defineSku(`b-${i}`, 5);
    const outcomes = await Promise.allSettled(Array.from({ length: activeMax }, (_, i) => place(`b-${i}`, `b-${i}`)));
    // Every call settles (a deadlock would hang here): placed, or refused for now at the bound.
    for (const o of outcomes) {
      if (o.status === "rejected") expect((o.reason as QmError).code).to.equal("ACTORS_EXHAUSTED");
    }
    // With 2 actors of headroom, most sagas found their SKU refused at first.
    expect(outcomes.filter((o) => o.status === "rejected").length).to.be.greaterThan(0);
    const headroom = 2; // 10% of 20
    expect(maxActive).to.be.at.most(activeMax + headroom);
    // The refused ones are retried by their wake-ups, by the reserve step's backoff.
    for (let i = 0; i < 8; i++) {
      clock.advance(60_000);
      await tick();
    }
    const states = [];
    for (let i = 0; i < activeMax; i++) states.push((await system.ask<OrderView>(`order/b-${i}`, { op: "get" })).state);
    expect(states).to.deep.equal(Array.from({ length: activeMax }, () => "AWAITING_PAYMENT"));
    expect(maxActive).to.be.at.most(activeMax + headroom);
  });
});
