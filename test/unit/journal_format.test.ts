// Journal format 3 (the oldest audit record's time in the meta record) reads
// the data directories format 2 wrote, and its retention check walks the audit
// keyspace only when something may be dropped. Format 4 (the SKU's
// reservedMany event) and format 5 (its reservedCols) read them all and stamp
// themselves on the first write.

import { expect } from "chai";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { open } from "lmdb";
import { ManualClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import type { AuditRecord } from "../../src/journal/journal";
import { type AuditRetention, LmdbJournal } from "../../src/journal/lmdb_journal";
import { scrubDataDir } from "../../src/journal/scrub";
import {
  CHECKSUM_BYTES,
  actorSeed,
  decodeMeta,
  encodeMeta,
  encodeMetaV2,
  sealInPlace,
  unseal,
} from "../../src/journal/record_codec";

const KEEP_ALL: AuditRetention = { maxAgeMs: 365 * 24 * 3600 * 1000, maxPerActor: 1_000_000 };

function record(seq: number, atMs: number): AuditRecord {
  return { seq, atMs, data: { n: seq } };
}

/** The format number in the info keyspace, straight from LMDB; the journal at path must be closed. */
async function storedFormat(path: string): Promise<number> {
  const root = open<Buffer, string>({ path, readOnly: true });
  try {
    const stored = root.openDB<Buffer, string>("info", { encoding: "binary" }).get("format");
    const body = stored === undefined ? undefined : unseal(stored, actorSeed("format"));
    if (body === undefined) throw new Error("no readable format record");
    return body.readUInt32LE(0);
  } finally {
    await root.close();
  }
}

/** Meta record sizes by actor, straight from LMDB; the journal at path must be closed. */
async function metaSizes(path: string): Promise<Record<string, number>> {
  const root = open<Buffer, string>({ path, readOnly: true });
  try {
    const sizes: Record<string, number> = {};
    for (const { key, value } of root.openDB<Buffer, string>("meta", { encoding: "binary" }).getRange({})) sizes[key] = value.length;
    return sizes;
  } finally {
    await root.close();
  }
}

/**
 * Turns a closed journal into what format 2 wrote: every meta record in the
 * 48-byte layout (no oldest audit time) and format 2 in the info keyspace.
 * Its other records are the same in both formats.
 */
async function downgradeToFormat2(path: string): Promise<void> {
  const root = open<Buffer, string>({ path });
  try {
    const meta = root.openDB<Buffer, string>("meta", { encoding: "binary" });
    const rewritten = [...meta.getRange({})].map(({ key, value }) => [key, encodeMetaV2(key, decodeMeta(key, Buffer.from(value)))] as const);
    await root.transaction(() => {
      for (const [key, value] of rewritten) meta.putSync(key, value);
    });
  } finally {
    await root.close();
  }
  await stampFormat(path, 2);
}

/** Stores format in the info keyspace of a closed journal, as the code of that format would have. */
async function stampFormat(path: string, format: number): Promise<void> {
  const root = open<Buffer, string>({ path });
  try {
    const info = root.openDB<Buffer, string>("info", { encoding: "binary" });
    const stamp = Buffer.alloc(CHECKSUM_BYTES + 4);
    stamp.writeUInt32LE(format, CHECKSUM_BYTES);
    await root.transaction(() => info.putSync("format", sealInPlace(stamp, actorSeed("format"))));
  } finally {
    await root.close();
  }
}

describe("journal formats 3, 4 and 5 (oldest audit time in the meta record; reservedMany; reservedCols)", function () {
  this.timeout(30_000);

  let dirs: string[] = [];
  let journals: LmdbJournal[] = [];

  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "qm-journal-format-"));
    dirs.push(dir);
    return dir;
  }

  async function openJournal(path: string, clock: ManualClock, auditRetention = KEEP_ALL, readOnly = false): Promise<LmdbJournal> {
    const journal = new LmdbJournal({ path, auditRetention, clock, readOnly });
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

  /** Counts the audit keyspace's range walks (retention's reads) of an open journal. */
  function countAuditWalks(journal: LmdbJournal): { walks: number } {
    const audit = journal.keyspaces().audit;
    const counter = { walks: 0 };
    const getRange = audit.getRange.bind(audit);
    audit.getRange = ((options: Parameters<typeof audit.getRange>[0]) => {
      counter.walks++;
      return getRange(options);
    }) as typeof audit.getRange;
    return counter;
  }

  it("reads a format 2 data directory, stamps it format 5 with its first write, and appends on", async () => {
    const clock = new ManualClock();
    const path = tempDir();
    const writer = await openJournal(path, clock);
    const t0 = clock.nowMs();
    await writer.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["defined", "received"], wakeAtMs: 90_000, audit: [record(1, t0)] });
    await writer.append({ actorId: "sku/A", expectedLastSeq: 2, events: ["reserved"], snapshot: { seq: 3, state: { onHand: 10, reserved: 1 } } });
    await writer.append({ actorId: "sku/A", expectedLastSeq: 3, events: ["released"] });
    await writer.append({ actorId: "order/o-1", expectedLastSeq: 0, events: ["created"] });
    await writer.close();
    await downgradeToFormat2(path);
    expect(await storedFormat(path)).to.equal(2);
    expect(await metaSizes(path)).to.deep.equal({ "order/o-1": 48, "sku/A": 48 });

    // A read-only open (scrub) reads it and leaves the format alone.
    const reader = await openJournal(path, clock, KEEP_ALL, true);
    expect(await reader.recover("sku/A")).to.deep.equal({ snapshot: { seq: 3, state: { onHand: 10, reserved: 1 } }, events: ["released"], lastSeq: 4, wakeAtMs: 90_000 });
    await reader.close();
    expect(await storedFormat(path)).to.equal(2);

    // Opened for writing and closed without a write (a node refused by its identity check, say): still format 2.
    const idle = await openJournal(path, clock);
    expect((await idle.recover("sku/A")).lastSeq).to.equal(4);
    await idle.close();
    expect(await storedFormat(path)).to.equal(2);

    const journal = await openJournal(path, clock, { maxAgeMs: 60_000, maxPerActor: 1000 });
    expect(await journal.recover("sku/A")).to.deep.equal({ snapshot: { seq: 3, state: { onHand: 10, reserved: 1 } }, events: ["released"], lastSeq: 4, wakeAtMs: 90_000 });
    expect(await journal.recover("order/o-1")).to.deep.equal({ snapshot: undefined, events: ["created"], lastSeq: 1, wakeAtMs: null });
    expect(await journal.dueWakeups(90_000, 10)).to.deep.equal(["sku/A"]);
    expect(await journal.readAudit("sku/A", 0, 10)).to.deep.equal([record(1, t0)]);
    // The compare-and-set runs on the old record's last seq; the oldest audit time is unknown, so this append walks the audit records once.
    const walks = countAuditWalks(journal);
    clock.advance(30_000);
    await journal.append({ actorId: "sku/A", expectedLastSeq: 4, events: ["reserved again"], audit: [record(2, clock.nowMs())] });
    expect(walks.walks).to.equal(1);
    await journal.append({ actorId: "sku/A", expectedLastSeq: 5, events: ["and again"] });
    expect(walks.walks).to.equal(1);
    // Retention learnt record 1's time from that walk: once it is too old, the next append drops it.
    clock.advance(30_001);
    await journal.append({ actorId: "sku/A", expectedLastSeq: 6, events: ["later"] });
    expect(walks.walks).to.equal(2);
    expect((await journal.readAudit("sku/A", 0, 10)).map((r) => r.seq)).to.deep.equal([2]);
    expect((await journal.recover("sku/A")).lastSeq).to.equal(7);
    await journal.close();
    expect(await storedFormat(path)).to.equal(5);
    expect(await metaSizes(path)).to.deep.equal({ "order/o-1": 48, "sku/A": 56 });

    const reopened = await openJournal(path, clock);
    expect((await reopened.recover("sku/A")).events).to.deep.equal(["released", "reserved again", "and again", "later"]);
    expect((await reopened.recover("order/o-1")).events).to.deep.equal(["created"]);
  });

  it("refuses a journal of a format it does not read with FAILED_PRECONDITION", async () => {
    const clock = new ManualClock();
    const path = tempDir();
    const writer = await openJournal(path, clock);
    await writer.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["defined"] });
    await writer.close();
    await stampFormat(path, 6);
    const journal = new LmdbJournal({ path, auditRetention: KEEP_ALL, clock });
    let error: unknown;
    try {
      await journal.open();
    } catch (caught) {
      error = caught;
    }
    expect(error).to.be.instanceOf(QmError);
    expect((error as QmError).code).to.equal("FAILED_PRECONDITION");
    expect((error as QmError).message).to.contain("has format 6; this version reads formats 2, 3, 4 and 5 only");
  });

  for (const older of [3, 4]) {
    it(`reads a format ${older} data directory as it is and stamps it format 5 with its first write, so that a format ${older} build refuses it`, async () => {
      const clock = new ManualClock();
      const path = tempDir();
      const writer = await openJournal(path, clock);
      await writer.append({ actorId: "sku/A", expectedLastSeq: 0, events: ["defined", "received"], wakeAtMs: 90_000 });
      await writer.close();
      await stampFormat(path, older);

      // Opened and closed without a write: still the older format, readable by the release before.
      const idle = await openJournal(path, clock);
      expect(await idle.recover("sku/A")).to.deep.equal({ snapshot: undefined, events: ["defined", "received"], lastSeq: 2, wakeAtMs: 90_000 });
      await idle.close();
      expect(await storedFormat(path)).to.equal(older);

      const journal = await openJournal(path, clock);
      await journal.append({ actorId: "sku/A", expectedLastSeq: 2, events: ["reservedCols"] });
      await journal.close();
      expect(await storedFormat(path)).to.equal(5);
      // Formats 4 and 5 kept format 3's meta record layout.
      expect(await metaSizes(path)).to.deep.equal({ "sku/A": 56 });
      const reopened = await openJournal(path, clock);
      expect((await reopened.recover("sku/A")).events).to.deep.equal(["defined", "received", "reservedCols"]);
    });
  }

  it("walks the audit records only when retention may drop one, and tracks the oldest kept record's time", async () => {
    const clock = new ManualClock();
    const path = tempDir();
    const journal = await openJournal(path, clock, { maxAgeMs: 60_000, maxPerActor: 3 });
    const walks = countAuditWalks(journal);
    const t0 = clock.nowMs();
    const oldest = async (): Promise<number | null> => decodeMeta("sku/A", journal.keyspaces().meta.get("sku/A")).auditOldestAtMs;

    // The walks (retention's range reads) one append makes; readAudit walks too, so each append is counted alone.
    const appendWalks = async (...args: Parameters<typeof journal.append>): Promise<number> => {
      const before = walks.walks;
      await journal.append(...args);
      return walks.walks - before;
    };

    expect(await appendWalks({ actorId: "sku/A", expectedLastSeq: 0, events: ["a"], audit: [record(1, t0)] })).to.equal(0);
    expect(await oldest()).to.equal(t0);
    for (let seq = 2; seq <= 3; seq++) {
      clock.advance(10_000);
      // Three records, none too old: no walk.
      expect(await appendWalks({ actorId: "sku/A", expectedLastSeq: seq - 1, events: ["a"], audit: [record(seq, clock.nowMs())] })).to.equal(0);
    }
    expect(await oldest()).to.equal(t0);
    // The fourth is one over maxPerActor: the walk drops record 1 and keeps record 2's time.
    clock.advance(10_000);
    expect(await appendWalks({ actorId: "sku/A", expectedLastSeq: 3, events: ["a"], audit: [record(4, clock.nowMs())] })).to.equal(1);
    expect(await oldest()).to.equal(t0 + 10_000);
    expect((await journal.readAudit("sku/A", 0, 10)).map((r) => r.seq)).to.deep.equal([2, 3, 4]);
    // Appends without audit records while all are young: no walk.
    expect(await appendWalks({ actorId: "sku/A", expectedLastSeq: 4, events: ["b"] })).to.equal(0);
    // Every record expired: the walk drops them all, and no oldest time remains.
    clock.advance(60_000 + 30_001);
    expect(await appendWalks({ actorId: "sku/A", expectedLastSeq: 5, events: ["c"] })).to.equal(1);
    expect(await oldest()).to.equal(null);
    expect(await journal.readAudit("sku/A", 0, 10)).to.deep.equal([]);
    // With no records left, appends never walk; the next record is the oldest again.
    expect(await appendWalks({ actorId: "sku/A", expectedLastSeq: 6, events: ["d"] })).to.equal(0);
    expect(await appendWalks({ actorId: "sku/A", expectedLastSeq: 7, events: ["e"], audit: [record(5, clock.nowMs())] })).to.equal(0);
    expect(await oldest()).to.equal(clock.nowMs());
    const meta = decodeMeta("sku/A", journal.keyspaces().meta.get("sku/A"));
    expect([meta.auditCount, meta.auditLastSeq, meta.lastSeq]).to.deep.equal([1, 5, 8]);
  });
});

