// Reads counters from the service's Prometheus text endpoint. Only what the
// benchmark needs: the sum over all label sets of each sample name.

const SCRAPE_TIMEOUT_MS = 3_000;
/** A scrape larger than this is not a metrics page we understand. */
const SCRAPE_BYTES_MAX = 16 * 1024 * 1024;

/** Sample name -> sum of its values over all label sets. */
export type MetricSums = ReadonlyMap<string, number>;

export function parsePrometheusText(text: string): MetricSums {
  const sums = new Map<string, number>();
  for (const rawLine of text.split("\n")) {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.indexOf(" ");
    const nameEnd = brace >= 0 && (space < 0 || brace < space) ? brace : space;
    if (nameEnd <= 0) continue;
    const name = line.slice(0, nameEnd);
    // Value follows the closing brace (labels may contain spaces) and may be followed by a timestamp.
    const afterLabels = brace >= 0 && brace === nameEnd ? line.slice(line.lastIndexOf("}") + 1) : line.slice(nameEnd);
    const value = Number(afterLabels.trim().split(/\s+/)[0]);
    if (!Number.isFinite(value)) continue;
    sums.set(name, (sums.get(name) ?? 0) + value);
  }
  return sums;
}

/** The sum of one sample over the label sets whose text contains `labels` (all of them when empty), or null when none has it. */
export function sampleSum(text: string, name: string, labels = ""): number | null {
  let total: number | null = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name) || (line[name.length] !== " " && line[name.length] !== "{") || !line.includes(labels)) continue;
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(value)) total = (total ?? 0) + value;
  }
  return total;
}

/** The metrics page's text, or an error when the endpoint does not answer. */
export async function scrapeText(address: string): Promise<{ text: string } | { error: string }> {
  try {
    const response = await fetch(`http://${address}/metrics`, { signal: AbortSignal.timeout(SCRAPE_TIMEOUT_MS) });
    if (!response.ok) return { error: `HTTP ${response.status}` };
    const text = await response.text();
    if (text.length > SCRAPE_BYTES_MAX) return { error: "metrics page too large" };
    return { text };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

/** An error instead of sums when the endpoint does not answer: the caller reports the figure as absent and carries on. */
export async function scrapeMetrics(address: string): Promise<{ sums: MetricSums } | { error: string }> {
  const scraped = await scrapeText(address);
  return "error" in scraped ? scraped : { sums: parsePrometheusText(scraped.text) };
}
