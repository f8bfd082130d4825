// The direct Reserve path (src/grpc/direct_reserve.ts) against grpc-js's:
// the same raw HTTP/2 requests sent to a server with QM_GRPC_DIRECT_RESERVE=1
// and to one with 0 must get the same status, grpc-message, trailers (details
// included) and reply bytes, and leave the same metrics behind.

import { readFile } from "node:fs/promises";
import http2 from "node:http2";
import { gzipSync } from "node:zlib";
import { type ChannelCredentials, credentials, Metadata, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { AdjustmentReason, InventoryServiceClient, Reservation, ReserveRequest } from "../../src/gen/quartermaster/v1/inventory";
import { Status } from "../../src/gen/google/rpc/status";
import { GRPC_MESSAGE_BYTES_MAX } from "../../src/limits";
import { metricValue } from "../support/metrics";
import { bearer, generateTestKey, signToken, type TestKey, writeAuthFiles } from "../support/security";
import { call, type Clients, createClients, makeTempDir, type ServerProcess, startServer } from "../support/server_process";
import { CLIENT_CN, createPki } from "../support/tls";

const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";

interface RawAnswer {
  readonly headers: Record<string, unknown>;
  readonly trailers: Record<string, unknown>;
  readonly data: Buffer;
  readonly rstCode: number;
}

interface RawRequest {
  readonly headers?: Record<string, string>;
  /** The request body as sent (framed by the caller); undefined sends no body and leaves the stream open. */
  readonly body?: Buffer;
  /** Reset the stream with CANCEL this many ms after sending. */
  readonly cancelAfterMs?: number;
}

function frame(message: Uint8Array, compressed = false): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(out, 5);
  return out;
}

function reserveBytes(request: Partial<ReserveRequest>): Buffer {
  return Buffer.from(ReserveRequest.encode(ReserveRequest.fromPartial(request)).finish());
}

async function rawCall(addr: string, request: RawRequest): Promise<RawAnswer> {
  const session = http2.connect(`http://${addr}`);
  session.on("error", () => {});
  try {
    return await new Promise<RawAnswer>((resolve, reject) => {
      const stream = session.request({
        ":method": "POST",
        ":path": RESERVE_PATH,
        "content-type": "application/grpc",
        te: "trailers",
        ...request.headers,
      });
      let headers: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      const data: Buffer[] = [];
      stream.on("response", (h) => {
        headers = { ...h };
        // A request left open (no body) is ended once answered, so that the stream can close.
        if (request.body === undefined) stream.end();
      });
      stream.on("trailers", (t) => (trailers = { ...t }));
      stream.on("data", (chunk: Buffer) => data.push(chunk));
      stream.on("error", () => {});
      stream.on("close", () => resolve({ headers, trailers, data: Buffer.concat(data), rstCode: stream.rstCode ?? 0 }));
      if (request.body !== undefined) stream.end(request.body);
      if (request.cancelAfterMs !== undefined) setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), request.cancelAfterMs);
      setTimeout(() => reject(new Error("no answer in 10 s")), 10_000).unref();
    });
  } finally {
    session.close();
  }
}

/** What must agree between the paths: everything but the date, with times and retry delays made comparable. */
function comparable(answer: RawAnswer): Record<string, unknown> {
  const { date: _date, ...headers } = answer.headers;
  const details = (source: Record<string, unknown>): unknown => {
    const bin = source["grpc-status-details-bin"];
    if (typeof bin !== "string") return undefined;
    const status = Status.decode(Buffer.from(bin, "base64"));
    // A rate limit's retry delay depends on when the call came; its presence and kind do not.
    return { ...status, details: status.details.map((d) => (d.typeUrl.endsWith("RetryInfo") ? d.typeUrl : { typeUrl: d.typeUrl, value: Buffer.from(d.value).toString("latin1").replace(/\d+/g, "N") })) };
  };
  const strip = (source: Record<string, unknown>): Record<string, unknown> => {
    const { "grpc-status-details-bin": _bin, ...rest } = source;
    return { ...rest, details: details(source) };
  };
  let reply: unknown;
  if (answer.data.length >= 5) {
    const reservation = Reservation.decode(answer.data.subarray(5));
    reply = Object.fromEntries(Object.entries(reservation).map(([k, v]) => [k, v instanceof Date ? "a time" : v]));
  }
  // A reply's length depends on its times (a Timestamp's nanos is a varint, absent when zero), so a
  // decoded reply is compared field by field with its times masked, and only its absence by length.
  return { headers: strip(headers), trailers: strip(answer.trailers), bytes: reply === undefined ? answer.data.length : "a reply", reply, rstCode: answer.rstCode };
}

