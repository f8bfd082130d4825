// CPU per operation across many SKUs without gRPC: callers reserve (or read)
// SKUs drawn uniformly or by Zipf from a data directory built by
// `growth.js build`, through the actor system and the LMDB journal, with the
// node's default bound on actors in memory. What it isolates is the cost the
// many-SKU workloads add to a gRPC echo: activation from the journal, the
// append per SKU, passivation.
//
//   node dist/bench/activation.js --dir D --skus N [--ops 20000] [--callers 64]
//     [--op reserve|availability] [--zipf] [--active-max N] [--warm-ops N] [--seed N]
//
// Prints one line: ops/s, CPU µs per op (process CPU over the measured ops),
// activations, RSS and heap. With --heap-per-actor it instead activates
// --active-max SKUs, collects garbage (needs node --expose-gc) and prints the
// heap bytes per resident idle SKU actor.

import { DEFAULT_TENANT } from "../src/security/caller";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { writeHeapSnapshot } from "node:v8";
import pino from "pino";
import { skuActorId, skuBehavior, type SkuMessage } from "../src/actors/inventory/sku_actor";
import { ActorSystem } from "../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../src/actors/runtime/behavior";
import { systemClock } from "../src/clock";
import { LmdbJournal } from "../src/journal/lmdb_journal";
import { ACTIVE_ACTORS_MAX } from "../src/limits";
import { journalDirOf } from "./growth_data";
import { skuIdFor, xorshift32 } from "./reserve_frames";
import { SEED_LOCATION_ID } from "./seed";
import { zipfSampler } from "./scenarios";

const { values } = parseArgs({
  options: {
    dir: { type: "string" },
    skus: { type: "string" },
    ops: { type: "string", default: "20000" },
    "warm-ops": { type: "string", default: "2000" },
    callers: { type: "string", default: "64" },
    op: { type: "string", default: "reserve" },
    zipf: { type: "boolean", default: false },
    "active-max": { type: "string", default: String(ACTIVE_ACTORS_MAX) },
    "heap-per-actor": { type: "boolean", default: false },
    seed: { type: "string", default: "7" },
    "idle-ms": { type: "string", default: "60000" },
    "after-idle": { type: "boolean", default: false },
    "heap-snapshot": { type: "string" },
  },
});

/** The batch workload of bench:compare: 4 callers, 1,000 items per ReserveBatch. */
const BATCH_ITEMS = 1000;
const BATCH_CALLERS = 4;

