// CPU per hot-SKU reservation of a whole 3-node cluster (etcd, nats-server and
// the three nodes, all pinned to the server's core), build against build, in
// alternating rounds: what bench/hot_cpu.ts does for one embedded node.
//
//   node dist/bench/cluster_cpu.js --variant 'base main=/path/to/base/dist/src/main.js' --variant new [--via non-owner|spread]
//
// Each pass starts a fresh cluster of the variant's build, seeds one SKU that
// n1 owns, warms it up and measures `--requests` reservations sent to n2 (a
// non-owner: every call takes one NATS request/reply to n1) or, with
// `--via spread`, spread over all three nodes as bench:compare's qm-cluster
// does. Figures: CPU of all five processes per acknowledged reservation,
// reservations/s, p99, and the nodes' journal writes (JetStream publishes)
// per reservation. Variants take the words of hot_cpu.ts (main=, node=,
// KEY=VALUE for the nodes' environment); node=--cpu-prof profiles the nodes.
//
// With `--skus N` the load is uniform over N SKUs instead (bench:compare's
// uniform workload), spread over the three nodes unless --via says otherwise:
// each pass seeds skuIdFor(0..N-1) through the cluster's JetStream journal
// (cluster_catalogue.ts, seconds instead of minutes of gRPC) and the nodes
// activate them from JetStream as they would any SKU. The seeding is not
// measured; with N well above the requests, most reservations activate a SKU.
// `--workload checkout` (with --skus, e.g. 10000) runs bench:compare's
// checkouts instead (CreateOrder of 3 lines, then ConfirmPayment): figures are
// then per checkout, and `--requests` counts checkouts.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { credentials, Metadata } from "@grpc/grpc-js";
import { ActorKind, ClusterServiceClient } from "../src/gen/quartermaster/v1/cluster";
import { LIVE_RESERVATIONS_PER_SKU_MAX } from "../src/limits";
import { type QmCluster, startQmCluster } from "./contenders/qm_cluster";
import { choosePinning, type Pinning, pinSelf, readCpuTimeMs, runBenchMain, temporaryDirs } from "./processes";
import { type LoadResult, runLoad, scenarioCalls } from "./h2_load";
import { median, parseVariant, roundOrder, type Variant } from "./hot_cpu";
import { processTree } from "./contenders/engines";
import { scrapeMetrics } from "./prometheus";
import { HOT_SKU_UNITS, seedHotSku } from "./seed";
import { seedClusterCatalogue } from "./cluster_catalogue";

/** Warmup and measured reservations stay live on one SKU: their sum must stay below its live-hold limit. */
const REQUESTS_PER_PASS_MAX = Math.floor(LIVE_RESERVATIONS_PER_SKU_MAX * 0.9);
/** Candidate ids probed for one that n1 owns. */
const OWNED_ID_PROBES_MAX = 200;
const RUN_MS_MAX = 5 * 60 * 1000;
const CALL_DEADLINE_MS = 10_000;
const VIAS = ["non-owner", "spread"] as const;
type Via = (typeof VIAS)[number];

interface Options {
  readonly rounds: number;
  readonly warmup: number;
  readonly requests: number;
  readonly concurrency: number;
  readonly sessions: number;
  readonly via: Via;
  /** 0: the hot SKU; else uniform over this many SKUs seeded through the journal. */
  readonly skus: number;
  readonly workload: "reserve" | "checkout";
}

interface Pass {
  readonly variant: string;
  readonly round: number;
  readonly ok: number;
  readonly errors: number;
  readonly callsPerSecond: number;
  /** CPU of all five processes per acknowledged reservation, µs. */
  readonly cpuMicrosPerOp: number;
  /** Of it, the three nodes'. */
  readonly nodeMicrosPerOp: number;
  readonly p99Ms: number;
  /** Δqm_journal_commits_total (JetStream journal writes) of all nodes per reservation; null when unreadable. */
  readonly writesPerOp: number | null;
  readonly loadAverage: number;
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}


function cpuMs(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) for (const p of processTree(pid)) total += readCpuTimeMs(p) ?? 0;
  return total;
}

