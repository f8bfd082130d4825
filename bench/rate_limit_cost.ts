// What the rate limiter costs per call: the echo Reserve behind the call gate
// (rate_limit_server.ts) without a limiter, with the in-memory buckets and with
// the Redis buckets, in alternating rounds, each answering the same number of
// calls from the raw generator. The figures are the server's CPU time per call
// (and Redis's, for the Redis store) from /proc/<pid>/stat, which move far less
// than calls/s on a shared machine, plus calls/s; ratios are to "none" of the
// same run.
//
// --flood instead measures what a flood of refused calls costs another caller:
// one server with the in-memory buckets, a quiet caller (closed loop, far below
// its limit) alone and then beside a flooder whose limit (5/s, burst 5) refuses
// nearly all it sends, in alternating phases; prints the quiet caller's
// p50/p90/p99 both ways and the flood's rate. A figure, not a verdict: the
// integration test (test/integration/rate_limit_flood.test.ts) asserts the
// outcomes, and this machine's load moves latency far more than a flood does.
//
//   node dist/bench/rate_limit_cost.js [--rounds 3] [--requests 40000]
//   node dist/bench/rate_limit_cost.js --flood [--rounds 5] [--phase-ms 3000] [--flood-concurrency 8]

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { startRedis } from "./contenders/engines";
import { runLoad, scenarioFrameFactory } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { LOOPBACK_HOST } from "./load_session";
import { choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, runBenchMain, spawnNode, stopChild, temporaryDirs } from "./processes";
import { BENCH_SUBJECT_HEADER, FLOOD_SUBJECT, FLOODER_LIMIT, type LimiterMode, namingGate } from "./rate_limit_server";
import type { LatencySummary } from "./histogram";
import { systemClock } from "../src/clock";
import { rateLimitedGate } from "../src/security/rate_limit/gate";
import { MemoryBucketStore } from "../src/security/rate_limit/memory_store";
import type { GateCall } from "../src/security/call_gate";
import { Metadata } from "@grpc/grpc-js";

const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
const HEALTH_DEADLINE_MS = 30_000;
const WARMUP_MS = 1_000;
/** Long enough that the request count, not the clock, ends every run. */
const DURATION_MS_MAX = 600_000;
const MODES: readonly LimiterMode[] = ["none", "memory", "redis"];

interface Round {
  readonly mode: LimiterMode;
  readonly cpuMicrosPerCall: number;
  readonly redisCpuMicrosPerCall: number;
  readonly callsPerSecond: number;
  /** Calls the Redis store answered from the local bucket because Redis took longer than its timeout. */
  readonly fallbacks: number;
}

async function measure(mode: LimiterMode, requests: number, serverCpu: number | null, redis: { url: string; pid: number }): Promise<Round> {
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const args = ["--port", String(port), "--limiter", mode, "--redis-url", redis.url];
  const server = spawnNode({ name: `rate-limit server (${mode})`, script: `${__dirname}/rate_limit_server.js`, args, cpu: serverCpu, keepStdout: true, stdoutBytesMax: 4096 });
  let measured: Omit<Round, "fallbacks">;
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    const before = readCpuTimeMs(server.pid);
    const redisBefore = readCpuTimeMs(redis.pid);
    const result = await runLoad({
      target: address,
      path: RESERVE_PATH,
      transport: "raw",
      sessions: 4,
      concurrency: 64,
      warmupMs: WARMUP_MS,
      durationMs: DURATION_MS_MAX,
      requestsMax: requests,
      frameFactory: scenarioFrameFactory({ scenario: "hot", runTag: `rate-limit-${mode}-${Date.now()}`, hotSkuId: "hot-0", skuCount: 1, seed: 1 }),
    });
    const after = readCpuTimeMs(server.pid);
    const redisAfter = readCpuTimeMs(redis.pid);
    if (before === null || after === null || redisBefore === null || redisAfter === null) throw new Error("CPU time unreadable");
    if (result.errorTotal > 0) throw new Error(`${mode}: ${result.errorTotal} calls failed`);
    measured = {
      mode,
      cpuMicrosPerCall: ((after - before) * 1000) / result.okTotal,
      redisCpuMicrosPerCall: ((redisAfter - redisBefore) * 1000) / result.okTotal,
      callsPerSecond: result.callsPerSecond,
    };
  } finally {
    await stopChild(server);
  }
  return { ...measured, fallbacks: Number(/fallbacks (\d+)/.exec(server.stdout)?.[1] ?? Number.NaN) };
}

