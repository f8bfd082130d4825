// Benchmark driver: `npm run bench` (tsc -p . && node dist/bench/run.js).
//
// Measures the running service over gRPC and reports every throughput as a
// RATIO to a bare grpc-js echo server measured in the same run: the machine is
// a shared, noisy 2-core box, and absolute figures from it drift by tens of
// percent between runs while the ratio drifts much less.
//
// Steps: echo baseline; start the real server and seed it; hot-SKU run; random
// run; memory after passivation; summary table and bench/results/latest.json.
// Server on CPU 0, generator on CPU 1 (taskset) when possible. Every wait has
// a deadline, every child is stopped in `finally`, only 127.0.0.1 is used.
//
// Flags (all optional):
//   --only-echo             echo baseline only (no real server)
//   --stand-in echo         run every step against a second echo server instead
//                           of dist/src/main.js (exercises the whole pipeline)
//   --warmup-ms N --duration-ms N --concurrency N --sessions N --transport raw|node-http2
//   --sku-count N           SKUs seeded for the random run (default 100000)
//   --idle-ms N             QM_ACTOR_IDLE_MS given to the server (default 5000)
//   --keep-data             keep the server's data dir
//   --tracing-rounds N      rounds of the tracing-cost step (default 2; 0 skips it)
//   --tracing-requests N    hot reservations measured per server in that step (default 20000)
//   --no-write              do not write bench/results/latest.json

import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { LIVE_RESERVATIONS_PER_SKU_MAX } from "../src/limits";
import {
  CONCURRENCY_DEFAULT,
  DURATION_MS_DEFAULT,
  GENERATOR_CPU_WARN_PERCENT,
  type LoadResult,
  SESSIONS_DEFAULT,
  TRANSPORT_DEFAULT,
  WARMUP_MS_DEFAULT,
  formatResult,
} from "./h2_load";
import { waitUntilServing } from "./health_client";
import { LOOPBACK_HOST, TRANSPORTS, type TransportName } from "./load_session";
import { type MetricSums, scrapeMetrics } from "./prometheus";
import { type Child, type MemoryFigures, type Pinning, children, choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, readMemory, spawnNode, stopChild, temporaryDirs, runBenchMain } from "./processes";
import { HOT_SKU_ID, seedCatalogue } from "./seed";
import { compareVariants, type PassFigures, parseVariant, summaryTable as variantTable, type VariantSummary } from "./hot_cpu";
import { SKU_COUNT_MAX } from "./reserve_frames";

/** The service's memory budget for the random scenario's working set, after passivation. */
const MEMORY_BUDGET_BYTES = 512 * 1024 * 1024;
/** Echo runs further apart than this mean the machine's load changed during the run. */
const ECHO_DRIFT_WARN = 0.15;
/** A scenario whose errors exceed this share of its calls fails the run (exit code 1). */
const ERROR_SHARE_MAX = 0.01;
const SKU_COUNT_DEFAULT = 100_000;
/** Passivation period the driver gives the server it starts; short so that the memory step does not wait long. */
const ACTOR_IDLE_MS_DEFAULT = 5_000;
/** Extra wait beyond the idle period: passivation runs on a sweep, not at the exact instant. */
const PASSIVATION_MARGIN_MS = 5_000;
/** A starting server (journal replay included) must answer SERVING within this. */
const HEALTH_DEADLINE_MS = 60_000;
/** Beyond the run's own length: connect, drain and process start-up of the generator child. */
const GENERATOR_SLACK_MS = 30_000;
/**
 * Reservations of one hot run, warmup included. Every hot reservation stays
 * live for its 1 h TTL, and a SKU refuses more than LIVE_RESERVATIONS_PER_SKU_MAX
 * live ones, so the hot run stops short of that instead of measuring refusals.
 */
