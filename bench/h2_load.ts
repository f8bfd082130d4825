// Load generator for unary gRPC Reserve calls over HTTP/2 with gRPC framing.
//
// Why not a grpc-js client: it spends several times more CPU per call than the
// server it measures and saturates its core first, so it would benchmark
// itself. Each call here is one HTTP/2 stream with a pre-encoded body;
// responses are not decoded, only their :status and grpc-status are read.
//
// Two transports (see load_session.ts): "raw" (default; HTTP/2 framing on
// node:net, h2_raw.ts) and "node-http2" (node:http2's client, h2_node.ts).
// On this 2-core machine node:http2 costs about as much CPU per call as the
// grpc-js server does, so with it the generator, not the server, is the
// bottleneck; the raw client exists for that reason.
//
// Shape: `concurrency` lanes spread round-robin over `sessions` connections. A
// lane has at most one call in flight and issues the next as soon as the
// previous one ends (closed loop), so in-flight calls are exactly
// `concurrency` while the run lasts.
//
// Runs as a CLI (the driver spawns it pinned to its own core and reads one JSON
// line from stdout) or in-process through runLoad().

import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { NodeH2Session } from "./h2_node";
import { RawH2Session } from "./h2_raw";
import { LatencyHistogram, type LatencySummary } from "./histogram";
import { type CallSink, type ExtraHeader, LOOPBACK_HOST, type LoadSession, TRANSPORTS, type TransportName } from "./load_session";
import { RESERVE_BATCH_ITEMS_MAX } from "../src/limits";
import {
  CONFIRM_PAYMENT_PATH,
  CREATE_ORDER_PATH,
  confirmPaymentFrameFactory,
  createOrderFrameFactory,
  RESERVE_BATCH_PATH,
  reserveBatchFrameFactory,
  zipfSampler,
} from "./scenarios";
import {
  type FrameFactory,
  RESERVE_PATH,
  SKU_COUNT_MAX,
  reserveFrameFactory,
  xorshift32,
} from "./reserve_frames";

/** 64 callers in flight: the load the service's figures are quoted at. */
export const CONCURRENCY_DEFAULT = 64;
/** Chosen with sweep.js (table in bench/README.md): with the raw transport the count hardly matters; 4 is what a few real clients open. */
export const SESSIONS_DEFAULT = 4;
export const TRANSPORT_DEFAULT: TransportName = "raw";
export const WARMUP_MS_DEFAULT = 2_000;
export const DURATION_MS_DEFAULT = 8_000;
/** Hard bounds on options, so a typo cannot start an unbounded run. */
const CONCURRENCY_MAX = 4_096;
const SESSIONS_MAX = 256;
const RUN_MS_MAX = 10 * 60 * 1000;
/** Requests issued per run, warmup included; 2^48 is far beyond any run and keeps ids within the id's digits. */
export const REQUESTS_MAX_LIMIT = 2 ** 48;
/** After the measurement window, in-flight calls get this long to finish before their sessions are destroyed. */
const DRAIN_TIMEOUT_MS = 10_000;
/** Above this share of its core, the generator (not the server) may be the bottleneck. */
export const GENERATOR_CPU_WARN_PERCENT = 90;

/** Distinct outcomes counted separately; bounded because statuses are 0..16 and the other keys are few. */
const OUTCOME_KEYS_MAX = 64;

