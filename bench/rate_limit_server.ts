// The echo server's Reserve (bare grpc-js, no state, no disk) behind the call
// gate seam (src/grpc/unary.ts admit), with or without the rate limiter: the
// harshest ratio for the limiter, since everything else a real call costs is
// left out. The inner gate names 1000 callers in turn (a token cache hit);
// their limit is far above the load, so every call is admitted and the figure
// is what admission costs. With `--callers header` the caller is named by
// BENCH_SUBJECT_HEADER instead, and FLOOD_SUBJECT gets FLOODER_LIMIT: the
// flood comparison of rate_limit_cost.ts --flood.
//
//   node dist/bench/rate_limit_server.js --port N --limiter none|memory|redis [--redis-url URL] [--callers rotate|header]

import { type sendUnaryData, Server, type ServerUnaryCall, ServerCredentials, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { HealthImplementation } from "grpc-health-check";
import { parseArgs } from "node:util";
import pino from "pino";
import { systemClock } from "../src/clock";
import { InventoryServiceService, type Reservation, ReservationState, type ReserveRequest } from "../src/gen/quartermaster/v1/inventory";
import { toServiceError } from "../src/grpc/status_mapping";
import { admit } from "../src/grpc/unary";
import { RESERVATION_TTL_MS_DEFAULT } from "../src/limits";
import type { CallGate } from "../src/security/call_gate";
import type { Caller } from "../src/security/caller";
import type { BucketLimit } from "../src/security/rate_limit/bucket";
import { RateLimiter } from "../src/security/rate_limit/limiter";
import { LOOPBACK_HOST } from "./load_session";

const CALLERS = 1000;
const LIMIT: BucketLimit = { perSecond: 1e9, burst: 1e9 };
export const BENCH_SUBJECT_HEADER = "x-bench-subject";
export const FLOOD_SUBJECT = "flooder";
/** The flooder's limit: nearly every flood call is refused, so the flood is what refusing costs. */
export const FLOODER_LIMIT: BucketLimit = { perSecond: 5, burst: 5 };

export type LimiterMode = "none" | "memory" | "redis";

/** Names the caller by BENCH_SUBJECT_HEADER; a bench server only, it trusts whatever the client says. */
function headerGate(): CallGate {
  return {
    admit: (call) => {
      const subject = call.metadata.get(BENCH_SUBJECT_HEADER)[0];
      return { subject: typeof subject === "string" ? subject : "anonymous", tenant: "bench", roles: [], authenticated: true };
    },
  };
}

export function namingGate(): CallGate {
  const callers: Caller[] = Array.from({ length: CALLERS }, (_, i) => ({ subject: `svc-${i}`, tenant: "bench", roles: [], authenticated: true }));
  let next = 0;
  return {
    admit: () => {
      next = (next + 1) % CALLERS;
      return callers[next] as Caller;
    },
  };
}

function reply(request: ReserveRequest): Reservation {
  const nowMs = Date.now();
  const now = new Date(nowMs);
  return {
    reservationId: request.reservationId,
    skuId: request.skuId,
    locationId: request.locationId === "" ? "wh-1" : request.locationId,
    quantity: request.quantity,
    state: ReservationState.RESERVATION_STATE_RESERVED,
    expiresAt: new Date(nowMs + RESERVATION_TTL_MS_DEFAULT),
    createdAt: now,
    updatedAt: now,
    fulfilledQuantity: 0,
  };
}

export async function main(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: "string", default: "0" },
      limiter: { type: "string", default: "none" },
      "redis-url": { type: "string", default: "" },
      callers: { type: "string", default: "rotate" },
    },
    strict: true,
  });
  const mode = values.limiter as LimiterMode;
  if (!["none", "memory", "redis"].includes(mode)) throw new Error(`--limiter ${mode}: expected none, memory or redis`);
  if (!["rotate", "header"].includes(values.callers)) throw new Error(`--callers ${values.callers}: expected rotate or header`);
  let fallbacks = 0;
  const limiter = new RateLimiter({
    redisUrl: mode === "redis" ? values["redis-url"] : "",
    clusterName: "bench",
    nodeCount: () => 1,
    clock: systemClock,
    logger: pino({ level: "warn" }),
    onLimited: () => undefined,
    // Counted and reported at exit: a call Redis did not answer in time was the local bucket's, not Redis's.
    onFallback: () => (fallbacks += 1),
  });
  await limiter.start();
  const gate =
    values.callers === "header"
      ? limiter.gate(headerGate(), mode === "none" ? undefined : (caller) => (caller.subject === FLOOD_SUBJECT ? FLOODER_LIMIT : LIMIT))
      : limiter.gate(namingGate(), mode === "none" ? undefined : () => LIMIT);
  const reserve = (call: ServerUnaryCall<ReserveRequest, Reservation>, callback: sendUnaryData<Reservation>): void => {
    admit(gate, call, () => callback(null, reply(call.request)), (error) => callback(toServiceError(error)));
  };
  const server = new Server();
  server.addService(InventoryServiceService, { reserve } as UntypedServiceImplementation);
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${LOOPBACK_HOST}:${values.port}`, ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
  );
  process.stdout.write(`rate-limit bench server (${mode}) listening on ${LOOPBACK_HOST}:${port}\n`);
  const shutdown = (): void => {
    process.stdout.write(`fallbacks ${fallbacks}\n`);
    server.forceShutdown();
    limiter.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", shutdown);
  process.once("SIGINT", shutdown);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`rate_limit_server: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
