// `npm run bench:growth`: how start-up, memory and throughput grow with the
// data set (issue 10's growth goal). Not a timed test; it prints figures.
//
//   node dist/bench/growth.js build --dir D --skus N --events-per-sku K [--snapshot]
//       builds a data directory straight through the LmdbJournal API (growth_data.ts)
//   node dist/bench/growth.js [--skus 10000,1000000] [--events-per-sku 10] [--keep DIR] ...
//       for each catalogue size: builds a data directory (or reuses DIR/skus-N
//       with --keep), starts the node on it pinned to CPU 0, and measures the
//       time from spawn to SERVING, RSS once serving, then reserves/s of the
//       random scenario over all its SKUs from a generator on CPU 1, and RSS
//       after the run.
//
// The figures that must not grow with the catalogue are time to SERVING and
// RSS at SERVING: recovery is lazy (an actor is read from the journal on its
// first message), so start-up reads a fixed number of records.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { systemClock } from "../src/clock";
import { buildCatalogue } from "./growth_data";
import { REQUESTS_MAX_LIMIT, runLoad, scenarioCalls } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { LOOPBACK_HOST } from "./load_session";
import { type Child, choosePinning, emergencyCleanup, freeLoopbackPort, pinSelf, readMemory, spawnNode, stopChild } from "./processes";

const SERVING_DEADLINE_MS = 120_000;
/** The node's info log up to the serving line is a few lines; the rest of a run's log is not needed. */
const STDOUT_BYTES_MAX = 64 * 1024;

/** startupMs and recoveryMs from the node's "quartermaster serving" log line. */
function startupLine(stdout: string): { startupMs: number; recoveryMs: number } {
  for (const line of stdout.split("\n")) {
    if (!line.includes("quartermaster serving")) continue;
    const parsed = JSON.parse(line) as { startupMs?: unknown; recoveryMs?: unknown };
    if (typeof parsed.startupMs === "number" && typeof parsed.recoveryMs === "number") return { startupMs: parsed.startupMs, recoveryMs: parsed.recoveryMs };
  }
  throw new Error("the node logged no serving line with startupMs and recoveryMs");
}

interface SizeFigures {
  readonly skus: number;
  readonly events: number;
  readonly buildSeconds: number | null;
  readonly dataFileMiB: number;
  readonly servingMs: number;
  /** The node's own figures from its "quartermaster serving" log line: process start to serving, and journal open + first wake-up pass. */
  readonly startupMs: number;
  readonly recoveryMs: number;
  readonly rssServingMiB: number;
  readonly reservesPerSecond: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly rssAfterMiB: number;
}

function intList(text: string): number[] {
  return text.split(",").map((part) => {
    const n = Number(part.replace(/_/g, ""));
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`not a positive integer: ${part}`);
    return n;
  });
}

async function build(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { dir: { type: "string" }, skus: { type: "string" }, "events-per-sku": { type: "string", default: "10" }, snapshot: { type: "boolean", default: false } },
  });
  if (values.dir === undefined || values.skus === undefined) throw new Error("build needs --dir and --skus");
  const skus = intList(values.skus)[0]!;
  let lastReport = 0;
  const result = await buildCatalogue({
    dir: values.dir,
    skus,
    eventsPerSku: Number(values["events-per-sku"]),
    snapshot: values.snapshot === true,
    clock: systemClock,
    progress: (done) => {
      if (done - lastReport >= 100_000 || done === skus) {
        lastReport = done;
        process.stderr.write(`  ${done} SKUs\n`);
      }
    },
  });
  console.log(`built ${result.skus} SKUs, ${result.events} events in ${result.seconds.toFixed(1)} s (${Math.round(result.events / result.seconds)} events/s)`);
}

function dataFileMiB(dir: string): number {
  return fs.statSync(path.join(dir, "journal", "data.mdb")).size / 1048576;
}

interface StartedNode {
  readonly server: Child;
  readonly port: number;
  /** Spawn to the node's "quartermaster serving" log line (polled every 5 ms). */
  readonly servingMs: number;
  readonly started: { startupMs: number; recoveryMs: number };
}