const GRPC_STATUS_NAMES: readonly string[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

export interface LoadOptions {
  /**
   * host:port, the host 127.0.0.1; or several, comma-separated (the nodes of a
   * cluster): session i connects to the (i mod n)-th, so sessions, and the
   * lanes spread over them, are shared out evenly when n divides sessions.
   */
  readonly target: string;
  readonly path: string;
  readonly transport: TransportName;
  readonly sessions: number;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Requests issued in total, warmup included; the run ends early when they have all completed. */
  readonly requestsMax: number;
  readonly frameFactory: FrameFactory;
  /**
   * A second call each lane makes after a successful first one, on its own
   * sessions (a session carries one path): a checkout's ConfirmPayment after
   * its CreateOrder. Latency and ok count the pair; a failed first call ends
   * the pair and counts as its failure.
   */
  readonly followUp?: { readonly path: string; readonly frameFactory: FrameFactory };
  /** Headers every call carries (e.g. authorization); HPACK-indexed, so sent in full once per session. */
  readonly headers?: readonly ExtraHeader[];
}

export type StopReason = "duration" | "requests" | "fatal";

export interface CpuFigures {
  readonly userMs: number;
  readonly systemMs: number;
  /** (user + system) / wall time of the measurement window; 100 = one core fully busy. */
  readonly percentOfOneCore: number;
  /** Share of the window the event loop was busy, 0..1. */
  readonly eventLoopUtilization: number;
}

export interface LoadResult {
  readonly target: string;
  readonly transport: TransportName;
  readonly sessions: number;
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly measuredMs: number;
  /** Successful calls completed inside the measurement window. */
  readonly ok: number;
  /** Failed calls inside the measurement window, by outcome (`grpc 9 FAILED_PRECONDITION`, `http 503`, `stream ...`). */
  readonly errors: Readonly<Record<string, number>>;
  readonly errorCount: number;
  /** Over the whole run (warmup, window and drain): what the server actually did, for per-fsync figures. */
  readonly okTotal: number;
  readonly errorTotal: number;
  readonly issuedTotal: number;
  /** First calls that succeeded over the whole run: with a follow-up, how many orders were created. */
  readonly firstOkTotal: number;
  readonly callsPerSecond: number;
  readonly latency: LatencySummary;
  readonly cpu: CpuFigures;
  readonly stoppedBy: StopReason;
  readonly fatal: string | null;
  /** The first failed call of the whole run with its grpc-message, to say why calls fail. */
  readonly firstError: string | null;
}

const enum Phase {
  Connecting,
  Warmup,
  Measure,
  Draining,
  Done,
}

function grpcStatusKey(code: number): string {
  return `grpc ${code} ${GRPC_STATUS_NAMES[code] ?? "?"}`;
}

function parseTargets(targets: string): { host: string; port: number }[] {
  return targets.split(",").map(parseTarget);
}

function parseTarget(target: string): { host: string; port: number } {
  const [host, port] = target.split(":");
  if (host !== LOOPBACK_HOST || port === undefined || !/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65_535) {
    throw new Error(`target must be ${LOOPBACK_HOST}:<port>, got ${target}`);
  }
  return { host, port: Number(port) };
}

class LoadRun {
  readonly histogram = new LatencyHistogram();
  readonly sessions: LoadSession[] = [];
  readonly followSessions: LoadSession[] = [];
  firstOkTotal = 0;
  readonly errors = new Map<string, number>();
  phase = Phase.Connecting;
  issued = 0;
  inFlight = 0;
  ok = 0;
  errorCount = 0;
  okTotal = 0;
  errorTotal = 0;
  measureStartMs = 0;
  measureEndMs = 0;
  cpuStart: NodeJS.CpuUsage = { user: 0, system: 0 };
  cpuDelta: NodeJS.CpuUsage = { user: 0, system: 0 };
  eluStart = performance.eventLoopUtilization();
  eluDelta = 0;
  stoppedBy: StopReason = "duration";
  fatal: string | null = null;
  firstError: string | null = null;
  private finish: (() => void) | null = null;
  private readonly timers: NodeJS.Timeout[] = [];

  constructor(readonly options: LoadOptions) {}

  async run(): Promise<void> {
    await this.connect();
    const done = new Promise<void>((resolve) => {
      this.finish = resolve;
    });
    this.phase = this.options.warmupMs > 0 ? Phase.Warmup : Phase.Measure;
    if (this.phase === Phase.Measure) this.startMeasurement();
    else this.timers.push(setTimeout(() => this.startMeasurement(), this.options.warmupMs));
    this.timers.push(setTimeout(() => this.stop("duration"), this.options.warmupMs + this.options.durationMs));
    const lanes: Lane[] = [];
    for (let i = 0; i < this.options.concurrency; i++) {
      const session = this.sessions[i % this.sessions.length];
      if (session === undefined) throw new Error("no session");
      lanes.push(new Lane(this, session, this.followSessions[i % Math.max(1, this.followSessions.length)] ?? null));
    }
    for (const lane of lanes) lane.next();
    await done;
    for (const timer of this.timers) clearTimeout(timer);
    for (const session of [...this.sessions, ...this.followSessions]) session.destroy();
  }

  private async connect(): Promise<void> {
    const targets = parseTargets(this.options.target);
    const onFatal = (message: string): void => this.onFatal(message);
    const connecting: Promise<LoadSession>[] = [];
    const paths = [this.options.path, ...(this.options.followUp === undefined ? [] : [this.options.followUp.path])];
    for (const path of paths) {
      for (let i = 0; i < this.options.sessions; i++) {
        const target = targets[i % targets.length];
        if (target === undefined) throw new Error("no target");
        const { host, port } = target;
        connecting.push(
          this.options.transport === "raw"
            ? RawH2Session.connect(host, port, path, onFatal, this.options.headers)
            : NodeH2Session.connect(host, port, path, onFatal, this.options.headers),
        );
      }
    }
    const settled = await Promise.allSettled(connecting);
    settled.forEach((outcome, i) => {
      if (outcome.status === "fulfilled") (i < this.options.sessions ? this.sessions : this.followSessions).push(outcome.value);
    });
    const failure = settled.find((outcome) => outcome.status === "rejected");
    if (failure !== undefined) {
      for (const session of [...this.sessions, ...this.followSessions]) session.destroy();
      throw failure.reason instanceof Error ? failure.reason : new Error(String(failure.reason));
    }
  }

  private startMeasurement(): void {
    if (this.phase !== Phase.Warmup && this.phase !== Phase.Measure) return;
    this.phase = Phase.Measure;
    this.histogram.reset();
    this.errors.clear();
    this.ok = 0;
    this.errorCount = 0;
    this.measureStartMs = performance.now();
    this.cpuStart = process.cpuUsage();
    this.eluStart = performance.eventLoopUtilization();
  }

  private endMeasurement(): void {
    if (this.phase === Phase.Measure) {
      this.measureEndMs = performance.now();
      this.cpuDelta = process.cpuUsage(this.cpuStart);
      this.eluDelta = performance.eventLoopUtilization(this.eluStart).utilization;
    }
    if (this.phase < Phase.Draining) this.phase = Phase.Draining;
  }

  /** Stops issuing; the run finishes once in-flight calls complete or DRAIN_TIMEOUT_MS passes. */
  stop(reason: StopReason): void {
    if (this.phase >= Phase.Draining) return;
    this.stoppedBy = reason;
    this.endMeasurement();
    if (this.inFlight === 0) this.done();
    else this.timers.push(setTimeout(() => this.done(), DRAIN_TIMEOUT_MS));
  }

  private done(): void {
    if (this.phase === Phase.Done) return;
    this.phase = Phase.Done;
    this.finish?.();
  }

  onFatal(message: string): void {
    if (this.phase === Phase.Done || this.phase === Phase.Connecting) return;
    this.fatal ??= message;
    this.stoppedBy = "fatal";
    this.endMeasurement();
    this.done();
  }

  canIssue(): boolean {
    return this.phase < Phase.Draining && this.issued < this.options.requestsMax;
  }

  record(latencyMs: number, outcome: string | null, grpcMessage: string): void {
    const counting = this.phase === Phase.Measure;
    if (outcome === null) {
      this.okTotal += 1;
      if (counting) {
        this.ok += 1;
        this.histogram.recordMs(latencyMs);
      }
    } else {
      this.errorTotal += 1;
      if (this.firstError === null) {
        let message = grpcMessage;
        try {
          message = decodeURIComponent(grpcMessage);
        } catch {
          // Not percent-encoded after all: keep it as sent.
        }
        this.firstError = message === "" ? outcome : `${outcome}: ${message}`;
      }
      if (counting) {
        this.errorCount += 1;
        const previous = this.errors.get(outcome);
        if (previous !== undefined) this.errors.set(outcome, previous + 1);
        else if (this.errors.size < OUTCOME_KEYS_MAX) this.errors.set(outcome, 1);
        else this.errors.set("other", (this.errors.get("other") ?? 0) + 1);
      }
    }
  }

  /** Called when a lane goes idle; ends the run early once the request budget is spent. */
  laneIdle(): void {
    if (this.inFlight !== 0) return;
    if (this.phase === Phase.Draining) this.done();
    else if (this.phase < Phase.Draining && this.issued >= this.options.requestsMax) this.stop("requests");
  }

  result(): LoadResult {
    const measuredMs = this.measureEndMs > this.measureStartMs ? this.measureEndMs - this.measureStartMs : 0;
    const cpuMs = (this.cpuDelta.user + this.cpuDelta.system) / 1000;
    return {
      target: this.options.target,
      transport: this.options.transport,
      sessions: this.options.sessions,
      concurrency: this.options.concurrency,
      warmupMs: this.options.warmupMs,
      measuredMs,
      ok: this.ok,
      errors: Object.fromEntries(this.errors),
      errorCount: this.errorCount,
      okTotal: this.okTotal,
      errorTotal: this.errorTotal,
      issuedTotal: this.issued,
      firstOkTotal: this.firstOkTotal,
      callsPerSecond: measuredMs > 0 ? (this.ok * 1000) / measuredMs : 0,
      latency: this.histogram.summary(),
      cpu: {
        userMs: this.cpuDelta.user / 1000,
        systemMs: this.cpuDelta.system / 1000,
        percentOfOneCore: measuredMs > 0 ? (cpuMs / measuredMs) * 100 : 0,
        eventLoopUtilization: this.eluDelta,
      },
      stoppedBy: this.stoppedBy,
      fatal: this.fatal,
      firstError: this.firstError,
    };
  }
}

/** One closed-loop caller: at most one call in flight; it is its own CallSink, so no per-call closure. */
class Lane implements CallSink {
  httpStatus = -1;
  grpcStatus = -1;
  grpcMessage = "";
  private startMs = 0;
  private sequence = 0;
  /** Whether the call in flight is the follow-up of a pair. */
  private second = false;

  constructor(
    private readonly run: LoadRun,
    private readonly session: LoadSession,
    private readonly followSession: LoadSession | null,
  ) {}

  next(): void {
    const run = this.run;
    if (!run.canIssue()) {
      run.laneIdle();
      return;
    }
    this.sequence = run.issued;
    run.issued += 1;
    run.inFlight += 1;
    this.second = false;
    this.startMs = performance.now();
    this.send(this.session, run.options.frameFactory(this.sequence));
  }

  private send(session: LoadSession, body: Buffer): void {
    this.httpStatus = -1;
    this.grpcStatus = -1;
    this.grpcMessage = "";
    try {
      session.request(body, this);
    } catch (error) {
      this.run.inFlight -= 1;
      this.run.onFatal(`request failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  onCallEnd(error: string | null): void {
    const run = this.run;
    let outcome: string | null = null;
    if (error !== null) outcome = `stream ${error}`;
    else if (this.httpStatus !== 200) outcome = `http ${this.httpStatus}`;
    else if (this.grpcStatus < 0) outcome = "no grpc-status";
    else if (this.grpcStatus !== 0) outcome = grpcStatusKey(this.grpcStatus);
    const followUp = run.options.followUp;
    if (!this.second && outcome === null) run.firstOkTotal += 1;
    if (!this.second && outcome === null && followUp !== undefined && this.followSession !== null) {
      this.second = true;
      this.send(this.followSession, followUp.frameFactory(this.sequence));
      return;
    }
    run.inFlight -= 1;
    run.record(performance.now() - this.startMs, outcome, this.grpcMessage);
    this.next();
  }
}

function checkOptions(options: LoadOptions): void {
  parseTargets(options.target);
  if (!TRANSPORTS.includes(options.transport)) throw new Error(`transport must be one of ${TRANSPORTS.join(", ")}`);
  const bounded = (name: string, value: number, min: number, max: number): void => {
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${name} must be an integer in [${min}, ${max}], got ${value}`);
    }
  };
  bounded("concurrency", options.concurrency, 1, CONCURRENCY_MAX);
  bounded("sessions", options.sessions, 1, Math.min(SESSIONS_MAX, options.concurrency));
  bounded("warmupMs", options.warmupMs, 0, RUN_MS_MAX);
  bounded("durationMs", options.durationMs, 1, RUN_MS_MAX);
  bounded("requestsMax", options.requestsMax, 1, REQUESTS_MAX_LIMIT);
}

export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  checkOptions(options);
  const run = new LoadRun(options);
  await run.run();
  return run.result();
}

