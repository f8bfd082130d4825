// Prometheus metrics. The journal's counters are read at scrape time, so the
// hot path pays nothing for them; RPC and turn metrics are observed per call,
// the rest as the node's parts report it (NodeObserver in observer.ts).
// What the actor runtime and the SKU actor report per message lands in plain
// numbers and ScrapeHistograms (no label lookup, no allocation), turned into
// samples only when scraped. GET /metrics answers OpenMetrics, with trace
// exemplars, to a scraper that asks for it, and the classic text otherwise.

import http from "node:http";
import type { AddressInfo } from "node:net";
import { status as GrpcStatus } from "@grpc/grpc-js";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ActorKindObserver, MailboxStats } from "../actors/runtime/actor_system";
import type { JournalStats } from "../journal/journal";
import type { JournalIntegrityStats } from "../journal/lmdb_journal";
import type { Lifecycle } from "../lifecycle";
import { MAILBOX_DEPTH_MAX, RATE_LIMITED_TENANT_LABELS_MAX } from "../limits";
import { VERSION } from "../version";
import { type Family, OPENMETRICS_TEXT, PROMETHEUS_TEXT, renderExposition, type Sample, wantsOpenMetrics } from "./exposition";
import { type HistogramSeries, ScrapeHistogram } from "./scrape_histogram";
import { sampledTraceId } from "./tracing";

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
  /** The mailboxes of the actors in memory; absent: both gauges read 0. */
  mailboxes?(): MailboxStats;
  /** Partitions this node serves, and those it sees without an owner. */
  partitions?(): PartitionCounts;
  /** Each remote node's breaker: 0 closed, 1 half-open, 2 open. Absent on the embedded node, which has none. */
  breakers?(): Iterable<readonly [string, number]>;
}

export interface PartitionCounts {
  readonly owned: number;
  readonly unowned: number;
}

export type ReservationOutcome = "reserved" | "insufficient_stock" | "rejected" | "replayed";
const RESERVATION_OUTCOMES: readonly ReservationOutcome[] = ["reserved", "insufficient_stock", "rejected", "replayed"];

export type OwnershipChange = "acquired" | "released" | "lost";
const OWNERSHIP_CHANGES: readonly OwnershipChange[] = ["acquired", "released", "lost"];

/** An ask to another node over NATS: a reply (a result or a domain outcome), a failure, no reply in time, or the node no longer owns the actor. */
export type NatsAskOutcome = "ok" | "error" | "timeout" | "not_owner";

/** One actor kind's counts, bumped by the runtime through ActorKindObserver. */
class KindCounts implements ActorKindObserver {
  activations = 0;
  passivations = 0;
  rejections = 0;

  constructor(private readonly waits: HistogramSeries) {}

  activated(): void {
    this.activations++;
  }

  passivated(): void {
    this.passivations++;
  }

  mailboxRejected(): void {
    this.rejections++;
  }

  mailboxWait(seconds: number): void {
    this.waits.observe(seconds);
  }
}

/** Actor kinds with counts; the runtime asks once per kind it hosts (two today). */
const ACTOR_KINDS_MAX = 64;

/** Status names by number, so the `code` label reads FAILED_PRECONDITION, not 9. */
const STATUS_NAMES: readonly string[] = (() => {
  const names: string[] = [];
  for (const [name, value] of Object.entries(GrpcStatus)) if (typeof value === "number") names[value] = name;
  return names;
})();

