// CPU per reservation of our own path, without gRPC: 64 concurrent callers
// reserve on one hot SKU through the actor system and the LMDB journal.
// `node dist/bench/actor_path.js [seconds]` prints calls/s, CPU µs per call and
// requests per commit. It isolates what Quartermaster adds to a gRPC echo.
//
// With the OTEL_* variables of the server (OTEL_TRACES_EXPORTER=otlp ...) it
// starts tracing as main.ts does and wraps each call in the gRPC seam's
// server span (tracedUnaryCall on a stand-in call): what tracing costs per
// reservation in one process, export included, without the gRPC transport
// (whose CPU drowns the difference in the noise of a shared machine).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Metadata, type ServerUnaryCall, type sendUnaryData } from "@grpc/grpc-js";
import pino from "pino";
import { skuActorId, skuBehavior, type SkuMessage } from "../src/actors/inventory/sku_actor";
import { ActorSystem } from "../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../src/actors/runtime/behavior";
import { systemClock } from "../src/clock";
import { loadConfig } from "../src/config";
import { LmdbJournal } from "../src/journal/lmdb_journal";
import { tracedUnaryCall, withTraceparent } from "../src/observability/grpc_tracing";
import { startTracing } from "../src/observability/tracing";
import { LIVE_RESERVATIONS_PER_SKU_MAX } from "../src/limits";
import { ANONYMOUS_CALLER, DEFAULT_TENANT } from "../src/security/caller";
import { runBenchMain } from "./processes";

const CALLERS = 64;
/** Reservations per hot SKU before the callers move to the next one: holds last the whole run, so one SKU would reach its live-hold limit. */
const RESERVATIONS_PER_SKU = Math.floor(LIVE_RESERVATIONS_PER_SKU_MAX * 0.75);

async function main(argv: readonly string[]): Promise<number> {
  const seconds = Number(argv[0] ?? "5");
  const dir = mkdtempSync(path.join(tmpdir(), "qm-actor-path-"));
  try {
    await measure(seconds, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return 0;
}

async function measure(seconds: number, dir: string): Promise<void> {
  const tracing = await startTracing(loadConfig().tracing, "actor-path", "bench");
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
  const def = { title: "hot", priceMinor: 1, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false, attributes: [] };
  const defined = new Map<string, Promise<unknown>>();
  // The SKU for reservation n, defined and stocked on first use.
  const hotSku = async (n: number): Promise<string> => {
    const id = skuActorId(`hot-${Math.floor(n / RESERVATIONS_PER_SKU)}`, DEFAULT_TENANT);
    let ready = defined.get(id);
    if (ready === undefined) {
      ready = system
        .ask(id, { op: "define", patch: def } satisfies SkuMessage)
        .then(() => system.ask(id, { op: "adjust", cmd: { locationId: "wh-1", delta: 900_000_000, reason: "RECEIVED", key: "" }, note: "" }));
      defined.set(id, ready);
    }
    await ready;
    return id;
  };
  await hotSku(0);
  let next = 0;
  let done = 0;
  let stop = false;
  // The gRPC seam as the server runs it: a pass-through when tracing is off.
  let target = await hotSku(0);
  const handle = tracedUnaryCall<SkuMessage, unknown>((call, callback) => {
    // As unary.ts asks: the caller rides along and the actor system checks its tenant.
    system.ask(target, call.request, withTraceparent({ caller: ANONYMOUS_CALLER })).then(
      (value) => callback(null, value),
      (error: unknown) => callback(error as Error),
    );
  });
  const metadata = new Metadata();
  const reserve = (request: SkuMessage): Promise<void> =>
    new Promise((resolve, reject) => {
      const call = { request, metadata, getPath: () => "/quartermaster.v1.InventoryService/Reserve" } as unknown as ServerUnaryCall<SkuMessage, unknown>;
      const callback: sendUnaryData<unknown> = (error) => (error === null ? resolve() : reject(error));
      handle(call, callback);
    });
  const caller = async (): Promise<void> => {
    while (!stop) {
      if (next % RESERVATIONS_PER_SKU === 0 && next > 0) target = await hotSku(next);
      await reserve({ op: "reserve", cmd: { id: `r${next++}`, quantity: 1, locationId: "", ttlMs: 3_600_000 } });
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
  await tracing.stop();
}

runBenchMain("actor_path", main);