async function ownedByFirstNode(cluster: QmCluster, prefix: string): Promise<string> {
  const client = new ClusterServiceClient(cluster.address, credentials.createInsecure());
  try {
    for (let i = 0; i < OWNED_ID_PROBES_MAX; i++) {
      const id = `${prefix}-${i}`;
      const owner = await new Promise<string>((resolve, reject) => {
        client.locateKey({ kind: ActorKind.ACTOR_KIND_SKU, id }, new Metadata(), { deadline: Date.now() + CALL_DEADLINE_MS }, (error, r) =>
          error !== null ? reject(error) : resolve(r.ownerNodeId),
        );
      });
      if (owner === "n1") return id;
    }
  } finally {
    client.close();
  }
  throw new Error(`no id ${prefix}-N owned by n1`);
}

/** Journal writes of every node (with one hot SKU only its owner, n1, writes). */
async function commits(metricsAddresses: readonly string[]): Promise<number | null> {
  let total = 0;
  for (const address of metricsAddresses) {
    const scraped = await scrapeMetrics(address);
    const value = "error" in scraped ? undefined : scraped.sums.get("qm_journal_commits_total");
    if (value === undefined) return null;
    total += value;
  }
  return total;
}

function load(target: string, skuId: string, requests: number, options: Options, tag: string): Promise<LoadResult> {
  const scenario = options.skus === 0 ? "hot" : options.workload === "checkout" ? "checkout" : "random";
  const calls = scenarioCalls({ scenario, runTag: tag, hotSkuId: skuId, skuCount: Math.max(1, options.skus), seed: options.skus === 0 ? 1 : requests });
  return runLoad({
    target,
    path: calls.path,
    frameFactory: calls.frameFactory,
    transport: "raw",
    sessions: options.sessions,
    concurrency: options.concurrency,
    warmupMs: 0,
    durationMs: RUN_MS_MAX,
    requestsMax: requests,
    ...(calls.followUp === undefined ? {} : { followUp: calls.followUp }),
  });
}

