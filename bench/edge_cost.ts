// What the gRPC edge (src/grpc/edge.ts) costs per call: the echo server with
// and without it, in alternating rounds, each answering the same fixed number
// of Reserve calls from the raw generator. The figure is the server's CPU time
// per call (from /proc/<pid>/stat), which moves far less than calls/s when the
// machine is shared, plus calls/s for reference.
//
//   node dist/bench/edge_cost.js [--rounds 3] [--requests 40000]

import { parseArgs } from "node:util";
import { waitUntilServing } from "./health_client";
import { runLoad, scenarioFrameFactory } from "./h2_load";
import { LOOPBACK_HOST } from "./load_session";
import { choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, runBenchMain, spawnNode, stopChild } from "./processes";

const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
const HEALTH_DEADLINE_MS = 30_000;
const WARMUP_MS = 1_000;
/** Long enough that the request count, not the clock, ends every run. */
const DURATION_MS_MAX = 600_000;

interface Round {
  readonly mode: "bind" | "edge";
  readonly cpuMicrosPerCall: number;
  readonly callsPerSecond: number;
}

async function measure(mode: "bind" | "edge", requests: number, serverCpu: number | null): Promise<Round> {
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const args = ["--port", String(port), ...(mode === "edge" ? ["--edge"] : [])];
  const server = spawnNode({ name: `echo (${mode})`, script: `${__dirname}/echo_server.js`, args, cpu: serverCpu });
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
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
      frameFactory: scenarioFrameFactory({ scenario: "hot", runTag: `edge-cost-${mode}-${Date.now()}`, hotSkuId: "hot-0", skuCount: 1, seed: 1 }),
    });
    const after = readCpuTimeMs(server.pid);
    if (before === null || after === null) throw new Error("server CPU time unreadable");
    if (result.errorTotal > 0) throw new Error(`${mode}: ${result.errorTotal} calls failed`);
    return { mode, cpuMicrosPerCall: ((after - before) * 1000) / result.okTotal, callsPerSecond: result.callsPerSecond };
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
    options: { rounds: { type: "string", default: "3" }, requests: { type: "string", default: "40000" } },
    strict: true,
  });
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  process.stdout.write(`pinning: ${pinning.description}\n`);
  const rounds: Round[] = [];
  for (let i = 0; i < Number(values.rounds); i++) {
    for (const mode of i % 2 === 0 ? (["bind", "edge"] as const) : (["edge", "bind"] as const)) {
      const round = await measure(mode, Number(values.requests), pinning.serverCpu);
      rounds.push(round);
      process.stdout.write(`round ${i + 1} ${mode}: ${round.cpuMicrosPerCall.toFixed(1)} µs server CPU per call, ${round.callsPerSecond.toFixed(0)} calls/s\n`);
    }
  }
  for (const mode of ["bind", "edge"] as const) {
    const mine = rounds.filter((r) => r.mode === mode);
    process.stdout.write(
      `median ${mode}: ${median(mine.map((r) => r.cpuMicrosPerCall)).toFixed(1)} µs/call, ${median(mine.map((r) => r.callsPerSecond)).toFixed(0)} calls/s\n`,
    );
  }
}

if (require.main === module) runBenchMain("edge_cost", (argv) => main(argv).then(() => 0));
