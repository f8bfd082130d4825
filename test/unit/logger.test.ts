import { expect } from "chai";
import { Writable } from "node:stream";
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
