// The client side of the API as qmctl and the integration tests use it: a
// promise around unary calls that always carries a deadline, and (for tests)
// one pair of generated clients per address. qmctl itself connects through
// connection.ts, whose clients share one channel.

import {
  type CallOptions,
  type ClientUnaryCall,
  credentials,
  makeGenericClientConstructor,
  Metadata,
  type ServiceError,
  status as GrpcStatus,
} from "@grpc/grpc-js";
import { ClusterServiceClient } from "../gen/quartermaster/v1/cluster";
import type { InventoryServiceClient } from "../gen/quartermaster/v1/inventory";
import { inventoryServiceDefinition } from "../grpc/attribute_map";
import { OrderServiceClient } from "../gen/quartermaster/v1/order";

/** The generated client, built on the definition whose Sku decoder keeps every attribute key (even "__proto__"). */
export const InventoryClient = makeGenericClientConstructor(
  inventoryServiceDefinition,
  "quartermaster.v1.InventoryService",
) as unknown as typeof InventoryServiceClient;

/** A call without a deadline can hang for ever on a wedged server; this is the one used when the caller gives none. */
export const CALL_DEADLINE_MS_DEFAULT = 10_000;

export interface Clients {
  readonly inventory: InventoryServiceClient;
  readonly order: OrderServiceClient;
  readonly cluster: ClusterServiceClient;
  /** Closes every channel; idempotent. */
  close(): void;
}

/** Plaintext channels: the server listens without TLS on a private network or loopback. */
export function createClients(addr: string): Clients {
  const inventory = new InventoryClient(addr, credentials.createInsecure());
  const order = new OrderServiceClient(addr, credentials.createInsecure());
  const cluster = new ClusterServiceClient(addr, credentials.createInsecure());
  let closed = false;
  return {
    inventory,
    order,
    cluster,
    close(): void {
      if (closed) return;
      closed = true;
      inventory.close();
      order.close();
      cluster.close();
    },
  };
}

// ts-proto declares each unary method with three overloads; inference sees the
// last, the four-argument form (request, metadata, options, callback).
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

type UnaryMethodName<C> = {
  [K in keyof C]: C[K] extends UnaryMethod<infer _Req, infer _Res> ? K : never;
}[keyof C];

type RequestOf<F> = F extends UnaryMethod<infer Req, infer _Res> ? Req : never;
type ResponseOf<F> = F extends UnaryMethod<infer _Req, infer Res> ? Res : never;

export interface CallOpts {
  /** Relative deadline of the call; CALL_DEADLINE_MS_DEFAULT when absent. */
  deadlineMs?: number;
  metadata?: Metadata;
}

/**
 * `await call(clients.inventory, "getSku", { skuId })`. Rejects with the
 * grpc-js ServiceError itself, so `code`, `details` and the trailing
 * `metadata` (with the status details) stay available to the caller.
 */
export function call<C extends object, M extends UnaryMethodName<C>>(
  client: C,
  method: M,
  request: RequestOf<C[M]>,
  opts: CallOpts = {},
): Promise<ResponseOf<C[M]>> {
  const fn = client[method] as UnaryMethod<RequestOf<C[M]>, ResponseOf<C[M]>>;
  const deadline = new Date(Date.now() + (opts.deadlineMs ?? CALL_DEADLINE_MS_DEFAULT));
  return new Promise((resolve, reject) => {
    fn.call(client, request, opts.metadata ?? new Metadata(), { deadline }, (error, response) => {
      if (error !== null) reject(error);
      else resolve(response);
    });
  });
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number" && "metadata" in err;
}

/** `FAILED_PRECONDITION` for 9: the names people search logs and docs for. */
export function statusName(code: number): string {
  return GrpcStatus[code] ?? `CODE_${code}`;
}
