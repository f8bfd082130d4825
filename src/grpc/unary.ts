// Wraps each RPC: admits the caller through the gate (src/security/), decodes
// safely, passes the caller and its deadline to the actors,
// maps every failure through status_mapping, and records the call's metrics.

import { type handleUnaryCall, type Metadata, type ServerUnaryCall, type ServiceError, status as GrpcStatus, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { AskOptions } from "../actors/runtime/behavior";
import { invalidArgument, QmError } from "../errors";
import { tracedUnaryCall, withTraceparent } from "../observability/grpc_tracing";
import type { Caller } from "../security/caller";
import type { AuthContext, CallGate, GateCall } from "../security/call_gate";
import { toServiceError } from "./status_mapping";

/** What a request decodes to when its bytes are not a valid message: answered with INVALID_ARGUMENT. */
export class DecodeFailure {
  constructor(readonly reason: string) {}
}

export interface CallObserver {
  (method: string, code: GrpcStatus, seconds: number): void;
}

interface MethodDefinitionLike {
  readonly path: string;
  readonly requestDeserialize: (bytes: Buffer) => unknown;
}

/** A copy of a generated service definition whose request decoders never throw. */
export function withSafeDecoding<D extends Record<string, MethodDefinitionLike>>(definition: D): D {
  const out: Record<string, MethodDefinitionLike> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (error) {
          return new DecodeFailure(error instanceof Error ? error.message : String(error));
        }
      },
    };
  }
  return out as D;
}

/** A handler answers on behalf of the caller the gate admitted: its tenant scopes every id in the request. */
export type Handler<Req, Res> = (request: Req, options: AskOptions, caller: Caller) => Promise<Res>;

export interface UnaryFactory {
  <Req, Res>(method: string, handler: Handler<Req, Res>): handleUnaryCall<Req, Res>;
}

/** What the gate sees of a grpc-js call. */
export function gateCall(call: { getPath(): string; readonly metadata: Metadata; getAuthContext(): AuthContext; readonly request?: unknown }): GateCall {
  return { path: call.getPath(), metadata: call.metadata, authContext: () => call.getAuthContext(), request: call.request };
}

/** What a unary call needs besides its handler: shared by grpc-js's path and the direct Reserve path (direct_reserve.ts). */
export interface UnaryDeps {
  readonly logger: Logger;
  readonly observe: CallObserver;
  readonly isReady: () => boolean;
  readonly gate: CallGate;
}

/** The status a failed call answers with, as grpc-js sends a handler's error: code, message, trailers. */
export type UnaryError = Partial<ServiceError>;

/** A call as serveUnary sees it, whichever path brought it: what the gate reads, the decoded request, the deadline. */
export interface UnaryCall extends GateCall {
  /** Epoch milliseconds, or undefined without a deadline. */
  readonly deadlineMs: number | undefined;
}

/**
 * One unary call from admission to answer: the gate, decoding failures, readiness, the handler with the
 * caller and deadline, status mapping and metrics. `respond` gets null and the response, or the error.
 * Both gRPC paths call this, so their answers cannot drift apart.
 */
export function serveUnary<Req, Res>(
  deps: UnaryDeps,
  method: string,
  handler: Handler<Req, Res>,
  call: UnaryCall,
  respond: (error: UnaryError | null, response?: Res) => void,
): void {
  const started = performance.now();
  const finish = (error: unknown, response?: Res): void => {
    const seconds = (performance.now() - started) / 1000;
    if (error === null) {
      deps.observe(method, GrpcStatus.OK, seconds);
      respond(null, response);
      return;
    }
    if (!(error instanceof QmError)) deps.logger.error({ err: error, method }, "unexpected error in handler");
    const serviceError = toServiceError(error);
    deps.observe(method, serviceError.code ?? GrpcStatus.INTERNAL, seconds);
    respond(serviceError);
  };
  const run = (caller: Caller): void => {
    const request = call.request;
    if (request instanceof DecodeFailure) {
      finish(invalidArgument([{ field: "request", description: `not a valid message: ${request.reason}` }]));
      return;
    }
    if (!deps.isReady()) {
      finish(new QmError("UNAVAILABLE", "recovery is not finished"));
      return;
    }
    const deadlineMs = call.deadlineMs;
    let pending: Promise<Res>;
    try {
      // The caller rides with every ask, so the actor system (on this node or the owner) enforces its tenant.
      pending = handler(request as Req, withTraceparent(deadlineMs === undefined ? { caller } : { deadlineMs, caller }), caller);
    } catch (error) {
      finish(error);
      return;
    }
    pending.then(
      (response) => finish(null, response),
      (error: unknown) => finish(error),
    );
  };
  // The gate runs first: a caller who may not call learns nothing, not even whether its request was valid.
  admitCall(deps.gate, call, run, finish);
}

export function unaryFactory(logger: Logger, observe: CallObserver, isReady: () => boolean, gate: CallGate): UnaryFactory {
  const deps: UnaryDeps = { logger, observe, isReady, gate };
  return <Req, Res>(method: string, handler: Handler<Req, Res>): handleUnaryCall<Req, Res> =>
    tracedUnaryCall((call: ServerUnaryCall<Req, Res>, callback) => {
      const deadline = call.getDeadline();
      const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number.isFinite(deadline) ? deadline : undefined;
      const unaryCall: UnaryCall = { ...gateCall(call), deadlineMs };
      serveUnary(deps, method, handler, unaryCall, (error, response) => (error === null ? callback(null, response) : callback(error)));
    });
}

/**
 * Runs `run` with the caller the gate admits, or `fail` with why it did not.
 * The open gate answers at once; verifying a token or asking a shared rate
 * limiter may take a promise, and only those calls pay for one.
 */
export function admit(gate: CallGate, call: Parameters<typeof gateCall>[0], run: (caller: Caller) => void, fail: (error: unknown) => void): void {
  admitCall(gate, gateCall(call), run, fail);
}

function admitCall(gate: CallGate, call: GateCall, run: (caller: Caller) => void, fail: (error: unknown) => void): void {
  let admitted: Caller | Promise<Caller>;
  try {
    admitted = gate.admit(call);
  } catch (error) {
    fail(error);
    return;
  }
  if (admitted instanceof Promise) admitted.then(run, fail);
  else run(admitted);
}

export function asImplementation<T>(impl: T): UntypedServiceImplementation {
  return impl as unknown as UntypedServiceImplementation;
}

