// Server CPU per ReserveBatch item on one hot SKU, variant against variant, in
// alternating rounds: `node dist/bench/batch_cpu.js --variant 'base main=/other/dist/src/main.js' --variant new`.
//
// The batch-hot workload of bench:compare (4 callers, 1,000 one-unit items per
// call, every hold live for an hour), measured as hot_cpu.ts measures Reserve:
// a fresh server per pass, the hot SKU seeded, a warmup, then the server's
// CPU (all threads, and its main thread alone) over a fixed number of calls,
// divided by the items the SKU actor decided (qm_reservations_total, so an
// item refused inside a successful call is not counted as work done).
// Variants are hot_cpu.ts's (`main=`, `node=`, environment variables).
//
// Each pass also reports how the server's main thread spent the calls' window
// (the kernel's schedstat): ran, queued behind other processes for its core,
// or blocked (the rest: waiting for callers or for its journal's syncs).
//
// Flags: --rounds N (3), --warmup N (20 calls), --calls N (150), --items N
// (1000 per call), --concurrency N (4), --json.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { LIVE_RESERVATIONS_PER_SKU_MAX, RESERVE_BATCH_ITEMS_MAX } from "../src/limits";
import { type LoadResult, runLoad, scenarioCalls } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { mainThreadCpuMs, median, parseVariant, roundOrder, type Variant } from "./hot_cpu";
import { LOOPBACK_HOST } from "./load_session";
import { scrapeMetrics } from "./prometheus";
import { type Pinning, choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, runBenchMain, spawnNode, stopChild, temporaryDirs } from "./processes";
import { HOT_SKU_ID, HOT_SKU_UNITS, seedHotSku } from "./seed";

const HEALTH_DEADLINE_MS = 60_000;
/** Generous bound on one measured pass. */
const PASS_DEADLINE_MS = 300_000;
const METRIC_RESERVATIONS = "qm_reservations_total";

interface BatchCpuOptions {
  readonly rounds: number;
  readonly warmupCalls: number;
  readonly calls: number;
  readonly items: number;
  readonly concurrency: number;
}

