import { expect } from "chai";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { open } from "lmdb";
import { ManualClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import type { AppendRequest, Journal } from "../../src/journal/journal";
import { type AuditRetention, LmdbJournal } from "../../src/journal/lmdb_journal";

const KEEP_ALL: AuditRetention = { maxAgeMs: 365 * 24 * 3600 * 1000, maxPerActor: 1_000_000 };

describe("LmdbJournal", function () {
  this.timeout(30_000);

  let dirs: string[] = [];
  let journals: Journal[] = [];

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "qm-journal-"));
    dirs.push(dir);
    return dir;
  }

  async function openJournal(path: string, clock = new ManualClock(), auditRetention = KEEP_ALL): Promise<LmdbJournal> {
    const journal = new LmdbJournal({ path, auditRetention, clock });
    journals.push(journal);
    await journal.open();
    return journal;
  }

  afterEach(async () => {
    for (const journal of journals) await journal.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    journals = [];
    dirs = [];
  });

  async function rejectionOf(promise: Promise<unknown>): Promise<QmError> {
    try {
      await promise;
    } catch (error) {
      if (error instanceof QmError) return error;
      throw error;
    }
    throw new Error("expected a rejection");
  }

  /** Counts keys of one keyspace straight from LMDB; the journal at path must be closed. */
  async function storedKeys(path: string, keyspace: string): Promise<number> {
    const root = open<Buffer, string>({ path, readOnly: true });
    try {
      return root.openDB<Buffer, string>(keyspace, { encoding: "binary" }).getKeysCount();
    } finally {
      await root.close();
    }
  }

  describe("append and recover", () => {
    it("recovers an actor that never appended as an empty log with lastSeq 0 and no wake-up", async () => {
      const journal = await openJournal(tempDir());
      expect(await journal.recover("sku/NEW")).to.deep.equal({ snapshot: undefined, events: [], lastSeq: 0, wakeAtMs: null });
    });

    it("returns appended events in order with their last seq and wake-up time", async () => {
      const journal = await openJournal(tempDir());
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [{ reserved: 1 }, { reserved: 2 }], wakeAtMs: 5_000 });
      await journal.append({ actorId: "sku/A", expectedLastSeq: 2, events: ["third"] });
      expect(await journal.recover("sku/A")).to.deep.equal({
        snapshot: undefined,
        events: [{ reserved: 1 }, { reserved: 2 }, "third"],
        lastSeq: 3,
        wakeAtMs: 5_000,
      });
      expect(await journal.recover("sku/B")).to.include({ lastSeq: 0 });
    });

    it("stores what the request held when append was called, not what the caller changes afterwards", async () => {
      const journal = await openJournal(tempDir());
      const event = { lines: [1, 2] };
      const state = { onHand: 10 };
      const appended = journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [event], snapshot: { seq: 1, state } });
      event.lines.push(3);
      state.onHand = 0;
      await appended;
      const recovered = await journal.recover("sku/A");
      expect(recovered.snapshot).to.deep.equal({ seq: 1, state: { onHand: 10 } });
      await journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: [event] });
      expect((await journal.recover("sku/B")).events).to.deep.equal([{ lines: [1, 2, 3] }]);
    });

    it("rejects a stale expectedLastSeq with FENCED and commits the other appends of the same batch", async () => {
      const journal = await openJournal(tempDir());
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["a1", "a2"] });
      const commitsBefore = journal.stats().commits;
      // Issued in one tick, so all three ride in one write.
      const good1 = journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: ["b1"] });
      const stale = journal.append({ actorId: "sku/A", expectedLastSeq: 1, events: ["zombie"] });
      const good2 = journal.append({ actorId: "sku/C", expectedLastSeq: 0, events: ["c1"] });
      const fenced = await rejectionOf(stale);
      await Promise.all([good1, good2]);
      expect(fenced.code).to.equal("FENCED");
      expect(fenced.metadata).to.deep.equal({ actorId: "sku/A", expectedLastSeq: "1", lastSeq: "2" });
      expect(journal.stats().commits).to.equal(commitsBefore + 1);
      expect((await journal.recover("sku/A")).events).to.deep.equal(["a1", "a2"]);
      expect((await journal.recover("sku/B")).events).to.deep.equal(["b1"]);
      expect((await journal.recover("sku/C")).events).to.deep.equal(["c1"]);
    });

    it("chains two appends of one actor in one batch: the second sees the first's lastSeq", async () => {
      const journal = await openJournal(tempDir());
      const first = journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["1", "2"] });
      const second = journal.append({ actorId: "sku/A", expectedLastSeq: 2, events: ["3"] });
      const replayOfFirst = journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["dup"] });
      await Promise.all([first, second]);
      expect((await rejectionOf(replayOfFirst)).code).to.equal("FENCED");
      expect(journal.stats()).to.include({ commits: 1, appends: 3, events: 3 });
      expect(await journal.recover("sku/A")).to.include({ lastSeq: 3 });
      expect((await journal.recover("sku/A")).events).to.deep.equal(["1", "2", "3"]);
    });

    it("folds 2,000 appends from 64 concurrent actors into far fewer commits than appends", async () => {
      const journal = await openJournal(tempDir());
      const actors = 64;
      const appendsPerActor = 2000 / actors;
      const runActor = async (a: number, count: number): Promise<void> => {
        for (let seq = 0; seq < count; seq++) {
          await journal.append({ actorId: `sku/S${a}`, expectedLastSeq: seq, events: [{ a, seq }] });
        }
      };
      // 2000 = 64 * 31 + 16: the first 16 actors do one more.
      await Promise.all(Array.from({ length: actors }, (_, a) => runActor(a, Math.floor(appendsPerActor) + (a < 2000 % actors ? 1 : 0))));
      const stats = journal.stats();
      expect(stats.appends).to.equal(2000);
      expect(stats.events).to.equal(2000);
      // Each actor has one append in flight, so a batch carries up to 64.
      expect(stats.commits).to.be.at.least(Math.ceil(2000 / actors));
      expect(stats.commits).to.be.at.most(2000 / 8);
      const recovered = await journal.recover("sku/S0");
      expect(recovered.lastSeq).to.equal(32);
      expect(recovered.events[31]).to.deep.equal({ a: 0, seq: 31 });
    });

    it("sums how long appends waited in the queue before a write took them, by the injected clock", async () => {
      const clock = new ManualClock();
      const journal = await openJournal(tempDir(), clock);
      const first = journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["a"] });
      clock.advance(3);
      const second = journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: ["b"] });
      // The write takes the queue in its transaction callback, which runs on a
      // later turn: both appends wait until then, 5 ms and 2 ms by the clock.
      clock.advance(2);
      await Promise.all([first, second]);
      const stats = journal.stats();
      expect(stats).to.include({ commits: 1, appends: 2 });
      expect(stats.queueWaitSeconds).to.be.closeTo(0.007, 1e-9);
      await journal.append({ actorId: "sku/A", expectedLastSeq: 1, events: ["a2"] });
      expect(journal.stats().queueWaitSeconds).to.be.closeTo(0.007, 1e-9);
    });

    it("rejects unknown input with INVALID_ARGUMENT before queueing it", async () => {
      const journal = await openJournal(tempDir());
      const bad: AppendRequest[] = [
        { actorId: "no-kind", expectedLastSeq: 0, events: [] },
        { actorId: "sku/has space", expectedLastSeq: 0, events: [] },
        { actorId: "sku/A", expectedLastSeq: -1, events: [] },
        { actorId: "sku/A", expectedLastSeq: 0, events: ["x"], snapshot: { seq: 2, state: {} } },
        { actorId: "sku/A", expectedLastSeq: 0, events: [], wakeAtMs: Number.NaN },
        { actorId: "sku/A", expectedLastSeq: 0, events: [], audit: [{ seq: 2, atMs: 0, data: 1 }, { seq: 2, atMs: 0, data: 2 }] },
      ];
      for (const request of bad) expect((await rejectionOf(journal.append(request))).code).to.equal("INVALID_ARGUMENT");
      expect((await rejectionOf(journal.recover("x".repeat(300)))).code).to.equal("INVALID_ARGUMENT");
      expect(journal.stats().appends).to.equal(0);
    });
  });

  describe("snapshots", () => {
    it("compacts on snapshot: recover returns the snapshot and only later events, and stored event keys shrink", async () => {
      const path = tempDir();
      let journal = await openJournal(path);
      for (let seq = 0; seq < 100; seq++) await journal.append({ actorId: "sku/A", expectedLastSeq: seq, events: [seq + 1] });
      await journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: ["b"] });
      await journal.close();
      expect(await storedKeys(path, "events")).to.equal(101);

      journal = await openJournal(path);
      // The snapshot covers 1..103: the 100 stored events and 3 of this append's own 5.
      await journal.append({
        actorId: "sku/A",
        expectedLastSeq: 100,
        events: [101, 102, 103, 104, 105],
        snapshot: { seq: 103, state: { total: 103 } },
      });
      expect(await journal.recover("sku/A")).to.deep.equal({
        snapshot: { seq: 103, state: { total: 103 } },
        events: [104, 105],
        lastSeq: 105,
        wakeAtMs: null,
      });
      await journal.close();
      expect(await storedKeys(path, "events")).to.equal(2 + 1);
      expect(await storedKeys(path, "snapshots")).to.equal(1);
    });

    it("replaces an older snapshot with a newer one and deletes only the events between them", async () => {
      const path = tempDir();
      const journal = await openJournal(path);
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [1, 2, 3], snapshot: { seq: 3, state: "s3" } });
      await journal.append({ actorId: "sku/A", expectedLastSeq: 3, events: [4, 5, 6] });
      await journal.append({ actorId: "sku/A", expectedLastSeq: 6, events: [7], snapshot: { seq: 5, state: "s5" } });
      expect(await journal.recover("sku/A")).to.deep.equal({ snapshot: { seq: 5, state: "s5" }, events: [6, 7], lastSeq: 7, wakeAtMs: null });
      await journal.close();
      expect(await storedKeys(path, "events")).to.equal(2);
    });

    it("rejects a snapshot older than the stored one with INVALID_ARGUMENT and writes nothing of that append", async () => {
      const journal = await openJournal(tempDir());
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [1, 2, 3, 4], snapshot: { seq: 4, state: "s4" } });
      const error = await rejectionOf(journal.append({ actorId: "sku/A", expectedLastSeq: 4, events: [5], snapshot: { seq: 2, state: "s2" } }));
      expect(error.code).to.equal("INVALID_ARGUMENT");
      expect(await journal.recover("sku/A")).to.deep.equal({ snapshot: { seq: 4, state: "s4" }, events: [], lastSeq: 4, wakeAtMs: null });
    });
  });

  describe("wake-ups", () => {
    it("lists due actors earliest first, only those at or before now, at most limit", async () => {
      const journal = await openJournal(tempDir());
      const times: Record<string, number> = { "sku/late": 3_000, "sku/early": 1_000, "order/mid": 2_000, "sku/tie-b": 2_000, "sku/future": 9_000 };
      for (const [actorId, wakeAtMs] of Object.entries(times)) await journal.append({ actorId, expectedLastSeq: 0, events: [], wakeAtMs });
      await journal.append({ actorId: "sku/none", expectedLastSeq: 0, events: ["no wake-up"] });
      expect(await journal.dueWakeups(999, 100)).to.deep.equal([]);
      expect(await journal.dueWakeups(2_000, 100)).to.deep.equal(["sku/early", "order/mid", "sku/tie-b"]);
      expect(await journal.dueWakeups(5_000, 2)).to.deep.equal(["sku/early", "order/mid"]);
      expect(await journal.dueWakeups(10_000, 100)).to.deep.equal(["sku/early", "order/mid", "sku/tie-b", "sku/late", "sku/future"]);
    });

    it("pages through due actors after skipping `offset` of them, and refuses an offset beyond WAKEUPS_SCAN_DEPTH_MAX", async () => {
      const journal = await openJournal(tempDir());
      const times: Record<string, number> = { "sku/a": 1_000, "sku/b": 2_000, "sku/c": 3_000, "sku/d": 4_000, "sku/later": 9_000 };
      for (const [actorId, wakeAtMs] of Object.entries(times)) await journal.append({ actorId, expectedLastSeq: 0, events: [], wakeAtMs });
      expect(await journal.dueWakeups(5_000, 2, 0)).to.deep.equal(["sku/a", "sku/b"]);
      expect(await journal.dueWakeups(5_000, 2, 2)).to.deep.equal(["sku/c", "sku/d"]);
      // Past the due ones: the entry not yet due is never returned.
      expect(await journal.dueWakeups(5_000, 2, 4)).to.deep.equal([]);
      expect(await journal.dueWakeups(5_000, 2, 40)).to.deep.equal([]);
      expect((await rejectionOf(journal.dueWakeups(5_000, 2, 100_001))).code).to.equal("INVALID_ARGUMENT");
    });

    it("moves an actor's index entry when its wake-up time changes and removes it when cleared", async () => {
      const path = tempDir();
      const journal = await openJournal(path);
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], wakeAtMs: 1_000 });
      await journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: [], wakeAtMs: 2_000 });
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["later"], wakeAtMs: 3_000 });
      expect(await journal.dueWakeups(2_500, 100)).to.deep.equal(["sku/B"]);
      expect(await journal.dueWakeups(3_000, 100)).to.deep.equal(["sku/B", "sku/A"]);
      // wakeAtMs undefined leaves the time as it is.
      await journal.append({ actorId: "sku/A", expectedLastSeq: 1, events: ["unchanged"] });
      expect((await journal.recover("sku/A")).wakeAtMs).to.equal(3_000);
      await journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: [], wakeAtMs: null });
      expect(await journal.dueWakeups(10_000, 100)).to.deep.equal(["sku/A"]);
      expect((await journal.recover("sku/B")).wakeAtMs).to.equal(null);
      await journal.close();
      expect(await storedKeys(path, "wakeups")).to.equal(1);
    });
  });

  const record = (seq: number, atMs: number) => ({ seq, atMs, data: { adjustment: seq } });

  describe("audit", () => {

    it("pages audit records after a seq, oldest first, at most limit", async () => {
      const clock = new ManualClock();
      const journal = await openJournal(tempDir(), clock);
      const now = clock.nowMs();
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], audit: [record(1, now), record(2, now), record(5, now)] });
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], audit: [record(7, now)] });
      await journal.append({ actorId: "sku/AB", expectedLastSeq: 0, events: [], audit: [record(3, now)] });
      expect((await journal.readAudit("sku/A", 0, 2)).map((r) => r.seq)).to.deep.equal([1, 2]);
      expect((await journal.readAudit("sku/A", 2, 2)).map((r) => r.seq)).to.deep.equal([5, 7]);
      expect(await journal.readAudit("sku/A", 7, 2)).to.deep.equal([]);
      expect(await journal.readAudit("sku/A", 5, 10)).to.deep.equal([record(7, now)]);
      expect((await journal.readAudit("sku/AB", 0, 10)).map((r) => r.seq)).to.deep.equal([3]);
    });

    it("rejects an audit seq not after the stored one with INVALID_ARGUMENT", async () => {
      const clock = new ManualClock();
      const journal = await openJournal(tempDir(), clock);
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], audit: [record(4, clock.nowMs())] });
      const error = await rejectionOf(journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["x"], audit: [record(4, clock.nowMs())] }));
      expect(error.code).to.equal("INVALID_ARGUMENT");
      expect((await journal.recover("sku/A")).lastSeq).to.equal(0);
    });

    it("keeps at most maxPerActor records per actor, dropping the oldest on append", async () => {
      const clock = new ManualClock();
      const path = tempDir();
      const journal = await openJournal(path, clock, { maxAgeMs: 3_600_000, maxPerActor: 5 });
      for (let seq = 1; seq <= 12; seq++) {
        await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], audit: [record(seq, clock.nowMs())] });
      }
      await journal.append({ actorId: "sku/B", expectedLastSeq: 0, events: [], audit: [record(1, clock.nowMs())] });
      expect((await journal.readAudit("sku/A", 0, 100)).map((r) => r.seq)).to.deep.equal([8, 9, 10, 11, 12]);
      await journal.close();
      expect(await storedKeys(path, "audit")).to.equal(5 + 1);
    });

    it("drops records older than maxAgeMs on the actor's next append", async () => {
      const clock = new ManualClock();
      const path = tempDir();
      const journal = await openJournal(path, clock, { maxAgeMs: 60_000, maxPerActor: 1000 });
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], audit: [record(1, clock.nowMs()), record(2, clock.nowMs())] });
      clock.advance(30_000);
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], audit: [record(3, clock.nowMs())] });
      clock.advance(30_001);
      // Records 1 and 2 are now 60,001 ms old; readAudit already hides them...
      expect((await journal.readAudit("sku/A", 0, 100)).map((r) => r.seq)).to.deep.equal([3]);
      await journal.close();
      expect(await storedKeys(path, "audit")).to.equal(3);
      // ...and the next append deletes them.
      const reopened = await openJournal(path, clock, { maxAgeMs: 60_000, maxPerActor: 1000 });
      await reopened.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["e"] });
      await reopened.close();
      expect(await storedKeys(path, "audit")).to.equal(1);
    });

    it("bounds the deletions of one append and drains a retention backlog over later appends", async () => {
      const clock = new ManualClock();
      const path = tempDir();
      let journal = await openJournal(path, clock);
      const records = Array.from({ length: 1000 }, (_, i) => record(i + 1, clock.nowMs()));
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: [], audit: records });
      await journal.close();
      // Lowering maxPerActor leaves 990 records over the cap.
      journal = await openJournal(path, clock, { maxAgeMs: 3_600_000, maxPerActor: 10 });
      const remaining: number[] = [];
      for (let seq = 0; seq < 4; seq++) {
        await journal.append({ actorId: "sku/A", expectedLastSeq: seq, events: [seq] });
        await journal.close();
        remaining.push(await storedKeys(path, "audit"));
        journal = await openJournal(path, clock, { maxAgeMs: 3_600_000, maxPerActor: 10 });
      }
      expect(remaining).to.deep.equal([1000 - 256, 1000 - 512, 1000 - 768, 10]);
      expect((await journal.readAudit("sku/A", 0, 100)).map((r) => r.seq)).to.deep.equal(records.slice(990).map((r) => r.seq));
    });
  });

  describe("lifecycle", () => {
    it("keeps events, snapshot, wake-up and audit across close and reopen", async () => {
      const clock = new ManualClock();
      const path = tempDir();
      const journal = await openJournal(path, clock);
      await journal.append({
        actorId: "order/o-1",
        expectedLastSeq: 0,
        events: ["created", "paid"],
        snapshot: { seq: 1, state: { status: "created" } },
        wakeAtMs: 42_000,
        audit: [record(1, clock.nowMs())],
      });
      await journal.close();
      const reopened = await openJournal(path, clock);
      expect(await reopened.recover("order/o-1")).to.deep.equal({
        snapshot: { seq: 1, state: { status: "created" } },
        events: ["paid"],
        lastSeq: 2,
        wakeAtMs: 42_000,
      });
      expect(await reopened.dueWakeups(42_000, 10)).to.deep.equal(["order/o-1"]);
      expect(await reopened.readAudit("order/o-1", 0, 10)).to.deep.equal([record(1, clock.nowMs())]);
      await reopened.append({ actorId: "order/o-1", expectedLastSeq: 2, events: ["shipped"] });
      expect((await reopened.recover("order/o-1")).lastSeq).to.equal(3);
    });

    it("close waits for appends in flight, is idempotent, and later appends fail with UNAVAILABLE", async () => {
      const path = tempDir();
      const journal = await openJournal(path);
      const inFlight = Array.from({ length: 50 }, (_, i) => journal.append({ actorId: `sku/S${i}`, expectedLastSeq: 0, events: [i] }));
      const closed = journal.close();
      expect(journal.close()).to.equal(closed);
      const late = await rejectionOf(journal.append({ actorId: "sku/late", expectedLastSeq: 0, events: [] }));
      await closed;
      await Promise.all(inFlight);
      expect(late.code).to.equal("UNAVAILABLE");
      expect((await rejectionOf(journal.recover("sku/S0"))).code).to.equal("UNAVAILABLE");
      await journal.close();
      expect(await storedKeys(path, "events")).to.equal(50);
    });

    it("writes nothing of a batch that fails half way: earlier appends of the batch are rolled back too", async () => {
      const journal = await openJournal(tempDir());
      // Reach into the private keyspaces to make one put of the batch throw,
      // as an LMDB error in the middle of the transaction would.
      const events = (journal as unknown as { stores: { events: { putSync(key: [string, number], value: Buffer): void } } }).stores.events;
      const putSync = events.putSync.bind(events);
      events.putSync = (key, value) => {
        if (key[0] === "sku/BAD") throw new Error("injected put failure");
        putSync(key, value);
      };
      const first = journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["a1"], wakeAtMs: 1_000 });
      const bad = journal.append({ actorId: "sku/BAD", expectedLastSeq: 0, events: ["x"] });
      const errors = await Promise.all([rejectionOf(first), rejectionOf(bad)]);
      expect(errors.map((e) => e.code)).to.deep.equal(["UNAVAILABLE", "UNAVAILABLE"]);
      expect(await journal.recover("sku/A")).to.deep.equal({ snapshot: undefined, events: [], lastSeq: 0, wakeAtMs: null });
      expect(await journal.dueWakeups(5_000, 10)).to.deep.equal([]);
      expect(journal.stats()).to.include({ commits: 0, appends: 0, events: 0 });
      events.putSync = putSync;
      await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["a1"] });
      expect((await journal.recover("sku/A")).events).to.deep.equal(["a1"]);
    });

    it("rejects every append of a batch whose write fails with EIO as UNAVAILABLE/JOURNAL_FAILED, and every later append too", async () => {
      // A real disk error: the child runs under a 1 MB file-size limit
      // (RLIMIT_FSIZE), so the write that grows data.mdb past it is cut
      // short, which LMDB reports as EIO. From the errno alone that cannot be
      // told from a failed fdatasync, so the journal stops (lmdb_journal.ts):
      // the next batch is refused too, and nothing after "before" is written.
      const path = tempDir();
      const journalModule = resolve(__dirname, "../../src/journal/lmdb_journal.js");
      const script = `
        process.on("SIGXFSZ", () => {});
        const { LmdbJournal } = require(${JSON.stringify(journalModule)});
        const clock = { nowMs: () => Date.now(), monotonicMs: () => performance.now() };
        const codeOf = (p) => p.then(() => "ok", (e) => e.code + "/" + e.metadata.reason);
        (async () => {
          const journal = new LmdbJournal({ path: ${JSON.stringify(path)}, auditRetention: { maxAgeMs: 1e9, maxPerActor: 10 }, clock });
          await journal.open();
          await journal.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["before"] });
          const failedBatch = await Promise.all([
            codeOf(journal.append({ actorId: "sku/BIG", expectedLastSeq: 0, events: [Buffer.alloc(4 << 20)] })),
            codeOf(journal.append({ actorId: "sku/A", expectedLastSeq: 1, events: ["same batch"] })),
          ]);
          const next = await codeOf(journal.append({ actorId: "sku/A", expectedLastSeq: 1, events: ["after"] }));
          const recovered = await journal.recover("sku/A");
          const big = await journal.recover("sku/BIG");
          const { commits, appends, events } = journal.stats();
          const stats = { commits, appends, events };
          await journal.close();
          process.stdout.write(JSON.stringify({ failedBatch, next, failed: journal.failed, events: recovered.events, bigLastSeq: big.lastSeq, stats }));
        })();`;
      const stdout = await new Promise<string>((done, fail) =>
        execFile("/bin/sh", ["-c", 'ulimit -f 2048 && exec "$0" -e "$1"', process.execPath, script], { timeout: 20_000 }, (error, out, err) =>
          error ? fail(new Error(`${error.message}\n${err}`)) : done(out),
        ),
      );
      expect(JSON.parse(stdout)).to.deep.equal({
        failedBatch: ["UNAVAILABLE/JOURNAL_FAILED", "UNAVAILABLE/JOURNAL_FAILED"],
        next: "UNAVAILABLE/JOURNAL_FAILED",
        failed: true,
        events: ["before"],
        bigLastSeq: 0,
        stats: { commits: 1, appends: 1, events: 1 },
      });
    });
  });
});
