// Server CPU per Reserve across many SKUs THROUGH gRPC, build against build,
// in alternating rounds, with the hot SKU on the same node as the yardstick:
//
//   node dist/bench/catalog_grpc.js --template D --skus 100000 \
//     --variant 'base main=/path/to/base/dist/src/main.js' --variant new \
//     [--scenarios uniform,zipf,hot] [--rounds 3] [--warmup 3000] [--requests 20000]
//
// Seeding 100,000 SKUs over gRPC takes minutes on this machine, so the
// catalogue is a data directory built once through the journal API
// (`growth.js build --dir D --skus N --events-per-sku 2`; with --build this
// script builds it when D holds none). Every pass copies it, starts a node on
// the copy (QM_DATA_DIR), warms up, and measures the node's CPU (all threads)
// over a fixed number of Reserves from 64 callers; then stops the node and
// deletes the copy. The hot scenario runs on a copy too, with the hot SKU
// added over gRPC, so the ratio uniform / hot of one variant says what the
// many-SKU path (activation, its append, eviction) adds to a Reserve over the
// gRPC path both share, on the same build and in the same round.
//
// Passes alternate: round 1 runs each scenario on each variant in turn, then
// round 2 (variants in reverse order), … A variant is as in hot_cpu.ts: a name, then `main=PATH`,
// `node=FLAG` (e.g. node=--cpu-prof node=--cpu-prof-dir=/tmp/prof) or an
// environment variable of the node; and here also `template=DIR`, a
// catalogue of the variant's own instead of --template's, so that a build
// that writes another journal format runs on a catalogue it wrote itself;
// and `warm=all`: before the warmup, one Reserve on every SKU in order (the
// hot scenario too), so that a node whose actor bound holds the catalogue
// (QM_ACTIVE_ACTORS_MAX=120000 QM_ACTOR_IDLE_MS=600000) is measured in steady
// state rather than from a cold start, which is what every pass is otherwise
// (see bench/README "Steady state against cold start (stop 10)"). Each pass
// also reports the node's memory after the measured Reserves and the actors
// it held then (QM_METRICS_LISTEN's qm_actors_active), and the main thread's
// GC pauses per Reserve in wall time ("gc pause µs/op (wall)"), which grow
// with the machine's load, not only with the garbage.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { systemClock } from "../src/clock";
import { buildCatalogue } from "./growth_data";
import { type LoadResult, type ScenarioName, runLoad, scenarioCalls } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { type Variant, parseVariant, positive, roundOrder } from "./hot_cpu";
import { LOOPBACK_HOST } from "./load_session";
import { type Pinning, choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, readMemory, spawnNode, stopChild, temporaryDirs, runBenchMain } from "./processes";
import { sampleSum, scrapeText } from "./prometheus";
import { RESERVE_PATH, reserveFrameFactory } from "./reserve_frames";
import { HOT_SKU_ID, HOT_SKU_UNITS, seedHotSku } from "./seed";

/** A starting node must answer SERVING within this. */
const HEALTH_DEADLINE_MS = 60_000;
/** Generous bound on one measured pass. */
const PASS_DEADLINE_MS = 300_000;
const MIB = 1024 * 1024;

type CatalogScenario = "uniform" | "zipf" | "hot";
const CATALOG_SCENARIOS: readonly CatalogScenario[] = ["uniform", "zipf", "hot"];
/** The load generator's name for each. */
const LOAD_SCENARIO: Readonly<Record<CatalogScenario, ScenarioName>> = { uniform: "random", zipf: "zipf", hot: "hot" };

interface Options {
  readonly template: string;
  readonly skus: number;
  readonly rounds: number;
  readonly warmup: number;
  readonly requests: number;
  readonly concurrency: number;
  readonly sessions: number;
}

/** A variant of hot_cpu.ts with, optionally, a catalogue of its own and a Reserve on every SKU first. */
export interface CatalogVariant extends Variant {
  readonly template: string | undefined;
  readonly warmAll: boolean;
}

export function parseCatalogVariant(spec: string, defaultMain: string): CatalogVariant {
  const words = spec.trim().split(/\s+/);
  const template = words.find((word) => word.startsWith("template="));
  const warm = words.find((word) => word.startsWith("warm="));
  if (warm !== undefined && warm !== "warm=all") throw new Error(`variant ${words[0] ?? ""}: warm= takes only all; got ${warm}`);
  const variant = parseVariant(words.filter((word) => word !== template && word !== warm).join(" "), defaultMain);
  return { ...variant, template: template === undefined ? undefined : path.resolve(template.slice("template=".length)), warmAll: warm !== undefined };
}

