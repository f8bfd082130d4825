// redis-server as a child process on a free loopback port in a temp dir, for
// the rate limiter's tests (shared buckets). Persistence is off: a bucket is
// soft state. Readiness is polled with PING against a deadline.

import { Redis } from "ioredis";
import { type EngineProcess, type PortPicker, requireBinary, spawnEngine, startOnFreePorts, waitReady } from "./engines";
import { freePort, makeTempDir } from "./server_process";

export interface RedisProcess extends EngineProcess {
  /** redis://127.0.0.1:PORT, for QM_REDIS_URL and ioredis clients. */
  readonly url: string;
  readonly port: number;
}

/** `pickPort`: for tests of the harness. */
export async function startRedis(opts: { port?: number; pickPort?: PortPicker } = {}): Promise<RedisProcess> {
  const binary = requireBinary("redis-server", ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]);
  const dataDir = await makeTempDir("qm-redis-");
  return startOnFreePorts([opts.port], opts.pickPort ?? freePort, ([port = 0]) => startRedisOn(binary, dataDir, port));
}

async function startRedisOn(binary: string, dataDir: string, port: number): Promise<RedisProcess> {
  const engine = spawnEngine(binary, ["--port", String(port), "--bind", "127.0.0.1", "--dir", dataDir, "--save", "", "--appendonly", "no"], dataDir);
  const url = `redis://127.0.0.1:${port}`;
  await waitReady(engine, `redis-server at ${url}`, async () => {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on("error", () => undefined);
    try {
      await client.connect();
      await client.ping();
    } finally {
      client.disconnect();
    }
  });
  return { ...engine, url, port };
}
