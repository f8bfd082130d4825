import { Metadata, type ServiceError, status as GrpcStatus } from "@grpc/grpc-js";
import { expect } from "chai";
import { formatServiceError } from "../../src/cli/qmctl";
import { decodeStatusDetails } from "../../src/cli/status_details";
import { ManualClock } from "../../src/clock";
import { ConfigError, loadConfig } from "../../src/config";
import { QmError } from "../../src/errors";
import { toServiceError } from "../../src/grpc/status_mapping";
import { RATE_LIMITED_TENANT_LABELS_MAX } from "../../src/limits";
import { Metrics } from "../../src/observability/metrics";
import type { AuthContext, CallGate, GateCall } from "../../src/security/call_gate";
import { ANONYMOUS_CALLER, type Caller } from "../../src/security/caller";
import { type BucketLimit, type BucketState, dividedLimit, refillAndTake } from "../../src/security/rate_limit/bucket";
import { bucketKey, RESERVE_BATCH_PATH, rateLimitedGate } from "../../src/security/rate_limit/gate";
import { MemoryBucketStore } from "../../src/security/rate_limit/memory_store";
import { qmErrorOf, qmRejectionOf } from "../support/qm_error";

const LIMIT: BucketLimit = { perSecond: 10, burst: 5 };

function caller(subject: string, tenant = "acme"): Caller {
  return { subject, tenant, roles: [], authenticated: true };
}

function gateCall(path = "/quartermaster.v1.InventoryService/Reserve", request?: unknown): GateCall {
  return { path, metadata: new Metadata(), authContext: () => ({}) as AuthContext, request };
}

/** An inner gate that names every call as `who`. */
function namingGate(who: Caller): CallGate {
  return { admit: () => who };
}

/** The gate's answer, which must be synchronous here (a local store behind a synchronous inner gate). */
function admitNow(gate: CallGate, call: GateCall): Caller {
  const admitted = gate.admit(call);
  if (admitted instanceof Promise) throw new Error("expected a synchronous answer");
  return admitted;
}

describe("rate limit: token bucket arithmetic", () => {
  it("admits a full burst at once, refuses the next call with the time until one token refills", () => {
    const state: BucketState = { tokens: LIMIT.burst, updatedMs: 0 };
    for (let i = 0; i < 5; i++) expect(refillAndTake(state, LIMIT, 1, 0)).to.deep.equal({ allowed: true, retryAfterMs: 0 });
    // 10 tokens/s: one token every 100 ms.
    expect(refillAndTake(state, LIMIT, 1, 0)).to.deep.equal({ allowed: false, retryAfterMs: 100 });
    expect(refillAndTake(state, LIMIT, 1, 30)).to.deep.equal({ allowed: false, retryAfterMs: 70 });
    expect(refillAndTake(state, LIMIT, 1, 100).allowed).to.equal(true);
    expect(refillAndTake(state, LIMIT, 1, 100)).to.deep.equal({ allowed: false, retryAfterMs: 100 });
  });

  it("refills continuously at the rate and never beyond the burst", () => {
    const state: BucketState = { tokens: 0, updatedMs: 0 };
    expect(refillAndTake(state, LIMIT, 3, 250)).to.deep.equal({ allowed: false, retryAfterMs: 50 });
    expect(state.tokens).to.be.closeTo(2.5, 1e-9);
    refillAndTake(state, LIMIT, 1, 60_000);
    expect(state.tokens).to.equal(LIMIT.burst - 1);
  });

  it("charges a call costing more than the burst a full bucket, so it can succeed at all", () => {
    const state: BucketState = { tokens: LIMIT.burst, updatedMs: 0 };
    expect(refillAndTake(state, LIMIT, 1000, 0).allowed).to.equal(true);
    expect(state.tokens).to.equal(0);
    expect(refillAndTake(state, LIMIT, 1000, 0)).to.deep.equal({ allowed: false, retryAfterMs: 500 });
  });

  it("refills nothing when the clock goes back", () => {
    const state: BucketState = { tokens: 1, updatedMs: 1000 };
    expect(refillAndTake(state, LIMIT, 2, 500)).to.deep.equal({ allowed: false, retryAfterMs: 100 });
    expect(state).to.deep.equal({ tokens: 1, updatedMs: 1000 });
  });

  it("divides a limit among the nodes, keeping a burst of at least one call", () => {
    expect(dividedLimit({ perSecond: 1000, burst: 2000 }, 4)).to.deep.equal({ perSecond: 250, burst: 500 });
    expect(dividedLimit({ perSecond: 3, burst: 2 }, 3)).to.deep.equal({ perSecond: 1, burst: 1 });
    expect(dividedLimit(LIMIT, 1)).to.equal(LIMIT);
  });
});

