// The reserve step's asks go out while its intent is being written, when the
// journal is durable in issue order (the embedded LMDB journal), so a
// CreateOrder waits for two durable writes instead of three. Appends are
// watched through a journal view that records when each is issued and when
// it is durable, and can hold or fail the appends of chosen actors.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { createOrderBehavior } from "../../src/actors/order/order_actor";
import { skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { ManualClock } from "../../src/clock";
import type { OrderView } from "../../src/domain/order";
import type { SkuView } from "../../src/domain/sku";
import { QmError } from "../../src/errors";
import type { AppendRequest, Journal } from "../../src/journal/journal";
import { LmdbJournal } from "../../src/journal/lmdb_journal";

const HOUR_MS = 3_600_000;

/** What happened to appends, in order: "issue order/o-1#1", "durable sku/a#3", ... (actor id and the append's last seq). */
type Timeline = string[];

interface Watched {
  readonly journal: Journal;
  readonly timeline: Timeline;
  /** The next append of this actor fails with this error instead of being written. */
  failNext(actorId: string, error: QmError): void;
}

function watch(inner: LmdbJournal, durableInIssueOrder: boolean): Watched {
  const timeline: Timeline = [];
  const failures = new Map<string, QmError>();
  const append = async (request: AppendRequest): Promise<void> => {
    const name = `${request.actorId}#${request.expectedLastSeq + request.events.length}`;
    timeline.push(`issue ${name}`);
    const failure = failures.get(request.actorId);
    if (failure !== undefined) {
      failures.delete(request.actorId);
      timeline.push(`failed ${name}`);
      throw failure;
    }
    await inner.append(request);
    timeline.push(`durable ${name}`);
  };
  const journal = new Proxy(inner, {
    get(target, property) {
      if (property === "append") return append;
      if (property === "durableInIssueOrder") return durableInIssueOrder;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  }) as Journal;
  return { journal, timeline, failNext: (actorId, error) => failures.set(actorId, error) };
}

describe("order saga: reserve asks sent with the intent on a journal durable in issue order", function () {
  this.timeout(60_000);
  let dir: string;
  let lmdb: LmdbJournal;
  let system: ActorSystem;
  let watched: Watched;

  async function boot(durableInIssueOrder: boolean): Promise<void> {
    lmdb = new LmdbJournal({ path: path.join(dir, "journal"), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock: new ManualClock() });
    await lmdb.open();
    watched = watch(lmdb, durableInIssueOrder);
    system = new ActorSystem({
      journal: watched.journal,
      clock: new ManualClock(),
      logger: pino({ level: "silent" }),
      behaviors: [skuBehavior, createOrderBehavior()] as ActorBehavior<unknown, unknown>[],
      idleMs: HOUR_MS,
      timerTickMs: 0,
    });
    await system.start();
    for (const skuId of ["a", "b"]) {
      const def = { title: skuId, priceMinor: 100, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
      await system.ask(`sku/${skuId}`, { op: "define", patch: def } satisfies SkuMessage);
      await system.ask(`sku/${skuId}`, { op: "adjust", cmd: { locationId: "wh-1", delta: 10, reason: "RECEIVED", key: "" }, note: "" } satisfies SkuMessage);
    }
    watched.timeline.length = 0;
  }

  function place(orderId: string): Promise<OrderView> {
    const cmd = {
      customerId: "c-1",
      lines: [
        { skuId: "a", quantity: 2 },
        { skuId: "b", quantity: 3 },
      ],
      paymentTimeoutMs: HOUR_MS,
      reservationGraceMs: 60_000,
    };
    return system.ask<OrderView>(`order/${orderId}`, { op: "place", cmd });
  }

  async function reserved(): Promise<number[]> {
    const views = await Promise.all(["a", "b"].map((s) => system.ask<SkuView>(`sku/${s}`, { op: "get" } satisfies SkuMessage)));
    return views.map((v) => v.reserved);
  }

  /** Index of an entry in the timeline; fails the test when it is missing. */
  function at(entry: string): number {
    const index = watched.timeline.indexOf(entry);
    expect(index, `${entry} in ${JSON.stringify(watched.timeline)}`).to.be.at.least(0);
    return index;
  }

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-saga-overlap-"));
  });

  afterEach(async () => {
    await system.stop();
    await lmdb.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("issues the SKUs' hold appends before the order's intent is durable, and records the outcome after both", async () => {
    await boot(true);
    const view = await place("o-1");
    expect(view.state).to.equal("AWAITING_PAYMENT");
    const intentDurable = at("durable order/o-1#1");
    expect(at("issue order/o-1#1")).to.be.below(at("issue sku/a#3"));
    expect(at("issue sku/a#3"), "SKU a asked while the intent was written").to.be.below(intentDurable);
    expect(at("issue sku/b#3"), "SKU b asked while the intent was written").to.be.below(intentDurable);
    expect(at("issue order/o-1#2"), "outcome after every hold").to.be.above(Math.max(at("durable sku/a#3"), at("durable sku/b#3"), intentDurable));
    expect(await reserved()).to.deep.equal([2, 3]);
  });

  it("waits for the intent before asking when the journal does not promise issue order", async () => {
    await boot(false);
    await place("o-1");
    expect(at("issue sku/a#3")).to.be.above(at("durable order/o-1#1"));
    expect(at("issue sku/b#3")).to.be.above(at("durable order/o-1#1"));
  });

  it("keeps the payment's commit step sequential: SKUs are asked to commit only once the intent is durable", async () => {
    await boot(true);
    await place("o-1");
    const paid = await system.ask<OrderView>("order/o-1", { op: "pay", paymentReference: "p-1" });
    expect(paid.state).to.equal("PAID");
    expect(at("issue sku/a#4")).to.be.above(at("durable order/o-1#3"));
    expect(at("issue sku/b#4")).to.be.above(at("durable order/o-1#3"));
  });

  it("fails CreateOrder when its intent cannot be written, and a retry of it finds the same holds, none twice", async () => {
    await boot(true);
    watched.failNext("order/o-1", new QmError("UNAVAILABLE", "injected intent failure"));
    let failure: unknown;
    try {
      await place("o-1");
    } catch (error) {
      failure = error;
    }
    expect(failure).to.be.instanceOf(QmError);
    expect((failure as QmError).code).to.equal("UNAVAILABLE");
    expect((failure as QmError).message).to.contain("injected intent failure");
    // The asks were already out: the holds were made (each ends at its TTL if nobody retries).
    await system.whenIdle();
    expect(await reserved()).to.deep.equal([2, 3]);
    const retried = await place("o-1");
    expect(retried.state).to.equal("AWAITING_PAYMENT");
    expect(await reserved(), "the retry reuses the holds by their ids").to.deep.equal([2, 3]);
  });
});
