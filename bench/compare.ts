// `npm run bench:compare`: Quartermaster against the designs users could build
// themselves, one after another, on this machine, against the same generator.
//
// Contenders (each a gRPC server with the same Reserve contract, pinned to the
// server's core; their databases are pinned there too):
//   echo       bare grpc-js answering from the request (the ceiling)
//   pg         stateless service over PostgreSQL, a row lock per SKU
//   redis      stateless service over Redis, a Lua check-and-decrement, persistence off
//   redis-aof  the same with `appendfsync always` (durable answers)
//   qm         Quartermaster embedded
//   qm-cluster Quartermaster as a 3-node cluster (etcd, nats-server with JetStream,
//              3 nodes; the generator's sessions spread over the nodes)
// Workloads: hot (one SKU), uniform and zipf (100,000 SKUs), checkout
// (CreateOrder of 3 lines then ConfirmPayment, over 10,000 SKUs), and for
// Quartermaster batch-hot and batch-uniform (ReserveBatch of 1000 items).
//
// Workloads run in families (hot, catalogue, orders). Each family starts every
// contender afresh on its own data, so one family's data never inflates
// another's figures (the catalogue's idle memory above all); within a family
// all contenders run at once, idle but for the one measured, and each workload
// is measured in --rounds short rounds that go through the contenders in
// turn, so every ratio is a median of pairs measured seconds apart.
//
// For each: operations/s, latency percentiles, CPU per 1000 operations over
// every process involved (server, database, generator), how busy the
// generator's core was, and a stock check after the run. Writes
// compare-<date>.md, .json and .svg (into bench/results/ or --out DIR).
//
//   node dist/bench/compare.js [--smoke] [--out DIR] [--duration-ms N] [--warmup-ms N] [--rounds N]
//        [--contenders echo,pg,...] [--workloads hot,uniform,...]

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { systemClock } from "../src/clock";
import { IDLE_GC_CHECK_INTERVAL_MS, IDLE_GC_QUIET_MS, LIVE_RESERVATIONS_PER_SKU_MAX, RESERVE_BATCH_ITEMS_MAX } from "../src/limits";
import { PgAdmin } from "./contenders/pg_store";
import { QmAdmin } from "./contenders/qm_admin";
import { CLUSTER_NODE_IDS, type QmCluster, startQmCluster } from "./contenders/qm_cluster";
import { RedisAdmin } from "./contenders/redis_store";
import { type Engine, processTree, startPostgres, startRedis } from "./contenders/engines";
import { PG_BENCH_USER } from "./contenders/store_server";
import type { StockTotals, StoreAdmin } from "./contenders/store";
import { type CompareReport, type Measurement, writeReport } from "./compare_report";
import type { LoadResult, ScenarioName } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { LOOPBACK_HOST } from "./load_session";
import { type Child, children, choosePinning, freeLoopbackPort, type Pinning, pinSelf, readCpuTimeMs, readMemory, spawnNode, stopChild, temporaryDirs, runBenchMain } from "./processes";
import { BUILT_SKU_UNITS, buildCatalogue } from "./growth_data";
import { HOT_SKU_ID } from "./seed";
import { seedClusterCatalogue } from "./cluster_catalogue";

export const CONTENDERS = ["echo", "pg", "redis", "redis-aof", "qm", "qm-cluster"] as const;
export type ContenderName = (typeof CONTENDERS)[number];
export const WORKLOADS = ["hot", "uniform", "zipf", "checkout", "batch-hot", "batch-uniform"] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

const SCENARIO_OF: Readonly<Record<WorkloadName, ScenarioName>> = {
  hot: "hot",
  uniform: "random",
  zipf: "zipf",
  checkout: "checkout",
  "batch-hot": "batch-hot",
  "batch-uniform": "batch-random",
};

/** What each contender implements; the rest it would answer UNIMPLEMENTED. */
const SUPPORTS: Readonly<Record<ContenderName, readonly WorkloadName[]>> = {
  echo: ["hot", "uniform", "zipf"],
  pg: ["hot", "uniform", "zipf", "checkout"],
  redis: ["hot", "uniform", "zipf", "checkout"],
  "redis-aof": ["hot", "uniform", "zipf", "checkout"],
  qm: ["hot", "uniform", "zipf", "checkout", "batch-hot", "batch-uniform"],
  "qm-cluster": ["hot", "uniform", "zipf", "checkout", "batch-hot", "batch-uniform"],
};

/**
 * Workloads that share one start of each contender. The catalogue family's
 * node holds the 100,000 SKUs and what its own runs wrote, nothing else: its
 * idle memory is the figure the memory goal is about.
 */