describe("rate limit: in-memory store", () => {
  it("keeps one bucket per key, refilled by the injected clock", () => {
    const clock = new ManualClock();
    const store = new MemoryBucketStore(clock);
    for (let i = 0; i < 5; i++) expect(store.take("a", LIMIT, 1).allowed).to.equal(true);
    expect(store.take("a", LIMIT, 1)).to.deep.equal({ allowed: false, retryAfterMs: 100 });
    expect(store.take("b", LIMIT, 1).allowed).to.equal(true);
    clock.advance(100);
    expect(store.take("a", LIMIT, 1).allowed).to.equal(true);
    expect(store.take("a", LIMIT, 1).allowed).to.equal(false);
  });

  it("drops idle (full again) buckets first, and never holds more than its bound", () => {
    const clock = new ManualClock();
    const store = new MemoryBucketStore(clock, 3);
    store.take("idle", LIMIT, 1);
    for (let i = 0; i < 5; i++) store.take("busy1", LIMIT, 1);
    for (let i = 0; i < 5; i++) store.take("busy2", LIMIT, 1);
    clock.advance(100); // "idle" is full again (1 token in 100 ms), the busy ones hold 1 of 5
    store.take("new", LIMIT, 1);
    expect(store.size).to.equal(3);
    // busy1 kept its state: one token refilled and none more.
    expect(store.take("busy1", LIMIT, 1).allowed).to.equal(true);
    expect(store.take("busy1", LIMIT, 1).allowed).to.equal(false);
    for (let i = 0; i < 10; i++) store.take(`flood-${i}`, LIMIT, 1);
    expect(store.size).to.equal(3);
  });

  it("forgets an idle bucket when a new one is made, without changing any answer", () => {
    const clock = new ManualClock();
    const store = new MemoryBucketStore(clock);
    store.take("a", LIMIT, 1);
    clock.advance(100);
    store.take("b", LIMIT, 1);
    expect(store.size).to.equal(1);
    for (let i = 0; i < 5; i++) expect(store.take("a", LIMIT, 1).allowed).to.equal(true);
    expect(store.take("a", LIMIT, 1).allowed).to.equal(false);
  });
});

describe("rate limit: gate", () => {
  it("admits synchronously within the limit and refuses beyond it with RATE_LIMITED and the retry delay", () => {
    const clock = new ManualClock();
    const limited: string[] = [];
    const gate = rateLimitedGate(namingGate(caller("svc")), () => LIMIT, new MemoryBucketStore(clock), (c) => limited.push(c.tenant));
    for (let i = 0; i < 5; i++) expect(admitNow(gate, gateCall())).to.deep.equal(caller("svc"));
    const error = qmErrorOf(() => admitNow(gate, gateCall()));
    expect(error.code).to.equal("RATE_LIMITED");
    expect(error.metadata).to.deep.equal({ reason: "RATE_LIMITED", retry_after_ms: "100" });
    expect(limited).to.deep.equal(["acme"]);
  });

  it("gives the same subject in two tenants two buckets", () => {
    let who = caller("svc", "acme");
    const gate = rateLimitedGate({ admit: () => who }, () => LIMIT, new MemoryBucketStore(new ManualClock()));
    for (let i = 0; i < 5; i++) admitNow(gate, gateCall());
    expect(() => admitNow(gate, gateCall())).to.throw(QmError);
    who = caller("svc", "globex");
    expect(admitNow(gate, gateCall())).to.deep.equal(who);
    expect(bucketKey(caller("a:b", "c"))).to.not.equal(bucketKey(caller("b", "c:a")));
  });

  it("charges ReserveBatch one token per item", () => {
    const gate = rateLimitedGate(namingGate(caller("svc")), () => ({ perSecond: 10, burst: 10 }), new MemoryBucketStore(new ManualClock()));
    const batch = (n: number): GateCall => gateCall(RESERVE_BATCH_PATH, { items: Array.from({ length: n }, () => ({})) });
    admitNow(gate, batch(4));
    admitNow(gate, batch(4));
    const error = qmErrorOf(() => admitNow(gate, batch(4)));
    // 2 tokens left, 4 needed: 2 more at 10/s.
    expect(error.metadata.retry_after_ms).to.equal("200");
    expect(admitNow(gate, gateCall())).to.deep.equal(caller("svc"));
  });

  it("limits nobody the policy does not name, and never the unauthenticated (anonymous) caller", () => {
    const unnamed = rateLimitedGate(namingGate(caller("svc")), () => undefined, new MemoryBucketStore(new ManualClock()));
    for (let i = 0; i < 100; i++) expect(admitNow(unnamed, gateCall())).to.deep.equal(caller("svc"));
    const anonymous = rateLimitedGate(namingGate(ANONYMOUS_CALLER), () => LIMIT, new MemoryBucketStore(new ManualClock()));
    for (let i = 0; i < 100; i++) expect(admitNow(anonymous, gateCall())).to.equal(ANONYMOUS_CALLER);
  });

  it("limits after an asynchronous inner gate and with an asynchronous store", async () => {
    const local = new MemoryBucketStore(new ManualClock());
    const gate = rateLimitedGate({ admit: async () => caller("svc") }, () => ({ perSecond: 1, burst: 1 }), { take: async (k, l, c) => local.take(k, l, c) });
    expect(await gate.admit(gateCall())).to.deep.equal(caller("svc"));
    const error = await qmRejectionOf(Promise.resolve(gate.admit(gateCall())));
    expect(error.metadata.retry_after_ms).to.equal("1000");
  });

  it("refuses an invalid limit as a bug (INTERNAL), never as unlimited", () => {
    const gate = rateLimitedGate(namingGate(caller("svc")), () => ({ perSecond: 0, burst: 5 }), new MemoryBucketStore(new ManualClock()));
    expect(qmErrorOf(() => admitNow(gate, gateCall())).code).to.equal("INTERNAL");
  });
});

