// CPU per activation read (recoverActor: meta record and events through
// lmdb-js) in a process of its own, in the patterns that tell apart why the
// server's profile puts several times more on a read than a loop of reads:
//
//   node dist/bench/journal_reads.js --dir COPY --skus 100000 [--reads 30000] [--batch 64]
//     [--modes hot,random,interleaved] [--raw [--range]] [--pollute-mb N]
//
// - hot: the same 1,000 actors over and over (what a loop of reads measures);
// - random: actors drawn uniformly over the catalogue, no writes;
// - interleaved: as random, and after every --batch reads one write
//   transaction appending an event to each of the actors just read (the
//   server's pattern: a commit per batch of reserves, each on its own SKU,
//   after which lmdb-js renews its read transaction).
//
// With --raw only lmdb-js's getBinaryFast of the meta record and events 1 and
// 2 is timed (what stop 9 timed alone), not the checksums and decoding of
// recoverActor; the actor is then recovered untimed for its lastSeq. With
// --range too, the two events are read with one range read (a cursor) instead
// of two exact lookups.
//
// With --pollute-mb N every batch of reads is preceded (untimed) by a write to
// every cache line of an N MiB buffer, standing in for what the server does
// between two activations (HTTP/2, gRPC, the heap): it evicts the B-tree's
// pages from the CPU caches as a busy process would.
//
// Only the reads are timed (process CPU around each batch of reads, so the
// commits' CPU is not counted); minor page faults are counted the same way.
// COPY must be a copy: interleaved writes to it. Prints one line per mode.

import { parseArgs } from "node:util";
import { skuActorId } from "../src/actors/inventory/sku_actor";
import { systemClock } from "../src/clock";
import { LmdbJournal, recoverActor, released } from "../src/journal/lmdb_journal";
import { DEFAULT_TENANT } from "../src/security/caller";
import { journalDirOf } from "./growth_data";
import { skuIdFor, xorshift32 } from "./reserve_frames";

const MODES = ["hot", "random", "interleaved"] as const;
type Mode = (typeof MODES)[number];
/** The hot mode's working set: a few thousand pages read over and over, as a loop over a few keys reads them. */
const HOT_ACTORS = 1000;
/** The stride of --pollute-mb's writes: one per cache line. */
const CACHE_LINE_BYTES = 64;
/** The catalogue's events per SKU (growth.js build --events-per-sku 2). */
const RANGE_EVENTS = 2;

const { values } = parseArgs({
  options: {
    dir: { type: "string" },
    skus: { type: "string" },
    reads: { type: "string", default: "30000" },
    batch: { type: "string", default: "64" },
    modes: { type: "string", default: MODES.join(",") },
    seed: { type: "string", default: "11" },
    raw: { type: "boolean", default: false },
    range: { type: "boolean", default: false },
    "pollute-mb": { type: "string", default: "0" },
  },
});

function intOf(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be an integer > 0`);
  return n;
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

async function main(): Promise<void> {
  if (values.dir === undefined) throw new Error("--dir is required (a copy of a catalogue: interleaved writes to it)");
  const skus = intOf("skus", values.skus);
  const reads = intOf("reads", values.reads);
  const batch = intOf("batch", values.batch);
  const modes = values.modes.split(",").map((mode) => {
    if (!(MODES as readonly string[]).includes(mode)) throw new Error(`--modes: unknown mode ${mode}`);
    return mode as Mode;
  });
  const journal = new LmdbJournal({ path: journalDirOf(values.dir), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock: systemClock });
  await journal.open();
  const stores = journal.keyspaces();
  const next = xorshift32(intOf("seed", values.seed));
  const polluteMb = Number(values["pollute-mb"]);
  if (!(Number.isSafeInteger(polluteMb) && polluteMb >= 0)) throw new Error("--pollute-mb must be an integer >= 0");
  const pollution = Buffer.alloc(polluteMb * 1024 * 1024);
  try {
    for (const mode of modes) {
      let readCpu = 0;
      let faults = 0;
      let records = 0;
      for (let done = 0; done < reads; done += batch) {
        const ids: string[] = [];
        for (let i = 0; i < batch; i++) {
          const index = Math.floor(next() * (mode === "hot" ? HOT_ACTORS : skus));
          ids.push(skuActorId(skuIdFor(index), DEFAULT_TENANT));
        }
        const lastSeqs: number[] = [];
        for (let offset = 0; offset < pollution.length; offset += CACHE_LINE_BYTES) pollution[offset] = (pollution[offset] ?? 0) + 1;
        const faultsBefore = process.resourceUsage().minorPageFault;
        const before = cpuMicros();
        if (values.raw) {
          for (const id of ids) {
            if (stores.meta.getBinaryFast(id) !== undefined) records++;
            if (values.range) {
              for (const { value } of released(stores.events.getRange({ start: [id, 1], end: [id, RANGE_EVENTS + 1], limit: RANGE_EVENTS }))) {
                if (value.length > 0) records++;
              }
            } else {
              if (stores.events.getBinaryFast([id, 1]) !== undefined) records++;
              if (stores.events.getBinaryFast([id, 2]) !== undefined) records++;
            }
          }
        } else {
          for (const id of ids) {
            const recovered = recoverActor(stores, id);
            records += 1 + (recovered.snapshot === undefined ? 0 : 1) + recovered.events.length;
          }
        }
        readCpu += cpuMicros() - before;
        for (const id of ids) lastSeqs.push(recoverActor(stores, id).lastSeq);
        faults += process.resourceUsage().minorPageFault - faultsBefore;
        if (mode === "interleaved") {
          const seen = new Set<string>();
          await Promise.all(
            ids.map((id, i) => {
              if (seen.has(id)) return Promise.resolve();
              seen.add(id);
              return journal.append({ actorId: id, expectedLastSeq: lastSeqs[i] ?? 0, events: [{ type: "bench", i }] });
            }),
          );
        }
      }
      const activations = Math.ceil(reads / batch) * batch;
      console.log(
        `${mode.padEnd(12)} ${(readCpu / activations).toFixed(2)} µs CPU per activation, ${(readCpu / records).toFixed(2)} per record read, ` +
          `${(faults / activations).toFixed(3)} minor faults per activation (${activations} activations, ${records} records)`,
      );
    }
  } finally {
    await journal.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
