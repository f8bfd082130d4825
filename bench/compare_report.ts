// The results of bench/compare.ts: a Markdown file that states each ratio of
// the run and where a goal is missed, the raw figures as JSON, and an SVG
// chart drawn here (no charting dependency for one bar chart).

import fs from "node:fs";
import path from "node:path";

export interface Measurement {
  readonly contender: string;
  readonly workload: string;
  /** Reservations, or checkouts, per second in the measured window (a batch call counts its items): the median over rounds. */
  readonly opsPerSecond: number;
  /** Each round's figure, in round order: round i of every contender of a workload ran within seconds of each other. */
  readonly roundOpsPerSecond: readonly number[];
  readonly callsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /** Successful calls in the measured windows. */
  readonly ok: number;
  /** Successful calls over the whole runs, warmup and drain included: whether the contender answered at all. */
  readonly okTotal: number;
  readonly errors: number;
  readonly firstError: string | null;
  /** CPU ms per 1000 operations: the server and the database over the generator's whole run, the generator over its window. */
  readonly cpuMsPer1000: { readonly server: number; readonly database: number; readonly generator: number };
  /** The contender's CPU as a share of one core: over the generator's whole run, or for a ReserveBatch row over its calls' window. */
  readonly serverCorePercent: number;
  /**
   * The same over the generator's whole run for every row, the span the whole core's share covers,
   * so the two give the other processes' share. Absent in results written before it: serverCorePercent.
   */
  readonly serverCoreOfRunPercent?: number;
  /** The whole server core (the contender and anything else on it), % busy; null when not pinned. */
  readonly serverCoreBusyPercent: number | null;
  readonly generatorCpuPercent: number;
  /** The whole generator core (everything on it, other users' work too), % busy; null when not pinned. */
  readonly generatorCoreBusyPercent: number | null;
  readonly check: { readonly passed: boolean; readonly detail: string };
  readonly loadAverage: string;
}

export interface CompareReport {
  readonly startedAt: string;
  readonly smoke: boolean;
  readonly pinning: string;
  readonly loadAverageStart: string;
  loadAverageEnd: string;
  readonly settings: Readonly<Record<string, number>>;
  readonly measurements: Measurement[];
  /** Quartermaster's VmRSS once idle, on the node of the catalogue runs, whose data set is the catalogue and those runs' writes. */
  qmIdleRssBytes: number | null;
  /** Of it, private memory (RssAnon: heaps) and file-backed pages (RssFile: LMDB's map and node's binary), which the kernel may drop. */
  qmIdleAnonBytes: number | null;
  qmIdleFileBytes: number | null;
  readonly failures: string[];
}

/** The product owner's goals, as ratios of one run. */
const GOAL_HOT_VS_ECHO = 0.8;
const GOAL_HOT_VS_REDIS_AOF = 1.2;
const GOAL_CATALOGUE_VS_ECHO = 0.6;
const GOAL_BATCH_OPS = 100_000;
const IDLE_RSS_BUDGET_BYTES = 512 * 1024 * 1024;

const COLOURS: Readonly<Record<string, string>> = {
  echo: "#9e9e9e",
  pg: "#336791",
  redis: "#e57373",
  "redis-aof": "#c62828",
  qm: "#2e7d32",
  "qm-cluster": "#81c784",
};

function find(report: CompareReport, contender: string, workload: string): Measurement | undefined {
  return report.measurements.find((m) => m.contender === contender && m.workload === workload);
}

function fixed(value: number, digits = 0): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

function spreadOf(values: readonly number[]): Spread | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return { median, min: sorted[0] ?? 0, max: sorted[sorted.length - 1] ?? 0 };
}

/** a / b round by round (round i of both ran seconds apart): the median and range of those paired ratios. */
function pairedRatio(a: Measurement | undefined, b: Measurement | undefined): Spread | null {
  if (a === undefined || b === undefined) return null;
  const n = Math.min(a.roundOpsPerSecond.length, b.roundOpsPerSecond.length);
  const ratios: number[] = [];
  for (let i = 0; i < n; i++) {
    const denominator = b.roundOpsPerSecond[i] ?? 0;
    if (denominator > 0) ratios.push((a.roundOpsPerSecond[i] ?? 0) / denominator);
  }
  return spreadOf(ratios);
}