export type ScenarioName = "hot" | "random" | "zipf" | "checkout" | "batch-hot" | "batch-random";
export const SCENARIOS: readonly ScenarioName[] = ["hot", "random", "zipf", "checkout", "batch-hot", "batch-random"];
/** The Zipf exponent of the product owner's workload. */
export const ZIPF_S_DEFAULT = 1.1;

export interface ScenarioOptions {
  readonly scenario: ScenarioName;
  readonly runTag: string;
  readonly hotSkuId: string;
  /** Random scenario: SKUs sku-000000 .. sku-(skuCount-1). */
  readonly skuCount: number;
  readonly seed: number;
  /** Zipf exponent (zipf scenario). */
  readonly zipfS?: number;
  /** Items per ReserveBatch call (batch scenarios). */
  readonly batchItems?: number;
}

/** What a scenario sends: its path, its bodies and, for checkouts, the follow-up call. */
export interface ScenarioCalls {
  readonly path: string;
  readonly frameFactory: FrameFactory;
  readonly followUp?: { readonly path: string; readonly frameFactory: FrameFactory };
}

function checkSkuCount(skuCount: number): void {
  if (!Number.isInteger(skuCount) || skuCount < 1 || skuCount > SKU_COUNT_MAX) {
    throw new Error(`skuCount must be in [1, ${SKU_COUNT_MAX}]`);
  }
}

