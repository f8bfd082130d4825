// qmctl end to end: a real server process, and the CLI run as its own process
// through bin/qmctl.js, the way an operator or a script runs it. Responses are
// read back through --json and the generated fromJSON.

import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer as createHttp2Server } from "node:http2";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { GetAvailabilityResponse, ListAdjustmentsResponse, Reservation, ReservationState, Sku, StockLevel } from "../../src/gen/quartermaster/v1/inventory";
import { Order, OrderState, TrackingStatus } from "../../src/gen/quartermaster/v1/order";
import { REPO_ROOT, type ServerProcess, freePort, startServer } from "../support/server_process";
import { type ProcessRun, runQmctl } from "../support/run_process";

describe("qmctl against a real server", function () {
  this.timeout(180_000);
  let server: ServerProcess | undefined;

  before(async () => {
    server = await startServer();
  });

  after(async () => {
    if (server === undefined) return;
    const code = await server.stop();
    // SIGTERM drains and exits 0: anything else is a shutdown bug worth failing on.
    expect(code, server.logs()).to.equal(0);
  });

  function addr(): string {
    if (server === undefined) throw new Error("server not started");
    return server.addr;
  }

  async function qm(...args: string[]): Promise<ProcessRun> {
    return runQmctl([...args, "--addr", addr()]);
  }

  /** Runs a command that must succeed with --json and returns its parsed output. */
  async function qmJson(...args: string[]): Promise<unknown> {
    const run = await qm(...args, "--json");
    expect(run.code, `qmctl ${args.join(" ")}\nstderr: ${run.stderr}\nlogs:\n${server?.logs() ?? ""}`).to.equal(0);
    expect(run.stdout.trim().split("\n"), "one JSON object on one line").to.have.length(1);
    return JSON.parse(run.stdout) as unknown;
  }

  async function order(...args: string[]): Promise<Order> {
    return Order.fromJSON(await qmJson("order", ...args));
  }

  async function stock(skuId: string): Promise<{ onHand: number; reserved: number; committed: number; available: number }> {
    const response = GetAvailabilityResponse.fromJSON(await qmJson("availability", skuId));
    const item = response.items[0];
    expect(response.items).to.have.length(1);
    expect(item?.found, `${skuId} found`).to.equal(true);
    return { onHand: item?.onHand ?? -1, reserved: item?.reserved ?? -1, committed: item?.committed ?? -1, available: item?.available ?? -1 };
  }

  async function createSku(skuId: string, units: number): Promise<void> {
    const sku = Sku.fromJSON(await qmJson("sku", "upsert", skuId, "--title", `Widget ${skuId}`, "--price-minor", "1250", "--currency", "USD"));
    expect(sku.skuId).to.equal(skuId);
    expect(sku.title).to.equal(`Widget ${skuId}`);
    expect(sku.priceMinor).to.equal(1250);
    const level = StockLevel.fromJSON(
      await qmJson("sku", "adjust", skuId, "--location", "WH1", "--delta", String(units), "--reason", "received", "--key", `recv-${skuId}`),
    );
    expect(level).to.deep.include({ locationId: "WH1", onHand: units, reserved: 0, committed: 0, available: units });
  }

  it("walks an order from creation through payment, two shipments, delivery and returns", async () => {
    await createSku("SKU-A", 10);
    await createSku("SKU-B", 10);

    const both = GetAvailabilityResponse.fromJSON(await qmJson("availability", "SKU-A", "SKU-B"));
    expect(both.items.map((i) => [i.skuId, i.onHand, i.reserved, i.committed, i.available])).to.deep.equal([
      ["SKU-A", 10, 0, 0, 10],
      ["SKU-B", 10, 0, 0, 10],
    ]);
    const table = await qm("availability", "SKU-A", "SKU-B");
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.match(/^SKU +FOUND +ON_HAND +RESERVED +COMMITTED +AVAILABLE +VERSION$/m);
    expect(table.stdout).to.match(/^SKU-A +yes +10 +0 +0 +10 +\d+$/m);

    const created = await order("create", "o1", "--customer", "c1", "--line", "SKU-A:3", "--line", "SKU-B:2", "--payment-timeout", "30m");
    expect(created.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    expect(created.customerId).to.equal("c1");
    expect(created.lines.map((l) => [l.skuId, l.quantity, l.locationId])).to.deep.equal([
      ["SKU-A", 3, "WH1"],
      ["SKU-B", 2, "WH1"],
    ]);
    expect(created.paymentDeadline?.getTime()).to.be.within(Date.now() + 29 * 60_000, Date.now() + 31 * 60_000);
    expect(await stock("SKU-A")).to.deep.equal({ onHand: 10, reserved: 3, committed: 0, available: 7 });
    expect(await stock("SKU-B")).to.deep.equal({ onHand: 10, reserved: 2, committed: 0, available: 8 });

    const paid = await order("pay", "o1", "--reference", "pay-1");
    expect(paid.state).to.equal(OrderState.ORDER_STATE_PAID);
    expect(paid.paymentReference).to.equal("pay-1");
    expect(await stock("SKU-A")).to.deep.equal({ onHand: 10, reserved: 0, committed: 3, available: 7 });

    const partial = await order("ship", "o1", "--shipment", "s1", "--carrier", "ups", "--tracking", "1Z001", "--line", "SKU-A:1");
    expect(partial.state).to.equal(OrderState.ORDER_STATE_PARTIALLY_SHIPPED);
    expect(partial.lines.map((l) => [l.skuId, l.shippedQuantity])).to.deep.equal([
      ["SKU-A", 1],
      ["SKU-B", 0],
    ]);

    // No --line: everything not yet shipped.
    const shipped = await order("ship", "o1", "--shipment", "s2", "--carrier", "ups", "--tracking", "1Z002");
    expect(shipped.state).to.equal(OrderState.ORDER_STATE_SHIPPED);
    expect(shipped.lines.map((l) => [l.skuId, l.shippedQuantity])).to.deep.equal([
      ["SKU-A", 3],
      ["SKU-B", 2],
    ]);
    expect(shipped.shipments.map((s) => [s.shipmentId, s.lines.map((l) => `${l.skuId}:${l.quantity}`)])).to.deep.equal([
      ["s1", ["SKU-A:1"]],
      ["s2", ["SKU-A:2", "SKU-B:2"]],
    ]);
    // Shipped units leave the building: off on_hand and off committed, so available does not move.
    expect(await stock("SKU-A")).to.deep.equal({ onHand: 7, reserved: 0, committed: 0, available: 7 });
    expect(await stock("SKU-B")).to.deep.equal({ onHand: 8, reserved: 0, committed: 0, available: 8 });

    const hourAgo = new Date(Date.now() - 3600_000).toISOString();
    await order("track", "o1", "--shipment", "s1", "--event", "e1", "--status", "in_transit", "--location", "Memphis", "--occurred-at", hourAgo);
    const oneDelivered = await order("track", "o1", "--shipment", "s1", "--event", "e2", "--status", "delivered", "--description", "front door");
    // One of two shipments delivered is not a delivered order.
    expect(oneDelivered.state).to.equal(OrderState.ORDER_STATE_SHIPPED);
    expect(oneDelivered.shipments[0]?.status).to.equal(TrackingStatus.TRACKING_STATUS_DELIVERED);
    expect(oneDelivered.shipments[0]?.events.map((e) => [e.eventId, e.status, e.location])).to.deep.equal([
      ["e1", TrackingStatus.TRACKING_STATUS_IN_TRANSIT, "Memphis"],
      ["e2", TrackingStatus.TRACKING_STATUS_DELIVERED, ""],
    ]);
    const delivered = await order("track", "o1", "--shipment", "s2", "--event", "e3", "--status", "delivered");
    expect(delivered.state).to.equal(OrderState.ORDER_STATE_DELIVERED);

    const shown = await qm("order", "get", "o1");
    expect(shown.code, shown.stderr).to.equal(0);
    expect(shown.stdout).to.match(/^state +delivered$/m);
    expect(shown.stdout).to.match(/^SKU-A +3 +3 +0 +WH1\b/m);
    expect(shown.stdout).to.match(/^shipment +s1$/m);
    expect(shown.stdout).to.match(/^tracking +1Z001$/m);
    expect(shown.stdout).to.match(/^ +e1 +in_transit +\S+ +Memphis$/m);
    expect(shown.stdout).to.match(/^ +e2 +delivered +\S+ +front door$/m);

    const restocked = await order("return", "o1", "--return", "r1", "--line", "SKU-A:1", "--restock");
    expect(restocked.state).to.equal(OrderState.ORDER_STATE_DELIVERED);
    expect(restocked.lines.map((l) => [l.skuId, l.returnedQuantity])).to.deep.equal([
      ["SKU-A", 1],
      ["SKU-B", 0],
    ]);
    expect(await stock("SKU-A")).to.deep.equal({ onHand: 8, reserved: 0, committed: 0, available: 8 });

    // The rest comes back without restocking (e.g. damaged): the order is RETURNED, stock does not move.
    const returned = await order("return", "o1", "--return", "r2", "--line", "SKU-A:2", "--line", "SKU-B:2");
    expect(returned.state).to.equal(OrderState.ORDER_STATE_RETURNED);
    expect(returned.returns.map((r) => [r.returnId, r.restock])).to.deep.equal([
      ["r1", true],
      ["r2", false],
    ]);
    expect(await stock("SKU-A")).to.deep.equal({ onHand: 8, reserved: 0, committed: 0, available: 8 });
    expect(await stock("SKU-B")).to.deep.equal({ onHand: 8, reserved: 0, committed: 0, available: 8 });

    const log = ListAdjustmentsResponse.fromJSON(await qmJson("adjustments", "SKU-A", "--page-size", "1"));
    expect(log.adjustments).to.have.length(1);
    expect(log.adjustments[0]).to.deep.include({ delta: 10, onHandAfter: 10, idempotencyKey: "recv-SKU-A", locationId: "WH1" });
  });

  it("applies an adjustment once however often its idempotency key is retried", async () => {
    await createSku("SKU-IDEM", 4);
    const again = StockLevel.fromJSON(
      await qmJson("sku", "adjust", "SKU-IDEM", "--location", "WH1", "--delta", "4", "--reason", "received", "--key", "recv-SKU-IDEM"),
    );
    expect(again.onHand).to.equal(4);
    const writeOff = StockLevel.fromJSON(
      await qmJson("sku", "adjust", "SKU-IDEM", "--location", "WH1", "--delta", "-1", "--reason", "damaged", "--note", "dropped"),
    );
    expect(writeOff.onHand).to.equal(3);
    const sku = await qm("sku", "get", "SKU-IDEM");
    expect(sku.code, sku.stderr).to.equal(0);
    expect(sku.stdout).to.match(/^LOCATION +ON_HAND +RESERVED +COMMITTED +AVAILABLE$/m);
    expect(sku.stdout).to.match(/^WH1 +3 +0 +0 +3$/m);
  });

  it("holds, commits and releases a reservation", async () => {
    await createSku("SKU-R", 5);
    const held = Reservation.fromJSON(await qmJson("reserve", "--sku", "SKU-R", "--id", "res-1", "--qty", "2", "--ttl", "15m"));
    expect(held).to.deep.include({ reservationId: "res-1", skuId: "SKU-R", quantity: 2, state: ReservationState.RESERVATION_STATE_RESERVED });
    expect(held.expiresAt?.getTime()).to.be.within(Date.now() + 14 * 60_000, Date.now() + 16 * 60_000);
    expect(await stock("SKU-R")).to.deep.equal({ onHand: 5, reserved: 2, committed: 0, available: 3 });

    const committed = Reservation.fromJSON(await qmJson("commit", "--sku", "SKU-R", "--id", "res-1"));
    expect(committed.state).to.equal(ReservationState.RESERVATION_STATE_COMMITTED);
    expect(await stock("SKU-R")).to.deep.equal({ onHand: 5, reserved: 0, committed: 2, available: 3 });

    const shown = await qm("reservation", "get", "--sku", "SKU-R", "--id", "res-1");
    expect(shown.code, shown.stderr).to.equal(0);
    expect(shown.stdout).to.match(/^state +committed$/m);

    const released = Reservation.fromJSON(await qmJson("release", "--sku", "SKU-R", "--id", "res-1"));
    expect(released.state).to.equal(ReservationState.RESERVATION_STATE_RELEASED);
    expect(await stock("SKU-R")).to.deep.equal({ onHand: 5, reserved: 0, committed: 0, available: 5 });
  });

  it("exits 5 naming INSUFFICIENT_STOCK when a reservation exceeds the stock, and holds nothing", async () => {
    await createSku("SKU-C", 5);
    const run = await qm("reserve", "--sku", "SKU-C", "--id", "too-many", "--qty", "6");
    expect(run.code, run.stderr).to.equal(5);
    expect(run.stdout).to.equal("");
    expect(run.stderr).to.match(/^error: FAILED_PRECONDITION: /);
    expect(run.stderr).to.match(/^ {2}reason: INSUFFICIENT_STOCK\b/m);
    expect(await stock("SKU-C")).to.deep.equal({ onHand: 5, reserved: 0, committed: 0, available: 5 });
  });

  it("reserves from a JSON-lines file with --batch in one call, printing each item's outcome", async () => {
    await createSku("SKU-BATCH", 3);
    const dir = await mkdtemp(path.join(tmpdir(), "qm-batch-"));
    try {
      const file = path.join(dir, "batch.jsonl");
      await writeFile(
        file,
        [
          JSON.stringify({ reservationId: "bt-1", skuId: "SKU-BATCH", quantity: 2, ttl: "10m" }),
          "",
          JSON.stringify({ reservation_id: "bt-2", sku_id: "SKU-BATCH", quantity: 2, location_id: "WH1" }),
          JSON.stringify({ reservationId: "bt-3", skuId: "SKU-BATCH", quantity: 1 }),
        ].join("\n"),
      );
      const json = (await qmJson("reserve", "--batch", file)) as {
        results: { reservation: { reservationId: string; quantity: number } | null; error: { code: number; reason: string } | null }[];
        succeeded: number;
        failed: number;
      };
      expect(json.results.map((r) => [r.reservation?.reservationId ?? null, r.error?.reason ?? null])).to.deep.equal([
        ["bt-1", null],
        [null, "INSUFFICIENT_STOCK"],
        ["bt-3", null],
      ]);
      expect(json.results[1]?.error?.code).to.equal(9);
      expect([json.succeeded, json.failed]).to.deep.equal([2, 1]);
      expect(await stock("SKU-BATCH")).to.deep.equal({ onHand: 3, reserved: 3, committed: 0, available: 0 });
      // Text form, a retry of the same file: the same holds, nothing more reserved.
      const text = await qm("reserve", "--batch", file);
      expect(text.code, text.stderr).to.equal(0);
      expect(text.stdout).to.match(/^ +1 +bt-2 +SKU-BATCH +WH1 +2 +INSUFFICIENT_STOCK: /m);
      expect(text.stdout).to.contain("2 reserved, 1 failed");
      expect(await stock("SKU-BATCH")).to.deep.equal({ onHand: 3, reserved: 3, committed: 0, available: 0 });
      await writeFile(file, '{"reservationId":"bt-9","skuId":"SKU-BATCH","quantity":1,"colour":"red"}\n');
      const bad = await qm("reserve", "--batch", file);
      expect(bad.code).to.equal(2);
      expect(bad.stderr).to.contain("line 1: unknown key \"colour\"");
      const mixed = await qm("reserve", "--batch", file, "--sku", "SKU-BATCH");
      expect(mixed.code).to.equal(2);
      expect(mixed.stderr).to.contain("drop --sku");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("exits 3 naming the field when the quantity is zero", async () => {
    const run = await qm("reserve", "--sku", "SKU-C", "--id", "zero", "--qty", "0");
    expect(run.code, run.stderr).to.equal(3);
    expect(run.stderr).to.match(/^error: INVALID_ARGUMENT: /);
    // The BadRequest field violation, printed as "  field: description".
    expect(run.stderr).to.match(/^ {2}quantity: \S/m);
  });

  it("exits 4 for an unknown order, and prints the error as JSON with --json", async () => {
    const text = await qm("order", "get", "no-such-order");
    expect(text.code, text.stderr).to.equal(4);
    expect(text.stderr).to.match(/^error: NOT_FOUND: /);

    const json = await qm("order", "get", "no-such-order", "--json");
    expect(json.code).to.equal(4);
    expect(json.stdout).to.equal("");
    const parsed = JSON.parse(json.stderr) as { error?: { code?: unknown; codeNumber?: unknown } };
    expect(parsed.error).to.deep.include({ code: "NOT_FOUND", codeNumber: 5 });
  });

  it("cancels an unpaid order, freeing its units, and then refuses to take payment with exit 5", async () => {
    await createSku("SKU-X", 4);
    const created = await order("create", "o-cancel", "--customer", "c2", "--line", "SKU-X:3");
    expect(created.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    expect(await stock("SKU-X")).to.deep.equal({ onHand: 4, reserved: 3, committed: 0, available: 1 });

    const cancelled = await order("cancel", "o-cancel", "--reason", "changed mind");
    expect(cancelled.state).to.equal(OrderState.ORDER_STATE_CANCELLED);
    expect(cancelled.cancelReason).to.equal("changed mind");
    expect(await stock("SKU-X")).to.deep.equal({ onHand: 4, reserved: 0, committed: 0, available: 4 });

    const pay = await qm("order", "pay", "o-cancel", "--reference", "pay-late");
    expect(pay.code, pay.stderr).to.equal(5);
    expect(pay.stderr).to.match(/^error: FAILED_PRECONDITION: /);
    expect(pay.stderr).to.contain("ILLEGAL_TRANSITION");
  });

  it("shows the cluster (one member owning every partition), locates keys, and refuses to drain the only member with exit 5", async () => {
    const status = (await qmJson("cluster", "status")) as { members: { nodeId: string; partitionCount: number; draining: boolean }[]; partitionCount: number };
    expect(status.partitionCount).to.equal(256);
    expect(status.members.map((m) => [m.nodeId, m.partitionCount, m.draining])).to.deep.equal([["local", 256, false]]);
    const text = await qm("cluster", "status");
    expect(text.stdout).to.match(/^NODE\s+ADDRESS\s+STARTED\s+PARTITIONS\s+DRAINING\nlocal\s/);
    expect(await qmJson("cluster", "locate", "sku", "ABC-1")).to.deep.equal({ partition: 143, ownerNodeId: "local", epoch: 1 });
    const badKind = await qm("cluster", "locate", "widget", "x");
    expect(badKind.code, badKind.stderr).to.equal(2);
    const drain = await qm("cluster", "drain", "local");
    expect(drain.code, drain.stderr).to.equal(5);
    expect(drain.stderr).to.contain("NO_OTHER_MEMBER");
    expect((await qm("cluster", "undrain", "local")).code).to.equal(0);
  });
});

describe("qmctl against a real server: addresses, JSON and mistakes", function () {
  this.timeout(180_000);
  let server: ServerProcess | undefined;

  before(async () => {
    server = await startServer();
  });

  after(async () => {
    if (server === undefined) return;
    const code = await server.stop();
    expect(code, server.logs()).to.equal(0);
  });

  function addr(): string {
    if (server === undefined) throw new Error("server not started");
    return server.addr;
  }

  function port(): string {
    return addr().slice(addr().lastIndexOf(":") + 1);
  }

  it("reaches the server through a bare port, :port, http:// and dns: forms of --addr, and through QM_ADDR", async () => {
    for (const form of [port(), `:${port()}`, `http://127.0.0.1:${port()}`, `dns:127.0.0.1:${port()}`, `dns:///127.0.0.1:${port()}`]) {
      const run = await runQmctl(["availability", "NOPE", "--addr", form]);
      expect(run.code, `${form}: ${run.stderr}`).to.equal(0);
      // No Node deprecation warning, no grpc-js noise: a clean stderr.
      expect(run.stderr, form).to.equal("");
      expect(run.stdout, form).to.match(/^NOPE +no +- +- +- +- +-$/m);
    }
    const fromEnv = await runQmctl(["availability", "NOPE"], { QM_ADDR: `:${port()}` });
    expect(fromEnv.code, fromEnv.stderr).to.equal(0);
  });

  it("tries [::1]:port as IPv6, and says so when nothing listens there", async () => {
    // The server listens on 127.0.0.1 only, so the IPv6 loopback refuses: the form was read, the address is wrong.
    const run = await runQmctl(["availability", "NOPE", "--addr", `[::1]:${port()}`]);
    expect(run.code, run.stderr).to.equal(6);
    expect(run.stderr.split("\n")[0]).to.match(new RegExp(`^error: cannot reach a Quartermaster server at \\[::1\\]:${port()} \\(--addr\\): `));
  });

  it("prints every field with --json: found false and zeros for an unknown SKU, reserved 0 for an untouched one", async () => {
    const unknown = await runQmctl(["availability", "NOPE", "--json", "--addr", addr()]);
    expect(unknown.code, unknown.stderr).to.equal(0);
    expect(unknown.stdout).to.equal(
      '{"items":[{"skuId":"NOPE","found":false,"onHand":0,"reserved":0,"committed":0,"available":0,"version":0}]}\n',
    );
    const upsert = await runQmctl(["sku", "upsert", "SKU-J", "--title", "Mug", "--currency", "eur", "--json", "--addr", addr()]);
    expect(upsert.code, upsert.stderr).to.equal(0);
    const sku = JSON.parse(upsert.stdout) as Record<string, unknown>;
    // The currency went in lower case and qmctl upper-cased it, so the server accepted it. 0 available <= threshold 0 is low stock.
    expect(sku).to.deep.include({ skuId: "SKU-J", currency: "EUR", reserved: 0, onHand: 0, allowBackorder: false, lowStock: true, levels: [] });
    expect(Object.keys(sku)).to.have.length(17);
  });

  it("spells order states as proto names in --json and short names in text", async () => {
    const run = (...args: string[]): Promise<ProcessRun> => runQmctl([...args, "--addr", addr()]);
    expect((await run("sku", "upsert", "SKU-E", "--title", "Mug", "--currency", "USD")).code).to.equal(0);
    expect((await run("sku", "adjust", "SKU-E", "--location", "WH1", "--delta", "5", "--reason", "received")).code).to.equal(0);
    expect((await run("order", "create", "o-e", "--customer", "c", "--line", "SKU-E:1")).code).to.equal(0);
    const paid = await run("order", "pay", "o-e", "--reference", "p", "--json");
    expect(paid.code, paid.stderr).to.equal(0);
    const order = JSON.parse(paid.stdout) as { state?: unknown; lines?: { shippedQuantity?: unknown }[]; cancelReason?: unknown };
    expect(order.state).to.equal("ORDER_STATE_PAID");
    expect(order.lines?.[0]?.shippedQuantity).to.equal(0);
    expect(order.cancelReason).to.equal("");
    const text = await run("order", "get", "o-e");
    expect(text.stdout).to.match(/^state +paid$/m);
  });

  it("names an unknown flag in two lines with a suggestion, exit 2, and calls nothing", async () => {
    const run = await runQmctl(["reserve", "--sku", "SKU-E", "--id", "r-typo", "--qyt", "1", "--addr", addr()]);
    expect(run.code).to.equal(2);
    expect(run.stdout).to.equal("");
    expect(run.stderr).to.equal('error: unknown flag --qyt for "reserve"; did you mean --qty?\nRun "qmctl reserve --help" for its flags.\n');
  });
});

describe("qmctl without a server", function () {
  this.timeout(60_000);

  it("exits 6 naming the address and the setting when nothing listens at --addr", async () => {
    const port = await freePort();
    const run = await runQmctl(["sku", "get", "SKU-A", "--addr", `127.0.0.1:${port}`, "--timeout", "5000"]);
    expect(run.code, run.stderr).to.equal(6);
    expect(run.stderr).to.equal(
      `error: cannot reach a Quartermaster server at 127.0.0.1:${port} (--addr): connection refused\n  Is the server running there, and is --addr right?\n`,
    );
    const json = await runQmctl(["sku", "get", "SKU-A", "--json"], { QM_ADDR: `127.0.0.1:${port}` });
    expect(json.code).to.equal(6);
    expect(JSON.parse(json.stderr)).to.deep.include({
      error: {
        code: "UNAVAILABLE",
        codeNumber: 14,
        message: `cannot reach a Quartermaster server at 127.0.0.1:${port} (QM_ADDR): connection refused`,
        addr: `127.0.0.1:${port}`,
        addrSource: "QM_ADDR",
      },
    });
  });

  it("exits 6 saying the address answers HTTP, not gRPC, when a plain HTTP/2 server listens there", async () => {
    // grpc-js reports such a reply as UNIMPLEMENTED, as if one method were missing; the address is what is wrong.
    const web = createHttp2Server((_req, res) => {
      res.statusCode = 404;
      res.end();
    });
    await new Promise<void>((resolve) => web.listen(0, "127.0.0.1", resolve));
    try {
      const address = web.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      const run = await runQmctl(["availability", "A", "--addr", `127.0.0.1:${port}`]);
      expect(run.code, run.stderr).to.equal(6);
      expect(run.stderr).to.equal(
        `error: cannot reach a Quartermaster server at 127.0.0.1:${port} (--addr): it answers HTTP 404, not gRPC\n  Is the server running there, and is --addr right?\n`,
      );
    } finally {
      await new Promise<void>((resolve) => web.close(() => resolve()));
    }
  });

  it("exits 2 for a malformed address, before any connection attempt", async () => {
    const run = await runQmctl(["sku", "get", "SKU-A", "--addr", "https://localhost:1/v1"]);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/^error: --addr "https:\/\/localhost:1\/v1": a path cannot be part of a gRPC address/);
    const env = await runQmctl(["sku", "get", "SKU-A"], { QM_ADDR: "localhost" });
    expect(env.code).to.equal(2);
    expect(env.stderr).to.equal(
      'error: QM_ADDR="localhost": no port; expected HOST:PORT, e.g. localhost:50051 ' +
        "(accepted: HOST:PORT, :PORT, PORT, [IPv6]:PORT, http://HOST:PORT, https://HOST:PORT or dns:HOST:PORT)\n" +
        'Run "qmctl sku get --help" for its flags.\n',
    );
  });

  it("exits 2 and prints the synopsis for a malformed command line", async () => {
    const run = await runQmctl(["order", "create", "o1", "--customer", "c1", "--line", "SKU-A"]);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.equal(
      'error: --line: "SKU-A" is not SKU:QTY\n' +
        "Usage: qmctl order create <order-id> --customer ID --line SKU:QTY... [flags]\n" +
        'Run "qmctl order create --help" for its flags.\n',
    );
  });

  it("exits 0 for --help and documents the exit codes", async () => {
    const run = await runQmctl(["--help"]);
    expect(run.code).to.equal(0);
    expect(run.stdout).to.match(/^ {2}4 +NOT_FOUND$/m);
    expect(run.stdout).to.match(/^ {2}8 +PERMISSION_DENIED$/m);
  });

  it("prints the package version for --version", async () => {
    const pkg = JSON.parse(await readFile(path.join(REPO_ROOT, "package.json"), "utf8")) as { version: string };
    const run = await runQmctl(["--version"]);
    expect(run).to.deep.equal({ code: 0, stdout: `qmctl ${pkg.version}\n`, stderr: "" });
  });

  it("runs as plain `qmctl` on the PATH after `npm install -g .` from the clone, as the README says", async () => {
    const prefix = await mkdtemp(path.join(tmpdir(), "qmctl-prefix-"));
    try {
      // --offline: installing the clone itself needs nothing from a registry, and must not fetch a package called qmctl.
      const install = await runQmctl(["install", "-g", "--prefix", prefix, ".", "--offline", "--no-audit", "--no-fund"], {}, ["npm"]);
      expect(install.code, install.stderr).to.equal(0);
      const pathEnv = [path.join(prefix, "bin"), path.dirname(process.execPath), process.env["PATH"] ?? ""].join(path.delimiter);
      const version = await runQmctl(["--version"], { PATH: pathEnv }, ["qmctl"]);
      expect(version.code, version.stderr).to.equal(0);
      expect(version.stdout).to.match(/^qmctl \d+\.\d+\.\d+\n$/);
    } finally {
      await rm(prefix, { recursive: true, force: true });
    }
  });
});