describe("direct Reserve path: the same answers as grpc-js's (integration)", function () {
  this.timeout(120_000);
  let key: TestKey;
  let on: ServerProcess;
  let off: ServerProcess;
  const clients: Clients[] = [];
  let checkout: Record<string, string>;
  let reader: Record<string, string>;
  let otherTenant: Record<string, string>;
  let bulk: Record<string, string>;

  before(async () => {
    key = await generateTestKey("k1");
    const dir = await makeTempDir("qm-direct-");
    const file = await writeAuthFiles(dir, {
      keys: [key],
      principals: [{ subject: "bulk", tenant: "acme", roles: ["checkout"], rate_per_second: 1, burst: 2 }],
      rateLimits: { default: { per_second: 1000, burst: 2000 } },
    });
    [on, off] = await Promise.all([
      startServer({ env: { QM_AUTH_CONFIG: file, QM_GRPC_DIRECT_RESERVE: "1", QM_LOG_LEVEL: "info" } }),
      startServer({ env: { QM_AUTH_CONFIG: file, QM_GRPC_DIRECT_RESERVE: "0", QM_LOG_LEVEL: "info" } }),
    ]);
    const auth = async (sub: string, tenant: string, roles: string[]): Promise<Record<string, string>> => ({
      authorization: `Bearer ${await signToken(key, { sub, tenant, roles })}`,
    });
    checkout = await auth("shop", "acme", ["checkout"]);
    reader = await auth("viewer", "acme", ["reader"]);
    otherTenant = await auth("shop", "globex", ["checkout"]);
    bulk = await auth("bulk", "acme", ["checkout"]);
    const warehouse = bearer(await signToken(key, { sub: "wh", tenant: "acme", roles: ["warehouse"] }));
    for (const server of [on, off]) {
      const c = createClients(server.addr);
      clients.push(c);
      const sku = { skuId: "s1", title: "S1", priceMinor: 100, currency: "EUR", safetyStock: 0, lowStockThreshold: 0, allowBackorder: false };
      await call(c.inventory, "upsertSku", { ...sku, attributes: {}, updateMask: undefined }, { metadata: warehouse });
      const adjust = { skuId: "s1", locationId: "main", delta: 100, reason: AdjustmentReason.ADJUSTMENT_REASON_RECEIVED, note: "", idempotencyKey: "" };
      await call(c.inventory, "adjustStock", adjust, { metadata: warehouse });
    }
  });

  after(async () => {
    for (const c of clients) c.close();
    await Promise.all([on?.stop(), off?.stop()]);
  });

  async function both(request: RawRequest): Promise<[RawAnswer, RawAnswer]> {
    return [await rawCall(on.addr, request), await rawCall(off.addr, request)];
  }

  async function same(request: RawRequest): Promise<RawAnswer> {
    const [direct, grpcJs] = await both(request);
    expect(comparable(direct)).to.deep.equal(comparable(grpcJs));
    return direct;
  }

  const good = (id: string, extra: Partial<ReserveRequest> = {}): Buffer => frame(reserveBytes({ reservationId: id, skuId: "s1", quantity: 1, ...extra }));
  const status = (answer: RawAnswer): unknown => answer.trailers["grpc-status"] ?? answer.headers["grpc-status"];

  it("takes Reserve off grpc-js only where it is switched on", () => {
    const line = "Reserve is answered on the raw HTTP/2 stream";
    expect(on.logs()).to.include(line);
    expect(off.logs()).not.to.include(line);
  });

  it("answers a good Reserve with the same headers, reply bytes and trailers", async () => {
    const answer = await same({ headers: checkout, body: good("r-good") });
    expect(status(answer)).to.equal("0");
    expect(answer.headers["content-type"]).to.equal("application/grpc+proto");
    expect(Reservation.decode(answer.data.subarray(5)).quantity).to.equal(1);
    // The same id again is the same hold (idempotent), on both paths.
    expect(status(await same({ headers: checkout, body: good("r-good") }))).to.equal("0");
  });

  it("refuses an invalid field, undecodable bytes, a bad token, a missing permission and another tenant's SKU alike", async () => {
    expect(status(await same({ headers: checkout, body: good("r-zero", { quantity: 0 }) }))).to.equal("3");
    expect(status(await same({ headers: checkout, body: frame(Buffer.from([0xff, 0xff, 0xff])) }))).to.equal("3");
    expect(status(await same({ headers: { authorization: "Bearer not-a-token" }, body: good("r-tok") }))).to.equal("16");
    expect(status(await same({ body: good("r-anon") }))).to.equal("16");
    expect(status(await same({ headers: reader, body: good("r-reader") }))).to.equal("7");
    expect(status(await same({ headers: otherTenant, body: good("r-tenant") }))).to.equal("5");
  });

  it("applies the same rate limit, with RATE_LIMITED details", async () => {
    const codes: unknown[] = [];
    for (let i = 0; i < 4; i++) codes.push(status(await same({ headers: bulk, body: good(`r-bulk-${i}`) })));
    expect(codes.filter((c) => c === "8").length).to.be.at.least(1);
  });

  it("refuses an oversized message with RESOURCE_EXHAUSTED before reading it, and a second or missing message with UNIMPLEMENTED", async () => {
    const header = Buffer.alloc(5 + 16);
    header.writeUInt32BE(GRPC_MESSAGE_BYTES_MAX + 1, 1);
    const over = await same({ headers: checkout, body: header });
    expect(status(over)).to.equal("8");
    expect(over.headers["grpc-message"]).to.match(/^Received%20message%20larger%20than%20max/);
    expect(status(await same({ headers: checkout, body: Buffer.concat([good("r-two-a"), good("r-two-b")]) }))).to.equal("12");
    expect(status(await same({ headers: checkout, body: Buffer.alloc(0) }))).to.equal("12");
  });

  it("reads a compressed-flag message under identity as grpc-js does, and leaves gzip and other content types to grpc-js", async () => {
    const flagged = frame(reserveBytes({ reservationId: "r-flag", skuId: "s1", quantity: 1 }), true);
    await same({ headers: checkout, body: flagged });
    const gzipped = frame(gzipSync(reserveBytes({ reservationId: "r-gzip", skuId: "s1", quantity: 1 })), true);
    expect(status(await same({ headers: { ...checkout, "grpc-encoding": "gzip" }, body: gzipped }))).to.equal("0");
    const deflated = frame(Buffer.from("not deflate"), true);
    await same({ headers: { ...checkout, "grpc-encoding": "deflate" }, body: deflated });
    await same({ headers: { ...checkout, "grpc-encoding": "snappy" }, body: good("r-snappy") });
    await same({ headers: { ...checkout, "content-type": "application/grpc+json" }, body: good("r-json") });
    const notGrpc = await same({ headers: { ...checkout, "content-type": "text/plain" }, body: good("r-text") });
    expect(notGrpc.headers[":status"]).to.equal(415);
    await same({ headers: { ...checkout, "grpc-timeout": "soon" }, body: good("r-badtimeout") });
  });

  it("answers DEADLINE_EXCEEDED when grpc-timeout passes before the request is complete", async () => {
    const answer = await same({ headers: { ...checkout, "grpc-timeout": "200m" } });
    expect(status(answer)).to.equal("4");
    expect(answer.headers["grpc-message"]).to.equal("Deadline%20exceeded");
  });

  it("leaves the same Reserve metrics behind", async () => {
    for (const code of ["OK", "INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND", "RESOURCE_EXHAUSTED"]) {
      const sample = `qm_rpc_duration_seconds_count{method="Reserve",code="${code}"}`;
      expect(await metricValue(on.metricsAddr, sample), sample).to.equal(await metricValue(off.metricsAddr, sample));
    }
    expect(await metricValue(on.metricsAddr, 'qm_rpc_duration_seconds_count{method="Reserve",code="OK"}')).to.be.at.least(3);
  });

  it("drops the answer of a call the client cancelled, and keeps serving", async () => {
    for (const server of [on, off]) {
      const cancelled = await rawCall(server.addr, { headers: checkout, body: good("r-cancel"), cancelAfterMs: 0 });
      expect(cancelled.rstCode).to.equal(http2.constants.NGHTTP2_CANCEL);
      expect(cancelled.trailers["grpc-status"]).to.equal(undefined);
    }
    // Whether the cancelled hold was made depends on when the reset arrived (on either path), so the
    // two servers' stock may differ from here on: each is asked on its own, not compared byte for byte.
    for (const answer of await both({ headers: checkout, body: good("r-after-cancel") })) expect(status(answer)).to.equal("0");
  });

  it("answers a deadline that has passed on arrival as grpc-js does: DEADLINE_EXCEEDED, or the hold if it was durable first", async () => {
    // A 0 ms timer fires in the next turn whose timers phase finds a millisecond gone; a commit can be
    // quicker, on either path, so only the set of possible answers is the same.
    const [direct, grpcJs] = await both({ headers: { ...checkout, "grpc-timeout": "1n" }, body: good("r-late") });
    expect(["0", "4"]).to.include(status(direct));
    expect(["0", "4"]).to.include(status(grpcJs));
  });
});

