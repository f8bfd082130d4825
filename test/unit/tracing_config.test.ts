import { expect } from "chai";
import { ConfigError, loadConfig } from "../../src/config";

describe("tracing configuration (OTEL_*)", () => {
  it("is off by default: exporter none, http/protobuf to localhost:4318, parent-based always-on sampling", () => {
    const t = loadConfig({}).tracing;
    expect(t.exporter).to.equal("none");
    expect(t.protocol).to.equal("http/protobuf");
    expect(t.endpoint).to.equal("http://localhost:4318");
    expect(t.serviceName).to.equal("quartermaster");
    expect(t.sampler).to.equal("parentbased_always_on");
    expect([t.bspScheduleDelayMs, t.bspExportTimeoutMs, t.bspMaxQueueSize, t.bspMaxExportBatchSize]).to.deep.equal([5000, 30000, 2048, 512]);
  });

  it("defaults the grpc endpoint to port 4317 and drops a trailing slash from a given one", () => {
    expect(loadConfig({ OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }).tracing.endpoint).to.equal("http://localhost:4317");
    expect(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" }).tracing.endpoint).to.equal("http://collector:4318");
  });

  it("parses OTEL_RESOURCE_ATTRIBUTES with percent-encoded values", () => {
    const t = loadConfig({ OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=prod,team=stock%20keepers" }).tracing;
    expect(t.resourceAttributes).to.deep.equal({ "deployment.environment": "prod", team: "stock keepers" });
  });

  it("reads the sampler and its ratio", () => {
    const t = loadConfig({ OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" }).tracing;
    expect([t.sampler, t.samplerRatio]).to.deep.equal(["parentbased_traceidratio", 0.25]);
  });

  const bad: [Record<string, string>, RegExp][] = [
    [{ OTEL_TRACES_EXPORTER: "otpl" }, /^OTEL_TRACES_EXPORTER=otpl: expected none, otlp, console$/],
    [{ OTEL_TRACES_EXPORTER: "jaeger" }, /^OTEL_TRACES_EXPORTER=jaeger/],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: "http" }, /^OTEL_EXPORTER_OTLP_PROTOCOL=http: expected http\/protobuf, http\/json, grpc$/],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }, /^OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318: expected an http/],
    [{ OTEL_SERVICE_NAME: " " }, /^OTEL_SERVICE_NAME must not be empty$/],
    [{ OTEL_RESOURCE_ATTRIBUTES: "team" }, /^OTEL_RESOURCE_ATTRIBUTES: "team" is not a key=value pair$/],
    [{ OTEL_RESOURCE_ATTRIBUTES: "team=%zz" }, /^OTEL_RESOURCE_ATTRIBUTES: the value of team is not valid percent-encoding$/],
    [{ OTEL_TRACES_SAMPLER: "ratio" }, /^OTEL_TRACES_SAMPLER=ratio: expected always_on/],
    [{ OTEL_TRACES_SAMPLER_ARG: "1.5" }, /^OTEL_TRACES_SAMPLER_ARG=1.5: expected a number from 0 to 1$/],
    [{ OTEL_TRACES_SAMPLER_ARG: "half" }, /^OTEL_TRACES_SAMPLER_ARG=half/],
    [{ OTEL_BSP_SCHEDULE_DELAY: "-1" }, /^OTEL_BSP_SCHEDULE_DELAY=-1: expected a whole number/],
    [{ OTEL_BSP_MAX_QUEUE_SIZE: "0" }, /^OTEL_BSP_MAX_QUEUE_SIZE=0: expected a whole number from 1/],
    [{ OTEL_BSP_MAX_QUEUE_SIZE: "100", OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "200" }, /^OTEL_BSP_MAX_EXPORT_BATCH_SIZE=200: must not exceed OTEL_BSP_MAX_QUEUE_SIZE=100$/],
  ];
  for (const [env, message] of bad) {
    it(`refuses ${JSON.stringify(env)} with a ConfigError naming the variable`, () => {
      expect(() => loadConfig(env)).to.throw(ConfigError, message);
    });
  }
});