/** How far a contender's rounds of one workload spread, as a share of their median: the noise of this run. */
function roundSpreadPercent(m: Measurement): number | null {
  const s = spreadOf(m.roundOpsPerSecond);
  return s === null || s.median === 0 || m.roundOpsPerSecond.length < 2 ? null : ((s.max - s.min) / s.median) * 100;
}

function noise(report: CompareReport): string[] {
  const out: string[] = [];
  for (const w of ["hot", "uniform", "zipf"]) {
    const echo = find(report, "echo", w);
    const spread = echo === undefined ? null : roundSpreadPercent(echo);
    const qmEcho = pairedRatio(find(report, "qm", w), echo);
    if (spread === null) continue;
    out.push(
      `${w}: echo's rounds spread ${fixed(spread)}% of their median` +
        (qmEcho === null ? "" : `, Quartermaster / echo per round ${fixed(qmEcho.min * 100)}–${fixed(qmEcho.max * 100)}%`),
    );
  }
  return out;
}

/** Above this share of its core the server, not the machine, limited the run. */
const SERVER_SATURATED_PERCENT = 85;
/** Other processes' share of the server's core above which they, not the contender, set the figure. */
const OTHERS_ON_SERVER_CORE_PERCENT = 10;

function µs(perOp: number): string {
  return `${fixed(perOp)} µs`;
}

/** CPU per operation of the contender's server and its database, the two that share the server's core. */
function serverSideUs(m: Measurement): number {
  return m.cpuMsPer1000.server + m.cpuMsPer1000.database;
}

/** What limited a Quartermaster figure, from what the run measured. */
function limiter(m: Measurement): { saturated: boolean; text: string } {
  const others = m.serverCoreBusyPercent === null ? null : Math.max(0, m.serverCoreBusyPercent - (m.serverCoreOfRunPercent ?? m.serverCorePercent));
  if (m.serverCorePercent >= SERVER_SATURATED_PERCENT) return { saturated: true, text: `Quartermaster was CPU-bound (${fixed(m.serverCorePercent)}% of its core)` };
  if (others !== null && others >= OTHERS_ON_SERVER_CORE_PERCENT)
    return { saturated: false, text: `Quartermaster used ${fixed(m.serverCorePercent)}% of its core while other processes took ${fixed(others)}% of it: the machine, not the server, set this figure` };
  const generator = m.generatorCoreBusyPercent === null ? "" : ` (the generator's core was ${fixed(m.generatorCoreBusyPercent)}% busy)`;
  return { saturated: false, text: `Quartermaster used only ${fixed(m.serverCorePercent)}% of its core: it waited, on fsync or for its callers${generator}` };
}

/** Why a ratio against another contender is what it is: when both are CPU-bound on the same core, their CPU per operation. */
function whyVs(m: Measurement | undefined, ref: Measurement | undefined, refLabel: string): string {
  if (m === undefined || ref === undefined) return "";
  const l = limiter(m);
  const costs = `${µs(m.cpuMsPer1000.server)} of CPU per operation against ${µs(serverSideUs(ref))} for ${refLabel} (its server${ref.cpuMsPer1000.database > 0 ? " and database" : ""})`;
  if (!l.saturated) return ` Why: ${l.text}; ${costs}.`;
  const refSaturated = ref.serverCorePercent >= SERVER_SATURATED_PERCENT || (ref.serverCoreBusyPercent ?? 0) >= SERVER_SATURATED_PERCENT;
  const bound = serverSideUs(ref) / Math.max(1e-9, m.cpuMsPer1000.server);
  return refSaturated
    ? ` Why: ${l.text}, as was ${refLabel}, on one core: ${costs}, so the ratio is about ${bound.toFixed(2)}, their CPU per operation inverted, until Quartermaster spends less of it.`
    : ` Why: ${l.text}; ${costs}.`;
}

/** Why an absolute rate is what it is: at a whole core, the CPU per item caps it. */
function whyRate(m: Measurement): string {
  const l = limiter(m);
  const perItem = m.cpuMsPer1000.server;
  return ` Why: ${l.text}; ${µs(perItem)} of CPU per item, so one core tops out near ${fixed(1_000_000 / Math.max(1e-9, perItem))}/s.`;
}