const FAMILIES: readonly (readonly WorkloadName[])[] = [
  ["hot", "batch-hot"],
  ["uniform", "zipf"],
  ["checkout", "batch-uniform"],
];
const CATALOGUE_FAMILY: readonly WorkloadName[] = ["uniform", "zipf"];

/** ReserveBatch runs on its own hot SKU, so the hot run's live holds do not count against it. */
const BATCH_HOT_SKU_ID = "hot-batch";
/** Hot runs stop below the per-SKU live hold limit, as bench/run.ts's do. */
const HOT_REQUESTS_MAX = Math.floor(LIVE_RESERVATIONS_PER_SKU_MAX * 0.9);
/**
 * A smoke run's hot cell sells its stock out whatever the machine's load: it
 * makes twice the units' worth of calls (the second half must all be refused)
 * and stops there, or at this window, instead of in a 1 s window in which a
 * slow contender on a loaded machine sold only part of it (PostgreSQL made
 * 12-68 of 100 at load average 12).
 */
const SMOKE_HOT_DURATION_MS = 20_000;
const HEALTH_DEADLINE_MS = 60_000;
const GENERATOR_SLACK_MS = 30_000;
const GENERATOR_STDOUT_BYTES_MAX = 1024 * 1024;
/** Quartermaster's actors passivate after this long idle; the memory figure is read once they have. */
export const QM_IDLE_MS = 2_000;
/**
 * The first idle sample waits for the node's idle collector too: it collects
 * after IDLE_GC_QUIET_MS of quiet (checked once a second), and the pages it
 * frees leave RSS a moment later. Read sooner, the figure is the garbage and
 * young generation of the last burst, or not, depending on a second either way.
 */
export const IDLE_READ_DELAY_MS = Math.max(QM_IDLE_MS, IDLE_GC_QUIET_MS) + 2 * IDLE_GC_CHECK_INTERVAL_MS;
/** Idle memory is read once private memory fell less than IDLE_SETTLED_BYTES over IDLE_SETTLED_SAMPLES samples, or at the cap. */
const IDLE_SAMPLE_MS = 1_000;
const IDLE_SETTLED_SAMPLES = 3;
const IDLE_SETTLED_BYTES = 1024 * 1024;
const IDLE_SETTLE_MAX_MS = 30_000;
/**
 * Rounds per workload: three give a median and a spread of paired ratios;
 * each round still runs long enough (a third of --duration-ms after its own
 * warmup) for the journal's group commit to settle.
 */
const COMPARE_ROUNDS_DEFAULT = 3;
/** Each round pays a warmup and a generator start per contender. */
const COMPARE_ROUNDS_MAX = 20;

interface Settings {
  readonly smoke: boolean;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly concurrency: number;
  readonly sessions: number;
  readonly skuCount: number;
  readonly checkoutSkus: number;
  readonly hotUnits: number;
  /** Calls of a hot cell over all its rounds, and its measured window (ms). */
  readonly hotRequestsMax: number;
  readonly hotDurationMs: number;
  readonly skuUnits: number;
  readonly batchConcurrency: number;
  readonly batchCallsMax: number;
  readonly rounds: number;
  readonly contenders: readonly ContenderName[];
  readonly workloads: readonly WorkloadName[];
  readonly outDir: string;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function listOf<T extends string>(text: string | undefined, all: readonly T[], flag: string): readonly T[] {
  if (text === undefined) return all;
  return text.split(",").map((name) => {
    const found = all.find((n) => n === name);
    if (found === undefined) throw new Error(`${flag}: unknown ${name} (one of ${all.join(", ")})`);
    return found;
  });
}

function roundsOf(text: string | undefined, smoke: boolean): number {
  if (text === undefined) return smoke ? 1 : COMPARE_ROUNDS_DEFAULT;
  const rounds = Number(text);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > COMPARE_ROUNDS_MAX) throw new Error(`--rounds: a whole number from 1 to ${COMPARE_ROUNDS_MAX}`);
  return rounds;
}