const HOT_RUN_REQUESTS_MAX = Math.floor(LIVE_RESERVATIONS_PER_SKU_MAX * 0.9);
/** The generator prints one JSON line; anything larger is not it. */
const GENERATOR_STDOUT_BYTES_MAX = 1024 * 1024;
/** Fixed seed: the random scenario's SKU sequence is the same in every run. */
const RANDOM_SEED = 20_240_601;
/** Rounds of the tracing-cost step: each round runs off, 10% and 100% once, alternating. */
const TRACING_ROUNDS_DEFAULT = 2;
const TRACING_REQUESTS_DEFAULT = 20_000;
const TRACING_WARMUP_REQUESTS = 3_000;
/**
 * The tracing-cost step's variants, as the issue names them: off, 10% of
 * traces sampled, and every trace sampled and exported over OTLP/HTTP
 * protobuf to a local receiver (otlp_sink.ts, on the generator's core).
 */
const TRACING_VARIANTS: readonly string[] = [
  "off",
  "sampled-10% OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=0.1",
  "sampled-100% OTEL_TRACES_EXPORTER=otlp OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_TRACES_SAMPLER=always_on",
];

const METRIC_COMMITS = "qm_journal_commits_total";
const METRIC_APPENDS = "qm_journal_appends_total";
const METRIC_ACTORS_ACTIVE = "qm_actors_active";
/** prom-client's default metric, under the service's qm_ prefix. */
const METRIC_HEAP_USED = "qm_nodejs_heap_size_used_bytes";

interface Settings {
  readonly onlyEcho: boolean;
  readonly standInEcho: boolean;
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly concurrency: number;
  readonly sessions: number;
  readonly transport: TransportName;
  readonly skuCount: number;
  readonly idleMs: number;
  readonly keepData: boolean;
  readonly write: boolean;
  readonly tracingRounds: number;
  readonly tracingRequests: number;
}

interface FsyncFigures {
  readonly commits: number | null;
  readonly appends: number | null;
  readonly requestsPerCommit: number | null;
  readonly appendsPerCommit: number | null;
  readonly note: string | null;
}

interface ScenarioReport {
  readonly scenario: string;
  readonly result: LoadResult;
  /** Against the mean of the echo runs of this driver run; null until known. */
  ratioVsEcho: number | null;
  readonly fsync: FsyncFigures | null;
  readonly serverCpuPercent: number | null;
}

interface MemoryReport extends MemoryFigures {
  readonly waitedMs: number;
  readonly budgetBytes: number;
  readonly pass: boolean;
}

class Report {
  readonly scenarios: ScenarioReport[] = [];
  readonly warnings: string[] = [];
  readonly failures: string[] = [];
  seed: { skus: number; elapsedMs: number; callsPerSecond: number } | null = null;
  memory: MemoryReport | null = null;
  tracing: { passes: PassFigures[]; summary: VariantSummary[] } | null = null;
  /** calls/s of each echo run (before the service, and after it). */
  readonly echoCallsPerSecond: number[] = [];

  echoMean(): number | null {
    if (this.echoCallsPerSecond.length === 0) return null;
    return this.echoCallsPerSecond.reduce((sum, value) => sum + value, 0) / this.echoCallsPerSecond.length;
  }
}

function parseSettings(argv: readonly string[]): Settings {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      "only-echo": { type: "boolean", default: false },
      "stand-in": { type: "string" },
      "warmup-ms": { type: "string", default: String(WARMUP_MS_DEFAULT) },
      "duration-ms": { type: "string", default: String(DURATION_MS_DEFAULT) },
      concurrency: { type: "string", default: String(CONCURRENCY_DEFAULT) },
      sessions: { type: "string", default: String(SESSIONS_DEFAULT) },
      transport: { type: "string", default: TRANSPORT_DEFAULT },
      "sku-count": { type: "string", default: String(SKU_COUNT_DEFAULT) },
      "idle-ms": { type: "string", default: String(ACTOR_IDLE_MS_DEFAULT) },
      "keep-data": { type: "boolean", default: false },
      "no-write": { type: "boolean", default: false },
      "tracing-rounds": { type: "string", default: String(TRACING_ROUNDS_DEFAULT) },
      "tracing-requests": { type: "string", default: String(TRACING_REQUESTS_DEFAULT) },
    },
    strict: true,
  });
  const standIn = values["stand-in"];
  if (standIn !== undefined && standIn !== "echo") throw new Error("--stand-in accepts only: echo");
  const transport = TRANSPORTS.find((name) => name === values.transport);
  if (transport === undefined) throw new Error(`--transport must be one of ${TRANSPORTS.join(", ")}`);
  const skuCount = Number(values["sku-count"]);
  if (!Number.isInteger(skuCount) || skuCount < 1 || skuCount > SKU_COUNT_MAX) {
    throw new Error(`--sku-count must be in [1, ${SKU_COUNT_MAX}]`);
  }
  return {
    onlyEcho: values["only-echo"],
    standInEcho: standIn === "echo",
    warmupMs: Number(values["warmup-ms"]),
    durationMs: Number(values["duration-ms"]),
    concurrency: Number(values.concurrency),
    sessions: Number(values.sessions),
    transport,
    skuCount,
    idleMs: Number(values["idle-ms"]),
    keepData: values["keep-data"],
    write: !values["no-write"],
    tracingRounds: Number(values["tracing-rounds"]),
    tracingRequests: Number(values["tracing-requests"]),
  };
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Compiled file next to this one (dist/bench/...), or under dist/src for the service. */
function distPath(...parts: string[]): string {
  return path.resolve(__dirname, ...parts);
}

