// Range reads over damaged pages: a zeroed leaf of the wake-up keyspace (the
// timer's scan) and of the audit keyspace (ListAdjustments, and retention on
// an adjustment), on copies of a data directory a real server populated.
//
// Before src/journal/lmdb_pages.ts, a cursor stepping onto such a leaf failed
// LMDB's `mdb_cassert(mc, IS_LEAF(mp))` and the process died of SIGABRT:
// "mdb.c:8587: Assertion 'IS_LEAF(mp)' failed in mdb_cursor_next()".

import { closeSync, openSync, writeSync } from "node:fs";
import { cp, rm } from "node:fs/promises";
import path from "node:path";
import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import * as lmdb from "lmdb";
import { AdjustmentReason } from "../../src/gen/quartermaster/v1/inventory";
import { ManualClock } from "../../src/clock";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { LmdbPageReader } from "../../src/journal/lmdb_pages";
import { expectFailure, seedSku, sleep } from "../support/fixtures";
import { call, type Clients, createClients, decodeStatusDetails, makeTempDir, type ServerProcess, startServer } from "../support/server_process";

const PAGE_BYTES = 4096;
/** Enough SKUs with a hold that the wake-up keyspace spans several leaves (about 100 entries a leaf). */
const SKUS = 400;
/** Adjustments of one SKU, so that its audit records span several leaves. */
const ADJUSTMENTS = 300;
const AUDIT_SKU = "audit-sku";
/** Long enough that the populating server stops before any hold is due. */
const HOLD_TTL_S = 15;
const TICK_MS = "100";
const skuId = (i: number): string => `sku-${String(i).padStart(3, "0")}`;
const { bufferToKeyValue, keyValueToBuffer } = lmdb as unknown as {
  readonly bufferToKeyValue: (bytes: Buffer) => unknown;
  readonly keyValueToBuffer: (key: unknown) => Buffer;
};

function journalFile(dataDir: string): string {
  return path.join(dataDir, "journal", "data.mdb");
}

function zeroPage(file: string, page: number): void {
  const fd = openSync(file, "r+");
  try {
    writeSync(fd, Buffer.alloc(PAGE_BYTES), 0, PAGE_BYTES, page * PAGE_BYTES);
  } finally {
    closeSync(fd);
  }
}

/** The leaves of a keyspace of a stopped node's file, with their decoded keys. */
function leavesOf(dataDir: string, keyspace: string): { page: number; keys: unknown[][] }[] {
  const reader = new LmdbPageReader(journalFile(dataDir), PAGE_BYTES);
  try {
    const root = reader.root(keyspace);
    if (typeof root !== "number") throw new Error(`no ${keyspace} tree: ${JSON.stringify(root)}`);
    return reader.leaves(root).map(({ page, keys }) => ({ page, keys: keys.map((k) => bufferToKeyValue(k) as unknown[]) }));
  } finally {
    reader.close();
  }
}

function errorReason(error: ServiceError): string | undefined {
  return decodeStatusDetails(error).errorInfo?.reason;
}

