// The results of bench/compare.ts: a Markdown file that states each ratio of
// the run and where a goal is missed, the raw figures as JSON, and an SVG
// chart drawn here (no charting dependency for one bar chart).

import fs from "node:fs";
import path from "node:path";

export interface Measurement {
  readonly contender: string;
  readonly workload: string;
  /** Reservations, or checkouts, per second in the measured window (a batch call counts its items). */
  readonly opsPerSecond: number;
  readonly callsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly ok: number;
  readonly errors: number;
  readonly firstError: string | null;
  /** CPU ms per 1000 operations: the server and the database over the generator's whole run, the generator over its window. */
  readonly cpuMsPer1000: { readonly server: number; readonly database: number; readonly generator: number };
  readonly serverCorePercent: number;
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
  qmIdleRssBytes: number | null;
  /** Of it, private memory (heaps) and resident pages of LMDB's memory map, which the kernel may drop. */
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
  "echo-after": "#bdbdbd",
  qm: "#2e7d32",
  "qm-cluster": "#81c784",
};

function find(report: CompareReport, contender: string, workload: string): Measurement | undefined {
  return report.measurements.find((m) => m.contender === contender && m.workload === workload);
}

function fixed(value: number, digits = 0): string {
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

type Figure = Pick<Measurement, "opsPerSecond">;

function ratio(a: Figure | undefined, b: Figure | undefined): number | null {
  return a === undefined || b === undefined || b.opsPerSecond === 0 ? null : a.opsPerSecond / b.opsPerSecond;
}

/** The echo baseline of a workload: the mean of the runs before and after the others. */
function echoOf(report: CompareReport, workload: string): Figure | undefined {
  const runs = [find(report, "echo", workload), find(report, "echo-after", workload)].filter((m): m is Measurement => m !== undefined);
  if (runs.length === 0) return undefined;
  return { opsPerSecond: runs.reduce((sum, m) => sum + m.opsPerSecond, 0) / runs.length };
}

function echoDrift(report: CompareReport): string[] {
  const out: string[] = [];
  for (const w of ["hot", "uniform", "zipf"]) {
    const before = find(report, "echo", w);
    const after = find(report, "echo-after", w);
    const mean = echoOf(report, w);
    if (before === undefined || after === undefined || mean === undefined || mean.opsPerSecond === 0) continue;
    out.push(`${w} ${fixed((Math.abs(after.opsPerSecond - before.opsPerSecond) / mean.opsPerSecond) * 100)}%`);
  }
  return out;
}

/** Above this share of its core the server, not the machine, limited the run. */
const SERVER_SATURATED_PERCENT = 85;

/** Why a Quartermaster figure is what it is, from what the run measured. */
function why(m: Measurement | undefined, echo: Figure | undefined): string {
  if (m === undefined) return "";
  const perOpUs = m.cpuMsPer1000.server;
  const limits =
    m.serverCorePercent < SERVER_SATURATED_PERCENT
      ? `the server used only ${fixed(m.serverCorePercent)}% of its core, so it waited (on fsync, or for a core other work held: the generator's core was ${m.generatorCoreBusyPercent === null ? "?" : fixed(m.generatorCoreBusyPercent)}% busy)`
      : `the server was CPU-bound (${fixed(m.serverCorePercent)}% of its core)`;
  const echoNote = echo === undefined ? "" : `, echo ${fixed(echo.opsPerSecond)}/s`;
  return ` Why: ${limits}; ${fixed(perOpUs)} µs of server CPU per operation${echoNote}.`;
}

function goalLine(label: string, value: number | null, goal: number, unit: "x" | "%", reason = ""): string {
  if (value === null) return `- ${label}: not measured in this run.`;
  const shown = unit === "%" ? `${fixed(value * 100)}%` : `${value.toFixed(2)}x`;
  const wanted = unit === "%" ? `${fixed(goal * 100)}%` : `${goal.toFixed(1)}x`;
  return `- ${label}: **${shown}** (goal ≥ ${wanted}): ${value >= goal ? "met" : `**missed**.${reason}`}${value >= goal ? "." : ""}`;
}

function goals(report: CompareReport): string[] {
  const qmHot = find(report, "qm", "hot");
  const lines = [
    goalLine("hot SKU, Quartermaster / echo", ratio(qmHot, echoOf(report, "hot")), GOAL_HOT_VS_ECHO, "%", why(qmHot, echoOf(report, "hot"))),
    goalLine("hot SKU, Quartermaster / Redis appendfsync always", ratio(qmHot, find(report, "redis-aof", "hot")), GOAL_HOT_VS_REDIS_AOF, "x", why(qmHot, undefined)),
    goalLine("100,000 SKUs uniform, Quartermaster / echo", ratio(find(report, "qm", "uniform"), echoOf(report, "uniform")), GOAL_CATALOGUE_VS_ECHO, "%", why(find(report, "qm", "uniform"), echoOf(report, "uniform"))),
    goalLine("100,000 SKUs Zipf(1.1), Quartermaster / echo", ratio(find(report, "qm", "zipf"), echoOf(report, "zipf")), GOAL_CATALOGUE_VS_ECHO, "%", why(find(report, "qm", "zipf"), echoOf(report, "zipf"))),
  ];
  const rss = report.qmIdleRssBytes;
  lines.push(
    rss === null
      ? "- idle memory after the catalogue runs: not measured in this run."
      : `- idle memory after the catalogue runs (VmRSS once actors passivated): **${fixed(rss / 1024 / 1024)} MiB** (goal < 512 MiB): ${rss < IDLE_RSS_BUDGET_BYTES ? "met" : "**missed**"}; ` +
          `of it ${fixed((report.qmIdleAnonBytes ?? 0) / 1024 / 1024)} MiB private (heaps) and ${fixed((report.qmIdleFileBytes ?? 0) / 1024 / 1024)} MiB resident pages of LMDB's map, which the kernel may drop.`,
  );
  const checkout = ratio(find(report, "qm", "checkout"), find(report, "pg", "checkout"));
  lines.push(checkout === null ? "- checkouts, Quartermaster / PostgreSQL: not measured in this run." : `- checkouts, Quartermaster / PostgreSQL: **${checkout.toFixed(2)}x** (no numeric goal).`);
  for (const w of ["batch-hot", "batch-uniform"]) {
    const m = find(report, "qm", w);
    lines.push(
      m === undefined
        ? `- ReserveBatch ${w}: not measured in this run.`
        : `- ReserveBatch ${w}: **${fixed(m.opsPerSecond)} reservations/s** (goal ≥ ${fixed(GOAL_BATCH_OPS)}): ${m.opsPerSecond >= GOAL_BATCH_OPS ? "met." : `**missed**.${why(m, undefined)}`}`,
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
        : `- 3-node cluster / embedded, ${m.workload}: **${ratio(m, embedded)?.toFixed(2) ?? "?"}x** throughput; ${cpu}, ` +
            `**${(total(m) / Math.max(1e-9, total(embedded))).toFixed(2)}x** the embedded node's (no numeric goal; all on one core, so a cluster here buys availability, not throughput).`,
    );
  }
  return out;
}

function table(report: CompareReport, workload: string): string[] {
  const rows = report.measurements.filter((m) => m.workload === workload);
  const echo = echoOf(report, workload);
  const out = [
    "| contender | ops/s | vs echo | p50 ms | p99 ms | p999 ms | CPU s / 1000 ops (server + db + generator) | server core | generator core busy (its own share) | errors | check |",
    "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|",
  ];
  for (const m of rows) {
    const c = m.cpuMsPer1000;
    const total = (c.server + c.database + c.generator) / 1000;
    const vsEcho = ratio(m, echo);
    out.push(
      `| ${m.contender} | ${fixed(m.opsPerSecond)} | ${vsEcho === null ? "–" : `${fixed(vsEcho * 100)}%`} | ${m.p50Ms.toFixed(2)} | ${m.p99Ms.toFixed(2)} | ${m.p999Ms.toFixed(2)} | ` +
        `${total.toFixed(3)} (${(c.server / 1000).toFixed(3)} + ${(c.database / 1000).toFixed(3)} + ${(c.generator / 1000).toFixed(3)}) | ${fixed(m.serverCorePercent)}% | ` +
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
    `Each run: ${s["warmupMs"]} ms warmup, ${s["durationMs"]} ms measured, ${s["concurrency"]} callers over ${s["sessions"]} HTTP/2 sessions (ReserveBatch: ${s["batchConcurrency"]} callers of 1000 items), ` +
      `${fixed(s["skuCount"] ?? 0)} SKUs for uniform and Zipf(1.1), ${fixed(s["checkoutSkus"] ?? 0)} for checkouts. Every answer is durable except Redis without persistence and echo` +
      (report.measurements.some((m) => m.contender === "qm-cluster")
        ? "; qm-cluster's journal is JetStream on Debian's nats-server 2.9, which acknowledges a publish before its file store syncs (no `sync_interval: always` before 2.10), so its answers survive a process crash, not a power loss."
        : "."),
    "",
    "## Goals",
    "",
    "Ratios against echo use the mean of the echo runs before and after the others" +
      (echoDrift(report).length === 0 ? "." : `; echo moved by ${echoDrift(report).join(", ")} between them, which is the noise of this run.`),
    "",
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
    "with more reserved and committed than on hand.",
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
