import { expect } from "chai";
import { Writable } from "node:stream";
import { Metadata } from "@grpc/grpc-js";
import { createLogger } from "../../src/observability/logger";

function capture(): { lines: () => Record<string, unknown>[]; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      chunks.push(chunk.toString("utf8"));
      done();
    },
  });
  const lines = (): Record<string, unknown>[] =>
    chunks
      .join("")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, stream };
}

describe("logger", () => {
  it("censors every configuration key that names a secret, whatever its full name, and keeps the rest", () => {
    const out = capture();
    const logger = createLogger("debug", out.stream);
    logger.debug({ config: { listen: "127.0.0.1:1", natsToken: "t0ps3cret", etcdPassword: "hunter2", apiKey: "k" } }, "configuration");
    const [line] = out.lines();
    expect(line?.config).to.deep.equal({ listen: "127.0.0.1:1", natsToken: "[redacted]", etcdPassword: "[redacted]", apiKey: "[redacted]" });
    expect(JSON.stringify(line)).not.to.match(/t0ps3cret|hunter2/);
  });

  it("redacts passwords and tokens nested in any logged object through pino's redact", () => {
    const out = capture();
    const logger = createLogger("info", out.stream).child({ component: "etcd" });
    logger.info({ options: { hosts: "127.0.0.1:2379", auth: { username: "qm", password: "hunter2" }, token: "abc" } }, "connecting");
    const [line] = out.lines();
    expect(line?.component).to.equal("etcd");
    expect(line?.options).to.deep.equal({ hosts: "127.0.0.1:2379", auth: { username: "qm", password: "[redacted]" }, token: "[redacted]" });
  });
});

describe("logger and gRPC metadata", () => {
  it("censors a bearer token in metadata logged as a field, nested in an object, or inside an error under any key", () => {
    const out = capture();
    const logger = createLogger("info", out.stream);
    const metadata = new Metadata();
    metadata.set("authorization", "Bearer eyJhbGciOi.secret-token.sig");
    metadata.set("x-request-id", "r-1");
    const error = Object.assign(new Error("refused"), { code: 16, metadata });
    logger.info({ metadata }, "field");
    logger.info({ call: { metadata } }, "nested");
    logger.info({ err: error }, "err");
    logger.info({ error }, "error");
    logger.info({ headers: { authorization: "Bearer eyJhbGciOi.secret-token.sig" } }, "plain object");
    const lines = out.lines();
    expect(lines).to.have.length(5);
    expect(JSON.stringify(lines)).not.to.contain("secret-token");
    expect(lines[0]?.metadata).to.deep.equal({ authorization: "[redacted]", "x-request-id": ["r-1"] });
    expect((lines[1]?.call as Record<string, unknown>).metadata).to.deep.equal({ authorization: "[redacted]", "x-request-id": ["r-1"] });
    expect((lines[2]?.err as Record<string, unknown>).metadata).to.deep.equal({ authorization: "[redacted]", "x-request-id": ["r-1"] });
    expect((lines[3]?.error as Record<string, unknown>).message).to.equal("refused");
  });
});
