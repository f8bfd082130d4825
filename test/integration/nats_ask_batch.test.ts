// Asks to one node made in one event-loop turn travel in one NATS message
// (envelope version 2), each answered on its own; a lone ask still goes as
// version 1; and a node of the previous version, which only knows version 1,
// still gets every ask (one by one) during a rolling upgrade.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { pack, unpack } from "msgpackr";
import { connect, type Msg, type NatsConnection, type Subscription } from "nats";
import pino from "pino";
import { skuActorId, skuBehavior, type SkuMessage } from "../../src/actors/inventory/sku_actor";
import { ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { askSubject, NatsTransport } from "../../src/cluster/nats_transport";
import type { Placement } from "../../src/cluster/placement";
import type { SkuView } from "../../src/domain/sku";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { FORWARDED_ASKS_PER_MESSAGE_MAX } from "../../src/limits";
import { DEFAULT_TENANT } from "../../src/security/caller";
import { type NatsProcess, startNats } from "../support/engines";
import { qmRejectionOf } from "../support/qm_error";

const CLUSTER = "batch";
const DEF = { title: "Mug", priceMinor: 900, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };

/** Counts the messages sent to a node's ask subject, and the envelope version of each. */
async function tap(nc: NatsConnection, node: string): Promise<{ versions: number[]; sub: Subscription }> {
  const versions: number[] = [];
  // A callback runs as the client parses each message, so every message the server sent before
  // the PONG of a later flush() is counted when that flush resolves; an async iterator's loop
  // could still be a few microtasks behind it (CI once saw [2, 1] for [2, 1, 1]).
  const sub = nc.subscribe(askSubject(CLUSTER, node), {
    callback: (error, m) => {
      if (error === null) versions.push((unpack(m.data) as { v: number }).v);
    },
  });
  await nc.flush();
  return { versions, sub };
}

describe("NATS transport: asks to one node batched per event-loop turn (integration, real nats-server)", function () {
  this.timeout(60_000);
  let nats: NatsProcess;
  let dir = "";
  let journal: LmdbJournal;
  let system: ActorSystem;
  const connections: NatsConnection[] = [];
  const transports: NatsTransport[] = [];
  let sender: NatsTransport;
  let observerNc: NatsConnection;
  const outcomes: string[] = [];

  async function nc(): Promise<NatsConnection> {
    const c = await connect({ servers: nats.url });
    connections.push(c);
    return c;
  }

  before(async () => {
    nats = await startNats();
    dir = await mkdtemp(path.join(tmpdir(), "qm-nats-batch-"));
    journal = new LmdbJournal({ path: dir, auditRetention: { maxAgeMs: 1e12, maxPerActor: 100 }, clock: systemClock });
    await journal.open();
    system = new ActorSystem({
      journal,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      behaviors: [skuBehavior] as ActorBehavior<unknown, unknown>[],
      idleMs: 60_000,
      timerTickMs: 50,
    });
    await system.start();
    // B owns every SKU except "elsewhere-*"; A owns nothing and only sends.
    const ownerB: Placement = { self: "B", ownerOf: (id) => (id.includes("elsewhere") ? "C" : "B") };
    const owner = new NatsTransport({ nc: await nc(), cluster: CLUSTER, self: "B", placement: ownerB, local: system, clock: systemClock, logger: pino({ level: "silent" }) });
    await owner.start();
    transports.push(owner);
    const observer = { natsAsk: (outcome: string): void => void outcomes.push(outcome) };
    sender = new NatsTransport({
      nc: await nc(),
      cluster: CLUSTER,
      self: "A",
      placement: { self: "A", ownerOf: () => "B" },
      local: system,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      observer,
    });
    transports.push(sender);
    observerNc = await nc();
    await system.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "define", patch: DEF } satisfies SkuMessage);
    await system.ask(skuActorId("m-1", DEFAULT_TENANT), { op: "adjust", cmd: { locationId: "wh-1", delta: 100, reason: "RECEIVED", key: "" }, note: "" });
  });

  after(async () => {
    for (const t of transports) await t.stop();
    await system?.stop();
    await journal?.close();
    for (const c of connections) await c.close().catch(() => undefined);
    await nats?.stop();
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("sends 30 asks made in one turn as one version-2 message, answers each on its own, and takes exactly the stock they asked for", async () => {
    const { versions, sub } = await tap(observerNc, "B");
    outcomes.length = 0;
    const id = skuActorId("m-1", DEFAULT_TENANT);
    const asks = Array.from({ length: 30 }, (_, i) =>
      sender.ask<SkuView>("B", id, { op: "reserve", cmd: { id: `r-${i}`, quantity: i < 29 ? 3 : 50, locationId: "", ttlMs: 60_000 } } satisfies SkuMessage),
    );
    const settled = await Promise.allSettled(asks);
    await observerNc.flush();
    sub.unsubscribe();
    expect(versions).to.deep.equal([2]);
    // 29 x 3 = 87 of 100 units; the 30th asks for 50 and is refused alone.
    expect(settled.slice(0, 29).every((s) => s.status === "fulfilled")).to.equal(true);
    const last = settled[29];
    expect(last?.status === "rejected" ? (last.reason as { code?: string }).code : "fulfilled").to.equal("INSUFFICIENT_STOCK");
    const view = await system.ask<SkuView>(id, { op: "get" });
    expect([view.onHand, view.reserved]).to.deep.equal([100, 87]);
    expect(outcomes).to.have.length(30);
    expect(outcomes.every((o) => o === "ok")).to.equal(true);
  });

  it(`splits a turn's asks into messages of at most ${FORWARDED_ASKS_PER_MESSAGE_MAX}, and sends a lone ask as version 1`, async () => {
    const { versions, sub } = await tap(observerNc, "B");
    const id = skuActorId("m-1", DEFAULT_TENANT);
    await Promise.all(Array.from({ length: FORWARDED_ASKS_PER_MESSAGE_MAX + 1 }, () => sender.ask<SkuView>("B", id, { op: "get" })));
    await sender.ask<SkuView>("B", id, { op: "get" });
    await observerNc.flush();
    sub.unsubscribe();
    expect(versions).to.deep.equal([2, 1, 1]);
  });

  it("answers NOT_OWNER for the one ask of a batch whose actor the node does not own, and the others normally", async () => {
    const [mine, other] = await Promise.allSettled([
      sender.ask<SkuView>("B", skuActorId("m-1", DEFAULT_TENANT), { op: "get" }),
      sender.ask<SkuView>("B", skuActorId("elsewhere-1", DEFAULT_TENANT), { op: "get" }),
    ]);
    expect(mine?.status === "fulfilled" ? mine.value.reserved : -1).to.equal(87);
    expect(other?.status === "rejected" ? (other.reason as { code?: string }).code : "fulfilled").to.equal("NOT_OWNER");
  });

  it("serves a version-1 envelope from a node of the previous version", async () => {
    const body = pack({ v: 1, actorId: skuActorId("m-1", DEFAULT_TENANT), message: { op: "get" }, deadlineMs: Date.now() + 5_000 });
    const reply = await observerNc.request(askSubject(CLUSTER, "B"), body, { timeout: 5_000 });
    const decoded = unpack(reply.data) as { v: number; ok?: SkuView };
    expect([decoded.v, decoded.ok?.reserved]).to.deep.equal([1, 87]);
  });

  it("refuses a batch larger than the limit as a whole, delivering none of it", async () => {
    const ask = { actorId: skuActorId("m-1", DEFAULT_TENANT), message: { op: "reserve", cmd: { id: "too-many", quantity: 1, locationId: "", ttlMs: 60_000 } }, deadlineMs: Date.now() + 5_000 };
    const body = pack({ v: 2, asks: Array.from({ length: FORWARDED_ASKS_PER_MESSAGE_MAX + 1 }, () => ask) });
    const reply = unpack((await observerNc.request(askSubject(CLUSTER, "B"), body, { timeout: 5_000 })).data) as { v: number; error?: { code: string } };
    expect([reply.v, reply.error?.code]).to.deep.equal([1, "INVALID_ARGUMENT"]);
    const view = await system.ask<SkuView>(skuActorId("m-1", DEFAULT_TENANT), { op: "get" });
    expect(view.reserved).to.equal(87);
  });

  it("sends every ask again one by one to a node of the previous version that refuses the batch, and keeps sending it singles", async () => {
    // The previous version's serve(): version 1 only, anything else refused before delivery.
    const old = await nc();
    const seen: number[] = [];
    const sub = old.subscribe(askSubject(CLUSTER, "old"));
    void (async () => {
      for await (const m of sub as AsyncIterable<Msg>) {
        const envelope = unpack(m.data) as { v: number; actorId?: string };
        seen.push(envelope.v);
        m.respond(
          pack(
            envelope.v === 1
              ? { v: 1, ok: `answered ${envelope.actorId ?? "?"}` }
              : { v: 1, error: { code: "FAILED_PRECONDITION", message: "version", metadata: { reason: "ENVELOPE_VERSION" }, violations: [] } },
          ),
        );
      }
    })();
    await old.flush();
    const first = await Promise.all(["x", "y", "z"].map((a) => sender.ask<string>("old", a, { op: "get" })));
    expect(first).to.deep.equal(["answered x", "answered y", "answered z"]);
    const second = await Promise.all(["u", "w"].map((a) => sender.ask<string>("old", a, { op: "get" })));
    expect(second).to.deep.equal(["answered u", "answered w"]);
    sub.unsubscribe();
    expect(seen).to.deep.equal([2, 1, 1, 1, 1, 1]);
  });

  it("fails every ask of a batch with DEADLINE_EXCEEDED when the node never answers", async () => {
    const silent = await nc();
    const sub = silent.subscribe(askSubject(CLUSTER, "silent"));
    await silent.flush();
    const errors = await Promise.all(
      ["p", "q"].map((a) => qmRejectionOf(sender.ask("silent", a, { op: "get" }, { deadlineMs: Date.now() + 300 }))),
    );
    sub.unsubscribe();
    expect(errors.map((e) => e.code)).to.deep.equal(["DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"]);
  });
});
