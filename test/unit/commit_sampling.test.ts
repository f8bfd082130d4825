import { ROOT_CONTEXT, SpanKind, TraceFlags } from "@opentelemetry/api";
import { SamplingDecision, TraceIdRatioBasedSampler } from "@opentelemetry/sdk-trace-base";
import { expect } from "chai";
import { COMMIT_SPAN_NAME } from "../../src/observability/journal_tracing";
import { CommitFollowsAppends } from "../../src/observability/tracing_sdk";

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const link = (traceFlags: number): { context: { traceId: string; spanId: string; traceFlags: number } } => ({
  context: { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags },
});

describe("commit span sampling", () => {
  // A ratio of 0 never samples on its own: every RECORD_AND_SAMPLED below comes from the links.
  const sampler = new CommitFollowsAppends(new TraceIdRatioBasedSampler(0));

  it("samples a journal.commit span that links a sampled append, whatever the ratio says of its own trace", () => {
    const result = sampler.shouldSample(ROOT_CONTEXT, TRACE_ID, COMMIT_SPAN_NAME, SpanKind.INTERNAL, {}, [link(TraceFlags.NONE), link(TraceFlags.SAMPLED)]);
    expect(result.decision).to.equal(SamplingDecision.RECORD_AND_SAMPLED);
  });

  it("leaves a commit linking only unsampled appends, and every other span, to the configured sampler", () => {
    expect(sampler.shouldSample(ROOT_CONTEXT, TRACE_ID, COMMIT_SPAN_NAME, SpanKind.INTERNAL, {}, [link(TraceFlags.NONE)]).decision).to.equal(
      SamplingDecision.NOT_RECORD,
    );
    expect(sampler.shouldSample(ROOT_CONTEXT, TRACE_ID, "journal.append", SpanKind.INTERNAL, {}, [link(TraceFlags.SAMPLED)]).decision).to.equal(
      SamplingDecision.NOT_RECORD,
    );
  });
});