/** Admissions through the gate in this process, without gRPC: the limiter's own cost, in ns of CPU time per call. */
function admitNanos(mode: "none" | "memory", calls: number): number {
  const inner = namingGate();
  const gate = mode === "none" ? inner : rateLimitedGate(inner, () => ({ perSecond: 1e9, burst: 1e9 }), new MemoryBucketStore(systemClock));
  const call: GateCall = { path: RESERVE_PATH, metadata: new Metadata(), authContext: () => ({}) };
  let admitted = 0;
  const started = process.cpuUsage();
  for (let i = 0; i < calls; i++) if (gate.admit(call) !== undefined) admitted += 1;
  const used = process.cpuUsage(started);
  const ns = ((used.user + used.system) * 1000) / calls;
  if (admitted !== calls) throw new Error(`${mode}: ${calls - admitted} not admitted`);
  return ns;
}

interface FloodPhase {
  readonly quiet: LatencySummary;
  readonly quietCallsPerSecond: number;
  /** Flood calls answered per second over the flood's window, and how many of them were admitted / refused. */
  readonly floodCallsPerSecond: number;
  readonly floodAdmitted: number;
  readonly floodRefused: number;
}

const QUIET_SUBJECT = "quiet";
/** The quiet caller's calls in flight: a well-behaved client, far below any limit. */
const QUIET_CONCURRENCY = 4;
/** Long enough for the flooder to spend its burst before the quiet caller's window opens. */
const FLOOD_LEAD_MS = 500;

function callerLoad(address: string, subject: string, concurrency: number, warmupMs: number, durationMs: number): ReturnType<typeof runLoad> {
  return runLoad({
    target: address,
    path: RESERVE_PATH,
    transport: "raw",
    sessions: 1,
    concurrency,
    warmupMs,
    durationMs,
    // The clock, not a count, ends a phase.
    requestsMax: 2 ** 48,
    frameFactory: scenarioFrameFactory({ scenario: "hot", runTag: `${subject}-${Date.now()}`, hotSkuId: "hot-0", skuCount: 1, seed: 1 }),
    headers: [[BENCH_SUBJECT_HEADER, subject]],
  });
}

/** One phase: the quiet caller alone, or beside the flood (which starts FLOOD_LEAD_MS before it and ends after it). */
async function floodPhase(address: string, flooded: boolean, phaseMs: number, floodConcurrency: number): Promise<FloodPhase> {
  const flood = flooded ? callerLoad(address, FLOOD_SUBJECT, floodConcurrency, 0, FLOOD_LEAD_MS + phaseMs + FLOOD_LEAD_MS) : undefined;
  const quietStart = flooded ? new Promise((resolve) => setTimeout(resolve, FLOOD_LEAD_MS)) : Promise.resolve();
  const quiet = await quietStart.then(() => callerLoad(address, QUIET_SUBJECT, QUIET_CONCURRENCY, WARMUP_MS, phaseMs));
  const floodResult = flood === undefined ? undefined : await flood;
  if (quiet.errorTotal > 0) throw new Error(`the quiet caller had ${quiet.errorTotal} failed calls (first: ${quiet.firstError ?? "?"}): it must never be refused`);
  const floodOther = floodResult === undefined ? 0 : floodResult.errorCount - (floodResult.errors["grpc 8 RESOURCE_EXHAUSTED"] ?? 0);
  if (floodResult !== undefined && floodOther > 0) throw new Error(`${floodOther} flood calls failed otherwise than RESOURCE_EXHAUSTED: ${JSON.stringify(floodResult.errors)}`);
  return {
    quiet: quiet.latency,
    quietCallsPerSecond: quiet.callsPerSecond,
    floodCallsPerSecond: floodResult === undefined ? 0 : (floodResult.ok + floodResult.errorCount) / (floodResult.measuredMs / 1000),
    floodAdmitted: floodResult?.ok ?? 0,
    floodRefused: floodResult?.errorCount ?? 0,
  };
}