function goalLine(label: string, value: Spread | null, goal: number, unit: "x" | "%", reason = ""): string {
  if (value === null) return `- ${label}: not measured in this run.`;
  const show = (v: number): string => (unit === "%" ? `${fixed(v * 100)}%` : `${v.toFixed(2)}x`);
  const range = value.min === value.max ? "" : ` (rounds ${show(value.min)}–${show(value.max)})`;
  const wanted = unit === "%" ? `${fixed(goal * 100)}%` : `${goal.toFixed(1)}x`;
  const verdict = value.median >= goal ? (value.min >= goal ? "met." : "met by the median, not by every round.") : `**missed**.${reason}`;
  return `- ${label}: **${show(value.median)}**${range} (goal ≥ ${wanted}): ${verdict}`;
}

function mib(bytes: number | null): string {
  return `${fixed((bytes ?? 0) / 1024 / 1024)} MiB`;
}

/**
 * The memory goal is judged on private memory (RssAnon): the heaps and
 * buffers the process cannot give back. The file-backed part is LMDB's map
 * (clean pages; writes go through write(), not the map) and node's binary: the
 * kernel drops those under pressure, a cgroup limit reclaims them before it
 * kills, and their size follows what was read, not what the node keeps.
 */
function memoryLine(report: CompareReport): string {
  const rss = report.qmIdleRssBytes;
  const anon = report.qmIdleAnonBytes;
  if (rss === null || anon === null) return "- 100,000-SKU idle memory: not measured in this run.";
  const met = anon < IDLE_RSS_BUDGET_BYTES;
  return (
    `- 100,000-SKU idle memory, private (RssAnon, on the catalogue runs' own node once its actors passivated): **${mib(anon)}** (goal < 512 MiB): ${met ? "met" : "**missed**"}. ` +
    `VmRSS ${mib(rss)} = ${mib(anon)} private + ${mib(report.qmIdleFileBytes)} file-backed (LMDB map pages the runs touched, node's binary), ` +
    `VmRSS itself ${rss < IDLE_RSS_BUDGET_BYTES ? "under" : "over"} 512 MiB.`
  );
}

function goals(report: CompareReport): string[] {
  const qm = (w: string): Measurement | undefined => find(report, "qm", w);
  const echo = (w: string): Measurement | undefined => find(report, "echo", w);
  const lines = [
    goalLine("hot SKU, Quartermaster / echo", pairedRatio(qm("hot"), echo("hot")), GOAL_HOT_VS_ECHO, "%", whyVs(qm("hot"), echo("hot"), "echo")),
    goalLine("hot SKU, Quartermaster / Redis appendfsync always", pairedRatio(qm("hot"), find(report, "redis-aof", "hot")), GOAL_HOT_VS_REDIS_AOF, "x", whyVs(qm("hot"), find(report, "redis-aof", "hot"), "Redis appendfsync always")),
    goalLine("100,000 SKUs uniform, Quartermaster / echo", pairedRatio(qm("uniform"), echo("uniform")), GOAL_CATALOGUE_VS_ECHO, "%", whyVs(qm("uniform"), echo("uniform"), "echo")),
    goalLine("100,000 SKUs Zipf(1.1), Quartermaster / echo", pairedRatio(qm("zipf"), echo("zipf")), GOAL_CATALOGUE_VS_ECHO, "%", whyVs(qm("zipf"), echo("zipf"), "echo")),
    memoryLine(report),
  ];
  const checkout = pairedRatio(qm("checkout"), find(report, "pg", "checkout"));
  lines.push(
    checkout === null
      ? "- checkouts, Quartermaster / PostgreSQL: not measured in this run."
      : `- checkouts, Quartermaster / PostgreSQL: **${checkout.median.toFixed(2)}x**${checkout.min === checkout.max ? "" : ` (rounds ${checkout.min.toFixed(2)}–${checkout.max.toFixed(2)}x)`} (no numeric goal).`,
  );
  for (const w of ["batch-hot", "batch-uniform"]) {
    const m = qm(w);
    lines.push(
      m === undefined
        ? `- ReserveBatch ${w}: not measured in this run.`
        : `- ReserveBatch ${w}: **${fixed(m.opsPerSecond)} reservations/s** (goal ≥ ${fixed(GOAL_BATCH_OPS)}): ${m.opsPerSecond >= GOAL_BATCH_OPS ? "met." : `**missed**.${whyRate(m)}`}`,
    );
  }
  lines.push(...clusterLines(report));
  lines.push("- growth (restart with 1,000,000 SKUs / 10,000,000 events; 10,000 vs 1,000,000 SKUs): not measured by this command.");
  return lines;
}

