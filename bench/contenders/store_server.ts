// A comparison contender's gRPC face: the Reserve, CreateOrder and
// ConfirmPayment contract of Quartermaster (same generated codecs, same
// response shapes, same status codes for the same cases) in front of a Store
// (PostgreSQL or Redis). Stateless itself, as users would deploy it.
//
//   node dist/bench/contenders/store_server.js --store pg --port N --db-port P
//   node dist/bench/contenders/store_server.js --store redis --port N --db-port P

import { type sendUnaryData, Server, type ServerUnaryCall, ServerCredentials, status, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { parseArgs } from "node:util";
import { InventoryServiceService, type ReserveRequest, type Reservation, ReservationState } from "../../src/gen/quartermaster/v1/inventory";
import { type ConfirmPaymentRequest, type CreateOrderRequest, type Order, OrderServiceService, OrderState } from "../../src/gen/quartermaster/v1/order";
import { GRPC_MESSAGE_BYTES_MAX, RESERVATION_TTL_MS_DEFAULT } from "../../src/limits";
import { LOOPBACK_HOST } from "../load_session";
import { PG_POOL_SIZE_DEFAULT, PgStore } from "./pg_store";
import { RedisStore } from "./redis_store";
import type { Store, StoreOutcome } from "./store";

const SHUTDOWN_GRACE_MS = 2_000;
/** The database user compare.ts creates with initdb. */
export const PG_BENCH_USER = "bench";

const FAILURES: Readonly<Record<Exclude<StoreOutcome, "OK">, status>> = {
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  INSUFFICIENT_STOCK: status.FAILED_PRECONDITION,
  ILLEGAL_STATE: status.FAILED_PRECONDITION,
};

function answer<T>(callback: sendUnaryData<T>, pending: Promise<StoreOutcome>, ok: () => T): void {
  pending.then(
    (outcome) => {
      if (outcome === "OK") callback(null, ok());
      else callback({ code: FAILURES[outcome], details: outcome });
    },
    (error: unknown) => callback({ code: status.UNAVAILABLE, details: error instanceof Error ? error.message : String(error) }),
  );
}

function order(orderId: string, state: OrderState): Order {
  const now = new Date();
  return {
    orderId,
    customerId: "",
    state,
    lines: [],
    shipments: [],
    rejectionReasons: [],
    returns: [],
    history: [],
    historyOmitted: 0,
    paymentReference: "",
    cancelReason: "",
    paymentDeadline: undefined,
    createdAt: now,
    updatedAt: now,
    version: 1,
    stalledStep: undefined,
  };
}

export function storeImplementations(store: Store): { inventory: UntypedServiceImplementation; orders: UntypedServiceImplementation } {
  const reserve = (call: ServerUnaryCall<ReserveRequest, Reservation>, callback: sendUnaryData<Reservation>): void => {
    const r = call.request;
    const ttlMs = r.ttl === undefined ? RESERVATION_TTL_MS_DEFAULT : r.ttl.seconds * 1000 + Math.floor(r.ttl.nanos / 1e6);
    answer(callback, store.reserve(r.reservationId, r.skuId, r.quantity, Math.ceil(ttlMs / 1000)), () => {
      const now = new Date();
      return {
        reservationId: r.reservationId,
        skuId: r.skuId,
        locationId: r.locationId,
        quantity: r.quantity,
        state: ReservationState.RESERVATION_STATE_RESERVED,
        expiresAt: new Date(now.getTime() + ttlMs),
        createdAt: now,
        updatedAt: now,
        fulfilledQuantity: 0,
      };
    });
  };
  const createOrder = (call: ServerUnaryCall<CreateOrderRequest, Order>, callback: sendUnaryData<Order>): void => {
    const r = call.request;
    answer(callback, store.createOrder(r.orderId, r.lines), () => order(r.orderId, OrderState.ORDER_STATE_AWAITING_PAYMENT));
  };
  const confirmPayment = (call: ServerUnaryCall<ConfirmPaymentRequest, Order>, callback: sendUnaryData<Order>): void => {
    const r = call.request;
    answer(callback, store.confirmPayment(r.orderId), () => order(r.orderId, OrderState.ORDER_STATE_PAID));
  };
  return { inventory: { reserve }, orders: { createOrder, confirmPayment } };
}

export async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      store: { type: "string" },
      port: { type: "string", default: "0" },
      "db-port": { type: "string" },
      pool: { type: "string", default: String(PG_POOL_SIZE_DEFAULT) },
    },
    strict: true,
  });
  const dbPort = Number(values["db-port"]);
  if (!Number.isInteger(dbPort) || dbPort < 1) throw new Error("--db-port is required");
  let store: Store;
  if (values.store === "pg") store = new PgStore({ host: LOOPBACK_HOST, port: dbPort, user: PG_BENCH_USER, database: "postgres" }, Number(values.pool));
  else if (values.store === "redis") store = new RedisStore(LOOPBACK_HOST, dbPort);
  else throw new Error("--store must be pg or redis");
  await store.start();
  const server = new Server({ "grpc.max_receive_message_length": GRPC_MESSAGE_BYTES_MAX, "grpc.max_send_message_length": GRPC_MESSAGE_BYTES_MAX });
  const impl = storeImplementations(store);
  // Every other method is left out: grpc-js answers it UNIMPLEMENTED.
  server.addService(InventoryServiceService, impl.inventory);
  server.addService(OrderServiceService, impl.orders);
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`${LOOPBACK_HOST}:${values.port}`, ServerCredentials.createInsecure(), (error, actual) => (error !== null ? reject(error) : resolve(actual)));
  });
  process.stdout.write(`${values.store} contender listening on ${LOOPBACK_HOST}:${port}\n`);
  const shutdown = (): void => {
    const timer = setTimeout(() => server.forceShutdown(), SHUTDOWN_GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(timer);
      store.stop().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`store_server: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