export class Metrics implements Lifecycle {
  readonly name = "metrics";
  readonly registry = new Registry();
  /** Label names widened to string: the exemplar's trace_id is a label set of its own. */
  private readonly rpcSeconds: Histogram<string>;
  private readonly commitSeconds: Histogram;
  private readonly commitAppends: Histogram;
  private readonly sagaSteps: Counter<"step" | "outcome">;
  private readonly sagaParked: Counter<"step">;
  private readonly holdsExpired: Counter;
  private readonly ordersExpired: Counter;
  private readonly fencingConflicts: Counter;
  private readonly edgeDrops: Counter<"reason">;
  private readonly kinds = new Map<string, KindCounts>();
  /** Observed once per turn, and across many SKUs every request is a turn of its own: prom-client's label lookup was 0.5% of a Zipf reserve. */
  private readonly turnMessages = new ScrapeHistogram("qm_actor_turn_messages", "messages handled per actor turn (the group-commit batch)", "kind", [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512,
  ]);
  private readonly mailboxWaits = new ScrapeHistogram(
    "qm_mailbox_wait_seconds",
    "time a message waited in its actor's mailbox before its turn began",
    "kind",
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
  );
  private readonly reservations: Record<ReservationOutcome, number> = { reserved: 0, insufficient_stock: 0, rejected: 0, replayed: 0 };
  private readonly ownershipChanges: Counter<"change">;
  private readonly leaseRenewalSeconds: Histogram;
  private readonly leaseRenewalFailures: Counter;
  private readonly leasesLost: Counter;
  private readonly natsAskSeconds = new ScrapeHistogram(
    "qm_nats_ask_duration_seconds",
    "asks to another node over NATS, from request to reply, by outcome: ok, error, timeout, not_owner",
    "outcome",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 10],
  );
  /** Made at once, so every outcome is served (at 0) before the first ask. */
  private readonly natsAskSeries: Record<NatsAskOutcome, HistogramSeries> = {
    ok: this.natsAskSeconds.seriesOf("ok"),
    error: this.natsAskSeconds.seriesOf("error"),
    timeout: this.natsAskSeconds.seriesOf("timeout"),
    not_owner: this.natsAskSeconds.seriesOf("not_owner"),
  };
  private natsAskTimeouts = 0;
  private readonly rateLimitedCalls: Counter<"tenant">;
  private readonly rateLimitFallbacks: Counter;
  /** Tenants that have a label value of their own in qm_rate_limited_total (bounded). */
  private readonly rateLimitedTenants = new Set<string>();
  private server: http.Server | undefined;
  private bound = "";

  /** `listen` is host:port for GET /metrics (port 0 picks one); start() binds it. */
  constructor(
    sources: MetricsSources,
    private readonly listen = "",
  ) {
    collectDefaultMetrics({ register: this.registry, prefix: "qm_" });
    const registers = [this.registry];
    // prom-client refuses exemplars in a classic registry; ours renders both formats (exposition.ts), so they are registered by hand.
    this.rpcSeconds = new Histogram({
      name: "qm_rpc_duration_seconds",
      help: "gRPC call latency by method and status code name",
      labelNames: ["method", "code"],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      enableExemplars: true,
      registers: [],
    });
    this.registry.registerMetric(this.rpcSeconds);
    this.commitSeconds = new Histogram({
      name: "qm_journal_commit_duration_seconds",
      help: "time of one durable journal write (transaction and fsync)",
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      enableExemplars: true,
      registers: [],
    });
    this.registry.registerMetric(this.commitSeconds);
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
    this.rateLimitedCalls = new Counter({
      name: "qm_rate_limited_total",
      help: `calls refused with RATE_LIMITED, by the caller's tenant (the first ${RATE_LIMITED_TENANT_LABELS_MAX} tenants; later ones count as _other)`,
      labelNames: ["tenant"],
      registers,
    });
    this.rateLimitFallbacks = new Counter({
      name: "qm_rate_limit_fallbacks_total",
      help: "rate-limit decisions taken by this node's own bucket because Redis (QM_REDIS_URL) did not answer",
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
    counterFrom("qm_journal_append_wait_seconds_total", "seconds appends waited for a write to take them, summed (embedded journal; 0 in cluster mode)", () => sources.journalStats().queueWaitSeconds ?? 0);
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
    registerActorMetrics(registers, sources, this.kinds, this.reservations);
    const cluster = registerClusterMetrics(registers, sources, () => this.natsAskTimeouts);
    this.ownershipChanges = cluster.ownershipChanges;
    this.leaseRenewalSeconds = cluster.leaseRenewalSeconds;
    this.leaseRenewalFailures = cluster.leaseRenewalFailures;
    this.leasesLost = cluster.leasesLost;
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
    const codeName = STATUS_NAMES[code] ?? String(code);
    // Called while the call's server span is still active: its trace is the exemplar.
    const traceId = sampledTraceId();
    if (traceId === undefined) this.rpcSeconds.labels(method, codeName).observe(seconds);
    else this.rpcSeconds.observe({ labels: { method, code: codeName }, value: seconds, exemplarLabels: { trace_id: traceId } });
  }

  observeTurn(kind: string, messages: number): void {
    this.turnMessages.seriesOf(kind).observe(messages);
  }

  /** `traceId`: a sampled trace of the commit (its own span, or one append it carried), for the exemplar. */
  journalCommit(seconds: number, appends: number, traceId?: string): void {
    this.commitSeconds.observe(traceId === undefined ? { value: seconds } : { value: seconds, exemplarLabels: { trace_id: traceId } });
    this.commitAppends.observe(appends);
  }

  /** The counts of one actor kind, for the runtime to bump; asked once per kind. */
  actorKind(kind: string): ActorKindObserver {
    let counts = this.kinds.get(kind);
    if (counts === undefined) {
      if (this.kinds.size >= ACTOR_KINDS_MAX) throw new Error(`more than ${ACTOR_KINDS_MAX} actor kinds`);
      counts = new KindCounts(this.mailboxWaits.seriesOf(kind));
      this.kinds.set(kind, counts);
    }
    return counts;
  }

  reservation(outcome: ReservationOutcome): void {
    this.reservations[outcome]++;
  }

  partitionChange(change: OwnershipChange): void {
    this.ownershipChanges.labels(change).inc();
  }

  leaseRenewed(seconds: number): void {
    this.leaseRenewalSeconds.observe(seconds);
  }

  leaseRenewalFailed(): void {
    this.leaseRenewalFailures.inc();
  }

  leaseLost(): void {
    this.leasesLost.inc();
  }

  natsAsk(outcome: NatsAskOutcome, seconds: number): void {
    this.natsAskSeries[outcome].observe(seconds);
    if (outcome === "timeout") this.natsAskTimeouts++;
  }

  /** The exposition of every metric: OpenMetrics (with exemplars) or the classic text. */
  async render(openMetrics: boolean): Promise<string> {
    const families: Family[] = [];
    for (const metric of await this.registry.getMetricsAsJSON()) {
      families.push({ name: metric.name, help: metric.help, type: String(metric.type), values: metric.values as readonly Sample[] });
    }
    families.push(this.turnMessages.family(), this.mailboxWaits.family(), this.natsAskSeconds.family());
    return renderExposition(families, openMetrics);
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

  rateLimited(tenant: string): void {
    if (!this.rateLimitedTenants.has(tenant) && this.rateLimitedTenants.size < RATE_LIMITED_TENANT_LABELS_MAX) this.rateLimitedTenants.add(tenant);
    this.rateLimitedCalls.labels(this.rateLimitedTenants.has(tenant) ? tenant : "_other").inc();
  }

  rateLimitFallback(): void {
    this.rateLimitFallbacks.inc();
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
      const openMetrics = wantsOpenMetrics(req.headers.accept);
      this.render(openMetrics).then(
        (body) => res.writeHead(200, { "content-type": openMetrics ? OPENMETRICS_TEXT : PROMETHEUS_TEXT }).end(body),
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

function gaugeFrom(registers: Registry[], name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/** The runtime's counts per actor kind, the mailbox gauges and reservations by outcome: all read at scrape time. */
function registerActorMetrics(
  registers: Registry[],
  sources: MetricsSources,
  kinds: ReadonlyMap<string, KindCounts>,
  reservations: Readonly<Record<ReservationOutcome, number>>,
): void {
  const kindCounter = (name: string, help: string, read: (counts: KindCounts) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ["kind"],
      registers,
      collect() {
        this.reset();
        for (const [kind, counts] of kinds) this.labels(kind).inc(read(counts));
      },
    });
  };
  kindCounter("qm_actor_activations_total", "actors brought into memory (state recovered from the journal), by kind", (c) => c.activations);
  kindCounter("qm_actor_passivations_total", "actors dropped from memory (idle, evicted, handed off or rebuilt), by kind", (c) => c.passivations);
  kindCounter("qm_mailbox_rejections_total", "messages refused because the actor's mailbox was full (OVERLOADED), by kind", (c) => c.rejections);
  const mailboxes = (): MailboxStats => sources.mailboxes?.() ?? { depthMax: 0, messages: 0 };
  gaugeFrom(registers, "qm_mailbox_depth_max", "messages queued in the deepest single mailbox (compare with qm_mailbox_capacity)", () => mailboxes().depthMax);
  gaugeFrom(registers, "qm_mailbox_capacity", "messages one mailbox holds before it refuses more (MAILBOX_DEPTH_MAX)", () => MAILBOX_DEPTH_MAX);
  gaugeFrom(registers, "qm_mailbox_messages", "messages queued across every mailbox", () => mailboxes().messages);
  new Counter({
    name: "qm_reservations_total",
    help: "reservation requests decided by SKU actors, by outcome: reserved, insufficient_stock, rejected (another refusal), replayed (an idempotent repeat)",
    labelNames: ["outcome"],
    registers,
    collect() {
      this.reset();
      for (const outcome of RESERVATION_OUTCOMES) this.labels(outcome).inc(reservations[outcome]);
    },
  });
}

interface ClusterMetrics {
  readonly ownershipChanges: Counter<"change">;
  readonly leaseRenewalSeconds: Histogram;
  readonly leaseRenewalFailures: Counter;
  readonly leasesLost: Counter;
}

/** Partitions, the etcd lease, NATS ask timeouts and breakers; served on the embedded node too (at their idle values). */
function registerClusterMetrics(registers: Registry[], sources: MetricsSources, natsAskTimeouts: () => number): ClusterMetrics {
  const partitions = (): PartitionCounts => sources.partitions?.() ?? { owned: 0, unowned: 0 };
  gaugeFrom(registers, "qm_partitions_owned", "partitions this node owns and serves now", () => partitions().owned);
  gaugeFrom(registers, "qm_partitions_unowned", "partitions this node sees without a serving owner (0 on the embedded node)", () => partitions().unowned);
  const ownershipChanges = new Counter({
    name: "qm_partition_ownership_changes_total",
    help: "partitions this node acquired, released (handed off) or lost (lease lapsed or key deleted)",
    labelNames: ["change"],
    registers,
  });
  for (const change of OWNERSHIP_CHANGES) ownershipChanges.labels(change).inc(0);
  const leaseRenewalSeconds = new Histogram({
    name: "qm_lease_renewal_duration_seconds",
    help: "time from sending an etcd lease keepalive to its answer",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers,
  });
  const leaseRenewalFailures = new Counter({ name: "qm_lease_renewal_failures_total", help: "etcd lease keepalives that failed", registers });
  const leasesLost = new Counter({
    name: "qm_lease_lost_total",
    help: "times this node's etcd lease was lost (expired or revoked) and it stopped serving every partition",
    registers,
  });
  new Counter({
    name: "qm_nats_ask_timeouts_total",
    help: "asks to another node that got no reply within their deadline (outcome unknown)",
    registers,
    collect() {
      this.reset();
      this.inc(natsAskTimeouts());
    },
  });
  new Gauge({
    name: "qm_breaker_state",
    help: "circuit breaker of asks to each peer node: 0 closed, 1 half-open, 2 open",
    labelNames: ["peer"],
    registers,
    collect() {
      this.reset();
      for (const [peer, state] of sources.breakers?.() ?? []) this.labels(peer).set(state);
    },
  });
  return { ownershipChanges, leaseRenewalSeconds, leaseRenewalFailures, leasesLost };
}
