import { propagation, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { expect } from "chai";
import { contextFromTraceparent } from "../../src/observability/tracing";

describe("contextFromTraceparent", () => {
  before(() => propagation.setGlobalPropagator(new W3CTraceContextPropagator()));
  after(() => propagation.disable());

  const standard = (traceparent: string): unknown => {
    const carrier: Record<string, string> = { traceparent };
    return trace.getSpanContext(propagation.extract(ROOT_CONTEXT, carrier, { get: (c, k) => c[k], keys: (c) => Object.keys(c) }));
  };

  it("reads our own traceparents directly, exactly as the W3C propagator reads them", () => {
    for (const traceparent of [
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
    ]) {
      const spanContext = trace.getSpanContext(contextFromTraceparent(traceparent));
      expect(spanContext, traceparent).to.deep.equal(standard(traceparent));
      expect(spanContext?.isRemote).to.equal(true);
    }
  });

  it("leaves anything else to the propagator: invalid ids, other versions and flags, upper case", () => {
    for (const traceparent of [
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
      "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03",
      "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
      "garbage",
    ]) {
      expect(trace.getSpanContext(contextFromTraceparent(traceparent)), traceparent).to.deep.equal(standard(traceparent));
    }
  });
});