interface Pass {
  readonly variant: string;
  readonly scenario: CatalogScenario;
  readonly round: number;
  readonly ok: number;
  readonly errors: number;
  readonly cpuMicrosPerOp: number;
  readonly callsPerSecond: number;
  readonly loadAverage: number;
  /** The node's VmRSS and RssAnon right after the measured Reserves, in MiB. */
  readonly rssMiB: number;
  readonly anonMiB: number;
  /** qm_actors_active right after the measured Reserves; NaN when the scrape failed. */
  readonly activeActors: number;
  /**
   * Main-thread garbage collection pauses (all kinds) per Reserve, in WALL time, and major collections, over the
   * measured Reserves; NaN when a scrape failed. Wall time, not CPU: prom-client times each pause from perf_hooks'
   * GC entries, so a pause that waits for the core swells with the machine's load, and it is no share of CPU/op.
   */
  readonly gcPauseWallMicrosPerOp: number;
  readonly majorGcs: number;
  /** The group-commit factor over the measured Reserves: appends per durable write, and Reserves answered per write (fsync). */
  readonly appendsPerCommit: number;
  readonly reservesPerCommit: number;
  /** Mean duration of one durable write, and mean wait of an append before a write took it, in ms. */
  readonly commitMs: number;
  readonly appendWaitMs: number;
  /** Client-side latency of the measured Reserves. */
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** Counters of the node read before and after the measured Reserves; NaN where /metrics does not answer or lacks the series. */
interface NodeCounters {
  /** Main-thread garbage collection pause seconds so far, wall time (all kinds), and major collections. */
  readonly gcPauseWallSeconds: number;
  readonly majorGcs: number;
  /** Durable journal writes (one fsync each) and the appends they carried. */
  readonly commits: number;
  readonly appends: number;
  /** Summed seconds of those writes (transaction and fsync) and how many were timed. */
  readonly commitSeconds: number;
  readonly commitsTimed: number;
  /** Summed seconds appends waited before a write took them (builds without the counter: NaN). */
  readonly appendWaitSeconds: number;
}

async function nodeCounters(metricsAddress: string): Promise<NodeCounters> {
  const scraped = await scrapeText(metricsAddress);
  const text = "text" in scraped ? scraped.text : "";
  const sum = (name: string): number => sampleSum(text, name) ?? Number.NaN;
  return {
    gcPauseWallSeconds: sum("qm_nodejs_gc_duration_seconds_sum"),
    // The kind's series appears with its first collection.
    majorGcs: "text" in scraped ? (sampleSum(text, "qm_nodejs_gc_duration_seconds_count", 'kind="major"') ?? 0) : Number.NaN,
    commits: sum("qm_journal_commits_total"),
    appends: sum("qm_journal_appends_total"),
    commitSeconds: sum("qm_journal_commit_duration_seconds_sum"),
    commitsTimed: sum("qm_journal_commit_duration_seconds_count"),
    appendWaitSeconds: sum("qm_journal_append_wait_seconds_total"),
  };
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function load(address: string, scenario: CatalogScenario, requests: number, options: Options, tag: string): Promise<LoadResult> {
  const calls = scenarioCalls({ scenario: LOAD_SCENARIO[scenario], runTag: tag, hotSkuId: HOT_SKU_ID, skuCount: options.skus, seed: 1 + (process.pid % 1000) });
  const result = await runLoad({
    target: address,
    path: calls.path,
    frameFactory: calls.frameFactory,
    transport: "raw",
    sessions: options.sessions,
    concurrency: options.concurrency,
    warmupMs: 0,
    durationMs: PASS_DEADLINE_MS,
    requestsMax: requests,
  });
  if (result.fatal !== null) throw new Error(`${scenario}: ${result.fatal}`);
  return result;
}

/** One Reserve on each SKU in index order, so that every SKU has been activated once. */
export async function warmAll(address: string, skus: number, sessions: number, concurrency: number, tag: string): Promise<LoadResult> {
  let next = 0;
  const result = await runLoad({
    target: address,
    path: RESERVE_PATH,
    frameFactory: reserveFrameFactory({ runTag: tag, fixedSkuId: null, skuIndexFor: () => next++ % skus, quantity: 1 }),
    transport: "raw",
    sessions,
    concurrency,
    warmupMs: 0,
    durationMs: PASS_DEADLINE_MS,
    requestsMax: skus,
  });
  if (result.fatal !== null) throw new Error(`warm-all: ${result.fatal}`);
  if (next < skus) throw new Error(`warm-all: reached ${next} of ${skus} SKUs`);
  if (result.errorTotal > 0) throw new Error(`warm-all: ${result.errorTotal} errors; first: ${result.firstError ?? "?"}`);
  return result;
}

async function onePass(variant: CatalogVariant, index: number, scenario: CatalogScenario, round: number, options: Options, pinning: Pinning): Promise<Pass> {
  const port = await freeLoopbackPort();
  const metricsPort = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const metricsAddress = `${LOOPBACK_HOST}:${metricsPort}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-catalog-grpc-"));
  temporaryDirs.add(dataDir);
  fs.cpSync(variant.template ?? options.template, dataDir, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QM_LISTEN: address,
    QM_METRICS_LISTEN: metricsAddress,
    QM_DATA_DIR: dataDir,
    QM_LOG_LEVEL: "warn",
    ...variant.env,
  };
  const server = spawnNode({ name: `server ${variant.name}`, script: variant.main, args: [], nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    if (scenario === "hot") await seedHotSku(address, HOT_SKU_UNITS);
    const tag = `c${index}-${round}-${scenario}-${process.pid}`;
    if (variant.warmAll) await warmAll(address, options.skus, options.sessions, options.concurrency, `${tag}-a`);
    const warm = await load(address, scenario, options.warmup, options, `${tag}-w`);
    if (warm.errorTotal > 0) throw new Error(`${variant.name} ${scenario} warmup: ${warm.errorTotal} errors; first: ${warm.firstError ?? "?"}`);
    const countersBefore = await nodeCounters(metricsAddress);
    const before = readCpuTimeMs(server.pid);
    const result = await load(address, scenario, options.requests, options, tag);
    const after = readCpuTimeMs(server.pid);
    const countersAfter = await nodeCounters(metricsAddress);
    if (before === null || after === null) throw new Error(`${variant.name}: server CPU unreadable (${server.describeExit()})`);
    const memory = readMemory(server.pid);
    const scraped = await scrapeText(metricsAddress);
    const activeActors = "text" in scraped ? (sampleSum(scraped.text, "qm_actors_active") ?? Number.NaN) : Number.NaN;
    const ok = result.okTotal;
    return {
      variant: variant.name,
      scenario,
      round,
      ok,
      errors: result.errorTotal,
      cpuMicrosPerOp: ok === 0 ? Number.NaN : ((after - before) * 1000) / ok,
      callsPerSecond: result.callsPerSecond,
      loadAverage: os.loadavg()[0] ?? Number.NaN,
      rssMiB: memory === null ? Number.NaN : memory.rssBytes / MIB,
      anonMiB: memory === null ? Number.NaN : memory.anonRssBytes / MIB,
      activeActors,
      gcPauseWallMicrosPerOp: ok === 0 ? Number.NaN : ((countersAfter.gcPauseWallSeconds - countersBefore.gcPauseWallSeconds) * 1e6) / ok,
      majorGcs: countersAfter.majorGcs - countersBefore.majorGcs,
      ...commitFigures(countersBefore, countersAfter, ok),
      p50Ms: result.latency.p50Ms,
      p99Ms: result.latency.p99Ms,
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

function commitFigures(before: NodeCounters, after: NodeCounters, ok: number): Pick<Pass, "appendsPerCommit" | "reservesPerCommit" | "commitMs" | "appendWaitMs"> {
  const commits = after.commits - before.commits;
  const appends = after.appends - before.appends;
  const timed = after.commitsTimed - before.commitsTimed;
  return {
    appendsPerCommit: commits > 0 ? appends / commits : Number.NaN,
    reservesPerCommit: commits > 0 ? ok / commits : Number.NaN,
    commitMs: timed > 0 ? ((after.commitSeconds - before.commitSeconds) * 1000) / timed : Number.NaN,
    appendWaitMs: appends > 0 ? ((after.appendWaitSeconds - before.appendWaitSeconds) * 1000) / appends : Number.NaN,
  };
}

function medianOf(passes: readonly Pass[], field: "appendsPerCommit" | "reservesPerCommit" | "commitMs" | "appendWaitMs" | "p50Ms" | "p99Ms", width: number, digits: number): string {
  return median(passes.map((p) => p[field])).toFixed(digits).padStart(width);
}

function summary(passes: readonly Pass[], variants: readonly Variant[], scenarios: readonly CatalogScenario[]): string {
  const first = variants[0]!.name;
  const pairwise = (mine: readonly Pass[], baseOf: (p: Pass) => Pass | undefined): number =>
    median(
      mine.map((p) => {
        const base = baseOf(p);
        return base === undefined ? Number.NaN : p.cpuMicrosPerOp / base.cpuMicrosPerOp;
      }),
    );
  const lines = [
    `${"scenario".padEnd(8)} ${"variant".padEnd(12)} ${"µs CPU/op".padStart(9)} ${`÷ ${first}`.padStart(9)} ${"÷ hot".padStart(7)} ${"errors".padStart(6)} ` +
      `${"app/commit".padStart(10)} ${"res/fsync".padStart(9)} ${"commit ms".padStart(9)} ${"wait ms".padStart(7)} ${"p50 ms".padStart(7)} ${"p99 ms".padStart(7)}`,
  ];
  for (const scenario of scenarios) {
    for (const variant of variants) {
      const mine = passes.filter((p) => p.variant === variant.name && p.scenario === scenario);
      const toFirst = pairwise(mine, (p) => passes.find((b) => b.variant === first && b.scenario === scenario && b.round === p.round));
      const toHot = pairwise(mine, (p) => passes.find((b) => b.variant === variant.name && b.scenario === "hot" && b.round === p.round));
      lines.push(
        `${scenario.padEnd(8)} ${variant.name.padEnd(12)} ${median(mine.map((p) => p.cpuMicrosPerOp)).toFixed(1).padStart(9)} ` +
          `${toFirst.toFixed(2).padStart(9)} ${toHot.toFixed(2).padStart(7)} ${String(mine.reduce((n, p) => n + p.errors, 0)).padStart(6)} ` +
          `${medianOf(mine, "appendsPerCommit", 10, 1)} ${medianOf(mine, "reservesPerCommit", 9, 1)} ${medianOf(mine, "commitMs", 9, 2)} ` +
          `${medianOf(mine, "appendWaitMs", 7, 2)} ${medianOf(mine, "p50Ms", 7, 1)} ${medianOf(mine, "p99Ms", 7, 1)}`,
      );
    }
  }
  return lines.join("\n");
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      template: { type: "string" },
      skus: { type: "string", default: "100000" },
      build: { type: "boolean", default: false },
      variant: { type: "string", multiple: true },
      scenarios: { type: "string", default: CATALOG_SCENARIOS.join(",") },
      rounds: { type: "string", default: "3" },
      warmup: { type: "string", default: "3000" },
      requests: { type: "string", default: "20000" },
      concurrency: { type: "string", default: "64" },
      sessions: { type: "string", default: "4" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.template === undefined) throw new Error("--template DIR is required (a data directory from growth.js build)");
  const options: Options = {
    template: path.resolve(values.template),
    skus: positive("skus", values.skus),
    rounds: positive("rounds", values.rounds),
    warmup: positive("warmup", values.warmup),
    requests: positive("requests", values.requests),
    concurrency: positive("concurrency", values.concurrency),
    sessions: positive("sessions", values.sessions),
  };
  const scenarios = values.scenarios.split(",").map((name) => {
    const found = CATALOG_SCENARIOS.find((s) => s === name);
    if (found === undefined) throw new Error(`--scenarios takes ${CATALOG_SCENARIOS.join(", ")}; got ${name}`);
    return found;
  });
  const defaultMain = path.resolve(__dirname, "..", "src", "main.js");
  const variants = (values.variant ?? ["current"]).map((spec) => parseCatalogVariant(spec, defaultMain));
  if (!fs.existsSync(path.join(options.template, "journal", "data.mdb"))) {
    if (!values.build) throw new Error(`${options.template} holds no journal; build it with growth.js build or pass --build`);
    fs.mkdirSync(options.template, { recursive: true });
    const built = await buildCatalogue({ dir: options.template, skus: options.skus, eventsPerSku: 2, clock: systemClock });
    log(`built ${built.skus} SKUs in ${built.seconds.toFixed(1)} s`);
  }
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const passes: Pass[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const scenario of scenarios) {
      for (const [index, variant] of roundOrder(variants, round)) {
        const pass = await onePass(variant, index, scenario, round, options, pinning);
        passes.push(pass);
        log(
          `round ${round} ${scenario.padEnd(7)} ${variant.name.padEnd(12)} ${pass.cpuMicrosPerOp.toFixed(1).padStart(7)} µs CPU/op  ` +
            `${pass.callsPerSecond.toFixed(0).padStart(6)} calls/s  errors ${pass.errors}  load ${pass.loadAverage.toFixed(1)}  ` +
            `rss ${pass.rssMiB.toFixed(0)} MiB (anon ${pass.anonMiB.toFixed(0)})  actors ${pass.activeActors}  gc pause ${pass.gcPauseWallMicrosPerOp.toFixed(1)} µs/op (wall), ${pass.majorGcs} major  ` +
            `${pass.appendsPerCommit.toFixed(1)} appends/commit, ${pass.reservesPerCommit.toFixed(1)} reserves/fsync, commit ${pass.commitMs.toFixed(2)} ms, ` +
            `wait ${pass.appendWaitMs.toFixed(2)} ms, p50/p99 ${pass.p50Ms.toFixed(1)}/${pass.p99Ms.toFixed(1)} ms`,
        );
      }
    }
  }
  log(`\nmedians over ${options.rounds} alternating rounds of ${options.requests} reserves (ratios: pairwise per round, then median)`);
  log(summary(passes, variants, scenarios));
  if (values.json) process.stdout.write(`${JSON.stringify({ options, passes })}\n`);
  return passes.some((p) => p.errors > 0) ? 1 : 0;
}

if (require.main === module) runBenchMain("catalog_grpc", main);