describe("journal range reads over damaged pages (fault)", function () {
  this.timeout(300_000);
  const servers: ServerProcess[] = [];
  const clients: Clients[] = [];
  const dirs: string[] = [];
  let golden = "";
  /** When every hold of the golden directory is due. */
  let holdsDueAtMs = 0;

  async function start(dataDir: string, env: Record<string, string> = {}): Promise<[ServerProcess, Clients]> {
    const server = await startServer({ dataDir, env: { QM_LOG_LEVEL: "info", QM_TIMER_TICK_MS: TICK_MS, ...env } });
    servers.push(server);
    const c = createClients(server.addr);
    clients.push(c);
    return [server, c];
  }

  async function copyOfGolden(): Promise<string> {
    const dir = await makeTempDir("qm-range-");
    dirs.push(dir);
    await cp(golden, dir, { recursive: true });
    return dir;
  }

  const adjust = (c: Clients, sku: string, delta: number): Promise<{ onHand: number }> =>
    call(c.inventory, "adjustStock", { skuId: sku, locationId: "wh-1", delta, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED, note: `adjustment of ${sku}`, idempotencyKey: "" });

  before(async () => {
    golden = await makeTempDir("qm-range-golden-");
    dirs.push(golden);
    const [server, c] = await start(golden);
    await seedSku(c, AUDIT_SKU, 1);
    for (let i = 0; i < ADJUSTMENTS; i++) await adjust(c, AUDIT_SKU, 1);
    for (let from = 0; from < SKUS; from += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, k) => seedSku(c, skuId(from + k), 10)));
    }
    const reservedAtMs = Date.now();
    for (let from = 0; from < SKUS; from += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, k) =>
          call(c.inventory, "reserve", { reservationId: `r-${from + k}`, skuId: skuId(from + k), quantity: 1, locationId: "", ttl: { seconds: HOLD_TTL_S, nanos: 0 } }),
        ),
      );
    }
    holdsDueAtMs = Date.now() + HOLD_TTL_S * 1000;
    expect((await call(c.inventory, "getSku", { skuId: skuId(7) })).reserved).to.equal(1);
    expect(await server.stop()).to.equal(0);
    servers.splice(0);
    expect(Date.now() - reservedAtMs, "populating outlasted the holds").to.be.below(HOLD_TTL_S * 1000);
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.kill();
  });

  after(async () => {
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  it("survives a zeroed wake-up leaf: every other SKU's hold still expires, the SKUs on the page answer DATA_LOSS, logged once", async () => {
    const dir = await copyOfGolden();
    const leaves = leavesOf(dir, "wakeups");
    expect(leaves.length, "the wake-up keyspace spans several leaves").to.be.at.least(3);
    // The second leaf: the timer's scan starts on the first and must step onto it.
    const victim = leaves[1]!;
    const lost = new Set(victim.keys.map((key) => String(key[1])));
    expect(lost.size).to.be.within(10, SKUS / 2);
    zeroPage(journalFile(dir), victim.page);

    // Started once every hold is due, so that the first tick's scan walks all the leaves, the damaged one too.
    await sleep(Math.max(0, holdsDueAtMs - Date.now()));
    const [server, c] = await start(dir);
    const expected = [...Array(SKUS).keys()].map(skuId).filter((id) => !lost.has(`sku/${id}`));
    // Only the timer may expire them: any call to a SKU would expire its due
    // holds at the start of that turn, so the test watches the expiry counter
    // and calls no SKU until it has counted every undamaged one. The timer
    // ticks every 100 ms; the deadline is generous for a loaded machine.
    const expired = async (): Promise<number> => {
      const text = await (await fetch(`http://${server.metricsAddr}/metrics`)).text();
      return Number(/^qm_reservations_expired_total (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
    };
    const deadline = Date.now() + 30_000;
    while ((await expired()) < expected.length && Date.now() < deadline) await sleep(100);
    expect(await expired()).to.equal(expected.length);
    for (const id of expected) expect((await call(c.inventory, "getSku", { skuId: id })).reserved, id).to.equal(0);
    for (const actorId of lost) {
      const error = await expectFailure(call(c.inventory, "getSku", { skuId: actorId.slice("sku/".length) }), GrpcStatus.DATA_LOSS);
      expect(errorReason(error)).to.equal("JOURNAL_CORRUPT");
    }
    const lines = server.logs().split("\n");
    expect(lines.filter((l) => l.includes("journal wakeups keyspace damaged"))).to.have.length(1);
    expect(lines.filter((l) => l.includes("Assertion"))).to.deep.equal([]);
    const metrics = await (await fetch(`http://${server.metricsAddr}/metrics`)).text();
    // The page, and each SKU whose wake-up was on it.
    expect(metrics).to.include(`qm_journal_damaged_actors_total ${1 + lost.size}`);
    expect(await server.stop()).to.equal(0);
  });

  it("survives a zeroed audit leaf: ListAdjustments and a pruning adjustment of that SKU answer DATA_LOSS, every other SKU lists and adjusts", async () => {
    const dir = await copyOfGolden();
    const leaves = leavesOf(dir, "audit");
    // A leaf holding only the audit SKU's records, not its first: a walk from its first record steps onto it.
    const own = leaves.filter((leaf) => leaf.keys.every((key) => key[0] === `sku/${AUDIT_SKU}`));
    expect(own.length, "the audit SKU's records span several leaves").to.be.at.least(3);
    zeroPage(journalFile(dir), own[1]!.page);

    // Keep 50 records per SKU: the next adjustment of the audit SKU prunes, walking its oldest records.
    const [server, c] = await start(dir, { QM_AUDIT_MAX_PER_SKU: "50" });
    let error = await expectFailure(call(c.inventory, "listAdjustments", { skuId: AUDIT_SKU, pageSize: 500, pageToken: "" }), GrpcStatus.DATA_LOSS);
    expect(errorReason(error)).to.equal("JOURNAL_CORRUPT");
    error = await expectFailure(adjust(c, AUDIT_SKU, 1), GrpcStatus.DATA_LOSS);
    expect(errorReason(error)).to.equal("JOURNAL_CORRUPT");
    // Every other SKU: its one adjustment lists, and a new one is written.
    for (const id of [skuId(0), skuId(200), skuId(SKUS - 1)]) {
      const page = await call(c.inventory, "listAdjustments", { skuId: id, pageSize: 500, pageToken: "" });
      expect(page.adjustments.map((a) => a.delta)).to.deep.equal([10]);
      expect((await adjust(c, id, 5)).onHand).to.equal(15);
    }
    const lines = server.logs().split("\n").filter((l) => l.includes("journal record damaged"));
    expect(lines).to.have.length(1);
    expect(lines[0]).to.include(`"actorId":"sku/${AUDIT_SKU}"`);
    expect(server.logs()).to.not.include("Assertion");
    expect(await server.stop()).to.equal(0);
  });
});

describe("LmdbPageReader against LMDB's own cursor, on a sound and a damaged tree (fault)", function () {
  this.timeout(120_000);
  /** Enough for a three-level tree: a 4 KiB branch page holds about 130 children, a leaf about 110 entries. */
  const ENTRIES = 20_000;
  let dir = "";
  let journal: LmdbJournal | undefined;

  before(async () => {
    dir = await makeTempDir("qm-pages-");
    const clock = new ManualClock();
    journal = new LmdbJournal({ path: path.join(dir, "journal"), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1_000_000 }, clock });
    await journal.open();
    for (let from = 0; from < ENTRIES; from += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, k) => journal!.append({ actorId: `sku/p-${from + k}`, expectedLastSeq: 0, events: ["e"], wakeAtMs: 1_000 + ((from + k) % 997) })),
      );
    }
  });

  after(async () => {
    await journal?.close();
    await rm(dir, { recursive: true, force: true });
  });

  function reader(): LmdbPageReader {
    return new LmdbPageReader(journalFile(dir), PAGE_BYTES);
  }

  it("walks the wake-up tree (three levels) in exactly the order and from exactly the offset LMDB's cursor does", () => {
    const wakeups = journal!.keyspaces().wakeups;
    expect((wakeups.getStats() as { treeDepth: number }).treeDepth).to.equal(3);
    const cursorKeys = [...wakeups.getKeys()].map((k) => JSON.stringify(k));
    expect(cursorKeys).to.have.length(ENTRIES);
    const pages = reader();
    try {
      const root = pages.root("wakeups");
      expect(root).to.be.a("number");
      const walked = [...pages.entries(root as number, 0, (d) => expect.fail(JSON.stringify(d)))].map((e) => JSON.stringify(bufferToKeyValue(e.key)));
      expect(walked).to.deep.equal(cursorKeys);
      const fromOffset = [...pages.entries(root as number, 1234, (d) => expect.fail(JSON.stringify(d)))].map((e) => JSON.stringify(bufferToKeyValue(e.key)));
      expect(fromOffset).to.deep.equal(cursorKeys.slice(1234));
      expect(pages.root("no-such-keyspace")).to.equal(null);
    } finally {
      pages.close();
    }
  });

  it("on a zeroed leaf: the walk reports that page once and yields every other entry; a range check refuses exactly the ranges that reach it", async () => {
    await journal!.close();
    journal = undefined;
    const leaves = leavesOf(dir, "wakeups");
    expect(leaves.length).to.be.at.least(10);
    const victim = leaves[5]!;
    zeroPage(journalFile(dir), victim.page);
    const pages = reader();
    try {
      const root = pages.root("wakeups") as number;
      const damaged: number[] = [];
      const walked = [...pages.entries(root, 0, (d) => damaged.push(d.page))];
      expect(damaged).to.deep.equal([victim.page]);
      expect(walked).to.have.length(ENTRIES - victim.keys.length);
      const keyOf = (leaf: number, i: number): Buffer => keyValueToBuffer(leaves[leaf]!.keys[i]);
      const last = (leaf: number): number => leaves[leaf]!.keys.length - 1;
      // Inside leaf 2: sound. From leaf 3 to the last key of leaf 4: the cursor steps onto leaf 5 to see the end.
      expect(pages.checkRange(root, keyOf(2, 0), keyOf(2, 1), 100)).to.equal(undefined);
      expect(pages.checkRange(root, keyOf(3, 0), keyOf(4, last(4)), 10_000)?.page).to.equal(victim.page);
      // Inside leaf 3, but more entries allowed than are left before leaf 5: refused too.
      expect(pages.checkRange(root, keyOf(3, 0), keyOf(7, 0), 10_000)?.page).to.equal(victim.page);
      // A limit that ends the cursor inside leaf 3 never reaches it.
      expect(pages.checkRange(root, keyOf(3, 0), keyOf(7, 0), 5)).to.equal(undefined);
      // Starting past it: sound.
      expect(pages.checkRange(root, keyOf(6, 0), keyOf(8, 0), 10_000)).to.equal(undefined);
    } finally {
      pages.close();
    }
  });
});
