// OpenTelemetry tracing against a real server process exporting http/json
// OTLP to a receiver in the test: one client call is one trace, every span's
// parent is in it, and log lines written inside it carry its id.

import { Metadata, Server as GrpcServer, ServerCredentials, type sendUnaryData, type ServerUnaryCall, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { writeFileSync } from "node:fs";
import { ActorKind } from "../../src/gen/quartermaster/v1/cluster";
import { OrderState } from "../../src/gen/quartermaster/v1/order";
import { idOwnedBy, startCluster, type TestCluster } from "../support/cluster";
import { expectFailure, seedSku } from "../support/fixtures";
import { OtlpReceiver, type ReceivedSpan, spanTree } from "../support/otlp_receiver";
import { runProcess } from "../support/run_process";
import { call, type Clients, createClients, makeTempDir, SERVER_MAIN, type ServerProcess, startServer } from "../support/server_process";

const SPANS_DEADLINE_MS = 10_000;
const SPAN_KIND_SERVER = 2;

/** Polls until `done` holds for the spans of the trace, or fails with what arrived. */
async function traceUntil(receiver: OtlpReceiver, traceId: string, done: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]> {
  const deadline = Date.now() + SPANS_DEADLINE_MS;
  for (;;) {
    const spans = receiver.trace(traceId);
    if (done(spans)) return spans;
    if (Date.now() > deadline) throw new Error(`trace ${traceId} incomplete after ${SPANS_DEADLINE_MS} ms:\n${spanTree(spans)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function withTraceparent(traceId: string, spanId: string): Metadata {
  const metadata = new Metadata();
  metadata.set("traceparent", `00-${traceId}-${spanId}-01`);
  return metadata;
}

const names = (spans: readonly ReceivedSpan[]): string[] => spans.map((s) => s.name);
const count = (spans: readonly ReceivedSpan[], name: string): number => spans.filter((s) => s.name === name).length;

describe("tracing (integration)", function () {
  let receiver: OtlpReceiver;
  let server: ServerProcess;
  let c: Clients;

  before(async () => {
    receiver = new OtlpReceiver();
    await receiver.start();
    server = await startServer({
      env: {
        QM_NODE_ID: "traced-node",
        QM_LOG_LEVEL: "debug",
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
        OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY: "50",
      },
    });
    c = createClients(server.addr);
    await seedSku(c, "tr-a", 10);
    await seedSku(c, "tr-b", 10);
  });

  after(async () => {
    c?.close();
    await server?.stop();
    await receiver?.stop();
  });

  it("makes one CreateOrder one trace: the gRPC call, the order and SKU turns and their journal appends, no parent missing", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const clientSpanId = "00f067aa0ba902b7";
    const order = await call(
      c.order,
      "createOrder",
      { orderId: "tr-ord-1", customerId: "cust-1", lines: [{ skuId: "tr-a", quantity: 2 }, { skuId: "tr-b", quantity: 3 }], paymentTimeout: undefined },
      { metadata: withTraceparent(traceId, clientSpanId) },
    );
    expect(order.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    const spans = await traceUntil(
      receiver,
      traceId,
      (s) => count(s, "turn sku") >= 2 && count(s, "journal.append") >= 3 && count(s, "quartermaster.v1.OrderService/CreateOrder") === 1,
    );
    const tree = spanTree(spans);
    if (process.env.QM_PRINT_TRACE !== undefined) writeFileSync(process.env.QM_PRINT_TRACE, `${tree}\n`);

    const server = spans.find((s) => s.name === "quartermaster.v1.OrderService/CreateOrder");
    expect(server, tree).to.not.equal(undefined);
    expect(server?.kind).to.equal(SPAN_KIND_SERVER);
    // Continues the client's trace: its parent is the client's span.
    expect(server?.parentSpanId).to.equal(clientSpanId);
    expect(server?.attributes).to.include({ "rpc.system": "grpc", "rpc.service": "quartermaster.v1.OrderService", "rpc.method": "CreateOrder", "rpc.grpc.status_code": 0 });
    expect(server?.resource).to.include({ "service.name": "quartermaster", "service.instance.id": "traced-node" });
    expect(server?.resource["service.version"]).to.be.a("string");

    const ids = new Set(spans.map((s) => s.spanId));
    const orphans = spans.filter((s) => s !== server && !ids.has(s.parentSpanId));
    expect(orphans.map((s) => s.name), tree).to.deep.equal([]);

    const orderTurn = spans.find((s) => s.name === "turn order");
    expect(orderTurn?.parentSpanId, tree).to.equal(server?.spanId);
    expect(orderTurn?.attributes).to.include({ "actor.kind": "order", "actor.id": "order/tr-ord-1" });
    expect(orderTurn?.attributes["actor.mailbox.wait_ms"]).to.be.a("number").at.least(0);
    const skuTurns = spans.filter((s) => s.name === "turn sku");
    expect(skuTurns.map((s) => s.attributes["actor.id"]).sort(), tree).to.include.members(["sku/tr-a", "sku/tr-b"]);
    // The order actor asks the SKUs from inside its turn.
    for (const turn of skuTurns) expect(turn.parentSpanId, tree).to.equal(orderTurn?.spanId);
    // The partition a turn span names is the one Locate answers for the actor (the embedded node has them too).
    const located = await call(c.cluster, "locateKey", { kind: ActorKind.ACTOR_KIND_ORDER, id: "tr-ord-1" });
    expect(orderTurn?.attributes["qm.partition"], tree).to.equal(located.partition);
    const appends = spans.filter((s) => s.name === "journal.append");
    expect(appends.map((s) => s.attributes["actor.id"]), tree).to.include.members(["order/tr-ord-1", "sku/tr-a", "sku/tr-b"]);
    for (const append of appends) expect(append.attributes["journal.events"]).to.be.a("number").above(0);
    expect(spans.every((s) => s.statusCode !== 2), tree).to.equal(true);

    // Group commits are short traces of their own, linked to the appends they made durable.
    const appendIds = new Set(appends.map((s) => s.spanId));
    const commits = await (async () => {
      const deadline = Date.now() + SPANS_DEADLINE_MS;
      for (;;) {
        const found = receiver.spans.filter((s) => s.name === "journal.commit" && s.links.some((l) => l.traceId === traceId && appendIds.has(l.spanId)));
        const linked = new Set(found.flatMap((s) => s.links.map((l) => l.spanId)));
        if ([...appendIds].every((id) => linked.has(id))) return found;
        if (Date.now() > deadline) throw new Error(`no commit span links every append of ${traceId}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    for (const commit of commits) {
      expect(commit.parentSpanId).to.equal("");
      expect(commit.traceId).to.not.equal(traceId);
      expect(commit.attributes["journal.appends"]).to.be.a("number").at.least(1);
      expect(commit.attributes["journal.bytes"]).to.be.a("number").above(0);
    }
  });

  it("starts a trace of its own for a call without a traceparent", async () => {
    await call(c.inventory, "getSku", { skuId: "tr-a" });
    const deadline = Date.now() + SPANS_DEADLINE_MS;
    let root: ReceivedSpan | undefined;
    while (root === undefined) {
      root = receiver.spans.find((s) => s.name === "quartermaster.v1.InventoryService/GetSku" && s.parentSpanId === "");
      if (root === undefined && Date.now() > deadline) throw new Error(`no GetSku span among ${names(receiver.spans).join(", ")}`);
      if (root === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const spans = await traceUntil(receiver, root.traceId, (s) => count(s, "turn sku") === 1);
    expect(spans.find((s) => s.name === "turn sku")?.parentSpanId).to.equal(root.spanId);
  });

  it("records insufficient stock as an event on the SKU turn and the gRPC span, leaving their status unset", async () => {
    const traceId = "5bf92f3577b34da6a3ce929d0e0e4737";
    const rejected = await call(
      c.order,
      "createOrder",
      { orderId: "tr-ord-2", customerId: "cust-1", lines: [{ skuId: "tr-a", quantity: 1000 }], paymentTimeout: undefined },
      { metadata: withTraceparent(traceId, "00f067aa0ba902b8") },
    );
    expect(rejected.state).to.equal(OrderState.ORDER_STATE_REJECTED);
    let spans = await traceUntil(receiver, traceId, (s) => count(s, "turn sku") >= 1 && count(s, "quartermaster.v1.OrderService/CreateOrder") === 1);
    let tree = spanTree(spans);
    expect(spans.every((s) => s.statusCode === 0), tree).to.equal(true);
    const skuTurn = spans.find((s) => s.name === "turn sku");
    expect(skuTurn?.events.map((e) => [e.name, e.attributes["qm.code"]]), tree).to.deep.equal([["qm.domain_outcome", "INSUFFICIENT_STOCK"]]);

    const reserveTrace = "5bf92f3577b34da6a3ce929d0e0e4739";
    await expectFailure(
      call(c.inventory, "reserve", { reservationId: "tr-res-1", skuId: "tr-a", quantity: 1000, locationId: "", ttl: undefined }, { metadata: withTraceparent(reserveTrace, "00f067aa0ba902ba") }),
      GrpcStatus.FAILED_PRECONDITION,
    );
    spans = await traceUntil(receiver, reserveTrace, (s) => count(s, "turn sku") === 1 && count(s, "quartermaster.v1.InventoryService/Reserve") === 1);
    tree = spanTree(spans);
    const server = spans.find((s) => s.name === "quartermaster.v1.InventoryService/Reserve");
    expect(server?.attributes["rpc.grpc.status_code"]).to.equal(GrpcStatus.FAILED_PRECONDITION);
    expect(server?.statusCode, tree).to.equal(0);
    expect(server?.events.map((e) => e.name)).to.deep.equal(["qm.domain_outcome"]);
  });

  it("puts the trace id and the span id on a log line written inside the trace", async () => {
    const traceId = "6bf92f3577b34da6a3ce929d0e0e4738";
    await call(
      c.order,
      "createOrder",
      { orderId: "tr-ord-3", customerId: "cust-1", lines: [{ skuId: "tr-b", quantity: 1 }], paymentTimeout: undefined },
      { metadata: withTraceparent(traceId, "00f067aa0ba902b9") },
    );
    const spans = await traceUntil(receiver, traceId, (s) => count(s, "turn order") >= 1);
    const lines = server
      .logs()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg?: string; trace_id?: string; span_id?: string; component?: string });
    // The saga logs each step at debug from inside the order's turn.
    const sagaLines = lines.filter((l) => l.trace_id === traceId);
    expect(sagaLines.map((l) => l.msg), server.logs().slice(-2000)).to.include("saga step");
    const spanIds = new Set(spans.map((s) => s.spanId));
    for (const line of sagaLines) expect(spanIds.has(line.span_id ?? ""), `span ${line.span_id}`).to.equal(true);
  });

  it("received nothing but http/json OTLP trace exports", () => {
    expect(receiver.rejected).to.deep.equal([]);
  });
});

