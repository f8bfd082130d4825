// The OpenTelemetry SDK's assembly, loaded by tracing.ts only when tracing
// is on: exporter by protocol, sampler, batch span processor and resource,
// all from the validated configuration rather than the SDK's own reading of
// the environment.

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
  SamplingDecision,
  type SamplingResult,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from "@opentelemetry/sdk-trace-base";
import { type Attributes, type Context, type Link, type SpanKind, TraceFlags } from "@opentelemetry/api";
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from "@opentelemetry/semantic-conventions";
import type { TracingConfig } from "../config";
import { COMMIT_SPAN_NAME } from "./journal_tracing";

/** Not yet in the stable semantic conventions package: the incubating name. */
const ATTR_SERVICE_INSTANCE_ID = "service.instance.id";

/** Starts and registers the SDK; returns its shutdown (which exports what is still buffered). */
export function startSdk(config: TracingConfig, nodeId: string, version: string): () => Promise<void> {
  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      ...config.resourceAttributes,
      [ATTR_SERVICE_NAME]: config.serviceName,
      [ATTR_SERVICE_VERSION]: version,
      [ATTR_SERVICE_INSTANCE_ID]: nodeId,
    }),
    // Detectors would read OTEL_* themselves; config.ts is the one reader.
    autoDetectResources: false,
    sampler: new CommitFollowsAppends(sampler(config)),
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
  return () => sdk.shutdown();
}

/**
 * The configured sampler, except that a group commit's span is sampled when
 * it links a sampled append. The commit is a root span of its own trace, so
 * a ratio sampler alone would keep it at the ratio, independently of the
 * appends it carries, and a sampled append would usually miss its commit.
 */
export class CommitFollowsAppends implements Sampler {
  constructor(private readonly inner: Sampler) {}

  shouldSample(context: Context, traceId: string, spanName: string, spanKind: SpanKind, attributes: Attributes, links: Link[]): SamplingResult {
    if (spanName === COMMIT_SPAN_NAME) {
      for (const link of links) if ((link.context.traceFlags & TraceFlags.SAMPLED) !== 0) return { decision: SamplingDecision.RECORD_AND_SAMPLED };
    }
    return this.inner.shouldSample(context, traceId, spanName, spanKind, attributes, links);
  }

  toString(): string {
    return `CommitFollowsAppends{${this.inner.toString()}}`;
  }
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