describe("rate limit: status, qmctl, metric, configuration", () => {
  function limitedError(retryAfterMs: number): ServiceError {
    const error = new QmError("RATE_LIMITED", "rate limit of 10 calls/s (burst 5) exceeded by svc", { reason: "RATE_LIMITED", retry_after_ms: String(retryAfterMs) });
    return toServiceError(error) as ServiceError;
  }

  it("maps RATE_LIMITED to RESOURCE_EXHAUSTED with ErrorInfo reason RATE_LIMITED and a RetryInfo delay", () => {
    const status = limitedError(1250);
    expect(status.code).to.equal(GrpcStatus.RESOURCE_EXHAUSTED);
    const details = decodeStatusDetails(status);
    expect(details.errorInfo?.reason).to.equal("RATE_LIMITED");
    expect(details.retryInfo).to.deep.equal({ retryDelayMs: 1250 });
    expect(decodeStatusDetails(toServiceError(new QmError("OVERLOADED", "busy")) as ServiceError).retryInfo).to.equal(undefined);
  });

  it("qmctl prints the retry delay on its first line", () => {
    expect(formatServiceError(limitedError(100), false).split("\n")[0]).to.equal(
      "error: RESOURCE_EXHAUSTED: rate limit of 10 calls/s (burst 5) exceeded by svc (retry after 100 ms)",
    );
    expect(formatServiceError(limitedError(2500), false).split("\n")[0]).to.match(/\(retry after 2\.500 s\)$/);
    const json = JSON.parse(formatServiceError(limitedError(2500), true)) as { error: { retryInfo: unknown } };
    expect(json.error.retryInfo).to.deep.equal({ retryDelayMs: 2500 });
  });

  it("counts refusals by tenant, the tenants beyond the label bound as _other", async () => {
    const metrics = new Metrics({ journalStats: () => ({ commits: 0, appends: 0, events: 0 }), activeActors: () => 0, actorFaults: () => 0 });
    for (let i = 0; i < RATE_LIMITED_TENANT_LABELS_MAX + 5; i++) metrics.rateLimited(`t${i}`);
    metrics.rateLimited("t0");
    const text = await metrics.registry.getSingleMetricAsString("qm_rate_limited_total");
    const samples = text.split("\n").filter((line) => line.startsWith("qm_rate_limited_total{"));
    expect(samples).to.have.length(RATE_LIMITED_TENANT_LABELS_MAX + 1);
    expect(samples).to.include('qm_rate_limited_total{tenant="t0"} 2');
    expect(samples).to.include('qm_rate_limited_total{tenant="_other"} 5');
  });

  it("accepts a redis:// or rediss:// QM_REDIS_URL and refuses anything else without echoing a password", () => {
    expect(loadConfig({}).redisUrl).to.equal("");
    expect(loadConfig({ QM_REDIS_URL: "redis://:pw@10.0.0.5:6379/2" }).redisUrl).to.equal("redis://:pw@10.0.0.5:6379/2");
    expect(loadConfig({ QM_REDIS_URL: "rediss://cache.example:6380" }).redisUrl).to.equal("rediss://cache.example:6380");
    for (const bad of ["http://:secret@h:1", "localhost:6379", "redis://"]) {
      expect(() => loadConfig({ QM_REDIS_URL: bad }))
        .to.throw(ConfigError, /QM_REDIS_URL/)
        .with.property("message")
        .that.does.not.include("secret");
    }
  });
});