export function scenarioCalls(options: ScenarioOptions): ScenarioCalls {
  const random = xorshift32(options.seed);
  switch (options.scenario) {
    case "hot":
    case "random":
      return { path: RESERVE_PATH, frameFactory: scenarioFrameFactory(options) };
    case "zipf": {
      checkSkuCount(options.skuCount);
      const next = zipfSampler(options.skuCount, options.zipfS ?? ZIPF_S_DEFAULT, random);
      return { path: RESERVE_PATH, frameFactory: reserveFrameFactory({ runTag: options.runTag, fixedSkuId: null, skuIndexFor: next, quantity: 1 }) };
    }
    case "checkout":
      checkSkuCount(options.skuCount);
      return {
        path: CREATE_ORDER_PATH,
        frameFactory: createOrderFrameFactory(options.runTag, options.skuCount, random),
        followUp: { path: CONFIRM_PAYMENT_PATH, frameFactory: confirmPaymentFrameFactory(options.runTag) },
      };
    case "batch-hot":
    case "batch-random": {
      checkSkuCount(options.skuCount);
      const skuCount = options.skuCount;
      const hot = options.scenario === "batch-hot" ? options.hotSkuId : null;
      return {
        path: RESERVE_BATCH_PATH,
        frameFactory: reserveBatchFrameFactory(options.runTag, options.batchItems ?? RESERVE_BATCH_ITEMS_MAX, hot, () => Math.floor(random() * skuCount)),
      };
    }
  }
}

