// A copy in memory of some keys in etcd, read at one revision and then kept
// by a watch from the next, that never trusts a lost watch to resume.
//
// Why. etcd3 (1.1.2) resumes a watch after a reconnection from the revision of
// the last header it saw, which can be past events it has not delivered yet;
// and a watch whose start revision etcd compacted meanwhile is cancelled for
// good, after which no event arrives at all. Either way a copy kept only by
// its watch goes stale and stays stale. So after a disconnection, a cancel or
// an end, the owner's `read` runs again: it reads every key at one revision
// and REPLACES its copy with them (a key deleted meanwhile goes too), and the
// watch starts anew from the next revision, so no event is lost between the
// read and the watch and none is applied twice. The same re-read runs every
// `resyncIntervalMs` as a backstop against a watch that stops delivering
// without saying so. One re-read at a time; a request during one runs once
// more after it. While etcd cannot be read, the last copy stays in force and
// the re-read is retried every `retryMs`, logged once per outage.
//
// Used by the cluster's view of members, drains and partition owners
// (etcd_cluster.ts) and by the revocations shared through etcd
// (security/cluster_revocations.ts); each owns what it reads and how it
// applies an event.

import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import type { Logger } from "pino";

export interface EtcdMirrorOptions {
  readonly client: Etcd3;
  /** The watched prefix; `read` may read less of it (the cluster's view skips revoked/). */
  readonly prefix: string;
  readonly logger: Logger;
  /** What is mirrored, for the log lines ("the cluster's view"). */
  readonly what: string;
  /**
   * Reads the keys at one revision, replaces the owner's copy with them, and
   * returns that revision. Throws when etcd cannot be read (the copy unchanged).
   */
  readonly read: () => Promise<bigint>;
  readonly onPut: (kv: IKeyValue) => void;
  readonly onDelete: (kv: IKeyValue) => void;
  /** After each successful re-read (not the first read, which start() awaits). */
  readonly afterResync?: () => void;
  readonly retryMs: number;
  readonly resyncIntervalMs: number;
}

export class EtcdMirror {
  private readonly options: EtcdMirrorOptions;
  private readonly logger: Logger;
  private watcher: Watcher | undefined;
  private resyncing: Promise<void> | undefined;
  private resyncAgain = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private periodicTimer: NodeJS.Timeout | undefined;
  /** Failed re-reads in a row: only the first of an outage is logged. */
  private failures = 0;
  private stopped = false;

  constructor(options: EtcdMirrorOptions) {
    this.options = options;
    this.logger = options.logger;
  }

  /** The first read and the watch; fails (and the owner's start with it) if etcd cannot be read. */
  async start(): Promise<void> {
    await this.readAndWatch();
    this.periodicTimer = setInterval(() => this.resync("periodic"), this.options.resyncIntervalMs);
    this.periodicTimer.unref();
  }

  /** No more re-reads; the watch, if any, still delivers until stop(). Idempotent. */
  stopResyncs(): void {
    this.stopped = true;
    clearInterval(this.periodicTimer);
    clearTimeout(this.retryTimer);
  }

  /** Idempotent. The owner's copy stays as it was. */
  async stop(): Promise<void> {
    this.stopResyncs();
    const watcher = this.detachWatcher();
    if (watcher !== undefined) await cancelWithin(watcher, this.options.retryMs);
  }

  /** Re-reads and watches anew; one at a time, and a request during one runs once more after it. */
  resync(why: string): void {
    if (this.stopped) return;
    if (this.resyncing !== undefined) {
      this.resyncAgain = true;
      return;
    }
    this.logger.debug({ why }, `re-reading ${this.options.what}`);
    this.resyncing = (async () => {
      try {
        do {
          this.resyncAgain = false;
          await this.readAndWatch();
        } while (this.resyncAgain && !this.stopped);
        if (this.failures > 0) this.logger.info({ failures: this.failures }, `${this.options.what} read from etcd again`);
        this.failures = 0;
        if (!this.stopped) this.options.afterResync?.();
      } catch (error) {
        if (this.failures++ === 0) {
          this.logger.warn({ err: error, retryMs: this.options.retryMs }, `cannot read ${this.options.what} from etcd: the last one read stays in force; retrying`);
        }
        clearTimeout(this.retryTimer);
        if (!this.stopped) {
          this.retryTimer = setTimeout(() => this.resync("retry"), this.options.retryMs);
          this.retryTimer.unref();
        }
      } finally {
        this.resyncing = undefined;
      }
    })();
  }

  private async readAndWatch(): Promise<void> {
    const old = this.detachWatcher();
    if (old !== undefined) void cancelWithin(old, this.options.retryMs);
    const revision = await this.options.read();
    if (this.stopped) return;
    this.watch(revision + 1n);
  }

  private watch(fromRevision: bigint): void {
    // watcher() attaches at once and connects when it can; create() would wait for the connection.
    const watcher = this.options.client.watch().prefix(this.options.prefix).startRevision(fromRevision.toString()).watcher();
    let disconnected = false;
    watcher.on("put", (kv: IKeyValue) => this.options.onPut(kv));
    watcher.on("delete", (kv: IKeyValue) => this.options.onDelete(kv));
    watcher.on("disconnected", () => {
      disconnected = true;
    });
    watcher.on("connected", () => {
      // A resumed watch may have skipped events (the header above).
      if (disconnected) this.resync("watch reconnected");
    });
    // etcd3 emits 'error' when etcd cancelled the watch (a compacted start revision): it is dead.
    watcher.on("error", (error: Error) => {
      if (this.watcher !== watcher) return;
      this.logger.warn({ err: error }, `etcd cancelled the watch of ${this.options.what}: re-reading it`);
      this.watcher = undefined;
      this.resync("watch cancelled");
    });
    watcher.on("end", () => {
      if (this.watcher !== watcher) return;
      this.watcher = undefined;
      this.resync("watch ended");
    });
    this.watcher = watcher;
  }

  private detachWatcher(): Watcher | undefined {
    const watcher = this.watcher;
    this.watcher = undefined;
    if (watcher !== undefined) {
      watcher.removeAllListeners();
      // An emitter without an 'error' listener throws: a late cancel of the dropped watch must not.
      watcher.on("error", () => undefined);
    }
    return watcher;
  }
}

/** Cancels a watch, waiting at most `ms` for etcd to confirm (it may be out of reach). */
async function cancelWithin(watcher: Watcher, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([watcher.cancel().catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