interface BatchPass {
  readonly variant: string;
  readonly round: number;
  readonly items: number;
  readonly callErrors: number;
  readonly itemsPerSecond: number;
  readonly cpuMicrosPerItem: number;
  readonly mainThreadMicrosPerItem: number | null;
  readonly serverCpuPercent: number;
  /**
   * The server's main thread over the calls' window, from the kernel's
   * schedstat: the share it ran, and the share it was ready to run but another
   * process had the core. The rest it was blocked: waiting for its callers or
   * its journal. Null when /proc has no schedstat.
   */
  readonly mainRanPercent: number | null;
  readonly mainQueuedPercent: number | null;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly loadAverage: number;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function decidedItems(metricsAddress: string): Promise<number> {
  const scrape = await scrapeMetrics(metricsAddress);
  if ("error" in scrape) throw new Error(`metrics: ${scrape.error}`);
  const n = scrape.sums.get(METRIC_RESERVATIONS);
  if (n === undefined) throw new Error(`metrics: no ${METRIC_RESERVATIONS}`);
  return n;
}

function batchPass(address: string, calls: number, options: BatchCpuOptions, tag: string): Promise<LoadResult> {
  const { path: callPath, frameFactory } = scenarioCalls({ scenario: "batch-hot", runTag: tag, hotSkuId: HOT_SKU_ID, skuCount: 1, seed: 1, batchItems: options.items });
  return runLoad({
    target: address,
    path: callPath,
    // As bench:compare drives batches: node:http2 follows the server's flow-control credit; its CPU per call is nothing at batch rates.
    transport: "node-http2",
    sessions: options.concurrency,
    concurrency: options.concurrency,
    warmupMs: 0,
    durationMs: PASS_DEADLINE_MS,
    requestsMax: calls,
    frameFactory,
  });
}

/** Nanoseconds the main thread of pid has run, and waited runnable for a CPU (/proc/PID/task/PID/schedstat). */
function mainThreadSchedNs(pid: number): { ranNs: number; queuedNs: number } | null {
  try {
    const [ran, queued] = fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").trim().split(" ").map(Number);
    return ran === undefined || queued === undefined || Number.isNaN(ran + queued) ? null : { ranNs: ran, queuedNs: queued };
  } catch {
    return null;
  }
}

async function onePass(variant: Variant, index: number, round: number, options: BatchCpuOptions, pinning: Pinning): Promise<BatchPass> {
  const address = `${LOOPBACK_HOST}:${await freeLoopbackPort()}`;
  const metricsAddress = `${LOOPBACK_HOST}:${await freeLoopbackPort()}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-batch-cpu-"));
  temporaryDirs.add(dataDir);
  const env: NodeJS.ProcessEnv = { ...process.env, QM_LISTEN: address, QM_METRICS_LISTEN: metricsAddress, QM_DATA_DIR: dataDir, QM_LOG_LEVEL: "warn", ...variant.env };
  const server = spawnNode({ name: `server ${variant.name}`, script: variant.main, args: [], nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    await seedHotSku(address, HOT_SKU_UNITS);
    const tag = `b${index}-${round}-${process.pid}`;
    if (options.warmupCalls > 0) {
      const warm = await batchPass(address, options.warmupCalls, options, `${tag}-w`);
      if (warm.fatal !== null || warm.errorTotal > 0) throw new Error(`${variant.name} warmup: ${warm.fatal ?? warm.firstError ?? "?"}`);
    }
    const itemsBefore = await decidedItems(metricsAddress);
    const cpuBefore = readCpuTimeMs(server.pid);
    const mainBefore = mainThreadCpuMs(server.pid);
    const schedBefore = mainThreadSchedNs(server.pid);
    const result = await batchPass(address, options.calls, options, tag);
    const cpuAfter = readCpuTimeMs(server.pid);
    const mainAfter = mainThreadCpuMs(server.pid);
    const schedAfter = mainThreadSchedNs(server.pid);
    const items = (await decidedItems(metricsAddress)) - itemsBefore;
    if (result.fatal !== null) throw new Error(`${variant.name}: ${result.fatal}`);
    if (cpuBefore === null || cpuAfter === null) throw new Error(`${variant.name}: server CPU unreadable (${server.describeExit()})`);
    const seconds = result.measuredMs / 1000;
    const cpuMs = cpuAfter - cpuBefore;
    return {
      variant: variant.name,
      round,
      items,
      callErrors: result.errorTotal,
      itemsPerSecond: items / seconds,
      cpuMicrosPerItem: items === 0 ? Number.NaN : (cpuMs * 1000) / items,
      mainThreadMicrosPerItem: mainBefore === null || mainAfter === null || items === 0 ? null : ((mainAfter - mainBefore) * 1000) / items,
      serverCpuPercent: (cpuMs / (seconds * 1000)) * 100,
      mainRanPercent: schedBefore === null || schedAfter === null ? null : (schedAfter.ranNs - schedBefore.ranNs) / (seconds * 1e7),
      mainQueuedPercent: schedBefore === null || schedAfter === null ? null : (schedAfter.queuedNs - schedBefore.queuedNs) / (seconds * 1e7),
      p99Ms: result.latency.p99Ms,
      maxMs: result.latency.maxMs,
      loadAverage: os.loadavg()[0] ?? Number.NaN,
    };
  } catch (error) {
    const tail = server.outputTail();
    throw new Error(`${error instanceof Error ? error.message : String(error)}${tail === "" ? "" : `\n${tail}`}`);
  } finally {
    await stopChild(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
    temporaryDirs.delete(dataDir);
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      variant: { type: "string", multiple: true },
      rounds: { type: "string", default: "3" },
      warmup: { type: "string", default: "20" },
      calls: { type: "string", default: "150" },
      items: { type: "string", default: String(RESERVE_BATCH_ITEMS_MAX) },
      concurrency: { type: "string", default: "4" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const defaultMain = path.resolve(__dirname, "..", "src", "main.js");
  const variants = (values.variant ?? ["current"]).map((spec) => parseVariant(spec, defaultMain));
  const options: BatchCpuOptions = {
    rounds: Number(values.rounds),
    warmupCalls: Number(values.warmup),
    calls: Number(values.calls),
    items: Number(values.items),
    concurrency: Number(values.concurrency),
  };
  if ((options.warmupCalls + options.calls) * options.items > LIVE_RESERVATIONS_PER_SKU_MAX) {
    throw new Error(`(warmup + calls) x items must stay within ${LIVE_RESERVATIONS_PER_SKU_MAX} (live reservations of one SKU)`);
  }
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const passes: BatchPass[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const [index, variant] of roundOrder(variants, round)) {
      const p = await onePass(variant, index, round, options, pinning);
      passes.push(p);
      log(
        `round ${round} ${variant.name.padEnd(10)} ${p.itemsPerSecond.toFixed(0).padStart(7)} items/s  ${p.cpuMicrosPerItem.toFixed(2).padStart(6)} µs CPU/item ` +
          `(main thread ${p.mainThreadMicrosPerItem?.toFixed(2) ?? "?"})  server ${p.serverCpuPercent.toFixed(0)}% ` +
          `(main thread ran ${p.mainRanPercent?.toFixed(0) ?? "?"}%, queued ${p.mainQueuedPercent?.toFixed(0) ?? "?"}%)  p99 ${p.p99Ms.toFixed(0)} max ${p.maxMs.toFixed(0)} ms  ` +
          `${p.items} items, ${p.callErrors} failed calls  load ${p.loadAverage.toFixed(1)}`,
      );
    }
  }
  const first = variants[0]?.name ?? "";
  const ratio = (p: BatchPass, pick: (q: BatchPass) => number | null): number => {
    const base = passes.find((b) => b.variant === first && b.round === p.round);
    const a = pick(p);
    const b = base === undefined ? null : pick(base);
    return a === null || b === null ? Number.NaN : a / b;
  };
  log(`\nmedians over ${options.rounds} alternating rounds of ${options.calls} calls x ${options.items} items (ratios: per round, then median)`);
  log(`${"variant".padEnd(10)} ${"µs/item".padStart(8)} ${"÷ " + first} ${"main µs".padStart(8)} ${"÷ " + first} ${"items/s".padStart(8)}`);
  const summary = variants.map((v) => {
    const mine = passes.filter((p) => p.variant === v.name);
    const s = {
      variant: v.name,
      cpuMicrosPerItem: median(mine.map((p) => p.cpuMicrosPerItem)),
      cpuRatio: median(mine.map((p) => ratio(p, (q) => q.cpuMicrosPerItem))),
      mainThreadMicrosPerItem: median(mine.map((p) => p.mainThreadMicrosPerItem ?? Number.NaN)),
      mainThreadRatio: median(mine.map((p) => ratio(p, (q) => q.mainThreadMicrosPerItem))),
      itemsPerSecond: median(mine.map((p) => p.itemsPerSecond)),
    };
    log(
      `${s.variant.padEnd(10)} ${s.cpuMicrosPerItem.toFixed(2).padStart(8)} ${s.cpuRatio.toFixed(2).padStart(2 + first.length)} ` +
        `${s.mainThreadMicrosPerItem.toFixed(2).padStart(8)} ${s.mainThreadRatio.toFixed(2).padStart(2 + first.length)} ${s.itemsPerSecond.toFixed(0).padStart(8)}`,
    );
    return s;
  });
  if (values.json) process.stdout.write(`${JSON.stringify({ options, passes, summary })}\n`);
  return passes.some((p) => p.callErrors > 0 || p.items !== options.calls * options.items) ? 1 : 0;
}

if (require.main === module) runBenchMain("batch_cpu", main);
