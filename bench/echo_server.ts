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
import { parseArgs } from "node:util";
import {
  type AdjustStockRequest,
  InventoryServiceService,
  type ReserveRequest,
  type Reservation,
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

function reserve(call: ServerUnaryCall<ReserveRequest, Reservation>, callback: sendUnaryData<Reservation>): void {
  const request = call.request;
  const nowMs = Date.now();
  const ttlMs =
    request.ttl === undefined ? RESERVATION_TTL_MS_DEFAULT : request.ttl.seconds * 1000 + Math.floor(request.ttl.nanos / 1e6);
  const now = new Date(nowMs);
  callback(null, {
    reservationId: request.reservationId,
    skuId: request.skuId,
    locationId: request.locationId === "" ? ECHO_LOCATION_ID : request.locationId,
    quantity: request.quantity,
    state: ReservationState.RESERVATION_STATE_RESERVED,
    expiresAt: new Date(nowMs + ttlMs),
    createdAt: now,
    updatedAt: now,
    fulfilledQuantity: 0,
  });
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
export async function startEchoServer(port: number, edge = false): Promise<EchoServer> {
  const edgeConfig = loadConfig({}).grpcEdge;
  // The service's message limit, so the echo server rejects nothing the real one accepts.
  const server = new Server({
    "grpc.max_receive_message_length": GRPC_MESSAGE_BYTES_MAX,
    "grpc.max_send_message_length": GRPC_MESSAGE_BYTES_MAX,
    ...(edge ? edgeServerOptions(edgeConfig) : {}),
  });
  // The other methods are left out on purpose: grpc-js answers them UNIMPLEMENTED.
  const implementation: UntypedServiceImplementation = { reserve, upsertSku, adjustStock };
  server.addService(InventoryServiceService, implementation);
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const guard = edge ? new GrpcEdge({ config: edgeConfig, logger: pino({ level: "warn" }) }) : undefined;
  const boundPort = await bind(server, port, guard);
  let stopped: Promise<void> | null = null;
  return {
    port: boundPort,
    stop(): Promise<void> {
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
    options: { port: { type: "string", default: "0" }, edge: { type: "boolean", default: false } },
    strict: true,
  });
  const server = await startEchoServer(Number(values.port), values.edge);
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
