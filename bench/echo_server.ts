// Baseline server for the benchmarks: bare @grpc/grpc-js answering
// quartermaster.v1.InventoryService/Reserve straight from the request.
//
// It decodes the ReserveRequest and encodes a Reservation of the same shape the
// real service returns (same generated codecs, same fields set), with no state
// and no disk. The ratio "real / echo" measured in one run therefore isolates
// what our service adds on top of grpc-js and protobuf, and cancels most of
// the noise of this shared machine.
//
// UpsertSku and AdjustStock are answered too (again straight from the request)
// only so that the driver's seeding step can run against this server when the
// real one is not available (`run.js --stand-in echo`). The health service
// follows the same contract as the real server, so the driver waits for both
// the same way.

import { type sendUnaryData, Server, type ServerUnaryCall, ServerCredentials, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import http2 from "node:http2";
import { createServer } from "node:net";
import { parseArgs } from "node:util";
import {
  type AdjustStockRequest,
  InventoryServiceService,
  ReserveRequest,
  Reservation,
  ReservationState,
  type Sku,
  type StockLevel,
  type UpsertSkuRequest,
} from "../src/gen/quartermaster/v1/inventory";
import pino from "pino";
import { loadConfig } from "../src/config";
import { edgeServerOptions, GrpcEdge } from "../src/grpc/edge";
import { GRPC_MESSAGE_BYTES_MAX, RESERVATION_TTL_MS_DEFAULT } from "../src/limits";
import { LOOPBACK_HOST } from "./load_session";

/** What the real service answers when a request names no location and the SKU has one. */
const ECHO_LOCATION_ID = "wh-1";
const SHUTDOWN_GRACE_MS = 2_000;

/**
 * When `Reserve` answers: in the handler (`sync`, grpc-js's usual way), from a microtask of its own
 * (`microtask`, as a handler that awaits a settled promise does), or collected and sent together from
 * one setImmediate per event-loop turn (`immediate`). It tests the claim that a reply sent from a
 * microtask costs grpc-js about 50 µs more than replies flushed together once per turn.
 * `raw` is the spike of a direct unary path: Reserve answered on the http2 stream itself, grpc-js
 * bypassed (no call object, metadata, deadline or interceptors), replies sent as in `immediate`;
 * every other method still goes through grpc-js.
 */
export const REPLY_MODES = ["sync", "microtask", "immediate", "raw"] as const;
export type ReplyMode = (typeof REPLY_MODES)[number];

/** Replies waiting for this turn's setImmediate (immediate mode); at most the calls in flight. */
const queuedReplies: (() => void)[] = [];

function flushReplies(): void {
  const replies = queuedReplies.splice(0, queuedReplies.length);
  for (const reply of replies) reply();
}

function reserveAnswering(mode: ReplyMode): (call: ServerUnaryCall<ReserveRequest, Reservation>, callback: sendUnaryData<Reservation>) => void {
  if (mode === "sync") return reserve;
  if (mode === "microtask") return (call, callback) => queueMicrotask(() => reserve(call, callback));
  return (call, callback) => {
    if (queuedReplies.length === 0) setImmediate(flushReplies);
    queuedReplies.push(() => reserve(call, callback));
  };
}

function reserve(call: ServerUnaryCall<ReserveRequest, Reservation>, callback: sendUnaryData<Reservation>): void {
  callback(null, reservationFor(call.request));
}

function reservationFor(request: ReserveRequest): Reservation {
  const nowMs = Date.now();
  const ttlMs =
    request.ttl === undefined ? RESERVATION_TTL_MS_DEFAULT : request.ttl.seconds * 1000 + Math.floor(request.ttl.nanos / 1e6);
  const now = new Date(nowMs);
  return {
    reservationId: request.reservationId,
    skuId: request.skuId,
    locationId: request.locationId === "" ? ECHO_LOCATION_ID : request.locationId,
    quantity: request.quantity,
    state: ReservationState.RESERVATION_STATE_RESERVED,
    expiresAt: new Date(nowMs + ttlMs),
    createdAt: now,
    updatedAt: now,
    fulfilledQuantity: 0,
  };
}

function upsertSku(call: ServerUnaryCall<UpsertSkuRequest, Sku>, callback: sendUnaryData<Sku>): void {
  const request = call.request;
  const now = new Date();
  callback(null, {
    ...request,
    title: request.title ?? "",
    priceMinor: request.priceMinor ?? 0,
    currency: request.currency ?? "",
    safetyStock: request.safetyStock ?? 0,
    lowStockThreshold: request.lowStockThreshold ?? 0,
    allowBackorder: request.allowBackorder ?? false,
    levels: [],
    onHand: 0,
    reserved: 0,
    committed: 0,
    available: 0,
    lowStock: false,
    version: 1,
    createdAt: now,
    updatedAt: now,
  });
}

function adjustStock(call: ServerUnaryCall<AdjustStockRequest, StockLevel>, callback: sendUnaryData<StockLevel>): void {
  const request = call.request;
  callback(null, {
    locationId: request.locationId,
    onHand: request.delta,
    reserved: 0,
    committed: 0,
    available: request.delta,
  });
}

const RESERVE_PATH = "/quartermaster.v1.InventoryService/Reserve";
const GRPC_FRAME_HEADER_BYTES = 5;

/** The raw path's Reserve: gRPC framing by hand on the http2 stream, answered in this turn's setImmediate. */
function rawReserve(stream: http2.ServerHttp2Stream): void {
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.on("end", () => {
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    const request = ReserveRequest.decode(body.subarray(GRPC_FRAME_HEADER_BYTES));
    if (queuedReplies.length === 0) setImmediate(flushReplies);
    queuedReplies.push(() => {
      const message = Buffer.from(Reservation.encode(reservationFor(request)).finish());
      const frame = Buffer.allocUnsafe(GRPC_FRAME_HEADER_BYTES + message.length);
      frame.writeUInt8(0, 0);
      frame.writeUInt32BE(message.length, 1);
      message.copy(frame, GRPC_FRAME_HEADER_BYTES);
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
  });
}

/** grpc-js's injector with its http2 server, whose Reserve streams the raw path takes before grpc-js sees them. */
async function bindRaw(server: Server, port: number): Promise<{ port: number; close: () => void }> {
  type Create = (...args: unknown[]) => http2.Http2Server;
  const mutable = http2 as unknown as { createServer: Create };
  const original = mutable.createServer;
  let created: http2.Http2Server | undefined;
  mutable.createServer = (...args: unknown[]): http2.Http2Server => {
    created = original(...args);
    return created;
  };
  let injector: ReturnType<Server["createConnectionInjector"]>;
  try {
    injector = server.createConnectionInjector(ServerCredentials.createInsecure());
  } finally {
    mutable.createServer = original;
  }
  const http2Server = created;
  if (http2Server === undefined) throw new Error("grpc-js did not create its injector's server with http2.createServer");
  const emit = http2Server.emit.bind(http2Server) as (event: string | symbol, ...args: unknown[]) => boolean;
  (http2Server as unknown as { emit: typeof emit }).emit = (event, ...args) => {
    const headers = args[1] as http2.IncomingHttpHeaders | undefined;
    if (event === "stream" && headers?.[":path"] === RESERVE_PATH) {
      rawReserve(args[0] as http2.ServerHttp2Stream);
      return true;
    }
    return emit(event, ...args);
  };
  const netServer = createServer((socket) => injector.injectConnection(socket));
  await new Promise<void>((resolve, reject) => {
    netServer.once("error", reject);
    netServer.listen({ host: LOOPBACK_HOST, port }, () => resolve());
  });
  const address = netServer.address();
  return { port: typeof address === "object" && address !== null ? address.port : port, close: () => netServer.close() };
}

export interface EchoServer {
  readonly port: number;
  stop(): Promise<void>;
}

async function bind(server: Server, port: number, guard: GrpcEdge | undefined): Promise<number> {
  if (guard !== undefined) {
    const address = await guard.start(server, ServerCredentials.createInsecure(), `${LOOPBACK_HOST}:${port}`);
    return Number(address.slice(address.lastIndexOf(":") + 1));
  }
  return new Promise<number>((resolve, reject) => {
    server.bindAsync(`${LOOPBACK_HOST}:${port}`, ServerCredentials.createInsecure(), (error, actual) => {
      if (error !== null) reject(error);
      else resolve(actual);
    });
  });
}

/** With `edge`, connections come through the service's GrpcEdge with its default limits, to measure what it costs. */
export async function startEchoServer(port: number, edge = false, replyMode: ReplyMode = "sync"): Promise<EchoServer> {
  const edgeConfig = loadConfig({}).grpcEdge;
  // The service's message limit, so the echo server rejects nothing the real one accepts.
  const server = new Server({
    "grpc.max_receive_message_length": GRPC_MESSAGE_BYTES_MAX,
    "grpc.max_send_message_length": GRPC_MESSAGE_BYTES_MAX,
    ...(edge ? edgeServerOptions(edgeConfig) : {}),
  });
  // The other methods are left out on purpose: grpc-js answers them UNIMPLEMENTED.
  const implementation: UntypedServiceImplementation = { reserve: reserveAnswering(replyMode), upsertSku, adjustStock };
  server.addService(InventoryServiceService, implementation);
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const guard = edge ? new GrpcEdge({ config: edgeConfig, logger: pino({ level: "warn" }) }) : undefined;
  const raw = replyMode === "raw" ? await bindRaw(server, port) : undefined;
  const boundPort = raw?.port ?? (await bind(server, port, guard));
  let stopped: Promise<void> | null = null;
  return {
    port: boundPort,
    stop(): Promise<void> {
      raw?.close();
      stopped ??= new Promise<void>((resolve) => {
        // Calls still open after the grace period (a generator that vanished mid-call) are cut.
        const timer = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return stopped;
    },
  };
}

/** CLI: `node dist/bench/echo_server.js --port N`; runs until SIGTERM or SIGINT. */
export async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: { port: { type: "string", default: "0" }, edge: { type: "boolean", default: false }, reply: { type: "string", default: "sync" } },
    strict: true,
  });
  const replyMode = REPLY_MODES.find((m) => m === values.reply);
  if (replyMode === undefined) throw new Error(`--reply must be one of ${REPLY_MODES.join(", ")}`);
  const server = await startEchoServer(Number(values.port), values.edge, replyMode);
  process.stdout.write(`echo server listening on ${LOOPBACK_HOST}:${server.port}\n`);
  const shutdown = (): void => {
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`echo_server: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
