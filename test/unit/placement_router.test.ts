// The seam the cluster plugs into: two actor systems, each with its own real
// LMDB journal, where orders live on node A and SKUs on node B. The transport
// is an in-process stand-in for NATS that round-trips every message and reply
// through msgpack, so anything that would not survive the wire fails here.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { pack, unpack } from "msgpackr";
import pino from "pino";
import { orderActorId, orderBehavior } from "../../src/actors/order/order_actor";
import { skuActorId, skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior, AskOptions } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { type NodeId, partitionOf, type Placement, SingleNodePlacement } from "../../src/cluster/placement";
import { PlacementRouter, type Transport } from "../../src/cluster/placement_router";
import type { OrderView } from "../../src/domain/order";
import type { SkuView } from "../../src/domain/sku";
import { QmError, type QmErrorData } from "../../src/errors";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { PAYMENT_TIMEOUT_MS_DEFAULT } from "../../src/limits";
import { ByKindPlacement } from "../support/by_kind_placement";
import { DEFAULT_TENANT } from "../../src/security/caller";


interface Node {
  router: PlacementRouter;
  system: ActorSystem;
  journal: LmdbJournal;
}

class WireTransport implements Transport {
  readonly nodes = new Map<NodeId, Node>();
  hops = 0;

  async ask<R>(node: NodeId, actorId: string, message: unknown, options?: AskOptions): Promise<R> {
    const target = this.nodes.get(node);
    if (target === undefined) throw new QmError("UNAVAILABLE", `node ${node} unreachable`);
    this.hops++;
    try {
      // The receiving node serves only what it owns, through its own router.
      const reply = await target.router.ask<unknown>(actorId, unpack(pack(message)), options);
      return unpack(pack(reply)) as R;
    } catch (error) {
      if (error instanceof QmError) throw QmError.fromJSON(unpack(pack(error.toJSON())) as QmErrorData);
      throw error;
    }
  }
}

describe("placement router (cluster seam)", () => {
  const dirs: string[] = [];
  const transport = new WireTransport();

  async function node(id: NodeId): Promise<Node> {
    const dir = await mkdtemp(path.join(tmpdir(), `qm-node-${id}-`));
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
    const router = new PlacementRouter(new ByKindPlacement(id), system, transport);
    system.router = router;
    await system.start();
    const n = { router, system, journal };
    transport.nodes.set(id, n);
    return n;
  }

  let a: Node;
  let b: Node;

  before(async () => {
    a = await node("A");
    b = await node("B");
  });

  after(async () => {
    for (const n of [a, b]) {
      await n?.system.stop();
      await n?.journal.close();
    }
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it("runs an order on node A whose saga reserves on node B, and keeps each actor's events on its owner", async () => {
    const def = { title: "Mug", priceMinor: 900, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
    await a.router.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "define", patch: def } satisfies SkuMessage);
    await a.router.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "adjust", cmd: { locationId: "wh-1", delta: 5, reason: "RECEIVED", key: "" }, note: "" });
    const hopsBefore = transport.hops;
    const order = await a.router.ask<OrderView>(orderActorId("o-1", DEFAULT_TENANT), {
      op: "place",
      cmd: { customerId: "c", lines: [{ skuId: "m-1", quantity: 2 }], paymentTimeoutMs: PAYMENT_TIMEOUT_MS_DEFAULT, reservationGraceMs: 0 },
    });
    expect(order.state).to.equal("AWAITING_PAYMENT");
    expect(transport.hops - hopsBefore, "the saga's reserve crossed to B").to.equal(1);
    const sku = await b.router.ask<SkuView>(skuActorId("m-1", DEFAULT_TENANT), { op: "get" });
    expect([sku.onHand, sku.reserved]).to.deep.equal([5, 2]);
    expect((await a.journal.recover(orderActorId("o-1", DEFAULT_TENANT))).lastSeq).to.be.greaterThan(0);
    expect((await b.journal.recover(orderActorId("o-1", DEFAULT_TENANT))).lastSeq).to.equal(0);
    expect((await a.journal.recover(skuActorId("m-1", DEFAULT_TENANT))).lastSeq).to.equal(0);
  });

  it("carries a domain error back across the transport with its code and metadata", async () => {
    const order = await a.router.ask<OrderView>(orderActorId("o-2", DEFAULT_TENANT), {
      op: "place",
      cmd: { customerId: "c", lines: [{ skuId: "m-1", quantity: 99 }], paymentTimeoutMs: PAYMENT_TIMEOUT_MS_DEFAULT, reservationGraceMs: 0 },
    });
    expect(order.state).to.equal("REJECTED");
    expect(order.rejections.map((r) => r.reason)).to.deep.equal(["INSUFFICIENT_STOCK"]);
    let error: unknown;
    try {
      await a.router.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "reserve", cmd: { id: "r", quantity: 99, locationId: "", ttlMs: 60_000 } });
    } catch (e) {
      error = e;
    }
    expect(error).to.be.instanceOf(QmError);
    expect((error as QmError).code).to.equal("INSUFFICIENT_STOCK");
    expect((error as QmError).metadata.available).to.equal("3");
  });

  it("answers UNAVAILABLE (NO_OWNER) once the deadline passes for an actor whose partition has no owner", async () => {
    let error: unknown;
    const started = Date.now();
    try {
      await a.router.ask("ghost/x", { op: "get" }, { deadlineMs: Date.now() + 200 });
    } catch (e) {
      error = e;
    }
    expect((error as QmError).code).to.equal("UNAVAILABLE");
    expect((error as QmError).metadata.reason).to.equal("NO_OWNER");
    // The deadline is the behaviour: not before it (less the timer's 50 ms slack), and long before
    // 2 s, a bound only a router that ignored the deadline would reach; loose for a loaded machine.
    expect(Date.now() - started).to.be.within(150, 2_000);
  });

  it("maps actor ids to partitions stably and evenly", () => {
    // Pinned values: ownership and journal streams are keyed by them.
    expect(partitionOf("sku/ABC-1", 256)).to.equal(143);
    expect(partitionOf("order/o-17", 256)).to.equal(148);
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[partitionOf(`sku/item-${i}`, 16)]! += 1;
    expect(Math.min(...counts)).to.be.above(800);
    expect(Math.max(...counts)).to.be.below(1200);
    expect(new SingleNodePlacement().ownerOf()).to.equal("local");
  });
});

