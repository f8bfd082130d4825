// The cluster journal on a real nats-server with JetStream: the Journal port's
// promises (compare-and-set, snapshots, wake-ups, audit), group commit, and
// fencing of a former owner by epoch.

import { expect } from "chai";
import { pack, unpack } from "msgpackr";
import { connect, type NatsConnection } from "nats";
import { ManualClock } from "../../src/clock";
import { partitionOf } from "../../src/cluster/placement";
import { JetStreamJournal } from "../../src/journal/jetstream_journal";
import { type NatsProcess, startNats } from "../support/engines";
import { qmRejectionOf } from "../support/qm_error";

const PARTITIONS = 8;


describe("JetStream journal (integration, real nats-server)", function () {
  this.timeout(60_000);
  let nats: NatsProcess;
  const connections: NatsConnection[] = [];
  let clusterSeq = 0;
  const clock = new ManualClock();

  before(async () => {
    nats = await startNats();
  });

  after(async () => {
    for (const nc of connections) await nc.close().catch(() => undefined);
    await nats?.stop();
  });

  async function journal(cluster: string): Promise<JetStreamJournal> {
    const nc = await connect({ servers: nats.url });
    connections.push(nc);
    const j = new JetStreamJournal({ nc, cluster, partitions: PARTITIONS, replicas: 1, auditRetention: { maxAgeMs: 1e12, maxPerActor: 3 }, clock });
    await j.open();
    return j;
  }

  const fresh = (): string => `t${++clusterSeq}`;

  it("recovers exactly the appended events, and refuses an append over a stale last sequence with FENCED", async () => {
    const cluster = fresh();
    const j = await journal(cluster);
    await j.append({ actorId: "sku/A.1", expectedLastSeq: 0, events: [{ e: 1 }, { e: 2 }] });
    await j.append({ actorId: "sku/A.1", expectedLastSeq: 2, events: [{ e: 3 }], wakeAtMs: 5_000 });
    const stale = await qmRejectionOf(j.append({ actorId: "sku/A.1", expectedLastSeq: 2, events: [{ e: 99 }] }));
    expect(stale.code).to.equal("FENCED");
    // A second client of the same cluster (another node) reads what the first wrote.
    const other = await journal(cluster);
    const recovered = await other.recover("sku/A.1");
    expect(recovered).to.deep.equal({ snapshot: undefined, events: [{ e: 1 }, { e: 2 }, { e: 3 }], lastSeq: 3, wakeAtMs: 5_000 });
    expect((await other.recover("sku/never")).lastSeq).to.equal(0);
  });

  it("recovers from a snapshot plus the events after it, and compacts the events the snapshot covers", async () => {
    const cluster = fresh();
    const j = await journal(cluster);
    await j.append({ actorId: "order/o-1", expectedLastSeq: 0, events: [{ n: 1 }, { n: 2 }] });
    await j.append({ actorId: "order/o-1", expectedLastSeq: 2, events: [{ n: 3 }], snapshot: { seq: 3, state: { total: 6 } } });
    await j.append({ actorId: "order/o-1", expectedLastSeq: 3, events: [{ n: 4 }] });
    const recovered = await (await journal(cluster)).recover("order/o-1");
    expect(recovered.snapshot).to.deep.equal({ seq: 3, state: { total: 6 } });
    expect(recovered.events).to.deep.equal([{ n: 4 }]);
    expect(recovered.lastSeq).to.equal(4);
    // Compacted: the oldest journal message left is the one that carried the snapshot (events 3..3).
    const jsm = await connections[0]!.jetstreamManager();
    const subject = `qm.${cluster}.j.${partitionOf("order/o-1", PARTITIONS)}.order.o-1`;
    // nats.js types MSG.GET requests without next_by_subj, which the server (2.9+) honours.
    const firstOfSubject = { next_by_subj: subject, seq: 1 };
    const oldest = await jsm.streams.getMessage(`QM_${cluster}_JOURNAL`, firstOfSubject);
    expect((unpack(oldest.data) as { firstSeq: number; lastSeq: number }).firstSeq).to.equal(3);
  });

  /**
   * Counts the JetStream read requests made while `run` runs, as a second
   * client sees them: direct gets, and API message gets (which the journal
   * should not need: they must be 0).
   */
  async function readsDuring(run: () => Promise<void>): Promise<number> {
    const spy = await connect({ servers: nats.url });
    connections.push(spy);
    const counts = { direct: 0, api: 0 };
    const subscriptions = [
      spy.subscribe("$JS.API.DIRECT.GET.>", { callback: () => void counts.direct++ }),
      spy.subscribe("$JS.API.STREAM.MSG.GET.>", { callback: () => void counts.api++ }),
    ];
    await spy.flush();
    await run();
    await spy.flush();
    for (const s of subscriptions) s.unsubscribe();
    expect(counts.api, "API message gets").to.equal(0);
    return counts.direct;
  }

  it("recovers an actor written in one message with one read, and walks back by sequence past a snapshot without scanning", async () => {
    const cluster = fresh();
    const j = await journal(cluster);
    await j.append({ actorId: "sku/one", expectedLastSeq: 0, events: [{ e: 1 }, { e: 2 }], wakeAtMs: 9_000 });
    for (let i = 0; i < 3; i++) await j.append({ actorId: "sku/three", expectedLastSeq: i, events: [{ i }] });
    await j.append({ actorId: "sku/snap", expectedLastSeq: 0, events: [{ n: 1 }] });
    await j.append({ actorId: "sku/snap", expectedLastSeq: 1, events: [{ n: 2 }], snapshot: { seq: 2, state: { sum: 3 } } });
    for (let n = 3; n <= 4; n++) await j.append({ actorId: "sku/snap", expectedLastSeq: n - 1, events: [{ n }] });
    const other = await journal(cluster);
    let one: unknown;
    expect(await readsDuring(async () => void (one = await other.recover("sku/one")))).to.equal(1);
    expect(one).to.deep.equal({ snapshot: undefined, events: [{ e: 1 }, { e: 2 }], lastSeq: 2, wakeAtMs: 9_000 });
    let three: unknown;
    // The last message, then the two before it by their sequences; no snapshot read (none was ever written).
    expect(await readsDuring(async () => void (three = await other.recover("sku/three")))).to.equal(3);
    expect(three).to.deep.equal({ snapshot: undefined, events: [{ i: 0 }, { i: 1 }, { i: 2 }], lastSeq: 3, wakeAtMs: null });
    let snap: { snapshot: unknown; events: readonly unknown[]; lastSeq: number } | undefined;
    // Last message (event 4), the snapshot (covers 1..2), event 3's message; the one that carried the snapshot is not needed.
    expect(await readsDuring(async () => void (snap = await other.recover("sku/snap")))).to.equal(3);
    expect(snap?.snapshot).to.deep.equal({ seq: 2, state: { sum: 3 } });
    expect(snap?.events).to.deep.equal([{ n: 3 }, { n: 4 }]);
    expect(snap?.lastSeq).to.equal(4);
  });

  it("reads messages written before they named their previous message (format of the previous build), and appends after them", async () => {
    const cluster = fresh();
    const j = await journal(cluster);
    const nc = connections[connections.length - 1]!;
    const js = nc.jetstream();
    const subject = `qm.${cluster}.j.${partitionOf("sku/old", PARTITIONS)}.sku.old`;
    // Byte for byte what the previous build wrote: no prev, no snap.
    const first = await js.publish(subject, pack({ f: 1, epoch: 0, firstSeq: 1, lastSeq: 2, events: [{ o: 1 }, { o: 2 }], wakeAtMs: null }), {
      expect: { lastSubjectSequence: 0 },
    });
    await j.append({ actorId: "sku/other", expectedLastSeq: 0, events: [{ x: 1 }] }); // another subject in between
    await js.publish(subject, pack({ f: 1, epoch: 0, firstSeq: 3, lastSeq: 3, events: [{ o: 3 }], wakeAtMs: 7_000 }), {
      expect: { lastSubjectSequence: first.seq },
    });
    const reader = await journal(cluster);
    expect(await reader.recover("sku/old")).to.deep.equal({ snapshot: undefined, events: [{ o: 1 }, { o: 2 }, { o: 3 }], lastSeq: 3, wakeAtMs: 7_000 });
    // This build's messages after old ones: the walk back meets a message without prev and scans instead.
    await reader.append({ actorId: "sku/old", expectedLastSeq: 3, events: [{ o: 4 }] });
    await reader.append({ actorId: "sku/old", expectedLastSeq: 4, events: [{ o: 5 }], wakeAtMs: null });
    const again = await (await journal(cluster)).recover("sku/old");
    expect(again).to.deep.equal({ snapshot: undefined, events: [1, 2, 3, 4, 5].map((o) => ({ o })), lastSeq: 5, wakeAtMs: null });
  });

  it("writes the queued appends of one actor as one message, and many actors' in parallel (group commit)", async () => {
    const j = await journal(fresh());
    const before = j.stats();
    const appends: Promise<void>[] = [];
    for (let a = 0; a < 20; a++) for (let i = 0; i < 10; i++) appends.push(j.append({ actorId: `sku/g-${a}`, expectedLastSeq: i, events: [{ i }] }));
    await Promise.all(appends);
    const after = j.stats();
    expect(after.appends - before.appends).to.equal(200);
    expect(after.events - before.events).to.equal(200);
    // One actor's appends chain: at most one publish in flight per actor, so 10 appends take at most a few publishes.
    expect(after.commits - before.commits, "publishes for 200 appends").to.be.below(100);
    for (let a = 0; a < 20; a++) expect((await j.recover(`sku/g-${a}`)).events).to.have.length(10);
  });

  it("fences a former owner: after a new owner recovers at a newer epoch, the old owner's appends fail and nothing acknowledged is lost", async () => {
    const cluster = fresh();
    const oldOwner = await journal(cluster);
    const newOwner = await journal(cluster);
    await oldOwner.recover("sku/hot", { epoch: 1 });
    await oldOwner.append({ actorId: "sku/hot", expectedLastSeq: 0, events: [{ reserve: 1 }], epoch: 1 });
    // The partition moves: the new owner reads at epoch 2, which fences.
    const seen = await newOwner.recover("sku/hot", { epoch: 2 });
    expect(seen.events).to.deep.equal([{ reserve: 1 }]);
    // The paused former owner wakes up and writes with its old view.
    const late = await qmRejectionOf(oldOwner.append({ actorId: "sku/hot", expectedLastSeq: 1, events: [{ reserve: 2 }], epoch: 1 }));
    expect(late.code).to.equal("FENCED");
    await newOwner.append({ actorId: "sku/hot", expectedLastSeq: 1, events: [{ reserve: 3 }], epoch: 2 });
    expect((await (await journal(cluster)).recover("sku/hot")).events).to.deep.equal([{ reserve: 1 }, { reserve: 3 }]);
  });

  it("moves wake-ups with their partition: a new owner that claims it finds the due ones", async () => {
    const cluster = fresh();
    const first = await journal(cluster);
    const p = partitionOf("sku/w-1", PARTITIONS);
    await first.claimPartition(p);
    await first.append({ actorId: "sku/w-1", expectedLastSeq: 0, events: [{}], wakeAtMs: clock.nowMs() + 1_000 });
    expect(await first.dueWakeups(clock.nowMs() + 1_000, 10)).to.deep.equal(["sku/w-1"]);
    const second = await journal(cluster);
    expect(await second.dueWakeups(clock.nowMs() + 1_000, 10), "not claimed yet").to.deep.equal([]);
    await second.claimPartition(p);
    expect(await second.dueWakeups(clock.nowMs() + 999, 10), "not due yet").to.deep.equal([]);
    expect(await second.dueWakeups(clock.nowMs() + 1_000, 10)).to.deep.equal(["sku/w-1"]);
    // Cleared by its next write.
    await second.recover("sku/w-1", { epoch: 2 });
    await second.append({ actorId: "sku/w-1", expectedLastSeq: 1, events: [], wakeAtMs: null });
    expect(await second.dueWakeups(clock.nowMs() + 10_000, 10)).to.deep.equal([]);
  });

  it("keeps a tenant's actors (kind/tenant/key) apart from the default tenant's of the same key, wake-ups included", async () => {
    const cluster = fresh();
    const first = await journal(cluster);
    const tenantActor = "sku/ac-me/w.2";
    await first.claimPartition(partitionOf(tenantActor, PARTITIONS));
    await first.claimPartition(partitionOf("sku/w.2", PARTITIONS));
    await first.append({ actorId: "sku/w.2", expectedLastSeq: 0, events: [{ tenant: "default" }] });
    await first.append({ actorId: tenantActor, expectedLastSeq: 0, events: [{ tenant: "ac-me" }, { n: 2 }], wakeAtMs: clock.nowMs() + 1_000 });
    const second = await journal(cluster);
    expect((await second.recover("sku/w.2")).events).to.deep.equal([{ tenant: "default" }]);
    expect((await second.recover(tenantActor)).events).to.deep.equal([{ tenant: "ac-me" }, { n: 2 }]);
    // The wake-up index is rebuilt from subjects: the tenant's actor id must come back whole.
    await second.claimPartition(partitionOf(tenantActor, PARTITIONS));
    expect(await second.dueWakeups(clock.nowMs() + 1_000, 10)).to.deep.equal([tenantActor]);
  });

  it("pages audit records and keeps at most the configured number per actor", async () => {
    const j = await journal(fresh());
    await j.append({
      actorId: "sku/aud",
      expectedLastSeq: 0,
      events: [{}],
      audit: [1, 2, 3, 4, 5].map((seq) => ({ seq, atMs: clock.nowMs(), data: { delta: seq } })),
    });
    const all = await j.readAudit("sku/aud", 0, 10);
    expect(all.map((r) => r.seq)).to.deep.equal([3, 4, 5]);
    expect((await j.readAudit("sku/aud", 3, 1)).map((r) => r.data)).to.deep.equal([{ delta: 4 }]);
  });

  it("keeps acknowledged appends across a SIGKILL of nats-server restarted on the same store", async () => {
    const cluster = fresh();
    const j = await journal(cluster);
    await j.append({ actorId: "order/kept", expectedLastSeq: 0, events: [{ paid: true }] });
    for (const nc of connections.splice(0)) await nc.close().catch(() => undefined);
    await nats.kill();
    nats = await startNats({ dataDir: nats.dataDir });
    expect((await (await journal(cluster)).recover("order/kept")).events).to.deep.equal([{ paid: true }]);
  });
});