describe("tracing protocols and configuration (integration)", function () {
  this.timeout(60_000);

  it("exports over http/protobuf to /v1/traces when OTEL_EXPORTER_OTLP_PROTOCOL asks for it", async () => {
    const receiver = new OtlpReceiver();
    await receiver.start();
    const server = await startServer({
      env: { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: "50" },
    });
    const c = createClients(server.addr);
    try {
      await expectFailure(call(c.inventory, "getSku", { skuId: "proto-none" }), GrpcStatus.NOT_FOUND);
      const deadline = Date.now() + SPANS_DEADLINE_MS;
      while (receiver.protobufExports === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(receiver.protobufExports).to.be.above(0);
      expect(receiver.spans).to.deep.equal([]);
      expect(receiver.rejected).to.deep.equal([]);
    } finally {
      c.close();
      await server.stop();
      await receiver.stop();
    }
  });

  it("exports over OTLP/gRPC when OTEL_EXPORTER_OTLP_PROTOCOL=grpc", async () => {
    const exports: number[] = [];
    const collector = new GrpcServer();
    collector.register<Buffer, Buffer>(
      "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
      (callObj: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
        exports.push(callObj.request.length);
        callback(null, Buffer.alloc(0));
      },
      (b: Buffer) => b,
      (b: Buffer) => b,
      "unary",
    );
    const port = await new Promise<number>((resolve, reject) =>
      collector.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
    );
    const server = await startServer({
      env: { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_BSP_SCHEDULE_DELAY: "50" },
    });
    const c = createClients(server.addr);
    try {
      await expectFailure(call(c.inventory, "getSku", { skuId: "grpc-none" }), GrpcStatus.NOT_FOUND);
      const deadline = Date.now() + SPANS_DEADLINE_MS;
      while (exports.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(exports.length).to.be.above(0);
      expect(exports[0]).to.be.above(0);
    } finally {
      c.close();
      await server.stop();
      collector.forceShutdown();
    }
  });

  it("refuses a misspelt OTEL_TRACES_EXPORTER at start with exit 2, naming the variable", async () => {
    const { code, stderr } = await runProcess([process.execPath, SERVER_MAIN], {
      QM_LISTEN: "127.0.0.1:0",
      QM_METRICS_LISTEN: "",
      QM_DATA_DIR: await makeTempDir("qm-otel-"),
      OTEL_TRACES_EXPORTER: "otpl",
    });
    expect(code, stderr).to.equal(2);
    expect(stderr).to.equal("quartermaster: OTEL_TRACES_EXPORTER=otpl: expected none, otlp, console\n");
  });
});

describe("tracing across a three-node cluster (integration)", function () {
  this.timeout(120_000);
  let receiver: OtlpReceiver;
  let cluster: TestCluster;

  before(async () => {
    receiver = new OtlpReceiver();
    await receiver.start();
    // Started empty, then each node with the exporter set: the harness's own env plus ours.
    cluster = await startCluster([]);
    const otel = { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: "50" };
    for (const id of ["n1", "n2", "n3"]) await cluster.startNode(id, otel);
    await cluster.settled();
  });

  after(async () => {
    await cluster?.stop();
    await receiver?.stop();
  });

  it("makes one CreateOrder one trace over the three nodes: the SKU owners' turns continue the caller's remote asks", async () => {
    const orderId = await idOwnedBy(cluster, "order", "n1", "tro");
    const skuA = await idOwnedBy(cluster, "sku", "n2", "trsa");
    const skuB = await idOwnedBy(cluster, "sku", "n3", "trsb");
    await seedSku(cluster.clients("n1"), skuA, 10);
    await seedSku(cluster.clients("n1"), skuB, 10);
    const traceId = "7bf92f3577b34da6a3ce929d0e0e4740";
    const order = await call(
      cluster.clients("n1").order,
      "createOrder",
      { orderId, customerId: "c-1", lines: [{ skuId: skuA, quantity: 2 }, { skuId: skuB, quantity: 1 }], paymentTimeout: undefined },
      { metadata: withTraceparent(traceId, "00f067aa0ba902bb") },
    );
    expect(order.state).to.equal(OrderState.ORDER_STATE_AWAITING_PAYMENT);
    const spans = await traceUntil(receiver, traceId, (s) => count(s, "turn sku") >= 2 && count(s, "actor.ask remote") >= 2 && count(s, "journal.append") >= 4);
    const tree = spanTree(spans);
    if (process.env.QM_PRINT_CLUSTER_TRACE !== undefined) writeFileSync(process.env.QM_PRINT_CLUSTER_TRACE, `${tree}\n`);
    expect(new Set(spans.map((s) => s.resource["service.instance.id"])), tree).to.deep.equal(new Set(["n1", "n2", "n3"]));
    const server = spans.find((s) => s.name === "quartermaster.v1.OrderService/CreateOrder");
    const ids = new Set(spans.map((s) => s.spanId));
    expect(spans.filter((s) => s !== server && !ids.has(s.parentSpanId)).map((s) => s.name), tree).to.deep.equal([]);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    for (const [sku, owner] of [
      [skuA, "n2"],
      [skuB, "n3"],
    ] as const) {
      const turns = spans.filter((s) => s.name === "turn sku" && s.attributes["actor.id"] === `sku/${sku}`);
      expect(turns.map((t) => t.resource["service.instance.id"]), tree).to.include(owner);
      for (const turn of turns) {
        const ask = byId.get(turn.parentSpanId);
        expect(ask?.name, tree).to.equal("actor.ask remote");
        expect(ask?.resource["service.instance.id"]).to.equal("n1");
        expect(ask?.attributes["qm.peer.node"]).to.equal(owner);
        expect(turn.attributes["actor.epoch"]).to.be.a("number").above(0);
      }
    }
  });

  it("traces each node's etcd partition claims as short root traces carrying the epoch won", () => {
    const claims = receiver.spans.filter((s) => s.name === "etcd.partition.claim" && s.attributes["qm.claimed"] === true);
    expect(new Set(claims.map((s) => s.resource["service.instance.id"]))).to.deep.equal(new Set(["n1", "n2", "n3"]));
    for (const claim of claims) {
      expect(claim.parentSpanId).to.equal("");
      expect(claim.attributes["qm.epoch"]).to.be.a("number").above(0);
      expect(claim.attributes["qm.partition"]).to.be.a("number").at.least(0);
    }
    // Partitions moved to n2 and n3 as they joined: n1 released them.
    expect(receiver.spans.filter((s) => s.name === "etcd.partition.release" && s.resource["service.instance.id"] === "n1").length).to.be.above(0);
  });
});
