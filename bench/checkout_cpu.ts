// Server CPU per checkout (CreateOrder of 3 lines, then ConfirmPayment of the
// same order), variant against variant, in alternating rounds:
//   node dist/bench/checkout_cpu.js --variant 'base main=/other/dist/src/main.js' --variant new
//
// The checkout twin of hot_cpu.ts, and measured the same way for the same
// reason: on a shared machine CPU per operation (the server's user + system
// time over a fixed number of checkouts, all its threads) moves far less than
// checkouts/s. Each pass starts a fresh server per variant on a fresh data
// directory, seeds --skus SKUs (bench:compare's checkout workload uses
// 10,000), runs --warmup checkouts, then measures --requests checkouts. Rounds
// alternate the variants, and the summary gives medians and each variant's
// median pairwise ratio to the first. Variants are written as in hot_cpu.ts
// (`main=PATH`, `node=FLAG`, KEY=VALUE for the server's environment).
//
// Flags: --rounds N (3), --skus N (10000), --warmup N (2000), --requests N
// (10000), --concurrency N (64), --sessions N (4), --json.

import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { type LoadResult, runLoad, scenarioCalls } from "./h2_load";
import { mainThreadCpuMs, median, type PassFigures, parseVariant, roundOrder, summaryTable, type Variant, type VariantSummary } from "./hot_cpu";
import { waitUntilServing } from "./health_client";
import { LOOPBACK_HOST } from "./load_session";
import { type Pinning, choosePinning, freeLoopbackPort, pinSelf, readCpuTimeMs, spawnNode, stopChild, temporaryDirs, runBenchMain } from "./processes";
import { scrapeMetrics } from "./prometheus";
import { HOT_SKU_ID, seedCatalogue } from "./seed";

const HEALTH_DEADLINE_MS = 60_000;
/** Generous bound on one measured pass. */
const PASS_DEADLINE_MS = 600_000;
/** The hot SKU seedCatalogue creates is not used by checkouts; it gets a token stock. */
const HOT_UNITS_UNUSED = 1;

/** A pass's figures, with the journal's work per checkout from /metrics (null when unreadable). */
interface CheckoutPass extends PassFigures {
  readonly commitsPerOp: number | null;
  readonly appendsPerOp: number | null;
  /** Server CPU µs per checkout by thread name, busiest first. */
  readonly threads: string;
}

/** Journal commits and appends so far, from /metrics; null when the endpoint does not answer. */
async function journalCounts(metricsAddress: string): Promise<{ commits: number; appends: number } | null> {
  const scrape = await scrapeMetrics(metricsAddress);
  if ("error" in scrape) return null;
  const commits = scrape.sums.get("qm_journal_commits_total");
  const appends = scrape.sums.get("qm_journal_appends_total");
  return commits === undefined || appends === undefined ? null : { commits, appends };
}