async function onePass(variant: Variant, index: number, round: number, options: Options, pinning: Pinning): Promise<Pass> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "qm-cluster-cpu-"));
  temporaryDirs.add(root);
  let cluster: QmCluster | null = null;
  try {
    cluster = await startQmCluster(root, pinning.serverCpu, variant.main, { ...process.env, QM_LOG_LEVEL: "warn", ...variant.env }, variant.nodeArgs);
    let skuId = "";
    if (options.skus > 0) {
      const seconds = await seedClusterCatalogue({ etcdEndpoint: cluster.etcdEndpoint, natsUrl: cluster.natsUrl, clusterName: cluster.clusterName, skus: options.skus });
      log(`${variant.name}: ${options.skus} SKUs seeded through the journal in ${seconds.toFixed(1)} s`);
    } else {
      skuId = await ownedByFirstNode(cluster, `hot-${index}-${round}`);
      await seedHotSku(cluster.address, HOT_SKU_UNITS, skuId);
    }
    const target = options.via === "spread" ? cluster.targets : (cluster.addresses[1] ?? "");
    const tag = `v${index}-${round}-${process.pid}`;
    const warm = await load(target, skuId, options.warmup, options, `${tag}-w`);
    if (warm.fatal !== null || warm.errorTotal > 0) throw new Error(`${variant.name} warmup: ${warm.fatal ?? warm.firstError ?? "?"}`);
    const nodes = cluster.nodePids();
    const all = [...nodes, ...cluster.enginePids()];
    const [allBefore, nodesBefore, commitsBefore] = [cpuMs(all), cpuMs(nodes), await commits(cluster.metricsAddresses)];
    const result = await load(target, skuId, options.requests, options, tag);
    const [allAfter, nodesAfter, commitsAfter] = [cpuMs(all), cpuMs(nodes), await commits(cluster.metricsAddresses)];
    if (result.fatal !== null) throw new Error(`${variant.name}: ${result.fatal}`);
    const ok = Math.max(1, result.okTotal);
    return {
      variant: variant.name,
      round,
      ok: result.okTotal,
      errors: result.errorTotal,
      callsPerSecond: result.okTotal / (result.measuredMs / 1000),
      cpuMicrosPerOp: ((allAfter - allBefore) * 1000) / ok,
      nodeMicrosPerOp: ((nodesAfter - nodesBefore) * 1000) / ok,
      p99Ms: result.latency.p99Ms,
      writesPerOp: commitsBefore === null || commitsAfter === null ? null : (commitsAfter - commitsBefore) / ok,
      loadAverage: os.loadavg()[0] ?? Number.NaN,
    };
  } finally {
    await cluster?.stop();
    fs.rmSync(root, { recursive: true, force: true });
    temporaryDirs.delete(root);
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      variant: { type: "string", multiple: true },
      rounds: { type: "string", default: "3" },
      warmup: { type: "string", default: "5000" },
      requests: { type: "string", default: "40000" },
      concurrency: { type: "string", default: "64" },
      sessions: { type: "string", default: "4" },
      via: { type: "string" },
      skus: { type: "string", default: "0" },
      workload: { type: "string", default: "reserve" },
    },
    strict: true,
  });
  const skus = Number(values.skus);
  if (!(Number.isSafeInteger(skus) && skus >= 0)) throw new Error("--skus must be a whole number");
  const via = VIAS.find((v) => v === (values.via ?? (skus > 0 ? "spread" : "non-owner")));
  if (via === undefined) throw new Error(`--via must be one of ${VIAS.join(", ")}`);
  const options: Options = {
    rounds: Number(values.rounds),
    warmup: Number(values.warmup),
    requests: Number(values.requests),
    concurrency: Number(values.concurrency),
    sessions: Number(values.sessions),
    via,
    skus,
    workload: values.workload === "checkout" ? "checkout" : "reserve",
  };
  if (values.workload !== "checkout" && values.workload !== "reserve") throw new Error("--workload must be reserve or checkout");
  if (options.workload === "checkout" && skus === 0) throw new Error("--workload checkout needs --skus");
  if (skus === 0 && options.warmup + options.requests > REQUESTS_PER_PASS_MAX) throw new Error(`warmup + requests must stay under ${REQUESTS_PER_PASS_MAX}`);
  const defaultMain = path.resolve(__dirname, "..", "src", "main.js");
  const variants = (values.variant ?? ["current"]).map((spec) => parseVariant(spec, defaultMain));
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  log(`pinning: ${pinning.description}; via ${via}; load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}`);
  const passes: Pass[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    for (const [index, variant] of roundOrder(variants, round)) {
      const p = await onePass(variant, index, round, options, pinning);
      passes.push(p);
      log(
        `round ${round} ${variant.name.padEnd(10)} ${p.callsPerSecond.toFixed(0).padStart(6)} calls/s  ${p.cpuMicrosPerOp.toFixed(1).padStart(6)} µs CPU/op ` +
          `(nodes ${p.nodeMicrosPerOp.toFixed(1)})  writes/op ${p.writesPerOp?.toFixed(3) ?? "?"}  p99 ${p.p99Ms.toFixed(1)} ms  errors ${p.errors}  load ${p.loadAverage.toFixed(1)}`,
      );
    }
  }
  const first = variants[0]?.name ?? "";
  log(`\nmedians over ${options.rounds} alternating rounds of ${options.requests} ${options.workload === "checkout" ? "checkouts" : "reservations"} via ${via} (ratios: pairwise per round, then median)`);
  log(`${"variant".padEnd(10)} ${"µs CPU/op".padStart(9)} ${`÷ ${first}`.padStart(9)} ${"calls/s".padStart(8)} ${`÷ ${first}`.padStart(9)} ${"writes/op".padStart(9)} ${"p99 ms".padStart(7)}`);
  for (const v of variants) {
    const mine = passes.filter((p) => p.variant === v.name);
    const ratio = (pick: (p: Pass) => number): number =>
      median(mine.map((p) => {
        const base = passes.find((b) => b.variant === first && b.round === p.round);
        return base === undefined ? Number.NaN : pick(p) / pick(base);
      }));
    log(
      `${v.name.padEnd(10)} ${median(mine.map((p) => p.cpuMicrosPerOp)).toFixed(1).padStart(9)} ${ratio((p) => p.cpuMicrosPerOp).toFixed(2).padStart(9)} ` +
        `${median(mine.map((p) => p.callsPerSecond)).toFixed(0).padStart(8)} ${ratio((p) => p.callsPerSecond).toFixed(2).padStart(9)} ` +
        `${median(mine.map((p) => p.writesPerOp ?? Number.NaN)).toFixed(3).padStart(9)} ${median(mine.map((p) => p.p99Ms)).toFixed(1).padStart(7)}`,
    );
  }
  return passes.some((p) => p.errors > 0) ? 1 : 0;
}

if (require.main === module) runBenchMain("cluster_cpu", main);
