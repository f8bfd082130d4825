// The client span of an ask sent to another node over NATS. The envelope's
// traceparent is this span's, so the owner's turn spans are its children and
// the call stays one trace across nodes.

import { SpanKind } from "@opentelemetry/api";
import type { AskOptions } from "../actors/runtime/behavior";
import { contextFromTraceparent, endWhenSettled, traceparentOf, tracer, tracingOn } from "./tracing";

/** Runs `send` inside a client span when tracing is on and the ask is traced; otherwise runs it as is. */
export function traceRemoteAsk<R>(node: string, actorId: string, options: AskOptions | undefined, send: (options: AskOptions | undefined) => Promise<R>): Promise<R> {
  if (!tracingOn() || options?.traceparent === undefined) return send(options);
  const span = tracer().startSpan(
    "actor.ask remote",
    {
      kind: SpanKind.CLIENT,
      attributes: { "messaging.system": "nats", "actor.id": actorId, "qm.peer.node": node },
    },
    contextFromTraceparent(options.traceparent),
  );
  const pending = send({ ...options, traceparent: traceparentOf(span) });
  return endWhenSettled(span, pending);
}
