// Model-based property test of the order saga: random sequences of order
// commands (create, pay, cancel, ship, track, return, receive stock, let
// payment deadlines pass on a manual clock, restart the node) run against a
// real ActorSystem with the order and SKU actors over a real LmdbJournal in a
// temp dir, and against a plain model of orders. After every command each
// order's state matches the model, and each SKU's on_hand, reserved and
// committed are what the orders imply (stock conservation): reserved is the
// sum of unpaid orders' lines, committed the paid-but-unshipped units, and
// on_hand moves only by receipts, shipments and restocked returns.
//
// fc.assert prints the seed and the shrunk command list on failure; pass
// { seed, path } back into its parameters to replay one run.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import * as fc from "fast-check";
import pino from "pino";
import { skuActorId, skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { orderActorId, orderBehavior } from "../../src/actors/order/order_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { ManualClock } from "../../src/clock";
import type { LineQuantity, OrderView } from "../../src/domain/order";
import type { SkuView } from "../../src/domain/sku";
import { QmError } from "../../src/errors";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { DEFAULT_TENANT } from "../../src/security/caller";

const SKUS = ["a", "b"] as const;
const LOCATION = "wh-1";
const INITIAL_ON_HAND = 6;
/** Orders per run at most: few, so that commands meet the same orders again. */
const ORDERS_MAX = 4;
const PAYMENT_TIMEOUT_MS = 30_000;
/** Holds outlive the payment deadline by this much, so an order always expires before its SKU holds do. */
const GRACE_MS = 10_000;
const PAID_STATUSES = ["PAID", "PARTIALLY_SHIPPED", "SHIPPED", "DELIVERED", "RETURNED"];

type SkuId = (typeof SKUS)[number];
type Status = OrderView["state"];

// ---- The model ---------------------------------------------------------------------

interface ModelLine {
  readonly skuId: SkuId;
  readonly quantity: number;
  shipped: number;
  returned: number;
}

interface ModelOrder {
  status: Status;
  readonly lines: ModelLine[];
  readonly deadlineMs: number;
  readonly shipments: { id: string; delivered: boolean }[];
}

interface Model {
  nowMs: number;
  readonly orders: Map<string, ModelOrder>;
  /** Units that came in by receipts and restocked returns, per SKU. */
  readonly received: Record<SkuId, number>;
  /** For unique shipment, tracking event and return ids. */
  nextId: number;
}

interface Stock {
  onHand: number;
  reserved: number;
  committed: number;
}

/** What the SKUs must hold, derived from the orders alone: the conservation law. */
function expectedStock(model: Model): Record<SkuId, Stock> {
  const stock = {} as Record<SkuId, Stock>;
  for (const sku of SKUS) stock[sku] = { onHand: INITIAL_ON_HAND + model.received[sku], reserved: 0, committed: 0 };
  for (const order of model.orders.values()) {
    for (const line of order.lines) {
      const s = stock[line.skuId];
      s.onHand -= line.shipped;
      if (order.status === "AWAITING_PAYMENT") s.reserved += line.quantity;
      if (PAID_STATUSES.includes(order.status)) s.committed += line.quantity - line.shipped;
    }
  }
  return stock;
}

/** The payment timer: every unpaid order past its deadline expires and its holds go back. */
function expireDue(model: Model): void {
  for (const order of model.orders.values()) {
    if (order.status === "AWAITING_PAYMENT" && model.nowMs >= order.deadlineMs) order.status = "EXPIRED";
  }
}

// ---- The real system -----------------------------------------------------------------

interface Real {
  readonly dir: string;
  readonly clock: ManualClock;
  journal: LmdbJournal;
  system: ActorSystem;
}

async function bootSystem(dir: string, clock: ManualClock): Promise<{ journal: LmdbJournal; system: ActorSystem }> {
  const journal = new LmdbJournal({ path: path.join(dir, "journal"), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock });
  await journal.open();
  const system = new ActorSystem({
    journal,
    clock,
    logger: pino({ level: "silent" }),
    behaviors: [skuBehavior, orderBehavior] as ActorBehavior<unknown, unknown>[],
    idleMs: 60_000,
    activeMax: 1000,
    // Wake-ups come only from start() and from the test (the manual clock
    // decides what is due), never from a real-time tick in between.
    timerTickMs: 3_600_000,
  });
  await system.start();
  return { journal, system };
}

async function stopSystem(real: Real): Promise<void> {
  await real.system.stop();
  await real.journal.close();
}

type Outcome<T> = { readonly ok: T } | { readonly error: string };

async function ask<T>(real: Real, actorId: string, message: unknown): Promise<Outcome<T>> {
  try {
    return { ok: await real.system.ask<T>(actorId, message) };
  } catch (error) {
    if (error instanceof QmError) return { error: error.code };
    throw error;
  }
}

async function askOrder(real: Real, orderId: string, message: unknown): Promise<Outcome<Status>> {
  const outcome = await ask<OrderView>(real, orderActorId(orderId, DEFAULT_TENANT), message);
  return "ok" in outcome ? { ok: outcome.ok.state } : outcome;
}

/** Every order and SKU agrees with the model. */
async function verify(model: Model, real: Real): Promise<void> {
  for (const [orderId, order] of model.orders) {
    const view = await ask<OrderView>(real, orderActorId(orderId, DEFAULT_TENANT), { op: "get" });
    if (!("ok" in view)) throw new Error(`get ${orderId} failed with ${view.error}`);
    expect(view.ok.state, `order ${orderId}`).to.equal(order.status);
    expect(
      view.ok.lines.map((l) => [l.skuId, l.quantity, l.shipped, l.returned]),
      `lines of order ${orderId}`,
    ).to.deep.equal(order.lines.map((l) => [l.skuId, l.quantity, l.shipped, l.returned]));
  }
  const stock = expectedStock(model);
  for (const sku of SKUS) {
    const view = await real.system.ask<SkuView>(skuActorId(sku, DEFAULT_TENANT), { op: "get" });
    expect({ onHand: view.onHand, reserved: view.reserved, committed: view.committed }, `stock of SKU ${sku}`).to.deep.equal(stock[sku]);
  }
}

// ---- Commands --------------------------------------------------------------------

type Cmd = fc.AsyncCommand<Model, Real>;

/** Runs one command against the system, checks its reply, then checks everything. */
async function expectReply(model: Model, real: Real, got: Outcome<Status>, want: Outcome<Status>): Promise<void> {
  expect(got).to.deep.equal(want);
  await verify(model, real);
}

class Create implements Cmd {
  private orderId = "";
  constructor(readonly quantities: readonly [number, number]) {}
  check = (m: Readonly<Model>): boolean => m.orders.size < ORDERS_MAX;
  async run(m: Model, r: Real): Promise<void> {
    this.orderId = `o${m.orders.size}`;
    const lines: ModelLine[] = SKUS.map((skuId, i) => ({ skuId, quantity: this.quantities[i] ?? 0, shipped: 0, returned: 0 })).filter(
      (l) => l.quantity > 0,
    );
    const stock = expectedStock(m);
    const fits = lines.every((l) => stock[l.skuId].onHand - stock[l.skuId].reserved - stock[l.skuId].committed >= l.quantity);
    m.orders.set(this.orderId, { status: fits ? "AWAITING_PAYMENT" : "REJECTED", lines, deadlineMs: m.nowMs + PAYMENT_TIMEOUT_MS, shipments: [] });
    const got = await askOrder(r, this.orderId, {
      op: "place",
      cmd: {
        customerId: "c",
        lines: lines.map((l) => ({ skuId: l.skuId, quantity: l.quantity })),
        paymentTimeoutMs: PAYMENT_TIMEOUT_MS,
        reservationGraceMs: GRACE_MS,
      },
    });
    await expectReply(m, r, got, { ok: fits ? "AWAITING_PAYMENT" : "REJECTED" });
  }
  toString = (): string => `create(${this.orderId || "new"}, a=${this.quantities[0]}, b=${this.quantities[1]})`;
}

/** Commands on one of the orders created so far (the pick'th, modulo how many there are). */
abstract class OnOrder implements Cmd {
  protected orderId = "";
  constructor(readonly pick: number) {}
  check = (m: Readonly<Model>): boolean => m.orders.size > 0;
  protected order(m: Model): ModelOrder {
    const ids = [...m.orders.keys()];
    this.orderId = ids[this.pick % ids.length] as string;
    return m.orders.get(this.orderId) as ModelOrder;
  }
  abstract run(m: Model, r: Real): Promise<void>;
  abstract toString(): string;
  protected label(): string {
    return this.orderId !== "" ? this.orderId : `order #${this.pick}`;
  }
}

class Pay extends OnOrder {
  async run(m: Model, r: Real): Promise<void> {
    const order = this.order(m);
    let want: Outcome<Status>;
    if (order.status === "AWAITING_PAYMENT") {
      order.status = "PAID";
      want = { ok: "PAID" };
    } else if (PAID_STATUSES.includes(order.status)) {
      want = { ok: order.status }; // a retry with the same reference
    } else {
      want = { error: "ILLEGAL_TRANSITION" };
    }
    await expectReply(m, r, await askOrder(r, this.orderId, { op: "pay", paymentReference: `pay-${this.orderId}` }), want);
  }
  toString = (): string => `pay(${this.label()})`;
}

class Cancel extends OnOrder {
  async run(m: Model, r: Real): Promise<void> {
    const order = this.order(m);
    let want: Outcome<Status>;
    if (order.status === "AWAITING_PAYMENT" || order.status === "PAID" || order.status === "CANCELLED") {
      order.status = "CANCELLED";
      want = { ok: "CANCELLED" };
    } else {
      want = { error: "ILLEGAL_TRANSITION" };
    }
    await expectReply(m, r, await askOrder(r, this.orderId, { op: "cancel", reason: "test" }), want);
  }
  toString = (): string => `cancel(${this.label()})`;
}

class Ship extends OnOrder {
  constructor(
    pick: number,
    readonly all: boolean,
  ) {
    super(pick);
  }
  async run(m: Model, r: Real): Promise<void> {
    const order = this.order(m);
    const shipmentId = `s${m.nextId++}`;
    const left = order.lines.filter((l) => l.shipped < l.quantity);
    const first = left[0];
    // "Everything left" is an empty line list; a part is one unit of the first line with units left.
    const lines: LineQuantity[] = this.all || first === undefined ? [] : [{ skuId: first.skuId, quantity: 1 }];
    let want: Outcome<Status>;
    if (order.status === "PAID" || order.status === "PARTIALLY_SHIPPED") {
      for (const l of left) l.shipped += this.all ? l.quantity - l.shipped : l === first ? 1 : 0;
      order.status = order.lines.every((l) => l.shipped === l.quantity) ? "SHIPPED" : "PARTIALLY_SHIPPED";
      order.shipments.push({ id: shipmentId, delivered: false });
      want = { ok: order.status };
    } else {
      want = { error: "ILLEGAL_TRANSITION" };
    }
    const got = await askOrder(r, this.orderId, { op: "ship", cmd: { shipmentId, carrier: "dhl", trackingNumber: "", lines } });
    await expectReply(m, r, got, want);
  }
  toString = (): string => `ship(${this.label()}, ${this.all ? "all" : "one unit"})`;
}

class Track extends OnOrder {
  constructor(
    pick: number,
    readonly shipmentIndex: number,
    readonly delivered: boolean,
  ) {
    super(pick);
  }
  async run(m: Model, r: Real): Promise<void> {
    const order = this.order(m);
    const id = m.nextId++;
    const shipment = order.shipments[this.shipmentIndex % Math.max(1, order.shipments.length)];
    let want: Outcome<Status>;
    if (shipment === undefined) {
      want = { error: "NOT_FOUND" };
    } else {
      shipment.delivered ||= this.delivered;
      if (order.status === "SHIPPED" && order.shipments.every((s) => s.delivered)) order.status = "DELIVERED";
      want = { ok: order.status };
    }
    const got = await askOrder(r, this.orderId, {
      op: "track",
      cmd: {
        shipmentId: shipment?.id ?? "s-none",
        eventId: `ev${id}`,
        status: this.delivered ? "DELIVERED" : "IN_TRANSIT",
        location: "",
        description: "",
        occurredAtMs: m.nowMs + id,
      },
    });
    await expectReply(m, r, got, want);
  }
  toString = (): string => `track(${this.label()}, shipment #${this.shipmentIndex}, ${this.delivered ? "DELIVERED" : "IN_TRANSIT"})`;
}

class Return extends OnOrder {
  constructor(
    pick: number,
    readonly all: boolean,
    readonly restock: boolean,
  ) {
    super(pick);
  }
  async run(m: Model, r: Real): Promise<void> {
    const order = this.order(m);
    const returnId = `ret${m.nextId++}`;
    const open = order.lines.filter((l) => l.returned < l.shipped);
    const lines: LineQuantity[] = this.all
      ? open.map((l) => ({ skuId: l.skuId, quantity: l.shipped - l.returned }))
      : [{ skuId: (open[0] ?? order.lines[0] as ModelLine).skuId, quantity: 1 }];
    let want: Outcome<Status>;
    if (order.status !== "PARTIALLY_SHIPPED" && order.status !== "SHIPPED" && order.status !== "DELIVERED") {
      want = { error: "ILLEGAL_TRANSITION" };
    } else if (open.length === 0) {
      want = { error: "FAILED_PRECONDITION" }; // nothing shipped is left to return
    } else {
      for (const l of lines) {
        const line = order.lines.find((x) => x.skuId === l.skuId) as ModelLine;
        line.returned += l.quantity;
        if (this.restock) m.received[line.skuId] += l.quantity;
      }
      if (order.status !== "PARTIALLY_SHIPPED" && order.lines.every((l) => l.returned === l.shipped)) order.status = "RETURNED";
      want = { ok: order.status };
    }
    const got = await askOrder(r, this.orderId, { op: "return", cmd: { returnId, lines, restock: this.restock } });
    await expectReply(m, r, got, want);
  }
  toString = (): string => `return(${this.label()}, ${this.all ? "all" : "one unit"}, ${this.restock ? "restock" : "no restock"})`;
}

class Receive implements Cmd {
  constructor(
    readonly skuId: SkuId,
    readonly units: number,
  ) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    m.received[this.skuId] += this.units;
    await r.system.ask(skuActorId(this.skuId, DEFAULT_TENANT), {
      op: "adjust",
      cmd: { locationId: LOCATION, delta: this.units, reason: "RECEIVED", key: "" },
      note: "",
    });
    await verify(m, r);
  }
  toString = (): string => `receive(${this.skuId}, ${this.units})`;
}

