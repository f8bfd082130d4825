// Idle memory of a node that served the catalogue workloads, build against
// build, in alternating rounds, read the way bench:compare reads it and then
// for longer, so that a figure can be told from the moment it was read:
//
//   node dist/bench/idle_memory.js \
//     --variant 'base main=/path/to/base/dist/src/main.js template=D0' --variant 'new template=D1' \
//     [--rounds 4] [--requests 45000] [--idle-s 30] [--json]
//
// Each pass copies the variant's catalogue (growth.js build --dir D --skus
// 100000 --events-per-sku 2; a build that writes another journal format gets a
// catalogue it wrote itself), starts a node on it with QM_ACTOR_IDLE_MS=2000
// and metrics on, as bench:compare does, and runs its catalogue family's
// sequence: GetAvailability of every SKU, uniform Reserves, the sweep twice,
// Zipf Reserves, the sweep. Then it waits 2 s and reads /proc/<pid>/status
// once a second for --idle-s seconds. Reported per pass: RssAnon where
// bench:compare's rule stops (from IDLE_READ_DELAY_MS on, once it fell less
// than 1 MiB over 3 samples; and where the rule of stop 8 and before, which
// started at 2 s, stopped), RssAnon at the end, when the idle collector's full collection happened (the first
// fall of 8 MiB or more between samples), and major collections and heap
// used from /metrics, scraped once at the end so the scrape does not change
// what it measures.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { IDLE_READ_DELAY_MS, QM_IDLE_MS } from "./compare";
import { QmAdmin } from "./contenders/qm_admin";
import { type ScenarioName, runLoad, scenarioCalls } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { parseCatalogVariant } from "./catalog_grpc";
import { type Variant, median, positive, roundOrder } from "./hot_cpu";
import { LOOPBACK_HOST } from "./load_session";
import { type Pinning, choosePinning, freeLoopbackPort, pinSelf, readMemory, spawnNode, stopChild, temporaryDirs, runBenchMain } from "./processes";
import { sampleSum, scrapeText } from "./prometheus";
import { HOT_SKU_ID } from "./seed";

const HEALTH_DEADLINE_MS = 60_000;
const PASS_DEADLINE_MS = 300_000;
/** bench:compare's settle rule; its QM_IDLE_MS and first wait come from compare.ts. */
const SAMPLE_MS = 1_000;
const SETTLED_SAMPLES = 3;
const SETTLED_BYTES = 1024 * 1024;
/** A fall of private memory between two samples this large is a full collection returning pages, not drift. */
const COLLECTION_FALL_BYTES = 8 * 1024 * 1024;
const MIB = 1024 * 1024;

interface Options {
  readonly skus: number;
  readonly rounds: number;
  readonly requests: number;
  readonly idleSeconds: number;
  readonly concurrency: number;
  readonly sessions: number;
}

interface MemoryVariant extends Variant {
  readonly template: string;
}