interface CheckoutOptions {
  readonly rounds: number;
  readonly skus: number;
  readonly warmup: number;
  readonly requests: number;
  readonly concurrency: number;
  readonly sessions: number;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

async function checkoutPass(address: string, requests: number, options: CheckoutOptions, tag: string, seed: number): Promise<LoadResult> {
  const calls = scenarioCalls({ scenario: "checkout", runTag: tag, hotSkuId: HOT_SKU_ID, skuCount: options.skus, seed });
  return runLoad({
    target: address,
    path: calls.path,
    transport: "raw",
    sessions: options.sessions,
    concurrency: options.concurrency,
    warmupMs: 0,
    durationMs: PASS_DEADLINE_MS,
    requestsMax: requests,
    frameFactory: calls.frameFactory,
    ...(calls.followUp === undefined ? {} : { followUp: calls.followUp }),
  });
}


/** CPU ms per thread name (from /proc/PID/task/TID/comm), summed over threads of one name; empty when unreadable. */
function threadCpuMs(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return byName;
  }
  for (const tid of tasks) {
    try {
      const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      // Unnamed threads take the process's name; only the main thread's task id is the pid.
      const name = tid === String(pid) ? "main" : comm;
      const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      byName.set(name, (byName.get(name) ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / 100);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return byName;
}

/** "name µs" per checkout for each thread name that used CPU in the pass, busiest first. */
function threadSplit(before: Map<string, number>, after: Map<string, number>, ok: number): string {
  return [...after]
    .map(([name, ms]): [string, number] => [name, ((ms - (before.get(name) ?? 0)) * 1000) / ok])
    .filter(([, us]) => us > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([name, us]) => `${name} ${us.toFixed(0)}`)
    .join(", ");
}

async function onePass(variant: Variant, index: number, round: number, options: CheckoutOptions, pinning: Pinning): Promise<CheckoutPass> {
  const port = await freeLoopbackPort();
  const metricsPort = await freeLoopbackPort();
  const address = `${LOOPBACK_HOST}:${port}`;
  const metricsAddress = `${LOOPBACK_HOST}:${metricsPort}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "qm-checkout-cpu-"));
  temporaryDirs.add(dataDir);
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    QM_LISTEN: address,
    QM_METRICS_LISTEN: metricsAddress,
    QM_DATA_DIR: dataDir,
    QM_LOG_LEVEL: "warn",
    ...variant.env,
  };
  const server = spawnNode({ name: `server ${variant.name}`, script: variant.main, args: [], nodeArgs: variant.nodeArgs, cpu: pinning.serverCpu, env });
  try {
    await waitUntilServing(address, HEALTH_DEADLINE_MS, () => server.running);
    await seedCatalogue(address, options.skus, HOT_UNITS_UNUSED);
    // Order ids take only [A-Za-z0-9._:-]; a variant's name may hold anything.
    const tag = `c${index}-${round}-${process.pid}`;
    const warm = await checkoutPass(address, options.warmup, options, `${tag}-w`, 7);
    if (warm.fatal !== null) throw new Error(`${variant.name} warmup: ${warm.fatal}`);
    if (warm.errorTotal > 0) throw new Error(`${variant.name} warmup: ${warm.errorTotal} errors; first: ${warm.firstError ?? "?"}`);
    const journalBefore = await journalCounts(metricsAddress);
    const threadsBefore = threadCpuMs(server.pid);
    const cpuBefore = readCpuTimeMs(server.pid);
    const mainBefore = mainThreadCpuMs(server.pid);
    // Every variant of a round draws the same SKUs (same seed), so they do the same work.
    const result = await checkoutPass(address, options.requests, options, tag, 1000 + round);
    const cpuAfter = readCpuTimeMs(server.pid);
    const mainAfter = mainThreadCpuMs(server.pid);
    const threadsAfter = threadCpuMs(server.pid);
    const journalAfter = await journalCounts(metricsAddress);
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
      heapUsedBytes: null,
      loadAverage: os.loadavg()[0] ?? Number.NaN,
      commitsPerOp: journalBefore === null || journalAfter === null || ok === 0 ? null : (journalAfter.commits - journalBefore.commits) / ok,
      threads: ok === 0 ? "" : threadSplit(threadsBefore, threadsAfter, ok),
      appendsPerOp: journalBefore === null || journalAfter === null || ok === 0 ? null : (journalAfter.appends - journalBefore.appends) / ok,
    };
  } catch (error) {
    const tail = server.outputTail();
    throw new Error(`${error instanceof Error ? error.message : String(error)}${tail === "" ? "" : `\n${tail}`}`);
  } finally {
    await stopChild(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
    temporaryDirs.delete(dataDir);
  }
}


/** Runs the variants in alternating rounds (A B A B ...); returns every pass and the per-variant medians. */
async function compareVariants(
  variants: readonly Variant[],
  options: CheckoutOptions,
  pinning: Pinning,
): Promise<{ passes: CheckoutPass[]; summary: VariantSummary[] }> {
  const first = variants[0];
  if (first === undefined) throw new Error("no variant");
  const passes: CheckoutPass[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const [index, variant] of roundOrder(variants, round)) {
      const pass = await onePass(variant, index, round, options, pinning);
      passes.push(pass);
      log(
        `round ${round} ${variant.name.padEnd(12)} ${pass.callsPerSecond.toFixed(0).padStart(6)} checkouts/s  ` +
          `${pass.cpuMicrosPerOp.toFixed(1).padStart(7)} µs CPU/checkout (main thread ${pass.mainThreadMicrosPerOp?.toFixed(1) ?? "?"})  ` +
          `server ${pass.serverCpuPercent.toFixed(0)}% of a core  ` +
          `journal ${pass.commitsPerOp?.toFixed(2) ?? "?"} commits, ${pass.appendsPerOp?.toFixed(2) ?? "?"} appends per checkout  p50 ${pass.p50Ms.toFixed(1)} ms  p99 ${pass.p99Ms.toFixed(1)} ms  load ${pass.loadAverage.toFixed(1)}\n    threads (µs/checkout): ${pass.threads}`,
      );
    }
  }
  const summary = variants.map((variant) => {
    const mine = passes.filter((p) => p.variant === variant.name);
    const ratio = (pick: (p: PassFigures) => number): number =>
      median(
        mine.map((p) => {
          const base = passes.find((b) => b.variant === first.name && b.round === p.round);
          return base === undefined ? Number.NaN : pick(p) / pick(base);
        }),
      );
    return {
      variant: variant.name,
      cpuMicrosPerOp: median(mine.map((p) => p.cpuMicrosPerOp)),
      callsPerSecond: median(mine.map((p) => p.callsPerSecond)),
      cpuRatio: ratio((p) => p.cpuMicrosPerOp),
      throughputRatio: ratio((p) => p.callsPerSecond),
      p99Ms: median(mine.map((p) => p.p99Ms)),
    };
  });
  return { passes, summary };
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      variant: { type: "string", multiple: true },
      rounds: { type: "string", default: "3" },
      skus: { type: "string", default: "10000" },
      warmup: { type: "string", default: "2000" },
      requests: { type: "string", default: "10000" },
      concurrency: { type: "string", default: "64" },
      sessions: { type: "string", default: "4" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const defaultMain = path.resolve(__dirname, "..", "src", "main.js");
  const variants = (values.variant ?? ["current"]).map((spec) => parseVariant(spec, defaultMain));
  const options: CheckoutOptions = {
    rounds: Number(values.rounds),
    skus: Number(values.skus),
    warmup: Number(values.warmup),
    requests: Number(values.requests),
    concurrency: Number(values.concurrency),
    sessions: Number(values.sessions),
  };
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const { passes, summary } = await compareVariants(variants, options, pinning);
  log(`\nmedians over ${options.rounds} alternating rounds of ${options.requests} checkouts (ratios: pairwise per round, then median)`);
  log(summaryTable(summary));
  if (values.json) process.stdout.write(`${JSON.stringify({ options, passes, summary })}\n`);
  return passes.some((p) => p.errors > 0) ? 1 : 0;
}

if (require.main === module) runBenchMain("checkout_cpu", main);
