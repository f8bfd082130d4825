// What the actor runtime reports per kind (activations, passivations, full
// mailboxes, mailbox waits) and what a scrape reads of its mailboxes, on a
// real LMDB journal; and the exposition of those numbers in both formats.

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import pino from "pino";
import { type ActorKindObserver, ActorSystem } from "../../src/actors/runtime/actor_system";
import type { ActorBehavior } from "../../src/actors/runtime/behavior";
import { systemClock } from "../../src/clock";
import { QmError } from "../../src/errors";
import { LmdbJournal } from "../../src/journal/lmdb_journal";
import { MAILBOX_DEPTH_MAX } from "../../src/limits";
import { renderExposition, wantsOpenMetrics } from "../../src/observability/exposition";
import { Metrics } from "../../src/observability/metrics";
import { ScrapeHistogram } from "../../src/observability/scrape_histogram";
import { pollUntil } from "../support/metrics";

class CountingObserver implements ActorKindObserver {
  activations = 0;
  passivations = 0;
  rejections = 0;
  waits: number[] = [];
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
    this.waits.push(seconds);
  }
}

const counter: ActorBehavior<{ n: number }, "inc"> = {
  kind: "counter",
  initialState: () => ({ n: 0 }),
  applyEvent: (state) => {
    state.n++;
  },
  toSnapshot: (s) => s,
  fromSnapshot: (_k, s) => s as { n: number },
  snapshotWeight: () => 1,
  wakeAtMs: () => null,
  notFound: (key) => new QmError("NOT_FOUND", `counter ${key} not found`),
  handle(ctx) {
    ctx.emit({});
    return ctx.state.n;
  },
};

describe("actor runtime metrics", function () {
  this.timeout(30_000);
  let dir: string;
  let journal: LmdbJournal;
  let system: ActorSystem;
  const observed = new Map<string, CountingObserver>();

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "qm-runtime-metrics-"));
    journal = new LmdbJournal({ path: dir, auditRetention: { maxAgeMs: 1e12, maxPerActor: 10 }, clock: systemClock });
    await journal.open();
    observed.clear();
    system = new ActorSystem({
      journal,
      clock: systemClock,
      logger: pino({ level: "silent" }),
      behaviors: [counter as ActorBehavior<unknown, unknown>],
      idleMs: 50,
      timerTickMs: 0,
      observer: {
        actorKind: (kind) => {
          const o = new CountingObserver();
          observed.set(kind, o);
          return o;
        },
      },
    });
    await system.start();
  });

  afterEach(async () => {
    await system.stop();
    await journal.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("asks for one observer per kind at construction, counts an activation per actor and a wait per message", async () => {
    const o = observed.get("counter");
    expect([...observed.keys()]).to.deep.equal(["counter"]);
    await Promise.all([system.ask("counter/a", "inc"), system.ask("counter/a", "inc"), system.ask("counter/b", "inc")]);
    expect(o?.activations).to.equal(2);
    expect(o?.waits.length).to.equal(3);
    for (const w of o?.waits ?? []) expect(w).to.be.within(0, 5);
  });

  it("counts a passivation for every actor that leaves memory, so activations minus passivations is the count in memory", async () => {
    const o = observed.get("counter");
    await Promise.all([system.ask("counter/a", "inc"), system.ask("counter/b", "inc")]);
    expect((o?.activations ?? 0) - (o?.passivations ?? 0)).to.equal(system.activeCount);
    // Idle for 50 ms: passivated within a couple of sweeps.
    expect(await pollUntil(async () => system.activeCount === 0, Date.now() + 5_000)).to.equal(true);
    expect(o?.passivations).to.equal(2);
    await system.ask("counter/a", "inc");
    expect(o?.activations).to.equal(3);
    expect((o?.activations ?? 0) - (o?.passivations ?? 0)).to.equal(system.activeCount);
  });

  it("counts the message refused by a full mailbox, and a scrape sees the deepest mailbox and the total queued", async () => {
    const o = observed.get("counter");
    // Turns start on a later tick, so everything asked now is queued at once.
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < MAILBOX_DEPTH_MAX; i++) pending.push(system.ask("counter/full", "inc"));
    for (let i = 0; i < 3; i++) pending.push(system.ask("counter/other", "inc"));
    const refused = await system.ask("counter/full", "inc").then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).to.be.instanceOf(QmError).with.property("code", "OVERLOADED");
    expect(o?.rejections).to.equal(1);
    expect(system.mailboxStats()).to.deep.equal({ depthMax: MAILBOX_DEPTH_MAX, messages: MAILBOX_DEPTH_MAX + 3 });
    await Promise.all(pending);
    expect(system.mailboxStats()).to.deep.equal({ depthMax: 0, messages: 0 });
    expect(o?.waits.length).to.equal(MAILBOX_DEPTH_MAX + 3);
  });
});