/** Time passes; the payment timer wakes the orders (the runtime's own wake-up path). */
class Advance implements Cmd {
  constructor(readonly ms: number) {}
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    m.nowMs += this.ms;
    expireDue(m);
    r.clock.advance(this.ms);
    for (const orderId of m.orders.keys()) r.system.wake(orderActorId(orderId, DEFAULT_TENANT));
    await verify(m, r);
  }
  toString = (): string => `advance(${this.ms} ms)`;
}

/** Stops the node and starts it again over the same journal: everything is recovered from disk. */
class Restart implements Cmd {
  check = (): boolean => true;
  async run(m: Model, r: Real): Promise<void> {
    await stopSystem(r);
    Object.assign(r, await bootSystem(r.dir, r.clock));
    await verify(m, r);
  }
  toString = (): string => "restart";
}

const orderId = fc.nat({ max: ORDERS_MAX - 1 });
const create = fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 })).map(([a, b]) => new Create(a + b === 0 ? [1, 0] : [a, b]));
const pay = orderId.map((id) => new Pay(id));
const cancel = orderId.map((id) => new Cancel(id));
const ship = fc.tuple(orderId, fc.boolean()).map(([id, all]) => new Ship(id, all));
const track = fc.tuple(orderId, fc.nat({ max: 3 }), fc.boolean()).map(([id, i, delivered]) => new Track(id, i, delivered));
const ret = fc.tuple(orderId, fc.boolean(), fc.boolean()).map(([id, all, restock]) => new Return(id, all, restock));
const receive = fc.tuple(fc.constantFrom(...SKUS), fc.integer({ min: 1, max: 5 })).map(([sku, n]) => new Receive(sku, n));
// Short steps keep orders payable; the long ones pass payment deadlines and hold expiries.
const advance = fc.constantFrom(1_000, 10_000, PAYMENT_TIMEOUT_MS, PAYMENT_TIMEOUT_MS + GRACE_MS + 1).map((ms) => new Advance(ms));
const restart = fc.constant(new Restart());
/** Repeats weight the draw toward the commands that move an order along its happy path. */
const commands = [create, create, pay, pay, pay, cancel, ship, ship, ship, track, track, track, ret, ret, receive, advance, restart];

