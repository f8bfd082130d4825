// Backup and restore end to end: a real server under write load, qmctl run as
// its own process for backup and restore, and a second server started on the
// restored directory, whose audit logs must hold every write acknowledged
// before the backup began and nothing that was never sent.

import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { credentials } from "@grpc/grpc-js";
import { expect } from "chai";
import { createHash } from "node:crypto";
import {
  type BackupManifest,
  encodeManifest,
  endOfArchive,
  entryHeader,
  entryPadding,
  MANIFEST_NAME,
  readBackup,
} from "../../src/backup/backup_file";
import { AdminServiceClient } from "../../src/gen/quartermaster/v1/admin";
import { type Adjustment, AdjustmentReason } from "../../src/gen/quartermaster/v1/inventory";
import { BACKUP_CHUNK_BYTES_MAX } from "../../src/limits";
import { seedSku } from "../support/fixtures";
import { call, type Clients, createClients, makeTempDir, type ServerProcess, startServer } from "../support/server_process";
import { runQmctl } from "../support/run_process";

const SKUS = ["bk-1", "bk-2", "bk-3", "bk-4"];
const WRITERS = 8;
/** Audit pages are at most 500 records. */
const PAGE_SIZE = 500;

interface TarEntry {
  readonly start: number;
  readonly data: Buffer;
}

