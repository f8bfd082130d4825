// Histograms the hot path can afford. prom-client's observe() builds a label
// key string and allocates per call; here a caller holds the series it feeds
// (one per label value, made at set-up), and an observation is a bucket search
// over a few bounds and three additions. The samples are rendered at scrape
// time, in the shape prom-client's get() gives (exposition.ts renders both).

import type { Family, Sample } from "./exposition";

/** Label values of one ScrapeHistogram: actor kinds or ask outcomes, a handful each. */
export const SCRAPE_HISTOGRAM_SERIES_MAX = 64;

export class HistogramSeries {
  /** Per bucket, not cumulative; the last slot is +Inf. */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }

  samples(name: string, labels: Readonly<Record<string, string>>): Sample[] {
    const out: Sample[] = [];
    let cumulative = 0;
    for (let i = 0; i <= this.bounds.length; i++) {
      cumulative += this.counts[i] as number;
      out.push({ labels: { le: i < this.bounds.length ? (this.bounds[i] as number) : "+Inf", ...labels }, value: cumulative, metricName: `${name}_bucket` });
    }
    out.push({ labels, value: this.sum, metricName: `${name}_sum` }, { labels, value: this.count, metricName: `${name}_count` });
    return out;
  }
}

export class ScrapeHistogram {
  private readonly series = new Map<string, HistogramSeries>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelName: string,
    private readonly bounds: readonly number[],
  ) {}

  /** The series of one label value, made on first use; call at set-up, not per observation. */
  seriesOf(labelValue: string): HistogramSeries {
    let series = this.series.get(labelValue);
    if (series === undefined) {
      if (this.series.size >= SCRAPE_HISTOGRAM_SERIES_MAX) throw new Error(`${this.name}: more than ${SCRAPE_HISTOGRAM_SERIES_MAX} label values`);
      series = new HistogramSeries(this.bounds);
      this.series.set(labelValue, series);
    }
    return series;
  }

  family(): Family {
    const values: Sample[] = [];
    for (const [labelValue, series] of this.series) values.push(...series.samples(this.name, { [this.labelName]: labelValue }));
    return { name: this.name, help: this.help, type: "histogram", values };
  }
}
