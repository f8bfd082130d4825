// CPU per reservation of our own path, without gRPC: 64 concurrent callers
// reserve on one hot SKU through the actor system and the LMDB journal.
// `node dist/bench/actor_path.js [seconds]` prints calls/s, CPU µs per call and
// requests per commit. It isolates what Quartermaster adds to a gRPC echo.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { skuActorId, skuBehavior, type SkuMessage } from "../src/actors/inventory/sku_actor";
import { ActorSystem } from "../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../src/actors/runtime/behavior";
import { systemClock } from "../src/clock";
import { LmdbJournal } from "../src/journal/lmdb_journal";

const CALLERS = 64;

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? "5");
  const dir = mkdtempSync(path.join(tmpdir(), "qm-actor-path-"));
  const journal = new LmdbJournal({ path: dir, auditRetention: { maxAgeMs: 1e12, maxPerActor: 1000 }, clock: systemClock });
  await journal.open();
  const system = new ActorSystem({
    journal,
    clock: systemClock,
    logger: pino({ level: "silent" }),
    behaviors: [skuBehavior as ActorBehavior<unknown, unknown>],
    idleMs: 60_000,
    timerTickMs: 250,
  });
  await system.start();
  const hot = skuActorId("hot-0");
  const def = { title: "hot", priceMinor: 1, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
  await system.ask(hot, { op: "define", patch: def } satisfies SkuMessage);
  await system.ask(hot, { op: "adjust", cmd: { locationId: "wh-1", delta: 900_000_000, reason: "RECEIVED", key: "" }, note: "" });
  let next = 0;
  let done = 0;
  let stop = false;
  const caller = async (): Promise<void> => {
    while (!stop) {
      await system.ask(hot, { op: "reserve", cmd: { id: `r${next++}`, quantity: 1, locationId: "", ttlMs: 3_600_000 } });
      done++;
    }
  };
  const before = journal.stats();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const callers = Array.from({ length: CALLERS }, caller);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stop = true;
  await Promise.all(callers);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const after = journal.stats();
  const commits = after.commits - before.commits;
  console.log(
    `calls/s ${Math.round(done / elapsed)}  cpu µs/call ${((cpu.user + cpu.system) / done).toFixed(1)}  ` +
      `requests/commit ${(done / commits).toFixed(1)}  appends/commit ${((after.appends - before.appends) / commits).toFixed(1)}`,
  );
  await system.stop();
  await journal.close();
  rmSync(dir, { recursive: true, force: true });
}

void main();