/** The entries of a backup by name, with where each one's data starts: ustar headers are 512 bytes, data is padded to 512. */
async function entriesOf(archive: Buffer): Promise<Map<string, TarEntry>> {
  const out = new Map<string, TarEntry>();
  let at = 0;
  while (at + 512 <= archive.length && archive[at] !== 0) {
    const name = archive.toString("utf8", at, at + 100).replace(/\0.*$/s, "");
    const size = parseInt(archive.toString("latin1", at + 124, at + 135), 8);
    out.set(name, { start: at + 512, data: archive.subarray(at + 512, at + 512 + size) });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** A backup whose files are the given ones, with a manifest that matches them: every sha256 checks out. */
function rebuiltBackup(manifest: BackupManifest, files: ReadonlyMap<string, Buffer>): Buffer {
  const listed = [...files].map(([p, data]) => ({ path: p, size: data.length, sha256: createHash("sha256").update(data).digest("hex") }));
  const json = encodeManifest({ ...manifest, files: listed });
  const parts: Buffer[] = [entryHeader(MANIFEST_NAME, json.length, Date.now()), json, entryPadding(json.length)];
  for (const [p, data] of files) parts.push(entryHeader(p, data.length, Date.now()), data, entryPadding(data.length));
  parts.push(endOfArchive());
  return Buffer.concat(parts);
}

async function allAdjustments(c: Clients, skuId: string): Promise<Adjustment[]> {
  const out: Adjustment[] = [];
  let pageToken = "";
  do {
    const page = await call(c.inventory, "listAdjustments", { skuId, pageSize: PAGE_SIZE, pageToken });
    out.push(...page.adjustments);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return out;
}

describe("backup and restore (integration)", function () {
  this.timeout(180_000);
  const servers: ServerProcess[] = [];
  const clients: Clients[] = [];
  let work: string;

  beforeEach(async () => {
    work = await makeTempDir("qm-bk-");
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of servers.splice(0)) await s.kill();
  });

  async function start(dataDir?: string): Promise<[ServerProcess, Clients]> {
    const server = await startServer(dataDir === undefined ? {} : { dataDir });
    servers.push(server);
    const c = createClients(server.addr);
    clients.push(c);
    return [server, c];
  }

  it("backs up under write load; a node on the restored copy has every write acknowledged before the backup began, and none never sent", async () => {
    const [source, c] = await start();
    for (const sku of SKUS) await seedSku(c, sku, 0);

    const sent = new Set<string>();
    const acked = new Set<string>();
    let running = true;
    const writer = async (w: number): Promise<void> => {
      for (let n = 0; running; n++) {
        const key = `w${w}-${n}`;
        sent.add(key);
        await call(c.inventory, "adjustStock", {
          skuId: SKUS[n % SKUS.length]!,
          locationId: "wh-1",
          delta: 1,
          reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
          note: "",
          idempotencyKey: key,
        });
        acked.add(key);
      }
    };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w));
    // Let the load build up before the backup, so there is something to lose.
    while (acked.size < 2000) await new Promise((resolve) => setImmediate(resolve));

    const ackedBefore = new Set(acked);
    const file = path.join(work, "node.qmbackup");
    const backup = await runQmctl(["--addr", source.addr, "backup", "--out", file, "--json"]);
    const ackedDuring = acked.size - ackedBefore.size;
    running = false;
    await Promise.all(writers);
    expect(backup.code, backup.stderr).to.equal(0);
    expect(ackedDuring, "writes acknowledged while the backup ran").to.be.greaterThan(0);
    const report = JSON.parse(backup.stdout) as { manifest: { files: { path: string }[] } };
    expect(report.manifest.files.map((f) => f.path)).to.deep.equal(["IDENTITY.json", "journal/data.mdb"]);

    const restoredDir = path.join(work, "restored");
    const restore = await runQmctl(["restore", "--from", file, "--data-dir", restoredDir]);
    expect(restore.code, restore.stderr).to.equal(0);
    expect(restore.stdout).to.match(/^restored .*: 2 files, \d+ bytes of files checked/);
    // The file beside the journal comes back as it was.
    expect(await readFile(path.join(restoredDir, "IDENTITY.json"), "utf8")).to.equal(await readFile(path.join(source.dataDir, "IDENTITY.json"), "utf8"));

    const [, restored] = await start(restoredDir);
    let total = 0;
    const found = new Set<string>();
    for (const sku of SKUS) {
      const adjustments = await allAdjustments(restored, sku);
      // The audit log is gapless and each record's on_hand_after counts the records before it: nothing half-restored.
      adjustments.forEach((a, i) => expect(a.onHandAfter, `${sku} #${i}`).to.equal(i + 1));
      for (const a of adjustments) found.add(a.idempotencyKey);
      const level = await call(restored.inventory, "getSku", { skuId: sku });
      expect(level.onHand, sku).to.equal(adjustments.length);
      total += adjustments.length;
    }
    const lost = [...ackedBefore].filter((k) => !found.has(k));
    const invented = [...found].filter((k) => !sent.has(k));
    expect(lost, "acknowledged before the backup, missing after restore").to.deep.equal([]);
    expect(invented, "restored but never sent").to.deep.equal([]);
    expect(total).to.equal(found.size);
    expect(total).to.be.at.least(ackedBefore.size);
  });

  it("restores a node's ReserveBatch holds (one reservedCols event per batch): the restore's scrub passes and the restored node answers the same holds and stock", async () => {
    const [source, c] = await start();
    await seedSku(c, "bk-batch", 1000);
    const ids = Array.from({ length: 300 }, (_, i) => `bk-hold-${i}`);
    for (let b = 0; b < 3; b++) {
      const r = await call(c.inventory, "reserveBatch", {
        items: ids.slice(b * 100, b * 100 + 100).map((reservationId, i) => ({ skuId: "bk-batch", reservationId, quantity: 1 + (i % 3), locationId: "", ttl: { seconds: 3600 + b, nanos: 0 } })),
      });
      expect([r.succeeded, r.failed]).to.deep.equal([100, 0]);
    }
    const before = await call(c.inventory, "getSku", { skuId: "bk-batch" });
    const holdsBefore = await Promise.all(["bk-hold-0", "bk-hold-151", "bk-hold-299"].map((reservationId) => call(c.inventory, "getReservation", { reservationId, skuId: "bk-batch" })));

    const file = path.join(work, "batch.qmbackup");
    const backup = await runQmctl(["--addr", source.addr, "backup", "--out", file]);
    expect(backup.code, backup.stderr).to.equal(0);
    const restoredDir = path.join(work, "restored-batch");
    const restore = await runQmctl(["restore", "--from", file, "--data-dir", restoredDir]);
    expect(restore.code, restore.stderr).to.equal(0);

    const [, restored] = await start(restoredDir);
    const after = await call(restored.inventory, "getSku", { skuId: "bk-batch" });
    // Each batch: 100 holds of 1, 2 and 3 units in turn, 34 + 66 + 99 = 199 units.
    expect([after.onHand, after.reserved, after.version]).to.deep.equal([1000, 3 * 199, before.version]);
    const holdsAfter = await Promise.all(["bk-hold-0", "bk-hold-151", "bk-hold-299"].map((reservationId) => call(restored.inventory, "getReservation", { reservationId, skuId: "bk-batch" })));
    expect(holdsAfter).to.deep.equal(holdsBefore);
  });

  it("streams the backup in messages of at most BACKUP_CHUNK_BYTES_MAX that together are a valid backup", async () => {
    const [source, c] = await start();
    await seedSku(c, "chunks-1", 1);
    // Enough audit records that the journal spans several chunks.
    const note = "n".repeat(1000);
    for (let i = 0; i < 400; i++) {
      await call(c.inventory, "adjustStock", {
        skuId: "chunks-1",
        locationId: "wh-1",
        delta: 1,
        reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED,
        note,
        idempotencyKey: `k${i}`,
      });
    }
    const client = new AdminServiceClient(source.addr, credentials.createInsecure());
    const chunks: Buffer[] = [];
    try {
      for await (const message of client.backup({}, { deadline: new Date(Date.now() + 60_000) })) chunks.push((message as { data: Buffer }).data);
    } finally {
      client.close();
    }
    const sizes = chunks.map((b) => b.length);
    expect(sizes.length, "chunks").to.be.greaterThan(1);
    expect(sizes.slice(0, -1).every((n) => n === BACKUP_CHUNK_BYTES_MAX), String(sizes)).to.equal(true);
    expect(sizes[sizes.length - 1]).to.be.within(1, BACKUP_CHUNK_BYTES_MAX);
    let bytes = 0;
    const manifest = await readBackup(
      (async function* () {
        yield* chunks;
      })(),
      { open: async () => undefined, write: async (b) => void (bytes += b.length), close: async () => undefined },
    );
    expect(manifest.files.map((f) => f.path)).to.deep.equal(["IDENTITY.json", "journal/data.mdb"]);
    expect(bytes).to.equal(manifest.files[0]!.size + manifest.files[1]!.size);
    expect(manifest.sourceNode.address).to.equal(source.addr);
    expect(manifest.sourceNode.pid).to.equal(source.pid);
    expect(manifest.sourceNode.nodeId).to.equal("local");
  });

  it("restore refuses a directory that is not empty, or in use by a running node, with exit 5 and changes nothing", async () => {
    const [source, c] = await start();
    await seedSku(c, "r-1", 3);
    const file = path.join(work, "b.qmbackup");
    expect((await runQmctl(["--addr", source.addr, "backup", "--out", file])).code).to.equal(0);

    const again = await runQmctl(["--addr", source.addr, "backup", "--out", file]);
    expect(again.code).to.equal(5);
    expect(again.stderr).to.include(`${file} already exists; a backup never overwrites a file`);

    const inUse = await runQmctl(["restore", "--from", file, "--data-dir", source.dataDir]);
    expect(inUse.code).to.equal(5);
    expect(inUse.stderr).to.include(`data directory ${source.dataDir} is in use by process ${source.pid}`);
    expect((await call(c.inventory, "getSku", { skuId: "r-1" })).onHand).to.equal(3);

    await writeFile(path.join(work, "plain.txt"), "x");
    const notEmpty = await runQmctl(["restore", "--from", file, "--data-dir", work]);
    expect(notEmpty.code).to.equal(5);
    expect(notEmpty.stderr).to.include(`data directory ${work} is not empty`);
    // No LOCK file left in a directory that was refused.
    expect((await readdir(work)).sort()).to.deep.equal(["b.qmbackup", "plain.txt"]);
  });

  it("restore of a damaged backup fails naming the file and checksum, exit 1, and leaves the directory empty", async () => {
    const [source, c] = await start();
    await seedSku(c, "d-1", 2);
    const file = path.join(work, "b.qmbackup");
    expect((await runQmctl(["--addr", source.addr, "backup", "--out", file])).code).to.equal(0);
    const bytes = await readFile(file);
    const at = (await entriesOf(bytes)).get("journal/data.mdb")!.start + 4000;
    bytes[at] = bytes[at]! ^ 0x5a;
    const damaged = path.join(work, "damaged.qmbackup");
    await writeFile(damaged, bytes);

    const target = path.join(work, "target");
    const run = await runQmctl(["restore", "--from", damaged, "--data-dir", target]);
    expect(run.code).to.equal(1);
    expect(run.stderr).to.match(/backup is damaged or not a Quartermaster backup: journal\/data\.mdb has sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}/);
    expect(await readdir(target)).to.deep.equal(["LOCK"]);
    // And the same directory takes the good backup afterwards.
    const good = await runQmctl(["restore", "--from", file, "--data-dir", target]);
    expect(good.code, good.stderr).to.equal(0);
  });

  it("restore runs the offline scrub: a journal that is damaged although every sha256 matches fails with DATA_LOSS and leaves the directory empty", async () => {
    const [source, c] = await start();
    await seedSku(c, "s-1", 2);
    const file = path.join(work, "b.qmbackup");
    expect((await runQmctl(["--addr", source.addr, "backup", "--out", file])).code).to.equal(0);
    const entries = await entriesOf(await readFile(file));
    const manifest = JSON.parse(entries.get(MANIFEST_NAME)!.data.toString("utf8")) as BackupManifest;
    // A journal cut short by one page, as a backup of an already damaged node
    // would hold it, with a manifest that vouches for exactly these bytes.
    const journal = entries.get("journal/data.mdb")!.data;
    const cut = journal.subarray(0, journal.length - 4096);
    const forged = path.join(work, "forged.qmbackup");
    await writeFile(forged, rebuiltBackup(manifest, new Map([["IDENTITY.json", entries.get("IDENTITY.json")!.data], ["journal/data.mdb", cut]])));

    const target = path.join(work, "target");
    const run = await runQmctl(["restore", "--from", forged, "--data-dir", target]);
    expect(run.code, run.stderr).to.equal(1);
    expect(run.stderr).to.include(`error: DATA_LOSS: the restored data directory ${target} fails the scrub, so it was emptied again: journal file`);
    expect(run.stderr).to.include("truncated");
    expect(await readdir(target)).to.deep.equal(["LOCK"]);
  });
});
