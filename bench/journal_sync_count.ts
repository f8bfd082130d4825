// Proves the embedded journal's group commit and durability: 64 actors append
// concurrently (each waits for its append before the next, as an actor turn
// does), and the journal's own counters say how many appends each commit
// carried. Run it under strace to count the sync calls per commit:
//
//   npx tsc -p . && strace -c -f -e trace=fsync,fdatasync,msync,sync_file_range \
//     node dist/bench/journal_sync_count.js [appends] [actors]
//
// Expect one fdatasync per commit (plus one at environment creation). LMDB's
// meta page is then written through a second descriptor opened O_DSYNC, a
// synchronous write that strace's sync-call filter does not show; add
// pwrite64 to the filter to see it.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { systemClock } from "../src/clock";
import { LmdbJournal } from "../src/journal/lmdb_journal";

const APPENDS_DEFAULT = 2000;
const ACTORS_DEFAULT = 64;

function positiveInteger(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`expected a positive integer, got ${text}`);
  return value;
}

async function main(): Promise<void> {
  const appends = positiveInteger(process.argv[2], APPENDS_DEFAULT);
  const actors = positiveInteger(process.argv[3], ACTORS_DEFAULT);
  const dir = mkdtempSync(join(tmpdir(), "qm-journal-bench-"));
  const journal = new LmdbJournal({ path: dir, auditRetention: { maxAgeMs: 3_600_000, maxPerActor: 1000 }, clock: systemClock });
  try {
    await journal.open();
    const runActor = async (actor: number, count: number): Promise<void> => {
      for (let seq = 0; seq < count; seq++) {
        await journal.append({ actorId: `sku/BENCH-${actor}`, expectedLastSeq: seq, events: [{ kind: "reserved", actor, seq, quantity: 1 }] });
      }
    };
    const startMs = performance.now();
    await Promise.all(
      Array.from({ length: actors }, (_, actor) => runActor(actor, Math.floor(appends / actors) + (actor < appends % actors ? 1 : 0))),
    );
    const elapsedMs = performance.now() - startMs;
    const stats = journal.stats();
    process.stdout.write(
      [
        `actors             ${actors}`,
        `appends            ${stats.appends}`,
        `commits            ${stats.commits}`,
        `appends/commit     ${(stats.appends / stats.commits).toFixed(2)}`,
        `elapsed            ${elapsedMs.toFixed(0)} ms`,
        `appends/s          ${((stats.appends * 1000) / elapsedMs).toFixed(0)}`,
        "",
      ].join("\n"),
    );
  } finally {
    await journal.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
