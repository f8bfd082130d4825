// OpenTelemetry tracing: the SDK is started once per process from the OTEL_*
// variables (parsed in config.ts), with no auto-instrumentation: spans are
// made by hand at our own seams (gRPC call, actor turn, journal write, remote
// ask, etcd ownership), so grpc-js is not instrumented twice and nothing is
// patched on the hot path.
//
// With OTEL_TRACES_EXPORTER=none (the default) the SDK is never started and
// `tracingOn` stays false: every seam checks that one flag and does nothing
// else, so a request pays one branch per seam.

import { context, type Context, propagation, ROOT_CONTEXT, type Span, SpanStatusCode, trace, type Tracer } from "@opentelemetry/api";
import { OTLPTraceExporter as OtlpGrpcExporter } from "@opentelemetry/exporter-trace-otlp-grpc";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtoExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NodeSDK } from "@opentelemetry/sdk-node";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  type Sampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { TracingConfig } from "../config";
import { type ErrorCode, QmError } from "../errors";

/** Not yet in the stable semantic conventions package: the incubating name. */
const ATTR_SERVICE_INSTANCE_ID = "service.instance.id";

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

/** Starts the SDK unless the exporter is `none`. Call once, before the node starts. */
export function startTracing(config: TracingConfig, nodeId: string, version: string): Tracing {
  if (config.exporter === "none") return { stop: () => Promise.resolve() };
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      ...config.resourceAttributes,
      [ATTR_SERVICE_NAME]: config.serviceName,
      [ATTR_SERVICE_VERSION]: version,
      [ATTR_SERVICE_INSTANCE_ID]: nodeId,
    }),
    // Detectors would read OTEL_* themselves; config.ts is the one reader.
    autoDetectResources: false,
    sampler: sampler(config),
    spanProcessors: [
      new BatchSpanProcessor(exporter(config), {
        scheduledDelayMillis: config.bspScheduleDelayMs,
        exportTimeoutMillis: config.bspExportTimeoutMs,
        maxQueueSize: config.bspMaxQueueSize,
        maxExportBatchSize: config.bspMaxExportBatchSize,
      }),
    ],
    // No instrumentation of any library: our seams make the spans.
    instrumentations: [],
    // Without an explicit (empty) list the SDK would start an OTLP log exporter from the environment.
    logRecordProcessors: [],
  });
  sdk.start();
  state.tracer = trace.getTracer("quartermaster", version);
  state.on = true;
  let stopped: Promise<void> | undefined;
  return {
    stop: () => {
      stopped ??= sdk.shutdown().finally(() => {
        state.on = false;
      });
      return stopped;
    },
  };
}

function sampler(config: TracingConfig): Sampler {
  const ratio = new TraceIdRatioBasedSampler(config.samplerRatio);
  switch (config.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio;
    case "parentbased_always_on":
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio });
  }
}

function exporter(config: TracingConfig): SpanExporter {
  if (config.exporter === "console") return new ConsoleSpanExporter();
  switch (config.protocol) {
    case "grpc":
      return new OtlpGrpcExporter({ url: config.endpoint });
    case "http/json":
      return new OtlpJsonExporter({ url: `${config.endpoint}/v1/traces` });
    case "http/protobuf":
      return new OtlpProtoExporter({ url: `${config.endpoint}/v1/traces` });
  }
}

// ---- Helpers shared by the seams ---------------------------------------------

/** The W3C traceparent of a span, for a message that crosses to another actor or node. */
export function traceparentOf(span: Span): string {
  const sc = span.spanContext();
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & 1).toString(16)}`;
}

/** The traceparent of the active span, or undefined when tracing is off or no span is active. */
export function activeTraceparent(): string | undefined {
  if (!state.on) return undefined;
  const span = trace.getSpan(context.active());
  return span === undefined ? undefined : traceparentOf(span);
}

/** The context a W3C traceparent (and tracestate) continue; the root context for a missing or malformed one. */
export function contextFromTraceparent(traceparent: string | undefined, tracestate?: string): Context {
  if (traceparent === undefined) return ROOT_CONTEXT;
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

/** Fields pino adds to a line written inside a span (logger.ts's mixin). */
export function traceFields(): { trace_id?: string; span_id?: string } {
  if (!state.on) return {};
  const span = trace.getSpan(context.active());
  if (span === undefined) return {};
  const sc = span.spanContext();
  return { trace_id: sc.traceId, span_id: sc.spanId };
}
