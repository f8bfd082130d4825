// InventoryService against a real server process on a random loopback port.

import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { AdjustmentReason, ReservationState } from "../../src/gen/quartermaster/v1/inventory";
import { expectFailure, seedSku, type SkuOptions } from "../support/fixtures";
import { afterMs, metricValue, pollUntil } from "../support/metrics";
import { call, type Clients, createClients, decodeStatusDetails, type ServerProcess, startServer } from "../support/server_process";

describe("InventoryService (integration)", function () {
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    // Short idle time so that expiry is also tested on passivated actors.
    server = await startServer({ env: { QM_ACTOR_IDLE_MS: "200", QM_TIMER_TICK_MS: "50" } });
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
  });

  const sku = (skuId: string, onHand: number, options?: SkuOptions): Promise<void> => seedSku(c, skuId, onHand, options);

  it("upserts a SKU and returns it with levels, totals and a growing version", async () => {
    await sku("inv-1", 0);
    const first = await call(c.inventory, "getSku", { skuId: "inv-1" });
    expect(first.title).to.equal("Item inv-1");
    expect(first.attributes).to.deep.equal({ colour: "blue" });
    expect(first.levels).to.deep.equal([]);
    await call(c.inventory, "adjustStock", {
      skuId: "inv-1",
      locationId: "wh-2",
      delta: 7,
      reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
      note: "",
      idempotencyKey: "",
    });
    const second = await call(c.inventory, "getSku", { skuId: "inv-1" });
    expect(second.levels).to.deep.equal([{ locationId: "wh-2", onHand: 7, reserved: 0, committed: 0, available: 7 }]);
    expect(second.onHand).to.equal(7);
    expect(second.available).to.equal(7);
    expect(second.version).to.be.greaterThan(first.version);
  });

  it("answers NOT_FOUND for an unknown SKU", async () => {
    const e = await expectFailure(call(c.inventory, "getSku", { skuId: "nope" }), GrpcStatus.NOT_FOUND);
    expect(e.details).to.contain("nope");
  });

  it("gives exactly 100 of 1000 concurrent reservations of one unit on a SKU with 100 units", async () => {
    await sku("hot-1", 100);
    const results = await Promise.allSettled(
      Array.from({ length: 1000 }, (_, i) =>
        call(c.inventory, "reserve", { reservationId: `race-${i}`, skuId: "hot-1", quantity: 1, locationId: "", ttl: undefined }, { deadlineMs: 30_000 }),
      ),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    expect(ok.length).to.equal(100);
    expect(failed.length).to.equal(900);
    for (const f of failed) {
      const e = f.reason as ServiceError;
      expect(e.code).to.equal(GrpcStatus.FAILED_PRECONDITION);
      expect(decodeStatusDetails(e).errorInfo?.reason).to.equal("INSUFFICIENT_STOCK");
    }
    const after = await call(c.inventory, "getSku", { skuId: "hot-1" });
    expect(after.reserved).to.equal(100);
    expect(after.available).to.equal(0);
  });

  it("returns the same reservation for a retried id and changes nothing", async () => {
    await sku("idem-1", 10);
    const first = await call(c.inventory, "reserve", { reservationId: "r-1", skuId: "idem-1", quantity: 3, locationId: "", ttl: undefined });
    const again = await call(c.inventory, "reserve", { reservationId: "r-1", skuId: "idem-1", quantity: 3, locationId: "", ttl: undefined });
    expect(again).to.deep.equal(first);
    const level = await call(c.inventory, "getSku", { skuId: "idem-1" });
    expect(level.reserved).to.equal(3);
    const e = await expectFailure(
      call(c.inventory, "reserve", { reservationId: "r-1", skuId: "idem-1", quantity: 4, locationId: "", ttl: undefined }),
      GrpcStatus.ALREADY_EXISTS,
    );
    expect(decodeStatusDetails(e).errorInfo?.reason).to.equal("IDEMPOTENCY_KEY_REUSED");
    expect((await call(c.inventory, "getSku", { skuId: "idem-1" })).reserved).to.equal(3);
  });

  it("replays an adjustment with the same idempotency key without applying it twice", async () => {
    await sku("idem-2", 0);
    const req = {
      skuId: "idem-2",
      locationId: "wh-1",
      delta: 5,
      reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
      note: "po-17",
      idempotencyKey: "po-17",
    };
    const first = await call(c.inventory, "adjustStock", req);
    const second = await call(c.inventory, "adjustStock", req);
    expect(second).to.deep.equal(first);
    expect((await call(c.inventory, "getSku", { skuId: "idem-2" })).onHand).to.equal(5);
    const page = await call(c.inventory, "listAdjustments", { skuId: "idem-2", pageSize: 0, pageToken: "" });
    expect(page.adjustments).to.have.length(1);
  });

  it("commits and releases reservations, moving units between reserved, committed and available", async () => {
    await sku("flow-1", 10);
    await call(c.inventory, "reserve", { reservationId: "a", skuId: "flow-1", quantity: 4, locationId: "wh-1", ttl: undefined });
    await call(c.inventory, "reserve", { reservationId: "b", skuId: "flow-1", quantity: 2, locationId: "", ttl: undefined });
    const committed = await call(c.inventory, "commitReservation", { reservationId: "a", skuId: "flow-1" });
    expect(committed.state).to.equal(ReservationState.RESERVATION_STATE_COMMITTED);
    expect(committed.expiresAt).to.equal(undefined);
    let s = await call(c.inventory, "getSku", { skuId: "flow-1" });
    expect([s.onHand, s.reserved, s.committed, s.available]).to.deep.equal([10, 2, 4, 4]);
    const released = await call(c.inventory, "releaseReservation", { reservationId: "b", skuId: "flow-1" });
    expect(released.state).to.equal(ReservationState.RESERVATION_STATE_RELEASED);
    s = await call(c.inventory, "getSku", { skuId: "flow-1" });
    expect([s.onHand, s.reserved, s.committed, s.available]).to.deep.equal([10, 0, 4, 6]);
    // Releasing again is a no-op that answers the same.
    expect((await call(c.inventory, "releaseReservation", { reservationId: "b", skuId: "flow-1" })).state).to.equal(
      ReservationState.RESERVATION_STATE_RELEASED,
    );
    const e = await expectFailure(call(c.inventory, "commitReservation", { reservationId: "b", skuId: "flow-1" }), GrpcStatus.FAILED_PRECONDITION);
    expect(decodeStatusDetails(e).errorInfo?.metadata.state).to.equal("RELEASED");
    await expectFailure(call(c.inventory, "commitReservation", { reservationId: "zz", skuId: "flow-1" }), GrpcStatus.NOT_FOUND);
  });

  it("holds back safety stock from availability and from reservations", async () => {
    await sku("safe-1", 10, { safetyStock: 3 });
    const s = await call(c.inventory, "getSku", { skuId: "safe-1" });
    expect(s.available).to.equal(7);
    await expectFailure(call(c.inventory, "reserve", { reservationId: "x", skuId: "safe-1", quantity: 8, locationId: "", ttl: undefined }), GrpcStatus.FAILED_PRECONDITION);
    const r = await call(c.inventory, "reserve", { reservationId: "y", skuId: "safe-1", quantity: 7, locationId: "", ttl: undefined });
    expect(r.quantity).to.equal(7);
  });

  it("lets a backorder SKU reserve beyond its stock", async () => {
    await sku("back-1", 2, { allowBackorder: true });
    const r = await call(c.inventory, "reserve", { reservationId: "bo", skuId: "back-1", quantity: 50, locationId: "", ttl: undefined });
    expect(r.state).to.equal(ReservationState.RESERVATION_STATE_RESERVED);
    const s = await call(c.inventory, "getSku", { skuId: "back-1" });
    expect(s.reserved).to.equal(50);
    expect(s.available).to.equal(0);
  });

  it("refuses to adjust on_hand below the units held for reservations", async () => {
    await sku("held-1", 10);
    await call(c.inventory, "reserve", { reservationId: "h", skuId: "held-1", quantity: 6, locationId: "wh-1", ttl: undefined });
    const e = await expectFailure(
      call(c.inventory, "adjustStock", {
        skuId: "held-1",
        locationId: "wh-1",
        delta: -5,
        reason: AdjustmentReason.ADJUSTMENT_REASON_DAMAGED,
        note: "",
        idempotencyKey: "",
      }),
      GrpcStatus.FAILED_PRECONDITION,
    );
    expect(e.details).to.contain("below");
    expect((await call(c.inventory, "getSku", { skuId: "held-1" })).onHand).to.equal(10);
  });

  it("pages the adjustment audit log oldest first", async () => {
    await sku("audit-1", 0);
    for (let i = 1; i <= 5; i++) {
      await call(c.inventory, "adjustStock", {
        skuId: "audit-1",
        locationId: "wh-1",
        delta: i,
        reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
        note: `n${i}`,
        idempotencyKey: "",
      });
    }
    const p1 = await call(c.inventory, "listAdjustments", { skuId: "audit-1", pageSize: 2, pageToken: "" });
    expect(p1.adjustments.map((a) => a.delta)).to.deep.equal([1, 2]);
    expect(p1.nextPageToken).to.not.equal("");
    const p2 = await call(c.inventory, "listAdjustments", { skuId: "audit-1", pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.adjustments.map((a) => a.delta)).to.deep.equal([3, 4]);
    const p3 = await call(c.inventory, "listAdjustments", { skuId: "audit-1", pageSize: 2, pageToken: p2.nextPageToken });
    expect(p3.adjustments.map((a) => [a.delta, a.onHandAfter, a.note])).to.deep.equal([[5, 15, "n5"]]);
    expect(p3.nextPageToken).to.equal("");
  });

  it("reports availability for many SKUs at once, with found=false for unknown ones", async () => {
    await sku("av-1", 4);
    await sku("av-2", 9);
    const res = await call(c.inventory, "getAvailability", { skuIds: ["av-1", "missing", "av-2"] });
    expect(res.items.map((i) => [i.skuId, i.found, i.onHand, i.available])).to.deep.equal([
      ["av-1", true, 4, 4],
      ["missing", false, 0, 0],
      ["av-2", true, 9, 9],
    ]);
    expect(res.items[0]?.version).to.be.greaterThan(0);
  });

  it("expires a reservation by itself at its time, even when its SKU actor was passivated", async () => {
    await sku("exp-1", 5);
    const r = await call(c.inventory, "reserve", {
      reservationId: "e1",
      skuId: "exp-1",
      quantity: 5,
      locationId: "",
      ttl: { seconds: 3, nanos: 0 },
    });
    const expiresAtMs = (r.expiresAt as Date).getTime();
    const events = (): Promise<number> => metricValue(server.metricsAddr, "qm_journal_events_total");
    const written = await events();
    // Watched through /metrics only: any call to the SKU would wake its actor.
    const passivated = await pollUntil(async () => (await metricValue(server.metricsAddr, "qm_actors_active")) === 0, expiresAtMs);
    expect(passivated, "every actor passivated (idle 200 ms) before the hold fell due").to.equal(true);
    expect(await events(), "nothing written before the hold's time").to.equal(written);
    expect(await pollUntil(async () => (await events()) > written, expiresAtMs + 10_000), "the timer wrote the expiry").to.equal(true);
    const observedAtMs = Date.now();
    await afterMs(observedAtMs);
    const readAtMs = Date.now();
    const seen = await call(c.inventory, "getReservation", { reservationId: "e1", skuId: "exp-1" });
    expect(seen.state).to.equal(ReservationState.RESERVATION_STATE_EXPIRED);
    const expiredAtMs = (seen.updatedAt as Date).getTime();
    expect(expiredAtMs).to.be.at.least(expiresAtMs);
    expect(expiredAtMs, "expired by the timer, before this read").to.be.below(readAtMs);
    const s = await call(c.inventory, "getSku", { skuId: "exp-1" });
    expect([s.reserved, s.available]).to.deep.equal([0, 5]);
    // A lapsed hold cannot be committed.
    await expectFailure(call(c.inventory, "commitReservation", { reservationId: "e1", skuId: "exp-1" }), GrpcStatus.FAILED_PRECONDITION);
  });
});
