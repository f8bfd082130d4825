// What the real server spends per hot-SKU reservation, as server CPU time per
// call (from /proc/<pid>/stat), which moves far less than calls/s on a shared
// machine. With --vs it alternates rounds of this build's server and another
// build's (its dist/src/main.js), each answering the same fixed number of
// Reserve calls on hot-0 from the raw generator: a before/after comparison of
// a change on the hot path, taken in one run.
//
//   node dist/bench/hot_cost.js [--rounds 3] [--requests 40000] [--vs /other/checkout/dist/src/main.js]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { waitUntilServing } from "./health_client";
import { runLoad, scenarioFrameFactory } from "./h2_load";
import { LOOPBACK_HOST } from "./load_session";
import { choosePinning, emergencyCleanup, freeLoopbackPort, pinSelf, readCpuTimeMs, spawnNode, stopChild, temporaryDirs } from "./processes";
import { HOT_SKU_ID, HOT_SKU_UNITS, seedHotSku } from "./seed";

const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
const HEALTH_DEADLINE_MS = 30_000;
const WARMUP_MS = 1_000;
/** Long enough that the request count, not the clock, ends every run. */
const DURATION_MS_MAX = 600_000;
const THIS_MAIN = path.resolve(__dirname, "../src/main.js");

interface Round {
  readonly build: "this" | "vs";
  readonly cpuMicrosPerCall: number;
  readonly callsPerSecond: number;
}

async function measure(build: Round["build"], main: string, requests: number, serverCpu: number | null): Promise<Round> {
  const port = await freeLoopbackPort();
  const metricsPort = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const dataDir = mkdtempSync(path.join(tmpdir(), "qm-hot-cost-"));
  temporaryDirs.add(dataDir);
  const env = { ...process.env, QM_LISTEN: address, QM_METRICS_LISTEN: `${LOOPBACK_HOST}:${metricsPort}`, QM_DATA_DIR: dataDir, QM_LOG_LEVEL: "warn" };
  const server = spawnNode({ name: `server (${build})`, script: main, args: [], cpu: serverCpu, env });
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    await seedHotSku(address, HOT_SKU_UNITS);
    const before = readCpuTimeMs(server.pid);
    const result = await runLoad({
      target: address,
      path: RESERVE_PATH,
      transport: "raw",
      sessions: 4,
      concurrency: 64,
      warmupMs: WARMUP_MS,
      durationMs: DURATION_MS_MAX,
      requestsMax: requests,
      frameFactory: scenarioFrameFactory({ scenario: "hot", runTag: `hot-cost-${build}-${Date.now()}`, hotSkuId: HOT_SKU_ID, skuCount: 1, seed: 1 }),
    });
    const after = readCpuTimeMs(server.pid);
    if (before === null || after === null) throw new Error("server CPU time unreadable");
    if (result.errorTotal > 0) throw new Error(`${build}: ${result.errorTotal} calls failed; first: ${result.firstError ?? "?"}`);
    return { build, cpuMicrosPerCall: ((after - before) * 1000) / result.okTotal, callsPerSecond: result.callsPerSecond };
  } finally {
    await stopChild(server);
    rmSync(dataDir, { recursive: true, force: true });
    temporaryDirs.delete(dataDir);
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
    options: { rounds: { type: "string", default: "3" }, requests: { type: "string", default: "40000" }, vs: { type: "string" } },
    strict: true,
  });
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  process.stdout.write(`pinning: ${pinning.description}\n`);
  const builds: { build: Round["build"]; main: string }[] = [{ build: "this", main: THIS_MAIN }];
  if (values.vs !== undefined) builds.push({ build: "vs", main: path.resolve(values.vs) });
  const rounds: Round[] = [];
  for (let i = 0; i < Number(values.rounds); i++) {
    // Alternate which build goes first, so a drift of the machine within a round does not favour one.
    for (const { build, main: script } of i % 2 === 0 ? builds : [...builds].reverse()) {
      const round = await measure(build, script, Number(values.requests), pinning.serverCpu);
      rounds.push(round);
      process.stdout.write(`round ${i + 1} ${build}: ${round.cpuMicrosPerCall.toFixed(1)} µs server CPU per call, ${round.callsPerSecond.toFixed(0)} calls/s\n`);
    }
  }
  for (const { build } of builds) {
    const mine = rounds.filter((r) => r.build === build);
    process.stdout.write(`median ${build}: ${median(mine.map((r) => r.cpuMicrosPerCall)).toFixed(1)} µs/call, ${median(mine.map((r) => r.callsPerSecond)).toFixed(0)} calls/s\n`);
  }
  if (values.vs !== undefined) {
    // Pair round i of this build with round i of the other: the ratio of each pair, then their median.
    const ratios: number[] = [];
    const ours = rounds.filter((r) => r.build === "this");
    const theirs = rounds.filter((r) => r.build === "vs");
    for (let i = 0; i < Math.min(ours.length, theirs.length); i++) ratios.push((ours[i]?.cpuMicrosPerCall ?? Number.NaN) / (theirs[i]?.cpuMicrosPerCall ?? Number.NaN));
    process.stdout.write(`this/vs CPU per call, paired by round: ${ratios.map((r) => r.toFixed(3)).join(" ")}; median ${median(ratios).toFixed(3)}\n`);
  }
}

if (require.main === module) {
  process.once("SIGINT", () => {
    emergencyCleanup();
    process.exit(130);
  });
  main(process.argv.slice(2)).catch((error: unknown) => {
    emergencyCleanup();
    process.stderr.write(`hot_cost: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