interface Pass {
  readonly variant: string;
  readonly round: number;
  /** RssAnon, bytes, one sample a second from 2 s after the last call. */
  readonly anonSeries: readonly number[];
  readonly rssSeries: readonly number[];
  /** Where bench:compare's rule reads: index into the series. */
  readonly compareIndex: number;
  /** Where the rule of stop 8 and before read (its first sample 2 s after the last call). */
  readonly oldRuleIndex: number;
  /** First sample after a fall of COLLECTION_FALL_BYTES or more; null when none. */
  readonly collectedAtIndex: number | null;
  readonly majorCollections: number | null;
  readonly heapUsedBytes: number | null;
  readonly heapTotalBytes: number | null;
  /** Memory V8 accounts outside its heap (Buffers, ArrayBuffers). */
  readonly externalBytes: number | null;
  /** Committed young generation and old space: which part of heap total stayed. */
  readonly newSpaceBytes: number | null;
  readonly oldSpaceBytes: number | null;
  readonly loadAverage: number;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function parseMemoryVariant(spec: string, defaultMain: string): MemoryVariant {
  const variant = parseCatalogVariant(spec, defaultMain);
  if (variant.template === undefined) throw new Error(`--variant ${spec}: template=DIR is required (a catalogue from growth.js build)`);
  return { ...variant, template: variant.template };
}

async function load(address: string, scenario: ScenarioName, options: Options, tag: string): Promise<void> {
  const calls = scenarioCalls({ scenario, runTag: tag, hotSkuId: HOT_SKU_ID, skuCount: options.skus, seed: 1 + (process.pid % 1000) });
  const result = await runLoad({
    target: address,
    path: calls.path,
    frameFactory: calls.frameFactory,
    transport: "raw",
    sessions: options.sessions,
    concurrency: options.concurrency,
    warmupMs: 0,
    durationMs: PASS_DEADLINE_MS,
    requestsMax: options.requests,
  });
  if (result.fatal !== null) throw new Error(`${scenario}: ${result.fatal}`);
  if (result.errorTotal > 0) throw new Error(`${scenario}: ${result.errorTotal} errors; first: ${result.firstError ?? "?"}`);
}

function compareRuleIndex(series: readonly number[], from: number): number {
  for (let i = from + SETTLED_SAMPLES; i < series.length; i++) {
    const from = series[i - SETTLED_SAMPLES];
    const now = series[i];
    if (from !== undefined && now !== undefined && from - now < SETTLED_BYTES) return i;
  }
  return series.length - 1;
}

function collectionIndex(series: readonly number[]): number | null {
  for (let i = 1; i < series.length; i++) {
    if ((series[i - 1] ?? 0) - (series[i] ?? 0) >= COLLECTION_FALL_BYTES) return i;
  }
  return null;
}

async function onePass(variant: MemoryVariant, round: number, options: Options, pinning: Pinning): Promise<Pass> {
  const address = `${LOOPBACK_HOST}:${await freeLoopbackPort()}`;
  const metrics = `${LOOPBACK_HOST}:${await freeLoopbackPort()}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-idle-memory-"));
  temporaryDirs.add(dataDir);
  fs.cpSync(variant.template, dataDir, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QM_LISTEN: address,
    QM_METRICS_LISTEN: metrics,
    QM_DATA_DIR: dataDir,
    QM_LOG_LEVEL: "warn",
    QM_ACTOR_IDLE_MS: String(QM_IDLE_MS),
    ...variant.env,
  };
  const server = spawnNode({ name: `server ${variant.name}`, script: variant.main, args: [], nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
  const admin = new QmAdmin(address);
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    const tag = `m${round}-${variant.name}-${process.pid}`;
    // bench:compare's catalogue family: the stock check before and after each workload.
    await admin.totals("catalogue", HOT_SKU_ID, options.skus);
    await load(address, "random", options, `${tag}-u`);
    await admin.totals("catalogue", HOT_SKU_ID, options.skus);
    await admin.totals("catalogue", HOT_SKU_ID, options.skus);
    await load(address, "zipf", options, `${tag}-z`);
    await admin.totals("catalogue", HOT_SKU_ID, options.skus);
    await new Promise((resolve) => setTimeout(resolve, QM_IDLE_MS));
    const anonSeries: number[] = [];
    const rssSeries: number[] = [];
    for (let s = 0; s < options.idleSeconds; s++) {
      const memory = readMemory(server.pid);
      if (memory === null) throw new Error(`${variant.name}: /proc unreadable (${server.describeExit()})`);
      anonSeries.push(memory.anonRssBytes);
      rssSeries.push(memory.rssBytes);
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    }
    const scraped = await scrapeText(metrics);
    const text = "text" in scraped ? scraped.text : "";
    return {
      variant: variant.name,
      round,
      anonSeries,
      rssSeries,
      compareIndex: compareRuleIndex(anonSeries, Math.ceil((IDLE_READ_DELAY_MS - QM_IDLE_MS) / SAMPLE_MS)),
      oldRuleIndex: compareRuleIndex(anonSeries, 0),
      collectedAtIndex: collectionIndex(anonSeries),
      majorCollections: sampleSum(text, "qm_nodejs_gc_duration_seconds_count", 'kind="major"'),
      heapUsedBytes: sampleSum(text, "qm_nodejs_heap_size_used_bytes"),
      heapTotalBytes: sampleSum(text, "qm_nodejs_heap_size_total_bytes"),
      externalBytes: sampleSum(text, "qm_nodejs_external_memory_bytes"),
      newSpaceBytes: sampleSum(text, "qm_nodejs_heap_space_size_total_bytes", 'space="new"'),
      oldSpaceBytes: sampleSum(text, "qm_nodejs_heap_space_size_total_bytes", 'space="old"'),
      loadAverage: os.loadavg()[0] ?? Number.NaN,
    };
  } catch (error) {
    const tail = server.outputTail();
    throw new Error(`${error instanceof Error ? error.message : String(error)}${tail === "" ? "" : `\n${tail}`}`);
  } finally {
    await admin.close();
    await stopChild(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
    temporaryDirs.delete(dataDir);
  }
}

function mib(bytes: number | null | undefined): string {
  return bytes === null || bytes === undefined ? "?" : (bytes / MIB).toFixed(0);
}

function describe(pass: Pass): string {
  const at = (i: number): string => `${mib(pass.anonSeries[i])} MiB at ${(QM_IDLE_MS + i * SAMPLE_MS) / 1000} s`;
  const collected = pass.collectedAtIndex === null ? "no fall of 8 MiB" : `fell to ${at(pass.collectedAtIndex)}`;
  return (
    `round ${pass.round} ${pass.variant.padEnd(10)} RssAnon: compare's rule reads ${at(pass.compareIndex)} (VmRSS ${mib(pass.rssSeries[pass.compareIndex])}), the old rule ${at(pass.oldRuleIndex)}; ` +
    `${collected}; end ${at(pass.anonSeries.length - 1)} (VmRSS ${mib(pass.rssSeries[pass.rssSeries.length - 1])}); ` +
    `major GCs ${pass.majorCollections ?? "?"}, heap used/total ${mib(pass.heapUsedBytes)}/${mib(pass.heapTotalBytes)} MiB, of it new space ${mib(pass.newSpaceBytes)} and old ${mib(pass.oldSpaceBytes)}, external ${mib(pass.externalBytes)} MiB; load ${pass.loadAverage.toFixed(1)}`
  );
}

