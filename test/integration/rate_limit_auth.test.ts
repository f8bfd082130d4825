// Rate limits end to end: a server with QM_AUTH_CONFIG, callers named by real
// tokens, a principal with its own limit and the default for the others.

import { status as GrpcStatus, type ServiceError } from "@grpc/grpc-js";
import { expect } from "chai";
import { decodeStatusDetails } from "../../src/cli/status_details";
import { metricValue } from "../support/metrics";
import { bearer, generateTestKey, signToken, type TestKey, writeAuthFiles } from "../support/security";
import { call, type Clients, createClients, makeTempDir, type ServerProcess, startServer } from "../support/server_process";

describe("rate limit: per caller, with QM_AUTH_CONFIG (integration)", function () {
  this.timeout(60_000);
  let server: ServerProcess;
  let c: Clients;
  let key: TestKey;

  before(async () => {
    key = await generateTestKey("k1");
    const dir = await makeTempDir("qm-rl-auth-");
    const file = await writeAuthFiles(dir, {
      keys: [key],
      principals: [{ subject: "bulk", tenant: "acme", roles: ["checkout"], rate_per_second: 2, burst: 5 }],
      rateLimits: { default: { per_second: 1000, burst: 2000 } },
    });
    server = await startServer({ env: { QM_AUTH_CONFIG: file } });
    c = createClients(server.addr);
  });

  after(async () => {
    c?.close();
    await server?.stop();
  });

  async function getSkuAs(subject: string, tenant = "acme"): Promise<GrpcStatus> {
    const token = await signToken(key, { sub: subject, tenant, roles: ["reader"] });
    try {
      await call(c.inventory, "getSku", { skuId: "nope" }, { metadata: bearer(token) });
      return GrpcStatus.OK;
    } catch (error) {
      const e = error as ServiceError;
      if (e.code === GrpcStatus.RESOURCE_EXHAUSTED) {
        const details = decodeStatusDetails(e);
        expect(details.errorInfo?.reason).to.equal("RATE_LIMITED");
        // 2 tokens/s: the next one is at most 500 ms away.
        expect(details.retryInfo?.retryDelayMs).to.be.within(1, 500);
      }
      return e.code;
    }
  }

  it("refuses a principal beyond its own burst with RATE_LIMITED and RetryInfo, while a caller on the default limit passes", async () => {
    const bulk: GrpcStatus[] = [];
    for (let i = 0; i < 8; i++) bulk.push(await getSkuAs("bulk"));
    // The first five pass the gate (and find no SKU); at 2/s at most one more can have refilled meanwhile.
    expect(bulk.slice(0, 5)).to.deep.equal(Array(5).fill(GrpcStatus.NOT_FOUND));
    expect(bulk.filter((code) => code === GrpcStatus.RESOURCE_EXHAUSTED).length).to.be.at.least(2);
    const other: GrpcStatus[] = [];
    for (let i = 0; i < 8; i++) other.push(await getSkuAs("someone-else"));
    expect(other).to.deep.equal(Array(8).fill(GrpcStatus.NOT_FOUND));
    const limited = await metricValue(server.metricsAddr, 'qm_rate_limited_total{tenant="acme"}');
    expect(limited).to.equal(bulk.filter((code) => code === GrpcStatus.RESOURCE_EXHAUSTED).length);
  });
});