export function scenarioFrameFactory(options: ScenarioOptions): FrameFactory {
  if (options.scenario === "hot") {
    return reserveFrameFactory({
      runTag: options.runTag,
      fixedSkuId: options.hotSkuId,
      skuIndexFor: () => 0,
      quantity: 1,
    });
  }
  checkSkuCount(options.skuCount);
  const random = xorshift32(options.seed);
  const skuCount = options.skuCount;
  return reserveFrameFactory({
    runTag: options.runTag,
    fixedSkuId: null,
    skuIndexFor: () => Math.floor(random() * skuCount),
    quantity: 1,
  });
}

export function formatResult(label: string, result: LoadResult): string {
  const l = result.latency;
  const errors = Object.entries(result.errors)
    .map(([key, count]) => `${key}: ${count}`)
    .join(", ");
  return [
    `${label}: ${result.ok} ok in ${(result.measuredMs / 1000).toFixed(2)} s = ${result.callsPerSecond.toFixed(0)} calls/s` +
      ` (${result.transport}, ${result.sessions} sessions x ${result.concurrency / result.sessions} streams, stopped by ${result.stoppedBy})`,
    `  latency ms: p50 ${l.p50Ms.toFixed(2)}  p90 ${l.p90Ms.toFixed(2)}  p99 ${l.p99Ms.toFixed(2)}  p999 ${l.p999Ms.toFixed(2)}  max ${l.maxMs.toFixed(2)}  mean ${l.meanMs.toFixed(2)}`,
    `  errors: ${result.errorCount}${errors === "" ? "" : ` (${errors})`}; whole run: ${result.okTotal} ok, ${result.errorTotal} errors` +
      (result.firstError === null ? "" : `; first: ${result.firstError}`),
    `  generator CPU: ${result.cpu.percentOfOneCore.toFixed(0)}% of one core (user ${result.cpu.userMs.toFixed(0)} ms, sys ${result.cpu.systemMs.toFixed(0)} ms), event loop ${(result.cpu.eventLoopUtilization * 100).toFixed(0)}% busy`,
    ...(result.cpu.percentOfOneCore > GENERATOR_CPU_WARN_PERCENT
      ? [`  WARNING: generator above ${GENERATOR_CPU_WARN_PERCENT}% of its core: it may be the bottleneck, figures understate the server`]
      : []),
    ...(result.fatal === null ? [] : [`  FATAL: ${result.fatal}`]),
  ].join("\n");
}

