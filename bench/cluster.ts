// `npm run bench:cluster`: a 3-node Quartermaster cluster on loopback (one
// etcd, one nats-server with JetStream, three nodes; the same child processes
// as test/support/cluster.ts) against one embedded node measured in the same
// run. Every figure is a ratio to that embedded node, because this machine is
// shared and its absolute figures drift by tens of percent within minutes.
//
// Measured: durable hot-SKU reserves/s and p99 called through the SKU's owner
// and through a non-owner (one NATS hop more); JetStream publishes per
// acknowledged reservation (the owner's Δqm_journal_commits_total, which counts
// JetStream journal publishes in cluster mode); the extra p50 of the hop; and
// the time from SIGKILL of the owner until another node serves a read of the
// SKU again. Servers and engines run on CPU 0, this driver and its generator
// on CPU 1 (taskset), as in run.ts.

import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { LIVE_RESERVATIONS_PER_SKU_MAX } from "../src/limits";
import { idOwnedBy, startCluster, TEST_LEASE_TTL_S, TEST_PARTITIONS, type TestCluster } from "../test/support/cluster";
import { call, createClients, startServer, type ServerProcess } from "../test/support/server_process";
import { type LoadResult, runLoad, scenarioCalls } from "./h2_load";
import { choosePinning, pinSelf } from "./processes";
import { scrapeMetrics } from "./prometheus";
import { HOT_SKU_UNITS, seedHotSku } from "./seed";

/** Every hot reservation stays live for the run; stop below the per-SKU limit, as run.ts does. */
const HOT_REQUESTS_MAX = Math.floor(LIVE_RESERVATIONS_PER_SKU_MAX * 0.9);
/** How long the failover probe waits for another node to serve the killed owner's SKU. */
const FAILOVER_DEADLINE_MS = 60_000;
/** Between two failover probes: the resolution of the failover figure. */
const FAILOVER_POLL_MS = 20;
/** One failover probe; a probe routed to the dead owner must fail fast, not hold the poll. */
const FAILOVER_PROBE_DEADLINE_MS = 500;
const NODE_IDS = ["n1", "n2", "n3"] as const;

interface Settings {
  readonly warmupMs: number;
  readonly durationMs: number;
  readonly concurrency: number;
  readonly sessions: number;
  readonly outDir: string;
  readonly write: boolean;
}

