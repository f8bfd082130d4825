// The gRPC server span of each unary call: continues the client's W3C
// traceparent when it sends one, and is the active span while the handler
// runs, so the actors it asks (and the log lines it writes) join its trace.

import { type handleUnaryCall, type ServerUnaryCall, status as GrpcStatus } from "@grpc/grpc-js";
import { context, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { AskOptions } from "../actors/runtime/behavior";
import { activeTraceparent, contextFromTraceparent, DOMAIN_OUTCOME_EVENT, tracer, tracingOn } from "./tracing";

/**
 * gRPC codes that answer a request the service handled correctly (the
 * domain said no). The server span only sees the status, not the QmError;
 * the actor turn spans record the precise domain code.
 */
const OUTCOME_CODES: ReadonlySet<GrpcStatus> = new Set([
  GrpcStatus.INVALID_ARGUMENT,
  GrpcStatus.NOT_FOUND,
  GrpcStatus.ALREADY_EXISTS,
  GrpcStatus.FAILED_PRECONDITION,
]);

/** Wraps a unary call in a server span when tracing is on; returns `call` itself when it is off. */
export function tracedUnaryCall<Req, Res>(call: handleUnaryCall<Req, Res>): handleUnaryCall<Req, Res> {
  if (!tracingOn()) return call;
  // Names from the first call's path ("/quartermaster.v1.InventoryService/Reserve"): one handler serves one method.
  let names: { name: string; service: string; method: string } | undefined;
  return (serverCall: ServerUnaryCall<Req, Res>, callback) => {
    if (names === undefined) {
      const path = serverCall.getPath();
      const slash = path.lastIndexOf("/");
      names = { name: path.slice(1), service: path.slice(1, slash), method: path.slice(slash + 1) };
    }
    const { name, service, method } = names;
    const traceparent = serverCall.metadata.get("traceparent")[0];
    const tracestate = serverCall.metadata.get("tracestate")[0];
    const parent = contextFromTraceparent(
      typeof traceparent === "string" ? traceparent : undefined,
      typeof tracestate === "string" ? tracestate : undefined,
    );
    const span = tracer().startSpan(
      name,
      { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } },
      parent,
    );
    context.with(trace.setSpan(parent, span), () =>
      call(serverCall, (error, value, trailer, flags) => {
        const code = error === null ? GrpcStatus.OK : (error.code ?? GrpcStatus.UNKNOWN);
        span.setAttribute("rpc.grpc.status_code", code);
        if (error !== null) {
          const reason = error.details ?? ("message" in error ? error.message : "");
          if (OUTCOME_CODES.has(code)) span.addEvent(DOMAIN_OUTCOME_EVENT, { "rpc.grpc.status_code": code, "qm.reason": reason });
          else span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
        }
        span.end();
        callback(error, value, trailer, flags);
      }),
    );
  };
}

/** The handler's ask options with the active span's traceparent, so the actors continue the call's trace. */
export function withTraceparent(options: AskOptions): AskOptions {
  const traceparent = activeTraceparent();
  return traceparent === undefined ? options : { ...options, traceparent };
}