function intOf(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be an integer >= 0`);
  return n;
}

async function main(): Promise<void> {
  if (values.dir === undefined) throw new Error("--dir is required");
  const skus = intOf("skus", values.skus);
  const ops = intOf("ops", values.ops);
  const warmOps = intOf("warm-ops", values["warm-ops"]);
  const callers = intOf("callers", values.callers);
  const activeMax = intOf("active-max", values["active-max"]);
  const op = values.op;
  if (op !== "reserve" && op !== "availability" && op !== "batch") throw new Error("--op must be reserve, availability or batch");
  const journal = new LmdbJournal({ path: journalDirOf(values.dir), auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock: systemClock });
  await journal.open();
  const system = new ActorSystem({
    journal,
    clock: systemClock,
    logger: pino({ level: "silent" }),
    behaviors: [skuBehavior as ActorBehavior<unknown, unknown>],
    idleMs: intOf("idle-ms", values["idle-ms"]),
    timerTickMs: 250,
    activeMax,
  });
  await system.start();
  try {
    if (values["heap-per-actor"]) await heapPerActor(system, Math.min(activeMax, skus));
    else await measure(system, journal, { skus, ops, warmOps, callers, op, zipf: values.zipf === true, seed: intOf("seed", values.seed) });
    if (values["after-idle"]) await afterIdle(system, intOf("idle-ms", values["idle-ms"]), values["heap-snapshot"]);
  } finally {
    await system.stop();
    await journal.close();
  }
}

interface MeasureOptions {
  readonly skus: number;
  readonly ops: number;
  readonly warmOps: number;
  readonly callers: number;
  readonly op: "reserve" | "availability" | "batch";
  readonly zipf: boolean;
  readonly seed: number;
}

async function measure(system: ActorSystem, journal: LmdbJournal, o: MeasureOptions): Promise<void> {
  const random = xorshift32(o.seed);
  const pick = o.zipf ? zipfSampler(o.skus, 1.1, random) : (): number => Math.floor(random() * o.skus);
  const tag = `a${process.pid}-${Date.now().toString(36)}`;
  let issued = 0;
  let failed = 0;
  const run = async (count: number, op: "reserve" | "availability" | "batch"): Promise<void> => {
    if (op === "batch") return runBatches(count);
    const end = issued + count;
    const caller = async (): Promise<void> => {
      while (issued < end) {
        const n = issued++;
        const actorId = skuActorId(skuIdFor(pick()), DEFAULT_TENANT);
        const message: SkuMessage =
          op === "reserve" ? { op: "reserve", cmd: { id: `${tag}-${n}`, quantity: 1, locationId: SEED_LOCATION_ID, ttlMs: 3_600_000 } } : { op: "availability" };
        try {
          await system.ask(actorId, message);
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: o.callers }, caller));
  };
  // As the ReserveBatch handler does: 1,000 items grouped by SKU, one reserveBatch ask per SKU, all at once.
  const runBatches = async (count: number): Promise<void> => {
    const end = issued + count;
    const caller = async (): Promise<void> => {
      while (issued < end) {
        const groups = new Map<number, { id: string; quantity: number; locationId: string; ttlMs: number }[]>();
        for (let k = 0; k < BATCH_ITEMS && issued < end; k++) {
          const sku = pick();
          const cmds = groups.get(sku) ?? [];
          cmds.push({ id: `${tag}-${issued++}`, quantity: 1, locationId: SEED_LOCATION_ID, ttlMs: 3_600_000 });
          groups.set(sku, cmds);
        }
        await Promise.all(
          [...groups].map(async ([sku, cmds]) => {
            try {
              await system.ask(skuActorId(skuIdFor(sku), DEFAULT_TENANT), { op: "reserveBatch", cmds } satisfies SkuMessage);
            } catch {
              failed += cmds.length;
            }
          }),
        );
      }
    };
    await Promise.all(Array.from({ length: BATCH_CALLERS }, caller));
  };
  // The warmup reads (activates without writing), so a large one fills the resident set cheaply.
  await run(o.warmOps, "availability");
  const commits0 = journal.stats().commits;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await run(o.ops, o.op);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const mem = process.memoryUsage();
  const commits = journal.stats().commits - commits0;
  const mib = (b: number): string => (b / 1048576).toFixed(0);
  console.log(
    `${o.op} ${o.zipf ? "zipf" : "uniform"} skus ${o.skus}: ops/s ${Math.round(o.ops / seconds)}  cpu µs/op ${((cpu.user + cpu.system) / o.ops).toFixed(1)} (sys ${(cpu.system / o.ops).toFixed(1)})  ` +
      `ops/commit ${(o.ops / Math.max(1, commits)).toFixed(1)}  failed ${failed}  active ${system.activeCount}  ` +
      `rss ${mib(mem.rss)} MiB  heap ${mib(mem.heapUsed)} MiB  external ${mib(mem.external)} MiB`,
  );
}

/** Waits until idle passivation has emptied the registry, then reports the heap (and writes a heap snapshot when asked). */
async function afterIdle(system: ActorSystem, idleMs: number, snapshotFile: string | undefined): Promise<void> {
  const deadline = performance.now() + idleMs * 3 + 5_000;
  while (system.activeCount > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  (globalThis as { gc?: () => void }).gc?.();
  const mem = process.memoryUsage();
  const mib = (b: number): string => (b / 1048576).toFixed(1);
  console.log(`after idle passivation: active ${system.activeCount}  rss ${mib(mem.rss)} MiB  heap ${mib(mem.heapUsed)} MiB of ${mib(mem.heapTotal)}  external ${mib(mem.external)} MiB`);
  const status = readFileSync("/proc/self/status", "utf8");
  console.log(status.split("\n").filter((l) => /^(VmRSS|RssAnon|RssFile|RssShmem|VmHWM)/.test(l)).join("  ").replace(/\s+/g, " "));
  if (snapshotFile !== undefined) writeHeapSnapshot(snapshotFile);
}

async function heapPerActor(system: ActorSystem, count: number): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("--heap-per-actor needs node --expose-gc");
  // Warm the code paths first, so compiled code and caches are not counted per actor.
  for (let i = 0; i < 100; i++) await system.ask(skuActorId(skuIdFor(i), DEFAULT_TENANT), { op: "availability" });
  gc();
  const before = process.memoryUsage().heapUsed;
  const startCount = system.activeCount;
  const batch = 256;
  for (let i = 100; i < count; i += batch) {
    const asks: Promise<unknown>[] = [];
    for (let k = i; k < Math.min(count, i + batch); k++) asks.push(system.ask(skuActorId(skuIdFor(k), DEFAULT_TENANT), { op: "availability" }));
    await Promise.all(asks);
  }
  gc();
  const after = process.memoryUsage().heapUsed;
  const added = system.activeCount - startCount;
  console.log(`heap per idle SKU actor: ${Math.round((after - before) / added)} bytes over ${added} actors (active ${system.activeCount})`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
