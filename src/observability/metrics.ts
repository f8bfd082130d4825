// Prometheus metrics. The journal's counters are read at scrape time, so the
// hot path pays nothing for them; RPC and turn metrics are observed per call,
// the rest as the node's parts report it (NodeObserver in observer.ts).

import http from "node:http";
import type { AddressInfo } from "node:net";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { JournalStats } from "../journal/journal";
import type { JournalIntegrityStats } from "../journal/lmdb_journal";
import type { Lifecycle } from "../lifecycle";
import { VERSION } from "../version";

export interface MetricsSources {
  journalStats(): JournalStats;
  activeActors(): number;
  actorFaults(): number;
  /** Absent for a journal without integrity counters. */
  journalIntegrity?(): JournalIntegrityStats;
  /** True while health answers SERVING; without it qm_ready reads 0. */
  ready?(): boolean;
  /** Defaults to package.json's version. */
  readonly version?: string;
}

/** Status names by number, so the `code` label reads FAILED_PRECONDITION, not 9. */
const STATUS_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, value] of Object.entries(GrpcStatus)) if (typeof value === "number") names[value] = name;
  return names;
})();

export class Metrics implements Lifecycle {
  readonly name = "metrics";
  readonly registry = new Registry();
  private readonly rpcSeconds: Histogram<"method" | "code">;
  private readonly turnMessages: Histogram<"kind">;
  private readonly commitSeconds: Histogram;
  private readonly commitAppends: Histogram;
  private readonly sagaSteps: Counter<"step" | "outcome">;
  private readonly sagaParked: Counter<"step">;
  private readonly holdsExpired: Counter;
  private readonly ordersExpired: Counter;
  private readonly fencingConflicts: Counter;
  private readonly edgeDrops: Counter<"reason">;
  private server: http.Server | undefined;
  private bound = "";

  /** `listen` is host:port for GET /metrics (port 0 picks one); start() binds it. */
  constructor(
    sources: MetricsSources,
    private readonly listen = "",
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: "qm_" });
    const registers = [this.registry];
    this.rpcSeconds = new Histogram({
      name: "qm_rpc_duration_seconds",
      help: "gRPC call latency by method and status code name",
      labelNames: ["method", "code"],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers,
    });
    this.turnMessages = new Histogram({
      name: "qm_actor_turn_messages",
      help: "messages handled per actor turn (the group-commit batch)",
      labelNames: ["kind"],
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers,
    });
    this.commitSeconds = new Histogram({
      name: "qm_journal_commit_duration_seconds",
      help: "time of one durable journal write (transaction and fsync)",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers,
    });
    this.commitAppends = new Histogram({
      name: "qm_journal_commit_appends",
      help: "actor appends carried by one durable journal write",
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
      registers,
    });
    this.sagaSteps = new Counter({
      name: "qm_saga_steps_total",
      help: "order saga step attempts by step and outcome",
      labelNames: ["step", "outcome"],
      registers,
    });
    this.sagaParked = new Counter({
      name: "qm_saga_steps_parked_total",
      help: "order saga steps parked: attempts ran out, or a compensation met an error that retrying cannot fix (each waits for a request to resume it)",
      labelNames: ["step"],
      registers,
    });
    this.holdsExpired = new Counter({ name: "qm_reservations_expired_total", help: "reservation holds released at their expiry", registers });
    this.ordersExpired = new Counter({ name: "qm_orders_expired_total", help: "unpaid orders expired at their payment deadline", registers });
    this.fencingConflicts = new Counter({
      name: "qm_fencing_conflicts_total",
      help: "journal appends refused because the actor's journal moved on (another or a stale writer)",
      registers,
    });
    this.edgeDrops = new Counter({
      name: "qm_grpc_edge_drops_total",
      help: "connections closed and calls reset by the gRPC edge, by reason (src/grpc/edge.ts)",
      labelNames: ["reason"],
      registers,
    });
    const counterFrom = (name: string, help: string, read: () => number): void => {
      new Counter({
        name,
        help,
        registers,
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
      registers,
      collect() {
        this.set(sources.activeActors());
      },
    });
    new Gauge({
      name: "qm_ready",
      help: "1 while the node serves (health SERVING), 0 while it recovers or drains",
      registers,
      collect() {
        this.set(sources.ready?.() === true ? 1 : 0);
      },
    });
    new Gauge({
      name: "qm_build_info",
      help: "always 1; the labels say which build runs",
      labelNames: ["version", "node_version"],
      registers,
    })
      .labels(sources.version ?? VERSION, process.versions.node)
      .set(1);
  }

  /** The bound host:port once started; empty when metrics are not served. */
  get address(): string {
    return this.bound;
  }

  observeCall(method: string, code: number, seconds: number): void {
    this.rpcSeconds.labels(method, STATUS_NAMES[code] ?? String(code)).observe(seconds);
  }

  observeTurn(kind: string, messages: number): void {
    this.turnMessages.labels(kind).observe(messages);
  }

  journalCommit(seconds: number, appends: number): void {
    this.commitSeconds.observe(seconds);
    this.commitAppends.observe(appends);
  }

  sagaStep(step: string, outcome: string): void {
    this.sagaSteps.labels(step, outcome).inc();
    if (outcome === "parked") this.sagaParked.labels(step).inc();
  }

  reservationsExpired(count: number): void {
    this.holdsExpired.inc(count);
  }

  orderExpired(): void {
    this.ordersExpired.inc();
  }

  fencingConflict(): void {
    this.fencingConflicts.inc();
  }

  observeEdgeDrop(reason: string): void {
    this.edgeDrops.labels(reason).inc();
  }

  /** Serves GET /metrics at the configured address; nothing when it is empty. */
  async start(): Promise<void> {
    if (this.listen === "" || this.server !== undefined) return;
    const host = this.listen.slice(0, this.listen.lastIndexOf(":"));
    const port = Number(this.listen.slice(this.listen.lastIndexOf(":") + 1));
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
      server.listen(port, host.replace(/^\[|\]$/g, ""), () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.bound = `${host}:${(server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.bound = "";
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
