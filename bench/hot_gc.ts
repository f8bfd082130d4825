// Where a hot reservation's garbage goes: one server under the hot load, in
// measured windows at growing numbers of live holds, with V8's own account of
// every collection (--trace-gc-nvp) beside the CPU of the main thread and of
// the other threads (V8's GC workers, the LMDB write thread).
//
//   node dist/bench/hot_gc.js --windows 5000:30000,30000:30000,60000:30000
//
// Each window first reserves FILL units unmeasured (more live holds), then
// measures COUNT reservations. Per window it prints: server CPU µs per
// reservation (main thread, other threads), scavenges and mark-compacts, their
// pause per reservation, and bytes allocated and promoted (survivors of a
// scavenge moved to the old generation) per reservation. Promotion is what a
// mark-compact later has to mark and sweep, on V8's workers.
//
// Flags: --main PATH (another build's dist/src/main.js), --node FLAG
// (repeatable, e.g. --node=--no-parallel-scavenge), --windows, --sessions N
// (4), --concurrency N (64).

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { LIVE_RESERVATIONS_PER_SKU_MAX } from "../src/limits";
import { runLoad, scenarioFrameFactory } from "./h2_load";
import { waitUntilServing } from "./health_client";
import { mainThreadCpuMs } from "./hot_cpu";
import { LOOPBACK_HOST } from "./load_session";
import { choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, runBenchMain, spawnNode, stopChild, temporaryDirs } from "./processes";
import { HOT_SKU_ID, HOT_SKU_UNITS, seedHotSku } from "./seed";

const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
const HEALTH_DEADLINE_MS = 60_000;
const WINDOW_DEADLINE_MS = 600_000;
/** --trace-gc-nvp writes about 1.5 KB per collection; a 180,000-reservation run makes well under 1,000. */
const GC_TRACE_BYTES_MAX = 64 * 1024 * 1024;
/** The trace reaches us through a pipe: a collection at the window's end is read after this. */
const TRACE_SETTLE_MS = 300;

export interface GcTotals {
  scavenges: number;
  scavengePauseMs: number;
  markCompacts: number;
  markCompactPauseMs: number;
  allocatedBytes: number;
  promotedBytes: number;
}

/** Sums the collections of --trace-gc-nvp lines: `gc=s` is a scavenge, `gc=mc` (and `gc=mmc`) a mark-compact. */
export function sumGcTrace(text: string): GcTotals {
  const totals: GcTotals = { scavenges: 0, scavengePauseMs: 0, markCompacts: 0, markCompactPauseMs: 0, allocatedBytes: 0, promotedBytes: 0 };
  for (const line of text.split("\n")) {
    const kind = / gc=(\w+) /.exec(line)?.[1];
    if (kind === undefined) continue;
    const field = (name: string): number => Number(new RegExp(` ${name}=([\\d.]+)`).exec(line)?.[1] ?? 0);
    if (kind === "s") {
      totals.scavenges++;
      totals.scavengePauseMs += field("pause");
    } else {
      totals.markCompacts++;
      totals.markCompactPauseMs += field("pause");
    }
    totals.allocatedBytes += field("allocated");
    totals.promotedBytes += field("promoted");
  }
  return totals;
}