/** The cluster against the embedded node, per workload both ran: throughput and CPU per operation over every process. */
function clusterLines(report: CompareReport): string[] {
  const out: string[] = [];
  for (const m of report.measurements.filter((x) => x.contender === "qm-cluster")) {
    const embedded = find(report, "qm", m.workload);
    const total = (x: Measurement): number => x.cpuMsPer1000.server + x.cpuMsPer1000.database;
    const cpu = `${fixed(total(m))} µs of CPU per operation over its 5 processes (nodes ${fixed(m.cpuMsPer1000.server)} + etcd and nats-server ${fixed(m.cpuMsPer1000.database)})`;
    out.push(
      embedded === undefined
        ? `- 3-node cluster ${m.workload}: ${fixed(m.opsPerSecond)}/s, ${cpu} (no embedded run to compare).`
        : `- 3-node cluster / embedded, ${m.workload}: **${pairedRatio(m, embedded)?.median.toFixed(2) ?? "?"}x** throughput (median of rounds); ${cpu}, ` +
            `**${(total(m) / Math.max(1e-9, total(embedded))).toFixed(2)}x** the embedded node's (no numeric goal; all on one core, so a cluster here buys availability, not throughput).`,
    );
  }
  return out;
}

function table(report: CompareReport, workload: string): string[] {
  const rows = report.measurements.filter((m) => m.workload === workload);
  const echo = find(report, "echo", workload);
  const out = [
    "| contender | ops/s (median) | rounds spread | vs echo (median of rounds) | p50 ms | p99 ms | p999 ms | CPU s / 1000 ops (server + db + generator) | server core (all of it busy) | generator core busy (its own share) | errors | check |",
    "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
  ];
  for (const m of rows) {
    const c = m.cpuMsPer1000;
    const total = (c.server + c.database + c.generator) / 1000;
    const vsEcho = pairedRatio(m, echo);
    const spread = roundSpreadPercent(m);
    out.push(
      `| ${m.contender} | ${fixed(m.opsPerSecond)} | ${spread === null ? "–" : `${fixed(spread)}%`} | ${vsEcho === null ? "–" : `${fixed(vsEcho.median * 100)}%`} | ${m.p50Ms.toFixed(2)} | ${m.p99Ms.toFixed(2)} | ${m.p999Ms.toFixed(2)} | ` +
        `${total.toFixed(3)} (${(c.server / 1000).toFixed(3)} + ${(c.database / 1000).toFixed(3)} + ${(c.generator / 1000).toFixed(3)}) | ${fixed(m.serverCorePercent)}% (${m.serverCoreBusyPercent === null ? "–" : `${fixed(m.serverCoreBusyPercent)}%`}) | ` +
        `${m.generatorCoreBusyPercent === null ? "–" : `${fixed(m.generatorCoreBusyPercent)}%`} (${fixed(m.generatorCpuPercent)}%) | ${fixed(m.errors)} | ${m.check.passed ? "ok" : "**FAILED**"}: ${m.check.detail} |`,
    );
  }
  return out;
}

/** Horizontal bars, one group per workload, each bar scaled to the fastest contender of its workload. */
export function renderSvg(report: CompareReport): string {
  const workloads = [...new Set(report.measurements.map((m) => m.workload))];
  const barHeight = 16;
  const gap = 4;
  const groupGap = 22;
  const labelWidth = 110;
  const barWidth = 460;
  const width = labelWidth + barWidth + 150;
  const parts: string[] = [];
  let y = 40;
  for (const w of workloads) {
    const rows = report.measurements.filter((m) => m.workload === w);
    const max = Math.max(1, ...rows.map((m) => m.opsPerSecond));
    parts.push(`<text x="8" y="${y}" font-weight="bold">${w}</text>`);
    y += 8;
    for (const m of rows) {
      const length = Math.max(1, (m.opsPerSecond / max) * barWidth);
      parts.push(
        `<text x="${labelWidth - 6}" y="${y + barHeight - 4}" text-anchor="end">${m.contender}</text>`,
        `<rect x="${labelWidth}" y="${y}" width="${length.toFixed(1)}" height="${barHeight}" fill="${COLOURS[m.contender] ?? "#607d8b"}"/>`,
        `<text x="${(labelWidth + length + 6).toFixed(1)}" y="${y + barHeight - 4}">${fixed(m.opsPerSecond)}/s${m.check.passed ? "" : " CHECK FAILED"}</text>`,
      );
      y += barHeight + gap;
    }
    y += groupGap;
  }
  const title = `Quartermaster vs. alternatives: operations/s (${report.startedAt.slice(0, 16)}Z, load ${report.loadAverageStart})`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="18" font-size="14" font-weight="bold">${title}</text>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}

