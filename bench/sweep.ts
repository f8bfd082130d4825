// Generator calibration: runs the load generator against the echo server over
// a grid of transports, session counts and concurrencies, and prints, for
// each, calls/s, the generator's CPU and the server's CPU. The defaults of
// h2_load.ts were chosen from this table: the generator must stay well below
// its core (so the server, not the generator, limits throughput) and the
// server should be near 100% of its core.
//
// `node dist/bench/sweep.js [--rounds N] [--duration-ms N]`. Configurations
// are interleaved round-robin, so the machine's drift spreads over all of
// them instead of favouring whichever ran during a quiet minute; the median
// of the rounds is printed.

import { parseArgs } from "node:util";
import { type LoadResult } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { LOOPBACK_HOST, type TransportName } from "./load_session";
import {
  type Child,
  children,
  choosePinning,
  freeLoopbackPort,
  pinSelf,
  readCpuTimeMs,
  runBenchMain,
  spawnNode,
  stopChild,
} from "./processes";

interface Config {
  readonly transport: TransportName;
  readonly sessions: number;
  readonly concurrency: number;
}

const GRID: readonly Config[] = [
  { transport: "raw", sessions: 1, concurrency: 64 },
  { transport: "raw", sessions: 2, concurrency: 64 },
  { transport: "raw", sessions: 4, concurrency: 64 },
  { transport: "raw", sessions: 8, concurrency: 64 },
  { transport: "raw", sessions: 4, concurrency: 32 },
  { transport: "raw", sessions: 4, concurrency: 128 },
  { transport: "raw", sessions: 8, concurrency: 256 },
  { transport: "node-http2", sessions: 4, concurrency: 64 },
  { transport: "node-http2", sessions: 8, concurrency: 64 },
];
const ROUNDS_DEFAULT = 3;
const ROUNDS_MAX = 20;
const WARMUP_MS = 1_000;
const DURATION_MS_DEFAULT = 4_000;
const HEALTH_DEADLINE_MS = 30_000;
const GENERATOR_SLACK_MS = 30_000;

interface Sample {
  readonly callsPerSecond: number;
  readonly generatorCpuPercent: number;
  readonly serverCpuPercent: number;
  readonly p99Ms: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? 0) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

async function measure(config: Config, address: string, server: Child, generatorCpu: number | null, durationMs: number): Promise<Sample> {
  const serverBefore = readCpuTimeMs(server.pid) ?? 0;
  const startedAt = Date.now();
  const child = spawnNode({
    name: "generator",
    script: `${__dirname}/h2_load.js`,
    args: [
      "--target", address,
      "--scenario", "random",
      "--transport", config.transport,
      "--sessions", String(config.sessions),
      "--concurrency", String(config.concurrency),
      "--warmup-ms", String(WARMUP_MS),
      "--duration-ms", String(durationMs),
      "--json", "--quiet",
    ],
    cpu: generatorCpu,
    keepStdout: true,
    stdoutBytesMax: 1024 * 1024,
  });
  try {
    if (!(await child.waitForExit(WARMUP_MS + durationMs + GENERATOR_SLACK_MS))) throw new Error("generator did not finish");
    const result = JSON.parse(child.stdout.trim().split("\n").pop() ?? "") as LoadResult;
    const serverMs = (readCpuTimeMs(server.pid) ?? serverBefore) - serverBefore;
    return {
      callsPerSecond: result.callsPerSecond,
      generatorCpuPercent: result.cpu.percentOfOneCore,
      serverCpuPercent: (serverMs / (Date.now() - startedAt)) * 100,
      p99Ms: result.latency.p99Ms,
    };
  } finally {
    await stopChild(child);
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      rounds: { type: "string", default: String(ROUNDS_DEFAULT) },
      "duration-ms": { type: "string", default: String(DURATION_MS_DEFAULT) },
    },
    strict: true,
  });
  const rounds = Math.min(ROUNDS_MAX, Math.max(1, Number(values.rounds) || ROUNDS_DEFAULT));
  const durationMs = Number(values["duration-ms"]) || DURATION_MS_DEFAULT;
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  process.stdout.write(`pinning: ${pinning.description}; ${rounds} rounds of ${durationMs} ms (+${WARMUP_MS} ms warmup)\n`);
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  let server: Child | null = null;
  const samples = GRID.map((): Sample[] => []);
  try {
    server = spawnNode({ name: "echo", script: `${__dirname}/echo_server.js`, args: ["--port", String(port)], cpu: pinning.serverCpu });
    const running = server;
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => running.running);
    for (let round = 0; round < rounds; round++) {
      for (const [index, config] of GRID.entries()) {
        const sample = await measure(config, address, running, pinning.generatorCpu, durationMs);
        samples[index]?.push(sample);
        process.stdout.write(
          `round ${round + 1} ${config.transport} ${config.sessions}x${config.concurrency / config.sessions}: ` +
            `${sample.callsPerSecond.toFixed(0)} calls/s, generator ${sample.generatorCpuPercent.toFixed(0)}%, server ${sample.serverCpuPercent.toFixed(0)}%\n`,
        );
      }
    }
  } finally {
    await stopChild(server);
    await Promise.all([...children].map((child) => stopChild(child)));
  }
  process.stdout.write("\ntransport   sessions  streams/session  calls/s  gen CPU  srv CPU  p99 ms   (medians)\n");
  for (const [index, config] of GRID.entries()) {
    const runs = samples[index] ?? [];
    process.stdout.write(
      `${config.transport.padEnd(11)} ${String(config.sessions).padStart(8)} ${String(config.concurrency / config.sessions).padStart(16)}` +
        ` ${median(runs.map((s) => s.callsPerSecond)).toFixed(0).padStart(8)}` +
        ` ${`${median(runs.map((s) => s.generatorCpuPercent)).toFixed(0)}%`.padStart(8)}` +
        ` ${`${median(runs.map((s) => s.serverCpuPercent)).toFixed(0)}%`.padStart(8)}` +
        ` ${median(runs.map((s) => s.p99Ms)).toFixed(2).padStart(7)}\n`,
    );
  }
  return 0;
}

if (require.main === module) runBenchMain("sweep", main);
