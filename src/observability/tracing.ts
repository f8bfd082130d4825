// OpenTelemetry tracing: the SDK is started once per process from the OTEL_*
// variables (parsed in config.ts), with no auto-instrumentation: spans are
// made by hand at our own seams (gRPC call, actor turn, journal write, remote
// ask, etcd ownership), so grpc-js is not instrumented twice and nothing is
// patched on the hot path.
//
// With OTEL_TRACES_EXPORTER=none (the default) the SDK is never started and
// `tracingOn` stays false: every seam checks that one flag and does nothing
// else, so a request pays one branch per seam.

import { context, type Context, propagation, ROOT_CONTEXT, type Span, SpanStatusCode, trace, TraceFlags, type Tracer } from "@opentelemetry/api";
import type { TracingConfig } from "../config";
import { type ErrorCode, QmError } from "../errors";

const state: { on: boolean; tracer: Tracer } = { on: false, tracer: trace.getTracer("quartermaster") };

/** True once the SDK runs; every seam checks this before doing any tracing work. */
export function tracingOn(): boolean {
  return state.on;
}

export function tracer(): Tracer {
  return state.tracer;
}

export interface Tracing {
  /** Exports the spans still buffered and stops the SDK. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts the SDK unless the exporter is `none`. Call once, before the node
 * starts. The SDK's modules are loaded only here: with tracing off the
 * process does not pay their load time (about half a second on this machine).
 */
export async function startTracing(config: TracingConfig, nodeId: string, version: string): Promise<Tracing> {
  if (config.exporter === "none") return { stop: () => Promise.resolve() };
  const { startSdk } = await import("./tracing_sdk.js");
  const shutdown = startSdk(config, nodeId, version);
  state.tracer = trace.getTracer("quartermaster", version);
  state.on = true;
  let stopped: Promise<void> | undefined;
  return {
    stop: () => {
      stopped ??= shutdown().finally(() => {
        state.on = false;
      });
      return stopped;
    },
  };
}

// ---- Helpers shared by the seams ---------------------------------------------

/** The W3C traceparent of a span, for a message that crosses to another actor or node. */
export function traceparentOf(span: Span): string {
  const sc = span.spanContext();
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & 1).toString(16)}`;
}

/**
 * The traceparent of the active span, or undefined when tracing is off, no
 * span is active, or the active span is not sampled. Every sampler we
 * configure leaves the in-process children of an unsampled span unsampled
 * too (the parent-based ones by rule, traceidratio because they share its
 * trace id), so passing its traceparent on would only make the actors build
 * spans nobody records: under 10% sampling that was most of what tracing
 * cost the other 90% of calls.
 */
export function activeTraceparent(): string | undefined {
  if (!state.on) return undefined;
  const span = trace.getSpan(context.active());
  if (span === undefined || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return undefined;
  return traceparentOf(span);
}

/** The trace id of the active span when it is sampled (exported), for a metric's exemplar; undefined otherwise. */
export function sampledTraceId(): string | undefined {
  if (!state.on) return undefined;
  const sc = trace.getSpan(context.active())?.spanContext();
  return sc !== undefined && (sc.traceFlags & TraceFlags.SAMPLED) !== 0 ? sc.traceId : undefined;
}

/** What traceparentOf writes: version 00, lowercase hex, flags 00 or 01. */
const OWN_TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;
const INVALID_TRACE_ID = "0".repeat(32);
const INVALID_SPAN_ID = "0".repeat(16);

/** The context a W3C traceparent (and tracestate) continue; the root context for a missing or malformed one. */
export function contextFromTraceparent(traceparent: string | undefined, tracestate?: string): Context {
  if (traceparent === undefined) return ROOT_CONTEXT;
  // Most traceparents are our own (traceparentOf), handed from the gRPC span
  // to the actors it asks: version 00, lowercase, no tracestate. Taking them
  // apart directly spares the propagator's carrier, getter and regular
  // expression on every traced message; anything else goes the standard way.
  if (tracestate === undefined && OWN_TRACEPARENT.test(traceparent)) {
    const traceId = traceparent.slice(3, 35);
    const spanId = traceparent.slice(36, 52);
    if (traceId !== INVALID_TRACE_ID && spanId !== INVALID_SPAN_ID) {
      return trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId, traceFlags: traceparent.endsWith("1") ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true });
    }
  }
  const carrier: Record<string, string> = tracestate === undefined ? { traceparent } : { traceparent, tracestate };
  return propagation.extract(ROOT_CONTEXT, carrier, {
    get: (c, key) => c[key],
    keys: (c) => Object.keys(c),
  });
}

/**
 * Domain outcomes: the service answered correctly that the request cannot be
 * done (no stock, an illegal transition, bad input). They are span events and
 * leave the status unset; only the other codes (a fault, an overload, a lost
 * write) mark the span ERROR.
 */
const DOMAIN_OUTCOMES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "INVALID_ARGUMENT",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "INSUFFICIENT_STOCK",
  "ILLEGAL_TRANSITION",
  "FAILED_PRECONDITION",
  "LIMIT_EXCEEDED",
]);

export const DOMAIN_OUTCOME_EVENT = "qm.domain_outcome";

/** True for a code that answers a request correctly (the domain said no), false for a failure. */
export function isDomainOutcome(code: ErrorCode): boolean {
  return DOMAIN_OUTCOMES.has(code);
}

/** Records a failed outcome on a span: an event for a domain outcome, ERROR status for a real failure. */
export function recordOutcome(span: Span, code: ErrorCode, reason: string): void {
  if (DOMAIN_OUTCOMES.has(code)) {
    span.addEvent(DOMAIN_OUTCOME_EVENT, { "qm.code": code, "qm.reason": reason });
    return;
  }
  span.setAttribute("qm.code", code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${code}: ${reason}` });
}

/** Records a failure thrown or returned to a span: a QmError through recordOutcome, anything else as ERROR. */
export function recordFailure(span: Span, error: unknown): void {
  if (error instanceof QmError) recordOutcome(span, error.code, error.message);
  else span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}

/** Ends the span when `pending` settles, recording a failure first; returns `pending` for the caller to await. */
export function endWhenSettled<T>(span: Span, pending: Promise<T>): Promise<T> {
  pending.then(
    () => span.end(),
    (error: unknown) => {
      recordFailure(span, error);
      span.end();
    },
  );
  return pending;
}

/** Fields pino adds to a line written inside a span (logger.ts's mixin). */
export function traceFields(): { trace_id?: string; span_id?: string } {
  if (!state.on) return {};
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const sc = span.spanContext();
  return { trace_id: sc.traceId, span_id: sc.spanId };
}