describe("order saga (model-based property test on a real ActorSystem and LmdbJournal)", function () {
  this.timeout(120_000);

  it("keeps every order's state and every SKU's on_hand, reserved and committed equal to the model", async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 40, size: "max" }), async (cmds) => {
        const dir = await mkdtemp(path.join(tmpdir(), "qm-saga-prop-"));
        const clock = new ManualClock();
        const real: Real = { dir, clock, ...(await bootSystem(dir, clock)) };
        try {
          for (const sku of SKUS) {
            await real.system.ask(skuActorId(sku, DEFAULT_TENANT), {
              op: "define",
              patch: { title: sku, priceMinor: 100, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] },
            } satisfies SkuMessage);
            await real.system.ask(skuActorId(sku, DEFAULT_TENANT), {
              op: "adjust",
              cmd: { locationId: LOCATION, delta: INITIAL_ON_HAND, reason: "RECEIVED", key: "" },
              note: "",
            });
          }
          const model: Model = { nowMs: clock.nowMs(), orders: new Map(), received: { a: 0, b: 0 }, nextId: 0 };
          await fc.asyncModelRun(() => ({ model, real }), cmds);
        } finally {
          await stopSystem(real);
          await rm(dir, { recursive: true, force: true });
        }
      }),
      // About 900 commands, most of them fsynced appends: 6-9 s on two shared cores.
      { numRuns: 60 },
    );
  });
});
