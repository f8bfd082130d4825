// etcd membership and ownership operations are traces of their own: a claim,
// a release, a lease loss happen for the cluster, not for any client call, so
// they start short root traces a backend can search by name and node.

import { context, type Attributes, SpanKind, trace } from "@opentelemetry/api";
import { endWhenSettled, tracer, tracingOn } from "./tracing";

/** Runs an ownership operation inside a root span of its own when tracing is on. */
export function traceOwnership<T>(name: string, node: string, partition: number, run: () => Promise<T>): Promise<T> {
  if (!tracingOn()) return run();
  const span = tracer().startSpan(name, { kind: SpanKind.CLIENT, root: true, attributes: { "db.system": "etcd", "qm.node": node, "qm.partition": partition } });
  const pending = context.with(trace.setSpan(context.active(), span), run);
  return endWhenSettled(span, pending);
}

/** Adds what the operation found out (the epoch won, a claim lost) to the active ownership span. */
export function annotateOwnership(attributes: Attributes): void {
  if (!tracingOn()) return;
  trace.getSpan(context.active())?.setAttributes(attributes);
}

/** Records an ownership event that is a moment, not an operation (a lease lost), as a root span of no length. */
export function ownershipEvent(name: string, node: string, attributes: Attributes): void {
  if (!tracingOn()) return;
  tracer()
    .startSpan(name, { kind: SpanKind.INTERNAL, root: true, attributes: { "qm.node": node, ...attributes } })
    .end();
}