interface Cell {
  readonly label: string;
  readonly result: LoadResult;
  /** Δ journal commits / acknowledged reservations on the node that owns the SKU. */
  readonly commitsPerOk: number | null;
  readonly appendsPerCommit: number | null;
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

function pinPid(pid: number, cpu: number | null): void {
  if (cpu === null) return;
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

async function journalCounters(metricsAddr: string): Promise<{ commits: number; appends: number } | null> {
  const scraped = await scrapeMetrics(metricsAddr);
  if ("error" in scraped) return null;
  return { commits: scraped.sums.get("qm_journal_commits_total") ?? Number.NaN, appends: scraped.sums.get("qm_journal_appends_total") ?? Number.NaN };
}

async function measure(label: string, target: string, ownerMetrics: string, hotSkuId: string, settings: Settings): Promise<Cell> {
  const calls = scenarioCalls({ scenario: "hot", runTag: `${label.replace(/[^A-Za-z0-9]+/g, "-")}-${Date.now().toString(36)}`, hotSkuId, skuCount: 1, seed: 1 });
  const before = await journalCounters(ownerMetrics);
  const result = await runLoad({
    target,
    path: calls.path,
    frameFactory: calls.frameFactory,
    transport: "raw",
    sessions: settings.sessions,
    concurrency: settings.concurrency,
    warmupMs: settings.warmupMs,
    durationMs: settings.durationMs,
    requestsMax: HOT_REQUESTS_MAX,
  });
  const after = await journalCounters(ownerMetrics);
  const commits = before !== null && after !== null ? after.commits - before.commits : null;
  const appends = before !== null && after !== null ? after.appends - before.appends : null;
  const cell: Cell = {
    label,
    result,
    // okTotal covers warmup and drain too, as the counters do.
    commitsPerOk: commits !== null && result.okTotal > 0 ? commits / result.okTotal : null,
    appendsPerCommit: commits !== null && appends !== null && commits > 0 ? appends / commits : null,
  };
  const l = result.latency;
  log(
    `${label}: ${result.callsPerSecond.toFixed(0)} reserves/s, p50 ${l.p50Ms.toFixed(2)} ms, p99 ${l.p99Ms.toFixed(2)} ms, ` +
      `errors ${result.errorCount}, journal commits per ok ${cell.commitsPerOk?.toFixed(3) ?? "n/a"}, appends per commit ${cell.appendsPerCommit?.toFixed(1) ?? "n/a"}, ` +
      `generator CPU ${result.cpu.percentOfOneCore.toFixed(0)}%` + (result.firstError === null ? "" : `, first error: ${result.firstError}`),
  );
  return cell;
}

async function runEmbedded(settings: Settings, serverCpu: number | null): Promise<Cell> {
  const server: ServerProcess = await startServer({});
  try {
    pinPid(server.pid, serverCpu);
    await seedHotSku(server.addr, HOT_SKU_UNITS, "hot-0");
    return await measure("embedded", server.addr, server.metricsAddr, "hot-0", settings);
  } finally {
    await server.stop().catch(() => server.kill());
  }
}

/** Kills the owner and polls a read of its SKU through another node until one answers. */
async function failover(cluster: TestCluster, owner: string, via: string, skuId: string): Promise<{ readMs: number; reserveMs: number }> {
  const node = cluster.nodes.get(owner);
  if (node === undefined) throw new Error(`no node ${owner}`);
  // A fresh client, so the probe does not wait behind a channel that knew the dead node.
  const viaNode = cluster.nodes.get(via);
  if (viaNode === undefined) throw new Error(`no node ${via}`);
  const clients = createClients(viaNode.addr);
  try {
    await call(clients.inventory, "getAvailability", { skuIds: [skuId] });
    const killedAt = performance.now();
    await node.kill();
    cluster.nodes.delete(owner);
    let readMs: number | null = null;
    let reserveMs: number | null = null;
    let attempt = 0;
    while (performance.now() - killedAt < FAILOVER_DEADLINE_MS && (readMs === null || reserveMs === null)) {
      if (readMs === null) {
        const answer = await call(clients.inventory, "getAvailability", { skuIds: [skuId] }, { deadlineMs: FAILOVER_PROBE_DEADLINE_MS }).catch(() => null);
        if (answer !== null && answer.items[0]?.found === true) readMs = performance.now() - killedAt;
      }
      if (reserveMs === null) {
        const reserved = await call(
          clients.inventory,
          "reserve",
          { skuId, locationId: "wh-1", quantity: 1, reservationId: `failover-${Date.now().toString(36)}-${attempt++}`, ttl: undefined },
          { deadlineMs: FAILOVER_PROBE_DEADLINE_MS },
        ).catch(() => null);
        if (reserved !== null) reserveMs = performance.now() - killedAt;
      }
      await new Promise((resolve) => setTimeout(resolve, FAILOVER_POLL_MS));
    }
    if (readMs === null || reserveMs === null) throw new Error(`${skuId} not served through ${via} within ${FAILOVER_DEADLINE_MS} ms of killing ${owner}`);
    return { readMs, reserveMs };
  } finally {
    clients.close();
  }
}

function ratio(a: number, b: number): string {
  return b > 0 ? (a / b).toFixed(2) : "n/a";
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      "warmup-ms": { type: "string", default: "2000" },
      "duration-ms": { type: "string", default: "8000" },
      concurrency: { type: "string", default: "64" },
      sessions: { type: "string", default: "4" },
      out: { type: "string", default: path.join(__dirname, "../../bench/results") },
      "no-write": { type: "boolean", default: false },
    },
  });
  const settings: Settings = {
    warmupMs: Number(values["warmup-ms"]),
    durationMs: Number(values["duration-ms"]),
    concurrency: Number(values.concurrency),
    sessions: Number(values.sessions),
    outDir: values.out,
    write: !values["no-write"],
  };
  const cores = os.availableParallelism();
  const pinning = choosePinning();
  pinSelf(pinning.generatorCpu);
  const started = new Date();
  const loadBefore = os.loadavg();
  log(`pinning: ${pinning.description}; load average ${loadBefore.map((x) => x.toFixed(2)).join(" ")}`);

  const embedded = await runEmbedded(settings, pinning.serverCpu);

  log(`starting etcd, nats-server and nodes ${NODE_IDS.join(", ")} (lease TTL ${TEST_LEASE_TTL_S} s, ${TEST_PARTITIONS} partitions)`);
  const cluster = await startCluster(NODE_IDS, { cluster: "bench" });
  let owner: Cell;
  let nonOwner: Cell;
  let fail: { readMs: number; reserveMs: number };
  let jetstreamPublishes: number | null = null;
  try {
    for (const pid of [cluster.etcd.pid, cluster.nats.pid, ...[...cluster.nodes.values()].map((n) => n.pid)]) pinPid(pid, pinning.serverCpu);
    const [ownerId, viaId] = ["n1", "n2"] as const;
    // Two SKUs, so the second run does not inherit the first one's live reservations.
    const skuOwner = await idOwnedBy(cluster, "sku", ownerId, "hot-owner");
    const skuVia = await idOwnedBy(cluster, "sku", ownerId, "hot-via");
    const ownerNode = cluster.nodes.get(ownerId);
    const viaNode = cluster.nodes.get(viaId);
    if (ownerNode === undefined || viaNode === undefined) throw new Error("cluster nodes missing");
    await seedHotSku(ownerNode.addr, HOT_SKU_UNITS, skuOwner);
    await seedHotSku(ownerNode.addr, HOT_SKU_UNITS, skuVia);
    const jszBefore = await jszMessages(cluster.nats.monitorPort);
    owner = await measure("cluster via owner", ownerNode.addr, ownerNode.metricsAddr, skuOwner, settings);
    nonOwner = await measure("cluster via non-owner", viaNode.addr, ownerNode.metricsAddr, skuVia, settings);
    const jszAfter = await jszMessages(cluster.nats.monitorPort);
    const oks = owner.result.okTotal + nonOwner.result.okTotal;
    if (jszBefore !== null && jszAfter !== null && oks > 0) jetstreamPublishes = (jszAfter - jszBefore) / oks;
    fail = await failover(cluster, ownerId, viaId, skuOwner);
    log(`failover: SIGKILL of ${ownerId} -> read served through ${viaId} after ${fail.readMs.toFixed(0)} ms, reserve after ${fail.reserveMs.toFixed(0)} ms`);
  } finally {
    await cluster.stop();
  }
  const loadAfter = os.loadavg();

  const e = embedded.result;
  const rows: [string, string, string, string, string, string][] = [
    ["run", "reserves/s", "ratio", "p50 ms", "p99 ms", "p99 ratio"],
    ...[embedded, owner, nonOwner].map((c): [string, string, string, string, string, string] => [
      c.label,
      c.result.callsPerSecond.toFixed(0),
      ratio(c.result.callsPerSecond, e.callsPerSecond),
      c.result.latency.p50Ms.toFixed(2),
      c.result.latency.p99Ms.toFixed(2),
      ratio(c.result.latency.p99Ms, e.latency.p99Ms),
    ]),
  ];
  const hopMs = nonOwner.result.latency.p50Ms - owner.result.latency.p50Ms;
  const lines = [
    `# Cluster benchmark ${started.toISOString()}`,
    "",
    `${cores} cores, ${pinning.description}. Load average before ${loadBefore.map((x) => x.toFixed(2)).join(" ")}, after ${loadAfter.map((x) => x.toFixed(2)).join(" ")} (shared machine: absolute figures drift, read the ratios).`,
    `Hot SKU, ${settings.concurrency} callers over ${settings.sessions} sessions, ${settings.warmupMs} ms warmup, ${settings.durationMs} ms measured; cluster: 3 nodes, lease TTL ${TEST_LEASE_TTL_S} s, ${TEST_PARTITIONS} partitions.`,
    "",
    ...rows.map((r, i) => `| ${r.join(" | ")} |` + (i === 0 ? `\n|${r.map(() => "---").join("|")}|` : "")),
    "",
    `- non-owner / embedded throughput: ${ratio(nonOwner.result.callsPerSecond, e.callsPerSecond)} (goal ≥ 0.50)`,
    `- non-owner / owner throughput: ${ratio(nonOwner.result.callsPerSecond, owner.result.callsPerSecond)}`,
    `- extra p50 of one NATS hop (non-owner p50 − owner p50): ${hopMs.toFixed(2)} ms`,
    `- journal writes per acknowledged reservation (owner's Δqm_journal_commits_total / ok): embedded ${embedded.commitsPerOk?.toFixed(3) ?? "n/a"}, via owner ${owner.commitsPerOk?.toFixed(3) ?? "n/a"}, via non-owner ${nonOwner.commitsPerOk?.toFixed(3) ?? "n/a"}`,
    `- JetStream messages stored per acknowledged reservation (nats-server /jsz, both cluster runs): ${jetstreamPublishes?.toFixed(3) ?? "n/a"}`,
    `- appends per journal write: embedded ${embedded.appendsPerCommit?.toFixed(1) ?? "n/a"}, via owner ${owner.appendsPerCommit?.toFixed(1) ?? "n/a"}, via non-owner ${nonOwner.appendsPerCommit?.toFixed(1) ?? "n/a"}`,
    `- SIGKILL of the owner → its SKU served again through another node: read after ${fail.readMs.toFixed(0)} ms, reserve after ${fail.reserveMs.toFixed(0)} ms (lease TTL ${TEST_LEASE_TTL_S} s)`,
    `- errors: embedded ${e.errorCount}, via owner ${owner.result.errorCount}, via non-owner ${nonOwner.result.errorCount}`,
  ];
  const text = lines.join("\n");
  log(`\n${text}`);
  if (settings.write) {
    fs.mkdirSync(settings.outDir, { recursive: true });
    const stamp = started.toISOString().slice(0, 16).replace("T", "-").replace(":", "");
    const base = path.join(settings.outDir, `cluster-${stamp}`);
    fs.writeFileSync(`${base}.md`, `${text}\n`);
    fs.writeFileSync(
      `${base}.json`,
      `${JSON.stringify({ started: started.toISOString(), pinning: pinning.description, loadBefore, loadAfter, settings, embedded, owner, nonOwner, hopMs, jetstreamPublishes, failover: fail }, null, 2)}\n`,
    );
    log(`wrote ${base}.md and .json`);
  }
  const failed = [embedded, owner, nonOwner].some((c) => c.result.errorCount > c.result.ok / 100 || c.result.fatal !== null);
  return failed ? 1 : 0;
}

/** Messages stored across all streams, from nats-server's monitoring endpoint; null when it does not answer. */
async function jszMessages(monitorPort: number): Promise<number | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${monitorPort}/jsz`);
    const body = (await response.json()) as { messages?: unknown };
    return typeof body.messages === "number" ? body.messages : null;
  } catch {
    return null;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench:cluster failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