/** CLI: prints a human summary on stderr (unless --quiet) and, with --json, the LoadResult as one JSON line on stdout. */
export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      target: { type: "string" },
      scenario: { type: "string", default: "hot" },
      transport: { type: "string", default: TRANSPORT_DEFAULT },
      sessions: { type: "string", default: String(SESSIONS_DEFAULT) },
      concurrency: { type: "string", default: String(CONCURRENCY_DEFAULT) },
      "warmup-ms": { type: "string", default: String(WARMUP_MS_DEFAULT) },
      "duration-ms": { type: "string", default: String(DURATION_MS_DEFAULT) },
      "requests-max": { type: "string", default: String(REQUESTS_MAX_LIMIT) },
      "hot-sku": { type: "string", default: "hot-0" },
      "sku-count": { type: "string", default: "100000" },
      "run-tag": { type: "string" },
      seed: { type: "string", default: "1" },
      "zipf-s": { type: "string", default: String(ZIPF_S_DEFAULT) },
      "batch-items": { type: "string", default: String(RESERVE_BATCH_ITEMS_MAX) },
      label: { type: "string" },
      json: { type: "boolean", default: false },
      /** With --json: no human summary (the driver prints its own). */
      quiet: { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.target === undefined) throw new Error("--target 127.0.0.1:<port> is required");
  const scenario = SCENARIOS.find((name) => name === values.scenario);
  if (scenario === undefined) throw new Error(`--scenario must be one of ${SCENARIOS.join(", ")}, got ${values.scenario}`);
  const transport = TRANSPORTS.find((name) => name === values.transport);
  if (transport === undefined) throw new Error(`--transport must be one of ${TRANSPORTS.join(", ")}`);
  const runTag = values["run-tag"] ?? `${scenario}-${Date.now().toString(36)}-${process.pid}`;
  const calls = scenarioCalls({
    scenario,
    runTag,
    hotSkuId: values["hot-sku"],
    skuCount: Number(values["sku-count"]),
    seed: Number(values.seed),
    zipfS: Number(values["zipf-s"]),
    batchItems: Number(values["batch-items"]),
  });
  const result = await runLoad({
    target: values.target,
    ...calls,
    transport,
    sessions: Number(values.sessions),
    concurrency: Number(values.concurrency),
    warmupMs: Number(values["warmup-ms"]),
    durationMs: Number(values["duration-ms"]),
    requestsMax: Number(values["requests-max"]),
  });
  if (!values.quiet) process.stderr.write(`${formatResult(values.label ?? scenario, result)}\n`);
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  return result.fatal === null ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`h2_load: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
