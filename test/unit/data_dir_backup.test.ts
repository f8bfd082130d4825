import { expect } from "chai";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type FileSink, type ManifestFile, readBackup } from "../../src/backup/backup_file";
import { DataDirBackup, STAGING_DIR } from "../../src/backup/data_dir_backup";
import { systemClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import { BACKUP_DISK_RESERVE_BYTES } from "../../src/limits";

async function* only(chunks: readonly Buffer[]): AsyncGenerator<Buffer> {
  for (const c of chunks) yield c;
}

const DROP: FileSink = { open: async (_f: ManifestFile) => undefined, write: async () => undefined, close: async () => undefined };

describe("DataDirBackup", function () {
  let dir: string;
  let copies = 0;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "qm-backup-"));
    copies = 0;
    mkdirSync(join(dir, "journal"));
    // What a live data directory holds: the lock, LMDB's two files, and whatever sits beside the journal.
    writeFileSync(join(dir, "LOCK"), "123            \n");
    writeFileSync(join(dir, "journal", "data.mdb"), "live file, never read directly");
    writeFileSync(join(dir, "journal", "lock.mdb"), "reader table");
    writeFileSync(join(dir, "identity.json"), '{"cluster":"c1"}');
    mkdirSync(join(dir, "extra"));
    writeFileSync(join(dir, "extra", "note"), "n");
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function backupOf(copyJournal?: (target: string) => Promise<void>): DataDirBackup {
    return new DataDirBackup({
      dataDir: dir,
      journalDir: "journal",
      copyJournal:
        copyJournal ??
        (async (target) => {
          copies++;
          mkdirSync(target, { recursive: true });
          writeFileSync(join(target, "data.mdb"), "consistent copy");
        }),
      sourceNode: () => ({ nodeId: "n1", hostname: "h", address: "a:1", dataDir: dir, pid: 1 }),
      clock: systemClock,
    });
  }

  it("backs up the journal copy and every other file, but not the lock file or LMDB's lock.mdb, and removes its staging area", async () => {
    const chunks: Buffer[] = [];
    const summary = await backupOf().run(async (c) => {
      chunks.push(Buffer.from(c));
    });
    expect(summary.manifest.files.map((f) => [f.path, f.size])).to.deep.equal([
      ["extra/note", 1],
      ["identity.json", 16],
      ["journal/data.mdb", 15],
    ]);
    expect(copies).to.equal(1);
    expect(summary.bytes).to.equal(chunks.reduce((n, c) => n + c.length, 0));
    const manifest = await readBackup(only(chunks), DROP);
    expect(manifest).to.deep.equal(summary.manifest);
    expect(existsSync(join(dir, STAGING_DIR))).to.equal(false);
  });

  it("refuses a second backup while one runs with FAILED_PRECONDITION, and takes one again afterwards", async () => {
    const backups = backupOf();
    let unblock: () => void = () => undefined;
    const blocked = new Promise<void>((resolve) => (unblock = resolve));
    let firstChunk: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (firstChunk = resolve));
    const first = backups.run(async () => {
      firstChunk();
      await blocked;
    });
    await started;
    try {
      await backups.run(async () => undefined);
      expect.fail("a second backup ran");
    } catch (error) {
      expect((error as QmError).code).to.equal("FAILED_PRECONDITION");
      expect((error as QmError).message).to.equal("a backup of this node is already running; try again when it ends");
    }
    unblock();
    await first;
    const again = await backups.run(async () => undefined);
    expect(again.manifest.files).to.have.length(3);
  });

  it("removes its staging area when the stream fails half way, and the error reaches the caller", async () => {
    let sent = 0;
    try {
      await backupOf().run(async () => {
        if (++sent === 1) throw new QmError("UNAVAILABLE", "client went away");
      });
      expect.fail("the backup ignored a failed send");
    } catch (error) {
      expect((error as QmError).message).to.equal("client went away");
    }
    expect(existsSync(join(dir, STAGING_DIR))).to.equal(false);
  });

  it("removes a staging area a crash left behind instead of backing it up", async () => {
    mkdirSync(join(dir, STAGING_DIR));
    writeFileSync(join(dir, STAGING_DIR, "leftover"), "x");
    const summary = await backupOf().run(async () => undefined);
    expect(summary.manifest.files.map((f) => f.path)).not.to.include(`${STAGING_DIR}/leftover`);
    expect(summary.manifest.files.map((f) => f.path)).not.to.include("leftover");
    expect(existsSync(join(dir, STAGING_DIR))).to.equal(false);
  });

  it("after stop() refuses new backups with UNAVAILABLE", async () => {
    const backups = backupOf();
    await backups.stop();
    try {
      await backups.run(async () => undefined);
      expect.fail("ran after stop");
    } catch (error) {
      expect((error as QmError).code).to.equal("UNAVAILABLE");
    }
  });

  it("start() removes a staging area a crash left behind", async () => {
    mkdirSync(join(dir, STAGING_DIR));
    writeFileSync(join(dir, STAGING_DIR, "leftover"), "x");
    await backupOf().start();
    expect(existsSync(join(dir, STAGING_DIR))).to.equal(false);
    expect(existsSync(join(dir, "identity.json"))).to.equal(true);
  });

  it("refuses with DISK_FULL, staging nothing and copying nothing, when the copy would leave less than the reserve free (root: tmpfs)", async function () {
    if (process.getuid?.() !== 0) {
      console.log("      skipped: mounting a tmpfs needs root");
      this.skip();
    }
    const small = join(dir, "small");
    mkdirSync(small);
    // Smaller than the reserve alone, so any backup on it must be refused.
    const sizeBytes = BACKUP_DISK_RESERVE_BYTES / 8;
    expect(spawnSync("mount", ["-t", "tmpfs", "-o", `size=${sizeBytes}`, "tmpfs", small]).status).to.equal(0);
    try {
      const smallDir = join(small, "data");
      mkdirSync(join(smallDir, "journal"), { recursive: true });
      writeFileSync(join(smallDir, "journal", "data.mdb"), Buffer.alloc(1024 * 1024));
      const backups = new DataDirBackup({
        dataDir: smallDir,
        journalDir: "journal",
        copyJournal: async () => {
          copies++;
        },
        sourceNode: () => ({ nodeId: "n1", hostname: "h", address: "a:1", dataDir: smallDir, pid: 1 }),
        clock: systemClock,
      });
      try {
        await backups.run(async () => undefined);
        expect.fail("a backup ran without room for its copy");
      } catch (error) {
        expect((error as QmError).code).to.equal("DISK_FULL");
        expect((error as QmError).message).to.match(/^a backup needs \d+ bytes free in .* \d+ are free$/);
        expect((error as QmError).metadata["neededBytes"]).to.equal(String(1024 * 1024 + BACKUP_DISK_RESERVE_BYTES));
      }
      expect(copies).to.equal(0);
      expect(existsSync(join(smallDir, STAGING_DIR))).to.equal(false);
    } finally {
      expect(spawnSync("umount", [small]).status).to.equal(0);
    }
  });
});
