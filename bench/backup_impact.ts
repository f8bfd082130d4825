// What an online backup costs: backs up a journal of about MB megabytes while
// one writer appends sequentially (one fsync each, as a lone actor's turns),
// and reports the backup's rate, the restore's time, and the writer's rate
// during the backup against its rate alone. Staging and streaming share the
// disk with the journal, so the writer's fsyncs slow down while they run.
//
//   npx tsc -p . && node dist/bench/backup_impact.js [MB]

import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DataDirBackup } from "../src/backup/data_dir_backup";
import { restoreBackup } from "../src/backup/restore";
import { systemClock } from "../src/clock";
import { LmdbJournal } from "../src/journal/lmdb_journal";

const MB_DEFAULT = 200;
const BASELINE_MS = 2000;

async function main(): Promise<void> {
  const mb = Number(process.argv[2] ?? MB_DEFAULT);
  const root = mkdtempSync(join(tmpdir(), "qm-backup-bench-"));
  try {
    const dataDir = join(root, "data");
    mkdirSync(dataDir);
    const journal = new LmdbJournal({
      path: join(dataDir, "journal"),
      auditRetention: { maxAgeMs: 1e12, maxPerActor: 1e6 },
      clock: systemClock,
    });
    await journal.open();
    const blob = randomBytes(1 << 20);
    for (let i = 0; i < mb; i++) await journal.append({ actorId: `sku/fill${i}`, expectedLastSeq: 0, events: [blob] });
    const size = statSync(join(dataDir, "journal", "data.mdb")).size;

    let seq = 0;
    const appendOne = (): Promise<void> => journal.append({ actorId: "sku/load", expectedLastSeq: seq, events: [{ n: seq }] }).then(() => void seq++);
    const started = performance.now();
    while (performance.now() - started < BASELINE_MS) await appendOne();
    const aloneRate = seq / (BASELINE_MS / 1000);

    let running = true;
    let during = 0;
    const load = (async () => {
      while (running) {
        await appendOne();
        during++;
      }
    })();
    const backups = new DataDirBackup({
      dataDir,
      journalDir: "journal",
      copyJournal: (target) => journal.copyTo(target),
      sourceNode: () => ({ nodeId: "bench", hostname: "bench", address: "", dataDir, pid: process.pid }),
      clock: systemClock,
    });
    const file = join(root, "b.qmbackup");
    const fd = openSync(file, "w");
    const backupStarted = performance.now();
    const summary = await backups.run(async (chunk) => void writeSync(fd, chunk));
    const backupMs = performance.now() - backupStarted;
    closeSync(fd);
    running = false;
    await load;
    await journal.close();

    const restoreStarted = performance.now();
    await restoreBackup(file, join(root, "restored"));
    const restoreMs = performance.now() - restoreStarted;
    console.log(
      `data.mdb ${(size / 1e6).toFixed(0)} MB; backup ${backupMs.toFixed(0)} ms (${(summary.bytes / 1e6 / (backupMs / 1000)).toFixed(0)} MB/s); ` +
        `restore ${restoreMs.toFixed(0)} ms; sequential appends alone ${aloneRate.toFixed(0)}/s, during the backup ${(during / (backupMs / 1000)).toFixed(0)}/s`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

void main();