function parseSettings(argv: readonly string[]): Settings {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      smoke: { type: "boolean", default: false },
      out: { type: "string" },
      "warmup-ms": { type: "string" },
      "duration-ms": { type: "string" },
      rounds: { type: "string" },
      contenders: { type: "string" },
      workloads: { type: "string" },
    },
    strict: true,
  });
  const smoke = values.smoke;
  const number = (text: string | undefined, fallback: number): number => (text === undefined ? fallback : Number(text));
  const durationMs = number(values["duration-ms"], smoke ? 1_000 : 10_000);
  const hotUnits = smoke ? 100 : 900_000_000;
  return {
    smoke,
    warmupMs: number(values["warmup-ms"], smoke ? 0 : 2_000),
    durationMs,
    concurrency: smoke ? 16 : 64,
    sessions: smoke ? 2 : 4,
    // Smoke: small stocks that the runs sell out, so the oversell check has something to catch.
    skuCount: smoke ? 30 : 100_000,
    checkoutSkus: smoke ? 30 : 10_000,
    hotUnits,
    hotRequestsMax: smoke ? 2 * hotUnits : HOT_REQUESTS_MAX,
    hotDurationMs: smoke ? SMOKE_HOT_DURATION_MS : durationMs,
    // Enough that the hottest Zipf SKU (about 10% of all requests) never sells out in a full run.
    skuUnits: smoke ? 20 : 1_000_000,
    batchConcurrency: smoke ? 1 : 4,
    batchCallsMax: smoke ? 3 : Math.floor(HOT_REQUESTS_MAX / RESERVE_BATCH_ITEMS_MAX),
    rounds: roundsOf(values.rounds, smoke),
    contenders: listOf(values.contenders, CONTENDERS, "--contenders"),
    workloads: listOf(values.workloads, smoke ? ["hot", "checkout", "batch-hot"] : WORKLOADS, "--workloads"),
    outDir: values.out ?? path.resolve(__dirname, "..", "..", "bench", "results"),
  };
}

function distPath(relative: string): string {
  return path.join(__dirname, relative);
}

/** One running contender: its gRPC server, its database if any, and how to seed and check it. */
interface Running {
  readonly name: ContenderName;
  readonly address: string;
  readonly server: Child;
  readonly engine: Engine | null;
  readonly admin: StoreAdmin | null;
  /** Several processes serve (a cluster): where the generator connects and whose CPU counts; else address and server/engine trees. */
  readonly cluster?: QmCluster;
  stop(): Promise<void>;
}

async function waitServing(name: string, child: Child, address: string): Promise<void> {
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => child.running);
  } catch (error) {
    throw new Error(`${name}: ${error instanceof Error ? error.message : String(error)}\n${child.outputTail()}`);
  }
}

/** qmTemplate: a seeded, stopped node's data directory, copied rather than seeded again over gRPC (minutes under load). */
async function startContender(name: ContenderName, pinning: Pinning, root: string, qmTemplate: string | null = null): Promise<Running> {
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const cpu = pinning.serverCpu;
  let engine: Engine | null = null;
  let admin: StoreAdmin | null = null;
  let server: Child;
  if (name === "echo") {
    server = spawnNode({ name, script: distPath("echo_server.js"), args: ["--port", String(port)], cpu });
  } else if (name === "qm-cluster") {
    const env = { ...process.env, QM_LOG_LEVEL: "warn", QM_ACTOR_IDLE_MS: String(QM_IDLE_MS) };
    const cluster = await startQmCluster(path.join(root, "qm-cluster"), cpu, path.join(__dirname, "..", "src", "main.js"), env);
    const admin = new QmAdmin(cluster.address, [BATCH_HOT_SKU_ID], cluster.targets);
    const first = cluster.nodes[0];
    if (first === undefined) throw new Error("qm-cluster: no node");
    const stop = async (): Promise<void> => {
      await admin.close().catch(() => undefined);
      await cluster.stop();
    };
    return { name, address: cluster.address, server: first, engine: null, admin, cluster, stop };
  } else if (name === "qm") {
    const dataDir = path.join(root, "qm");
    if (qmTemplate !== null) fs.cpSync(qmTemplate, dataDir, { recursive: true });
    // Metrics on, as a deployed node has them, on a port of its own: the default one may be another node's.
    const metrics = `${LOOPBACK_HOST}:${await freeLoopbackPort()}`;
    const env = { ...process.env, QM_LISTEN: address, QM_METRICS_LISTEN: metrics, QM_DATA_DIR: dataDir, QM_LOG_LEVEL: "warn", QM_ACTOR_IDLE_MS: String(QM_IDLE_MS) };
    server = spawnNode({ name, script: path.join(__dirname, "..", "src", "main.js"), args: [], cpu, env });
    admin = new QmAdmin(address, [BATCH_HOT_SKU_ID]);
  } else {
    const dbPort = await freeLoopbackPort();
    if (name === "pg") {
      engine = await startPostgres(path.join(root, "pg"), dbPort, cpu, PG_BENCH_USER);
      const pgAdmin = new PgAdmin({ host: LOOPBACK_HOST, port: dbPort, user: PG_BENCH_USER, database: "postgres" });
      await pgAdmin.createSchema();
      admin = pgAdmin;
    } else {
      engine = await startRedis(path.join(root, name), dbPort, cpu, name === "redis-aof");
      admin = new RedisAdmin(LOOPBACK_HOST, dbPort);
    }
    const store = name === "pg" ? "pg" : "redis";
    server = spawnNode({ name, script: distPath("contenders/store_server.js"), args: ["--store", store, "--port", String(port), "--db-port", String(dbPort)], cpu });
  }
  await waitServing(name, server, address);
  const stop = async (): Promise<void> => {
    await admin?.close().catch(() => undefined);
    await stopChild(server);
    if (engine !== null) await stopChild(engine.child);
  };
  return { name, address, server, engine, admin, stop };
}