/** dist/bench/run.js -> repository root, where bench/results lives. */
function repositoryRoot(): string {
  return path.resolve(__dirname, "..", "..");
}

async function startServer(
  name: string,
  script: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  address: string,
  pinning: Pinning,
): Promise<Child> {
  if (!fs.existsSync(script)) throw new Error(`${script} not found: build first (tsc -p .)`);
  const child = spawnNode({ name, script, args, cpu: pinning.serverCpu, env });
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => child.running);
  } catch (error) {
    const tail = child.outputTail();
    await stopChild(child);
    throw new Error(`${name}: ${error instanceof Error ? error.message : String(error)}${tail === "" ? "" : `\n${tail}`}`);
  }
  return child;
}

interface GeneratorRun {
  readonly result: LoadResult;
  /** Server CPU over the generator's whole run (warmup included), % of one core; null if unreadable. */
  readonly serverCpuPercent: number | null;
}

async function runGenerator(
  label: string,
  target: string,
  scenarioArgs: readonly string[],
  settings: Settings,
  pinning: Pinning,
  requestsMax: number | null,
  server: Child,
): Promise<GeneratorRun> {
  const script = distPath("h2_load.js");
  const args = [
    "--target", target,
    "--transport", settings.transport,
    "--sessions", String(settings.sessions),
    "--concurrency", String(settings.concurrency),
    "--warmup-ms", String(settings.warmupMs),
    "--duration-ms", String(settings.durationMs),
    "--json", "--quiet",
    ...(requestsMax === null ? [] : ["--requests-max", String(requestsMax)]),
    ...scenarioArgs,
  ];
  const serverCpuBeforeMs = readCpuTimeMs(server.pid);
  const startedAt = Date.now();
  const child = spawnNode({
    name: `generator (${label})`,
    script,
    args,
    cpu: pinning.generatorCpu,
    keepStdout: true,
    stdoutBytesMax: GENERATOR_STDOUT_BYTES_MAX,
  });
  try {
    const limitMs = settings.warmupMs + settings.durationMs + GENERATOR_SLACK_MS;
    if (!(await child.waitForExit(limitMs))) throw new Error(`generator (${label}) still running after ${limitMs} ms`);
    const line = child.stdout.trim().split("\n").pop() ?? "";
    if (line === "") throw new Error(`generator (${label}) printed no result (${child.describeExit()}):\n${child.outputTail()}`);
    const result = JSON.parse(line) as LoadResult;
    const serverCpuAfterMs = readCpuTimeMs(server.pid);
    const wallMs = Date.now() - startedAt;
    const serverCpuPercent =
      serverCpuBeforeMs === null || serverCpuAfterMs === null ? null : ((serverCpuAfterMs - serverCpuBeforeMs) / wallMs) * 100;
    log(formatResult(label, result));
    if (serverCpuPercent !== null) log(`  server CPU: ${serverCpuPercent.toFixed(0)}% of one core (whole generator run, warmup included)`);
    return { result, serverCpuPercent };
  } finally {
    await stopChild(child);
  }
}

function counter(sums: MetricSums | null, name: string): number | null {
  return sums?.get(name) ?? null;
}

