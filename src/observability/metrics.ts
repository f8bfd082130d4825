// Prometheus metrics. The journal's counters are read at scrape time, so the
// hot path pays nothing for them; RPC and turn metrics are observed per call.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { JournalStats } from "../journal/journal";
import type { JournalIntegrityStats } from "../journal/lmdb_journal";

export interface MetricsSources {
  journalStats(): JournalStats;
  activeActors(): number;
  actorFaults(): number;
  /** Absent for a journal without integrity counters. */
  journalIntegrity?(): JournalIntegrityStats;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly rpcSeconds: Histogram<"method" | "code">;
  private readonly turnMessages: Histogram<"kind">;
  private readonly sagaSteps: Counter<"step" | "outcome">;
  private readonly sagaParked: Counter<"step">;
  private server: http.Server | undefined;

  constructor(sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry, prefix: "qm_" });
    this.rpcSeconds = new Histogram({
      name: "qm_rpc_duration_seconds",
      help: "gRPC call latency by method and status code",
      labelNames: ["method", "code"],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers: [this.registry],
    });
    this.turnMessages = new Histogram({
      name: "qm_actor_turn_messages",
      help: "messages handled per actor turn (the group-commit batch)",
      labelNames: ["kind"],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers: [this.registry],
    });
    this.sagaSteps = new Counter({
      name: "qm_saga_steps_total",
      help: "order saga step attempts by step and outcome",
      labelNames: ["step", "outcome"],
      registers: [this.registry],
    });
    this.sagaParked = new Counter({
      name: "qm_saga_steps_parked_total",
      help: "order saga steps parked: attempts ran out, or a compensation met an error that retrying cannot fix (each waits for a request to resume it)",
      labelNames: ["step"],
      registers: [this.registry],
    });
    const counterFrom = (name: string, help: string, read: () => number): void => {
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    };
    counterFrom("qm_journal_commits_total", "durable journal writes (one fsync each)", () => sources.journalStats().commits);
    counterFrom("qm_journal_appends_total", "actor appends carried by those writes", () => sources.journalStats().appends);
    counterFrom("qm_journal_events_total", "events written", () => sources.journalStats().events);
    const integrity = sources.journalIntegrity?.bind(sources);
    if (integrity !== undefined) {
      counterFrom("qm_journal_corrupt_reads_total", "journal reads that found a damaged record (DATA_LOSS)", () => integrity().corruptReads);
      counterFrom("qm_journal_damaged_actors_total", "distinct actors found with a damaged journal record", () => integrity().damagedActors);
      counterFrom("qm_journal_disk_full_appends_total", "appends refused because the disk was full", () => integrity().diskFullWrites);
    }
    counterFrom("qm_actor_faults_total", "requests failed by a fault in an actor (bugs)", sources.actorFaults);
    new Gauge({
      name: "qm_actors_active",
      help: "actors in memory",
      registers: [this.registry],
      collect() {
        this.set(sources.activeActors());
      },
    });
  }

  observeCall(method: string, code: number, seconds: number): void {
    this.rpcSeconds.labels(method, String(code)).observe(seconds);
  }

  observeTurn(kind: string, messages: number): void {
    this.turnMessages.labels(kind).observe(messages);
  }

  sagaStep(step: string, outcome: string): void {
    this.sagaSteps.labels(step, outcome).inc();
    if (outcome === "parked") this.sagaParked.labels(step).inc();
  }

  /** Serves GET /metrics; returns the bound address. */
  async listen(address: string): Promise<string> {
    const host = address.slice(0, address.lastIndexOf(":"));
    const port = Number(address.slice(address.lastIndexOf(":") + 1));
    const server = http.createServer((req, res) => {
      if (req.method !== "GET" || req.url !== "/metrics") {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (body) => res.writeHead(200, { "content-type": this.registry.contentType }).end(body),
        () => res.writeHead(500).end(),
      );
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host.replace(/^\[|\]$/g, ""), () => resolve());
    });
    return `${host}:${(server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