/** Starts the node on dir, pinned to CPU 0, and waits for its serving line, then for SERVING over gRPC health. */
async function startNode(dir: string): Promise<StartedNode> {
  const pinning = choosePinning();
  const port = await freeLoopbackPort();
  const metricsPort = await freeLoopbackPort();
  const spawnedAt = performance.now();
  const server = spawnNode({
    name: "qm",
    script: path.join(__dirname, "..", "src", "main.js"),
    args: [],
    cpu: pinning.serverCpu,
    env: {
      ...process.env,
      QM_LISTEN: `${LOOPBACK_HOST}:${port}`,
      QM_METRICS_LISTEN: `${LOOPBACK_HOST}:${metricsPort}`,
      QM_DATA_DIR: dir,
      QM_LOG_LEVEL: "info",
    },
    keepStdout: true,
    stdoutBytesMax: STDOUT_BYTES_MAX,
  });
  try {
    // The serving line, polled every 5 ms, times start-up more finely than the health poll's 100 ms steps.
    const giveUpAt = spawnedAt + SERVING_DEADLINE_MS;
    while (!server.stdout.includes("quartermaster serving")) {
      if (!server.running) throw new Error(`node exited before serving: ${server.describeExit()}\n${server.outputTail()}`);
      if (performance.now() > giveUpAt) throw new Error(`node not serving after ${SERVING_DEADLINE_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const servingMs = performance.now() - spawnedAt;
    await waitUntilServing(`${LOOPBACK_HOST}:${port}`, SERVING_DEADLINE_MS, () => server.running);
    return { server, port, servingMs, started: startupLine(server.stdout) };
  } catch (error) {
    await stopChild(server);
    throw error;
  }
}

/** `startup --dirs A,B [--rounds 5]`: starts the node on each directory in turn, rounds times, and prints the medians. */
async function startupRounds(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { dirs: { type: "string" }, rounds: { type: "string", default: "5" } } });
  if (values.dirs === undefined) throw new Error("startup needs --dirs");
  const dirs = values.dirs.split(",");
  const figures = dirs.map(() => ({ serving: [] as number[], startup: [] as number[], recovery: [] as number[], rss: [] as number[] }));
  for (let round = 0; round < Number(values.rounds); round++) {
    for (let i = 0; i < dirs.length; i++) {
      const node = await startNode(dirs[i]!);
      const rss = readMemory(node.server.pid)?.rssBytes ?? 0;
      await stopChild(node.server);
      const f = figures[i]!;
      f.serving.push(node.servingMs);
      f.startup.push(node.started.startupMs);
      f.recovery.push(node.started.recoveryMs);
      f.rss.push(rss / 1048576);
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const range = (xs: number[]): string => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
  console.log("| data directory | spawn → serving line ms, median (range) | node start-up ms | journal + wake-ups ms | RSS at serving MiB |");
  console.log("|---|---|---|---|---|");
  dirs.forEach((dir, i) => {
    const f = figures[i]!;
    console.log(
      `| ${path.basename(dir)} | ${median(f.serving).toFixed(0)} (${range(f.serving)}) | ${median(f.startup).toFixed(0)} (${range(f.startup)}) | ` +
        `${median(f.recovery).toFixed(0)} (${range(f.recovery)}) | ${median(f.rss).toFixed(0)} |`,
    );
  });
}

async function measureSize(skus: number, eventsPerSku: number, keep: string | undefined, o: { durationMs: number; warmupMs: number }): Promise<SizeFigures> {
  const dir = keep === undefined ? fs.mkdtempSync(path.join(os.tmpdir(), "qm-growth-")) : path.join(keep, `skus-${skus}-e${eventsPerSku}`);
  let buildSeconds: number | null = null;
  let events = skus * eventsPerSku;
  try {
    if (!fs.existsSync(path.join(dir, "journal", "data.mdb"))) {
      fs.mkdirSync(dir, { recursive: true });
      process.stderr.write(`building ${skus} SKUs x ${eventsPerSku} events in ${dir}\n`);
      const built = await buildCatalogue({ dir, skus, eventsPerSku, clock: systemClock });
      buildSeconds = built.seconds;
      events = built.events;
    }
    const { server, port, servingMs, started } = await startNode(dir);
    try {
      const atServing = readMemory(server.pid);
      const calls = scenarioCalls({ scenario: "random", runTag: `g${Date.now().toString(36)}`, hotSkuId: "", skuCount: skus, seed: 11 });
      const result = await runLoad({
        target: `${LOOPBACK_HOST}:${port}`,
        path: calls.path,
        frameFactory: calls.frameFactory,
        transport: "raw",
        requestsMax: REQUESTS_MAX_LIMIT,
        sessions: 4,
        concurrency: 64,
        warmupMs: o.warmupMs,
        durationMs: o.durationMs,
      });
      const after = readMemory(server.pid);
      return {
        skus,
        events,
        buildSeconds,
        dataFileMiB: dataFileMiB(dir),
        servingMs,
        startupMs: started.startupMs,
        recoveryMs: started.recoveryMs,
        rssServingMiB: (atServing?.rssBytes ?? 0) / 1048576,
        reservesPerSecond: result.callsPerSecond,
        p99Ms: result.latency.p99Ms,
        errors: result.errorCount,
        rssAfterMiB: (after?.rssBytes ?? 0) / 1048576,
      };
    } finally {
      await stopChild(server);
    }
  } finally {
    if (keep === undefined) fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv[0] === "build") return build(argv.slice(1));
  if (argv[0] === "startup") return startupRounds(argv.slice(1));
  const { values } = parseArgs({
    args: argv,
    options: {
      skus: { type: "string", default: "10000,1000000" },
      "events-per-sku": { type: "string", default: "10" },
      keep: { type: "string" },
      "duration-ms": { type: "string", default: "8000" },
      "warmup-ms": { type: "string", default: "2000" },
    },
  });
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  const rows: SizeFigures[] = [];
  for (const skus of intList(values.skus)) {
    rows.push(
      await measureSize(skus, Number(values["events-per-sku"]), values.keep, {
        durationMs: Number(values["duration-ms"]),
        warmupMs: Number(values["warmup-ms"]),
      }),
    );
  }
  const first = rows[0]!;
  console.log("| SKUs | events | build s | data.mdb MiB | spawn → SERVING ms | node start-up ms (of it journal + wake-ups) | RSS at SERVING MiB | reserves/s (ratio to first) | p99 ms | errors | RSS after run MiB |");
  console.log("|---|---|---|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.skus.toLocaleString("en")} | ${r.events.toLocaleString("en")} | ${r.buildSeconds === null ? "reused" : r.buildSeconds.toFixed(0)} | ${r.dataFileMiB.toFixed(0)} | ` +
        `${r.servingMs.toFixed(0)} | ${r.startupMs} (${r.recoveryMs}) | ${r.rssServingMiB.toFixed(0)} | ${Math.round(r.reservesPerSecond).toLocaleString("en")} (${(r.reservesPerSecond / first.reservesPerSecond).toFixed(2)}) | ` +
        `${r.p99Ms.toFixed(1)} | ${r.errors} | ${r.rssAfterMiB.toFixed(0)} |`,
    );
  }
}

process.on("exit", emergencyCleanup);
main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