function fsyncFigures(before: MetricSums | null, after: MetricSums | null, problem: string | null, reserves: number): FsyncFigures {
  const commitsBefore = counter(before, METRIC_COMMITS);
  const commitsAfter = counter(after, METRIC_COMMITS);
  const appendsBefore = counter(before, METRIC_APPENDS);
  const appendsAfter = counter(after, METRIC_APPENDS);
  const commits = commitsBefore !== null && commitsAfter !== null ? commitsAfter - commitsBefore : null;
  const appends = appendsBefore !== null && appendsAfter !== null ? appendsAfter - appendsBefore : null;
  const notes: string[] = [];
  if (problem !== null) notes.push(`metrics endpoint: ${problem}`);
  else {
    if (commits === null) notes.push(`${METRIC_COMMITS} absent`);
    if (appends === null) notes.push(`${METRIC_APPENDS} absent`);
  }
  return {
    commits,
    appends,
    requestsPerCommit: commits !== null && commits > 0 ? reserves / commits : null,
    appendsPerCommit: commits !== null && commits > 0 && appends !== null ? appends / commits : null,
    note: notes.length === 0 ? null : notes.join("; "),
  };
}

function printFsync(figures: FsyncFigures, reserves: number): void {
  if (figures.requestsPerCommit !== null) {
    log(
      `  journal: ${figures.commits} commits for ${reserves} reserves = ${figures.requestsPerCommit.toFixed(1)} requests/fsync` +
        (figures.appendsPerCommit !== null ? `, ${figures.appendsPerCommit.toFixed(1)} appends/commit` : ""),
    );
  }
  if (figures.commits === 0) log("  journal: no commits counted during the run");
  if (figures.note !== null) log(`  journal: ${figures.note} (figure not available)`);
}

function checkErrors(report: Report, scenario: string, result: LoadResult): void {
  const calls = result.ok + result.errorCount;
  if (result.fatal !== null) report.failures.push(`${scenario}: ${result.fatal}`);
  if (calls === 0) report.failures.push(`${scenario}: no calls completed in the measurement window`);
  else if (result.errorCount / calls > ERROR_SHARE_MAX) {
    report.failures.push(`${scenario}: ${result.errorCount} of ${calls} calls failed (> ${ERROR_SHARE_MAX * 100}%)`);
  }
  if (result.cpu.percentOfOneCore > GENERATOR_CPU_WARN_PERCENT) {
    report.warnings.push(
      `${scenario}: generator used ${result.cpu.percentOfOneCore.toFixed(0)}% of its core; it may be the bottleneck and the ratio understates the server`,
    );
  }
}

async function measuredScenario(
  report: Report,
  scenario: string,
  target: string,
  scenarioArgs: readonly string[],
  settings: Settings,
  pinning: Pinning,
  metricsAddress: string | null,
  requestsMax: number | null,
  server: Child,
): Promise<void> {
  const before = metricsAddress === null ? null : await scrapeMetrics(metricsAddress);
  const { result, serverCpuPercent } = await runGenerator(scenario, target, scenarioArgs, settings, pinning, requestsMax, server);
  const after = metricsAddress === null ? null : await scrapeMetrics(metricsAddress);
  const echo = report.echoMean();
  if (echo !== null && echo > 0) log(`  vs the echo run before it: ${(result.callsPerSecond / echo).toFixed(2)} (the summary uses the mean of both echo runs)`);
  let fsync: FsyncFigures | null = null;
  if (before !== null && after !== null) {
    const problem = "error" in before ? before.error : "error" in after ? after.error : null;
    fsync = fsyncFigures("sums" in before ? before.sums : null, "sums" in after ? after.sums : null, problem, result.okTotal);
    printFsync(fsync, result.okTotal);
  }
  if (result.stoppedBy === "requests") log(`  (stopped at the request cap of ${requestsMax}: the measurement window is shorter than asked)`);
  checkErrors(report, scenario, result);
  report.scenarios.push({ scenario, result, ratioVsEcho: null, fsync, serverCpuPercent });
  if (!server.running) {
    // No later step means anything without the server; its last output says why it died.
    const tail = server.outputTail();
    throw new Error(`server crashed during ${scenario} (${server.describeExit()})${tail === "" ? "" : `; its last output:\n${tail}`}`);
  }
}