export function renderMarkdown(report: CompareReport, svgName: string): string {
  const workloads = [...new Set(report.measurements.map((m) => m.workload))];
  const s = report.settings;
  return [
    `# bench:compare ${report.startedAt}${report.smoke ? " (smoke)" : ""}`,
    "",
    `Machine: ${report.pinning}. Load average (1/5/15 min) at the start ${report.loadAverageStart}, at the end ${report.loadAverageEnd}: ` +
      "other work shares this machine, so absolute figures drift; compare the ratios, which come from one run.",
    `Each workload: ${s["durationMs"]} ms measured per contender, ${s["concurrency"]} callers over ${s["sessions"]} HTTP/2 sessions (ReserveBatch: ${s["batchConcurrency"]} callers of 1000 items), ` +
      `${fixed(s["skuCount"] ?? 0)} SKUs for uniform and Zipf(1.1), ${fixed(s["checkoutSkus"] ?? 0)} for checkouts. Every answer is durable except Redis without persistence and echo` +
      (report.measurements.some((m) => m.contender === "qm-cluster")
        ? "; qm-cluster's journal is JetStream on Debian's nats-server 2.9, which acknowledges a publish before its file store syncs (no `sync_interval: always` before 2.10), so its answers survive a process crash, not a power loss."
        : "."),
    "",
    "## Goals",
    "",
    `Each workload ran in ${s["rounds"] ?? 1} rounds of ${fixed((s["durationMs"] ?? 0) / (s["rounds"] ?? 1))} ms after a warmup of ${s["warmupMs"]} ms (ReserveBatch rounds: none, measured from their first call, since their capped calls last about a second); each round went through every contender once, with all of them running, idle but for the one measured. ` +
      "A ratio is the median of the per-round ratios (contenders of one round ran seconds apart), with their range; ops/s is the median over rounds. " +
      "Each family of workloads (hot and batch-hot; uniform and Zipf; checkout and batch-uniform) started every contender afresh on its own data.",
    "",
    ...(noise(report).length === 0 ? [] : [`Noise of this run: ${noise(report).join("; ")}. A ratio whose range crosses its goal is not a verdict.`, ""]),
    ...goals(report),
    "",
    ...(report.failures.length === 0 ? [] : ["## Failures", "", ...report.failures.map((f) => `- ${f}`), ""]),
    `![operations per second](${svgName})`,
    "",
    ...workloads.flatMap((w) => [`## ${w}`, "", ...table(report, w), ""]),
    "How to read it: CPU is user + system time of every process of the contender (its gRPC server, its database with all its backends) over the generator's",
    "whole run, divided by the operations completed in it, plus the generator's own CPU over the measured window. \"generator core busy\" is the whole",
    "core the generator is pinned to (other users' work on it included); below 100% the generator was not the bottleneck. The check compares the",
    "stock the contender holds after the run with the successes the generator counted (successes + final stock = initial stock) and counts SKUs",
    "with more reserved and committed than on hand. \"server core\" is the contender's CPU over the generator's whole run, except for ReserveBatch",
    "rows (no warmup, calls lasting about a second), where it is over the calls' window; the whole core's share in brackets is over the whole run.",
    "",
  ].join("\n");
}

/** Writes compare-<date>.md, .json and .svg into outDir; returns the Markdown file's path. */
export function writeReport(report: CompareReport, outDir: string): string {
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = report.startedAt.slice(0, 16).replace(/[:]/g, "").replace("T", "-");
  const base = path.join(outDir, `compare-${stamp}${report.smoke ? "-smoke" : ""}`);
  const svgName = `${path.basename(base)}.svg`;
  fs.writeFileSync(`${base}.svg`, renderSvg(report));
  fs.writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(`${base}.md`, renderMarkdown(report, svgName));
  return `${base}.md`;
}
