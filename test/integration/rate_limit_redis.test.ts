import { Writable } from "node:stream";
import { expect } from "chai";
import { Redis } from "ioredis";
import pino, { type Logger } from "pino";
import { ManualClock } from "../../src/clock";
import type { BucketLimit } from "../../src/security/rate_limit/bucket";
import { MemoryBucketStore } from "../../src/security/rate_limit/memory_store";
import { RedisBucketStore } from "../../src/security/rate_limit/redis_store";
import { freePort, makeTempDir, SERVER_MAIN, startServer } from "../support/server_process";
import { pollUntil } from "../support/metrics";
import { qmRejectionOf } from "../support/qm_error";
import { type RedisProcess, startRedis } from "../support/redis";
import { type ProcessRun, runProcess } from "../support/run_process";

const PREFIX = "qm:rl:test:";

/** Runs the server until it exits (it must, within the deadline); its exit code and output. */
function serverToExit(env: Record<string, string>): Promise<ProcessRun> {
  return runProcess([process.execPath, SERVER_MAIN], env);
}

function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString("utf8"));
      done();
    },
  });
  return { logger: pino({ level: "warn" }, sink), lines };
}

describe("rate limit: Redis store against a real redis-server", function () {
  this.timeout(60_000);
  let redis: RedisProcess;
  let admin: Redis;
  const stores: RedisBucketStore[] = [];

  function store(opts: { nodeCount?: number; onFallback?: () => void; logger?: Logger; url?: string } = {}): RedisBucketStore {
    const s = new RedisBucketStore({
      url: opts.url ?? redis.url,
      keyPrefix: PREFIX,
      fallback: new MemoryBucketStore(new ManualClock()),
      nodeCount: () => opts.nodeCount ?? 1,
      logger: opts.logger ?? pino({ level: "silent" }),
      ...(opts.onFallback === undefined ? {} : { onFallback: opts.onFallback }),
    });
    stores.push(s);
    return s;
  }

  function adminClient(): Redis {
    const client = new Redis(redis.url);
    // The test stops Redis on purpose; the admin client's reconnect errors are expected.
    client.on("error", () => undefined);
    return client;
  }

  before(async () => {
    redis = await startRedis();
    admin = adminClient();
  });

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.stop()));
    if (admin.status === "ready") await admin.flushall();
  });

  after(async () => {
    admin.disconnect();
    await redis.stop();
  });

  it("admits the burst, then refuses with the time until the next token, and keys expire once full", async () => {
    const s = store();
    await s.start();
    const limit: BucketLimit = { perSecond: 2, burst: 3 };
    for (let i = 0; i < 3; i++) expect((await s.take("acme/svc", limit, 1)).allowed).to.equal(true);
    const refused = await s.take("acme/svc", limit, 1);
    expect(refused.allowed).to.equal(false);
    // One token at 2/s is at most 500 ms away (a little of it may have refilled already).
    expect(refused.retryAfterMs).to.be.within(1, 500);
    const pttl = await admin.pttl(`${PREFIX}acme/svc`);
    // Empty bucket: full after 1.5 s, plus the script's 1 s margin.
    expect(pttl).to.be.within(1, 2500);
    expect(await admin.hget(`${PREFIX}acme/svc`, "ts")).to.match(/^\d{13}$/);
  });

  it("refills on Redis's clock: a refused caller is admitted again after the retry delay", async () => {
    const s = store();
    await s.start();
    const limit: BucketLimit = { perSecond: 20, burst: 1 };
    expect((await s.take("k", limit, 1)).allowed).to.equal(true);
    const refused = await s.take("k", limit, 1);
    expect(refused.allowed).to.equal(false);
    expect(refused.retryAfterMs).to.be.within(1, 50);
    expect(await pollUntil(async () => (await s.take("k", limit, 1)).allowed, Date.now() + 5_000)).to.equal(true);
  });

  it("shares one bucket between two nodes using the same Redis", async () => {
    const nodeA = store();
    const nodeB = store();
    await nodeA.start();
    await nodeB.start();
    const limit: BucketLimit = { perSecond: 1, burst: 4 };
    expect((await nodeA.take("acme/svc", limit, 1)).allowed).to.equal(true);
    expect((await nodeB.take("acme/svc", limit, 1)).allowed).to.equal(true);
    expect((await nodeA.take("acme/svc", limit, 2)).allowed).to.equal(true);
    const refused = await nodeB.take("acme/svc", limit, 1);
    expect(refused.allowed).to.equal(false);
    expect(refused.retryAfterMs).to.be.within(1, 1000);
    // Another caller's bucket is untouched.
    expect((await nodeB.take("acme/other", limit, 4)).allowed).to.equal(true);
  });

  it("reloads the script after Redis forgets it (SCRIPT FLUSH): EVALSHA falls back to EVAL", async () => {
    const s = store();
    await s.start();
    const limit: BucketLimit = { perSecond: 1, burst: 2 };
    expect((await s.take("k", limit, 1)).allowed).to.equal(true);
    await admin.script("FLUSH");
    expect((await s.take("k", limit, 1)).allowed).to.equal(true);
    expect((await s.take("k", limit, 1)).allowed).to.equal(false);
  });

  it("refuses to start against an unreachable QM_REDIS_URL, naming it", async () => {
    const url = `redis://:hunter2@127.0.0.1:${await freePort()}`;
    const error = await qmRejectionOf(store({ url }).start());
    expect(error.code).to.equal("UNAVAILABLE");
    expect(error.message).to.match(/^QM_REDIS_URL=redis:\/\/:redacted@127\.0\.0\.1:\d+: cannot reach Redis/);
    expect(error.message).to.not.include("hunter2");
  });

  it("starts a node with QM_REDIS_URL, and refuses to start one whose QM_REDIS_URL does not answer, naming it", async () => {
    const server = await startServer({ env: { QM_REDIS_URL: redis.url } });
    try {
      expect(server.logs()).to.not.match(/cannot reach Redis/);
    } finally {
      await server.stop();
    }
    const port = await freePort();
    const ended = await serverToExit({
      QM_REDIS_URL: `redis://:hunter2@127.0.0.1:${port}`,
      QM_LISTEN: `127.0.0.1:${await freePort()}`,
      QM_METRICS_LISTEN: "",
      QM_DATA_DIR: await makeTempDir("qm-redis-start-"),
    });
    expect(ended.code).to.equal(1);
    expect(ended.stderr).to.match(new RegExp(`^quartermaster: cannot start: QM_REDIS_URL=redis://:redacted@127\\.0\\.0\\.1:${port}: cannot reach Redis`));
    expect(ended.stderr).to.not.include("hunter2");
  });

  it("answers from the node's own bucket when Redis hangs, within the command timeout", async () => {
    let fallbacks = 0;
    const s = store({ onFallback: () => (fallbacks += 1) });
    await s.start();
    const limit: BucketLimit = { perSecond: 1, burst: 1 };
    expect((await s.take("k", limit, 1)).allowed).to.equal(true);
    redis.pause();
    try {
      const started = performance.now();
      // The local bucket is a fresh one: it admits, where Redis's would have refused.
      expect((await s.take("k", limit, 1)).allowed).to.equal(true);
      const tookMs = performance.now() - started;
      expect(fallbacks).to.equal(1);
      // RATE_LIMIT_REDIS_TIMEOUT_MS is 100; generous for a loaded machine, far below a hang.
      expect(tookMs).to.be.below(2_000);
    } finally {
      redis.resume();
    }
  });

  it("answers from the node's own bucket with the limit divided by the members while Redis is down, and returns to Redis", async () => {
    let fallbacks = 0;
    const { logger, lines } = capturingLogger();
    const s = store({ nodeCount: 2, onFallback: () => (fallbacks += 1), logger });
    await s.start();
    const limit: BucketLimit = { perSecond: 1, burst: 4 };
    await redis.stop();
    // 4 / 2 nodes: two calls pass locally, the third is refused (1/s / 2 nodes: a token every 2 s).
    expect((await s.take("k", limit, 1)).allowed).to.equal(true);
    expect((await s.take("k", limit, 1)).allowed).to.equal(true);
    expect(await s.take("k", limit, 1)).to.deep.equal({ allowed: false, retryAfterMs: 2000 });
    expect(fallbacks).to.equal(3);
    const warnings = lines.map((line) => JSON.parse(line) as { level: number; msg: string; fallbacks: number });
    // Logged at the 1st and 2nd fallback, not the 3rd.
    expect(warnings.map((w) => w.fallbacks)).to.deep.equal([1, 2]);
    expect(warnings[0]?.msg).to.match(/Redis did not answer/);

    redis = await startRedis({ port: redis.port });
    admin.disconnect();
    admin = adminClient();
    const back = await pollUntil(async () => {
      const before = fallbacks;
      await s.take("other", limit, 1);
      return fallbacks === before;
    }, Date.now() + 15_000, 100);
    expect(back, "the store used Redis again after it came back").to.equal(true);
    expect(await admin.exists(`${PREFIX}other`)).to.equal(1);
  });
});
