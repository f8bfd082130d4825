// What an operator sees: the log lines of a whole session at debug, and the
// Prometheus metrics moving with traffic.

import { status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { OrderState } from "../../src/gen/quartermaster/v1/order";
import { VERSION } from "../../src/version";
import { expectFailure, seedSku, sleep } from "../support/fixtures";
import { call, type Clients, createClients, type ServerProcess, startServer } from "../support/server_process";

const POLL_DEADLINE_MS = 10_000;

async function scrape(server: ServerProcess): Promise<string> {
  const res = await fetch(`http://${server.metricsAddr}/metrics`);
  expect(res.status).to.equal(200);
  return res.text();
}

/** The value of one series (name plus exact label text), or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function waitForSample(server: ServerProcess, series: string, atLeast: number): Promise<number> {
  const deadline = Date.now() + POLL_DEADLINE_MS;
  let last: number | undefined;
  while (Date.now() < deadline) {
    last = sample(await scrape(server), series);
    if (last !== undefined && last >= atLeast) return last;
    await sleep(100);
  }
  throw new Error(`${series} stayed at ${last} (wanted >= ${atLeast})`);
}

function records(server: ServerProcess): Record<string, unknown>[] {
  return server
    .logs()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("logs and metrics (integration)", function () {
  this.timeout(120_000);
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    server = await startServer({ env: { QM_LOG_LEVEL: "debug" } });
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
  });

  it("logs start-up with version, pid, node id, data directory and recovery time, and the configuration at debug", () => {
    const serving = records(server).find((r) => r.msg === "quartermaster serving");
    expect(serving).to.include({ version: VERSION, pid: server.pid, nodeId: "local", component: "node", grpcAddress: server.addr });
    expect(serving?.dataDir).to.be.a("string").and.match(/qm-test-/);
    expect(serving?.recoveryMs).to.be.a("number").at.least(0);
    const config = records(server).find((r) => r.msg === "configuration");
    expect(config?.config).to.include({ listen: server.addr, logLevel: "debug" });
    const parts = records(server)
      .filter((r) => r.msg === "part started")
      .map((r) => r.part);
    expect(parts).to.deep.equal(["data-dir-lock", "journal", "backups", "metrics", "grpc-listener", "actors", "idle-collector", "grpc-serving"]);
  });

  it("serves build info and readiness", async () => {
    expect(VERSION).to.match(/^\d+\.\d+\.\d+/);
    const text = await scrape(server);
    expect(sample(text, `qm_build_info{version="${VERSION}",node_version="${process.versions.node}"}`)).to.equal(1);
    expect(sample(text, "qm_ready")).to.equal(1);
  });

  it("labels calls with the status name and moves the journal commit histogram with traffic", async () => {
    const before = sample(await scrape(server), "qm_journal_commit_duration_seconds_count") ?? 0;
    await seedSku(c, "obs-a", 5);
    await expectFailure(call(c.inventory, "reserve", { skuId: "obs-a", reservationId: "r-big", quantity: 6, locationId: "", ttl: undefined }), GrpcStatus.FAILED_PRECONDITION);
    const text = await scrape(server);
    expect(sample(text, 'qm_rpc_duration_seconds_count{method="Reserve",code="FAILED_PRECONDITION"}')).to.equal(1);
    expect(sample(text, 'qm_rpc_duration_seconds_count{method="UpsertSku",code="OK"}')).to.be.at.least(1);
    expect(text).to.not.match(/code="\d+"/);
    // seedSku makes two durable changes: at least two more commits, each observed.
    expect(sample(text, "qm_journal_commit_duration_seconds_count")).to.be.at.least(before + 2);
    expect(sample(text, "qm_fencing_conflicts_total")).to.equal(0);
  });

  it("counts and logs (debug) a reservation hold expiring and an unpaid order expiring", async () => {
    await seedSku(c, "obs-b", 5);
    await call(c.inventory, "reserve", { skuId: "obs-b", reservationId: "r-1", quantity: 2, locationId: "", ttl: { seconds: 1, nanos: 0 } });
    await call(c.order, "createOrder", {
      orderId: "obs-o",
      customerId: "c-1",
      lines: [{ skuId: "obs-b", quantity: 1 }],
      paymentTimeout: { seconds: 1, nanos: 0 },
    });
    expect(await waitForSample(server, "qm_reservations_expired_total", 1)).to.equal(1);
    expect(await waitForSample(server, "qm_orders_expired_total", 1)).to.equal(1);
    expect((await call(c.order, "getOrder", { orderId: "obs-o" })).state).to.equal(OrderState.ORDER_STATE_EXPIRED);
    const timers = records(server).filter((r) => r.component === "timers");
    expect(timers.find((r) => r.msg === "reservations expired")).to.include({ skuId: "obs-b", count: 1, level: 20 });
    expect(timers.find((r) => r.msg === "payment deadline passed: order expires")).to.include({ orderId: "obs-o", level: 20 });
  });

  it("logs draining and stopped, and nothing but JSON, over a whole session", async () => {
    const code = await server.stop();
    expect(code).to.equal(0);
    const messages = records(server).map((r) => r.msg);
    expect(messages).to.include.members(["draining", "stopped"]);
    expect(messages.indexOf("draining")).to.be.lessThan(messages.indexOf("stopped"));
    const notJson = server
      .logs()
      .split("\n")
      .filter((l) => l !== "" && !l.startsWith("{"));
    expect(notJson).to.deep.equal([]);
  });
});