function treeCpuMs(pid: number | undefined): number {
  if (pid === undefined || pid < 0) return 0;
  let total = 0;
  for (const p of processTree(pid)) total += readCpuTimeMs(p) ?? 0;
  return total;
}

/** CPU ms so far of the contender's servers and of its databases (a cluster's nodes, and its etcd and nats-server). */
function contenderCpuMs(c: Running): { server: number; engine: number } {
  const sum = (pids: readonly number[]): number => pids.reduce((total, pid) => total + treeCpuMs(pid), 0);
  if (c.cluster !== undefined) return { server: sum(c.cluster.nodePids()), engine: sum(c.cluster.enginePids()) };
  return { server: treeCpuMs(c.server.pid), engine: c.engine === null ? 0 : treeCpuMs(c.engine.child.pid) };
}

/** Busy and total jiffies of one CPU from /proc/stat, or null when it is not listed. */
function cpuJiffies(cpu: number | null): Jiffies | null {
  if (cpu === null) return null;
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n").find((l) => l.startsWith(`cpu${cpu} `));
  if (line === undefined) return null;
  const fields = line.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

function loadAverage(): string {
  return os.loadavg().map((l) => l.toFixed(2)).join(" ");
}

/** Units a workload's calls hold per successful call, and what the check compares. */
function opsPerCall(workload: WorkloadName): number {
  return workload === "batch-hot" || workload === "batch-uniform" ? RESERVE_BATCH_ITEMS_MAX : 1;
}

function scope(workload: WorkloadName): { which: "hot" | "catalogue"; sku: string; count: number } {
  if (workload === "hot") return { which: "hot", sku: HOT_SKU_ID, count: 1 };
  if (workload === "batch-hot") return { which: "hot", sku: BATCH_HOT_SKU_ID, count: 1 };
  return { which: "catalogue", sku: HOT_SKU_ID, count: 0 };
}

function check(workload: WorkloadName, before: StockTotals, after: StockTotals, result: LoadResult, settings: Settings): { passed: boolean; detail: string } {
  const held = (t: StockTotals): number => t.reserved + t.committed;
  const granted = held(after) - held(before);
  const problems: string[] = [];
  if (after.oversold > 0) problems.push(`${after.oversold} SKUs oversold`);
  if (after.onHand !== before.onHand) problems.push(`on_hand moved by ${after.onHand - before.onHand}`);
  let detail: string;
  if (workload === "checkout") {
    const committed = after.committed - before.committed;
    if (committed !== 3 * result.okTotal) problems.push(`committed grew by ${committed}, 3 x ${result.okTotal} paid checkouts expected`);
    if (granted > 3 * result.firstOkTotal) problems.push(`${granted} units held, more than 3 x ${result.firstOkTotal} created orders`);
    detail = `${result.okTotal} paid x 3 = ${committed} committed; held ${held(after)} of ${after.onHand}`;
  } else if (workload === "batch-hot" || workload === "batch-uniform") {
    if (granted > result.okTotal * RESERVE_BATCH_ITEMS_MAX) problems.push(`${granted} units held, more than the calls could ask for`);
    detail = `${granted} reserved by ${result.okTotal} calls; held ${held(after)} of ${after.onHand}`;
  } else {
    if (granted !== result.okTotal) problems.push(`${result.okTotal} successes but ${granted} units held`);
    detail = `${result.okTotal} successes = ${granted} units held; final available ${after.onHand - held(after)}, initial ${before.onHand - held(before)}`;
  }
  if (settings.smoke && workload === "hot" && held(after) < after.onHand && result.errorTotal > 0) problems.push("calls failed although stock was left");
  return { passed: problems.length === 0, detail: problems.length === 0 ? detail : `${problems.join("; ")} (${detail})` };
}

/** What one generator run against one contender measured. */
interface Round {
  readonly result: LoadResult;
  readonly wallMs: number;
  readonly serverCpuMs: number;
  readonly engineCpuMs: number;
  readonly generatorCore: Jiffies | null;
  readonly serverCore: Jiffies | null;
}

interface Jiffies {
  readonly busy: number;
  readonly total: number;
}

function jiffiesBetween(before: Jiffies | null, after: Jiffies | null): Jiffies | null {
  return before === null || after === null ? null : { busy: after.busy - before.busy, total: after.total - before.total };
}

function generatorArgs(c: Running, workload: WorkloadName, settings: Settings): string[] {
  const batch = opsPerCall(workload) > 1;
  const concurrency = batch ? settings.batchConcurrency : settings.concurrency;
  // A cluster gets as many sessions on each node: rounded up to a multiple of the node count.
  const perTarget = c.cluster === undefined ? 1 : CLUSTER_NODE_IDS.length;
  const sessions = Math.min(Math.ceil(settings.sessions / perTarget) * perTarget, concurrency);
  // The request caps hold for the whole workload, so each round takes its share.
  const capTotal = workload === "hot" ? settings.hotRequestsMax : batch ? settings.batchCallsMax : null;
  const requestsMax = capTotal === null ? null : Math.max(1, Math.floor(capTotal / settings.rounds));
  const s = scope(workload);
  return [
    "--target", c.cluster?.targets ?? c.address, "--scenario", SCENARIO_OF[workload],
    "--concurrency", String(concurrency), "--sessions", String(sessions),
    // A round's share of the capped batch calls lasts about a second at batch rates, so a warmup would
    // swallow all of it and leave the measured window empty: batch rounds measure from their first call.
    "--warmup-ms", String(batch ? 0 : settings.warmupMs), "--duration-ms", String(Math.max(1, Math.round(durationOf(workload, settings) / settings.rounds))),
    "--sku-count", String(skuCountOf(workload, settings)), "--hot-sku", s.sku, "--run-tag", `${workload}-${Date.now().toString(36)}`,
    "--json", "--quiet",
    // The server grants flow-control credit in 32 KiB steps as it reads, which node:http2 follows more closely than the raw
    // client; at batch call rates (tens per second) node:http2's CPU per call does not matter.
    ...(batch ? ["--transport", "node-http2"] : []),
    ...(requestsMax === null ? [] : ["--requests-max", String(requestsMax)]),
  ];
}

function durationOf(workload: WorkloadName, settings: Settings): number {
  return workload === "hot" ? settings.hotDurationMs : settings.durationMs;
}

function skuCountOf(workload: WorkloadName, settings: Settings): number {
  return workload === "checkout" ? settings.checkoutSkus : settings.skuCount;
}

async function runRound(c: Running, workload: WorkloadName, settings: Settings, pinning: Pinning): Promise<Round> {
  const cpuBefore = contenderCpuMs(c);
  const generatorCoreBefore = cpuJiffies(pinning.generatorCpu);
  const serverCoreBefore = cpuJiffies(pinning.serverCpu);
  const startedAt = Date.now();
  const generator = spawnNode({ name: `generator ${c.name} ${workload}`, script: distPath("h2_load.js"), args: generatorArgs(c, workload, settings), cpu: pinning.generatorCpu, keepStdout: true, stdoutBytesMax: GENERATOR_STDOUT_BYTES_MAX });
  let result: LoadResult;
  try {
    const limitMs = settings.warmupMs + durationOf(workload, settings) + GENERATOR_SLACK_MS;
    if (!(await generator.waitForExit(limitMs))) throw new Error(`generator still running after ${limitMs} ms`);
    const line = generator.stdout.trim().split("\n").pop() ?? "";
    if (line === "") throw new Error(`generator printed no result (${generator.describeExit()}):\n${generator.outputTail()}`);
    result = JSON.parse(line) as LoadResult;
  } finally {
    await stopChild(generator);
  }
  const cpuAfter = contenderCpuMs(c);
  return {
    result,
    wallMs: Date.now() - startedAt,
    serverCpuMs: cpuAfter.server - cpuBefore.server,
    engineCpuMs: cpuAfter.engine - cpuBefore.engine,
    generatorCore: jiffiesBetween(generatorCoreBefore, cpuJiffies(pinning.generatorCpu)),
    serverCore: jiffiesBetween(serverCoreBefore, cpuJiffies(pinning.serverCpu)),
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length === 0 ? 0 : sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** All rounds of one contender in one workload: rates and latencies are medians over rounds, CPU is totals over totals. */
function summarise(label: string, workload: WorkloadName, rounds: readonly Round[], verdict: Measurement["check"], loadAverage: string): Measurement {
  const perCall = opsPerCall(workload);
  const results = rounds.map((r) => r.result);
  const opsTotal = Math.max(1, sum(results.map((r) => r.okTotal)) * perCall);
  const opsWindow = Math.max(1, sum(results.map((r) => r.ok)) * perCall);
  const wallMs = Math.max(1, sum(rounds.map((r) => r.wallMs)));
  const serverCpuMs = sum(rounds.map((r) => r.serverCpuMs));
  // A batch round has no warmup and its calls last about a second, so over the round's wall time the generator's own
  // start and exit (hundreds of ms in which no call is out) read as the server waiting: 65% "busy" at stop 8's end
  // for a server that was busy all the time its calls were out. Its share is taken over the calls' window instead.
  const busyWindowMs = perCall > 1 ? Math.max(1, sum(results.map((r) => r.measuredMs))) : wallMs;
  const corePercent = (cores: (Jiffies | null)[]): number | null =>
    cores.some((c) => c === null) ? null : (sum(cores.map((c) => c?.busy ?? 0)) / Math.max(1, sum(cores.map((c) => c?.total ?? 0)))) * 100;
  return {
    contender: label,
    workload,
    opsPerSecond: median(results.map((r) => r.callsPerSecond)) * perCall,
    roundOpsPerSecond: results.map((r) => r.callsPerSecond * perCall),
    callsPerSecond: median(results.map((r) => r.callsPerSecond)),
    p50Ms: median(results.map((r) => r.latency.p50Ms)),
    p99Ms: median(results.map((r) => r.latency.p99Ms)),
    p999Ms: median(results.map((r) => r.latency.p999Ms)),
    ok: sum(results.map((r) => r.ok)),
    okTotal: sum(results.map((r) => r.okTotal)),
    errors: sum(results.map((r) => r.errorCount)),
    firstError: results.find((r) => r.firstError !== null)?.firstError ?? null,
    cpuMsPer1000: {
      server: (serverCpuMs / opsTotal) * 1000,
      database: (sum(rounds.map((r) => r.engineCpuMs)) / opsTotal) * 1000,
      generator: (sum(results.map((r) => r.cpu.userMs + r.cpu.systemMs)) / opsWindow) * 1000,
    },
    serverCorePercent: (serverCpuMs / busyWindowMs) * 100,
    serverCoreOfRunPercent: (serverCpuMs / wallMs) * 100,
    serverCoreBusyPercent: corePercent(rounds.map((r) => r.serverCore)),
    generatorCpuPercent: median(results.map((r) => r.cpu.percentOfOneCore)),
    generatorCoreBusyPercent: corePercent(rounds.map((r) => r.generatorCore)),
    check: verdict,
    loadAverage,
  };
}

/** The whole result of a workload for the stock check: every round's successes, as one generator run would count them. */
function combined(rounds: readonly Round[]): LoadResult {
  const first = rounds[0];
  if (first === undefined) throw new Error("no rounds");
  return { ...first.result, ok: sum(rounds.map((r) => r.result.ok)), okTotal: sum(rounds.map((r) => r.result.okTotal)), firstOkTotal: sum(rounds.map((r) => r.result.firstOkTotal)), errorTotal: sum(rounds.map((r) => r.result.errorTotal)) };
}

/**
 * One workload over every running contender that supports it: settings.rounds
 * rounds, each going through the contenders once (starting one further on each
 * round, so that no contender always follows the same one), the stock checked
 * once before the first round and once after the last.
 */
async function runWorkload(running: readonly Running[], workload: WorkloadName, settings: Settings, pinning: Pinning): Promise<Measurement[]> {
  const s = scope(workload);
  const skuCount = skuCountOf(workload, settings);
  const loadBefore = loadAverage();
  const before = new Map<Running, StockTotals>();
  for (const c of running) if (c.admin !== null) before.set(c, await c.admin.totals(s.which, s.sku, skuCount));
  const rounds = new Map<Running, Round[]>(running.map((c) => [c, []]));
  for (let r = 0; r < settings.rounds; r++) {
    for (let i = 0; i < running.length; i++) {
      const c = running[(i + r) % running.length];
      if (c !== undefined) rounds.get(c)?.push(await runRound(c, workload, settings, pinning));
    }
  }
  const out: Measurement[] = [];
  for (const c of running) {
    const mine = rounds.get(c) ?? [];
    const totalsBefore = before.get(c);
    const after = c.admin === null ? null : await c.admin.totals(s.which, s.sku, skuCount);
    const verdict = totalsBefore === undefined || after === null ? { passed: true, detail: "stateless (nothing to check)" } : check(workload, totalsBefore, after, combined(mine), settings);
    const m = summarise(c.name, workload, mine, verdict, `${loadBefore} -> ${loadAverage()}`);
    const cpu = m.cpuMsPer1000.server + m.cpuMsPer1000.database + m.cpuMsPer1000.generator;
    log(
      `${c.name} ${workload}: ${m.opsPerSecond.toFixed(0)} ops/s (rounds ${m.roundOpsPerSecond.map((v) => v.toFixed(0)).join(", ")}), p50 ${m.p50Ms.toFixed(2)} p99 ${m.p99Ms.toFixed(2)} p999 ${m.p999Ms.toFixed(2)} ms, ` +
        `${(cpu / 1000).toFixed(3)} CPU s/1000 ops, errors ${m.errors}${m.firstError === null ? "" : ` (${m.firstError})`}, check ${verdict.passed ? "ok" : "FAILED"}: ${verdict.detail}`,
    );
    out.push(m);
  }
  return out;
}

/** The families of this run, each cut down to the workloads asked for; a smoke run is one family, to stay short. */
function familiesOf(settings: Settings): WorkloadName[][] {
  if (settings.smoke) return [[...settings.workloads]];
  return FAMILIES.map((f) => f.filter((w) => settings.workloads.includes(w))).filter((f) => f.length > 0);
}

/** SKUs a family's workloads draw from: the hot family needs only its hot SKUs. */
function familySkuCount(family: readonly WorkloadName[], settings: Settings): number {
  return Math.max(0, ...family.filter((w) => scope(w).which === "catalogue").map((w) => skuCountOf(w, settings)));
}

/**
 * Seeds a Quartermaster data directory once, for every family's node to start
 * from a copy. The catalogue is written through the journal API as
 * growth_data.ts does (the same domain decisions a served SKU makes: 10 s
 * instead of 78-382 s of gRPC calls under load); the hot SKUs go over gRPC.
 */
async function seedQmTemplate(settings: Settings, pinning: Pinning, root: string): Promise<string> {
  const started = Date.now();
  const dir = path.join(root, "template");
  const built = settings.skuUnits === BUILT_SKU_UNITS;
  if (built) await buildCatalogue({ dir: path.join(dir, "qm"), skus: settings.skuCount, eventsPerSku: 2, clock: systemClock });
  // startContender puts the node's data in <dir>/qm, where the catalogue was built.
  const template = await startContender("qm", pinning, dir);
  try {
    await template.admin?.seed(HOT_SKU_ID, settings.hotUnits, built ? 0 : settings.skuCount, settings.skuUnits);
  } finally {
    await template.stop();
  }
  log(`qm: template seeded in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return path.join(dir, "qm");
}

async function startFamily(family: readonly WorkloadName[], settings: Settings, pinning: Pinning, root: string, qmTemplate: string | null, report: CompareReport): Promise<Running[]> {
  const running: Running[] = [];
  const skuCount = familySkuCount(family, settings);
  for (const name of settings.contenders) {
    if (!family.some((w) => SUPPORTS[name].includes(w))) continue;
    let c: Running | null = null;
    try {
      c = await startContender(name, pinning, root, name === "qm" ? qmTemplate : null);
      if (c.cluster !== undefined && skuCount > 0 && settings.skuUnits === BUILT_SKU_UNITS) {
        // The catalogue through the cluster's JetStream journal, as the embedded node's template is built through
        // its LMDB journal (seconds instead of about 160 s of gRPC); the hot SKUs over gRPC.
        const seconds = await seedClusterCatalogue({ etcdEndpoint: c.cluster.etcdEndpoint, natsUrl: c.cluster.natsUrl, clusterName: c.cluster.clusterName, skus: skuCount });
        await c.admin?.seed(HOT_SKU_ID, settings.hotUnits, 0, settings.skuUnits);
        log(`${name}: ${skuCount} SKUs seeded through the journal in ${seconds.toFixed(1)} s`);
      } else if (name !== "qm" || qmTemplate === null) {
        const seedStarted = Date.now();
        await c.admin?.seed(HOT_SKU_ID, settings.hotUnits, skuCount, settings.skuUnits);
        if (c.admin !== null) log(`${name}: seeded ${skuCount} SKUs in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s`);
      }
      running.push(c);
    } catch (error) {
      await c?.stop();
      const message = `${name}: ${error instanceof Error ? error.message : String(error)}`;
      log(`FAILED ${message}`);
      report.failures.push(message);
    }
  }
  return running;
}

/** VmRSS and its private and file-backed parts, once the node's actors have passivated and its private memory stopped falling. */
async function readIdleMemory(qm: Running, report: CompareReport): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, IDLE_READ_DELAY_MS));
  const giveUpAt = Date.now() + IDLE_SETTLE_MAX_MS;
  let memory = readMemory(qm.server.pid);
  const samples: number[] = [];
  while (memory !== null && Date.now() < giveUpAt) {
    samples.push(memory.anonRssBytes);
    const from = samples[samples.length - 1 - IDLE_SETTLED_SAMPLES];
    if (from !== undefined && from - memory.anonRssBytes < IDLE_SETTLED_BYTES) break;
    await new Promise((resolve) => setTimeout(resolve, IDLE_SAMPLE_MS));
    memory = readMemory(qm.server.pid);
  }
  report.qmIdleRssBytes = memory?.rssBytes ?? null;
  report.qmIdleAnonBytes = memory?.anonRssBytes ?? null;
  report.qmIdleFileBytes = memory?.fileRssBytes ?? null;
}

async function runFamily(family: readonly WorkloadName[], settings: Settings, pinning: Pinning, root: string, qmTemplate: string | null, report: CompareReport): Promise<void> {
  log(`\n== ${family.join(", ")} (load average ${loadAverage()})`);
  const running = await startFamily(family, settings, pinning, root, qmTemplate, report);
  try {
    for (const workload of family) {
      const cs = running.filter((c) => SUPPORTS[c.name].includes(workload));
      try {
        report.measurements.push(...(await runWorkload(cs, workload, settings, pinning)));
      } catch (error) {
        const message = `${workload}: ${error instanceof Error ? error.message : String(error)}`;
        log(`FAILED ${message}`);
        report.failures.push(message);
      }
    }
    const qm = running.find((c) => c.name === "qm");
    if (qm !== undefined && !settings.smoke && family.some((w) => CATALOGUE_FAMILY.includes(w))) await readIdleMemory(qm, report);
  } finally {
    await Promise.all(running.map((c) => c.stop()));
  }
}

/** Contender by contender, then workload by workload, as the tables read. */
function byContender(measurements: Measurement[]): Measurement[] {
  const rank = (m: Measurement): number => CONTENDERS.indexOf(m.contender as ContenderName) * WORKLOADS.length + WORKLOADS.indexOf(m.workload as WorkloadName);
  return [...measurements].sort((a, b) => rank(a) - rank(b));
}

export async function main(argv: readonly string[]): Promise<number> {
  const settings = parseSettings(argv);
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; load average ${loadAverage()}`);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "qm-compare-"));
  temporaryDirs.add(root);
  // PostgreSQL runs as its own user and must reach its directory inside this one.
  fs.chmodSync(root, 0o755);
  const report: CompareReport = {
    startedAt: new Date().toISOString(),
    smoke: settings.smoke,
    pinning: pinning.description,
    loadAverageStart: loadAverage(),
    loadAverageEnd: "",
    settings: { warmupMs: settings.warmupMs, durationMs: settings.durationMs, rounds: settings.rounds, concurrency: settings.concurrency, sessions: settings.sessions, skuCount: settings.skuCount, checkoutSkus: settings.checkoutSkus, batchConcurrency: settings.batchConcurrency },
    measurements: [],
    qmIdleRssBytes: null,
    qmIdleAnonBytes: null,
    qmIdleFileBytes: null,
    failures: [],
  };
  try {
    const families = familiesOf(settings);
    let qmTemplate: string | null = null;
    if (settings.contenders.includes("qm") && families.length > 1) {
      try {
        qmTemplate = await seedQmTemplate(settings, pinning, root);
      } catch (error) {
        const message = `qm template: ${error instanceof Error ? error.message : String(error)}`;
        log(`FAILED ${message}`);
        report.failures.push(message);
      }
    }
    families.forEach((_, i) => fs.mkdirSync(path.join(root, `family-${i}`), { mode: 0o755 }));
    for (const [i, family] of families.entries()) await runFamily(family, settings, pinning, path.join(root, `family-${i}`), qmTemplate, report);
  } finally {
    await Promise.all([...children].map((child) => stopChild(child)));
    fs.rmSync(root, { recursive: true, force: true });
    temporaryDirs.delete(root);
  }
  report.measurements.splice(0, report.measurements.length, ...byContender(report.measurements));
  report.loadAverageEnd = loadAverage();
  const file = writeReport(report, settings.outDir);
  log(`\nresults written to ${file}`);
  const failedChecks = report.measurements.filter((m) => !m.check.passed);
  for (const m of failedChecks) log(`CHECK FAILED: ${m.contender} ${m.workload}: ${m.check.detail}`);
  return report.failures.length === 0 && failedChecks.length === 0 ? 0 : 1;
}

if (require.main === module) runBenchMain("bench:compare", main);