/** How long the not-ready servers' recovery stalls, and how long a test waits for their listeners. */
const RECOVERY_STALL_MS = 60_000;
const LISTENER_DEADLINE_MS = 30_000;

describe("direct Reserve path: not ready, as grpc-js's (integration)", function () {
  this.timeout(90_000);
  let on: ServerProcess;
  let off: ServerProcess;

  before(async () => {
    // Recovery stalls far longer than either process takes to bind its listener, even on a loaded machine
    // (an 8 s stall once ended before the second server was asked); the processes are killed after.
    const env = { QM_FAULT_DELAYS: `journal.dueWakeups=${RECOVERY_STALL_MS}` };
    [on, off] = await Promise.all([
      startServer({ env: { ...env, QM_GRPC_DIRECT_RESERVE: "1" }, waitServing: false }),
      startServer({ env: { ...env, QM_GRPC_DIRECT_RESERVE: "0" }, waitServing: false }),
    ]);
  });

  after(async () => {
    await Promise.all([on?.kill(), off?.kill()]);
  });

  it("answers UNAVAILABLE while recovery runs, with the same trailers", async () => {
    const body = frame(reserveBytes({ reservationId: "r-early", skuId: "s1", quantity: 1 }));
    // The listener may not be bound yet when the process starts: retry until it answers, well within the stall.
    const firstAnswer = async (server: ServerProcess): Promise<RawAnswer> => {
      let answer: RawAnswer | undefined;
      const deadline = Date.now() + LISTENER_DEADLINE_MS;
      while (answer?.headers[":status"] === undefined && Date.now() < deadline) {
        answer = await rawCall(server.addr, { body });
        if (answer.headers[":status"] === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      return answer as RawAnswer;
    };
    const [direct, grpcJs] = await Promise.all([firstAnswer(on), firstAnswer(off)]);
    expect(comparable(direct)).to.deep.equal(comparable(grpcJs));
    expect(direct.headers["grpc-status"]).to.equal("14");
    expect(decodeURI(String(direct.headers["grpc-message"]))).to.equal("recovery is not finished");
  });
});

describe("direct Reserve path: the caller named by its client certificate, as grpc-js's (integration)", function () {
  this.timeout(60_000);
  let on: ServerProcess;
  let off: ServerProcess;
  let creds: ChannelCredentials;

  before(async () => {
    const pki = await createPki();
    const key = await generateTestKey("k1");
    // The certificate's CN is a principal that may reserve in tenant acme; a token-less call is named by it.
    const file = await writeAuthFiles(await makeTempDir("qm-direct-tls-"), { keys: [key], principals: [{ subject: CLIENT_CN, tenant: "acme", roles: ["checkout"] }] });
    const [caPem, clientKey, clientCert] = await Promise.all([readFile(pki.ca.cert), readFile(pki.client.key), readFile(pki.client.cert)]);
    creds = credentials.createSsl(caPem, clientKey, clientCert);
    const env = { QM_TLS_CERT: pki.server.cert, QM_TLS_KEY: pki.server.key, QM_TLS_CLIENT_CA: pki.ca.cert, QM_AUTH_CONFIG: file };
    const healthCredentials = credentials.createSsl(caPem, clientKey, clientCert);
    [on, off] = await Promise.all([
      startServer({ env: { ...env, QM_GRPC_DIRECT_RESERVE: "1" }, healthCredentials }),
      startServer({ env: { ...env, QM_GRPC_DIRECT_RESERVE: "0" }, healthCredentials }),
    ]);
  });

  after(async () => {
    await Promise.all([on?.stop(), off?.stop()]);
  });

  function reserve(addr: string, request: Partial<ReserveRequest>): Promise<Record<string, unknown>> {
    const client = new InventoryServiceClient(addr, creds, { "grpc.ssl_target_name_override": "localhost" });
    return new Promise((resolve) => {
      client.reserve(ReserveRequest.fromPartial(request), new Metadata(), { deadline: new Date(Date.now() + 10_000) }, (error) => {
        client.close();
        if (error === null) {
          resolve({ code: GrpcStatus.OK });
          return;
        }
        const { date: _date, ...trailers } = error.metadata.toJSON();
        resolve({ code: error.code, details: error.details, trailers });
      });
    });
  }

  it("admits the certificate's principal to its tenant on both paths: NOT_FOUND for a SKU it does not have, INVALID_ARGUMENT for a bad field", async () => {
    for (const request of [{ reservationId: "r-tls", skuId: "nope", quantity: 1 }, { reservationId: "r-tls", skuId: "nope", quantity: 0 }]) {
      const direct = await reserve(on.addr, request);
      expect(direct).to.deep.equal(await reserve(off.addr, request));
      expect([GrpcStatus.NOT_FOUND, GrpcStatus.INVALID_ARGUMENT]).to.include(direct.code);
    }
  });
});