/**
 * The baseline runs twice, before and after the service, in fresh processes
 * like the service's: ratios use the mean, and the spread between the two runs
 * shows how much the machine drifted meanwhile.
 */
async function echoBaseline(report: Report, scenario: string, settings: Settings, pinning: Pinning): Promise<void> {
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  log(`\n== ${scenario}: baseline, bare grpc-js (${address})`);
  let echo: Child | null = null;
  try {
    echo = await startServer("echo server", distPath("echo_server.js"), ["--port", String(port)], process.env, address, pinning);
    // Same request shape as the random scenario: a unique id and a sku-NNNNNN id per call.
    const { result, serverCpuPercent } = await runGenerator(
      scenario,
      address,
      ["--scenario", "random", "--seed", String(RANDOM_SEED)],
      settings,
      pinning,
      null,
      echo,
    );
    if (!echo.running) report.failures.push(`${scenario}: server crashed (${echo.describeExit()})`);
    checkErrors(report, scenario, result);
    report.echoCallsPerSecond.push(result.callsPerSecond);
    report.scenarios.push({ scenario, result, ratioVsEcho: null, fsync: null, serverCpuPercent });
  } finally {
    await stopChild(echo);
  }
}

async function serviceScenarios(report: Report, settings: Settings, pinning: Pinning): Promise<void> {
  const port = await freeLoopbackPort();
  const metricsPort = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const metricsAddress = `${LOOPBACK_HOST}:${metricsPort}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-bench-"));
  if (!settings.keepData) temporaryDirs.add(dataDir);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QM_LISTEN: address,
    QM_METRICS_LISTEN: metricsAddress,
    QM_DATA_DIR: dataDir,
    QM_LOG_LEVEL: "warn",
    QM_ACTOR_IDLE_MS: String(settings.idleMs),
  };
  const [name, script, args] = settings.standInEcho
    ? ["echo stand-in", distPath("echo_server.js"), ["--port", String(port)]]
    : ["quartermaster", distPath("..", "src", "main.js"), []];
  log(`\n== ${name} (${address}, metrics ${metricsAddress}, data ${dataDir}, QM_ACTOR_IDLE_MS=${settings.idleMs})`);
  let server: Child | null = null;
  try {
    server = await startServer(name, script, args, env, address, pinning);
    const running = server;
    log(`server pid ${server.pid}`);

    const seed = await seedCatalogue(address, settings.skuCount);
    report.seed = seed;
    log(`seeded ${seed.skus} SKUs (${HOT_SKU_ID} and ${settings.skuCount} numbered) in ${(seed.elapsedMs / 1000).toFixed(1)} s (${seed.callsPerSecond.toFixed(0)} calls/s)`);

    log(`\n== hot SKU: ${settings.concurrency} callers reserving 1 unit of ${HOT_SKU_ID}`);
    await measuredScenario(report, "hot", address, ["--scenario", "hot", "--hot-sku", HOT_SKU_ID], settings, pinning, metricsAddress, HOT_RUN_REQUESTS_MAX, running);

    log(`\n== random SKU: ${settings.concurrency} callers reserving 1 unit of one of ${settings.skuCount} SKUs`);
    await measuredScenario(
      report,
      "random",
      address,
      ["--scenario", "random", "--sku-count", String(settings.skuCount), "--seed", String(RANDOM_SEED)],
      settings,
      pinning,
      metricsAddress,
      null,
      running,
    );

    const waitMs = settings.idleMs + PASSIVATION_MARGIN_MS;
    log(`\n== memory: idle ${waitMs} ms (passivation ${settings.idleMs} ms + ${PASSIVATION_MARGIN_MS} ms margin), then VmRSS`);
    const busy = readMemory(running.pid);
    if (busy !== null) {
      log(`  right after the runs: VmRSS ${mib(busy.rssBytes)} (anonymous ${mib(busy.anonRssBytes)}); ${await memoryGauges(metricsAddress)}`);
    }
    await sleep(waitMs);
    const memory = readMemory(running.pid);
    log(`  after the idle wait: ${await memoryGauges(metricsAddress)}`);
    if (!running.running || memory === null) {
      report.failures.push(`memory: server not running (${running.describeExit()})`);
    } else {
      const pass = memory.rssBytes <= MEMORY_BUDGET_BYTES;
      report.memory = { waitedMs: waitMs, ...memory, budgetBytes: MEMORY_BUDGET_BYTES, pass };
      log(
        `  VmRSS ${mib(memory.rssBytes)} (anonymous ${mib(memory.anonRssBytes)}, file-backed ${mib(memory.fileRssBytes)};` +
          ` peak VmHWM ${mib(memory.peakRssBytes)}) against a budget of ${mib(MEMORY_BUDGET_BYTES)}: ${pass ? "PASS" : "FAIL"}`,
      );
    }
  } finally {
    await stopChild(server);
    if (settings.keepData) log(`data kept in ${dataDir}`);
    else {
      fs.rmSync(dataDir, { recursive: true, force: true });
      temporaryDirs.delete(dataDir);
    }
  }
}

/**
 * What tracing costs on the hot SKU: fresh servers with tracing off, 10%
 * sampled and 100% sampled (exported to a local receiver), in alternating
 * rounds. The figure that matters is server CPU per reservation, which a busy
 * machine disturbs less than calls/s; both are given as ratios to "off" of
 * the same round.
 */
async function tracingCost(report: Report, settings: Settings, pinning: Pinning): Promise<void> {
  if (settings.tracingRounds === 0) return;
  log(`\n== tracing cost: hot SKU, ${settings.tracingRounds} alternating rounds of ${settings.tracingRequests} reservations per server (fresh server each)`);
  const main = distPath("..", "src", "main.js");
  const variants = TRACING_VARIANTS.map((spec) => parseVariant(spec, main));
  const result = await compareVariants(
    variants,
    { rounds: settings.tracingRounds, warmup: TRACING_WARMUP_REQUESTS, requests: settings.tracingRequests, concurrency: settings.concurrency, sessions: settings.sessions },
    pinning,
  );
  report.tracing = result;
  for (const pass of result.passes) if (pass.errors > 0) report.failures.push(`tracing ${pass.variant} round ${pass.round}: ${pass.errors} errors`);
  log(variantTable(result.summary));
}

/**
 * Actors in memory and V8 heap in use, when the service exports them: they
 * tell apart "actors were not passivated" from "the heap shrank but the
 * process kept its pages" when VmRSS stays high.
 */
async function memoryGauges(metricsAddress: string): Promise<string> {
  const scrape = await scrapeMetrics(metricsAddress);
  if ("error" in scrape) return `metrics unavailable (${scrape.error})`;
  const actors = scrape.sums.get(METRIC_ACTORS_ACTIVE);
  const heap = scrape.sums.get(METRIC_HEAP_USED);
  return (
    (actors === undefined ? `${METRIC_ACTORS_ACTIVE} absent` : `${actors} actors active`) +
    (heap === undefined ? "" : `, V8 heap used ${mib(heap)}`)
  );
}

function cell(value: string, width: number): string {
  return value.padStart(width);
}

function summaryTable(report: Report): string {
  const header = ["scenario", "calls/s", "vs echo", "p50 ms", "p99 ms", "errors", "req/fsync", "gen CPU", "srv CPU"];
  const widths = [10, 10, 8, 8, 8, 8, 10, 8, 8];
  const rows = report.scenarios.map((s) => [
    s.scenario,
    s.result.callsPerSecond.toFixed(0),
    s.ratioVsEcho === null ? "-" : s.ratioVsEcho.toFixed(2),
    s.result.latency.p50Ms.toFixed(2),
    s.result.latency.p99Ms.toFixed(2),
    String(s.result.errorCount),
    (s.fsync?.requestsPerCommit ?? null) === null ? "-" : (s.fsync?.requestsPerCommit ?? 0).toFixed(1),
    `${s.result.cpu.percentOfOneCore.toFixed(0)}%`,
    s.serverCpuPercent === null ? "-" : `${s.serverCpuPercent.toFixed(0)}%`,
  ]);
  return [header, ...rows]
    .map((row) => row.map((value, i) => (i === 0 ? value.padEnd(widths[i] ?? 0) : cell(value, widths[i] ?? 0))).join(" "))
    .join("\n");
}

function gitCommit(): string | null {
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: repositoryRoot(), encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

function writeResults(report: Report, settings: Settings, pinning: Pinning): string {
  const dir = path.join(repositoryRoot(), "bench", "results");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "latest.json");
  const document = {
    writtenAt: new Date().toISOString(),
    commit: gitCommit(),
    node: process.version,
    // os.cpus(), not availableParallelism(): the driver has pinned itself to one core by now.
    cpus: os.cpus().length,
    pinning: pinning.description,
    settings,
    summary: report.scenarios.map((s) => ({
      scenario: s.scenario,
      callsPerSecond: Math.round(s.result.callsPerSecond),
      ratioVsEcho: s.ratioVsEcho,
      p50Ms: s.result.latency.p50Ms,
      p99Ms: s.result.latency.p99Ms,
      errors: s.result.errorCount,
      requestsPerFsync: s.fsync?.requestsPerCommit ?? null,
      generatorCpuPercent: Math.round(s.result.cpu.percentOfOneCore),
      serverCpuPercent: s.serverCpuPercent === null ? null : Math.round(s.serverCpuPercent),
    })),
    echoCallsPerSecond: report.echoCallsPerSecond,
    seed: report.seed,
    memory: report.memory,
    tracing: report.tracing,
    warnings: report.warnings,
    failures: report.failures,
    scenarios: report.scenarios,
  };
  fs.writeFileSync(file, `${JSON.stringify(document, null, 2)}\n`);
  return file;
}

export async function main(argv: readonly string[]): Promise<number> {
  const settings = parseSettings(argv);
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}`);
  log(
    `load: ${settings.concurrency} in flight over ${settings.sessions} ${settings.transport} HTTP/2 sessions, warmup ${settings.warmupMs} ms, measure ${settings.durationMs} ms`,
  );
  const report = new Report();
  let crashed: string | null = null;
  try {
    await echoBaseline(report, "echo", settings, pinning);
    if (!settings.onlyEcho) {
      await serviceScenarios(report, settings, pinning);
      if (!settings.standInEcho) await tracingCost(report, settings, pinning);
      await echoBaseline(report, "echo-after", settings, pinning);
    }
  } catch (error) {
    crashed = error instanceof Error ? error.message : String(error);
    report.failures.push(crashed);
  } finally {
    await Promise.all([...children].map((child) => stopChild(child)));
  }

  const echoMean = report.echoMean();
  for (const scenario of report.scenarios) {
    scenario.ratioVsEcho = echoMean === null || echoMean === 0 ? null : scenario.result.callsPerSecond / echoMean;
  }
  log(`\n== summary (vs echo = calls/s over the mean of the echo runs of this run${echoMean === null ? "" : `, ${echoMean.toFixed(0)} calls/s`})`);
  log(summaryTable(report));
  const [echoBefore, echoAfter] = report.echoCallsPerSecond;
  if (echoBefore !== undefined && echoAfter !== undefined && echoMean !== null && echoMean > 0) {
    const drift = Math.abs(echoAfter - echoBefore) / echoMean;
    log(`echo drift between the first and last baseline: ${(drift * 100).toFixed(0)}% (the machine's noise during this run)`);
    if (drift > ECHO_DRIFT_WARN) report.warnings.push(`the echo baseline moved ${(drift * 100).toFixed(0)}% during the run: ratios are uncertain by about that much`);
  }
  if (report.tracing !== null) {
    log(`tracing cost (medians; ratios to "off" of the same round; µs = server CPU per reservation, all threads):`);
    log(variantTable(report.tracing.summary));
  }
  if (report.memory !== null) {
    log(`memory after passivation: VmRSS ${mib(report.memory.rssBytes)} / ${mib(report.memory.budgetBytes)} budget: ${report.memory.pass ? "PASS" : "FAIL"}`);
  }
  for (const warning of report.warnings) log(`WARNING: ${warning}`);
  for (const failure of report.failures) log(`FAILED: ${failure}`);
  if (settings.write && report.scenarios.length > 0) log(`results written to ${writeResults(report, settings, pinning)}`);
  return report.failures.length === 0 ? 0 : 1;
}

if (require.main === module) runBenchMain("bench", main);
