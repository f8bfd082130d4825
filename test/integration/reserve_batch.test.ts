// ReserveBatch against a real server process: per-item outcomes, idempotency,
// one turn per SKU, and validation that rejects the whole call.

import { status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { type ReserveBatchResponse, type ReserveRequest, ReservationState } from "../../src/gen/quartermaster/v1/inventory";
import { expectFailure, seedSku } from "../support/fixtures";
import { call, type Clients, createClients, decodeStatusDetails, type ServerProcess, startServer } from "../support/server_process";

function item(reservationId: string, skuId: string, quantity: number, ttlSeconds?: number): ReserveRequest {
  return { reservationId, skuId, quantity, locationId: "", ttl: ttlSeconds === undefined ? undefined : { seconds: ttlSeconds, nanos: 0 } };
}

/** Each result as [reservation id, state] or [reason, gRPC code], in request order. */
function outcomes(r: ReserveBatchResponse): (string | number)[][] {
  return r.results.map((x) => {
    const o = x.outcome;
    if (o?.$case === "reservation") return [o.reservation.reservationId, ReservationState[o.reservation.state]];
    if (o?.$case === "error") return [o.error.reason, o.error.code];
    return ["none"];
  });
}

describe("ReserveBatch (integration)", function () {
  this.timeout(60_000);
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    server = await startServer();
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
  });

  const stock = async (skuId: string): Promise<[number, number]> => {
    const s = await call(c.inventory, "getSku", { skuId });
    return [s.onHand, s.reserved];
  };

  it("decides each item on its own: reserved, INSUFFICIENT_STOCK, NOT_FOUND and a reused id, in request order", async () => {
    await seedSku(c, "bb-a", 5);
    await seedSku(c, "bb-b", 2);
    const r = await call(c.inventory, "reserveBatch", {
      items: [
        item("m-1", "bb-a", 3),
        item("m-2", "bb-b", 2),
        item("m-3", "bb-a", 3), // 2 left after m-1
        item("m-4", "bb-missing", 1),
        item("m-5", "bb-a", 2), // still fits: m-3 took nothing
        item("m-1", "bb-a", 4), // same id, other quantity
      ],
    });
    expect(outcomes(r)).to.deep.equal([
      ["m-1", "RESERVATION_STATE_RESERVED"],
      ["m-2", "RESERVATION_STATE_RESERVED"],
      ["INSUFFICIENT_STOCK", GrpcStatus.FAILED_PRECONDITION],
      ["NOT_FOUND", GrpcStatus.NOT_FOUND],
      ["m-5", "RESERVATION_STATE_RESERVED"],
      ["IDEMPOTENCY_KEY_REUSED", GrpcStatus.ALREADY_EXISTS],
    ]);
    expect([r.succeeded, r.failed]).to.deep.equal([3, 3]);
    const short = r.results[2]?.outcome;
    expect(short?.$case === "error" ? short.error.metadata : {}).to.deep.include({ code: "INSUFFICIENT_STOCK", sku_id: "bb-a", requested: "3", available: "2" });
    expect(await stock("bb-a")).to.deep.equal([5, 5]);
    expect(await stock("bb-b")).to.deep.equal([2, 2]);
    // Each success is the same reservation a single call sees.
    const single = await call(c.inventory, "getReservation", { reservationId: "m-5", skuId: "bb-a" });
    const batched = r.results[4]?.outcome;
    expect(batched?.$case === "reservation" ? batched.reservation : undefined).to.deep.equal(single);
  });

  it("returns the same reservations for a retried batch and changes nothing", async () => {
    await seedSku(c, "bb-idem", 10);
    const items = [item("i-1", "bb-idem", 2, 600), item("i-2", "bb-idem", 3, 600)];
    const first = await call(c.inventory, "reserveBatch", { items });
    const again = await call(c.inventory, "reserveBatch", { items });
    expect(again).to.deep.equal(first);
    expect([first.succeeded, first.failed]).to.deep.equal([2, 0]);
    expect(await stock("bb-idem")).to.deep.equal([10, 5]);
    // The ids are shared with Reserve: a single retry of a batched id is the same hold.
    const single = await call(c.inventory, "reserve", item("i-2", "bb-idem", 3, 600));
    const firstI2 = first.results[1]?.outcome;
    expect(firstI2?.$case === "reservation" ? firstI2.reservation : undefined).to.deep.equal(single);
  });

  it("gives exactly the stock to 1000 one-unit items on one SKU and refuses the rest", async () => {
    await seedSku(c, "bb-hot", 600);
    const r = await call(c.inventory, "reserveBatch", { items: Array.from({ length: 1000 }, (_, i) => item(`h-${i}`, "bb-hot", 1)) });
    expect([r.succeeded, r.failed]).to.deep.equal([600, 400]);
    expect(outcomes(r).slice(599, 601)).to.deep.equal([
      ["h-599", "RESERVATION_STATE_RESERVED"],
      ["INSUFFICIENT_STOCK", GrpcStatus.FAILED_PRECONDITION],
    ]);
    expect(await stock("bb-hot")).to.deep.equal([600, 600]);
  });

  it("rejects the whole batch with INVALID_ARGUMENT naming items[i].field, and reserves nothing", async () => {
    await seedSku(c, "bb-val", 10);
    const e = await expectFailure(
      call(c.inventory, "reserveBatch", { items: [item("v-1", "bb-val", 1), item("v-2", "bb-val", 0), item("", "bb-val", 1, 0)] }),
      GrpcStatus.INVALID_ARGUMENT,
    );
    const fields = decodeStatusDetails(e).badRequest?.fieldViolations.map((v) => v.field);
    expect(fields).to.deep.equal(["items[1].quantity", "items[2].reservation_id", "items[2].ttl"]);
    expect(await stock("bb-val")).to.deep.equal([10, 0]);
    const notFound = await expectFailure(call(c.inventory, "getReservation", { reservationId: "v-1", skuId: "bb-val" }), GrpcStatus.NOT_FOUND);
    expect(notFound.details).to.contain("v-1");
  });

  it("rejects an empty batch and one of 1001 items naming items", async () => {
    const empty = await expectFailure(call(c.inventory, "reserveBatch", { items: [] }), GrpcStatus.INVALID_ARGUMENT);
    expect(decodeStatusDetails(empty).badRequest?.fieldViolations.map((v) => v.field)).to.deep.equal(["items"]);
    const big = await expectFailure(
      call(c.inventory, "reserveBatch", { items: Array.from({ length: 1001 }, (_, i) => item(`b-${i}`, "bb-val", 1)) }),
      GrpcStatus.INVALID_ARGUMENT,
    );
    const violations = decodeStatusDetails(big).badRequest?.fieldViolations ?? [];
    expect(violations.map((v) => v.field)).to.deep.equal(["items"]);
    expect(violations[0]?.description).to.contain("1000");
  });
});