function parseWindows(spec: string): Array<readonly [fill: number, count: number]> {
  const windows = spec.split(",").map((w) => {
    const [fill, count] = w.split(":").map(Number);
    if (fill === undefined || count === undefined || !Number.isInteger(fill) || !Number.isInteger(count) || fill < 0 || count <= 0) {
      throw new Error(`--windows: ${JSON.stringify(w)} is not FILL:COUNT`);
    }
    return [fill, count] as const;
  });
  const total = windows.reduce((n, [fill, count]) => n + fill + count, 0);
  if (total > LIVE_RESERVATIONS_PER_SKU_MAX * 0.9) throw new Error(`--windows: ${total} reservations; one SKU holds at most ${LIVE_RESERVATIONS_PER_SKU_MAX}`);
  return windows;
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      main: { type: "string", default: path.resolve(__dirname, "..", "src", "main.js") },
      node: { type: "string", multiple: true },
      windows: { type: "string", default: "5000:30000,30000:30000,60000:30000" },
      sessions: { type: "string", default: "4" },
      concurrency: { type: "string", default: "64" },
    },
    strict: true,
  });
  const windows = parseWindows(values.windows);
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  const port = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-hot-gc-"));
  temporaryDirs.add(dataDir);
  const server = spawnNode({
    name: "server",
    script: path.resolve(values.main),
    args: [],
    nodeArgs: ["--trace-gc-nvp", ...(values.node ?? [])],
    cpu: pinning.serverCpu,
    keepStdout: true,
    stdoutBytesMax: GC_TRACE_BYTES_MAX,
    env: { ...process.env, QM_LISTEN: address, QM_METRICS_LISTEN: `${LOOPBACK_HOST}:${await freeLoopbackPort()}`, QM_DATA_DIR: dataDir, QM_LOG_LEVEL: "warn" },
  });
  process.stderr.write(`pinning: ${pinning.description}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}\n`);
  const load = (count: number, tag: string): ReturnType<typeof runLoad> =>
    runLoad({
      target: address,
      path: RESERVE_PATH,
      transport: "raw",
      sessions: Number(values.sessions),
      concurrency: Number(values.concurrency),
      warmupMs: 0,
      durationMs: WINDOW_DEADLINE_MS,
      requestsMax: count,
      frameFactory: scenarioFrameFactory({ scenario: "hot", runTag: `${tag}-${process.pid}`, hotSkuId: HOT_SKU_ID, skuCount: 1, seed: 1 }),
    });
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    await seedHotSku(address, HOT_SKU_UNITS);
    let holds = 0;
    process.stdout.write("holds           µs CPU/op (main + other)   scav  µs/op  mc  µs/op  alloc B/op  promoted B/op\n");
    for (const [index, [fill, count]] of windows.entries()) {
      if (fill > 0) holds += (await load(fill, `f${index}`)).okTotal;
      await new Promise((resolve) => setTimeout(resolve, TRACE_SETTLE_MS));
      const traceFrom = server.stdout.length;
      const cpuBefore = readCpuTimeMs(server.pid);
      const mainBefore = mainThreadCpuMs(server.pid);
      const result = await load(count, `w${index}`);
      const cpuAfter = readCpuTimeMs(server.pid);
      const mainAfter = mainThreadCpuMs(server.pid);
      await new Promise((resolve) => setTimeout(resolve, TRACE_SETTLE_MS));
      if (result.fatal !== null || result.errorTotal > 0) throw new Error(`window ${index}: ${result.fatal ?? `${result.errorTotal} errors; first: ${result.firstError ?? "?"}`}`);
      if (cpuBefore === null || cpuAfter === null || mainBefore === null || mainAfter === null) throw new Error("server CPU unreadable");
      const ok = result.okTotal;
      const gc = sumGcTrace(server.stdout.slice(traceFrom));
      const perOp = (ms: number): string => ((ms * 1000) / ok).toFixed(1);
      const main = mainAfter - mainBefore;
      process.stdout.write(
        `${`${holds}-${holds + ok}`.padEnd(16)}${perOp(cpuAfter - cpuBefore).padStart(7)} (${perOp(main)} + ${perOp(cpuAfter - cpuBefore - main)})`.padEnd(43) +
          `${String(gc.scavenges).padStart(4)} ${perOp(gc.scavengePauseMs).padStart(6)} ${String(gc.markCompacts).padStart(3)} ${perOp(gc.markCompactPauseMs).padStart(6)}` +
          `${(gc.allocatedBytes / ok).toFixed(0).padStart(12)} ${(gc.promotedBytes / ok).toFixed(0).padStart(14)}\n`,
      );
      holds += ok;
    }
    return 0;
  } finally {
    await stopChild(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
    temporaryDirs.delete(dataDir);
  }
}

if (require.main === module) runBenchMain("hot_gc", main);
