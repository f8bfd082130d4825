// A node's rate limiter: the store its configuration asks for and the gate
// wrapper, as one lifecycle part (it owns the Redis connection). The embedded
// node and a cluster node build it the same way; only the member count differs.

import type { Logger } from "pino";
import type { Clock } from "../../clock";
import type { Lifecycle } from "../../lifecycle";
import type { CallGate } from "../call_gate";
import { dividedLimit } from "./bucket";
import { type RateLimitPolicy, rateLimitedGate } from "./gate";
import { MemoryBucketStore, type RateLimitStore } from "./memory_store";
import { RedisBucketStore } from "./redis_store";

export interface RateLimiterOptions {
  /** QM_REDIS_URL; empty: buckets in this node's memory. */
  readonly redisUrl: string;
  /** The cluster's name: clusters sharing one Redis keep their buckets apart. */
  readonly clusterName: string;
  /** Members of the cluster now (1 for the embedded node): without Redis each enforces limit / members. */
  readonly nodeCount: () => number;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onLimited: (tenant: string) => void;
  readonly onFallback: () => void;
}

export class RateLimiter implements Lifecycle {
  readonly name = "rate-limiter";
  readonly store: RateLimitStore;
  private readonly redis: RedisBucketStore | undefined;

  constructor(private readonly options: RateLimiterOptions) {
    const local = new MemoryBucketStore(options.clock);
    this.redis =
      options.redisUrl === ""
        ? undefined
        : new RedisBucketStore({
            url: options.redisUrl,
            keyPrefix: `qm:rl:${options.clusterName}:`,
            fallback: local,
            nodeCount: options.nodeCount,
            logger: options.logger,
            onFallback: options.onFallback,
          });
    this.store = this.redis ?? { take: (key, limit, cost) => local.take(key, dividedLimit(limit, options.nodeCount()), cost) };
  }

  /** The parts a node starts: the Redis connection, when there is one; in-memory buckets need no start. */
  get lifecycleParts(): readonly Lifecycle[] {
    return this.redis === undefined ? [] : [this];
  }

  /** `inner` with the limits of `policy`; `inner` itself when there is no policy (no QM_AUTH_CONFIG: nobody is limited). */
  gate(inner: CallGate, policy: RateLimitPolicy | undefined): CallGate {
    if (policy === undefined) return inner;
    return rateLimitedGate(inner, policy, this.store, (caller) => this.options.onLimited(caller.tenant));
  }

  async start(): Promise<void> {
    await this.redis?.start();
  }

  async stop(): Promise<void> {
    await this.redis?.stop();
  }
}
