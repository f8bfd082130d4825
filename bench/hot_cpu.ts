// Server CPU per hot-SKU reservation, variant against variant, in alternating
// rounds: `node dist/bench/hot_cpu.js --variant 'off' --variant 'on OTEL_TRACES_EXPORTER=otlp'`.
//
// CPU per operation (the server's user + system seconds over a fixed number of
// reservations, all its threads, divided by the reservations) moves much less
// than calls/s when other work shares the machine: a busy neighbour stretches
// the wall clock, not the work each call does. Each round starts a fresh
// server per variant (fresh data dir), seeds the hot SKU, warms it up, then
// measures; rounds alternate the variants (A B C A B C ...) so a drift of the
// machine hits them alike, and the summary gives medians and each variant's
// ratio to the first.
//
// A variant is one string: its name, then KEY=VALUE words. `main=PATH` runs
// another build's dist/src/main.js (A/B of two commits); `node=FLAG` adds a
// flag for node (e.g. node=--cpu-prof node=--cpu-prof-dir=/tmp/prof); every
// `arg=VALUE` adds a command-line argument of the server; every
// other KEY=VALUE is an environment variable of the server. `contender=echo`
// runs bench/echo_server.ts instead, and `contender=redis-aof` the Redis
// contender of bench:compare (store_server.ts, same grpc-js and generated
// codecs, a Lua reserve per call on a redis-server with `appendfsync always`
// pinned to the server's core): the figure to beat, measured the same way
// (the server process alone, as for Quartermaster; redis-server not counted).
// A variant with
// OTEL_TRACES_EXPORTER=otlp and no endpoint gets a local OTLP sink
// (otlp_sink.ts) on the generator's core.
//
// Flags: --rounds N (3), --warmup N (5000 reservations), --requests N (40000),
// --concurrency N (64), --sessions N (4), --json (one JSON line at the end).

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { LIVE_RESERVATIONS_PER_SKU_MAX } from "../src/limits";
import { type LoadResult, scenarioFrameFactory } from "./h2_load";
import { runLoad } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { LOOPBACK_HOST } from "./load_session";
import { scrapeMetrics } from "./prometheus";
import { type Child, type Pinning, choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, spawnNode, stopChild, temporaryDirs, runBenchMain } from "./processes";
import { HOT_SKU_ID, HOT_SKU_UNITS, seedHotSku } from "./seed";
import { type Engine, startRedis } from "./contenders/engines";
import { RedisAdmin } from "./contenders/redis_store";

const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
/** A starting server must answer SERVING within this. */
const HEALTH_DEADLINE_MS = 60_000;
/** Generous bound on one measured pass; a pass that takes longer is reported as stopped by duration. */
const PASS_DEADLINE_MS = 300_000;
/** Every hot reservation stays live (1 h TTL); a SKU refuses more than LIVE_RESERVATIONS_PER_SKU_MAX. */
const HOT_REQUESTS_PER_SERVER_MAX = Math.floor(LIVE_RESERVATIONS_PER_SKU_MAX * 0.9);
/** Waits for the sink to print its port. */
const SINK_START_MS = 10_000;
const METRIC_HEAP_USED = "qm_nodejs_heap_size_used_bytes";