describe("qmctl scrub and the oldest audit time", function () {
  this.timeout(60_000);
  let dir: string | undefined;
  afterEach(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it("reports an actor whose meta record names another time than its first audit record, and passes a format 2 record that names none", async () => {
    dir = mkdtempSync(join(tmpdir(), "qm-journal-format-scrub-"));
    const path = join(dir, "journal");
    const clock = new ManualClock();
    const journal = new LmdbJournal({ path, auditRetention: KEEP_ALL, clock });
    await journal.open();
    for (const actorId of ["sku/A", "sku/B", "sku/C"]) {
      await journal.append({ actorId, expectedLastSeq: 0, events: ["e"], audit: [record(1, clock.nowMs()), record(2, clock.nowMs() + 5)] });
    }
    await journal.close();
    expect((await scrubDataDir(dir)).damaged).to.deep.equal([]);

    const root = open<Buffer, string>({ path });
    const meta = root.openDB<Buffer, string>("meta", { encoding: "binary" });
    const a = decodeMeta("sku/A", meta.get("sku/A"));
    const b = decodeMeta("sku/B", meta.get("sku/B"));
    await root.transaction(() => {
      meta.putSync("sku/A", encodeMeta("sku/A", { ...a, auditOldestAtMs: a.auditOldestAtMs! + 5 }));
      meta.putSync("sku/B", encodeMetaV2("sku/B", b));
    });
    await root.close();
    const report = await scrubDataDir(dir);
    expect(report.damaged.map((d) => d.actorId)).to.deep.equal(["sku/A"]);
    expect(report.damaged[0]!.problems.join(" ")).to.contain(`the meta record says ${clock.nowMs() + 5}`);
  });
});
