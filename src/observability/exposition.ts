// The text of GET /metrics, in either format a scraper may ask for: the
// classic Prometheus text (0.0.4) or OpenMetrics 1.0, which alone carries
// exemplars (the trace id beside a latency bucket).
//
// prom-client renders one format per registry, and rendering OpenMetrics
// renames its counters in place (it strips `_total` from the metric object
// itself), so one registry cannot serve both. We render both here from the
// same sample data instead, which also lets the histograms the hot path feeds
// (ScrapeHistogram) be rendered beside prom-client's.

export const PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8";
export const OPENMETRICS_TEXT = "application/openmetrics-text; version=1.0.0; charset=utf-8";

export interface Exemplar {
  readonly labelSet: Readonly<Record<string, string | number>>;
  readonly value: number;
  /** Seconds since the epoch. */
  readonly timestamp: number;
}

/** One sample line, as prom-client's get() describes it. */
export interface Sample {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  /** The sample's own name when it differs from the family's (a histogram's _bucket, _sum, _count). */
  readonly metricName?: string;
  readonly exemplar?: Exemplar | null;
}

export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly values: readonly Sample[];
}

/**
 * Whether an Accept header prefers OpenMetrics to the classic text, by its
 * q-values (Prometheus sends `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*\/*;q=0.1`).
 * A missing header, or one that never names OpenMetrics, gets the classic text.
 */
export function wantsOpenMetrics(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  let openMetrics = 0;
  let text = 0;
  for (const range of accept.split(",")) {
    const [type = "", ...params] = range.split(";").map((part) => part.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith("q="));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!Number.isFinite(q)) continue;
    if (type === "application/openmetrics-text") openMetrics = Math.max(openMetrics, q);
    else if (type === "text/plain" || type === "text/*" || type === "*/*") text = Math.max(text, q);
  }
  return openMetrics > 0 && openMetrics >= text;
}

export function renderExposition(families: readonly Family[], openMetrics: boolean): string {
  const out: string[] = [];
  for (const family of families) {
    const counter = family.type === "counter";
    // OpenMetrics names a counter family without the suffix its samples carry.
    const name = openMetrics && counter ? family.name.replace(/_total$/, "") : family.name;
    out.push(`# HELP ${name} ${escapeHelp(family.help)}`, `# TYPE ${name} ${family.type}`);
    for (const sample of family.values) {
      const sampleName = sample.metricName ?? (openMetrics && counter ? `${name}_total` : name);
      let line = `${sampleName}${labelText(sample.labels)} ${formatValue(sample.value)}`;
      const exemplar = sample.exemplar;
      if (openMetrics && exemplar !== undefined && exemplar !== null) {
        line += ` # ${labelText(exemplar.labelSet) || "{}"} ${formatValue(exemplar.value)} ${exemplar.timestamp}`;
      }
      out.push(line);
    }
  }
  if (openMetrics) out.push("# EOF");
  return `${out.join("\n")}\n`;
}

function labelText(labels: Readonly<Record<string, string | number>>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(labels)) {
    const text = typeof value === "number" ? formatValue(value) : value;
    parts.push(`${key}="${text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`);
  }
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}
