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

/** A method's span name and attributes, from its path ("/quartermaster.v1.InventoryService/Reserve"). */
export interface ServerSpanNames {
  readonly name: string;
  readonly service: string;
  readonly method: string;
}

export function serverSpanNames(path: string): ServerSpanNames {
  const slash = path.lastIndexOf("/");
  return { name: path.slice(1), service: path.slice(1, slash), method: path.slice(slash + 1) };
}

/** What ends a server span: the call's status code and, for a failure, its message. */
export interface ServerSpanEnd {
  readonly code?: GrpcStatus | undefined;
  readonly details?: string | undefined;
  readonly message?: string | undefined;
}

/**
 * Runs `body` with a server span as the active span, continuing the client's traceparent, and hands it
 * the function that ends the span with the call's outcome. Both gRPC paths (grpc-js's and the direct
 * Reserve path) open their spans here, so their traces cannot differ.
 */
export function inServerSpan(
  names: ServerSpanNames,
  traceparent: string | undefined,
  tracestate: string | undefined,
  body: (end: (error: ServerSpanEnd | null) => void) => void,
): void {
  const parent = contextFromTraceparent(traceparent, tracestate);
  const span = tracer().startSpan(
    names.name,
    { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": names.service, "rpc.method": names.method } },
    parent,
  );
  context.with(trace.setSpan(parent, span), () =>
    body((error) => {
      const code = error === null ? GrpcStatus.OK : (error.code ?? GrpcStatus.UNKNOWN);
      span.setAttribute("rpc.grpc.status_code", code);
      if (error !== null) {
        const reason = error.details ?? error.message ?? "";
        if (OUTCOME_CODES.has(code)) span.addEvent(DOMAIN_OUTCOME_EVENT, { "rpc.grpc.status_code": code, "qm.reason": reason });
        else span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
      }
      span.end();
    }),
  );
}

/** Wraps a unary call in a server span when tracing is on; returns `call` itself when it is off. */
export function tracedUnaryCall<Req, Res>(call: handleUnaryCall<Req, Res>): handleUnaryCall<Req, Res> {
  if (!tracingOn()) return call;
  // Names from the first call's path: one handler serves one method.
  let names: ServerSpanNames | undefined;
  return (serverCall: ServerUnaryCall<Req, Res>, callback) => {
    names ??= serverSpanNames(serverCall.getPath());
    const traceparent = serverCall.metadata.get("traceparent")[0];
    const tracestate = serverCall.metadata.get("tracestate")[0];
    inServerSpan(names, typeof traceparent === "string" ? traceparent : undefined, typeof tracestate === "string" ? tracestate : undefined, (end) =>
      call(serverCall, (error, value, trailer, flags) => {
        end(error === null ? null : { code: error.code, details: error.details, message: "message" in error ? error.message : undefined });
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