describe("placement router re-routing and breakers (pure logic)", () => {
  const local = { ask: async <R>(actorId: string): Promise<R> => `local:${actorId}` as R };

  it("retries while a partition has no owner and delivers once one appears, within the deadline", async () => {
    let lookups = 0;
    const placement: Placement = { self: "A", ownerOf: () => (++lookups < 4 ? undefined : "B") };
    const transport: Transport = { ask: async <R>(node: NodeId, actorId: string): Promise<R> => `${node}:${actorId}` as R };
    const router = new PlacementRouter(placement, local, transport);
    expect(await router.ask("sku/x", {}, { deadlineMs: Date.now() + 5_000 })).to.equal("B:sku/x");
    expect(lookups).to.equal(4);
  });

  it("re-routes when the owner it asked answers NOT_OWNER (the view moved), and never re-sends after a domain error", async () => {
    let owner = "B";
    const sent: string[] = [];
    const placement: Placement = { self: "A", ownerOf: () => owner };
    const transport: Transport = {
      ask: async <R>(node: NodeId): Promise<R> => {
        sent.push(node);
        if (node === "B") {
          owner = "C";
          throw new QmError("NOT_OWNER", "moved");
        }
        if (sent.length === 2) return "done" as R;
        throw new QmError("INSUFFICIENT_STOCK", "short");
      },
    };
    const router = new PlacementRouter(placement, local, transport);
    expect(await router.ask("sku/x", {}, { deadlineMs: Date.now() + 5_000 })).to.equal("done");
    expect(sent).to.deep.equal(["B", "C"]);
    let error: unknown;
    try {
      await router.ask("sku/y", {}, { deadlineMs: Date.now() + 5_000 });
    } catch (e) {
      error = e;
    }
    expect((error as QmError).code).to.equal("INSUFFICIENT_STOCK");
    expect(sent).to.deep.equal(["B", "C", "C"]);
  });

  it("opens a node's breaker after 5 transport failures in a row and then fails at once with BREAKER_OPEN", async () => {
    let calls = 0;
    const placement: Placement = { self: "A", ownerOf: () => "B" };
    const transport: Transport = {
      ask: async <R>(): Promise<R> => {
        calls++;
        throw new QmError("UNAVAILABLE", "nats is down");
      },
    };
    const router = new PlacementRouter(placement, local, transport);
    expect(router.breakerStates()).to.deep.equal([]);
    const reasons: string[] = [];
    for (let i = 0; i < 7; i++) {
      try {
        await router.ask("sku/x", {}, { deadlineMs: Date.now() + 5_000 });
      } catch (e) {
        reasons.push((e as QmError).metadata.reason ?? (e as QmError).code);
      }
    }
    expect(calls).to.equal(5);
    expect(reasons).to.deep.equal(["UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE", "BREAKER_OPEN", "BREAKER_OPEN"]);
    // qm_breaker_state reads 2 (open) for B.
    expect(router.breakerStates()).to.deep.equal([["B", 2]]);
  });

  it("refuses at once with the placement's reason (NO_LEASE) while it has one, also mid re-routing, and serves again once it clears", async () => {
    let refusal: QmError | undefined = new QmError("UNAVAILABLE", "no lease", { reason: "NO_LEASE" });
    let owner: NodeId | undefined = "B";
    const sent: string[] = [];
    let unavailableChecks = 0;
    const placement: Placement = {
      self: "A",
      ownerOf: () => owner,
      unavailable: () => {
        unavailableChecks += 1;
        return refusal;
      },
    };
    const transport: Transport = {
      ask: async <R>(node: NodeId): Promise<R> => {
        sent.push(node);
        return "done" as R;
      },
    };
    const router = new PlacementRouter(placement, local, transport);
    const first = await router.ask("sku/x", {}, { deadlineMs: Date.now() + 5_000 }).catch((e: unknown) => e as QmError);
    expect([(first as QmError).code, (first as QmError).metadata.reason]).to.deep.equal(["UNAVAILABLE", "NO_LEASE"]);
    // At once: refused on the first attempt, not retried until the 5 s deadline.
    expect(unavailableChecks, "attempts").to.equal(1);
    expect(sent).to.deep.equal([]);
    // The lease lapses while an ask waits for an owner: the next attempt refuses.
    refusal = undefined;
    owner = undefined;
    const waiting = router.ask("sku/y", {}, { deadlineMs: Date.now() + 5_000 }).catch((e: unknown) => e as QmError);
    refusal = new QmError("UNAVAILABLE", "no lease", { reason: "NO_LEASE" });
    expect(((await waiting) as QmError).metadata.reason).to.equal("NO_LEASE");
    refusal = undefined;
    owner = "B";
    expect(await router.ask("sku/z", {}, { deadlineMs: Date.now() + 5_000 })).to.equal("done");
    expect(sent).to.deep.equal(["B"]);
  });

  it("asks the local system directly when there is no transport (the single node)", async () => {
    const router = new PlacementRouter(new SingleNodePlacement(), local);
    expect(await router.ask("sku/x", {})).to.equal("local:sku/x");
  });
});
