// Asks between two nodes over a real nats-server: orders live on node A,
// SKUs on node B, each node with its own actor system and LMDB journal.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { connect, type NatsConnection } from "nats";
import pino from "pino";
import { orderActorId, orderBehavior } from "../../src/actors/order/order_actor";
import { skuActorId, skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior, ActorRouter } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import { askSubject, NatsTransport } from "../../src/cluster/nats_transport";
import type { NodeId, Placement } from "../../src/cluster/placement";
import { PlacementRouter } from "../../src/cluster/placement_router";
import type { OrderView } from "../../src/domain/order";
import type { SkuView } from "../../src/domain/sku";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { PAYMENT_TIMEOUT_MS_DEFAULT } from "../../src/limits";
import { type NatsProcess, startNats } from "../support/engines";
import { qmRejectionOf } from "../support/qm_error";
import { ByKindPlacement } from "../support/by_kind_placement";
import { DEFAULT_TENANT } from "../../src/security/caller";


interface TestNode {
  readonly router: PlacementRouter;
  readonly system: ActorSystem;
  readonly journal: LmdbJournal;
  readonly transport: NatsTransport;
  readonly nc: NatsConnection;
}


describe("NATS transport between nodes (integration, real nats-server)", function () {
  this.timeout(60_000);
  let nats: NatsProcess;
  const dirs: string[] = [];
  const nodes: TestNode[] = [];
  /** Every ask's outcome as the sending transport reported it (qm_nats_ask_duration_seconds). */
  const asks: { from: NodeId; outcome: string; seconds: number }[] = [];
  let a: TestNode;
  let b: TestNode;

  async function node(id: NodeId, local?: ActorRouter, placement: Placement = new ByKindPlacement(id)): Promise<TestNode> {
    const dir = await mkdtemp(path.join(tmpdir(), `qm-nats-node-${id}-`));
    dirs.push(dir);
    const journal = new LmdbJournal({ path: dir, auditRetention: { maxAgeMs: 1e12, maxPerActor: 100 }, clock: systemClock });
    await journal.open();
    const system = new ActorSystem({
      journal,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      behaviors: [skuBehavior, orderBehavior] as ActorBehavior<unknown, unknown>[],
      idleMs: 60_000,
      timerTickMs: 50,
    });
    const nc = await connect({ servers: nats.url });
    const observer = { natsAsk: (outcome: string, seconds: number): void => void asks.push({ from: id, outcome, seconds }) };
    const transport = new NatsTransport({ nc, cluster: "test", self: id, placement, local: local ?? system, clock: systemClock, logger: pino({ level: "silent" }), observer });
    const router = new PlacementRouter(placement, system, transport);
    system.router = router;
    await system.start();
    await transport.start();
    const n = { router, system, journal, transport, nc };
    nodes.push(n);
    return n;
  }

  before(async () => {
    nats = await startNats();
    a = await node("A");
    b = await node("B");
  });

  after(async () => {
    for (const n of nodes) {
      await n.transport.stop();
      await n.system.stop();
      await n.journal.close();
      await n.nc.close().catch(() => undefined);
    }
    await nats?.stop();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it("runs an order on node A whose saga reserves on node B over NATS, each actor's events on its owner", async () => {
    const def = { title: "Mug", priceMinor: 900, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
    await a.router.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "define", patch: def } satisfies SkuMessage);
    await a.router.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "adjust", cmd: { locationId: "wh-1", delta: 5, reason: "RECEIVED", key: "" }, note: "" });
    const order = await b.router.ask<OrderView>(orderActorId("o-1", DEFAULT_TENANT), {
      op: "place",
      cmd: { customerId: "c", lines: [{ skuId: "m-1", quantity: 2 }], paymentTimeoutMs: PAYMENT_TIMEOUT_MS_DEFAULT, reservationGraceMs: 0 },
    });
    expect(order.state).to.equal("AWAITING_PAYMENT");
    const sku = await a.router.ask<SkuView>(skuActorId("m-1", DEFAULT_TENANT), { op: "get" });
    expect([sku.onHand, sku.reserved]).to.deep.equal([5, 2]);
    expect((await a.journal.recover(orderActorId("o-1", DEFAULT_TENANT))).lastSeq).to.be.greaterThan(0);
    expect((await b.journal.recover(orderActorId("o-1", DEFAULT_TENANT))).lastSeq).to.equal(0);
    expect((await b.journal.recover(skuActorId("m-1", DEFAULT_TENANT))).lastSeq).to.be.greaterThan(0);
    expect((await a.journal.recover(skuActorId("m-1", DEFAULT_TENANT))).lastSeq).to.equal(0);
  });

  it("carries a domain error back with its code and metadata", async () => {
    const error = await qmRejectionOf(a.router.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "reserve", cmd: { id: "r", quantity: 99, locationId: "", ttlMs: 60_000 } }));
    expect(error.code).to.equal("INSUFFICIENT_STOCK");
    expect(error.metadata.available).to.equal("3");
  });

  it("answers an op this version does not know (a newer node in a rolling upgrade) with FAILED_PRECONDITION UNKNOWN_OP, not undefined", async () => {
    const sku = await qmRejectionOf(a.router.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "reserveTwice", cmd: {} }));
    expect([sku.code, sku.metadata.reason, sku.metadata.op]).to.deep.equal(["FAILED_PRECONDITION", "UNKNOWN_OP", "reserveTwice"]);
    const order = await qmRejectionOf(b.router.ask(orderActorId("o-1", DEFAULT_TENANT), { op: "teleport" }));
    expect([order.code, order.metadata.reason]).to.deep.equal(["FAILED_PRECONDITION", "UNKNOWN_OP"]);
    const unchanged = await a.router.ask<SkuView>(skuActorId("m-1", DEFAULT_TENANT), { op: "get" });
    expect(unchanged.reserved).to.equal(2);
  });

  it("answers NOT_OWNER from a node asked for an actor it does not own, instead of forwarding it", async () => {
    const error = await qmRejectionOf(a.transport.ask("B", orderActorId("o-1", DEFAULT_TENANT), { op: "get" }));
    expect(error.code).to.equal("NOT_OWNER");
  });

  it("answers NOT_OWNER at once for a node nobody serves (no responders)", async () => {
    const started = Date.now();
    const error = await qmRejectionOf(a.transport.ask("Z", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }, { deadlineMs: Date.now() + 5_000 }));
    expect(error.code).to.equal("NOT_OWNER");
    // "At once" against the 5 s deadline: NATS's no-responders answer, not the timer. Generous for a loaded machine.
    expect(Date.now() - started).to.be.below(4_000);
  });

  it("gives up at the caller's deadline with DEADLINE_EXCEEDED (an unknown outcome) when the owner never answers", async () => {
    const silent: ActorRouter = { ask: () => new Promise<never>(() => undefined) };
    const ownsEverything: Placement = { self: "C", ownerOf: () => "C" };
    await node("C", silent, ownsEverything);
    const started = Date.now();
    const error = await qmRejectionOf(a.transport.ask("C", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }, { deadlineMs: Date.now() + 300 }));
    expect(error.code).to.equal("DEADLINE_EXCEEDED");
    // The deadline is the behaviour: not before its 300 ms (less timer slack), and the upper bound
    // only has to be far from "never", so a loaded machine does not fail it.
    expect(Date.now() - started).to.be.within(250, 3_000);
  });

  it("reports each ask sent with its outcome and time: a result or a domain refusal is ok; not_owner, timeout and error otherwise", async () => {
    await node("D", { ask: () => new Promise<never>(() => undefined) }, { self: "D", ownerOf: () => "D" });
    await node("E", { ask: () => Promise.reject(new QmError("UNAVAILABLE", "journal down")) }, { self: "E", ownerOf: () => "E" });
    asks.length = 0;
    await a.transport.ask("B", skuActorId("m-1", DEFAULT_TENANT), { op: "get" });
    await qmRejectionOf(a.transport.ask("B", skuActorId("m-1", DEFAULT_TENANT), { op: "reserve", cmd: { id: "r-obs", quantity: 99, locationId: "", ttlMs: 60_000 } }));
    await qmRejectionOf(a.transport.ask("B", orderActorId("o-1", DEFAULT_TENANT), { op: "get" }));
    await qmRejectionOf(a.transport.ask("Z", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }, { deadlineMs: Date.now() + 5_000 }));
    await qmRejectionOf(a.transport.ask("D", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }, { deadlineMs: Date.now() + 300 }));
    await qmRejectionOf(a.transport.ask("E", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }));
    // Never sent: no outcome to report.
    await qmRejectionOf(a.transport.ask("B", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }, { deadlineMs: Date.now() - 1 }));
    expect(asks.map((x) => `${x.from}:${x.outcome}`)).to.deep.equal(["A:ok", "A:ok", "A:not_owner", "A:not_owner", "A:timeout", "A:error"]);
    const timeout = asks.find((x) => x.outcome === "timeout");
    // The timed-out ask's reported time is its 300 ms deadline, with the same generous upper bound as above.
    expect(timeout?.seconds).to.be.within(0.25, 3);
  });

  it("refuses at once an ask whose deadline has already passed", async () => {
    const error = await qmRejectionOf(a.transport.ask("B", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }, { deadlineMs: Date.now() - 1 }));
    expect(error.code).to.equal("DEADLINE_EXCEEDED");
  });

  it("carries the caller's tenant and subject to the owner, which refuses an ask for another tenant's actor as NOT_FOUND", async () => {
    const acme = { subject: "alice", tenant: "acme" };
    const globex = { subject: "mallory", tenant: "globex" };
    const def = { title: "Mug", priceMinor: 900, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
    await a.router.ask(skuActorId("t-1", "acme"), { op: "define", patch: def } satisfies SkuMessage, { caller: acme });
    await a.router.ask(skuActorId("t-1", "acme"), { op: "adjust", cmd: { locationId: "wh-1", delta: 4, reason: "RECEIVED", key: "" }, note: "" }, { caller: acme });
    // The order on node A reserves on node B: its saga's ask carries acme across.
    const placed = await b.router.ask<OrderView>(
      orderActorId("t-o", "acme"),
      { op: "place", cmd: { customerId: "c", lines: [{ skuId: "t-1", quantity: 1 }], paymentTimeoutMs: PAYMENT_TIMEOUT_MS_DEFAULT, reservationGraceMs: 0 } },
      { caller: acme },
    );
    expect(placed.state).to.equal("AWAITING_PAYMENT");
    expect((await b.journal.recover("sku/acme/t-1")).lastSeq).to.be.greaterThan(0);
    // A node that asks the owner for acme's SKU on behalf of globex gets exactly what globex's own missing SKU answers.
    const missing = await qmRejectionOf(a.transport.ask("B", skuActorId("t-1", "globex"), { op: "get" }, { caller: globex }));
    const refused = await qmRejectionOf(a.transport.ask("B", skuActorId("t-1", "acme"), { op: "get" }, { caller: globex }));
    expect(refused.toJSON()).to.deep.equal(missing.toJSON());
    expect(refused.code).to.equal("NOT_FOUND");
    const reserve = await qmRejectionOf(
      a.transport.ask("B", skuActorId("t-1", "acme"), { op: "reserve", cmd: { id: "steal", quantity: 3, locationId: "", ttlMs: 60_000 } }, { caller: globex }),
    );
    expect(reserve.code).to.equal("NOT_FOUND");
    // An envelope without caller fields (a node from before tenancy) is taken to be for the default tenant.
    expect((await qmRejectionOf(a.transport.ask("B", skuActorId("t-1", "acme"), { op: "get" }))).code).to.equal("NOT_FOUND");
    const sku = await a.router.ask<SkuView>(skuActorId("t-1", "acme"), { op: "get" }, { caller: acme });
    expect([sku.onHand, sku.reserved]).to.deep.equal([4, 1]);
  });

  it("escapes dots of node ids in subjects, so node a.b and node a_b never share one", async () => {
    expect(askSubject("c", "a.b")).to.equal("qm.c.ask.a%2Eb");
    expect(askSubject("c", "a.b")).to.not.equal(askSubject("c", "a_b"));
  });
});
