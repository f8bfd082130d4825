// The metrics the alerting rules and the dashboard are written against
// (metrics_contract.md): served by a real server process in both exposition
// formats, with trace exemplars in OpenMetrics, and moving with traffic by
// exactly what the traffic did.

import { Metadata, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { expectFailure, seedSku } from "../support/fixtures";
import { OtlpReceiver } from "../support/otlp_receiver";
import { CONTRACT_ADDED, CONTRACT_EXISTING, families, PROMETHEUS_ACCEPT, sample, scrape, valueOf } from "../support/scrape";
import { call, type Clients, createClients, type ServerProcess, startServer } from "../support/server_process";

const reserved = (outcome: string): string => `qm_reservations_total{outcome="${outcome}"}`;

describe("metrics of the contract on the embedded node (integration)", function () {
  this.timeout(120_000);
  let receiver: OtlpReceiver;
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    // Tracing on, every trace sampled: the exemplars need sampled spans.
    receiver = new OtlpReceiver();
    await receiver.start();
    server = await startServer({
      env: {
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_TRACES_SAMPLER: "always_on",
      },
    });
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
    await receiver?.stop();
  });

  it("serves every metric of the contract in the classic text format, by default", async () => {
    const { contentType, text } = await scrape(server.metricsAddr);
    expect(contentType).to.equal("text/plain; version=0.0.4; charset=utf-8");
    const served = families(text);
    for (const [name, type] of [...CONTRACT_ADDED, ...CONTRACT_EXISTING]) expect(served.get(name), name).to.equal(type);
    expect(text).to.not.include("# EOF");
    expect(text).to.not.match(/ # \{trace_id=/);
  });

  it("serves OpenMetrics to a scraper that asks for it, and the classic text again afterwards", async () => {
    const open = await scrape(server.metricsAddr, PROMETHEUS_ACCEPT);
    expect(open.contentType).to.equal("application/openmetrics-text; version=1.0.0; charset=utf-8");
    expect(open.text.endsWith("# EOF\n")).to.equal(true);
    const served = families(open.text);
    // OpenMetrics names the counter family without _total; its samples carry it.
    expect(served.get("qm_reservations")).to.equal("counter");
    expect(served.get("qm_journal_commits")).to.equal("counter");
    expect(served.has("qm_reservations_total")).to.equal(false);
    expect(sample(open.text, reserved("reserved"))).to.be.a("number");
    expect(served.get("qm_mailbox_wait_seconds")).to.equal("histogram");
    // prom-client renames counters in place when it renders OpenMetrics; the classic text must not lose _total.
    const classic = await scrape(server.metricsAddr, "text/plain;version=0.0.4");
    expect(classic.contentType).to.match(/^text\/plain/);
    expect(families(classic.text).get("qm_journal_commits_total")).to.equal("counter");
    expect(families(classic.text).get("qm_reservations_total")).to.equal("counter");
  });

  it("counts reservations by outcome: exactly N reserved after N reserves, a replay, a refusal for stock, another refusal", async () => {
    await seedSku(c, "mc-res", 10);
    const before = await scrape(server.metricsAddr);
    const at = (outcome: string): number => sample(before.text, reserved(outcome)) ?? Number.NaN;
    const n = 5;
    for (let i = 0; i < n; i++) await call(c.inventory, "reserve", { reservationId: `mc-r${i}`, skuId: "mc-res", quantity: 1, locationId: "", ttl: undefined });
    await call(c.inventory, "reserve", { reservationId: "mc-r0", skuId: "mc-res", quantity: 1, locationId: "", ttl: undefined });
    await expectFailure(call(c.inventory, "reserve", { reservationId: "mc-big", skuId: "mc-res", quantity: 6, locationId: "", ttl: undefined }), GrpcStatus.FAILED_PRECONDITION);
    await expectFailure(call(c.inventory, "reserve", { reservationId: "mc-x", skuId: "mc-unknown", quantity: 1, locationId: "", ttl: undefined }), GrpcStatus.NOT_FOUND);
    const after = (await scrape(server.metricsAddr)).text;
    expect(sample(after, reserved("reserved"))).to.equal(at("reserved") + n);
    expect(sample(after, reserved("replayed"))).to.equal(at("replayed") + 1);
    expect(sample(after, reserved("insufficient_stock"))).to.equal(at("insufficient_stock") + 1);
    expect(sample(after, reserved("rejected"))).to.equal(at("rejected") + 1);
  });

  it("counts an activation per SKU touched and a mailbox wait per message; activations minus passivations is the count in memory", async () => {
    const activations = 'qm_actor_activations_total{kind="sku"}';
    const waits = 'qm_mailbox_wait_seconds_count{kind="sku"}';
    const before = (await scrape(server.metricsAddr)).text;
    for (const id of ["mc-a1", "mc-a2", "mc-a3"]) await seedSku(c, id, 5); // two messages each: upsert, adjust
    const after = (await scrape(server.metricsAddr)).text;
    expect(sample(after, activations)).to.equal((sample(before, activations) ?? Number.NaN) + 3);
    expect(sample(after, waits)).to.equal((sample(before, waits) ?? Number.NaN) + 6);
    let inMemory = 0;
    for (const kind of ["sku", "order"]) {
      inMemory += (sample(after, `qm_actor_activations_total{kind="${kind}"}`) ?? 0) - (sample(after, `qm_actor_passivations_total{kind="${kind}"}`) ?? 0);
    }
    expect(inMemory).to.equal(sample(after, "qm_actors_active"));
    // Nothing queued at rest; the capacity is the mailbox bound.
    expect(sample(after, "qm_mailbox_capacity")).to.equal(4096);
    expect(sample(after, "qm_mailbox_depth_max")).to.equal(0);
    expect(sample(after, "qm_mailbox_messages")).to.equal(0);
    expect(sample(after, 'qm_mailbox_rejections_total{kind="sku"}')).to.equal(0);
  });

  it("reports the embedded node owning every partition, none unowned, and no cluster activity", async () => {
    const { text } = await scrape(server.metricsAddr);
    expect(sample(text, "qm_partitions_owned")).to.equal(256);
    expect(sample(text, "qm_partitions_unowned")).to.equal(0);
    expect(sample(text, 'qm_partition_ownership_changes_total{change="acquired"}')).to.equal(0);
    expect(sample(text, 'qm_nats_ask_duration_seconds_count{outcome="ok"}')).to.equal(0);
    expect(sample(text, "qm_nats_ask_timeouts_total")).to.equal(0);
    expect(sample(text, "qm_lease_renewal_duration_seconds_count")).to.equal(0);
    expect(text).to.not.match(/^qm_breaker_state\{/m);
  });

  it("puts the call's trace id on the RPC latency bucket and a sampled trace on the commit latency bucket, in OpenMetrics only", async () => {
    await seedSku(c, "mc-ex", 5);
    const traceId = "5bf92f3577b34da6a3ce929d0e0e4737";
    const metadata = new Metadata();
    metadata.set("traceparent", `00-${traceId}-00f067aa0ba902b8-01`);
    await call(c.inventory, "reserve", { reservationId: "mc-ex-1", skuId: "mc-ex", quantity: 1, locationId: "", ttl: undefined }, { metadata });
    const { text } = await scrape(server.metricsAddr, PROMETHEUS_ACCEPT);
    const rpc = text.split("\n").filter((l) => l.startsWith("qm_rpc_duration_seconds_bucket{") && l.includes('method="Reserve",code="OK"'));
    expect(rpc.some((l) => l.includes(` # {trace_id="${traceId}"} `)), rpc.join("\n")).to.equal(true);
    const commit = text.split("\n").filter((l) => l.startsWith("qm_journal_commit_duration_seconds_bucket{"));
    expect(commit.some((l) => / # \{trace_id="[0-9a-f]{32}"\} [0-9.e-]+ [0-9.]+$/.test(l)), commit.join("\n")).to.equal(true);
    // The classic text has no exemplar syntax at all (a classic parser would reject it).
    expect((await scrape(server.metricsAddr)).text).to.not.include(" # {");
  });

  it("counts the journal commit histogram for every durable write", async () => {
    const before = await valueOf(server.metricsAddr, "qm_journal_commit_duration_seconds_count");
    await seedSku(c, "mc-j", 5);
    expect(await valueOf(server.metricsAddr, "qm_journal_commit_duration_seconds_count")).to.be.at.least(before + 2);
  });
});
