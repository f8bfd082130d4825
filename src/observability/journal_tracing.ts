// The span of one group commit: one durable write carrying the appends of
// many actors, hence of many traces. It has no parent of its own (any one
// would be a lie); it starts a short trace and links to the journal.append
// span of every append it carries, so a backend leads from an order's append
// to the commit that made it durable and to its neighbours in the batch.

import { context, type Link, SpanKind, type SpanContext, trace, TraceFlags } from "@opentelemetry/api";
import { tracer, tracingOn } from "./tracing";

/** Name of the group commit's span; the sampler samples it whenever it links a sampled append (tracing_sdk.ts). */
export const COMMIT_SPAN_NAME = "journal.commit";

/** The journal.append span an append is written under, to be linked from its commit; undefined when none. */
export function appendSpanContext(): SpanContext | undefined {
  if (!tracingOn()) return undefined;
  return trace.getSpan(context.active())?.spanContext();
}

interface CarriedAppend {
  /** Encoded size, when the journal knows it per append. */
  readonly bytes?: number;
  readonly spanContext: SpanContext | undefined;
}

/**
 * Records a finished group commit of `batch`, `seconds` long, when at least
 * one of its appends was sampled. Only sampled appends are linked: a link to
 * a trace the backend never receives leads nowhere, and the commit is
 * sampled exactly when it links one (whatever the ratio sampler would say of
 * its own trace id), so a sampled append never misses its commit. `bytesTotal`: the size written, when the
 * journal merges the appends into one message rather than knowing each one's.
 * Returns a sampled trace for the commit latency's exemplar: the commit span's
 * own, or else (it is sampled on its own) that of the first sampled append.
 */
export function traceCommit(engine: string, batch: readonly CarriedAppend[], applied: number, seconds: number, bytesTotal?: number): string | undefined {
  if (!tracingOn()) return undefined;
  const links: Link[] = [];
  let bytes = 0;
  for (const pending of batch) {
    bytes += pending.bytes ?? 0;
    if (pending.spanContext !== undefined && (pending.spanContext.traceFlags & TraceFlags.SAMPLED) !== 0) links.push({ context: pending.spanContext });
  }
  if (links.length === 0) return undefined;
  const endMs = performance.timeOrigin + performance.now();
  const span = tracer().startSpan(COMMIT_SPAN_NAME, {
    kind: SpanKind.INTERNAL,
    root: true,
    links,
    startTime: endMs - seconds * 1000,
    attributes: { "journal.engine": engine, "journal.appends": batch.length, "journal.appends.applied": applied, "journal.bytes": bytesTotal ?? bytes },
  });
  span.end(endMs);
  const own = span.spanContext();
  if ((own.traceFlags & TraceFlags.SAMPLED) !== 0) return own.traceId;
  return links.find((link) => (link.context.traceFlags & TraceFlags.SAMPLED) !== 0)?.context.traceId;
}