describe("metrics exposition", () => {
  it("prefers OpenMetrics only when the Accept header ranks it at least as high as the classic text", () => {
    expect(wantsOpenMetrics(undefined)).to.equal(false);
    expect(wantsOpenMetrics("*/*")).to.equal(false);
    expect(wantsOpenMetrics("text/plain;version=0.0.4")).to.equal(false);
    expect(
      wantsOpenMetrics("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    ).to.equal(true);
    expect(wantsOpenMetrics("text/plain;q=1,application/openmetrics-text;q=0.5")).to.equal(false);
    expect(wantsOpenMetrics("application/openmetrics-text;q=0")).to.equal(false);
  });

  it("renders a counter with _total in both formats, the OpenMetrics family without it, exemplars and # EOF only in OpenMetrics", () => {
    const families = [
      { name: "qm_x_total", help: 'a "help"\\', type: "counter", values: [{ labels: { outcome: 'o"k' }, value: 3 }] },
      {
        name: "qm_h",
        help: "h",
        type: "histogram",
        values: [
          { labels: { le: 0.5 }, value: 1, metricName: "qm_h_bucket", exemplar: { labelSet: { trace_id: "ab" }, value: 0.25, timestamp: 1700000000.5 } },
          { labels: { le: "+Inf" }, value: 1, metricName: "qm_h_bucket" },
        ],
      },
    ];
    expect(renderExposition(families, false)).to.equal(
      ["# HELP qm_x_total a \"help\"\\\\", "# TYPE qm_x_total counter", 'qm_x_total{outcome="o\\"k"} 3', "# HELP qm_h h", "# TYPE qm_h histogram", 'qm_h_bucket{le="0.5"} 1', 'qm_h_bucket{le="+Inf"} 1', ""].join("\n"),
    );
    expect(renderExposition(families, true)).to.equal(
      [
        "# HELP qm_x a \"help\"\\\\",
        "# TYPE qm_x counter",
        'qm_x_total{outcome="o\\"k"} 3',
        "# HELP qm_h h",
        "# TYPE qm_h histogram",
        'qm_h_bucket{le="0.5"} 1 # {trace_id="ab"} 0.25 1700000000.5',
        'qm_h_bucket{le="+Inf"} 1',
        "# EOF",
        "",
      ].join("\n"),
    );
  });

  it("accumulates a scrape-time histogram into cumulative buckets, a sum and a count", () => {
    const h = new ScrapeHistogram("qm_w_seconds", "w", "kind", [0.001, 0.01]);
    const series = h.seriesOf("sku");
    for (const v of [0.0005, 0.001, 0.005, 2]) series.observe(v);
    expect(h.family().values).to.deep.equal([
      { labels: { le: 0.001, kind: "sku" }, value: 2, metricName: "qm_w_seconds_bucket" },
      { labels: { le: 0.01, kind: "sku" }, value: 3, metricName: "qm_w_seconds_bucket" },
      { labels: { le: "+Inf", kind: "sku" }, value: 4, metricName: "qm_w_seconds_bucket" },
      { labels: { kind: "sku" }, value: 2.0065, metricName: "qm_w_seconds_sum" },
      { labels: { kind: "sku" }, value: 4, metricName: "qm_w_seconds_count" },
    ]);
  });

  it("keeps the classic text's counter names after rendering OpenMetrics (prom-client renames them in place)", async () => {
    const metrics = new Metrics({ journalStats: () => ({ commits: 7, appends: 9, events: 11, queueWaitSeconds: 0.25 }), activeActors: () => 0, actorFaults: () => 0 });
    metrics.reservation("reserved");
    metrics.reservation("reserved");
    metrics.natsAsk("timeout", 10);
    await metrics.render(true);
    const classic = await metrics.render(false);
    expect(classic).to.include("\nqm_journal_commits_total 7\n");
    expect(classic).to.include("\nqm_journal_append_wait_seconds_total 0.25\n");
    expect(classic).to.include('\nqm_reservations_total{outcome="reserved"} 2\n');
    expect(classic).to.include('\nqm_reservations_total{outcome="replayed"} 0\n');
    expect(classic).to.include('\nqm_nats_ask_duration_seconds_count{outcome="timeout"} 1\n');
    expect(classic).to.include("\nqm_nats_ask_timeouts_total 1\n");
    const open = await metrics.render(true);
    expect(open).to.include("\n# TYPE qm_journal_commits counter\nqm_journal_commits_total 7\n");
  });
});