export interface Variant {
  readonly name: string;
  /** dist/src/main.js of the build to run. */
  readonly main: string;
  readonly nodeArgs: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** Extra command-line arguments of the server or contender (`arg=VALUE`, e.g. the echo server's `--reply=immediate`). */
  readonly args?: readonly string[];
  /** Another server than Quartermaster, for the same hot load. */
  readonly contender?: Contender;
}

export const HOT_CONTENDERS = ["echo", "redis-aof"] as const;
export type Contender = (typeof HOT_CONTENDERS)[number];

export interface HotCpuOptions {
  readonly rounds: number;
  readonly warmup: number;
  readonly requests: number;
  readonly concurrency: number;
  readonly sessions: number;
}

export interface PassFigures {
  readonly variant: string;
  readonly round: number;
  readonly ok: number;
  readonly errors: number;
  readonly seconds: number;
  readonly callsPerSecond: number;
  /** Server CPU (all threads) per successful reservation, µs. */
  readonly cpuMicrosPerOp: number;
  /** The server's main thread alone (gRPC, actors, planning the journal's writes) per reservation, µs; null when unreadable. */
  readonly mainThreadMicrosPerOp: number | null;
  /** Share of one core the server used over the pass. */
  readonly serverCpuPercent: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Where a pause of the event loop (a snapshot, a major GC) shows; absent from drivers that do not read it (checkout_cpu.ts). */
  readonly p999Ms?: number;
  readonly maxMs?: number;
  /** V8 heap in use right after the pass, from /metrics; null when unreadable. */
  readonly heapUsedBytes: number | null;
  /** Load average (1 min) when the pass ended: the machine's noise. */
  readonly loadAverage: number;
}

export interface VariantSummary {
  readonly variant: string;
  readonly cpuMicrosPerOp: number;
  readonly callsPerSecond: number;
  /** Medians of the pairwise ratios to the first variant (same round), so drift cancels. */
  readonly cpuRatio: number;
  readonly throughputRatio: number;
  readonly p99Ms: number;
  readonly p999Ms?: number;
}

/**
 * The variants of one round with their indexes, in reverse order on even rounds
 * (A B, B A, …): a pass leaves work behind (its data's writeback, its deletion,
 * a warmed or cooled cache) that the next pass pays, and a fixed order would
 * charge it to the same variant every round (cluster_cpu measured 15–30%).
 */
export function roundOrder<T>(variants: readonly T[], round: number): [number, T][] {
  const order = [...variants.entries()];
  if (round % 2 === 0) order.reverse();
  return order;
}

/** A driver's count option (`--NAME`), refused unless it is a positive integer. */
export function positive(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

export function parseVariant(spec: string, defaultMain: string): Variant {
  const words = spec.trim().split(/\s+/);
  const name = words.shift();
  if (name === undefined || name === "" || name.includes("=")) throw new Error(`variant ${JSON.stringify(spec)}: starts with its name`);
  let main = defaultMain;
  let contender: Contender | undefined;
  const nodeArgs: string[] = [];
  const args: string[] = [];
  const env: Record<string, string> = {};
  for (const word of words) {
    const eq = word.indexOf("=");
    if (eq <= 0) throw new Error(`variant ${name}: ${JSON.stringify(word)} is not KEY=VALUE`);
    const key = word.slice(0, eq);
    const value = word.slice(eq + 1);
    if (key === "main") main = path.resolve(value);
    else if (key === "node") nodeArgs.push(value);
    else if (key === "arg") args.push(value);
    else if (key === "contender") {
      const known = HOT_CONTENDERS.find((c) => c === value);
      if (known === undefined) throw new Error(`variant ${name}: contender must be one of ${HOT_CONTENDERS.join(", ")}`);
      contender = known;
    } else env[key] = value;
  }
  return contender === undefined ? { name, main, nodeArgs, env, args } : { name, main, nodeArgs, env, args, contender };
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** The local OTLP receiver, started once when a variant exports spans without naming a receiver. */
async function startSink(pinning: Pinning): Promise<{ child: Child; endpoint: string }> {
  const port = await freeLoopbackPort();
  const child = spawnNode({
    name: "otlp sink",
    script: path.resolve(__dirname, "otlp_sink.js"),
    args: ["--port", String(port)],
    cpu: pinning.generatorCpu,
    keepStdout: true,
    stdoutBytesMax: 64 * 1024,
  });
  const giveUpAt = Date.now() + SINK_START_MS;
  while (!child.stdout.includes("otlp sink on")) {
    if (!child.running || Date.now() > giveUpAt) throw new Error(`otlp sink did not start: ${child.outputTail()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { child, endpoint: `http://${LOOPBACK_HOST}:${port}` };
}

/** CPU time of a process's main thread (its task id is its pid), in ms; null when unreadable. */
export function mainThreadCpuMs(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime in clock ticks (USER_HZ, 100 on Linux), as in processes.ts.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return null;
  }
}

async function heapUsed(metricsAddress: string): Promise<number | null> {
  const scrape = await scrapeMetrics(metricsAddress);
  if ("error" in scrape) return null;
  return scrape.sums.get(METRIC_HEAP_USED) ?? null;
}

async function hotPass(address: string, requests: number, options: HotCpuOptions, tag: string): Promise<LoadResult> {
  return runLoad({
    target: address,
    path: RESERVE_PATH,
    transport: "raw",
    sessions: options.sessions,
    concurrency: options.concurrency,
    warmupMs: 0,
    durationMs: PASS_DEADLINE_MS,
    requestsMax: requests,
    frameFactory: scenarioFrameFactory({ scenario: "hot", runTag: tag, hotSkuId: HOT_SKU_ID, skuCount: 1, seed: 1 }),
  });
}

/** One server of one variant: start, seed, warm up, measure, stop. */
async function onePass(
  variant: Variant,
  index: number,
  round: number,
  options: HotCpuOptions,
  pinning: Pinning,
  sinkEndpoint: string | null,
): Promise<PassFigures> {
  const port = await freeLoopbackPort();
  const metricsPort = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const metricsAddress = `${LOOPBACK_HOST}:${metricsPort}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-hot-cpu-"));
  temporaryDirs.add(dataDir);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QM_LISTEN: address,
    QM_METRICS_LISTEN: metricsAddress,
    QM_DATA_DIR: dataDir,
    QM_LOG_LEVEL: "warn",
    ...(variant.env["OTEL_TRACES_EXPORTER"] === "otlp" && variant.env["OTEL_EXPORTER_OTLP_ENDPOINT"] === undefined && sinkEndpoint !== null
      ? { OTEL_EXPORTER_OTLP_ENDPOINT: sinkEndpoint }
      : {}),
    ...variant.env,
  };
  let redis: Engine | null = null;
  let server: Child;
  if (variant.contender === "echo") {
    server = spawnNode({ name: `echo ${variant.name}`, script: path.resolve(__dirname, "echo_server.js"), args: ["--port", String(port), ...(variant.args ?? [])], nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
  } else if (variant.contender === "redis-aof") {
    const dbPort = await freeLoopbackPort();
    redis = await startRedis(path.join(dataDir, "redis"), dbPort, pinning.serverCpu, true);
    const admin = new RedisAdmin(LOOPBACK_HOST, dbPort);
    try {
      await admin.seed(HOT_SKU_ID, HOT_SKU_UNITS, 0, 0);
    } finally {
      await admin.close();
    }
    const script = path.resolve(__dirname, "contenders", "store_server.js");
    const args = ["--store", "redis", "--port", String(port), "--db-port", String(dbPort), ...(variant.args ?? [])];
    server = spawnNode({ name: `redis-aof ${variant.name}`, script, args, nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
  } else {
    server = spawnNode({ name: `server ${variant.name}`, script: variant.main, args: [...(variant.args ?? [])], nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
  }
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    if (variant.contender === undefined) await seedHotSku(address, HOT_SKU_UNITS);
    // Reservation ids take only [A-Za-z0-9._:-]; a variant's name may hold anything.
    const tag = `v${index}-${round}-${process.pid}`;
    const warm = await hotPass(address, options.warmup, options, `${tag}-w`);
    if (warm.fatal !== null) throw new Error(`${variant.name} warmup: ${warm.fatal}`);
    if (warm.errorTotal > 0) throw new Error(`${variant.name} warmup: ${warm.errorTotal} errors; first: ${warm.firstError ?? "?"}`);
    const cpuBefore = readCpuTimeMs(server.pid);
    const mainBefore = mainThreadCpuMs(server.pid);
    const result = await hotPass(address, options.requests, options, tag);
    const cpuAfter = readCpuTimeMs(server.pid);
    const mainAfter = mainThreadCpuMs(server.pid);
    if (result.fatal !== null) throw new Error(`${variant.name}: ${result.fatal}`);
    if (cpuBefore === null || cpuAfter === null) throw new Error(`${variant.name}: server CPU unreadable (${server.describeExit()})`);
    const seconds = result.measuredMs / 1000;
    const ok = result.okTotal;
    const cpuMs = cpuAfter - cpuBefore;
    return {
      variant: variant.name,
      round,
      ok,
      errors: result.errorTotal,
      seconds,
      callsPerSecond: ok / seconds,
      cpuMicrosPerOp: ok === 0 ? Number.NaN : (cpuMs * 1000) / ok,
      mainThreadMicrosPerOp: mainBefore === null || mainAfter === null || ok === 0 ? null : ((mainAfter - mainBefore) * 1000) / ok,
      serverCpuPercent: (cpuMs / (seconds * 1000)) * 100,
      p50Ms: result.latency.p50Ms,
      p99Ms: result.latency.p99Ms,
      p999Ms: result.latency.p999Ms,
      maxMs: result.latency.maxMs,
      heapUsedBytes: variant.contender === undefined ? await heapUsed(metricsAddress) : null,
      loadAverage: os.loadavg()[0] ?? Number.NaN,
    };
  } catch (error) {
    const tail = server.outputTail();
    throw new Error(`${error instanceof Error ? error.message : String(error)}${tail === "" ? "" : `\n${tail}`}`);
  } finally {
    await stopChild(server);
    if (redis !== null) await stopChild(redis.child);
    fs.rmSync(dataDir, { recursive: true, force: true });
    temporaryDirs.delete(dataDir);
  }
}

/** Runs the variants in alternating rounds; returns every pass and the per-variant medians. */
export async function compareVariants(
  variants: readonly Variant[],
  options: HotCpuOptions,
  pinning: Pinning,
): Promise<{ passes: PassFigures[]; summary: VariantSummary[] }> {
  if (variants.length === 0) throw new Error("no variant");
  if (options.warmup + options.requests > HOT_REQUESTS_PER_SERVER_MAX) {
    throw new Error(`warmup + requests must stay under ${HOT_REQUESTS_PER_SERVER_MAX} (live reservations of one SKU)`);
  }
  const needsSink = variants.some((v) => v.env["OTEL_TRACES_EXPORTER"] === "otlp" && v.env["OTEL_EXPORTER_OTLP_ENDPOINT"] === undefined);
  const sink = needsSink ? await startSink(pinning) : null;
  const passes: PassFigures[] = [];
  try {
    for (let round = 1; round <= options.rounds; round++) {
      for (const [index, variant] of roundOrder(variants, round)) {
        const pass = await onePass(variant, index, round, options, pinning, sink?.endpoint ?? null);
        passes.push(pass);
        log(
          `round ${round} ${variant.name.padEnd(12)} ${pass.callsPerSecond.toFixed(0).padStart(6)} calls/s  ` +
            `${pass.cpuMicrosPerOp.toFixed(1).padStart(6)} µs CPU/op (main thread ${pass.mainThreadMicrosPerOp?.toFixed(1) ?? "?"})  server ${pass.serverCpuPercent.toFixed(0)}% of a core  ` +
            `p99 ${pass.p99Ms.toFixed(1)} p999 ${pass.p999Ms?.toFixed(1) ?? "?"} max ${pass.maxMs?.toFixed(1) ?? "?"} ms  heap ${pass.heapUsedBytes === null ? "?" : (pass.heapUsedBytes / 1048576).toFixed(0)} MiB  load ${pass.loadAverage.toFixed(1)}`,
        );
      }
    }
  } finally {
    if (sink !== null) {
      // The sink counts what it received every 10 s: proof that the spans were exported, not dropped.
      const counts = sink.child.stdout.trim().split("\n").filter((line) => line.startsWith("otlp sink:"));
      log(counts.length === 0 ? "otlp sink: no count printed yet" : (counts[counts.length - 1] ?? ""));
    }
    await stopChild(sink?.child ?? null);
  }
  const first = variants[0]!.name;
  const summary = variants.map((variant) => {
    const mine = passes.filter((p) => p.variant === variant.name);
    const ratios = (pick: (p: PassFigures) => number): number =>
      median(
        mine.map((p) => {
          const base = passes.find((b) => b.variant === first && b.round === p.round);
          return base === undefined ? Number.NaN : pick(p) / pick(base);
        }),
      );
    return {
      variant: variant.name,
      cpuMicrosPerOp: median(mine.map((p) => p.cpuMicrosPerOp)),
      callsPerSecond: median(mine.map((p) => p.callsPerSecond)),
      cpuRatio: ratios((p) => p.cpuMicrosPerOp),
      throughputRatio: ratios((p) => p.callsPerSecond),
      p99Ms: median(mine.map((p) => p.p99Ms)),
      p999Ms: median(mine.map((p) => p.p999Ms ?? Number.NaN)),
    };
  });
  return { passes, summary };
}

export function summaryTable(summary: readonly VariantSummary[]): string {
  const first = summary[0]?.variant ?? "";
  const rows = summary.map(
    (s) =>
      `${s.variant.padEnd(14)} ${s.cpuMicrosPerOp.toFixed(1).padStart(8)} ${s.cpuRatio.toFixed(2).padStart(9)} ` +
      `${s.callsPerSecond.toFixed(0).padStart(9)} ${s.throughputRatio.toFixed(2).padStart(9)} ${s.p99Ms.toFixed(1).padStart(8)} ${(s.p999Ms?.toFixed(1) ?? "?").padStart(8)}`,
  );
  return [`${"variant".padEnd(14)} ${"µs CPU/op".padStart(8)} ${`÷ ${first}`.padStart(9)} ${"calls/s".padStart(9)} ${`÷ ${first}`.padStart(9)} ${"p99 ms".padStart(8)} ${"p999 ms".padStart(8)}`, ...rows].join(
    "\n",
  );
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      variant: { type: "string", multiple: true },
      rounds: { type: "string", default: "3" },
      warmup: { type: "string", default: "5000" },
      requests: { type: "string", default: "40000" },
      concurrency: { type: "string", default: "64" },
      sessions: { type: "string", default: "4" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const defaultMain = path.resolve(__dirname, "..", "src", "main.js");
  const variants = (values.variant ?? ["current"]).map((spec) => parseVariant(spec, defaultMain));
  const options: HotCpuOptions = {
    rounds: Number(values.rounds),
    warmup: Number(values.warmup),
    requests: Number(values.requests),
    concurrency: Number(values.concurrency),
    sessions: Number(values.sessions),
  };
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const { passes, summary } = await compareVariants(variants, options, pinning);
  log(`\nmedians over ${options.rounds} alternating rounds of ${options.requests} reservations (ratios: pairwise per round, then median)`);
  log(summaryTable(summary));
  if (values.json) process.stdout.write(`${JSON.stringify({ options, passes, summary })}\n`);
  return passes.some((p) => p.errors > 0) ? 1 : 0;
}

if (require.main === module) runBenchMain("hot_cpu", main);