async function floodMain(rounds: number, phaseMs: number, floodConcurrency: number, serverCpu: number | null): Promise<void> {
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const server = spawnNode({
    name: "rate-limit server (flood)",
    script: `${__dirname}/rate_limit_server.js`,
    args: ["--port", String(port), "--limiter", "memory", "--callers", "header"],
    cpu: serverCpu,
    keepStdout: true,
    stdoutBytesMax: 4096,
  });
  const shape = (l: LatencySummary): string => `${l.p50Ms.toFixed(2)}/${l.p90Ms.toFixed(2)}/${l.p99Ms.toFixed(2)}`;
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    process.stdout.write(`flooder limit ${FLOODER_LIMIT.perSecond}/s burst ${FLOODER_LIMIT.burst}, ${floodConcurrency} flood calls in flight; quiet caller ${QUIET_CONCURRENCY} in flight, ${phaseMs} ms phases\n`);
    const unloaded: FloodPhase[] = [];
    const flooded: FloodPhase[] = [];
    for (let i = 0; i < rounds; i++) {
      // Reversed every other round, so that neither phase always runs first.
      for (const withFlood of i % 2 === 0 ? [false, true] : [true, false]) {
        const phase = await floodPhase(address, withFlood, phaseMs, floodConcurrency);
        (withFlood ? flooded : unloaded).push(phase);
        process.stdout.write(
          `round ${i + 1} ${withFlood ? "flooded " : "unloaded"}: quiet p50/p90/p99 ${shape(phase.quiet)} ms, ${phase.quietCallsPerSecond.toFixed(0)} calls/s` +
            (withFlood ? `; flood ${phase.floodCallsPerSecond.toFixed(0)} calls/s, ${phase.floodAdmitted} admitted, ${phase.floodRefused} refused` : "") +
            "\n",
        );
      }
    }
    const p99 = (phases: FloodPhase[]): number => median(phases.map((p) => p.quiet.p99Ms));
    const p50 = (phases: FloodPhase[]): number => median(phases.map((p) => p.quiet.p50Ms));
    process.stdout.write(
      `median quiet p50 ${p50(unloaded).toFixed(2)} ms unloaded, ${p50(flooded).toFixed(2)} ms flooded (x${(p50(flooded) / p50(unloaded)).toFixed(2)}); ` +
        `p99 ${p99(unloaded).toFixed(2)} ms unloaded, ${p99(flooded).toFixed(2)} ms flooded (x${(p99(flooded) / p99(unloaded)).toFixed(2)})\n`,
    );
  } finally {
    await stopChild(server);
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

export async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      rounds: { type: "string" },
      requests: { type: "string", default: "40000" },
      flood: { type: "boolean", default: false },
      "phase-ms": { type: "string", default: "3000" },
      "flood-concurrency": { type: "string", default: "8" },
    },
    strict: true,
  });
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  process.stdout.write(`pinning: ${pinning.description}\n`);
  if (values.flood) {
    await floodMain(Number(values.rounds ?? "5"), Number(values["phase-ms"]), Number(values["flood-concurrency"]), pinning.serverCpu);
    return;
  }
  values.rounds ??= "3";
  for (let i = 0; i < Number(values.rounds); i++) {
    const none = admitNanos("none", 1_000_000);
    const memory = admitNanos("memory", 1_000_000);
    process.stdout.write(`in process, round ${i + 1}: gate.admit ${none.toFixed(0)} ns CPU without a limiter, ${memory.toFixed(0)} ns with the in-memory one (1000 callers)\n`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-rl-bench-"));
  temporaryDirs.add(dir);
  // Redis shares the generator's core: the server's core stays the server's.
  const redis = await startRedis(dir, await freeLoopbackPort(), pinning.generatorCpu, false);
  try {
    const target = { url: `redis://${LOOPBACK_HOST}:${redis.port}`, pid: redis.child.pid };
    const rounds: Round[] = [];
    for (let i = 0; i < Number(values.rounds); i++) {
      // Rotated, so that no mode always runs first (or last) in a round.
      const order = MODES.map((_, k) => MODES[(k + i) % MODES.length] as LimiterMode);
      for (const mode of order) {
        const round = await measure(mode, Number(values.requests), pinning.serverCpu, target);
        rounds.push(round);
        process.stdout.write(
          `round ${i + 1} ${mode}: ${round.cpuMicrosPerCall.toFixed(1)} µs server CPU per call, ${round.redisCpuMicrosPerCall.toFixed(1)} µs Redis CPU per call, ${round.callsPerSecond.toFixed(0)} calls/s, ${round.fallbacks} fallbacks\n`,
        );
      }
    }
    const medians = new Map(
      MODES.map((mode) => {
        const mine = rounds.filter((r) => r.mode === mode);
        return [mode, { cpu: median(mine.map((r) => r.cpuMicrosPerCall)), redisCpu: median(mine.map((r) => r.redisCpuMicrosPerCall)), rate: median(mine.map((r) => r.callsPerSecond)) }];
      }),
    );
    const none = medians.get("none");
    for (const [mode, m] of medians) {
      const ratio = none === undefined ? Number.NaN : m.cpu / none.cpu;
      process.stdout.write(
        `median ${mode}: ${m.cpu.toFixed(1)} µs/call server CPU (x${ratio.toFixed(3)} of none), ${m.redisCpu.toFixed(1)} µs/call Redis CPU, ${m.rate.toFixed(0)} calls/s\n`,
      );
    }
  } finally {
    await stopChild(redis.child);
    fs.rmSync(dir, { recursive: true, force: true });
    temporaryDirs.delete(dir);
  }
}

if (require.main === module) runBenchMain("rate_limit_cost", (argv) => main(argv).then(() => 0));