function summary(passes: readonly Pass[], variants: readonly MemoryVariant[]): string {
  const first = variants[0]!.name;
  const lines = [`${"variant".padEnd(10)} ${"old rule".padStart(9)} ${"÷ " + first}   ${"compare's rule".padStart(15)} ${"÷ " + first}   ${"at the end".padStart(11)} ${"÷ " + first}`];
  for (const variant of variants) {
    const mine = passes.filter((p) => p.variant === variant.name);
    const ratio = (pick: (p: Pass) => number): number =>
      median(
        mine.map((p) => {
          const base = passes.find((b) => b.variant === first && b.round === p.round);
          return base === undefined ? Number.NaN : pick(p) / pick(base);
        }),
      );
    const atOld = (p: Pass): number => p.anonSeries[p.oldRuleIndex] ?? Number.NaN;
    const atRule = (p: Pass): number => p.anonSeries[p.compareIndex] ?? Number.NaN;
    const atEnd = (p: Pass): number => p.anonSeries[p.anonSeries.length - 1] ?? Number.NaN;
    const cell = (pick: (p: Pass) => number, width: number): string =>
      `${`${mib(median(mine.map(pick)))} MiB`.padStart(width)} ${ratio(pick).toFixed(2).padStart(first.length + 2)}`;
    lines.push(`${variant.name.padEnd(10)} ${cell(atOld, 9)}   ${cell(atRule, 15)}   ${cell(atEnd, 11)}`);
  }
  return lines.join("\n");
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      skus: { type: "string", default: "100000" },
      variant: { type: "string", multiple: true },
      rounds: { type: "string", default: "4" },
      requests: { type: "string", default: "45000" },
      "idle-s": { type: "string", default: "30" },
      concurrency: { type: "string", default: "64" },
      sessions: { type: "string", default: "4" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const options: Options = {
    skus: positive("skus", values.skus),
    rounds: positive("rounds", values.rounds),
    requests: positive("requests", values.requests),
    idleSeconds: Math.max(Math.ceil((IDLE_READ_DELAY_MS - QM_IDLE_MS) / SAMPLE_MS) + SETTLED_SAMPLES + 1, positive("idle-s", values["idle-s"])),
    concurrency: positive("concurrency", values.concurrency),
    sessions: positive("sessions", values.sessions),
  };
  const defaultMain = path.resolve(__dirname, "..", "src", "main.js");
  const specs = values.variant ?? [];
  if (specs.length === 0) throw new Error("at least one --variant 'NAME template=DIR [main=PATH]' is required");
  const variants = specs.map((spec) => parseMemoryVariant(spec, defaultMain));
  for (const v of variants) {
    if (!fs.existsSync(path.join(v.template, "journal", "data.mdb"))) throw new Error(`${v.template} holds no journal; build it with growth.js build`);
  }
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const passes: Pass[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const [, variant] of roundOrder(variants, round)) {
      const pass = await onePass(variant, round, options, pinning);
      passes.push(pass);
      log(describe(pass));
    }
  }
  log(`\nRssAnon, medians over ${options.rounds} alternating rounds (ratios: pairwise per round, then median)`);
  log(summary(passes, variants));
  if (values.json) process.stdout.write(`${JSON.stringify({ options, passes })}\n`);
  return 0;
}

if (require.main === module) runBenchMain("idle_memory", main);
