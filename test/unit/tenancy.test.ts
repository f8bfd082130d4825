// Tenancy in actor ids and its enforcement in the actor system, and the audit
// trail's "who", on the real runtime over an LMDB journal with a manual clock.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { orderActorId, orderBehavior, type OrderMessage } from "../../src/actors/order/order_actor";
import { type AdjustmentPage, type AdjustmentRecord, skuActorId, skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { ManualClock } from "../../src/clock";
import type { OrderView } from "../../src/domain/order";
import type { SkuView } from "../../src/domain/sku";
import { renderAdjustments, renderOrder } from "../../src/cli/render";
import { toListAdjustmentsResponse, toOrder } from "../../src/grpc/convert";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { TENANT_LENGTH_MAX } from "../../src/limits";
import { DEFAULT_TENANT } from "../../src/security/caller";
import { isValidTenant, keyOfActorId, tenantActorId, tenantOfActorId, type Who } from "../../src/security/tenancy";
import { qmErrorOf, qmRejectionOf } from "../support/qm_error";

const MUG = { title: "Mug", priceMinor: 900, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };

describe("tenancy in actor ids", () => {
  it("keeps the default tenant's ids as before and puts any other tenant between kind and id", () => {
    expect(skuActorId("ABC-1", DEFAULT_TENANT)).to.equal("sku/ABC-1");
    expect(orderActorId("o-1", DEFAULT_TENANT)).to.equal("order/o-1");
    expect(skuActorId("ABC-1", "acme")).to.equal("sku/acme/ABC-1");
    expect(orderActorId("o-1", "acme")).to.equal("order/acme/o-1");
  });

  it("reads tenant and id back from both forms", () => {
    expect([tenantOfActorId("sku/ABC-1"), keyOfActorId("sku/ABC-1")]).to.deep.equal(["default", "ABC-1"]);
    expect([tenantOfActorId("sku/acme/ABC-1"), keyOfActorId("sku/acme/ABC-1")]).to.deep.equal(["acme", "ABC-1"]);
    expect([tenantOfActorId("order/a_b-c/o.1:2"), keyOfActorId("order/a_b-c/o.1:2")]).to.deep.equal(["a_b-c", "o.1:2"]);
  });

  it("accepts tenants of 1-64 letters, digits, _ and - and refuses others with PERMISSION_DENIED TENANT_INVALID instead of building an id", () => {
    expect(isValidTenant("acme")).to.equal(true);
    expect(isValidTenant("x".repeat(TENANT_LENGTH_MAX))).to.equal(true);
    for (const bad of ["", "x".repeat(TENANT_LENGTH_MAX + 1), "a/b", "a b", "acmé", "a*b", "a.b", "a:b"]) {
      expect(isValidTenant(bad), bad).to.equal(false);
      const error = qmErrorOf(() => tenantActorId("sku", bad, "ABC-1"));
      expect([error.code, error.metadata.reason]).to.deep.equal(["PERMISSION_DENIED", "TENANT_INVALID"]);
    }
  });
});

describe("tenancy in the actor system and the audit trail (manual clock)", function () {
  this.timeout(30_000);
  let dir: string;
  let journal: LmdbJournal;
  let system: ActorSystem;
  let clock: ManualClock;
  const acme: Who = { subject: "alice", tenant: "acme" };
  const globex: Who = { subject: "mallory", tenant: "globex" };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-tenancy-unit-"));
    clock = new ManualClock();
    journal = new LmdbJournal({ path: dir, auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock });
    await journal.open();
    system = new ActorSystem({
      journal,
      clock,
      logger: pino({ level: "silent" }),
      behaviors: [skuBehavior, orderBehavior] as ActorBehavior<unknown, unknown>[],
      idleMs: 3_600_000,
      timerTickMs: 0,
    });
    await system.start();
  });

  afterEach(async () => {
    await system.stop();
    await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  const sku = (who: Who, id: string, message: SkuMessage): Promise<unknown> => system.ask(skuActorId(id, who.tenant), message, { caller: who });
  const order = (who: Who, id: string, message: OrderMessage): Promise<OrderView> => system.ask(orderActorId(id, who.tenant), message, { caller: who });

  it("refuses an ask whose caller's tenant is not the actor's with the kind's own NOT_FOUND, without activating the actor", async () => {
    await sku(acme, "m-1", { op: "define", patch: MUG });
    await sku(acme, "m-1", { op: "adjust", cmd: { locationId: "wh-1", delta: 5, reason: "RECEIVED", key: "" }, note: "" });
    const missing = await qmRejectionOf(sku(globex, "m-1", { op: "get" })); // globex's own, which does not exist
    const orderMissing = await qmRejectionOf(order(globex, "o-1", { op: "get" }));
    const active = system.activeCount;
    for (const message of [{ op: "get" }, { op: "reserve", cmd: { id: "r-1", quantity: 1, locationId: "", ttlMs: 60_000 } }] as SkuMessage[]) {
      const refused = await qmRejectionOf(system.ask(skuActorId("m-1", "acme"), message, { caller: globex }));
      expect(refused.toJSON()).to.deep.equal(missing.toJSON());
    }
    const orderRefused = await qmRejectionOf(system.ask(orderActorId("o-1", "acme"), { op: "get" }, { caller: globex }));
    expect(orderRefused.toJSON()).to.deep.equal(orderMissing.toJSON());
    expect(orderRefused.toJSON()).to.deep.include({ code: "NOT_FOUND", message: "order o-1 not found" });
    expect(system.activeCount).to.equal(active);
    const view = (await sku(acme, "m-1", { op: "get" })) as SkuView;
    expect([view.onHand, view.reserved]).to.deep.equal([5, 0]);
  });

  it("records the system as who for an expiry a timer ran, and the caller for what it asked", async () => {
    await sku(acme, "m-1", { op: "define", patch: MUG });
    await sku(acme, "m-1", { op: "adjust", cmd: { locationId: "wh-1", delta: 5, reason: "RECEIVED", key: "" }, note: "" });
    await order(acme, "o-1", { op: "place", cmd: { customerId: "c", lines: [{ skuId: "m-1", quantity: 2 }], paymentTimeoutMs: 60_000, reservationGraceMs: 0 } });
    clock.advance(61_000);
    await system.tick();
    await system.whenIdle();
    const expired = await order(acme, "o-1", { op: "get" });
    expect(expired.state).to.equal("EXPIRED");
    expect(expired.history.map((h) => [h.event, h.subject, h.tenant])).to.deep.equal([
      ["placed", "alice", "acme"],
      ["reserved", "alice", "acme"],
      ["expireStarted", "system", "acme"],
      ["released", "system", "acme"],
    ]);
    // The saga's SKU asks carried the order's tenant: the units came back to acme's SKU.
    expect(((await sku(acme, "m-1", { op: "get" })) as SkuView).reserved).to.equal(0);
  });

  it("reads events and adjustment records written before the audit with an empty who", async () => {
    // What the previous release wrote: the same actor ids, events without `by`, records without subject or tenant.
    const placed = { t: "placed", customerId: "c", lines: [{ skuId: "m-1", quantity: 1, reservationId: "order/o-old/0" }], paymentDeadlineMs: 2e12, reservationTtlMs: 1e9, atMs: 1_700_000_000_000 };
    await journal.append({ actorId: "order/o-old", expectedLastSeq: 0, events: [placed, { t: "reserved", locations: ["wh-1"], atMs: 1_700_000_000_001 }] });
    const defined = await system.ask<SkuView>("sku/m-old", { op: "define", patch: MUG });
    expect(defined.skuId).to.equal("m-old");
    const legacy: AdjustmentRecord = { locationId: "wh-1", delta: 3, reason: "RECEIVED", note: "", key: "", onHandAfter: 3 };
    await system.stop();
    const recovered = await journal.recover("sku/m-old");
    await journal.append({ actorId: "sku/m-old", expectedLastSeq: recovered.lastSeq, events: [], audit: [{ seq: 1, atMs: 1_700_000_000_000, data: legacy }] });
    system = new ActorSystem({ journal, clock, logger: pino({ level: "silent" }), behaviors: [skuBehavior, orderBehavior] as ActorBehavior<unknown, unknown>[], idleMs: 3_600_000, timerTickMs: 0 });
    await system.start();
    const view = toOrder(await order({ subject: "anonymous", tenant: DEFAULT_TENANT }, "o-old", { op: "get" }));
    expect(view.history.map((h) => [h.change, h.subject, h.tenant])).to.deep.equal([
      ["placed", "", ""],
      ["reserved", "", ""],
    ]);
    const page = await system.ask<AdjustmentPage>("sku/m-old", { op: "listAdjustments", afterSeq: 0, limit: 10 }, { caller: { subject: "anonymous", tenant: DEFAULT_TENANT } });
    const listed = toListAdjustmentsResponse("m-old", page);
    expect(listed.adjustments.map((a) => [a.delta, a.subject, a.tenant])).to.deep.equal([[3, "", ""]]);
    expect(renderAdjustments(listed)).to.match(/\+3\s.*\sunknown\b/);
    expect(renderOrder(view)).to.match(/placed\s+\S+\s+unknown/);
  });
});
