// Crashes: SIGKILL under load, restarts over the same data directory, sagas
// interrupted at exact steps, and a second process on a data directory in use.

import { spawn } from "node:child_process";
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { ReservationState } from "../../src/gen/quartermaster/v1/inventory";
import { OrderState } from "../../src/gen/quartermaster/v1/order";
import { expectFailure, seedSku, sleep } from "../support/fixtures";
import { afterMs, metricValue, pollUntil } from "../support/metrics";
import {
  call,
  type Clients,
  createClients,
  freePort,
  HEALTH_NOT_SERVING,
  HEALTH_SERVING,
  healthStatus,
  REPO_ROOT,
  SERVER_MAIN,
  type ServerProcess,
  SERVING_DEADLINE_MS,
  startServer,
} from "../support/server_process";

describe("crash recovery (fault)", function () {
  this.timeout(120_000);
  const servers: ServerProcess[] = [];
  const clients: Clients[] = [];

  async function start(dataDir?: string, env: Record<string, string> = {}): Promise<[ServerProcess, Clients]> {
    const server = await startServer({ ...(dataDir === undefined ? {} : { dataDir }), env: { QM_TIMER_TICK_MS: "50", ...env } });
    servers.push(server);
    const c = createClients(server.addr);
    clients.push(c);
    return [server, c];
  }

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.kill();
  });

  it("refuses a second process on the same data directory, and the first keeps serving", async () => {
    const [first, c] = await start();
    const [port, metricsPort] = [await freePort(), await freePort()];
    const second = spawn(process.execPath, [SERVER_MAIN], {
      cwd: REPO_ROOT,
      env: { ...process.env, QM_DATA_DIR: first.dataDir, QM_LISTEN: `127.0.0.1:${port}`, QM_METRICS_LISTEN: `127.0.0.1:${metricsPort}` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    second.stderr?.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => second.once("exit", (c) => resolve(c)));
    expect(code).to.equal(1);
    expect(stderr).to.match(/data directory .* is in use by process \d+/);
    await seedSku(c, "still-1", 3);
    expect((await call(c.inventory, "getSku", { skuId: "still-1" })).onHand).to.equal(3);
  });

  it("keeps every acknowledged reservation, and invents none, across a SIGKILL under load", async () => {
    const [server, c] = await start();
    await seedSku(c, "crash-1", 1_000_000);
    const sent = new Map<string, number>();
    const acked = new Set<string>();
    let stop = false;
    let next = 0;
    const CALLERS = 64;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const id = `k-${next++}`;
        const quantity = (next % 3) + 1;
        sent.set(id, quantity);
        try {
          const r = await call(c.inventory, "reserve", { reservationId: id, skuId: "crash-1", quantity, locationId: "", ttl: { seconds: 3600, nanos: 0 } });
          if (r.quantity !== quantity) throw new Error(`reservation ${id} came back with quantity ${r.quantity}`);
          acked.add(id);
        } catch (error) {
          if ((error as ServiceError).code === undefined) throw error;
          return; // the server is gone
        }
      }
    };
    const load = Promise.all(Array.from({ length: CALLERS }, worker));
    // Kill once a good number of writes is acknowledged, with 64 still in flight.
    const loadDeadline = Date.now() + 60_000;
    while (acked.size < 2000 && Date.now() < loadDeadline) await sleep(10);
    expect(acked.size, `acknowledged within 60 s; server logs:\n${server.logs()}`).to.be.at.least(2000);
    await server.kill();
    stop = true;
    await load;
    expect(acked.size).to.be.at.least(2000);

    const [, c2] = await start(server.dataDir);
    let survivors = 0;
    let unitsHeld = 0;
    const ids = [...sent.keys()];
    for (let i = 0; i < ids.length; i += 200) {
      const batch = ids.slice(i, i + 200);
      const found = await Promise.all(
        batch.map((id) =>
          call(c2.inventory, "getReservation", { reservationId: id, skuId: "crash-1" }).then(
            (r) => r,
            (e: ServiceError) => {
              if (e.code !== GrpcStatus.NOT_FOUND) throw e;
              return undefined;
            },
          ),
        ),
      );
      found.forEach((r, j) => {
        const id = batch[j] as string;
        if (acked.has(id)) expect(r?.state, `acknowledged ${id}`).to.equal(ReservationState.RESERVATION_STATE_RESERVED);
        if (r !== undefined) {
          expect(r.quantity).to.equal(sent.get(id));
          survivors++;
          unitsHeld += r.quantity;
        }
      });
    }
    // Every acknowledged reservation survived; the only others are requests that
    // were in flight at the kill (durable, reply lost), never more than the callers.
    expect(survivors).to.be.at.least(acked.size);
    expect(survivors - acked.size).to.be.at.most(CALLERS);
    const sku = await call(c2.inventory, "getSku", { skuId: "crash-1" });
    expect(sku.reserved).to.equal(unitsHeld);
    expect(sku.onHand).to.equal(1_000_000);
  });

  it("keeps every acknowledged ReserveBatch whole across a SIGKILL under load: a batch's holds on one SKU survive all together or not at all", async () => {
    const [server, c] = await start();
    await seedSku(c, "crash-b", 1_000_000);
    const ITEMS = 100;
    const CALLERS = 4;
    const sent: string[][] = [];
    const acked = new Set<number>();
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const b = sent.length;
        const ids = Array.from({ length: ITEMS }, (_, i) => `kb-${b}-${i}`);
        sent.push(ids);
        try {
          const items = ids.map((reservationId) => ({ reservationId, skuId: "crash-b", quantity: 2, locationId: "", ttl: { seconds: 3600, nanos: 0 } }));
          const r = await call(c.inventory, "reserveBatch", { items });
          if (r.succeeded !== ITEMS) throw new Error(`batch ${b}: ${r.succeeded} of ${ITEMS} succeeded`);
          acked.add(b);
        } catch (error) {
          if ((error as ServiceError).code === undefined) throw error;
          return; // the server is gone
        }
      }
    };
    const load = Promise.all(Array.from({ length: CALLERS }, worker));
    const loadDeadline = Date.now() + 60_000;
    while (acked.size < 30 && Date.now() < loadDeadline) await sleep(10);
    expect(acked.size, `batches acknowledged within 60 s; server logs:\n${server.logs()}`).to.be.at.least(30);
    await server.kill();
    stop = true;
    await load;

    const [, c2] = await start(server.dataDir);
    let wholeBatches = 0;
    for (const [b, ids] of sent.entries()) {
      const found = await Promise.all(
        ids.map((reservationId) =>
          call(c2.inventory, "getReservation", { reservationId, skuId: "crash-b" }).then(
            (r) => r.quantity,
            (e: ServiceError) => {
              if (e.code !== GrpcStatus.NOT_FOUND) throw e;
              return 0;
            },
          ),
        ),
      );
      const present = found.filter((q) => q === 2).length;
      expect(present, `batch ${b}: holds present after restart`).to.be.oneOf(acked.has(b) ? [ITEMS] : [0, ITEMS]);
      if (present === ITEMS) wholeBatches++;
    }
    // The only batches beyond the acknowledged ones were in flight at the kill: at most one per caller.
    expect(wholeBatches - acked.size).to.be.within(0, CALLERS);
    const sku = await call(c2.inventory, "getSku", { skuId: "crash-b" });
    expect(sku.reserved).to.equal(wholeBatches * ITEMS * 2);
    expect(sku.onHand).to.equal(1_000_000);
  });

  it("releases reservations and expires unpaid orders that fell due while the node was down", async () => {
    const [server, c] = await start();
    await seedSku(c, "down-1", 10);
    const held = await call(c.inventory, "reserve", { reservationId: "d-1", skuId: "down-1", quantity: 4, locationId: "", ttl: { seconds: 1, nanos: 0 } });
    const placed = await call(c.order, "createOrder", {
      orderId: "down-order",
      customerId: "c",
      lines: [{ skuId: "down-1", quantity: 5 }],
      paymentTimeout: { seconds: 1, nanos: 0 },
    });
    expect((await call(c.inventory, "getSku", { skuId: "down-1" })).reserved).to.equal(9);
    await server.kill();
    // Both fall due while no node runs.
    await afterMs(Math.max((held.expiresAt as Date).getTime(), (placed.paymentDeadline as Date).getTime()));
    const restartedAtMs = Date.now();
    const [server2, c2] = await start(server.dataDir);
    // Watch /metrics, not the actors: a read would itself expire what is due.
    // The order's wake turn runs its whole release step; any SKU turn first
    // expires the SKU's due holds.
    const turns = (kind: string) => async () => (await metricValue(server2.metricsAddr, `qm_actor_turn_messages_count{kind="${kind}"}`)) >= 1;
    expect(await pollUntil(turns("order"), Date.now() + 10_000), "the order woke by itself").to.equal(true);
    expect(await pollUntil(turns("sku"), Date.now() + 10_000), "the SKU woke by itself").to.equal(true);
    await afterMs(Date.now());
    const readAtMs = Date.now();
    const r = await call(c2.inventory, "getReservation", { reservationId: "d-1", skuId: "down-1" });
    expect(r.state).to.equal(ReservationState.RESERVATION_STATE_EXPIRED);
    expect((r.updatedAt as Date).getTime()).to.be.within(restartedAtMs, readAtMs - 1);
    const o = await call(c2.order, "getOrder", { orderId: "down-order" });
    expect(o.state).to.equal(OrderState.ORDER_STATE_EXPIRED);
    expect((o.updatedAt as Date).getTime()).to.be.within(restartedAtMs, readAtMs - 1);
    const s = await call(c2.inventory, "getSku", { skuId: "down-1" });
    expect([s.onHand, s.reserved, s.available]).to.deep.equal([10, 0, 10]);
    expect(server2.pid).to.not.equal(server.pid);
  });

  for (const point of ["order.saga.intent", "order.saga.outcome"] as const) {
    it(`finishes an order whose saga was killed at ${point}, by itself after restart, without double holds`, async () => {
      const [seeder, c] = await start();
      await seedSku(c, "saga-a", 10);
      await seedSku(c, "saga-b", 10);
      await seeder.stop();
      const [crashing, c1] = await start(seeder.dataDir, { QM_FAULT_CRASH_POINTS: point });
      const failed = await call(c1.order, "createOrder", {
        orderId: "saga-1",
        customerId: "c",
        lines: [
          { skuId: "saga-a", quantity: 2 },
          { skuId: "saga-b", quantity: 3 },
        ],
        paymentTimeout: undefined,
      }).then(
        () => undefined,
        (e: ServiceError) => e,
      );
      expect(failed?.code, "the node died during the call").to.equal(GrpcStatus.UNAVAILABLE);
      await crashing.kill();

      const [, c2] = await start(seeder.dataDir);
      // Watch the SKUs, not the order: the saga must resume without being asked.
      const deadline = Date.now() + 5000;
      let items = (await call(c2.inventory, "getAvailability", { skuIds: ["saga-a", "saga-b"] })).items;
      while (Date.now() < deadline && items.some((i) => i.reserved === 0)) {
        await sleep(50);
        items = (await call(c2.inventory, "getAvailability", { skuIds: ["saga-a", "saga-b"] })).items;
      }
      expect(items.map((i) => [i.skuId, i.reserved])).to.deep.equal([
        ["saga-a", 2],
        ["saga-b", 3],
      ]);
      const o = await call(c2.order, "getOrder", { orderId: "saga-1" });
      expect(o.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
      const paid = await call(c2.order, "confirmPayment", { orderId: "saga-1", paymentReference: "p" });
      expect(paid.state).to.equal(OrderState.ORDER_STATE_PAID);
      const after = (await call(c2.inventory, "getAvailability", { skuIds: ["saga-a", "saga-b"] })).items;
      expect(after.map((i) => [i.reserved, i.committed, i.available])).to.deep.equal([
        [0, 2, 8],
        [0, 3, 7],
      ]);
    });
  }

  it("drains on SIGTERM: calls whose appends were stalled in flight when the signal came all succeed, and the process exits 0", async () => {
    const STALL_MS = 3000;
    const CALLS = 32;
    const [seeder, c0] = await start();
    await seedSku(c0, "drain-1", 100_000);
    await seeder.stop();
    // Every append now waits STALL_MS before it is issued, so no reservation can
    // be answered before then: the signal is sent while all of them are provably
    // inside the server, their events handed to stalled appends.
    const [server, c] = await start(seeder.dataDir, { QM_FAULT_DELAYS: `journal.append=${STALL_MS}` });
    const settled: string[] = []; // outcomes in the order the calls finished
    const inflight = Array.from({ length: CALLS }, (_, i) =>
      call(c.inventory, "reserve", { reservationId: `dr-${i}`, skuId: "drain-1", quantity: 1, locationId: "", ttl: undefined }).then(
        () => settled.push("ok"),
        (e: ServiceError) => settled.push(GrpcStatus[e.code] ?? String(e.code)),
      ),
    );
    const stalledEvents = (): number =>
      [...server.logs().matchAll(/fault delay journal\.append: \d+ ms \((\d+) events of sku\/drain-1\)/g)].reduce((n, m) => n + Number(m[1]), 0);
    const deadline = Date.now() + 10_000;
    while (stalledEvents() < CALLS && Date.now() < deadline) await sleep(5);
    expect(stalledEvents(), "every reservation is in a stalled append").to.equal(CALLS);
    expect(settled, "no call was answered before SIGTERM").to.deep.equal([]);
    const code = await server.stop();
    await Promise.all(inflight);
    expect(code).to.equal(0);
    expect(settled).to.deep.equal(Array.from({ length: CALLS }, () => "ok"));
    // They were durable before the replies went out: a restart shows every unit held.
    const [, c2] = await start(server.dataDir);
    const sku = await call(c2.inventory, "getSku", { skuId: "drain-1" });
    expect([sku.onHand, sku.reserved]).to.deep.equal([100_000, CALLS]);
  });

  it("reports NOT_SERVING and refuses calls with UNAVAILABLE while a slow recovery runs, then SERVING", async () => {
    const STALL_MS = 4000;
    const [seeder, c0] = await start();
    await seedSku(c0, "recover-1", 5);
    await seeder.stop();
    // The start-up pass over due wake-ups stalls, so recovery visibly takes STALL_MS.
    const server = await startServer({ dataDir: seeder.dataDir, env: { QM_FAULT_DELAYS: `journal.dueWakeups=${STALL_MS}` }, waitServing: false });
    servers.push(server);
    const c = createClients(server.addr);
    clients.push(c);
    const stallDeadline = Date.now() + SERVING_DEADLINE_MS;
    while (!server.logs().includes("fault delay journal.dueWakeups") && Date.now() < stallDeadline) await sleep(5);
    expect(server.logs()).to.contain("fault delay journal.dueWakeups");
    const seen: number[] = [await healthStatus(server.addr)];
    expect(seen[0], "health while recovery is stalled").to.equal(HEALTH_NOT_SERVING);
    const refused = await expectFailure(call(c.inventory, "getSku", { skuId: "recover-1" }), GrpcStatus.UNAVAILABLE);
    expect(refused.details).to.contain("recovery is not finished");
    const servingDeadline = Date.now() + SERVING_DEADLINE_MS;
    while (seen[seen.length - 1] !== HEALTH_SERVING && Date.now() < servingDeadline) {
      await sleep(20);
      seen.push(await healthStatus(server.addr));
    }
    expect(seen[seen.length - 1], `statuses seen: ${seen.join(",")}`).to.equal(HEALTH_SERVING);
    // Once: NOT_SERVING then SERVING, never back.
    expect(seen.indexOf(HEALTH_SERVING)).to.equal(seen.length - 1);
    expect((await call(c.inventory, "getSku", { skuId: "recover-1" })).onHand).to.equal(5);
  });
});

