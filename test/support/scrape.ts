// GET /metrics with a chosen Accept header, and the samples of the answer.

import { expect } from "chai";

/** What Prometheus 2.x sends when it may scrape OpenMetrics. */
export const PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

export interface Scrape {
  readonly contentType: string;
  readonly text: string;
}

export async function scrape(metricsAddr: string, accept?: string): Promise<Scrape> {
  const res = await fetch(`http://${metricsAddr}/metrics`, accept === undefined ? {} : { headers: { accept } });
  expect(res.status).to.equal(200);
  return { contentType: res.headers.get("content-type") ?? "", text: await res.text() };
}

/** The value of one series (name plus exact label text), or undefined when absent. */
export function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  if (line === undefined) return undefined;
  return Number(line.slice(series.length + 1).split(" ")[0]);
}

/** The value of one series, failing the test when it is absent. */
export async function valueOf(metricsAddr: string, series: string): Promise<number> {
  const { text } = await scrape(metricsAddr);
  const value = sample(text, series);
  if (value === undefined) throw new Error(`${series} is not served`);
  return value;
}

/** Families (# TYPE lines) served, by name. */
export function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m !== null) out.set(m[1] as string, m[2] as string);
  }
  return out;
}

/** Every metric name of metrics_contract.md that the issue added, with its type (classic text names). */
export const CONTRACT_ADDED: readonly (readonly [string, string])[] = [
  ["qm_mailbox_wait_seconds", "histogram"],
  ["qm_mailbox_depth_max", "gauge"],
  ["qm_mailbox_capacity", "gauge"],
  ["qm_mailbox_messages", "gauge"],
  ["qm_mailbox_rejections_total", "counter"],
  ["qm_actor_activations_total", "counter"],
  ["qm_actor_passivations_total", "counter"],
  ["qm_reservations_total", "counter"],
  ["qm_partitions_owned", "gauge"],
  ["qm_partitions_unowned", "gauge"],
  ["qm_partition_ownership_changes_total", "counter"],
  ["qm_lease_renewal_duration_seconds", "histogram"],
  ["qm_lease_renewal_failures_total", "counter"],
  ["qm_lease_lost_total", "counter"],
  ["qm_nats_ask_duration_seconds", "histogram"],
  ["qm_nats_ask_timeouts_total", "counter"],
  ["qm_breaker_state", "gauge"],
];

/** The metrics of the contract that were there before, which the rules use too. */
export const CONTRACT_EXISTING: readonly (readonly [string, string])[] = [
  ["qm_rpc_duration_seconds", "histogram"],
  ["qm_actor_turn_messages", "histogram"],
  ["qm_journal_commit_duration_seconds", "histogram"],
  ["qm_journal_commit_appends", "histogram"],
  ["qm_saga_steps_total", "counter"],
  ["qm_saga_steps_parked_total", "counter"],
  ["qm_reservations_expired_total", "counter"],
  ["qm_orders_expired_total", "counter"],
  ["qm_fencing_conflicts_total", "counter"],
  ["qm_grpc_edge_drops_total", "counter"],
  ["qm_journal_commits_total", "counter"],
  ["qm_journal_appends_total", "counter"],
  ["qm_journal_events_total", "counter"],
  ["qm_journal_append_wait_seconds_total", "counter"],
  ["qm_actor_faults_total", "counter"],
  ["qm_actors_active", "gauge"],
  ["qm_ready", "gauge"],
  ["qm_build_info", "gauge"],
  ["qm_process_cpu_seconds_total", "counter"],
];
